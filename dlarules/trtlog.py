"""Reading what TensorRT prints about DLA placement (trtexec --useDLACore=N --allowGPUFallback, or the builder's
logger): the "Layers Running on DLA / GPU" sections, the fallback warnings, and the versions it can find.

Robust to timestamps and severity prefixes, verbose output around the sections, Windows line ends, logs pasted
as comments (`#[...]`) and the TensorRT 7 format (`Layers running on DLA:` followed by `{a,b}, {c}` groups).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DlarulesError

_DLA_HEADER = re.compile(r"Layers Running on DLA", re.I)
_GPU_HEADER = re.compile(r"Layers Running on GPU", re.I)
_DLA_LAYER = re.compile(r"\[DlaLayer\]\s*\{ForeignNode\[(.*)\]\}")
_GPU_LAYER = re.compile(r"\[GpuLayer\]\s*(?:([A-Z][A-Z_0-9]*):\s+)?(.*?)\s*$")
_OLD_GROUP = re.compile(r"\{([^{}]*)\}")
_PREFIX = re.compile(r"^\s*#?\s*(?:(?:\[[^\]]*\]|\[?TensorRT\]?|WARNING|ERROR|INFO|VERBOSE|TRT)\s*:?\s*)*")
_OLD_GROUPS_LINE = re.compile(r"^\{[^{}]+\}(?:\s*,\s*\{[^{}]+\})*\s*,?\s*$")

_WARNINGS: list[tuple[str, re.Pattern[str]]] = [
    ("validation-failed", re.compile(r"Validation failed for DLA layer:\s*(?P<layer>.+?)\.\s*Switching to GPU fallback")),
    ("not-supported", re.compile(r"layer (?P<layer>.+?) is not supported on DLA, falling back to GPU")),
    ("unsupported", re.compile(r"Layer '(?P<layer>.+?)' \((?P<kind>[A-Z_]+)\): Unsupported on DLA")),
    ("subgraph-limit", re.compile(r"DLA supports only (?P<limit>\d+) subgraphs per DLA core\. "
                                  r"Switching to GPU for layer (?P<layer>.+?)\s*$")),
    ("split", re.compile(r"Splitting DLA subgraph at:\s*(?P<layer>.+?) because (?P<reason>.+?)\s*$")),
    ("dynamic", re.compile(r"DLA Layer (?P<layer>.+?) does not support dynamic shapes")),
    ("precision", re.compile(r"(?P<reason>DLA only supports FP16 and Int8 precision type)\. "
                             r"Switching (?P<layer>.+?) device type to GPU")),
    ("profile", re.compile(r"(?P<reason>DLA requests all profiles have same min, max, and opt value.*)$")),
    ("activation", re.compile(r"(?P<layer>[^:\s][^:]*?): (?P<reason>ActivationLayer \(with ActivationType = "
                              r"(?P<kind>[A-Z_]+)\) not supported for DLA)")),
    ("reason", re.compile(r"(?P<layer>\S.*?): (?P<reason>(?:DLA|Concatenation on DLA|This version of DLA)[^\n]*?)\.?\s*$")),
    ("reason", re.compile(r"(?P<reason>This version of DLA does not support .+?)\s*$")),
    ("reason", re.compile(r"(?P<reason>(?:Unary|ElementWise) operation: \S+ is not supported on DLA)")),
]
_VERSIONS: list[tuple[str, re.Pattern[str]]] = [
    ("tensorrt", re.compile(r"TensorRT version:\s*(\d+(?:\.\d+)+)")),
    ("tensorrt", re.compile(r"\[TensorRT v(\d)(\d)(\d{2})\]")),
    ("tensorrt", re.compile(r"TensorRT[- ]v?(\d+\.\d+\.\d+(?:\.\d+)?)\b")),
    ("device", re.compile(r"Selected Device:\s*(.+?)\s*$")),
    ("dla", re.compile(r"DLA (?:version|Version|core version)[: ]+v?(\d+(?:\.\d+)+)")),
    ("jetpack", re.compile(r"JetPack\s*(\d+(?:\.\d+)+)")),
]


class LogError(DlarulesError):
    """The log cannot be used (no placement section)."""


@dataclass
class ObservedSubgraph:
    index: int
    name: str        # the text inside ForeignNode[...]
    first: str
    last: str
    line: int

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": f"ForeignNode[{self.name}]", "first": self.first, "last": self.last,
                "line": self.line}


@dataclass
class ObservedLayer:
    kind: str         # TensorRT layer type as printed (RESIZE), "" when the log does not say
    name: str         # the whole name, fused parts joined by " + "
    line: int

    @property
    def parts(self) -> list[str]:
        return split_fused(self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "line": self.line}


# Warnings that mean "this layer runs on the GPU" (the others explain why, or concern the whole network).
_SWITCH_KINDS = {"unsupported", "not-supported", "validation-failed", "subgraph-limit", "precision"}


@dataclass
class LogWarning:
    kind: str
    layer: str
    reason: str
    line: int
    kind_of_layer: str = ""    # the TensorRT layer type, where the warning names it

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "layer": self.layer, "reason": self.reason, "line": self.line}


@dataclass
class BuildLog:
    source: str
    dla_subgraphs: list[ObservedSubgraph] = field(default_factory=list)
    gpu_layers: list[ObservedLayer] = field(default_factory=list)
    warnings: list[LogWarning] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    has_placement: bool = False
    complete: bool = True         # both section headers seen
    old_format: bool = False      # TensorRT 7 "Layers running on DLA:" groups

    @property
    def switched_layers(self) -> list[ObservedLayer]:
        """The layers the warnings say were switched to the GPU, once each in log order (for logs that hold the
        warnings but no placement list, as many posted excerpts do)."""
        out: dict[str, ObservedLayer] = {}
        for w in self.warnings:
            if w.kind in _SWITCH_KINDS and w.layer and w.layer not in out:
                out[w.layer] = ObservedLayer(w.kind_of_layer, w.layer, w.line)
        return list(out.values())

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "versions": self.versions, "complete": self.complete,
                "dla_subgraphs": [s.to_dict() for s in self.dla_subgraphs],
                "gpu_layers": [g.to_dict() for g in self.gpu_layers],
                "warnings": [w.to_dict() for w in self.warnings]}


def split_fused(name: str) -> list[str]:
    """'A + (Unnamed Layer* 19) [Shuffle] + B' -> ['A', '(Unnamed Layer* 19) [Shuffle]', 'B']."""
    return [p.strip() for p in name.split(" + ") if p.strip()]


def split_foreign(inner: str) -> tuple[str, str]:
    """'first...last' -> (first, last); a one-layer subgraph has no '...'."""
    if "..." in inner:
        first, _, last = inner.partition("...")
        return first.strip(), last.strip()
    return inner.strip(), inner.strip()


def _strip(line: str) -> str:
    """The message without timestamps, severities and logger tags."""
    return _PREFIX.sub("", line.rstrip())


def parse(text: str, source: str = "<log>") -> BuildLog:
    log = BuildLog(source)
    section: str | None = None
    saw_dla = saw_gpu = False
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r")
        if _DLA_HEADER.search(line):
            section, saw_dla, log.has_placement = "dla", True, True
            log.old_format = log.old_format or line.rstrip().endswith(":")
            continue
        if _GPU_HEADER.search(line):
            section, saw_gpu, log.has_placement = "gpu", True, True
            continue
        m = _DLA_LAYER.search(line)
        if m:
            first, last = split_foreign(m.group(1))
            log.dla_subgraphs.append(ObservedSubgraph(len(log.dla_subgraphs), m.group(1).strip(), first, last, n))
            continue
        m = _GPU_LAYER.search(line)
        if m:
            log.gpu_layers.append(ObservedLayer(m.group(1) or "", m.group(2).strip(), n))
            continue
        body = _strip(line)
        if (section == "dla" and log.old_format and "{" in line) or _OLD_GROUPS_LINE.match(body):
            log.old_format = True
            log.has_placement = True
            for group in _OLD_GROUP.findall(body):
                names = [x.strip() for x in group.split(",") if x.strip()]
                if names:
                    log.dla_subgraphs.append(ObservedSubgraph(len(log.dla_subgraphs), ",".join(names), names[0],
                                                              names[-1], n))
            continue
        _warning(log, line, n)
        _version(log, line)
    log.complete = saw_dla and saw_gpu
    return log


def _warning(log: BuildLog, line: str, n: int) -> None:
    body = _strip(line)
    for kind, pat in _WARNINGS:
        m = pat.search(body)
        if m:
            g = m.groupdict()
            layer = (g.get("layer") or "").strip()
            reason = (g.get("reason") or body).strip()
            if kind == "reason" and layer.lower().startswith(("warning", "error", "info")):
                layer = ""
            layer_kind = (g.get("kind") or "") if kind == "unsupported" else ""
            log.warnings.append(LogWarning(kind, layer, reason, n, layer_kind))
            return


def _version(log: BuildLog, line: str) -> None:
    for key, pat in _VERSIONS:
        if key in log.versions:
            continue
        m = pat.search(line)
        if m:
            log.versions[key] = ".".join(str(int(x)) for x in m.groups()) if len(m.groups()) > 1 else m.group(1)


def read(path: str | Path, *, require_placement: bool = True) -> BuildLog:
    p = Path(path)
    if not p.is_file():
        raise LogError(p, "no such file" if not p.exists() else "not a file")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    log = parse(text, str(p))
    if require_placement and not log.has_placement and not log.switched_layers:
        what = f" (it has {len(log.warnings)} DLA warning line(s), none naming a layer moved to the GPU)" \
            if log.warnings else ""
        raise LogError(p, "no 'Layers Running on DLA/GPU' section and no fallback warnings found; build with "
                          f"trtexec --verbose --useDLACore=0 --allowGPUFallback and save the whole output{what}")
    return log
