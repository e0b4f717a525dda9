"""Every file dlarules writes goes through here: the path is vetted first, then the data goes to a temp file in the
same folder that is renamed over the target, so nothing the user owns is half-written.

What an output path may not be (each a one-line DlarulesError naming it, before any work where the CLI can):
  - one of the command's input files (the same file by inode: also through a symlink or a hard link);
  - a directory, a FIFO, a device or a socket (renaming over them would replace them with a regular file);
  - in a folder that does not exist or cannot be written, or a name over the file system's name limit.
A symlink is written through: its target is replaced atomically and the link stays (a dangling link gets its
target created). The replaced file keeps its permission bits; a new one gets the user's umask.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterable

from .errors import DlarulesError

_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}
_MAX_LINKS = 40


def check_folder(path: str | os.PathLike[str]) -> None:
    """A one-line error when the file cannot be written because its folder does not exist or is not writable."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise DlarulesError(path, f"cannot write: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DlarulesError(path, f"cannot write: folder {folder} is not writable")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _link_target(path: Path) -> Path:
    """Where writing to a symlink lands: its final target (a chain of links followed; a loop is an error)."""
    p = path
    for _ in range(_MAX_LINKS):
        if not p.is_symlink():
            return p
        p = p.parent / os.readlink(p)
    raise DlarulesError(path, "cannot write: too many levels of symbolic links")


def vet_output(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None] = (),
               what: str = "file") -> Path:
    """The path a write to `path` will replace (a symlink's target), after refusing what must not be replaced:
    one of `inputs`, a directory or other non-regular file, a missing or read-only folder, a too-long name."""
    path = Path(path)
    try:
        target = _link_target(path)
        try:
            st = os.stat(target)
        except FileNotFoundError:
            st = None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise DlarulesError(path, "cannot write: the file name is too long") from None
        raise DlarulesError(path, f"cannot write: {exc.strerror}") from None
    except ValueError:
        raise DlarulesError(repr(str(path)), "cannot write: not a valid file name") from None
    if st is not None:
        kind = stat.S_IFMT(st.st_mode)
        if kind != stat.S_IFREG:
            extra = "; give a file name inside it" if kind == stat.S_IFDIR else ""
            raise DlarulesError(path, f"is {_KINDS.get(kind, 'not a regular file')}; refusing to replace it with "
                                      f"the {what}{extra}")
        for inp in inputs:
            if inp is None:
                continue
            try:
                same = os.path.samefile(target, inp)
            except (OSError, ValueError):
                continue
            if same:
                raise DlarulesError(path, f"is the input {inp}; refusing to overwrite it with the {what} "
                                          f"(choose another output)")
    check_folder(target)
    limit = _name_max(target.parent if str(target.parent) else Path("."))
    if len(os.fsencode(target.name)) > limit:
        raise DlarulesError(path, f"cannot write: the file name is {len(os.fsencode(target.name))} bytes, over "
                                  f"the {limit}-byte limit of the file system")
    return target


def _mode_for(target: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(target).st_mode)   # replacing a file keeps its permissions
    except OSError:
        # mkstemp creates 0600 files; a new report or model gets the usual rw-r--r-- (the user's umask)
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _temp_in(folder: Path, name: str, path: Path) -> tuple[int, str]:
    # a short prefix: the temp name must fit the name limit even when the target's own name just does
    try:
        return tempfile.mkstemp(dir=folder, prefix=f".{name[:40]}.", suffix=".tmp")
    except OSError as exc:
        raise DlarulesError(path, f"cannot write in {folder}: {exc.strerror}") from None


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes,
                       inputs: Iterable[str | os.PathLike[str] | None] = (), what: str = "file") -> None:
    path = Path(path)
    target = vet_output(path, inputs, what)
    folder = target.parent if str(target.parent) else Path(".")
    mode = _mode_for(target)
    fd, tmp = _temp_in(folder, target.name, path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as exc:
        _unlink(tmp)
        raise DlarulesError(path, f"cannot write: {exc.strerror or exc}") from None
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(tmp: str | os.PathLike[str]) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def write_text_atomic(path: str | os.PathLike[str], text: str,
                      inputs: Iterable[str | os.PathLike[str] | None] = (), what: str = "file") -> None:
    write_bytes_atomic(path, text.encode("utf-8"), inputs, what)


def save_model_atomic(model: "onnx.ModelProto", path: str | os.PathLike[str], *, external: bool = False,
                      inputs: Iterable[str | os.PathLike[str] | None] = ()) -> None:
    """Save an ONNX model atomically. With `external`, weights go to `<name>.data` beside it (models over 2 GB)."""
    import onnx
    inputs = list(inputs)
    path = Path(path)
    if not external:
        write_bytes_atomic(path, model.SerializeToString(), inputs, "model")
        return
    target = vet_output(path, inputs, "model")
    data_name = target.name + ".data"
    data_target = vet_output(target.parent / data_name, inputs, "model's weights")
    try:
        tmpdir = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name[:40]}."))
    except OSError as exc:
        raise DlarulesError(path, f"cannot write in {target.parent}: {exc.strerror}") from None
    try:
        onnx.save_model(model, str(tmpdir / target.name), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
        for f, dest in ((tmpdir / data_name, data_target), (tmpdir / target.name, target)):
            os.chmod(f, _mode_for(dest))
        os.replace(tmpdir / data_name, data_target)
        os.replace(tmpdir / target.name, target)
    except OSError as exc:
        raise DlarulesError(path, f"cannot write: {exc.strerror or exc}") from None
    finally:
        for f in tmpdir.glob("*"):
            _unlink(f)
        try:
            tmpdir.rmdir()
        except OSError:
            pass
