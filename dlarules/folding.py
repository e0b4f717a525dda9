"""Build-time constant folding, as TensorRT does it before placing layers.

A node is folded when every input is a build-time constant (weights, Constant nodes, or folded results) or
when it only reads static shapes (Shape, Size of a tensor whose shape is known). Folded nodes are not layers.
Values are computed with numpy for the small tensors that rules read (Resize scales, Reshape targets, Slice
bounds, ...); a folded tensor whose value this module cannot compute, or that is large, stays a constant of
unknown value (`Tensor.value()` is None), which is enough for "is this input a build-time constant" checks.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from onnx import numpy_helper

# Nodes that cannot be folded even with constant inputs: randomness and control flow.
_NOT_FOLDABLE = frozenset({
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
    "If", "Loop", "Scan",
})
MAX_FOLD_ELEMENTS = 1 << 16

_NP_DTYPES = {
    1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
    9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64,
}


def fold(graph: Any) -> None:
    tensors = graph.tensors
    folded = graph.folded
    for node in graph.nodes:
        op = node.op
        if node.domain not in ("", "ai.onnx") or node.index in folded:
            continue
        if op in ("Shape", "Size"):
            src = tensors.get(node.inputs[0]) if node.inputs else None
            if src is None or not src.static:
                continue
        elif op in _NOT_FOLDABLE:
            continue
        elif not all(not i or (i in tensors and tensors[i].const) for i in node.inputs):
            continue
        folded.add(node.index)
        # Shape math (integer results, or outputs whose shape inference could not tell) is evaluated now: its
        # values decide shapes. Float constants (weights) are evaluated only if a rule asks for their values.
        eager = any(not o or tensors.get(o) is None or not tensors[o].static
                    or tensors[o].dtype not in _FLOATS for o in node.outputs)
        values = _evaluate(node, tensors) if eager else None
        for k, out in enumerate(node.outputs):
            if not out:
                continue
            t = graph.tensor(out)
            t.const = True
            # The parser takes Constant outputs (and Identity of weights) as weights; other folded math
            # stays a tensor that only the builder folds (a Resize fed by it is a dynamic resize).
            t.weights = op == "Constant" or (op == "Identity" and tensors[node.inputs[0]].weights)
            if not eager:
                t.set_value(LazyFold(node, tensors, k))
                continue
            v = values[k] if values is not None and k < len(values) else None
            if v is not None:
                v = np.asarray(v)
                t.set_value(v)
                t.shape = tuple(int(d) for d in v.shape)
                t._static = None
                if t.dtype is None:
                    t.dtype = str(v.dtype) if v.dtype != np.bool_ else "bool"


_FLOATS = frozenset({"float32", "float16", "float64", "bfloat16"})


class LazyFold:
    """A folded constant whose value is computed on first use (Tensor.value())."""

    __slots__ = ("node", "tensors", "k")

    def __init__(self, node: Any, tensors: dict, k: int) -> None:
        self.node, self.tensors, self.k = node, tensors, k

    def decode(self) -> np.ndarray | None:
        values = _evaluate(self.node, self.tensors)
        v = values[self.k] if values is not None and self.k < len(values) else None
        return None if v is None else np.asarray(v)


def _evaluate(node: Any, tensors: dict) -> list[np.ndarray] | None:
    fn = _EVAL.get(node.op)
    if fn is None:
        return None
    args: list[np.ndarray | None] = []
    for i in node.inputs:
        if not i:
            args.append(None)
            continue
        t = tensors[i]
        if node.op not in ("Shape", "Size"):
            # Do not decode big weights just to fold: if the input is large, give up on the value.
            if t.static and _numel(t.shape) > MAX_FOLD_ELEMENTS:
                return None
            v = t.value()
            if v is None:
                return None
            args.append(v)
        else:
            args.append(None)
    try:
        out = fn(node, args, tensors)
    except Exception:  # a value we cannot compute stays unknown; constness is still right
        return None
    if out is None:
        return None
    for o in out:
        if o is not None and np.asarray(o).size > MAX_FOLD_ELEMENTS:
            return None
    return out


def _numel(shape: tuple) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _axes(node: Any, args: list, idx: int) -> list[int] | None:
    if len(args) > idx and args[idx] is not None:
        return [int(a) for a in np.asarray(args[idx]).reshape(-1)]
    a = node.attrs.get("axes")
    return list(a) if a is not None else None


def _shape(node, args, tensors):
    shape = tensors[node.inputs[0]].shape
    start = node.attrs.get("start", 0)
    end = node.attrs.get("end", len(shape))
    return [np.array(shape[start:end] if end is not None else shape[start:], dtype=np.int64)]


def _size(node, args, tensors):
    return [np.array(_numel(tensors[node.inputs[0]].shape), dtype=np.int64)]


def _constant(node, args, tensors):
    a = node.attrs
    if "value" in a:
        return [numpy_helper.to_array(a["value"])]
    if "value_float" in a:
        return [np.array(a["value_float"], dtype=np.float32)]
    if "value_floats" in a:
        return [np.array(a["value_floats"], dtype=np.float32)]
    if "value_int" in a:
        return [np.array(a["value_int"], dtype=np.int64)]
    if "value_ints" in a:
        return [np.array(a["value_ints"], dtype=np.int64)]
    return None


def _gather(node, args, tensors):
    return [np.take(args[0], args[1], axis=node.attrs.get("axis", 0))]


def _unsqueeze(node, args, tensors):
    x = args[0]
    axes = sorted(a % (x.ndim + len(_axes(node, args, 1) or [])) for a in _axes(node, args, 1) or [])
    for a in axes:
        x = np.expand_dims(x, a)
    return [x]


def _squeeze(node, args, tensors):
    axes = _axes(node, args, 1)
    x = args[0]
    return [np.squeeze(x, axis=tuple(a % x.ndim for a in axes)) if axes else np.squeeze(x)]


def _concat(node, args, tensors):
    parts = [np.atleast_1d(a) if a.ndim == 0 else a for a in args if a is not None]
    return [np.concatenate(parts, axis=node.attrs.get("axis", 0))]


def _slice(node, args, tensors):
    x = args[0]
    if len(args) > 1:
        starts, ends = [int(v) for v in args[1]], [int(v) for v in args[2]]
        axes = [int(v) for v in args[3]] if len(args) > 3 and args[3] is not None else list(range(len(starts)))
        steps = [int(v) for v in args[4]] if len(args) > 4 and args[4] is not None else [1] * len(starts)
    else:
        starts, ends = node.attrs["starts"], node.attrs["ends"]
        axes = node.attrs.get("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    sl = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        sl[a % x.ndim] = slice(s, e, st)
    return [x[tuple(sl)]]


def _cast(node, args, tensors):
    return [args[0].astype(_NP_DTYPES.get(node.attrs.get("to", 1), np.float32))]


def _binary(fn: Callable) -> Callable:
    return lambda node, args, tensors: [fn(args[0], args[1])]


def _div(a, b):
    if np.issubdtype(a.dtype, np.integer) and np.issubdtype(b.dtype, np.integer):
        return (np.trunc(a / b)).astype(a.dtype)
    return a / b


def _unary(fn: Callable) -> Callable:
    return lambda node, args, tensors: [fn(args[0])]


def _reshape(node, args, tensors):
    shape = [int(s) for s in args[1]]
    if not node.attrs.get("allowzero", 0):
        shape = [args[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [args[0].reshape(shape)]


def _constant_of_shape(node, args, tensors):
    if _numel(tuple(args[0])) > MAX_FOLD_ELEMENTS:
        return None  # weights made by ConstantOfShape: constant, but not worth materializing
    v = node.attrs.get("value")
    fill = numpy_helper.to_array(v).reshape(-1)[0] if v is not None else np.float32(0)
    return [np.full([int(s) for s in args[0]], fill, dtype=np.asarray(fill).dtype)]


def _range(node, args, tensors):
    return [np.arange(args[0], args[1], args[2]).astype(args[0].dtype)]


def _where(node, args, tensors):
    return [np.where(args[0], args[1], args[2])]


def _expand(node, args, tensors):
    if _numel(tuple(np.broadcast_shapes(args[0].shape, tuple(int(s) for s in args[1])))) > MAX_FOLD_ELEMENTS:
        return None
    return [args[0] * np.ones([int(s) for s in args[1]], dtype=args[0].dtype)]


def _transpose(node, args, tensors):
    return [np.transpose(args[0], node.attrs.get("perm"))]


def _reduce(fn: Callable) -> Callable:
    def run(node, args, tensors):
        axes = _axes(node, args, 1)
        keep = bool(node.attrs.get("keepdims", 1))
        return [fn(args[0], axis=tuple(axes) if axes else None, keepdims=keep)]
    return run


def _minmax(fn: Callable) -> Callable:
    def run(node, args, tensors):
        out = args[0]
        for a in args[1:]:
            out = fn(out, a)
        return [out]
    return run


def _identity(node, args, tensors):
    return [args[0]]


def _split(node, args, tensors):
    x = args[0]
    axis = node.attrs.get("axis", 0)
    split = _axes(node, args, 1) if len(args) > 1 else node.attrs.get("split")
    if split is None:
        return list(np.array_split(x, len(node.outputs), axis=axis))
    return list(np.split(x, np.cumsum(split)[:-1], axis=axis))


_EVAL: dict[str, Callable] = {
    "Shape": _shape, "Size": _size, "Constant": _constant, "Gather": _gather, "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze, "Concat": _concat, "Slice": _slice, "Cast": _cast, "Identity": _identity,
    "Add": _binary(np.add), "Sub": _binary(np.subtract), "Mul": _binary(np.multiply), "Div": _binary(_div),
    "Equal": _binary(np.equal), "Less": _binary(np.less), "Greater": _binary(np.greater),
    "Floor": _unary(np.floor), "Ceil": _unary(np.ceil), "Neg": _unary(np.negative), "Abs": _unary(np.abs),
    "Sqrt": _unary(np.sqrt), "Reciprocal": _unary(np.reciprocal), "Not": _unary(np.logical_not),
    "Reshape": _reshape, "ConstantOfShape": _constant_of_shape, "Range": _range, "Where": _where,
    "Expand": _expand, "Transpose": _transpose, "ReduceProd": _reduce(np.prod), "ReduceSum": _reduce(np.sum),
    "ReduceMax": _reduce(np.max), "ReduceMin": _reduce(np.min), "Max": _minmax(np.maximum),
    "Min": _minmax(np.minimum), "Split": _split, "Flatten": lambda n, a, t: [
        a[0].reshape(int(np.prod(a[0].shape[: n.attrs.get("axis", 1)])), -1)],
}
