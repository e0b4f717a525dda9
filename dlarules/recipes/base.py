"""What a fix recipe is, and the graph helpers every recipe shares (constants, node replacement, shapes).

A recipe matches ONNX nodes of some op types, checks its own precondition (`check` returns the reason it does
not apply, or None), and rewrites the graph (`apply`) with onnx-graphsurgeon. Each application is a `Change`
that says whether it is exact (same function up to float rounding) or approximate, and what it costs.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx_graphsurgeon as gs

from ..errors import DlarulesError

# New weights a recipe builds from the model's shapes (one-hot matrices, averaging kernels, expanded operands):
# over this many elements a recipe does not apply (its check says why) rather than materialise them. A 1x4097x2x640
# SpaceToDepth would otherwise build a 1 GB one-hot weight (4 GiB while building it), blocksize 4 32 GiB.
MAX_NEW_WEIGHT_ELEMENTS = 1 << 24   # 16,777,216 weights: 64 MiB of float32


def weight_budget(elements: int, what: str) -> str | None:
    """Why a recipe does not apply when the weights it would build are over MAX_NEW_WEIGHT_ELEMENTS, else None."""
    if elements > MAX_NEW_WEIGHT_ELEMENTS:
        return f"{what} would hold {elements:,} weights, over the recipe limit of {MAX_NEW_WEIGHT_ELEMENTS:,}"
    return None


@dataclass
class Change:
    recipe: str
    node: str                      # the ONNX node it rewrote
    detail: str                    # what became what, in words
    exact: bool
    added_nodes: list[str] = field(default_factory=list)
    removed_nodes: list[str] = field(default_factory=list)
    extra_weights: int = 0         # parameters added (elements)
    cures: list[str] = field(default_factory=list)   # rule IDs it was applied for

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "node": self.node, "detail": self.detail, "exact": self.exact,
                "added_nodes": self.added_nodes, "removed_nodes": self.removed_nodes,
                "extra_weights": self.extra_weights, "cures": self.cures}


class Context:
    """The graph being rewritten plus what dlarules knows of its tensors (static shapes)."""

    def __init__(self, graph: gs.Graph, shapes: dict[str, tuple], reserved: set[str] | None = None,
                 dtypes: dict[str, str] | None = None) -> None:
        self.graph = graph
        self.shapes = shapes
        self.dtypes = dtypes or {}
        # the float type of the activations being rewritten: new weights must match it (an fp16 model stays fp16)
        self.float_dtype = np.dtype(np.float32)
        # names in use in the whole model, not only in this neighbourhood: new nodes and tensors must not clash
        self._names = {n.name for n in graph.nodes} | set(graph.tensors()) | set(reserved or ())
        self._counter = itertools.count()
        self.firing: set[str] = set()   # the rule IDs behind this application (a recipe may adapt to them)
        self.removed: set[int] = set()  # ids of nodes taken out (graphsurgeon's Node == compares attributes: slow)
        self.memo: dict[Any, Any] = {}  # what a recipe worked out about a pattern, for its other nodes and apply

    def shape(self, t: gs.Tensor) -> tuple | None:
        shape = self.shapes.get(t.name)
        if shape is None and t.shape is not None:
            shape = tuple(t.shape)
        if shape is None or any(not isinstance(d, int) for d in shape):
            return None
        return tuple(shape)

    def focus(self, node: gs.Node) -> None:
        """Rewriting `node` now: new weights take the float type of its data input."""
        t = node.inputs[0] if node.inputs else None
        d = (self.dtypes.get(t.name) or t.dtype) if t is not None else None
        try:
            dt = np.dtype(d) if d is not None else None
        except TypeError:
            dt = None
        self.float_dtype = dt if dt is not None and dt in (np.float16, np.float32, np.float64) else np.dtype(np.float32)

    def weight(self, base: str, value: Any) -> gs.Constant:
        """A float constant (weights, scales of arithmetic) in the activations' float type."""
        size = int(np.prod(np.shape(value), dtype=object))
        if size > MAX_NEW_WEIGHT_ELEMENTS:   # a recipe's check should have said so: never materialise it
            raise DlarulesError(base, f"a rewrite would build {size:,} weights, over the recipe limit of "
                                      f"{MAX_NEW_WEIGHT_ELEMENTS:,}")
        return self.const(base, np.asarray(value, dtype=np.float64).astype(self.float_dtype))

    def name(self, base: str) -> str:
        """A node/tensor name not used in the graph yet, derived from `base`."""
        cand = base
        while cand in self._names:
            cand = f"{base}_{next(self._counter)}"
        self._names.add(cand)
        return cand

    def const(self, base: str, value: np.ndarray) -> gs.Constant:
        return gs.Constant(self.name(base), np.ascontiguousarray(value))

    def var(self, base: str, like: gs.Tensor | None = None, shape: tuple | None = None) -> gs.Variable:
        dtype = like.dtype if like is not None else np.float32
        name = self.name(base)
        if shape is not None:
            self.shapes[name] = tuple(shape)   # later recipes in the same round see it
        # a shape without a dtype cannot be exported as value info: leave both to shape inference then
        return gs.Variable(name, dtype=dtype, shape=shape if dtype is not None else None)

    def remove(self, node: gs.Node) -> None:
        """Take a node out of the graph; its name is free again for the node that replaces it."""
        node.inputs.clear()
        node.outputs.clear()
        nodes = self.graph.nodes
        del nodes[next(i for i, n in enumerate(nodes) if n is node)]
        self.removed.add(id(node))
        self._names.discard(node.name)

    def node(self, op: str, base: str, inputs: list[gs.Tensor], outputs: list[gs.Tensor],
             **attrs: Any) -> gs.Node:
        n = gs.Node(op=op, name=self.name(base), attrs=attrs, inputs=inputs, outputs=outputs)
        self.graph.nodes.append(n)
        return n


def str_attr(node: gs.Node, name: str, default: str) -> str:
    v = node.attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else str(v)


def assign(lst: list, items: list) -> None:
    """Replace the contents of a node's inputs/outputs (graphsurgeon's synchronized lists have no slice assignment)."""
    lst.clear()
    lst.extend(items)


def constant_value(t: gs.Tensor) -> np.ndarray | None:
    """The value of a constant input (an initializer or a Constant node's output), else None (also when its data
    cannot be read: a tensor whose bytes do not fit its shape or type is no constant a recipe can use)."""
    try:
        return _constant_value(t)
    except (ValueError, TypeError, KeyError, OSError):
        return None


def _constant_value(t: gs.Tensor) -> np.ndarray | None:
    if isinstance(t, gs.Constant):
        return np.asarray(t.values)
    if len(t.inputs) == 1 and t.inputs[0].op == "Constant":
        v = t.inputs[0].attrs.get("value")
        if isinstance(v, gs.Constant):
            return np.asarray(v.values)
        if v is not None and hasattr(v, "values"):
            return np.asarray(v.values)
    return None


def replace(ctx: Context, old: gs.Node, build: Callable[[gs.Tensor, gs.Tensor], list[gs.Node]]) -> list[str]:
    """Replace a single-input single-output node: `build(x, y)` makes the new nodes reading x and writing y (the old
    node's own tensors, so consumers and graph outputs stay wired). Returns the new node names."""
    x, y = old.inputs[0], old.outputs[0]
    ctx.remove(old)
    return [n.name for n in build(x, y)]


def chain(ctx: Context, x: gs.Tensor, y: gs.Tensor, base: str,
          steps: list[tuple[str, list[gs.Tensor], dict[str, Any]]]) -> list[gs.Node]:
    """Nodes applied one after the other from x to y. A step's inputs list holds its extra inputs (constants),
    the running tensor is prepended (or substituted for a `None` placeholder)."""
    nodes = []
    cur = x
    for i, (op, extra, attrs) in enumerate(steps):
        last = i == len(steps) - 1
        out = y if last else ctx.var(f"{base}/{op}_out", like=x)
        ins = [cur if e is None else e for e in extra] if any(e is None for e in extra) else [cur, *extra]
        nodes.append(ctx.node(op, f"{base}/{op}", ins, [out], **attrs))
        cur = out
    return nodes


def factor_window(size: int, limit: int) -> list[int] | None:
    """Split a window into factors <= limit whose product is `size` (non-overlapping average cascade), or None."""
    factors, rest = [], size
    while rest > limit:
        for f in range(limit, 1, -1):
            if rest % f == 0:
                factors.append(f)
                rest //= f
                break
        else:
            return None
    factors.append(rest)
    return factors


@dataclass
class Recipe:
    """A named, documented rewrite."""

    name: str
    title: str
    ops: tuple[str, ...]
    exactness: str                 # always | conditional (see the recipe) | approximate
    cost: str
    check: Callable[[gs.Node, Context], str | None]
    apply: Callable[[gs.Node, Context], Change]
    doc: str = ""
    exact_when: Callable[[gs.Node, Context], bool] | None = None   # for "conditional" recipes
    reach: int = 1                 # links from the node its pattern spans (the neighbourhood fix cuts out)
    # approximate applications: the proof passes when each output's mean |error| is within this fraction of the
    # output's range (the recipe's own, documented tolerance; exact ones keep the strict rtol/atol)
    tolerance: float | None = None

    def is_exact(self, node: gs.Node, ctx: Context) -> bool:
        """Will applying it here keep the function (up to float rounding)? Decided before rewriting."""
        if self.exactness == "always":
            return True
        if self.exactness == "approximate":
            return False
        return self.exact_when(node, ctx) if self.exact_when else False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "ops": list(self.ops), "exactness": self.exactness,
                "cost": self.cost, "doc": self.doc, "tolerance": self.tolerance}
