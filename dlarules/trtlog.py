"""Reading what TensorRT prints about DLA placement, in every form it prints it, from TensorRT 7 to 11:

- the `Layers Running on DLA / GPU` sections (`[DlaLayer] {ForeignNode[first...last]}`, `[GpuLayer] TYPE: name`),
  also pasted without their headers, with or without the `[date] [TRT] [I]` prefixes;
- TensorRT 7's `Layers running on DLA:` followed by `{a,b}, {c}` groups;
- the verbose builder's `{ForeignNode[first...last]} successfully offloaded to DLA.` and
  `Number of DLA node candidates offloaded : N out of M`;
- the fallback warnings (`Layer 'X' (TYPE): Unsupported on DLA. Switching ...`) and their reasons
  (`X: DLA only supports ...`, `DLA cores do not support AVG Reduce operation.`, `... is not supported on DLA`);
- the layer information JSON of `trtexec --exportLayerInfo` / `--dumpLayerInfo` and of the engine inspector
  (names only, or detailed objects with `Name` and `LayerType`).

Robust to Windows line ends, logs pasted as comments (`#[...]`) and arbitrarily long lines: every pattern is
anchored or bounded, and only the first MAX_LINE characters of a line are read.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DlarulesError

# A placement line is short; the rest of a longer line (a pasted blob, a hostile file) is never scanned, so no
# pattern can take more than linear time in it.
MAX_LINE = 4096

_DLA_HEADER = re.compile(r"Layers Running on DLA", re.I)
_GPU_HEADER = re.compile(r"Layers Running on GPU", re.I)
_DLA_LAYER = re.compile(r"\[DlaLayer\]\s*\{ForeignNode\[(.*)\]\}")
_GPU_LAYER = re.compile(r"\[GpuLayer\]\s*(?:([A-Z][A-Z_0-9]*):\s+)?(.*)")
_OFFLOADED = re.compile(r"\{ForeignNode\[(.*)\]\}\s+successfully offloaded to DLA")
_CANDIDATES = re.compile(r"Number of DLA node candidates offloaded\s*:\s*(\d+)\s+out of\s+(\d+)")
_NO_GPU = re.compile(r"No layer is running on GPU", re.I)
_OLD_GROUP = re.compile(r"\{([^{}]*)\}")
_PREFIX = re.compile(r"^\s*#?\s*(?:(?:\[[^\]]{0,64}\]|\[?TensorRT\]?|WARNING|ERROR|INFO|VERBOSE|TRT)\s*:?\s*)*")
_OLD_GROUPS_LINE = re.compile(r'^\{[^{}"]+\}(?:\s*,\s*\{[^{}"]+\})*\s*,?\s*$')  # no quotes: not JSON

# Patterns run on the message without its prefixes (`body`); a layer name comes first where the warning has one,
# so the patterns are anchored there (an unanchored lazy name would make the search quadratic in the line).
_WARNINGS: list[tuple[str, re.Pattern[str]]] = [
    ("validation-failed", re.compile(r"Validation failed for DLA layer:\s*(?P<layer>.+?)\.\s*Switching to GPU fallback")),
    ("not-supported", re.compile(r"layer (?P<layer>.+?) is not supported on DLA, falling back to GPU")),
    ("unsupported", re.compile(r"Layer '(?P<layer>.+?)' \((?P<kind>[A-Z_]+)\): Unsupported on DLA")),
    ("subgraph-limit", re.compile(r"DLA supports only (?P<limit>\d+) subgraphs per DLA core\. "
                                  r"Switching to GPU for layer (?P<layer>.+)")),
    ("split", re.compile(r"Splitting DLA subgraph at:\s*(?P<layer>.+?) because (?P<reason>.+)")),
    ("dynamic", re.compile(r"DLA Layer (?P<layer>.+?) does not support dynamic shapes")),
    ("precision", re.compile(r"(?P<reason>DLA only supports FP16 and Int8 precision type)\. "
                             r"Switching (?P<layer>.+?) device type to GPU")),
    ("profile", re.compile(r"(?P<reason>DLA requests all profiles have same min, max, and opt value.*)")),
    ("activation", re.compile(r"^(?P<layer>[^:\s][^:]*?): (?P<reason>ActivationLayer \(with ActivationType = "
                              r"(?P<kind>[A-Z_]+)\) not supported for DLA)")),
    ("reason", re.compile(r"^(?P<layer>\S.*?): (?P<reason>(?:DLA|Concatenation on DLA|This version of DLA)\b.*)")),
    ("reason", re.compile(r"^(?P<reason>This version of DLA does not support .+)")),
    ("reason", re.compile(r"^(?P<reason>DLA cores? do(?:es)? not support .+)")),
    ("reason", re.compile(r"^(?P<layer>\S.*?): (?P<reason>(?:Unary|ElementWise|Reduce|Pooling|Resize|Slice|Shuffle|"
                          r"Scale|Concatenation|Convolution|Deconvolution|Activation|Softmax)\b.{0,200}?"
                          r"(?:is )?not supported (?:on|by|for) DLA.*)")),
    ("reason", re.compile(r"^(?:Layer )?'?(?P<layer>\S.*?)'? (?P<reason>is not supported on DLA.*)")),
]
_VERSIONS: list[tuple[str, re.Pattern[str]]] = [
    ("tensorrt", re.compile(r"TensorRT version:\s*(\d+(?:\.\d+)+)")),
    ("tensorrt", re.compile(r"\[TensorRT v(\d{2})(\d{2})(\d{2})\]")),   # 10.x and later: v100300 = 10.3.0
    ("tensorrt", re.compile(r"\[TensorRT v(\d)(\d)(\d{2})\]")),          # 7.x-8.x: v8510 = 8.5.10
    ("tensorrt", re.compile(r"TensorRT[- ]v?(\d+\.\d+\.\d+(?:\.\d+)?)\b")),
    ("device", re.compile(r"Selected Device:\s*(.+)")),
    ("dla", re.compile(r"DLA (?:version|Version|core version)[: ]+v?(\d+(?:\.\d+)+)")),
    ("jetpack", re.compile(r"JetPack\s*(\d+(?:\.\d+)+)")),
]


class LogError(DlarulesError):
    """The log cannot be used (no placement and no fallback warning in it)."""


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
    has_dla_list: bool = False    # the DLA subgraphs are listed (sections, [DlaLayer], offload lines, JSON, groups)
    has_gpu_list: bool = False    # the GPU layers are listed (a GPU section, [GpuLayer] lines, JSON)
    complete: bool = True         # both section headers seen
    old_format: bool = False      # TensorRT 7 "Layers running on DLA:" groups
    offloaded: tuple[int, int] | None = None   # "Number of DLA node candidates offloaded : N out of M"
    forms: list[str] = field(default_factory=list)  # which forms the placement was read from, in order seen

    @property
    def has_placement(self) -> bool:
        """The log lists where layers ran (not only warnings about some of them)."""
        return self.has_dla_list or self.has_gpu_list

    @property
    def switched_layers(self) -> list[ObservedLayer]:
        """The layers the warnings say were switched to the GPU, once each in log order (for logs that hold the
        warnings but no placement list, as many posted excerpts do)."""
        out: dict[str, ObservedLayer] = {}
        for w in self.warnings:
            if w.kind in _SWITCH_KINDS and w.layer and w.layer not in out:
                out[w.layer] = ObservedLayer(w.kind_of_layer, w.layer, w.line)
        return list(out.values())

    def _form(self, name: str) -> None:
        if name not in self.forms:
            self.forms.append(name)

    def _subgraph(self, inner: str, n: int) -> None:
        inner = inner.strip()
        if any(s.name == inner for s in self.dla_subgraphs):
            return  # the same subgraph printed twice (offload line and placement list)
        first, last = split_foreign(inner)
        self.dla_subgraphs.append(ObservedSubgraph(len(self.dla_subgraphs), inner, first, last, n))

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "versions": self.versions, "complete": self.complete, "forms": self.forms,
                "offloaded": list(self.offloaded) if self.offloaded else None,
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
    """Read a log's text; a JSON layer-information file is read as such."""
    if text.lstrip()[:1] == "{":
        info = _json_layer_info(text)
        if info is not None:
            return _from_layer_info(info, source)
    log = BuildLog(source)
    section: str | None = None
    saw_dla = saw_gpu = False
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw[:MAX_LINE].rstrip("\r")
        if _DLA_HEADER.search(line):
            section, saw_dla, log.has_dla_list = "dla", True, True
            log.old_format = log.old_format or line.rstrip().endswith(":")
            log._form("sections")
            continue
        if _GPU_HEADER.search(line):
            section, saw_gpu, log.has_gpu_list = "gpu", True, True
            log._form("sections")
            continue
        m = _DLA_LAYER.search(line)
        if m:
            log._subgraph(m.group(1), n)
            log.has_dla_list = True
            log._form("sections" if saw_dla else "headerless-lists")
            continue
        m = _GPU_LAYER.search(line)
        if m:
            log.gpu_layers.append(ObservedLayer(m.group(1) or "", m.group(2).strip(), n))
            log.has_gpu_list = True
            log._form("sections" if saw_gpu else "headerless-lists")
            continue
        m = _OFFLOADED.search(line)
        if m:
            log._subgraph(m.group(1), n)
            log.has_dla_list = True
            log._form("offload-lines")
            continue
        m = _CANDIDATES.search(line)
        if m:
            log.offloaded = (int(m.group(1)), int(m.group(2)))
            log._form("offload-lines")
            continue
        if _NO_GPU.search(line):
            log.has_gpu_list = True  # TensorRT says so: the GPU list is known, and empty
            continue
        body = _strip(line)
        if section == "gpu" and log.old_format and body and not _warning_like(body):
            # TensorRT 7: "Layers running on GPU:" followed by one comma-separated line of layer names
            for name in (x.strip() for x in body.split(",")):
                if name:
                    log.gpu_layers.append(ObservedLayer("", name, n))
            continue
        if (section == "dla" and log.old_format and "{" in line) or _OLD_GROUPS_LINE.match(body):
            log.old_format = True
            log.has_dla_list = True
            log._form("tensorrt7-groups")
            for group in _OLD_GROUP.findall(body):
                names = [x.strip() for x in group.split(",") if x.strip()]
                if names:
                    log.dla_subgraphs.append(ObservedSubgraph(len(log.dla_subgraphs), ",".join(names), names[0],
                                                              names[-1], n))
            continue
        if _warning(log, body, n):
            log._form("warnings")
        _version(log, line)
    log.complete = saw_dla and saw_gpu
    return log


def _warning_like(body: str) -> bool:
    """A line of another message that TensorRT 7 may print inside its GPU section (a warning, a version)."""
    return " " in body.split(",", 1)[0].strip() or body.startswith(("[", "-", "&", "="))


def _warning(log: BuildLog, body: str, n: int) -> bool:
    for kind, pat in _WARNINGS:
        m = pat.search(body)
        if m:
            g = m.groupdict()
            layer = (g.get("layer") or "").strip()
            reason = (g.get("reason") or body).strip().rstrip(".").strip()
            if kind == "reason" and layer.lower().startswith(("warning", "error", "info")):
                layer = ""
            layer_kind = (g.get("kind") or "") if kind == "unsupported" else ""
            log.warnings.append(LogWarning(kind, layer, reason, n, layer_kind))
            return True
    return False


def _version(log: BuildLog, line: str) -> None:
    for key, pat in _VERSIONS:
        if key in log.versions:
            continue
        m = pat.search(line)
        if m:
            log.versions[key] = ".".join(str(int(x)) for x in m.groups()) if len(m.groups()) > 1 \
                else m.group(1).strip()


# ---------------------------------------------------------------------------------------------- layer JSON

# Engine layers that move data rather than compute: reformats, and the copies to and from DLA memory.
_DATA_MOVES = re.compile(r"^(?:Reformatting CopyNode for |.* (?:to|from) nvm$|.* copy finish$|"
                         r"\[?trainStation|\[?Reformat)", re.I)
_FOREIGN = re.compile(r"^\{ForeignNode\[(.*)\]\}$")


def _json_layer_info(text: str) -> dict[str, Any] | None:
    try:
        info = json.loads(text)
    except ValueError:
        return None
    return info if isinstance(info, dict) and isinstance(info.get("Layers"), list) else None


def _from_layer_info(info: dict[str, Any], source: str) -> BuildLog:
    """trtexec --exportLayerInfo / the engine inspector: every engine layer, in order. A DLA loadable is a
    `{ForeignNode[first...last]}` layer; so is a Myelin graph on the GPU, which the detailed form tells by its
    LayerType, and the names-only form by the absence of copies to/from DLA memory (`X to nvm`)."""
    log = BuildLog(source, has_dla_list=True, has_gpu_list=True, complete=True, forms=["layer-json"])
    layers = info["Layers"]
    names = [x if isinstance(x, str) else str(x.get("Name", "")) if isinstance(x, dict) else "" for x in layers]
    nvm = any(re.search(r" (?:to|from) nvm$", nm) for nm in names)
    for k, (item, name) in enumerate(zip(layers, names), 1):
        name = name[:MAX_LINE].strip()
        if not name or _DATA_MOVES.match(name):
            continue
        ltype = str(item.get("LayerType", "")) if isinstance(item, dict) else ""
        m = _FOREIGN.match(name)
        on_dla = m is not None and (ltype.lower() in ("dla", "foreignnode") or (not ltype and nvm))
        if m is not None and on_dla:
            log._subgraph(m.group(1), k)
        elif ltype.lower() not in ("reformat", "noop", "nooplayer"):
            log.gpu_layers.append(ObservedLayer("", name, k))
    return log


def read(path: str | Path, *, require_placement: bool = True) -> BuildLog:
    from .readers import MAX_LOG_BYTES, read_text
    p = Path(path)
    try:   # a regular file within MAX_LOG_BYTES (a FIFO would block); not UTF-8: read as Latin-1
        text = read_text(p, "a TensorRT build log", MAX_LOG_BYTES, latin1_fallback=True)
    except LogError:
        raise
    except DlarulesError as exc:
        raise LogError(exc.source, exc.problem) from None
    log = parse(text, str(p))
    if require_placement and not log.has_placement and not log.switched_layers:
        what = f" (it has {len(log.warnings)} DLA warning line(s), none naming a layer moved to the GPU)" \
            if log.warnings else ""
        raise LogError(p, "no DLA placement found (no 'Layers Running on DLA/GPU' lines, no offload lines, no "
                          "fallback warnings, no layer-info JSON); build with trtexec --verbose --useDLACore=0 "
                          f"--allowGPUFallback and save the whole output{what}")
    return log
