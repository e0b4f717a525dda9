"""`dlarules verify`: build the model for DLA with real TensorRT (the Python API, trtexec, or trtexec on a Jetson
over ssh), read what the build printed, and line it up with the prediction exactly as `dlarules compare --log`
does for a saved log."""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import trtlog
from ..core import Report
from ..atomic import write_text_atomic
from ..compare import Comparison, compare, render_text as render_comparison
from ..errors import ModelError, OptionError, clip
from ..model import resolve_input_shapes
from . import python_api
from .build import DEFAULT_TIMEOUT_S, BuildOutput, BuildRequest
from .errors import VerifyError
from .remote import Remote, run_remote
from .trtexec import NOT_FOUND, compare_hint, find_trtexec, require_trtexec, run_trtexec

BACKENDS = ("auto", "python", "trtexec")
_MAX_LISTED = 10


@dataclass
class VerifyResult:
    comparison: Comparison          # the same agreement report `dlarules compare --log` gives for this log
    log: trtlog.BuildLog
    log_text: str                   # the raw log, as --save-log writes it
    backend: str                    # python | trtexec
    command: list[str]
    remote: str | None = None
    can_run_on_dla: dict[str, bool] = field(default_factory=dict)
    engine_layers: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    saved_log: str | None = None

    @property
    def agreed(self) -> bool:
        return self.comparison.agreed

    @property
    def exit_code(self) -> int:
        return 0 if self.agreed else 1

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "command": shlex.join(self.command), "remote": self.remote,
                "saved_log": self.saved_log, "notes": self.notes, "can_run_on_dla": self.can_run_on_dla,
                "engine_layers": self.engine_layers, "comparison": self.comparison.to_dict()}


def verify(model: str | os.PathLike[str], report: Report, *, backend: str = "auto", dla_core: int = 0,
           input_shapes: Mapping[str, tuple[int, ...]] | None = None, inputs: str | os.PathLike[str] | None = None,
           trtexec: str | os.PathLike[str] | None = None, remote: str | None = None,
           extra_args: Sequence[str] = (), timeout: float | None = DEFAULT_TIMEOUT_S,
           save_log: str | os.PathLike[str] | None = None) -> VerifyResult:
    """Build `model` for DLA in the report's precision and compare the build's placement with `report`.

    `remote` (user@host) runs trtexec on that device over ssh, where `trtexec` is its path on the device.
    `save_log` keeps the raw log (also when the build fails) for `dlarules compare --log`.
    Raises VerifyError (no TensorRT/trtexec/DLA/ssh, a failed or timed-out build, a log without placement),
    OptionError (a bad option) or ModelError (no model file)."""
    req = _request(model, report, dla_core, input_shapes, inputs, extra_args, timeout)
    try:
        out = _run(req, backend, trtexec, remote)
    except VerifyError as exc:
        if save_log is None or not exc.log:
            raise
        write_text_atomic(save_log, exc.log)
        raise VerifyError(exc.source, f"{exc.problem} (the build log is in {save_log})", log=exc.log,
                          command=exc.command) from None
    if save_log is not None:
        write_text_atomic(save_log, out.log_text)
    log = trtlog.parse(out.log_text, str(save_log) if save_log is not None else f"<{_where(out)}>")
    if not log.has_placement:
        kept = f"the log is in {save_log}" if save_log is not None else "keep the log with --save-log build.log"
        raise VerifyError(req.model, f"the {_where(out)} printed no 'Layers Running on DLA/GPU' section, so there "
                                     f"is no placement to compare ({kept})", log=out.log_text, command=out.command)
    return VerifyResult(compare(report, log), log, out.log_text, out.backend, out.command, out.remote,
                        out.can_run_on_dla, out.engine_layers, out.notes + _version_notes(report, log),
                        str(save_log) if save_log is not None else None)


def choose_backend(backend: str, *, trtexec: str | os.PathLike[str] | None = None,
                   model: str | os.PathLike[str] = "MODEL") -> tuple[str, str | None]:
    """("python", None) or ("trtexec", its path). "auto": an explicit trtexec path if given, else the Python API
    where tensorrt imports and sees a DLA, else trtexec where it is found; else a VerifyError saying what to do."""
    _check_backend(backend)
    if backend == "python":
        return "python", None   # the build itself says what is missing
    if backend == "trtexec" or trtexec is not None:
        return "trtexec", require_trtexec(trtexec, model)
    ok, why = python_api.dla_available()
    if ok:
        return "python", None
    found = find_trtexec(None)
    if found:
        return "trtexec", found
    # within one 300-character line: the reason cut short, then what to do
    raise VerifyError(None, f"no DLA build here: {clip(why, 50)}; {NOT_FOUND}. Use `dlarules compare {model} "
                            "--log build.log` on a log from the device, or --remote user@jetson")


def render_text(result: VerifyResult) -> str:
    """The `dlarules compare` report, headed by how the build was made."""
    lines = render_comparison(result.comparison).splitlines()
    lines[0] = lines[0].replace("dlarules compare:", "dlarules verify:", 1)
    where = f" on {result.remote}" if result.remote else ""
    head = [f"built with {result.backend}{where}: {shlex.join(result.command)}"]
    head += [f"note: {n}" for n in result.notes]
    refused = [name for name, ok in result.can_run_on_dla.items() if not ok]
    if result.can_run_on_dla:
        listed = ", ".join(refused[:_MAX_LISTED]) + (", ..." if len(refused) > _MAX_LISTED else "")
        head.append(f"TensorRT's static check (can_run_on_DLA): {len(refused)} of {len(result.can_run_on_dla)} "
                    "layer(s) cannot run on DLA" + (f": {listed}" if refused else ""))
    return "\n".join(lines[:2] + head + lines[2:]) + "\n"


def _request(model: str | os.PathLike[str], report: Report, dla_core: int,
             input_shapes: Mapping[str, tuple[int, ...]] | None, inputs: str | os.PathLike[str] | None,
             extra_args: Sequence[str], timeout: float | None) -> BuildRequest:
    path = Path(model)
    if not path.is_file():
        raise ModelError(path, "no such file")
    mode = report.target.mode
    if mode is None:
        raise OptionError("--precision", f"{report.target.precision!r}: the rule DB defines no build modes")
    if dla_core < 0:
        raise OptionError("--dla-core", f"{dla_core} is not a DLA core number (0, 1, ...)")
    if inputs is not None and not Path(inputs).is_file():
        raise OptionError("--inputs", f"{inputs}: no such file")
    if timeout is not None and timeout <= 0:
        raise OptionError("--timeout", f"{timeout} is not a positive number of seconds")
    graph = report.layer_graph.graph if report.layer_graph is not None else None
    # an unnamed --input-shape names the model's one input, as check resolved it
    shapes = resolve_input_shapes(graph.model, input_shapes) if graph is not None and graph.model is not None \
        else dict(input_shapes or {})
    return BuildRequest(path, mode.name, dla_core, shapes,
                        Path(inputs) if inputs is not None else None, tuple(extra_args), timeout,
                        mode.trtexec, mode.builder_flags, mode.network_flags)


def _run(req: BuildRequest, backend: str, trtexec: str | os.PathLike[str] | None, remote: str | None) -> BuildOutput:
    if remote is not None:
        _check_backend(backend)
        if backend == "python":
            raise OptionError("--backend", "the python backend builds on this machine; --remote runs trtexec on "
                                           "the device (use --backend auto or trtexec)")
        return run_remote(req, Remote(remote, trtexec=str(trtexec) if trtexec is not None else None))
    chosen, tool = choose_backend(backend, trtexec=trtexec, model=req.model)
    if chosen == "python":
        return python_api.build(req)
    assert tool is not None
    return run_trtexec(req, tool)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise OptionError("--backend", f"{backend!r} is not one of {', '.join(BACKENDS)}")


def _where(out: BuildOutput) -> str:
    return f"{out.backend} build" + (f" on {out.remote}" if out.remote else "")


def _version_notes(report: Report, log: trtlog.BuildLog) -> list[str]:
    """A build from another TensorRT release than the prediction's explains disagreements: say so."""
    built = log.versions.get("tensorrt")
    want = report.target.trt
    if not built or built.split(".")[:len(want.split("."))] == want.split("."):
        return []
    release = ".".join(built.split(".")[:2])
    return [f"the build used TensorRT {built} but the prediction is for TensorRT {want}: "
            f"predict for the same release with --trt {release}"]
