"""What every backend is asked to build and what it hands back: plain data, so verify() treats them alike."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

DEFAULT_TIMEOUT_S = 3600.0   # a DLA build of a large model on a Xavier can take tens of minutes


@dataclass(frozen=True)
class BuildRequest:
    model: Path
    precision: str = "fp16"                # the build mode's name (--precision)
    dla_core: int = 0
    input_shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    inputs: Path | None = None             # .npz calibration arrays (python backend, INT8)
    extra_args: tuple[str, ...] = ()       # passed to trtexec as they are
    timeout: float | None = DEFAULT_TIMEOUT_S
    # the build mode's flags (rules/releases.yaml `modes`): trtexec's, and the TensorRT API's for the python backend
    trtexec_flags: tuple[str, ...] = ("--fp16",)
    builder_flags: tuple[str, ...] = ("FP16",)      # trt.BuilderFlag names
    network_flags: tuple[str, ...] = ()             # trt.NetworkDefinitionCreationFlag names (STRONGLY_TYPED)


@dataclass
class BuildOutput:
    log_text: str                          # everything TensorRT printed, in trtexec's line format
    backend: str                           # python | trtexec
    command: list[str]                     # what was run (for the python backend: the equivalent trtexec line)
    remote: str | None = None              # user@host when trtexec ran on another machine
    can_run_on_dla: dict[str, bool] = field(default_factory=dict)   # IBuilderConfig.can_run_on_DLA per layer
    engine_layers: list[dict[str, Any]] = field(default_factory=list)  # the engine inspector's layers
    notes: list[str] = field(default_factory=list)
