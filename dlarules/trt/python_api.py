"""The Python-API backend: build with the `tensorrt` module (an optional extra, imported here, inside functions,
only when used) and capture every message the builder logs, formatted as trtexec prints it, so the log reader
treats it as a trtexec log. Written against the TensorRT 8.5 / 8.6 / 10.x Python API."""
from __future__ import annotations

import functools
import json
from dataclasses import replace
from datetime import datetime
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import DlarulesError
from .build import BuildOutput, BuildRequest
from .calibration import DeviceBatches, InputSpecs, calibration_batches, load_cudart, make_calibrator
from .errors import VerifyError
from .process import error_line
from .trtexec import compare_hint, trtexec_args

# TensorRT severities -> the letters trtexec's logger prints.
SEVERITY_TAGS = {"INTERNAL_ERROR": "F", "ERROR": "E", "WARNING": "W", "INFO": "I", "VERBOSE": "V"}
INSTALL_HINT = "install it with `pip install -e '.[trt]'` or JetPack's python3-libnvinfer"


def import_tensorrt() -> tuple[ModuleType | None, str]:
    """The tensorrt module, or None and why not (a missing wheel, or a wheel whose libnvinfer will not load)."""
    try:
        import tensorrt
    except ImportError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - an OSError from a broken libnvinfer must not become a traceback
        return None, f"{type(exc).__name__}: {exc}"
    return tensorrt, ""


def format_lines(tag: str, source: str, message: str, when: datetime | None = None) -> list[str]:
    """`[08/10/2023-13:58:11] [I] [TRT] message`, one line per line of the message."""
    stamp = (when or datetime.now()).strftime("%m/%d/%Y-%H:%M:%S")
    return [f"[{stamp}] [{tag}] [{source}] {line}".rstrip() for line in str(message).splitlines() or [""]]


@functools.cache
def shared_logger(trt: ModuleType) -> Any:
    """The one trt.ILogger of this process, keeping every message (all severities) in `.lines`.

    One, not one per build: TensorRT keeps the first logger it is given as its global logger (it warns that a
    later, different one "differs from one already provided"), so messages logged through the global one would
    miss a second logger; and the backend probe creates a builder before the build does."""

    class CapturingLogger(trt.ILogger):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.lines: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            tag = SEVERITY_TAGS.get(getattr(severity, "name", ""), "I")
            self.lines.extend(format_lines(tag, "TRT", msg))

        def note(self, msg: str, tag: str = "I") -> None:
            """A line of dlarules' own, kept apart from TensorRT's by its [dlarules] tag."""
            self.lines.extend(format_lines(tag, "dlarules", msg))

        def text(self) -> str:
            return "\n".join(self.lines) + "\n"

        def reset(self) -> None:
            self.lines = []

    return CapturingLogger()


def dla_cores(trt: ModuleType) -> tuple[int, str]:
    """How many DLA cores TensorRT sees here, and why none when 0 (creating a builder needs a working GPU)."""
    try:
        builder = trt.Builder(shared_logger(trt))
        return int(builder.num_DLA_cores), ""
    except Exception as exc:  # noqa: BLE001 - no GPU / driver: no DLA either
        return 0, f"{type(exc).__name__}: {exc}"


def dla_available() -> tuple[bool, str]:
    """Whether this machine can build with the Python API for DLA, and why not."""
    trt, why = import_tensorrt()
    if trt is None:
        return False, f"the tensorrt module does not import ({why})"
    cores, why = dla_cores(trt)
    if cores:
        return True, ""
    return False, f"tensorrt {trt.__version__} imports but reports no DLA core" + (f" ({why})" if why else "")


def require_tensorrt(model: object) -> ModuleType:
    trt, why = import_tensorrt()
    if trt is None:
        raise VerifyError(None, f"the tensorrt Python module is not available ({why}); {INSTALL_HINT}, "
                                f"use --backend trtexec, or {compare_hint(model)}")
    return trt


def build(req: BuildRequest) -> BuildOutput:
    trt = require_tensorrt(req.model)
    logger = shared_logger(trt)
    logger.reset()
    # trtexec prints its version first; trtlog reads the version of the build from this line.
    logger.note(f"TensorRT version: {trt.__version__}")
    try:
        return _build(trt, logger, req)
    except VerifyError as exc:
        exc.log = exc.log or logger.text()
        raise
    except DlarulesError:
        raise
    except Exception as exc:  # noqa: BLE001 - a TensorRT binding error is one line, with the log kept
        raise VerifyError(req.model, f"TensorRT build failed: {type(exc).__name__}: {exc}",
                          log=logger.text()) from None


def _build(trt: ModuleType, logger: Any, req: BuildRequest) -> BuildOutput:
    notes: list[str] = []
    builder = _builder(trt, logger, req)
    network, parser = _parse(trt, builder, logger, req)   # the parser owns the weights: keep it until the build
    config = builder.create_builder_config()
    _configure(trt, config, req)
    specs, profile = _profile(trt, builder, network, config, req, notes)
    calibration = _calibrate(trt, config, specs, profile, req, notes)
    try:
        can_run = _static_checks(config, network)
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibration is not None:
            calibration[0].close()
    if serialized is None:
        reason = error_line("\n".join(x for x in logger.lines if "] [E] " in x or "] [F] " in x))
        raise VerifyError(req.model, "TensorRT could not build the engine" + (f": {reason}" if reason else ""),
                          log=logger.text())
    if req.extra_args:
        notes.append("extra trtexec arguments are not used by the python backend")
    engine_layers = _inspect(trt, logger, serialized, req.dla_core, notes)
    command = [f"tensorrt {trt.__version__} Python API", *trtexec_args(replace(req, extra_args=()), req.model)]
    return BuildOutput(logger.text(), "python", command, can_run_on_dla=can_run, engine_layers=engine_layers,
                       notes=notes)


def _builder(trt: ModuleType, logger: Any, req: BuildRequest) -> Any:
    builder = trt.Builder(logger)
    cores = int(builder.num_DLA_cores)
    if cores == 0:
        raise VerifyError(None, f"no DLA on this machine (TensorRT {trt.__version__} reports 0 DLA cores); run on a "
                                f"Jetson Xavier/Orin, use --remote user@jetson, or {compare_hint(req.model)}")
    if req.dla_core >= cores:
        raise VerifyError("--dla-core", f"DLA core {req.dla_core} does not exist: this device has {cores} "
                                        f"(0..{cores - 1})")
    return builder


def _parse(trt: ModuleType, builder: Any, logger: Any, req: BuildRequest) -> tuple[Any, Any]:
    flags = 0
    # TensorRT 10 makes every network explicit-batch and deprecates the flag; 8.x needs it for ONNX.
    if int(str(trt.__version__).split(".")[0]) < 10:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    for name in req.network_flags:   # the build mode's, e.g. STRONGLY_TYPED
        flag = getattr(trt.NetworkDefinitionCreationFlag, name, None)
        if flag is None:
            raise VerifyError("--precision", f"TensorRT {trt.__version__} has no {name} network flag: build mode "
                                             f"{req.precision} needs a newer TensorRT")
        flags |= 1 << int(flag)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(req.model)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        for e in errors:
            logger.note(e, "E")
        raise VerifyError(req.model, "TensorRT's ONNX parser rejected the model: "
                                     + (errors[0] if errors else "no reason given"), log=logger.text())
    return network, parser


def _configure(trt: ModuleType, config: Any, req: BuildRequest) -> None:
    """What `trtexec --useDLACore=N --allowGPUFallback <mode flags>` sets."""
    for name in req.builder_flags:   # the build mode's, e.g. INT8 and FP16 for int8+fp16
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is None:
            raise VerifyError("--precision", f"TensorRT {trt.__version__} has no {name} builder flag (TensorRT 11 "
                                             f"removed the per-precision flags): build mode {req.precision} does "
                                             "not exist there; use --precision strongly-typed")
        config.set_flag(flag)
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = req.dla_core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if hasattr(trt, "ProfilingVerbosity"):   # layer types in the engine inspector, not only names
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED


def _profile(trt: ModuleType, builder: Any, network: Any, config: Any, req: BuildRequest,
             notes: list[str]) -> tuple[InputSpecs, Any]:
    """Static shapes for every input (DLA needs them): the given --input-shape for a dynamic input, else its
    dynamic dimensions set to 1 as trtexec does; one profile with min = opt = max."""
    specs: dict[str, tuple[tuple[int, ...], Any]] = {}
    profile = None
    names = []
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        names.append(inp.name)
        dims = tuple(int(d) for d in inp.shape)
        shape = _static_shape(inp.name, dims, req.input_shapes.get(inp.name), notes)
        if shape != dims:
            profile = profile or builder.create_optimization_profile()
            profile.set_shape(inp.name, shape, shape, shape)
        specs[inp.name] = (shape, np.dtype(trt.nptype(inp.dtype)))
    unknown = [n for n in req.input_shapes if n not in names]
    if unknown:
        raise VerifyError("--input-shape", f"the network has no input {', '.join(map(repr, unknown))} "
                                           f"(its inputs: {', '.join(names)})")
    if profile is not None:
        config.add_optimization_profile(profile)
    return specs, profile


def _static_shape(name: str, dims: tuple[int, ...], given: tuple[int, ...] | None,
                  notes: list[str]) -> tuple[int, ...]:
    text = "x".join(str(d) for d in dims)
    if given is None:
        if all(d >= 0 for d in dims):
            return dims
        shape = tuple(d if d >= 0 else 1 for d in dims)
        notes.append(f"input {name} is dynamic ({text}) and no --input-shape was given: built as "
                     f"{'x'.join(map(str, shape))}, as trtexec does")
        return shape
    if len(given) != len(dims) or any(d >= 0 and d != g for d, g in zip(dims, given)):
        raise VerifyError("--input-shape", f"{name}:{'x'.join(map(str, given))} does not fit the model's input "
                                           f"{name} ({text})")
    return tuple(given)


def _calibrate(trt: ModuleType, config: Any, specs: InputSpecs, profile: Any, req: BuildRequest,
               notes: list[str]) -> tuple[DeviceBatches, Any] | None:
    """The device buffers and the calibrator; the caller keeps both until the build is done (TensorRT holds
    only a pointer to the calibrator)."""
    if "INT8" not in req.builder_flags:
        if req.inputs:
            notes.append("--inputs is calibration data: it is used only in an INT8 build mode (int8, int8+fp16, best)")
        return None
    batches = calibration_batches(specs, req.inputs)
    feed = DeviceBatches(batches, load_cudart())
    calibrator = make_calibrator(trt, feed)
    config.int8_calibrator = calibrator
    if profile is not None and hasattr(config, "set_calibration_profile"):
        config.set_calibration_profile(profile)
    notes.append(f"INT8 calibrated with {len(batches)} batch(es) of "
                 + (f"arrays from {req.inputs}" if req.inputs else "random data"))
    return feed, calibrator


def _static_checks(config: Any, network: Any) -> dict[str, bool]:
    """IBuilderConfig.can_run_on_DLA per layer name: TensorRT's own static check, before the build decides."""
    out: dict[str, bool] = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        out[layer.name] = bool(config.can_run_on_DLA(layer))
    return out


def _inspect(trt: ModuleType, logger: Any, serialized: Any, dla_core: int, notes: list[str]) -> list[dict[str, Any]]:
    """The engine's layers as the engine inspector lists them (TensorRT 8.2+); DLA loadables appear as
    `{ForeignNode[first...last]}`. Optional: a failure here is a note, not an error."""
    if not hasattr(trt, "LayerInformationFormat"):
        return []
    try:
        runtime = trt.Runtime(logger)
        runtime.DLA_core = dla_core
        engine = runtime.deserialize_cuda_engine(serialized)
        if engine is None or not hasattr(engine, "create_engine_inspector"):
            return []
        info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
        layers = json.loads(info).get("Layers", [])
    except Exception as exc:  # noqa: BLE001
        notes.append(f"engine inspector unavailable: {type(exc).__name__}: {exc}")
        return []
    return [{"name": x, "type": ""} if isinstance(x, str) else
            {"name": str(x.get("Name", "")), "type": str(x.get("LayerType", ""))} for x in layers]

