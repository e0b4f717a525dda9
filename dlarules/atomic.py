"""Writing files so that nothing the user owns is half-written: temp file in the same folder, then rename."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def check_folder(path: str | os.PathLike[str]) -> None:
    """A one-line error when the file cannot be written because its folder does not exist."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        from .errors import DlarulesError
        raise DlarulesError(path, f"cannot write: folder {folder} does not exist")


def _umask_mode() -> int:
    # mkstemp creates 0600 files; a written report or model should get the usual rw-r--r-- (the user's umask)
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    path = Path(path)
    check_folder(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def save_model_atomic(model: "onnx.ModelProto", path: str | os.PathLike[str], *, external: bool = False) -> None:
    """Save an ONNX model atomically. With `external`, weights go to `<name>.data` beside it (models over 2 GB)."""
    import onnx
    path = Path(path)
    if not external:
        write_bytes_atomic(path, model.SerializeToString())
        return
    check_folder(path)
    tmpdir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        data_name = path.name + ".data"
        onnx.save_model(model, str(tmpdir / path.name), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
        for f in (tmpdir / data_name, tmpdir / path.name):
            os.chmod(f, _umask_mode())
        os.replace(tmpdir / data_name, path.parent / data_name)
        os.replace(tmpdir / path.name, path)
    finally:
        for f in tmpdir.glob("*"):
            f.unlink()
        tmpdir.rmdir()
