"""The trtexec backend: run `trtexec --onnx=MODEL --useDLACore=N --allowGPUFallback <mode flags> --verbose` and keep
everything it prints; that output is the log `dlarules compare --log` reads."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Mapping

from .build import BuildOutput, BuildRequest
from .errors import VerifyError
from .process import check_success, run_tool

JETSON_TRTEXEC = Path("/usr/src/tensorrt/bin/trtexec")   # where JetPack installs it (not on PATH)
NOT_FOUND = f"trtexec not found (no --trtexec, not on PATH, not in {JETSON_TRTEXEC.parent})"
TIMEOUT_HINT = "a DLA build of a large model can take many minutes: allow a longer timeout"


def compare_hint(model: str | Path) -> str:
    """What to do instead when nothing here can build for DLA."""
    return f"run the build on the device and use `dlarules compare {model} --log build.log`"


def find_trtexec(explicit: str | Path | None = None) -> str | None:
    """`explicit` (which must exist), else trtexec on PATH, else JetPack's location; None when there is none."""
    if explicit is not None:
        p = Path(explicit)
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise VerifyError("--trtexec", f"{p}: no such executable file")
        # absolute: Path("./trtexec") prints as "trtexec", which the system would look up on PATH instead
        return str(p.resolve())
    found = shutil.which("trtexec")
    if found:
        return found
    if JETSON_TRTEXEC.is_file() and os.access(JETSON_TRTEXEC, os.X_OK):
        return str(JETSON_TRTEXEC)
    return None


def require_trtexec(explicit: str | Path | None, model: str | Path) -> str:
    found = find_trtexec(explicit)
    if found is None:
        raise VerifyError(None, f"{NOT_FOUND}; {compare_hint(model)}")
    return found


def shapes_arg(shapes: Mapping[str, tuple[int, ...]]) -> str:
    """--shapes=images:1x3x640x640,... (names holding ':' or ',' are quoted, as trtexec expects)."""
    def name(n: str) -> str:
        return f"'{n}'" if any(c in n for c in ":,") else n
    return "--shapes=" + ",".join(f"{name(n)}:{'x'.join(str(d) for d in dims)}" for n, dims in shapes.items())


def trtexec_args(req: BuildRequest, onnx_path: str | Path) -> list[str]:
    """The flags after the program name; shared by the local and the remote run."""
    args = [f"--onnx={onnx_path}", f"--useDLACore={req.dla_core}", "--allowGPUFallback", *req.trtexec_flags]
    if req.input_shapes:
        args.append(shapes_arg(req.input_shapes))
    return [*args, "--verbose", *req.extra_args]


def run_trtexec(req: BuildRequest, trtexec: str) -> BuildOutput:
    argv = [trtexec, *trtexec_args(req, req.model)]
    proc = run_tool(argv, what="trtexec", timeout=req.timeout, source=req.model, hint=TIMEOUT_HINT)
    text = check_success(proc, what="trtexec", source=req.model)
    notes = ["trtexec calibrates INT8 with its own dummy scales: --inputs is not used"] if req.inputs else []
    return BuildOutput(text, "trtexec", argv, notes=notes)
