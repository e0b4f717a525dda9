"""TEST DOUBLE of the `tensorrt` Python module. It is NOT TensorRT and builds nothing.

It offers only the calls dlarules.trt.python_api makes, with the behaviour a test scripts in `scenario`:
the builder "logs" a recorded trtexec log through the caller's ILogger (each line's message at its severity, as
the real builder logs its placement), can_run_on_DLA refuses the layers named in `scenario.not_on_dla`, and
everything the backend configured is kept in `scenario` for the test to check. Inject it with
`monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)` after `fake_tensorrt.reset(...)`.
`FakeCuda` stands in for the CUDA runtime that INT8 calibration copies batches with."""
from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

__version__ = "8.5.2.2"

_LOG_LINE = re.compile(r"^(?:\[[^\]]*\]\s*)?\[(?P<sev>[FEWIV])\]\s*(?:\[TRT\]\s*)?(?P<msg>.*)$")


class ILogger:
    class Severity(enum.Enum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        pass

    def log(self, severity: "ILogger.Severity", msg: str) -> None:
        raise NotImplementedError


_SEVERITY = {"F": ILogger.Severity.INTERNAL_ERROR, "E": ILogger.Severity.ERROR, "W": ILogger.Severity.WARNING,
             "I": ILogger.Severity.INFO, "V": ILogger.Severity.VERBOSE}


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0


class BuilderFlag(enum.Enum):
    FP16 = 0
    INT8 = 1
    GPU_FALLBACK = 3


class DeviceType(enum.Enum):
    GPU = 0
    DLA = 1


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3


class LayerInformationFormat(enum.Enum):
    ONELINE = 0
    JSON = 1


class ProfilingVerbosity(enum.Enum):
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2


def nptype(dtype: DataType) -> Any:
    return {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
            DataType.INT32: np.int32}[dtype]


class FakeCuda:
    """TEST DOUBLE of dlarules.trt.calibration.CudaRuntime: "device memory" is a dict of numpy arrays."""

    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray | None] = {}
        self.freed: list[int] = []
        self._next = 0x1000

    def malloc(self, nbytes: int) -> int:
        ptr, self._next = self._next, self._next + nbytes + 256
        self.memory[ptr] = None
        return ptr

    def to_device(self, ptr: int, array: np.ndarray) -> None:
        self.memory[ptr] = array.copy()

    def free(self, ptr: int) -> None:
        self.freed.append(ptr)


@dataclass
class Scenario:
    log: Path | None = None                        # the recorded trtexec log the builder replays
    dla_cores: int = 2
    not_on_dla: set[str] = field(default_factory=set)
    parse_errors: list[str] = field(default_factory=list)
    build_fails: bool = False
    builder_raises: bool = False                   # trt.Builder() fails, as without a GPU
    cuda: FakeCuda = field(default_factory=FakeCuda)
    # what the backend did, for the test to check
    network_flags: int | None = None
    config: "IBuilderConfig | None" = None
    calibrated: list[dict[str, np.ndarray]] = field(default_factory=list)
    runtime_dla_core: int | None = None
    loggers: list[ILogger] = field(default_factory=list)   # every logger given to Builder() / Runtime()


scenario = Scenario()


def reset(**kwargs: Any) -> Scenario:
    global scenario
    scenario = Scenario(**kwargs)
    return scenario


@dataclass
class ITensor:
    name: str
    shape: tuple[int, ...]
    dtype: DataType = DataType.FLOAT


@dataclass
class ILayer:
    name: str
    type: str


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.layers: list[ILayer] = []
        self.inputs: list[ITensor] = []

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_layer(self, i: int) -> ILayer:
        return self.layers[i]

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, i: int) -> ITensor:
        return self.inputs[i]


class _ParserError:
    def __init__(self, text: str) -> None:
        self.text = text

    def desc(self) -> str:
        return self.text


class OnnxParser:
    """Makes one layer per ONNX node, named like the node (what TensorRT's parser does for most nodes)."""

    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        self.network = network
        self.errors: list[str] = []

    def parse_from_file(self, path: str) -> bool:
        if scenario.parse_errors:
            self.errors = list(scenario.parse_errors)
            return False
        model = onnx.load(path, load_external_data=False)
        weights = {i.name for i in model.graph.initializer}
        for inp in model.graph.input:
            if inp.name not in weights:
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim)
                self.network.inputs.append(ITensor(inp.name, dims))
        self.network.layers = [ILayer(n.name or f"node_{i}", n.op_type) for i, n in enumerate(model.graph.node)]
        return True

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, i: int) -> _ParserError:
        return _ParserError(self.errors[i])


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}

    def set_shape(self, name: str, min: tuple[int, ...], opt: tuple[int, ...], max: tuple[int, ...]) -> None:
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))


class IBuilderConfig:
    def __init__(self) -> None:
        self.flags: set[BuilderFlag] = set()
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1
        self.profiles: list[IOptimizationProfile] = []
        self.calibration_profile: IOptimizationProfile | None = None
        self.int8_calibrator: Any = None
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.add(flag)

    def get_flag(self, flag: BuilderFlag) -> bool:
        return flag in self.flags

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
        self.calibration_profile = profile
        return True

    def can_run_on_DLA(self, layer: ILayer) -> bool:
        assert self.default_device_type == DeviceType.DLA, "can_run_on_DLA asked before the config targets DLA"
        return layer.name not in scenario.not_on_dla


class IInt8EntropyCalibrator2:
    def __init__(self) -> None:
        pass


class Builder:
    def __init__(self, logger: ILogger) -> None:
        if scenario.builder_raises:
            raise TypeError("pybind11::init(): factory function returned nullptr")
        self.logger = logger
        scenario.loggers.append(logger)

    @property
    def num_DLA_cores(self) -> int:
        return scenario.dla_cores

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        scenario.network_flags = flags
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        scenario.config = IBuilderConfig()
        return scenario.config

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes | None:
        log = self.logger.log
        log(ILogger.Severity.VERBOSE, f"Original: {network.num_layers} layers")
        if config.get_flag(BuilderFlag.INT8) and config.int8_calibrator is not None:
            self._calibrate(network, config.int8_calibrator)
        if scenario.build_fails:
            log(ILogger.Severity.ERROR, "2: [builder.cpp::buildSerializedNetwork::751] Error Code 2: Internal "
                                        "Error (Assertion engine != nullptr failed. )")
            return None
        for line in _recorded_lines():
            m = _LOG_LINE.match(line)
            if m:
                log(_SEVERITY[m.group("sev")], m.group("msg"))
        return b"fake serialized engine"

    def _calibrate(self, network: INetworkDefinition, calibrator: Any) -> None:
        assert calibrator.get_batch_size() == 1
        names = [t.name for t in network.inputs]
        while True:
            ptrs = calibrator.get_batch(names)
            if ptrs is None:
                break
            scenario.calibrated.append({n: scenario.cuda.memory[p] for n, p in zip(names, ptrs)})
        assert calibrator.read_calibration_cache() is None


def _recorded_lines() -> list[str]:
    return scenario.log.read_text(encoding="utf-8").splitlines() if scenario.log else []


class _Inspector:
    def get_engine_information(self, fmt: LayerInformationFormat) -> str:
        assert fmt == LayerInformationFormat.JSON
        layers = []
        for line in _recorded_lines():
            m = re.search(r"\[DlaLayer\] (\{ForeignNode\[.*\]\})|\[GpuLayer\] ([A-Z_]+): (.*)$", line)
            if m and m.group(1):
                layers.append({"Name": m.group(1), "LayerType": "DLA"})
            elif m:
                layers.append({"Name": m.group(3), "LayerType": m.group(2).title()})
        return json.dumps({"Layers": layers, "Bindings": []})


class _Engine:
    def create_engine_inspector(self) -> _Inspector:
        return _Inspector()


class Runtime:
    def __init__(self, logger: ILogger) -> None:
        self.DLA_core = -1
        scenario.loggers.append(logger)

    def deserialize_cuda_engine(self, data: bytes) -> _Engine:
        scenario.runtime_dla_core = self.DLA_core
        return _Engine()
