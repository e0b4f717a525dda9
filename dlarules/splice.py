"""Local rewriting: cut the neighbourhood of a node out of a model as a small standalone model, and splice a
rewritten neighbourhood back in (then keep the node list topologically sorted and free of dead nodes).

Recipes run on the small model, so a fix never re-imports or re-checks the whole network to try one rewrite.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import onnx
from onnx import helper

from .model import Graph

# How many single-use links a neighbourhood follows by default; each recipe says how far its pattern reaches
# (Flatten/Reshape before a Gemm through element-wise ops: 3, Transpose around a Softmax: 2, one node: 1).
# Constants feeding the neighbourhood always come along.
_RADIUS = 3


@dataclass
class Index:
    """Producers and readers of every tensor of a model."""

    model: onnx.ModelProto

    def __post_init__(self) -> None:
        g = self.model.graph
        self.by_name = {n.name: n for n in g.node}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for o in n.output:
                if o:
                    self.producer[o] = n
            for i in n.input:
                if i:
                    self.readers.setdefault(i, []).append(n)
        self.inits = {i.name: i for i in g.initializer}
        self.outputs = {o.name for o in g.output}
        self.order = {id(n): k for k, n in enumerate(g.node)}


def neighbourhood(ix: Index, name: str, radius: int = _RADIUS) -> list[onnx.NodeProto]:  # noqa: C901
    """The node, the single-use producers/readers around it up to `radius` links, and Constant producers."""
    start = ix.by_name[name]
    picked = {id(start): start}
    frontier = [start]
    for _ in range(radius):
        nxt = []
        for n in frontier:
            for i in n.input:
                p = ix.producer.get(i)
                if p is not None and id(p) not in picked and len(ix.readers.get(i, ())) == 1:
                    picked[id(p)] = p
                    nxt.append(p)
            for o in n.output:
                users = ix.readers.get(o, [])
                if len(users) == 1 and id(users[0]) not in picked and o not in ix.outputs:
                    picked[id(users[0])] = users[0]
                    nxt.append(users[0])
        frontier = nxt
    for n in list(picked.values()):
        for i in n.input:
            p = ix.producer.get(i)
            if p is not None and p.op_type == "Constant" and id(p) not in picked:
                picked[id(p)] = p
    return in_model_order(ix, list(picked.values()))


def union(groups: Iterable[list[onnx.NodeProto]]) -> list[onnx.NodeProto]:
    """Several neighbourhoods as one node list (each node once, in model order)."""
    seen: dict[int, onnx.NodeProto] = {}
    for group in groups:
        for n in group:
            seen[id(n)] = n
    return list(seen.values())


def in_model_order(ix: Index, nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    return sorted(nodes, key=lambda n: ix.order[id(n)])


def extract(ix: Index, nodes: list[onnx.NodeProto], graph: Graph) -> onnx.ModelProto:
    """A standalone model of `nodes`: outside tensors become inputs (with their shapes), weights come along."""
    produced = {o for n in nodes for o in n.output if o}
    used = [i for n in nodes for i in n.input if i]
    inputs, inits, seen = [], [], set()
    for i in used:
        if i in produced or i in seen:
            continue
        seen.add(i)
        if i in ix.inits:
            inits.append(ix.inits[i])
            continue
        inputs.append(_value_info(graph, i))
    outputs = []
    inside = {id(n) for n in nodes}   # by identity: NodeProto == compares whole messages (slow)
    for n in nodes:
        for o in n.output:
            if o and (o in ix.outputs or any(id(r) not in inside for r in ix.readers.get(o, []))):
                outputs.append(_value_info(graph, o))
    g = helper.make_graph(list(nodes), "neighbourhood", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=list(ix.model.opset_import))
    m.ir_version = max(ix.model.ir_version, 4)
    return m


def _value_info(graph: Graph, name: str) -> onnx.ValueInfoProto:
    t = graph.tensors.get(name)
    elem = _elem_type(t.dtype) if t is not None and t.dtype else onnx.TensorProto.FLOAT
    shape = list(t.shape) if t is not None and t.shape is not None else None
    if shape is None:
        # no shape known here: the model's own declaration of the tensor, if it has one (onnx.checker wants a
        # shape on a graph's inputs and outputs)
        declared = _declared(graph, name)
        if declared is not None:
            vi = onnx.ValueInfoProto()
            vi.CopyFrom(declared)
            if vi.type.HasField("tensor_type") and not vi.type.tensor_type.elem_type:
                vi.type.tensor_type.elem_type = elem
            if vi.type.HasField("tensor_type") and not vi.type.tensor_type.HasField("shape"):
                vi.type.tensor_type.shape.SetInParent()
            return vi
    return helper.make_tensor_value_info(name, elem, shape)


def _declared(graph: Graph, name: str) -> onnx.ValueInfoProto | None:
    g = graph.model.graph if getattr(graph, "model", None) is not None else None
    if g is None:
        return None
    for vi in list(g.output) + list(g.input) + list(g.value_info):
        if vi.name == name:
            return vi
    return None


def _elem_type(dtype: str) -> int:
    """The ONNX element type of a Tensor.dtype name: 'float32', 'bfloat16', or 'type17' for the types numpy does
    not have (float8 and friends keep their ONNX number)."""
    if dtype.startswith("type") and dtype[4:].isdigit():
        return int(dtype[4:])
    named = {"bfloat16": onnx.TensorProto.BFLOAT16, "string": onnx.TensorProto.STRING}
    if dtype in named:
        return named[dtype]
    try:
        return onnx.helper.np_dtype_to_tensor_dtype(__import__("numpy").dtype(dtype))
    except (TypeError, KeyError, ValueError):
        return onnx.TensorProto.FLOAT


def splice(model: onnx.ModelProto, before: Iterable[onnx.NodeProto], after: onnx.ModelProto) -> list[str]:
    """Put a rewritten neighbourhood back: nodes gone from it are removed, changed ones replaced, new ones added
    (with their new weights). Returns the names of the nodes that changed."""
    old = {n.name: n for n in before}
    new = {n.name: n for n in after.graph.node}
    changed = [name for name in old if name not in new or new[name] != old[name]]
    added = [n for n in after.graph.node if n.name not in old]
    g = model.graph
    known_inits = {i.name for i in g.initializer}
    fresh = [i for i in after.graph.initializer if i.name not in known_inits]
    g.initializer.extend(fresh)
    if model.ir_version < 4:
        # IR < 4: every initializer must also be a graph input
        g.input.extend(helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in fresh)
    nodes = []
    for n in g.node:
        if n.name in old:
            if n.name in new:
                nodes.append(new[n.name])
            continue
        nodes.append(n)
    nodes += added
    del g.node[:]
    g.node.extend(toposort(nodes, {i.name for i in g.input} | {i.name for i in g.initializer}))
    prune(model)
    return changed + [n.name for n in added]


def toposort(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Stable topological order (nodes keep their relative order when they can)."""
    ready = set(available)
    remaining = list(nodes)
    out: list[onnx.NodeProto] = []
    while remaining:
        progress = []
        for n in remaining:
            if all(not i or i in ready for i in n.input):
                out.append(n)
                ready.update(o for o in n.output if o)
            else:
                progress.append(n)
        if len(progress) == len(remaining):
            out += progress   # a cycle or an unknown input: leave the rest as it was
            break
        remaining = progress
    return out


def prune(model: onnx.ModelProto) -> None:
    """Drop nodes whose outputs nobody reads (e.g. the shape math a constant-scales Resize no longer needs), and
    initializers nobody reads."""
    g = model.graph
    needed = {o.name for o in g.output}
    keep = []
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    if len(keep) != len(g.node):
        keep.reverse()
        del g.node[:]
        g.node.extend(keep)
    used = needed | {i for n in g.node for i in n.input}
    dropped = {i.name for i in g.initializer if i.name not in used}
    if dropped:
        # delete in place: re-adding the kept ones would copy every weight of the model
        for k in range(len(g.initializer) - 1, -1, -1):
            if g.initializer[k].name in dropped:
                del g.initializer[k]
        # IR < 4 lists every initializer as a graph input too: a dropped weight must leave the inputs as well,
        # or the model would ask the caller to feed it
        if any(i.name in dropped for i in g.input):
            kept = [i for i in g.input if i.name not in dropped]
            del g.input[:]
            g.input.extend(kept)


def names_in_changed(before: Iterable[onnx.NodeProto], after: onnx.ModelProto) -> dict[str, list[str]]:
    """Names of the original nodes a rewrite removed or changed, and of the nodes that replace them."""
    old = {n.name: n for n in before}
    new = {n.name: n for n in after.graph.node}
    gone = [name for name in old if name not in new or new[name] != old[name]]
    fresh = [name for name in new if name not in old or new[name] != old[name]]
    return {"old": gone, "new": fresh}


def names_in(model: onnx.ModelProto) -> set[str]:
    g = model.graph
    return ({n.name for n in g.node} | {o for n in g.node for o in n.output} | {i.name for i in g.initializer}
            | {i.name for i in g.input})


def shapes_of(graph: Graph) -> Mapping[str, tuple]:
    return {name: tuple(t.shape) for name, t in graph.tensors.items() if t.shape is not None}


def dtypes_of(graph: Graph) -> Mapping[str, str]:
    return {name: t.dtype for name, t in graph.tensors.items() if t.dtype is not None}
