"""Loading an ONNX model into plain data: nodes, tensors with shapes, dtypes and constness.

What TensorRT's builder sees is not the raw ONNX graph: initializers are weights, and every node whose
inputs are all build-time constants (the Shape -> Gather -> Concat math that feeds a Resize, ConstantOfShape
weights, ...) is folded before layers are placed. `load_graph` does the same folding, so those nodes never
become layers.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, shape_inference

from .errors import DlarulesError, ModelError, OptionError, clip, first_line
from . import folding

_DTYPE_NAMES = {
    TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.DOUBLE: "float64",
    TensorProto.BFLOAT16: "bfloat16", TensorProto.INT8: "int8", TensorProto.UINT8: "uint8",
    TensorProto.INT16: "int16", TensorProto.UINT16: "uint16", TensorProto.INT32: "int32",
    TensorProto.UINT32: "uint32", TensorProto.INT64: "int64", TensorProto.UINT64: "uint64",
    TensorProto.BOOL: "bool", TensorProto.STRING: "string",
}
FLOAT_DTYPES = frozenset({"float32", "float16", "float64", "bfloat16"})

# An initializer bigger than this is hidden from shape inference (its dims are enough), which keeps
# inference from copying every weight through protobuf serialization.
_SKELETON_MAX_BYTES = 4096

Dim = int | str | None
Shape = tuple[Dim, ...]


def dtype_name(elem_type: int) -> str:
    return _DTYPE_NAMES.get(elem_type, f"type{elem_type}")


@dataclass(slots=True)
class Tensor:
    """One ONNX tensor as TensorRT would see it. `const` = known at build time (weights, folded math)."""

    name: str
    shape: Shape | None = None
    dtype: str | None = None
    const: bool = False
    weights: bool = False       # an initializer or Constant output: what TensorRT's parser takes as weights
    _value: Any = None          # np.ndarray, or a TensorProto still to decode, or None
    _value_known: bool = False
    _static: bool | None = None  # cache; shapes are final once the graph is loaded
    origin: str | None = None    # shape not static: the node (or input) that makes it so

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def static(self) -> bool:
        s = self._static
        if s is None:
            shape = self.shape
            s = shape is not None and all(d.__class__ is int and d >= 0 for d in shape)
            self._static = s
        return s

    def value(self) -> np.ndarray | None:
        """The constant's value, decoded on first use (weights are not read unless a rule needs them)."""
        v = self._value
        if v is not None and not isinstance(v, np.ndarray):
            v = v.decode()  # LazyInitializer or folding.LazyFold
            self._value = v
        return v if isinstance(v, np.ndarray) else None

    def set_value(self, v: Any) -> None:
        self._value = v
        self._value_known = v is not None


@dataclass(slots=True)
class Node:
    index: int
    name: str                   # the ONNX name, or TensorRT's "node_of_<first output>" for nameless nodes
    op: str
    domain: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any]


@dataclass
class Graph:
    """The model as plain data. `folded` holds the indices of nodes TensorRT evaluates at build time."""

    path: str | None
    opset: int
    nodes: list[Node]
    tensors: dict[str, Tensor]
    inputs: list[str]
    outputs: list[str]
    folded: set[int] = field(default_factory=set)
    model: onnx.ModelProto | None = None
    base_dir: str | None = None

    def tensor(self, name: str) -> Tensor:
        t = self.tensors.get(name)
        if t is None:
            t = self.tensors[name] = Tensor(name)
        return t

    def node_by_name(self, name: str) -> Node | None:
        for n in self.nodes:
            if n.name == name:
                return n
        return None


# ---------------------------------------------------------------------------------------------- loading

def parse_input_shapes(specs: Iterable[str] | None) -> dict[str, tuple[int, ...]]:
    """['images:1x3x640x640'] -> {'images': (1, 3, 640, 640)}. The name may itself contain ':'. trtexec's
    --shapes list form ('a:1x3x8x8,b:1x4') is accepted too, so a trtexec command line can be reused."""
    out: dict[str, tuple[int, ...]] = {}
    items = []
    for spec in specs or ():
        parts = str(spec).split(",")
        items += parts if len(parts) > 1 and all(":" in p for p in parts) else [spec]
    for spec in items:
        name, sep, dims = str(spec).rpartition(":")
        if not sep:
            dims = str(spec)  # DIMS alone: the model's only input (resolved in resolve_input_shapes)
        if sep and not name or not re.fullmatch(r"\d+(x\d+)*", dims.strip()):
            raise OptionError("--input-shape", f"{_quote(spec)} is not NAME:DIMS or DIMS, such as images:1x3x640x640")
        shape = _bounded_dims(spec, dims.strip())
        if not name and (out or len(items) > 1):
            raise OptionError("--input-shape", f"{_quote(spec)} has no input name; give NAME:DIMS for each input of "
                                               f"a model with several")
        out[name] = shape
    return out


# What --input-shape accepts: TensorRT dims are int32 (each <= 2^31-1), and a tensor's element count must fit
# int64 for shape inference; the proof's own, much smaller, budget is prove.MAX_PROOF_ELEMENTS.
MAX_DIM = 2**31 - 1
MAX_RANK = 16
MAX_ELEMENTS = 2**63 - 1


def _quote(spec: object) -> str:
    return repr(clip(spec, 60))


def _bounded_dims(spec: object, dims: str) -> tuple[int, ...]:
    parts = dims.split("x")
    if len(parts) > MAX_RANK:
        raise OptionError("--input-shape", f"{_quote(spec)}: {len(parts)} dims, over the rank limit of {MAX_RANK}")
    shape = []
    for d in parts:
        # the length first: int() of thousands of digits is slow, then refused by Python itself
        v = int(d) if len(d) <= 12 else MAX_DIM + 1
        if v <= 0 or v > MAX_DIM:
            raise OptionError("--input-shape", f"{_quote(spec)}: every dimension must be a positive integer "
                                               f"of at most {MAX_DIM} (got {clip(d, 20)})")
        shape.append(v)
    total = 1
    for v in shape:
        total *= v
    if total > MAX_ELEMENTS:
        raise OptionError("--input-shape", f"{_quote(spec)}: {total:.3g} elements, over the int64 limit")
    return tuple(shape)


def resolve_input_shapes(model: onnx.ModelProto, overrides: Mapping[str, tuple[int, ...]] | None,
                         path: str | None = None) -> dict[str, tuple[int, ...]]:
    """Name the input of an unnamed --input-shape (key ''): allowed only for a model with one input."""
    out = dict(overrides or {})
    if "" not in out:
        return out
    init_names = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in init_names]
    if len(names) != 1:
        raise OptionError("--input-shape", f"the model has {len(names)} inputs ({clip(', '.join(names), 120) or 'none'}); "
                                           f"name the one to fix as NAME:DIMS")
    out[names[0]] = out.pop("")
    return out


def read_model(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Parse an ONNX file without reading external weights; every failure is a one-line ModelError.
    The file goes through readers.read_bytes: a regular file of at most readers.MAX_MODEL_BYTES (a FIFO or a
    4.5 GB file is refused before anything is read)."""
    from . import readers
    p = Path(path)
    try:
        data = readers.read_bytes(p, "an ONNX model", readers.MAX_MODEL_BYTES,
                                  " (keep large weights as external data, or set DLARULES_MAX_MODEL_MB)")
    except DlarulesError as exc:
        raise ModelError(exc.source, exc.problem) from None
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise ModelError(p, f"not a readable ONNX model ({first_line(exc)}); is the file truncated or not ONNX?") \
            from None
    finally:
        del data
    if not model.opset_import or not model.HasField("graph") or not model.graph.node and not model.graph.output:
        raise ModelError(p, "not an ONNX model (no graph or opset found); is the file truncated or not ONNX?")
    check_text(model, p)
    _check_external_data(model, p.parent, p)
    return model


def check_text(model: onnx.ModelProto, source: object) -> None:
    """Names and op types must be UTF-8 text: protobuf hands back bytes for a corrupt string, which would end up
    in reports (JSON cannot hold bytes) and in rewritten models."""
    g = model.graph
    str_ = str
    groups: list[tuple[str, Iterable[Any]]] = [("graph input", (v.name for v in g.input)),
                                               ("graph output", (v.name for v in g.output)),
                                               ("value_info", (v.name for v in g.value_info)),
                                               ("initializer", (i.name for i in g.initializer))]
    for k, n in enumerate(g.node):
        # the common case in one pass without formatting anything: every field a str
        if n.name.__class__ is str_ and n.op_type.__class__ is str_ and n.domain.__class__ is str_ and \
                all(x.__class__ is str_ for x in n.input) and all(x.__class__ is str_ for x in n.output):
            continue
        groups.append((f"node {k}", [n.name, n.op_type, n.domain, *n.input, *n.output]))
    for what, texts in groups:
        for text in texts:
            if text.__class__ is not str_:
                raise ModelError(source, f"{what}: {clip(repr(text), 60)} is not valid UTF-8 text; the file is "
                                         f"corrupt")


def _check_external_data(model: onnx.ModelProto, base: Path, path: Path) -> None:
    from .readers import is_regular
    for init in model.graph.initializer:
        if init.data_location != TensorProto.EXTERNAL:
            continue
        loc = next((e.value for e in init.external_data if e.key == "location"), None)
        name = clip(repr(init.name), 60)
        if not loc or loc.__class__ is not str:
            raise ModelError(path, f"initializer {name} has external data without a (text) location")
        # is_regular: no exception for a name over the file system's limit, a NUL byte or a FIFO
        if not is_regular(base / loc):
            raise ModelError(path, f"external data file {clip(repr(loc), 60)} (for initializer {name}) is missing "
                                   f"next to the model or not a regular file")


@dataclass(slots=True)
class LazyInitializer:
    """An initializer whose bytes are decoded (or read from external data) only when asked for."""

    proto: TensorProto
    base_dir: str

    def decode(self) -> np.ndarray | None:
        try:
            return onnx.numpy_helper.to_array(self.proto, base_dir=self.base_dir)
        except Exception:
            return None


def _attr_value(a: AttributeProto) -> Any:
    t = a.type
    if t == AttributeProto.INT:
        return a.i
    if t == AttributeProto.INTS:
        return list(a.ints)
    if t == AttributeProto.FLOAT:
        return a.f
    if t == AttributeProto.FLOATS:
        return list(a.floats)
    if t == AttributeProto.STRING:
        return a.s.decode("utf-8", "replace")
    if t == AttributeProto.TENSOR:
        return a.t
    if t == AttributeProto.STRINGS:
        return [s.decode("utf-8", "replace") for s in a.strings]
    if t == AttributeProto.GRAPH:
        return a.g
    return onnx.helper.get_attribute_value(a)


def _shape_of(type_proto: onnx.TypeProto, cache: dict[bytes, Shape] | None = None) -> tuple[Shape | None, str | None]:
    # Hot (once per tensor). Reading dims one by one is the costly part, and networks repeat a few shapes,
    # so shapes are cached by their serialized bytes (one C call).
    if type_proto.WhichOneof("value") != "tensor_type":
        return None, None
    tt = type_proto.tensor_type
    elem = tt.elem_type
    dtype = _DTYPE_NAMES.get(elem, f"type{elem}") if elem else None
    if not tt.HasField("shape"):
        return None, dtype
    shape_proto = tt.shape
    if cache is None:
        return _dims(shape_proto), dtype
    key = shape_proto.SerializeToString()
    shape = cache.get(key)
    if shape is None:
        shape = cache[key] = _dims(shape_proto)
    return shape, dtype


def _dims(shape_proto: onnx.TensorShapeProto) -> Shape:
    return tuple(v if (v := d.dim_value) > 0 else (d.dim_param or "?") for d in shape_proto.dim)


def _default_opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return 0


_DIM_NAME = re.compile(r"[A-Za-z_][\w.]{0,23}")


def format_shape(shape: Shape | None) -> str:
    """1x3x640x640; a symbolic dim shows as its name when that is a short name (`batch`), else `?`: inference
    writes whole expressions (`floor(2.0*((height - 1)//2) ...)`) that no one can read in a message."""
    if shape is None:
        return "?"
    if not shape:
        return "scalar"
    return "x".join(str(d) if d.__class__ is int else (d if d and _DIM_NAME.fullmatch(d) else "?") for d in shape)


def _apply_input_shapes(model: onnx.ModelProto, overrides: Mapping[str, tuple[int, ...]], path: str | None) -> None:
    init_names = {i.name for i in model.graph.initializer}
    by_name = {i.name: i for i in model.graph.input if i.name not in init_names}
    for name, shape in resolve_input_shapes(model, overrides, path).items():
        vi = by_name.get(name)
        if vi is None:
            known = clip(", ".join(sorted(by_name)) or "none", 100)
            raise OptionError("--input-shape", f"the model has no input {_quote(name)} (inputs: {known})")
        tt = vi.type.tensor_type
        old = [d for d in tt.shape.dim]
        if old and len(old) != len(shape):
            raise OptionError("--input-shape", f"input {_quote(name)} has rank {len(old)}, got {len(shape)} dims")
        for d, want in zip(old, shape):
            if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != want:
                raise OptionError("--input-shape", f"input {_quote(name)} has a fixed dim {d.dim_value}, got {want}")
        tt.shape.ClearField("dim")
        for want in shape:
            tt.shape.dim.add().dim_value = want


def _static_info(vi: onnx.ValueInfoProto) -> bool:
    """A value_info whose shape is fully static. Symbolic ones are the exporter's guesses for dynamic inputs
    (`floor(2.0*((height - 1)//2) ...)`): stale once --input-shape fixes the inputs, so inference derives anew."""
    tt = vi.type.tensor_type
    return vi.type.WhichOneof("value") == "tensor_type" and tt.HasField("shape") and \
        all(d.HasField("dim_value") and d.dim_value > 0 for d in tt.shape.dim)


def _shapeless(vi: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    if vi.type.WhichOneof("value") != "tensor_type":
        return vi
    return onnx.helper.make_tensor_value_info(vi.name, vi.type.tensor_type.elem_type, None)


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without large weights, for fast shape inference (dims are all inference needs of them), and
    without the symbolic shapes the exporter wrote (static ones are kept)."""
    clean = all(_static_info(vi) for vi in model.graph.value_info) and \
        all(_static_info(o) for o in model.graph.output)
    if clean and model.ir_version >= 4 and all(i.data_location != TensorProto.EXTERNAL and
                                               i.ByteSize() <= _SKELETON_MAX_BYTES for i in model.graph.initializer):
        return model  # nothing to strip: no copy
    sk = onnx.ModelProto()
    # IR < 4 needs initializers listed as inputs; the skeleton drops that listing, so it claims IR 4.
    sk.ir_version = max(model.ir_version, 4)
    sk.opset_import.extend(model.opset_import)
    g, src = sk.graph, model.graph
    g.node.extend(src.node)
    init_names = set()
    for init in src.initializer:
        init_names.add(init.name)
        small = init.data_location != TensorProto.EXTERNAL and init.ByteSize() <= _SKELETON_MAX_BYTES
        if small:
            g.initializer.append(init)
        else:
            g.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    g.input.extend(i for i in src.input if i.name not in init_names)
    g.output.extend(o if _static_info(o) else _shapeless(o) for o in src.output)
    g.value_info.extend(vi for vi in src.value_info if _static_info(vi))
    return sk


def weight_free(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its large weights given as inputs of their shape (or the model itself when it has none):
    what shape inference needs, without copying the weights (the proof's probes of a 100 MB model)."""
    return _skeleton(model)


# Ops that compute shapes from shapes: only then does shape inference need data propagation (it costs ~20%).
_SHAPE_MATH = frozenset({"Shape", "Size", "ConstantOfShape", "Range", "Expand", "Tile", "Reshape", "Resize",
                         "Upsample", "Slice", "Pad", "Squeeze", "Unsqueeze", "Split", "TopK", "OneHot"})


def _infer(model: onnx.ModelProto, path: str | None, data_prop: bool = True) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(_skeleton(model), data_prop=data_prop)
    except Exception as exc:
        raise ModelError(path, f"ONNX shape inference failed: {first_line(exc)}") from None


def load_graph(
    source: str | os.PathLike[str] | onnx.ModelProto,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    *,
    allow_dynamic: bool = False,
) -> Graph:
    """Read (if a path), fix dynamic inputs, infer shapes, and fold build-time constant subgraphs."""
    if isinstance(source, onnx.ModelProto):
        model, path, base = source, None, ""
        if input_shapes:
            model = onnx.ModelProto()
            model.CopyFrom(source)
    else:
        path = str(source)
        model = read_model(path)
        base = str(Path(path).parent)
    if input_shapes:
        _apply_input_shapes(model, input_shapes, path)
    graph = _build(model, path, base)
    if not allow_dynamic:
        dyn = dynamic_inputs(graph)
        if dyn:
            # a few inputs, names cut short: the message stays one readable line for any model
            more = f" and {len(dyn) - 3} more" if len(dyn) > 3 else ""
            desc = ", ".join(f"{clip(n, 40)} ({clip(format_shape(graph.tensors[n].shape), 40)})"
                             for n in dyn[:3]) + more
            example = " ".join(f"--input-shape {clip(n, 40)}:{_example_dims(graph.tensors[n].shape)}"
                               for n in dyn[:3]) + (" ..." if more else "")
            raise ModelError(path or "<model>", f"dynamic input shape: {desc}; DLA needs static shapes, "
                             f"fix them with {example}")
    _finish(graph, model)
    return graph


def _example_dims(shape: Shape | None) -> str:
    if shape is None:
        return "1x3x224x224"
    return "x".join(str(d) if isinstance(d, int) and d > 0 else ("1" if i == 0 else "N") for i, d in enumerate(shape))


def dynamic_inputs(graph: Graph) -> list[str]:
    return [n for n in graph.inputs if not graph.tensors[n].static]


def _build(model: onnx.ModelProto, path: str | None, base: str) -> Graph:
    g = model.graph
    tensors: dict[str, Tensor] = {}
    for init in g.initializer:
        t = Tensor(init.name, tuple(init.dims), dtype_name(init.data_type), True, True)
        t.set_value(LazyInitializer(init, base))
        tensors[init.name] = t
    inputs = []
    for vi in g.input:
        if vi.name in tensors:
            continue  # IR<4 lists initializers as inputs too; TensorRT treats them as weights
        shape, dtype = _shape_of(vi.type)
        tensors[vi.name] = Tensor(vi.name, shape, dtype)
        inputs.append(vi.name)
    nodes = []
    for i, n in enumerate(g.node):
        outs = n.output[:]
        name = n.name or f"node_of_{outs[0] if outs else i}"
        attrs = n.attribute
        nodes.append(Node(i, name, n.op_type, n.domain, n.input[:], outs,
                          {a.name: _attr_value(a) for a in attrs} if attrs else {}))
    graph = Graph(path, _default_opset(model), nodes, tensors, inputs, [o.name for o in g.output],
                  model=model, base_dir=base)
    _check_arity(graph)
    for o in g.output:
        shape, dtype = _shape_of(o.type)
        t = graph.tensor(o.name)
        t.shape, t.dtype = shape, dtype
    return graph


def _check_arity(graph: Graph) -> None:
    """A node missing a required input is a broken model: say which, rather than guess."""
    need: dict[str, int] = {}
    for n in graph.nodes:
        if n.domain not in ("", "ai.onnx"):
            continue
        k = need.get(n.op)
        if k is None:
            try:
                k = onnx.defs.get_schema(n.op, graph.opset, "").min_input
            except Exception:  # an op onnx does not know: lowering reports it as unknown
                k = 0
            need[n.op] = k
        have = sum(1 for i in n.inputs[:k] if i)
        if have < k:
            raise ModelError(graph.path or "<model>", f"node {n.name!r} ({n.op}) has {have} of its {k} required "
                                                      f"inputs; the model is malformed")


# Shape inference and build-time folding feed each other (a folded Shape gives a Reshape its target, whose
# static output lets the next Shape fold): repeat until nothing changes. Real exports settle in 2-4 rounds.
_MAX_ROUNDS = 12


def _finish(graph: Graph, model: onnx.ModelProto) -> None:
    data_prop = any(n.op in _SHAPE_MATH for n in graph.nodes)
    unknown = _read_shapes(graph, _infer(model, graph.path, data_prop))
    folding.fold(graph)
    if unknown and _needs_refinement(graph, unknown):
        for _ in range(_MAX_ROUNDS):
            folded = len(graph.folded)
            now = _read_shapes(graph, _infer(_with_folded_values(model, graph), graph.path))
            folding.fold(graph)
            if len(graph.folded) == folded and len(now) >= len(unknown):
                break
            unknown = now
    for t in graph.tensors.values():
        t._static = None  # shapes changed while loading; recompute on first use
    if any(not t.static for t in graph.tensors.values()):
        _mark_shape_origins(graph)


def _mark_shape_origins(graph: Graph) -> None:
    """Sets Tensor.origin on every tensor whose shape is still not static: the node (or input) that makes it so,
    e.g. "/NonZero (NonZero)". Findings name it instead of printing a symbolic shape expression."""
    tensors = graph.tensors
    origins: dict[str, str] = {n: f"input {clip(n, 80)}" for n in graph.inputs if not tensors[n].static}
    for node in graph.nodes:
        if node.index in graph.folded:
            continue
        outs = [o for o in node.outputs if o and o in tensors and not tensors[o].static]
        if not outs:
            continue
        src = next((origins[i] for i in node.inputs if i in origins), None)
        for o in outs:
            origins[o] = src or f"{clip(node.name, 80)} ({node.op})"
    for name, why in origins.items():
        tensors[name].origin = why


def _needs_refinement(graph: Graph, unknown: set[str]) -> bool:
    """Shape inference could not follow some computed shape (a Reshape fed by Shape->Gather->Concat math) that
    folding now knows: an unknown output of a node that is not folded and reads a computed constant."""
    tensors = graph.tensors
    for n in graph.nodes:
        if n.index in graph.folded or not any(o in unknown for o in n.outputs):
            continue
        if any(tensors[i].const and not tensors[i].weights and tensors[i]._value_known
               for i in n.inputs if i in tensors):
            return True
    return False


def _with_folded_values(model: onnx.ModelProto, graph: Graph) -> onnx.ModelProto:
    """The skeleton with every folded value TensorRT knows at build time given as an initializer, so a second
    shape inference can follow shapes computed from shapes."""
    sk = _skeleton(model)
    if sk is model:  # nothing was stripped: copy, the user's model is not ours to change
        sk = onnx.ModelProto()
        sk.CopyFrom(model)
    known = {i.name for i in sk.graph.initializer}
    for node in graph.nodes:
        if node.index not in graph.folded:
            continue
        for o in node.outputs:
            t = graph.tensors.get(o)
            # only what can decide a shape: small integer tensors and short float vectors (Resize scales)
            if t is None or not t.const or o in known or not _shape_like(t):
                continue
            v = t.value()
            if v is not None:
                sk.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(v), o))
                known.add(o)
    keep = [n for n in sk.graph.node if not (set(n.output) and set(n.output) <= known)]
    del sk.graph.node[:]
    sk.graph.node.extend(keep)
    sk.ir_version = max(sk.ir_version, 4)
    return sk


def _shape_like(t: Tensor) -> bool:
    if t.shape is None or not _all_int(t.shape):
        return t.dtype in ("int64", "int32")
    n = 1
    for d in t.shape:
        n *= d
    return n <= (4096 if t.dtype in ("int64", "int32") else 16)


def _read_shapes(graph: Graph, inferred: onnx.ModelProto) -> set[str]:
    """Copy inferred shapes and dtypes into the graph; returns the tensors whose shape is still not static."""
    tensors = graph.tensors
    cache: dict[bytes, Shape] = {}
    static: dict[Shape, bool] = {}
    unknown: set[str] = set()
    for infos in (inferred.graph.value_info, inferred.graph.output):
        for vi in infos:
            name = vi.name
            t = tensors.get(name)
            if t is not None and t.const and t.static:
                continue
            shape, dtype = _shape_of(vi.type, cache)
            ok = shape is not None and static.get(shape)
            if ok is None:
                ok = static[shape] = _all_int(shape)
            if not ok:
                unknown.add(name)
            if t is None:
                tensors[name] = Tensor(name, shape, dtype)
            else:
                if shape is not None and (t.shape is None or not _all_int(t.shape) or _all_int(shape)):
                    t.shape = shape
                    t._static = None
                if dtype is not None:
                    t.dtype = dtype
    return unknown


def _all_int(shape: Shape) -> bool:
    return all(isinstance(d, int) for d in shape)
