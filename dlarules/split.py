"""`dlarules split`: cut a model into the largest part that is one standalone DLA loadable (cuDLA, `trtexec
--buildDLAStandalone`) and the rest, which runs on the GPU and reads the DLA part's outputs.

How the DLA part is chosen (from the check report, never from node names):
  1. Per DLA subgraph k of the prediction, the DLA part is the largest set of ONNX nodes that is closed under
     predecessors (every input of a node in it is a graph input, a weight, or made inside it) and whose nodes
     have all their layers in subgraph k; nodes that make no layer (folded shape math, removed Identity) may
     join. Build-time nodes (Constant, folded) that only feed the rest are left out of it.
  2. The largest part wins, by layers (FLOPs break a tie).
  3. The part is cut out and checked again alone: it must give 0 GPU layers and 1 DLA subgraph. If a layer
     falls back there (a rule that reads a neighbour, a layer that became a network output), its node and
     everything after it leave the part and it is checked again (at most MAX_ROUNDS times).
The GPU part is the rest: its inputs are the DLA part's outputs it reads and the original inputs it still needs
(build-time integer tensors, e.g. a Reshape target computed from a shape, become weights there), its outputs the
original outputs the DLA part does not make. Both are proven together in onnxruntime against the original, and
the DLA part's I/O tensors are checked against rules/deploy/standalone_io.yaml (formats, precisions, shapes).
"""
from __future__ import annotations

import math
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from . import splice
from .core import Report, check
from .errors import DlarulesError, OptionError, RulesError, clip, first_line
from .flops import layer_flops
from .ruledb import RuleDB, Target

DLA_SUFFIX = ".dlapart.onnx"
GPU_SUFFIX = ".gpupart.onnx"
MAX_ROUNDS = 8
# The split changes nothing numerically: the chained parts must agree with the original almost exactly.
RTOL = 1e-5
ATOL = 1e-6
IO_FILE = Path("deploy") / "standalone_io.yaml"


# ------------------------------------------------------------------------------------------ requirements data

def load_io_requirements() -> dict[str, Any]:
    """What a standalone DLA loadable accepts at its I/O (rules/deploy/standalone_io.yaml, with sources)."""
    import yaml
    from .ruledb import packaged_rules_dir
    here = Path(__file__).resolve().parent
    candidates = []
    try:
        candidates.append(packaged_rules_dir() / IO_FILE)
    except RulesError:
        pass
    candidates += [here.parent / "rules" / IO_FILE, here / "_rules" / IO_FILE]
    for path in candidates:
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                raise RulesError(path, f"cannot read the standalone I/O requirements: {clip(exc, 120)}") from None
            if not isinstance(data, dict) or not isinstance(data.get("formats"), list):
                raise RulesError(path, "the standalone I/O requirements need a `formats:` list")
            return data
    raise RulesError(IO_FILE, "the standalone DLA I/O requirements are missing from the rule DB")


# ------------------------------------------------------------------------------------------------- results

@dataclass
class IOTensor:
    """One input or output of the DLA part, as the standalone loadable takes it."""

    name: str
    role: str                       # input | output
    shape: tuple | None
    dtype: str | None
    precision: str | None           # fp16 | int8: what crosses the loadable's boundary
    format: str | None              # trtexec name, e.g. chw16
    padded_shape: tuple | None = None
    problems: list[dict[str, str]] = field(default_factory=list)   # {problem, confidence}
    hints: list[str] = field(default_factory=list)

    @property
    def spec(self) -> str | None:
        return f"{self.precision}:{self.format}" if self.precision and self.format else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "shape": list(self.shape) if self.shape else None,
                "dtype": self.dtype, "precision": self.precision, "format": self.format, "trtexec": self.spec,
                "padded_shape": list(self.padded_shape) if self.padded_shape else None,
                "problems": self.problems, "hints": self.hints}


@dataclass
class SplitResult:
    source: str
    target: Target
    status: str                     # split | dla-only | nothing-on-dla
    report: Report                  # the whole model's check
    message: str = ""
    dla_model: onnx.ModelProto | None = None
    gpu_model: onnx.ModelProto | None = None
    dla_check: Report | None = None  # the DLA part checked alone
    subgraph: int | None = None      # the predicted DLA subgraph the part comes from
    layers: dict[str, int] = field(default_factory=dict)   # dla, total
    flops: dict[str, int] = field(default_factory=dict)    # dla, total
    rounds: int = 0                  # checks of the cut part (1: it held at once)
    stops: list[dict[str, Any]] = field(default_factory=list)   # GPU layers where the DLA part ends
    io: list[IOTensor] = field(default_factory=list)
    proof: Any = None                # prove.Proof
    commands: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "split" and self.proof is not None and self.proof.passed else 1

    @property
    def io_ok(self) -> bool:
        """No documented I/O requirement broken (unverified ones are warnings)."""
        return not any(p["confidence"] == "documented" for t in self.io for p in t.problems)

    def to_dict(self, written: Mapping[str, str] | None = None) -> dict[str, Any]:
        chk = self.dla_check
        return {"model": self.source, "status": self.status, "message": self.message,
                "target": {"hardware": self.target.hardware, "tensorrt": self.target.trt,
                           "platform": self.target.platform, "precision": self.target.mode_name},
                "dla_subgraph": self.subgraph, "layers": self.layers, "flops": self.flops,
                "chosen_by": "layers (FLOPs break a tie)",
                "dla_part_check": None if chk is None else {
                    "gpu_layers": chk.summary["layers_on_gpu"], "dla_subgraphs": chk.summary["dla_subgraphs"],
                    "layers": chk.summary["layers"], "rounds": self.rounds},
                "stops_at": self.stops, "io": [t.to_dict() for t in self.io], "io_ok": self.io_ok,
                "proof": self.proof.to_dict() if self.proof is not None else None,
                "trtexec": self.commands, "notes": self.notes, "outputs": dict(written or {})}


# ------------------------------------------------------------------------------------------------- outputs

def default_outputs(source: str | os.PathLike[str], output_dir: str | os.PathLike[str] | None = None
                    ) -> tuple[Path, Path]:
    """MODEL.dlapart.onnx and MODEL.gpupart.onnx, beside the model or in `output_dir`. Not fix's MODEL.dla.onnx:
    a fixed model can be split without either command replacing the other's file."""
    p = Path(source)
    stem = p.stem if p.suffix == ".onnx" else p.name
    folder = Path(output_dir) if output_dir is not None else p.parent
    return folder / (stem + DLA_SUFFIX), folder / (stem + GPU_SUFFIX)


def check_output_dir(output_dir: str | os.PathLike[str] | None) -> None:
    if output_dir is None:
        return
    d = Path(output_dir)
    if d.exists() and not d.is_dir():
        raise OptionError("--output-dir", f"{clip(str(d), 120)} is not a folder (-o names the folder both parts are "
                                          f"written to)")
    if not d.exists():
        raise OptionError("--output-dir", f"folder {clip(str(d), 120)} does not exist")


def vet_outputs(paths: Iterable[Path], source: str | os.PathLike[str], force: bool) -> None:
    """Before the work: never the input model (not even with --force), never an existing file without --force."""
    from .atomic import vet_output
    for out in paths:
        vet_output(out, [source], "model part")
        if out.exists() and not force:
            raise DlarulesError(out, "already exists; pass --force to replace it")


def write(result: SplitResult, dla_path: Path, gpu_path: Path, force: bool = False) -> dict[str, str]:
    """Write both parts atomically (checked by onnx.checker first); returns what was written."""
    from .atomic import save_model_atomic
    if result.dla_model is None or result.gpu_model is None:
        return {}
    vet_outputs([dla_path, gpu_path], result.source, force)
    parts = (("dla", result.dla_model, dla_path), ("gpu", result.gpu_model, gpu_path))
    for key, model, path in parts:   # both checked before either is written
        if model.ByteSize() > 2_000_000_000:
            continue
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            own = _checker_problem(result.source)
            if own is not None:   # the user's model has the defect already: say so, about it
                raise DlarulesError(result.source, f"fails onnx.checker itself ({clip(own, 120)}), and so would "
                                                   f"its parts; nothing written") from None
            raise DlarulesError(path, f"the {key.upper()} part fails onnx.checker ({clip(exc, 120)}); nothing "
                                      f"written") from None
    out = {}
    for key, model, path in parts:
        save_model_atomic(model, path, external=model.ByteSize() > 2_000_000_000, inputs=[result.source])
        out[key] = str(path)
    return out


def _checker_problem(source: str | os.PathLike[str]) -> str | None:
    try:
        onnx.checker.check_model(str(source))
    except Exception as exc:   # noqa: BLE001 - any reason the file does not check is the answer
        return first_line(exc) or type(exc).__name__
    return None


# -------------------------------------------------------------------------------------------------- the cut

class _Net:
    """The named model and its check report as the cut needs them: per node its layers, producers, weights."""

    def __init__(self, model: onnx.ModelProto, report: Report) -> None:
        self.model = model
        self.report = report
        g = model.graph
        self.graph = report.layer_graph.graph
        self.nodes = list(g.node)
        self.inits = {i.name: i for i in g.initializer}
        self.inputs = [i.name for i in g.input if i.name not in self.inits]
        self.outputs = [o.name for o in g.output]
        self.producer = {o: n for n in self.nodes for o in n.output if o}
        self.layers: dict[str, list[int]] = {}
        for v in report.layers:
            for n in v.nodes:
                self.layers.setdefault(n, []).append(v.index)
        self.device = report.placement.device
        self.by_layer = {x.index: x for x in report.layer_graph.layers}
        self.verdict = {v.index: v for v in report.layers}
        gnodes = {n.name: n for n in self.graph.nodes}
        # build-time nodes: weights and folded math, which may be computed on either side of the cut
        self.buildtime = {n.name for n in self.nodes
                          if n.op_type == "Constant" or (n.name in gnodes and gnodes[n.name].index in self.graph.folded)}

    def closure(self, k: int, banned: set[str]) -> list[str]:
        """The largest predecessor-closed node set whose layers all run in DLA subgraph k (names, in order)."""
        avail = set(self.inputs) | set(self.inits) | {""}
        part = []
        for n in self.nodes:
            if n.name in banned:
                continue
            own = self.layers.get(n.name, [])
            ok = n.name in self.buildtime or all(self.device.get(i) == f"DLA:{k}" for i in own)
            if ok and all(i in avail for i in n.input):
                part.append(n)
                avail.update(o for o in n.output if o)
        # keep what leads to a layer of the part or to a graph output: the rest belongs to the GPU side
        keep: list[str] = []
        read: set[str] = set(self.outputs)
        for n in reversed(part):
            if (self.layers.get(n.name) and n.name not in self.buildtime) or any(o in read for o in n.output):
                keep.append(n.name)
                read.update(n.input)
        keep.reverse()
        return keep

    def part_layers(self, names: Iterable[str]) -> set[int]:
        return {i for n in names if n not in self.buildtime for i in self.layers.get(n, [])}

    def flops(self, layers: Iterable[int]) -> int:
        return sum(layer_flops(self.by_layer[i]) for i in layers if i in self.by_layer)

    def stops(self, names: set[str]) -> list[dict[str, Any]]:
        """The layers just past the DLA part: nodes outside it whose inputs it makes, with why they are not in it."""
        avail = set(self.inputs) | set(self.inits) | {o for n in self.nodes if n.name in names for o in n.output}
        out, seen = [], set()
        for n in self.nodes:
            if n.name in names or n.name in self.buildtime or not any(i in avail for i in n.input if i):
                continue
            for i in self.layers.get(n.name, []):
                v = self.verdict[i]
                if i in seen or self.device.get(i, "GPU") != "GPU":
                    continue
                seen.add(i)
                out.append({"layer": f"{v.kind}: {v.name}", "rules": [f.rule for f in v.findings]
                            or ["its DLA subgraph is another loadable"]})
        return out

    # -- building the two models

    def _value_info(self, name: str) -> onnx.ValueInfoProto:
        return splice._value_info(self.graph, name)

    def _resolve(self, core: list[onnx.NodeProto], needed: list[str]) -> tuple[list[onnx.NodeProto], list, list[str]]:
        """What a part made of `core` nodes needs besides them: weights, build-time nodes (or their integer values
        as weights), and the tensors it must take as inputs (graph inputs or the other part's outputs)."""
        made = {o for n in core for o in n.output if o}
        extra: dict[str, onnx.NodeProto] = {}
        inits: dict[str, onnx.TensorProto] = {}
        inputs: list[str] = []
        seen: set[str] = set()
        work = list(needed)
        while work:
            t = work.pop(0)
            if not t or t in seen or t in made:
                continue
            seen.add(t)
            if t in self.inits:
                inits[t] = self.inits[t]
                continue
            p = self.producer.get(t)
            if p is not None and p.name in self.buildtime:
                tensor = self.graph.tensors.get(t)
                value = tensor.value() if tensor is not None else None
                if p.op_type != "Constant" and value is not None and (np.issubdtype(value.dtype, np.integer)
                                                                      or value.dtype == np.bool_):
                    # shape math folded at build time: its value, so the part need not read the tensor it measured
                    inits[t] = numpy_helper.from_array(np.asarray(value), t)
                    continue
                if p.name not in extra:
                    extra[p.name] = p
                    made.update(o for o in p.output if o)
                    work += list(p.input)
                    for a in p.attribute:   # an outer-scope name read inside a subgraph
                        if a.type == onnx.AttributeProto.GRAPH:
                            work += _outer_names(a.g)
                continue
            inputs.append(t)
        order = {id(n): k for k, n in enumerate(self.nodes)}
        nodes = sorted([*core, *extra.values()], key=lambda n: order[id(n)])
        return nodes, list(inits.values()), inputs

    def _model(self, nodes: list[onnx.NodeProto], inits: list, inputs: list[str], outputs: list[str],
               name: str) -> onnx.ModelProto:
        rank = {n: k for k, n in enumerate(self.inputs)}
        ins = sorted(inputs, key=lambda n: (rank.get(n, len(rank)), inputs.index(n)))
        g = helper.make_graph(nodes, name, [self._value_info(i) for i in ins],
                              [self._value_info(o) for o in outputs], initializer=inits)
        m = helper.make_model(g, opset_imports=list(self.model.opset_import))
        m.ir_version = max(self.model.ir_version, 4)
        m.functions.extend(self.model.functions)
        return m

    def build(self, names: list[str]) -> tuple[onnx.ModelProto, onnx.ModelProto | None]:
        """The DLA part of these nodes and the GPU part of the rest (None: the rest computes nothing)."""
        chosen = set(names)
        dla_core = [n for n in self.nodes if n.name in chosen and n.name not in self.buildtime]
        dla_made = {o for n in dla_core for o in n.output if o}
        gpu_core = [n for n in self.nodes if n.name not in chosen and n.name not in self.buildtime]
        gpu_outputs = [o for o in self.outputs if o not in dla_made]
        gpu = None
        cross: set[str] = set()
        if gpu_core and gpu_outputs:
            nodes, inits, inputs = self._resolve(gpu_core, [i for n in gpu_core for i in n.input] + gpu_outputs)
            gpu = self._model(nodes, inits, inputs, gpu_outputs, "gpu_part")
            splice.prune(gpu)
            if not gpu.graph.node:
                gpu = None
            else:
                used = {i for n in gpu.graph.node for i in n.input} | {o.name for o in gpu.graph.output}
                keep = [vi for vi in gpu.graph.input if vi.name in used]
                del gpu.graph.input[:]
                gpu.graph.input.extend(keep)
                cross = {vi.name for vi in keep if vi.name in dla_made}
        dla_outputs = [o for o in self.outputs if o in dla_made]
        dla_outputs += [o for n in dla_core for o in n.output if o in cross and o not in dla_outputs]
        nodes, inits, inputs = self._resolve(dla_core, [i for n in dla_core for i in n.input])
        dla = self._model(nodes, inits, inputs, dla_outputs, "dla_part")
        splice.prune(dla)
        return dla, gpu


def _outer_names(g: onnx.GraphProto) -> list[str]:
    inner = {i.name for i in g.input} | {i.name for i in g.initializer} | {o for n in g.node for o in n.output}
    return [i for n in g.node for i in n.input if i and i not in inner]


def split(source: str | os.PathLike[str], db: RuleDB, target: Target, *,
          input_shapes: Mapping[str, tuple[int, ...]] | None = None, verify: bool = True,
          outputs: tuple[Path, Path] | None = None) -> SplitResult:
    """Find the DLA part and the GPU part and prove them; nothing is written here (see `write`). `outputs`: where
    the parts will be written (default_outputs), for the trtexec commands."""
    from .fix import _name_nodes, load_full
    from .model import resolve_input_shapes
    from .prove import quiet_onnxruntime
    quiet_onnxruntime()
    original = load_full(source)
    shapes = resolve_input_shapes(original, input_shapes, str(source)) or None
    model = onnx.ModelProto()
    model.CopyFrom(original)
    _name_nodes(model)   # the report and the cut name nodes; nameless ones get TensorRT's node_of_<output>
    try:
        report = check(model, db, target=target, input_shapes=shapes)
    except DlarulesError as exc:
        if exc.source is None or str(exc.source).startswith("<"):
            raise DlarulesError(source, exc.problem) from None
        raise
    net = _Net(model, report)
    result = SplitResult(str(source), target, "nothing-on-dla", report)
    total = {v.index for v in report.layers}
    result.layers["total"] = len(total)
    result.flops["total"] = net.flops(total)
    best: tuple[tuple[int, int], int, list[str]] | None = None
    for sg in report.placement.subgraphs:
        if sg.moved_to_gpu:
            continue
        names = net.closure(sg.index, set())
        lay = net.part_layers(names)
        score = (len(lay), net.flops(lay))
        if lay and (best is None or score > best[0]):
            best = (score, sg.index, names)
    if best is None:
        first = net.stops(set())
        result.stops = first
        why = "; ".join(f"{s['layer']} ({', '.join(s['rules'])})" for s in first[:3]) or "no layer runs on DLA"
        result.message = clip(f"nothing to put on DLA: no DLA layer is reachable from the inputs without a GPU "
                              f"layer (first: {why})", 400)
        return result
    _, k, names = best
    result.subgraph = k
    banned: set[str] = set()
    dla = gpu = None
    chk = None
    for rounds in range(1, MAX_ROUNDS + 1):
        if not net.part_layers(names):
            break
        dla, gpu = net.build(names)
        chk = check(dla, db, target=target)
        result.rounds = rounds
        live = [s for s in chk.placement.subgraphs if not s.moved_to_gpu]
        if not chk.placement.gpu_layers and len(live) == 1:
            break
        # the cut part alone does not hold: drop the nodes of what falls back (and, by closure, what follows)
        if chk.placement.gpu_layers:
            by = {v.index: v for v in chk.layers}
            banned |= {n for i in chk.placement.gpu_layers for n in by[i].nodes}
        else:
            banned |= {n for s in live[1:] for i in s.layers for n in chk.layers[i].nodes}
        names = net.closure(k, banned)
        chk = None
    if chk is None:
        result.message = (f"nothing to put on DLA: the DLA part of subgraph {k} did not hold alone after "
                          f"{result.rounds} check(s) (its layers fell back when cut out)")
        return result
    lay = net.part_layers(names)
    result.layers["dla"] = len(lay)
    result.flops["dla"] = net.flops(lay)
    result.dla_check = chk
    result.stops = net.stops(set(names))
    result.io = check_io(dla, chk, target)
    result.dla_model = dla
    if gpu is None:
        result.status = "dla-only"
        result.message = ("no split needed: the whole model is one DLA loadable with no GPU layer; build it as it "
                          "is (the trtexec command below)")
        result.commands = commands(result, Path(source), None)
        result.dla_model = None
        return result
    result.status = "split"
    result.gpu_model = gpu
    result.commands = commands(result, *(outputs or default_outputs(source)))
    if verify:
        from .prove import prove_chained
        result.proof = prove_chained(model, dla, gpu, input_shapes=shapes, rtol=RTOL, atol=ATOL,
                                     source=str(source))
    result.message = (f"the DLA part holds {len(lay)} of {len(total)} layers "
                      f"({_pct(result.flops['dla'], result.flops['total'])} of FLOPs) from DLA subgraph {k}")
    return result


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.1f}%" if b else "100.0%"


# ------------------------------------------------------------------------------------------------ I/O check

def _precision_of(t: Target, v: Any, dtype: str | None) -> str | None:
    if v is not None and getattr(v, "precision", None) in ("fp16", "int8"):
        return v.precision
    if not t.chain:   # strongly typed: the tensor's own type
        return {"float16": "fp16", "int8": "int8"}.get(dtype or "")
    return t.chain[-1] if "fp16" in t.chain else t.chain[0]


def check_io(model: onnx.ModelProto, chk: Report, target: Target) -> list[IOTensor]:
    """Every input and output of the DLA part against what a standalone loadable accepts (standalone_io.yaml)."""
    req = load_io_requirements()
    formats = req["formats"]
    rank = int(req.get("rank", {}).get("value", 4))
    rank_conf = req.get("rank", {}).get("confidence", "unverified")
    allowed = set(req.get("precisions", {}).get("allowed", ["fp16", "int8"]))
    graph = chk.layer_graph.graph
    producer: dict[str, Any] = {}
    readers: dict[str, list[Any]] = {}
    for v in chk.layers:
        if v.layer is None:
            continue
        for x in v.layer.outputs:
            producer[x.name] = v
        for x in v.layer.inputs:
            readers.setdefault(x.name, []).append(v)
    inits = {i.name for i in model.graph.initializer}
    out = []
    for role, infos in (("input", [i for i in model.graph.input if i.name not in inits]),
                        ("output", list(model.graph.output))):
        for vi in infos:
            t = graph.tensors.get(vi.name)
            shape = tuple(t.shape) if t is not None and t.shape is not None else None
            dtype = t.dtype if t is not None else None
            near = producer.get(vi.name) if role == "output" else next(iter(readers.get(vi.name, [])), None)
            prec = _precision_of(target, near, dtype)
            io = IOTensor(vi.name, role, shape, dtype, prec, None)
            if dtype not in (None, "float32", "float16", "int8"):
                io.problems.append({"problem": f"{dtype} tensor: a DLA loadable's I/O is FP16 or INT8 only",
                                    "confidence": "documented"})
            elif not target.chain and dtype == "float32":
                io.problems.append({"problem": "float32 tensor in a strongly typed build: DLA I/O is FP16 or INT8 "
                                               "(convert the model to FP16 first)", "confidence": "documented"})
            if prec not in allowed:
                prec = io.precision = None
            if shape is None or not all(isinstance(d, int) and d > 0 for d in shape):
                io.problems.append({"problem": f"shape {_shape(shape)} is not static: a loadable has one shape "
                                               f"(give --input-shape)", "confidence": "documented"})
            elif len(shape) != rank:
                io.problems.append({"problem": f"rank {len(shape)} (shape {_shape(shape)}): the DLA I/O formats "
                                               f"are {rank}-D NCHW layouts", "confidence": rank_conf})
            key = "inputs" if role == "input" else "outputs"
            fmt = next((f for f in formats if prec in (f.get(key) or []) and f.get("channel_multiple")), None) \
                or next((f for f in formats if prec in (f.get(key) or [])), None)
            if fmt is not None and prec is not None:
                io.format = fmt["name"]
                mult = (fmt.get("channel_multiple") or {}).get(prec)
                if mult and shape and len(shape) == rank and isinstance(shape[1], int):
                    c = shape[1]
                    padded = int(math.ceil(c / mult) * mult)
                    io.padded_shape = (shape[0], padded, *shape[2:])
                    if padded != c:
                        io.hints.append(f"{fmt['enum']}: C={c} is padded to {padded} in the buffer")
            if role == "input" and shape and len(shape) == rank and prec:
                hwc4 = next((f for f in formats if f.get("first_layer")), None)
                users = readers.get(vi.name, [])
                if hwc4 and shape[1] in hwc4.get("channels", []) and users \
                        and all(u.kind == hwc4["first_layer"] for u in users):
                    io.hints.append(f"also accepted: {prec}:{hwc4['name']} (C={shape[1]}, read by a convolution "
                                    f"in {prec})")
            out.append(io)
    return out


def _shape(shape: tuple | None) -> str:
    return "x".join(str(d) for d in shape) if shape else "unknown"


# ---------------------------------------------------------------------------------------------- commands

def commands(result: SplitResult, dla_path: Path, gpu_path: Path | None) -> dict[str, str]:
    """The trtexec lines: the DLA part as a standalone loadable (no GPU fallback), the GPU part as an engine."""
    t = result.target
    req = load_io_requirements()
    mode = list(t.mode.trtexec) if t.mode is not None else [f"--{t.precision}"]
    core = t.dla_core if t.dla_core is not None else 0
    ins = [x.spec or "fp16:chw16" for x in result.io if x.role == "input"]
    outs = [x.spec or "fp16:chw16" for x in result.io if x.role == "output"]
    dla = ["trtexec", f"--onnx={dla_path}", f"--useDLACore={core}", *req["trtexec"]["flags"],
           f"--saveEngine={_with_suffix(dla_path, '.loadable')}", *mode,
           f"--inputIOFormats={','.join(ins)}", f"--outputIOFormats={','.join(outs)}"]
    out = {"dla": " ".join(shlex.quote(a) for a in dla)}
    if gpu_path is not None:
        gpu = ["trtexec", f"--onnx={gpu_path}", f"--saveEngine={_with_suffix(gpu_path, '.engine')}", *mode]
        out["gpu"] = " ".join(shlex.quote(a) for a in gpu)
    if "int8" in t.chain:
        result.notes.append("INT8: give both builds a calibration cache (--calib=CACHE); without one trtexec uses "
                            "placeholder ranges and the numbers are not meaningful")
    if gpu_path is not None:
        result.notes.append("the GPU part reads the DLA part's outputs: in the application, pass them on (a cuDLA "
                            "output buffer in the formats above; --inputIOFormats on the GPU build can take the "
                            "same formats and save a reformat)")
    return out


def _with_suffix(path: Path, suffix: str) -> Path:
    return path.with_name((path.stem if path.suffix == ".onnx" else path.name) + suffix)


# ------------------------------------------------------------------------------------------------ the text

def render(result: SplitResult, written: Mapping[str, str] | None = None) -> str:
    t = result.target
    lines = [f"dlarules split {result.source}  [{t}]", ""]
    s = result.report.summary
    lines.append(f"whole model: {s['layers_on_dla']} layers on DLA, {s['layers_on_gpu']} on GPU, "
                 f"{s['dla_subgraphs']} DLA subgraph(s)")
    if result.status == "nothing-on-dla":
        lines.append(result.message)
        return "\n".join(lines) + "\n"
    chk = result.dla_check
    lines.append(f"DLA part: {result.layers.get('dla', 0)} of {result.layers['total']} layers, "
                 f"{_pct(result.flops.get('dla', 0), result.flops['total'])} of FLOPs, from DLA subgraph "
                 f"{result.subgraph} (the largest predecessor-closed part, by layers)")
    if chk is not None:
        held = "at once" if result.rounds == 1 else f"after {result.rounds - 1} cut(s) back"
        lines.append(f"  checked alone: {chk.summary['layers_on_gpu']} GPU layers, {chk.summary['dla_subgraphs']} "
                     f"DLA subgraph ({held})")
    if result.stops:
        lines.append("  it ends before: " + "; ".join(f"{x['layer']} ({', '.join(x['rules'])})"
                                                      for x in result.stops[:4])
                     + (f"; and {len(result.stops) - 4} more" if len(result.stops) > 4 else ""))
    lines.append("")
    lines.append("standalone loadable I/O (rules/deploy/standalone_io.yaml):")
    for io in result.io:
        mark = "ok" if not io.problems else ("PROBLEM" if any(p["confidence"] == "documented" for p in io.problems)
                                             else "warning")
        lines.append(f"  {io.role:6s} {io.name}  {_shape(io.shape)} {io.dtype or '?'} -> {io.spec or '?'}  [{mark}]")
        for p in io.problems:
            lines.append(f"         {p['problem']} [{p['confidence']}]")
        for h in io.hints:
            lines.append(f"         {h}")
    if result.proof is not None:
        p = result.proof
        worst = max((o.max_abs for o in p.outputs), default=0.0)
        lines.append("")
        lines.append(f"proof (onnxruntime, {p.inputs}): DLA part then GPU part vs the original, "
                     f"{len(p.outputs)} output(s), max abs error {worst:.3g} (rtol {p.rtol:g}, atol {p.atol:g}): "
                     f"{'passed' if p.passed else 'FAILED'}")
    if result.commands:
        lines.append("")
        lines.append("build:")
        for key, cmd in result.commands.items():
            lines.append(f"  {key.upper()}: {cmd}")
        for n in result.notes:
            lines.append(f"  note: {n}")
    lines.append("")
    if result.status == "dla-only":
        lines.append(result.message)
    elif written:
        lines.append(f"wrote {written['dla']} and {written['gpu']}")
    elif result.proof is not None and not result.proof.passed:
        lines.append("nothing written: the chained parts do not compute what the original computes (--force "
                     "writes them anyway)")
    else:
        lines.append("nothing written")
    return "\n".join(lines) + "\n"
