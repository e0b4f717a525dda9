"""Small ONNX graphs over the ops dlarules lowers (lowering.OP_TABLE), built with onnx.helper.

Mostly valid: every node is kept only if ONNX shape inference (strict) accepts it, except with a small chance, so
some graphs are malformed on purpose. Odd things come with small probabilities: opsets 7-21, ranks 0-6, odd
dtypes, zero / symbolic / large dims, odd attribute values, custom-domain and unknown ops, If/Loop subgraphs.
Sizes stay small (bounded element counts and weights) so one run takes milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dlarules.lowering import _UNARY, OP_TABLE

from .draw import Draw

F32 = TensorProto.FLOAT
# dtypes for graph inputs: float32 most of the time
INPUT_DTYPES = [F32, F32, F32, F32, TensorProto.FLOAT16, TensorProto.INT64, TensorProto.INT8, TensorProto.UINT8,
                TensorProto.BOOL, TensorProto.DOUBLE, TensorProto.INT32, TensorProto.BFLOAT16, TensorProto.STRING]
MAX_NUMEL = 1 << 16          # elements of one generated graph input (the proof feeds random data to it)
MAX_WEIGHT = 1 << 14         # elements of one generated weight
ODD_INTS = [0, -1, 1, 3, 1000, -7, 2 ** 31 - 1]


class Skip(Exception):
    """The op does not fit the tensors at hand; try another."""


@dataclass
class T:
    name: str
    shape: tuple | None      # ints and symbolic names; None: unknown rank
    dtype: int


@dataclass
class Builder:
    d: Draw
    opset: int
    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    pool: list = field(default_factory=list)
    n: int = 0

    def name(self, stem: str) -> str:
        self.n += 1
        return f"{stem}_{self.n}"

    def const(self, arr: np.ndarray, stem: str = "w") -> str:
        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def ints(self, values: list[int], stem: str = "c") -> str:
        return self.const(np.asarray(values, dtype=np.int64), stem)

    def pick(self, pred: Callable[[T], bool] = lambda t: True) -> T:
        fits = [t for t in self.pool if pred(t)]
        if not fits:
            raise Skip
        # the newest tensors first: longer chains
        return fits[-1 - self.d.int(0, len(fits) - 1)] if self.d.chance(0.3) else fits[-1]

    def odd(self, normal: int, p: float = 0.06) -> int:
        return self.d.choice(ODD_INTS) if self.d.chance(p) else normal

    def weight(self, shape: list[int], dtype: Any = np.float32, stem: str = "w") -> str:
        if int(np.prod(shape)) > MAX_WEIGHT or any(s < 0 for s in shape):
            raise Skip
        rng = np.random.default_rng(self.d.int(0, 1 << 30))
        return self.const(rng.standard_normal(shape).astype(dtype), stem)


def fits(shape: list[int]) -> list[int]:
    """`shape` if a constant of it is small enough to build, else Skip (inferred dims can be huge)."""
    if int(np.prod(shape, dtype=np.float64)) > MAX_WEIGHT:
        raise Skip
    return shape


def is_float(t: T) -> bool:
    return t.dtype in (F32, TensorProto.FLOAT16, TensorProto.DOUBLE)


def cdims(t: T) -> list[int]:
    """Concrete dims (a symbolic dim counts as 1)."""
    return [d if isinstance(d, int) and d >= 0 else 1 for d in (t.shape or ())]


def rank(t: T) -> int:
    return len(t.shape) if t.shape is not None else -1


def fl(pred: Callable[[T], bool] | None = None) -> Callable[[T], bool]:
    return lambda t: is_float(t) and (pred is None or pred(t))


# ------------------------------------------------------------------------------------------- op builders
# Each returns (inputs, attrs, n_outputs) for a node of its op, or raises Skip.

Built = tuple[list[str], dict[str, Any], int]


def b_unary(b: Builder, op: str) -> Built:
    x = b.pick(fl()) if op not in ("Identity", "Shape", "Size", "NonZero", "Not", "Cast") else b.pick()
    attrs: dict[str, Any] = {}
    d = b.d
    if op in ("LeakyRelu", "Elu", "ThresholdedRelu", "Celu") and d.chance(0.5):
        attrs["alpha"] = d.choice([0.1, 0.01, 1.0, -2.0, 1e30])
    if op == "HardSigmoid" and d.chance(0.6):
        attrs["alpha"], attrs["beta"] = d.choice([(1 / 6, 0.5), (0.2, 0.5), (0.0, 0.0), (-1.0, 3.0)])
    if op == "Selu" and d.chance(0.3):
        attrs["alpha"], attrs["gamma"] = 2.0, 0.5
    if op == "Gelu" and d.chance(0.5):
        attrs["approximate"] = d.choice(["tanh", "none", "bogus"])
    if op in ("Softmax", "LogSoftmax", "Flatten") and d.chance(0.7):
        attrs["axis"] = b.odd(d.int(-max(rank(x), 1), max(rank(x) - 1, 0)))
    if op == "Cast":
        attrs["to"] = d.choice([F32, TensorProto.FLOAT16, TensorProto.INT64, TensorProto.INT8, TensorProto.BOOL,
                                TensorProto.DOUBLE, TensorProto.UINT8, TensorProto.INT32])
    if op == "LRN":
        attrs["size"] = b.odd(d.choice([1, 3, 5, 7, 9, 11, 16]))
        if d.chance(0.3):
            attrs["alpha"], attrs["beta"], attrs["bias"] = 1e-4, 0.75, d.choice([1.0, 2.0, 0.0])
    if op in ("DepthToSpace", "SpaceToDepth"):
        attrs["blocksize"] = b.odd(d.choice([2, 1, 3, 4]))
        if op == "DepthToSpace" and d.chance(0.5):
            attrs["mode"] = d.choice(["DCR", "CRD"])
    if op in ("ArgMax", "ArgMin"):
        attrs["axis"] = b.odd(d.int(0, max(rank(x) - 1, 0)))
        attrs["keepdims"] = d.int(0, 1)
    if op == "Transpose":
        r = max(rank(x), 0)
        attrs["perm"] = d.sample(list(range(r)), r) if not d.chance(0.05) else [0] * r
    if op == "Dropout" and d.chance(0.2) and b.opset < 12:
        attrs["ratio"] = 0.5
    return [x.name], attrs, 1


def b_binary(b: Builder, op: str) -> Built:
    d = b.d
    logic = op in ("And", "Or", "Xor")
    x = b.pick(lambda t: t.dtype == TensorProto.BOOL) if logic else b.pick(fl())
    if d.chance(0.35):
        others = [t for t in b.pool if t.dtype == x.dtype and t.shape == x.shape]
        y = d.choice(others).name
    else:
        dims = cdims(x)
        form = d.int(0, 4)
        if form == 0 or not dims:
            shape: list[int] = []
        elif form == 1:
            shape = [1]
        elif form == 2 and len(dims) >= 3:
            shape = [dims[-3], 1, 1]
        elif form == 3:
            shape = dims
        else:
            shape = [1] * (len(dims) - 1) + [dims[-1]]
        dt = {TensorProto.BOOL: np.bool_, TensorProto.FLOAT16: np.float16, TensorProto.DOUBLE: np.float64}.get(
            x.dtype, np.float32)
        fits(shape)
        if op == "Div" or op == "Pow":
            val = np.full(shape, d.choice([2.0, 0.5, 3.0, 0.0, -1.0]), dtype=dt)
        elif logic:
            val = np.ones(shape, dtype=np.bool_)
        else:
            val = np.full(shape, d.choice([1.0, 0.5, -2.0, 6.0, 1e30]), dtype=dt)
        if int(np.prod(shape or [1])) > MAX_WEIGHT:
            raise Skip
        y = b.const(val, "k")
    ins = [x.name, y] if d.chance(0.8) else [y, x.name]
    if op in ("Max", "Min", "Sum", "Mean") and d.chance(0.3):
        ins.append(x.name)
    if op == "PRelu":
        ins = [x.name, y]
    return ins, {}, 1


def b_conv(b: Builder, op: str) -> Built:
    d = b.d
    x = b.pick(fl(lambda t: 3 <= rank(t) <= 5))
    dims = cdims(x)
    sp = len(dims) - 2
    c = dims[1]
    group = d.choice([1, 1, 1, c, 2]) if c > 0 else 1
    if group <= 0 or c % group:
        group = 1
    m = d.choice([4, 8, c, 1, 16])
    if op == "ConvTranspose":
        m = d.choice([4, 8, c, 1])
    k = [d.choice([1, 3, 3, 2, 5, 7, 9, 17]) for _ in range(sp)]
    if d.chance(0.8):
        k = [k[0]] * sp
    attrs: dict[str, Any] = {"kernel_shape": k} if d.chance(0.8) else {}
    if d.chance(0.5):
        attrs["strides"] = [b.odd(d.choice([1, 2, 1, 3, 4]))] * sp
    if d.chance(0.5):
        p = d.choice([0, 1, 2, 3])
        attrs["pads"] = [p] * (2 * sp) if d.chance(0.8) else [d.int(0, 3) for _ in range(2 * sp)]
    if d.chance(0.2):
        attrs["dilations"] = [d.choice([1, 2, 3])] * sp
    if d.chance(0.1):
        attrs["auto_pad"] = d.choice(["SAME_UPPER", "SAME_LOWER", "VALID"])
        attrs.pop("pads", None)
    if op == "ConvTranspose" and d.chance(0.2):
        attrs["output_padding"] = [1] * sp
    if group != 1:
        attrs["group"] = group
    if op == "Conv":
        wshape = [m * (group if group == c else 1), c // group, *k]
    else:
        wshape = [c, m // group if m % group == 0 else m, *k]
    ins = [x.name, b.weight(wshape)]
    if d.chance(0.5):
        ins.append(b.weight([wshape[0] if op == "Conv" else wshape[1] * group], stem="bias"))
    return ins, attrs, 1


def b_pool(b: Builder, op: str) -> Built:
    d = b.d
    x = b.pick(fl(lambda t: 3 <= rank(t) <= 5))
    sp = rank(x) - 2
    k = d.choice([2, 3, 1, 5, 8, 9, 13, 17])
    attrs: dict[str, Any] = {"kernel_shape": [k] * sp if d.chance(0.85) else [d.int(1, 9) for _ in range(sp)]}
    if d.chance(0.6):
        attrs["strides"] = [b.odd(d.choice([1, 2, k, 3]))] * sp
    if d.chance(0.4):
        attrs["pads"] = [d.int(0, max(0, k - 1))] * (2 * sp)
    if d.chance(0.2) and b.opset >= 10:
        attrs["ceil_mode"] = 1
    if op == "AveragePool" and d.chance(0.3):
        attrs["count_include_pad"] = d.int(0, 1)
    if op == "MaxPool" and d.chance(0.1) and b.opset >= 10:
        attrs["dilations"] = [2] * sp
    return [x.name], attrs, 1


def b_global_pool(b: Builder, op: str) -> Built:
    return [b.pick(fl(lambda t: 3 <= rank(t) <= 5)).name], {}, 1


def b_reduce(b: Builder, op: str) -> Built:
    d = b.d
    x = b.pick(fl(lambda t: rank(t) >= 1))
    r = rank(x)
    axes = sorted(d.sample(list(range(r)), d.int(1, r)))
    if d.chance(0.2):
        axes = [a - r for a in axes]
    attrs: dict[str, Any] = {}
    if d.chance(0.5):
        attrs["keepdims"] = d.int(0, 1)
    axes_as_input = b.opset >= 18 or (op == "ReduceSum" and b.opset >= 13)
    ins = [x.name]
    if d.chance(0.9):
        if axes_as_input:
            ins.append(b.ints(axes, "axes"))
        else:
            attrs["axes"] = axes
    return ins, attrs, 1


def b_clip(b: Builder, op: str) -> Built:
    d = b.d
    x = b.pick(fl())
    lo, hi = d.choice([(0.0, 6.0), (-1.0, 1.0), (0.0, 1.0), (None, 6.0), (0.0, None), (3.0, -3.0), (-1e30, 1e30)])
    if b.opset < 11:
        attrs = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
        return [x.name], attrs, 1
    dt = np.float16 if x.dtype == TensorProto.FLOAT16 else (np.float64 if x.dtype == TensorProto.DOUBLE else np.float32)
    ins = [x.name, b.const(np.array(lo, dt), "lo") if lo is not None else ""]
    if hi is not None:
        ins.append(b.const(np.array(hi, dt), "hi"))
    return ins, {}, 1


def b_norm(b: Builder, op: str) -> Built:
    d = b.d
    x = b.pick(fl(lambda t: rank(t) >= 2))
    dims = cdims(x)
    c = dims[1]
    if op == "BatchNormalization":
        ws = [b.weight([c]) for _ in range(3)]
        var = b.const(np.abs(np.random.default_rng(c).standard_normal([c])).astype(np.float32) + 0.1, "var")
        return [x.name, *ws, var], ({"epsilon": 1e-5} if d.chance(0.3) else {}), 1
    if op == "InstanceNormalization":
        return [x.name, b.weight([c]), b.weight([c])], {}, 1
    if op == "LayerNormalization":
        axis = d.choice([-1, 1, len(dims) - 1])
        inner = dims[axis:] if axis >= 0 else dims[axis:]
        return [x.name, b.weight(inner), b.weight(inner)], {"axis": axis}, 1
    g = d.choice([1, 2, c]) or 1
    shape = [c] if b.opset >= 21 else [g]
    return [x.name, b.weight(shape), b.weight(shape)], {"num_groups": g}, 1


def b_reshape(b: Builder, op: str) -> Built:
    d = b.d
    x = b.pick(lambda t: t.shape is not None)
    dims = cdims(x)
    n = int(np.prod(dims)) if dims else 1
    form = d.int(0, 5)
    if form == 0:
        shape = [n]
    elif form == 1 and len(dims) >= 2:
        shape = [dims[0], -1]
    elif form == 2:
        shape = [0, -1] if dims else [1]
    elif form == 3 and len(dims) >= 4:
        c = dims[1]
        g = 2 if c % 2 == 0 else 1
        shape = [dims[0], g, c // g, *dims[2:]]
    elif form == 4:
        shape = [1, *dims]
    else:
        shape = list(reversed(dims))
    if d.chance(0.05):
        shape = [n + 1]
    return [x.name, b.ints(shape, "shape")], {}, 1


def b_squeeze(b: Builder, op: str) -> Built:
    d = b.d
    x = b.pick(lambda t: t.shape is not None)
    r = rank(x)
    if op == "Squeeze":
        ones = [i for i, v in enumerate(cdims(x)) if v == 1]
        axes = ones[:d.int(0, len(ones))] if ones else []
        if not axes and d.chance(0.7):
            raise Skip
    else:
        axes = [d.int(0, r)]
    if b.opset >= 13:
        return ([x.name, b.ints(axes, "axes")] if axes else [x.name]), {}, 1
    return [x.name], ({"axes": axes} if axes else {}), 1


def b_concat(b: Builder, op: str) -> Built:
    d = b.d
    x = b.pick(lambda t: rank(t) >= 1)
    axis = d.int(0, rank(x) - 1)
    ins = [x.name] * d.int(2, 3)
    if d.chance(0.3) and is_float(x) and x.dtype == F32:
        ins[1] = b.weight(cdims(x))
    return ins, {"axis": b.odd(axis, 0.03)}, 1


def b_slice(b: Builder, op: str) -> Built:
    d = b.d
    x = b.pick(lambda t: rank(t) >= 1 and not any(isinstance(v, int) and v <= 0 for v in t.shape))  # onnx#7735
    dims = cdims(x)
    ax = d.int(0, len(dims) - 1)
    start = d.int(0, max(dims[ax] - 1, 0))
    end = d.choice([dims[ax], start + 1, 2 ** 62, -1])
    step = d.choice([1, 1, 2, -1]) if b.opset >= 10 else 1
    if step < 0:
        start, end = dims[ax] - 1, -(2 ** 62)
    if b.opset < 10:
        return [x.name], {"starts": [start], "ends": [end], "axes": [ax]}, 1
    return [x.name, b.ints([start]), b.ints([end]), b.ints([ax]), b.ints([step])], {}, 1


def b_split(b: Builder, op: str) -> Built:
    d = b.d
    x = b.pick(lambda t: rank(t) >= 1)
    dims = cdims(x)
    ax = d.int(0, len(dims) - 1)
    if dims[ax] < 2:
        raise Skip
    parts = [dims[ax] // 2, dims[ax] - dims[ax] // 2]
    if b.opset >= 13:
        return [x.name, b.ints(parts)], {"axis": ax}, 2
    return [x.name], {"axis": ax, "split": parts}, 2


def b_pad(b: Builder, op: str) -> Built:
    d = b.d
    x = b.pick(lambda t: rank(t) >= 1)
    r = rank(x)
    pads = [0] * (2 * r)
    for i in range(2 * r):
        if i % r >= r - 2 and d.chance(0.6):
            pads[i] = d.choice([1, 2, 0, 3])
    mode = d.choice(["constant", "constant", "reflect", "edge"])
    if b.opset < 11:
        return [x.name], {"pads": pads, "mode": mode}, 1
    return [x.name, b.ints(pads, "pads")], {"mode": mode}, 1


def b_tile_expand(b: Builder, op: str) -> Built:
    d = b.d
    x = b.pick(lambda t: rank(t) >= 1)
    dims = cdims(x)
    if op == "Tile":
        reps = [d.choice([1, 2]) for _ in dims]
        if int(np.prod(dims)) * int(np.prod(reps)) > MAX_NUMEL:
            raise Skip
        return [x.name, b.ints(reps)], {}, 1
    shape = [v if v != 1 else d.choice([1, 2, 4]) for v in dims]
    if int(np.prod(shape)) > MAX_NUMEL:
        raise Skip
    return [x.name, b.ints(shape)], {}, 1


def b_matmul(b: Builder, op: str) -> Built:
    d = b.d
    if op == "Gemm":
        x = b.pick(fl(lambda t: rank(t) == 2))
        m, k = cdims(x)
        n = d.choice([4, 10, 1, 16])
        trans_b = d.int(0, 1)
        ins = [x.name, b.weight([n, k] if trans_b else [k, n])]
        if d.chance(0.6):
            ins.append(b.weight([n]))
        attrs: dict[str, Any] = {"transB": trans_b} if trans_b else {}
        if d.chance(0.2):
            attrs["alpha"] = d.choice([1.0, 0.5, 2.0])
        return ins, attrs, 1
    x = b.pick(fl(lambda t: rank(t) >= 1))
    k = cdims(x)[-1]
    if d.chance(0.3):
        others = [t for t in b.pool if t.dtype == x.dtype and rank(t) >= 1 and cdims(t)[0 if rank(t) == 1 else -2] == k]
        if others:
            return [x.name, d.choice(others).name], {}, 1
    return [x.name, b.weight([k, d.choice([4, 8, 1, 16])])], {}, 1


def b_resize(b: Builder, op: str) -> Built:
    d = b.d
    x = b.pick(fl(lambda t: rank(t) >= 3))
    dims = cdims(x)
    r = len(dims)
    f = d.choice([2.0, 2.0, 4.0, 0.5, 8.0, 1.5, 3.0])
    scales = [1.0] * (r - 2) + [f, f if d.chance(0.8) else 2.0]
    if int(np.prod(dims)) * f * f > MAX_NUMEL:
        scales = [1.0] * r
    mode = d.choice(["nearest", "linear", "cubic"] if b.opset >= 11 else ["nearest", "linear"])
    attrs: dict[str, Any] = {"mode": mode}
    if op == "Upsample" or b.opset < 10:
        if b.opset >= 9:
            return [x.name, b.const(np.array(scales, np.float32), "scales")], attrs, 1
        return [x.name], {**attrs, "scales": scales}, 1
    if b.opset == 10:
        return [x.name, b.const(np.array(scales, np.float32), "scales")], attrs, 1
    if d.chance(0.5):
        attrs["coordinate_transformation_mode"] = d.choice(["asymmetric", "half_pixel", "align_corners",
                                                            "pytorch_half_pixel", "tf_crop_and_resize"])
    if mode == "nearest" and d.chance(0.5):
        attrs["nearest_mode"] = d.choice(["floor", "round_prefer_floor", "ceil", "round_prefer_ceil"])
    roi = b.const(np.array([], np.float32), "roi") if b.opset < 13 or d.chance(0.3) else ""
    if d.chance(0.3):
        sizes = [int(v * s) for v, s in zip(dims, scales)]
        return [x.name, roi, "", b.ints(sizes, "sizes")], attrs, 1
    return [x.name, roi, b.const(np.array(scales, np.float32), "scales")], attrs, 1


def b_gather(b: Builder, op: str) -> Built:
    d = b.d
    x = b.pick(lambda t: rank(t) >= 1)
    dims = cdims(x)
    ax = d.int(0, len(dims) - 1)
    hi = max(dims[ax] - 1, 0)
    if op == "Gather":
        idx = np.array([d.int(0, hi) for _ in range(d.int(1, 3))], np.int64)
        if d.chance(0.3):
            idx = np.array(d.int(0, hi), np.int64)
        return [x.name, b.const(idx, "idx")], {"axis": ax}, 1
    if op == "GatherElements":
        return [x.name, b.const(np.zeros(fits(dims), np.int64), "idx")], {"axis": ax}, 1
    if op == "GatherND":
        return [x.name, b.const(np.zeros([1, 1], np.int64), "idx")], {}, 1
    if op == "ScatterND":
        return [x.name, b.const(np.zeros([1, 1], np.int64), "idx"), b.weight([1, *dims[1:]])], {}, 1
    if op == "ScatterElements":
        upd = b.const(np.zeros(fits(dims), np.float32) if x.dtype == F32 else np.zeros(dims, np.int64), "upd")
        return [x.name, b.const(np.zeros(dims, np.int64), "idx"), upd], {"axis": ax}, 1
    raise Skip


def b_misc(b: Builder, op: str) -> Built:
    d = b.d
    if op == "Where":
        x = b.pick(fl())
        cond = b.const(np.ones(fits(cdims(x)), np.bool_) if d.chance(0.5) else np.array(True), "cond")
        return [cond, x.name, x.name], {}, 1
    if op == "TopK":
        x = b.pick(fl(lambda t: rank(t) >= 1))
        k = max(1, min(cdims(x)[-1], d.choice([1, 2, 5])))
        if b.opset < 10:
            return [x.name], {"k": k}, 2
        return [x.name, b.ints([k])], {}, 2
    if op == "OneHot":
        x = b.pick(lambda t: t.dtype == TensorProto.INT64)
        return [x.name, b.ints([4]), b.const(np.array([0.0, 1.0], np.float32))], {}, 1
    if op == "NonMaxSuppression":
        boxes = b.weight([1, 6, 4])
        scores = b.pick(fl(lambda t: rank(t) == 3)).name if d.chance(0.3) else b.weight([1, 1, 6])
        return [boxes, scores, b.ints([3])], {}, 1
    if op == "GridSample":
        x = b.pick(fl(lambda t: rank(t) == 4))
        n, c, h, w = cdims(x)
        return [x.name, b.weight([n, 2, 2, 2])], {"mode": d.choice(["bilinear", "nearest"])}, 1
    if op == "Einsum":
        x = b.pick(fl(lambda t: rank(t) == 2))
        return [x.name, x.name], {"equation": d.choice(["ij,ij->ij", "ij,kj->ik", "ii->i"])}, 1
    if op == "CumSum":
        x = b.pick(fl(lambda t: rank(t) >= 1))
        return [x.name, b.const(np.array(0, np.int64), "axis")], {}, 1
    if op == "ReverseSequence":
        x = b.pick(fl(lambda t: rank(t) >= 2))
        dims = cdims(x)
        return [x.name, b.ints([dims[1]] * dims[0] if dims[0] <= 64 else [1])], {}, 1
    if op in ("LSTM", "GRU", "RNN"):
        x = b.pick(fl(lambda t: rank(t) == 3))
        _, _, inp = cdims(x)
        hid = d.choice([2, 4])
        g = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
        return [x.name, b.weight([1, g * hid, inp]), b.weight([1, g * hid, hid])], {"hidden_size": hid}, 2
    if op == "ConstantOfShape":
        shape = [d.choice([1, 2, 3]) for _ in range(d.int(0, 4))]
        if d.chance(0.1):
            shape = [2 ** 40]
        ins = [b.ints(shape, "shape")]
        if d.chance(0.5):
            return ins, {"value": numpy_helper.from_array(np.array([d.choice([0.0, 1.0])], np.float32))}, 1
        return ins, {}, 1
    if op == "Range":
        return [b.const(np.array(0.0, np.float32)), b.const(np.array(d.choice([4.0, 8.0]), np.float32)),
                b.const(np.array(1.0, np.float32))], {}, 1
    if op == "Constant":
        return [], {"value": numpy_helper.from_array(np.ones([d.int(1, 4)], np.float32), "v")}, 1
    if op in ("QuantizeLinear", "DequantizeLinear"):
        x = b.pick(fl() if op == "QuantizeLinear" else (lambda t: t.dtype in (TensorProto.INT8, TensorProto.UINT8)))
        scale = b.const(np.array(d.choice([0.1, 1.0, 0.0, 1e-9]), np.float32), "scale")
        zp = b.const(np.array(0, np.int8), "zp")
        return [x.name, scale, zp], {}, 1
    if op == "Shape":
        return [b.pick().name], {}, 1
    raise Skip


def _subgraph(b: Builder, x: T, stem: str, op: str) -> onnx.GraphProto:
    """A one-node branch reading outer-scope x (If) or a Loop body carrying a value."""
    y = b.name(stem)
    vt = helper.make_tensor_value_info(y, x.dtype, None)
    node = helper.make_node(op, [x.name], [y], name=b.name(stem + "_n"))
    return helper.make_graph([node], b.name(stem + "_g"), [], [vt])


def b_control(b: Builder, op: str) -> Built:
    d = b.d
    x = b.pick(fl())
    if op == "If":
        cond = b.const(np.array(d.chance(0.5)), "cond")
        then = _subgraph(b, x, "then", "Relu")
        other = _subgraph(b, x, "else", d.choice(["Identity", "Sigmoid"]))
        return [cond], {"then_branch": then, "else_branch": other}, 1
    if op == "Loop":
        it, cin, v = b.name("iter"), b.name("cin"), b.name("v")
        cout, vout = b.name("cout"), b.name("vout")
        body = helper.make_graph(
            [helper.make_node("Identity", [cin], [cout]), helper.make_node("Relu", [v], [vout])],
            b.name("body"),
            [helper.make_tensor_value_info(it, TensorProto.INT64, []),
             helper.make_tensor_value_info(cin, TensorProto.BOOL, []),
             helper.make_tensor_value_info(v, x.dtype, x.shape)],
            [helper.make_tensor_value_info(cout, TensorProto.BOOL, []),
             helper.make_tensor_value_info(vout, x.dtype, x.shape)])
        return [b.const(np.array(2, np.int64), "trip"), b.const(np.array(True), "c"), x.name], {"body": body}, 1
    if op == "Scan":
        raise Skip
    raise Skip


UNARY_OPS = ["Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu", "Softsign", "Softplus", "HardSigmoid",
             "ThresholdedRelu", "ScaledTanh", "Celu", "HardSwish", "Mish", "Gelu", "Abs", "Neg", "Sqrt", "Exp",
             "Log", "Reciprocal", "Ceil", "Floor", "Round", "Erf", "Sign", "Not", "Sin", "Cos", "Tanh", "IsInf",
             "IsNaN", "Identity", "Dropout", "Cast", "Softmax", "LogSoftmax", "LRN", "Flatten", "DepthToSpace",
             "SpaceToDepth", "ArgMax", "ArgMin", "Transpose", "Size", "NonZero", *sorted(_UNARY)]
BINARY_OPS = ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Equal", "Greater", "Less",
              "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor", "PRelu"]
BUILDERS: dict[str, Callable[[Builder, str], Built]] = {
    **{op: b_unary for op in UNARY_OPS}, **{op: b_binary for op in BINARY_OPS},
    "Conv": b_conv, "ConvTranspose": b_conv, "MaxPool": b_pool, "AveragePool": b_pool,
    "GlobalAveragePool": b_global_pool, "GlobalMaxPool": b_global_pool,
    **{op: b_reduce for op in OP_TABLE if op.startswith("Reduce")},
    "Clip": b_clip, "BatchNormalization": b_norm, "InstanceNormalization": b_norm, "LayerNormalization": b_norm,
    "GroupNormalization": b_norm, "Reshape": b_reshape, "Squeeze": b_squeeze, "Unsqueeze": b_squeeze,
    "Concat": b_concat, "Slice": b_slice, "Split": b_split, "Pad": b_pad, "Tile": b_tile_expand,
    "Expand": b_tile_expand, "Gemm": b_matmul, "MatMul": b_matmul, "Resize": b_resize, "Upsample": b_resize,
    **{op: b_gather for op in ("Gather", "GatherElements", "GatherND", "ScatterND", "ScatterElements")},
    **{op: b_misc for op in ("Where", "TopK", "OneHot", "NonMaxSuppression", "GridSample", "Einsum", "CumSum",
                             "ReverseSequence", "LSTM", "GRU", "RNN", "ConstantOfShape", "Range", "Constant",
                             "QuantizeLinear", "DequantizeLinear", "Shape")},
    **{op: b_control for op in ("If", "Loop", "Scan")},
}
# every op lowering.py maps has a builder (a test keeps the two in step)
COMMON_OPS = ["Conv", "Conv", "Conv", "Relu", "Add", "MaxPool", "AveragePool", "Mul", "Concat", "Resize", "Reshape", "Transpose",
              "BatchNormalization", "Sigmoid", "Clip", "GlobalAveragePool", "Gemm", "MatMul", "Softmax",
              "ConvTranspose", "Slice", "Pad", "HardSwish", "ReduceMean", "Split", "DepthToSpace"]


def _input(b: Builder) -> T:
    d = b.d
    r = d.choice([4, 4, 4, 3, 2, 1, 5, 0, 6])
    base = [1, d.choice([3, 8, 4, 16, 1, 32]), d.choice([8, 16, 7, 4, 32]), d.choice([8, 16, 7, 4, 32]), 2, 2]
    dims: list[Any] = base[:r] if r >= 4 else [d.choice([1, 2, 4, 8, 16]) for _ in range(r)]
    if r >= 5:
        dims = [1, 4, 4, 4, 4, 2][:r]
    if dims and d.chance(0.05):
        dims[d.int(0, r - 1)] = d.choice([0, 4097, 1, 3])
    if dims and d.chance(0.08):
        dims[d.int(0, r - 1)] = d.choice(["N", "H", "batch"])
    if int(np.prod([v if isinstance(v, int) else 1 for v in dims] or [1])) > MAX_NUMEL:
        dims = [1] * r
    dtype = d.choice(INPUT_DTYPES) if d.chance(0.15) else F32
    t = T(b.name("in"), tuple(dims), dtype)
    b.inputs.append(helper.make_tensor_value_info(t.name, dtype, list(dims)))
    b.pool.append(t)
    return t


def ir_for(opset: int) -> int:
    return helper.find_min_ir_version_for([helper.make_opsetid("", opset)], ignore_unknown=True)


def _model(b: Builder, outputs: list, domains: dict[str, int]) -> onnx.ModelProto:
    ir = max(ir_for(b.opset), 3)
    inputs = list(b.inputs)
    if ir < 4:   # IR 3: every initializer is also a graph input
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in b.inits]
    g = helper.make_graph(b.nodes, "fuzz", inputs, outputs, initializer=b.inits)
    ops = [helper.make_opsetid("", b.opset)] + [helper.make_opsetid(k, v) for k, v in domains.items()]
    m = helper.make_model(g, opset_imports=ops, producer_name="dlarules-fuzz")
    m.ir_version = ir
    return m


def _infer(m: onnx.ModelProto) -> onnx.ModelProto | None:
    try:
        return onnx.shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
    except Exception:
        return None


def _out_types(inferred: onnx.ModelProto, names: list[str]) -> list[T]:
    vi = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    out = []
    for n in names:
        v = vi.get(n)
        if v is None or not v.type.HasField("tensor_type"):
            out.append(T(n, None, F32))
            continue
        tt = v.type.tensor_type
        shape = None
        if tt.HasField("shape"):
            shape = tuple(x.dim_value if x.HasField("dim_value") else (x.dim_param or "?") for x in tt.shape.dim)
        out.append(T(n, shape, tt.elem_type or F32))
    return out


@dataclass
class GenModel:
    model: onnx.ModelProto
    dynamic: dict[str, list[int]]     # input name -> concrete dims, for --input-shape
    ops: list[str]


def fixable_ops() -> list[str]:
    """The ops some fix recipe rewrites (dlarules.recipes.registry), that the generator can build."""
    from dlarules.recipes.registry import REGISTRY
    return sorted({op for r in REGISTRY.values() for op in r.ops} & set(BUILDERS))


def build_graph(d: Draw, max_nodes: int = 6, fixable: bool = False) -> GenModel:
    """A small ONNX model: 1-2 inputs, up to max_nodes nodes, the last tensors as outputs. `fixable`: a plain
    4-D float input and mostly ops that fix recipes rewrite, so `fix` has something to rewrite, prove and write."""
    opset = d.choice([13, 17, 11, 19, 21, 7, 8, 9, 10, 12, 14, 15, 16, 18, 20] if not fixable else [13, 17, 11, 19])
    b = Builder(d, opset)
    if fixable:
        dims = [1, d.choice([8, 3, 4, 16]), d.choice([16, 8, 32]), d.choice([16, 8, 32])]
        t = T(b.name("in"), tuple(dims), F32)
        b.inputs.append(helper.make_tensor_value_info(t.name, F32, dims))
        b.pool.append(t)
    else:
        _input(b)
    if d.chance(0.2):
        _input(b)
    domains: dict[str, int] = {}
    ops_used: list[str] = []
    ops = sorted(BUILDERS)
    fix_ops = fixable_ops() if fixable else []
    n_nodes = d.int(1, max_nodes)
    tries = 0
    while len(ops_used) < n_nodes and tries < 4 * max_nodes:
        tries += 1
        kind = d.int(0, 19)
        if kind == 0 and d.chance(0.5):                 # a custom-domain op (a plugin for TensorRT)
            dom = d.choice(["com.example", "com.microsoft", "ai.onnx.ml", "trt.plugins"])
            x = b.pick()
            outs = [b.name("custom")]
            b.nodes.append(helper.make_node(d.choice(["MyPlugin", "FusedConv", "Relu"]), [x.name], outs,
                                            name=b.name("custom_n"), domain=dom))
            if d.chance(0.85):
                domains[dom] = 1
            b.pool.append(T(outs[0], x.shape, x.dtype))
            ops_used.append(f"{dom}:custom")
            continue
        if kind == 1 and d.chance(0.3):                 # an op no table knows
            x = b.pick()
            outs = [b.name("unk")]
            b.nodes.append(helper.make_node(d.choice(["FrobnicateV2", "Celu", "Trilu", "Det"]), [x.name], outs,
                                            name=b.name("unk_n")))
            b.pool.append(T(outs[0], None, x.dtype))
            ops_used.append("unknown")
            continue
        if fixable and kind < 14:
            op = d.choice(fix_ops)
        else:
            op = d.choice(COMMON_OPS) if kind < 10 else d.choice(ops)
        try:
            ins, attrs, n_out = BUILDERS[op](b, op)
        except Skip:
            continue
        n_inits = len(b.inits)
        outs = [b.name(op.lower()) for _ in range(n_out)]
        try:
            node = helper.make_node(op, ins, outs, name=b.name(op) if d.chance(0.9) else "", **attrs)
        except ValueError:   # an attribute onnx.helper cannot type (an empty list)
            del b.inits[n_inits:]
            continue
        b.nodes.append(node)
        inferred = _infer(_model(b, [], domains))
        if inferred is None and not d.chance(0.04):     # keep a malformed node once in a while
            b.nodes.pop()
            del b.inits[n_inits:]
            continue
        types = _out_types(inferred, outs) if inferred is not None else [T(o, None, F32) for o in outs]
        if any(isinstance(v, int) and v < 0 for t in types for v in (t.shape or ())):
            # onnx infers a negative dim (a pool window larger than its input); a Slice after it aborts onnx's
            # own shape inference (std::clamp assertion, onnx/onnx#7735), which would kill the generator
            b.nodes.pop()
            del b.inits[n_inits:]
            continue
        b.pool.extend(types)
        ops_used.append(op)
    produced = [t for t in b.pool if not any(t.name == i.name for i in b.inputs)]
    last = produced[-1:] if produced else b.pool[-1:]
    outs = list(last)
    if len(produced) > 1 and d.chance(0.3):
        outs.insert(0, produced[-2])
    outputs = []
    for t in outs:
        if t.name in {i.name for i in b.inputs} and not b.nodes:
            y = b.name("id")
            b.nodes.append(helper.make_node("Identity", [t.name], [y], name=b.name("Identity")))
            t = T(y, t.shape, t.dtype)
        shape = list(t.shape) if t.shape is not None and not d.chance(0.05) else None
        if shape is not None:
            shape = [v if isinstance(v, int) or v != "?" else None for v in shape]
        outputs.append(helper.make_tensor_value_info(t.name, t.dtype, shape))
    m = _model(b, outputs, domains)
    dynamic = {}
    for vi in b.inputs:
        dims = [x.dim_value if x.HasField("dim_value") else None for x in vi.type.tensor_type.shape.dim]
        if any(v is None for v in dims):
            dynamic[vi.name] = [v if v is not None else 1 for v in dims]
    return GenModel(m, dynamic, ops_used)
