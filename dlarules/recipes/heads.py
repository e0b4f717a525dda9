"""Detection-head sinking: a Concat of per-scale maps flattened to [N, C, H*W] is pushed down past the ops that act
per position, which then run per scale on the 4-D maps (DLA); only the final per-scale Reshape + Concat stay.

YOLOv8/YOLO11 Detect (and Segment) heads flatten each scale (1x64x80x80 -> 1x64x6400), concatenate the scales on
the flattened axis (8400 positions, over DLA's 8192), then run the DFL (Reshape/Transpose/Softmax/1x1 Conv), the
box decode against constant grids and the class Sigmoid on those 3-D tensors: all on the GPU. Each of those ops
acts on every position alone, so it can run on each scale's 4-D map before anything is flattened.

How: a tensor of the head is tracked as a *lifted* value: its logical shape is [N, d1..dk, P] (P = the positions
of all scales, last axis), and it is held as one 4-D map [N, C, H_i, W_i] per scale plus `idx`, an integer array
of shape (d1..dk) giving the physical channel of every logical channel index. Reshapes, Transposes, Slices,
Splits and Gathers that move only channel axes change `idx` alone (no layer); element-wise ops run per scale with
their constants cut per scale; a Softmax over a channel axis runs per group of channels; a 1x1 Conv (or a MatMul
by a constant on the left) that contracts a channel axis becomes one 1x1 Conv over the physical channels. Where an
op does anything else (mixes positions, reads a tensor that is not lifted), sinking stops there and the lifted
value is written back as it was: per-scale Reshape to [N, d1..dk, H_i*W_i] and a Concat on the last axis.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx_graphsurgeon as gs

from .base import MAX_NEW_WEIGHT_ELEMENTS, Change, Context, Recipe, constant_value, str_attr

NAME = "head-sink"

# element-wise ops with one data input (extra inputs, if any, must be scalar constants: Clip's bounds)
_UNARY = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Softplus", "Softsign", "HardSigmoid",
          "HardSwish", "Clip", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Mish", "Erf", "Floor", "Ceil",
          "Round", "Sign", "Gelu", "ThresholdedRelu", "Celu"}
_PASS = {"Identity", "Dropout"}
_BINARY = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"}
_RESHAPE = {"Reshape", "Squeeze", "Unsqueeze"}
# ops the recipe is planned on (the head's layers the rank/size rules send to the GPU)
OPS = tuple(sorted(_UNARY | _PASS | _BINARY | _RESHAPE | {"Concat", "Transpose", "Slice", "Split", "Gather",
                                                           "Softmax", "Conv", "MatMul"}))


class _Stop(Exception):
    """This op cannot be sunk: its lifted inputs are written back in front of it."""


@dataclass
class Lifted:
    parts: list[Any]     # per scale: a [N, C, H_i, W_i] tensor (gs.Variable, or None when only planning)
    idx: np.ndarray      # logical channel dims -> physical channel of the parts
    cphys: int           # physical channels of the parts
    scales: tuple        # ((H_i, W_i), ...)
    batch: int

    @property
    def cdims(self) -> tuple:
        return tuple(self.idx.shape)

    @property
    def rank(self) -> int:
        return 2 + self.idx.ndim

    def canonical(self) -> bool:
        return self.idx.size == self.cphys and bool(np.array_equal(self.idx.reshape(-1), np.arange(self.cphys)))


class _Sinker:
    """One pass over the graph in order. With `build` False it only decides which nodes sink (check); with a set
    of node ids it rewrites those nodes (apply)."""

    def __init__(self, ctx: Context, build: set[int] | None = None) -> None:
        self.ctx = ctx
        self.build = build
        self.lifted: dict[str, Lifted] = {}
        self.sunk: list[gs.Node] = []        # nodes replaced by per-scale ones
        self.seeds: list[gs.Node] = []       # Concats over scales that started a lifted value
        self.feeders: list[gs.Node] = []     # the per-scale flattening Reshapes of the seeds
        self.added: list[str] = []
        self.consts: dict[tuple, Any] = {}

    # -------------------------------------------------------------------------------------------- emitting
    def _emit(self, op: str, base: str, inputs: list[Any], shape: tuple, **attrs: Any) -> Any:
        if self.build is None:
            return None
        like = next((t for t in inputs if isinstance(t, gs.Variable)), None)
        out = self.ctx.var(f"{base}_out", like=like, shape=shape)
        n = self.ctx.node(op, base, list(inputs), [out], **attrs)
        self.added.append(n.name)
        return out

    def _const(self, base: str, value: np.ndarray, key: tuple | None = None) -> Any:
        if self.build is None:
            return None
        if key is not None and key in self.consts:
            return self.consts[key]
        c = self.ctx.const(base, np.ascontiguousarray(value))
        if key is not None:
            self.consts[key] = c
        return c

    def _i64(self, base: str, values: list[int]) -> Any:
        return self._const(base, np.array(values, dtype=np.int64))

    def _select(self, lv: Lifted, part: Any, s: int, chans: np.ndarray, base: str) -> Any:
        """The channels `chans` (physical indices) of one scale's map, in that order: the map itself, a Slice of a
        contiguous run, else a 1x1 Conv with one-hot weights (exact: each output is one input times 1)."""
        chans = np.asarray(chans).reshape(-1)
        h, w = lv.scales[s]
        shape = (lv.batch, len(chans), h, w)
        if len(chans) == lv.cphys and np.array_equal(chans, np.arange(lv.cphys)):
            return part
        if np.array_equal(chans, np.arange(chans[0], chans[0] + len(chans))):
            return self._emit("Slice", f"{base}/slice", [part, self._i64(f"{base}/starts", [int(chans[0])]),
                                                          self._i64(f"{base}/ends", [int(chans[0]) + len(chans)]),
                                                          self._i64(f"{base}/axes", [1])], shape)
        if len(chans) * lv.cphys > MAX_NEW_WEIGHT_ELEMENTS:
            raise _Stop()
        if self.build is None:
            return None
        w1 = np.zeros((len(chans), lv.cphys, 1, 1))
        w1[np.arange(len(chans)), chans, 0, 0] = 1.0
        return self._emit("Conv", f"{base}/select", [part, self.ctx.weight(f"{base}/select_weight", w1)], shape,
                          kernel_shape=[1, 1])

    def _materialize(self, lv: Lifted, base: str) -> Lifted:
        if lv.canonical():
            return lv
        parts = [self._select(lv, p, s, lv.idx, f"{base}/s{s}") for s, p in enumerate(lv.parts)]
        return Lifted(parts, np.arange(lv.idx.size).reshape(lv.cdims), lv.idx.size, lv.scales, lv.batch)

    def _finalize(self, t: gs.Tensor, lv: Lifted) -> None:
        """Write the lifted value back as the original tensor: per-scale Reshape to [N, d1..dk, H*W], Concat."""
        base = f"{t.name}/unsunk"
        lv = self._materialize(lv, base)
        flat = []
        for s, p in enumerate(lv.parts):
            h, w = lv.scales[s]
            shape = (lv.batch, *lv.cdims, h * w)
            flat.append(self._emit("Reshape", f"{base}/s{s}/reshape",
                                   [p, self._i64(f"{base}/s{s}/shape", list(shape))], shape))
        if self.build is None:
            return
        n = self.ctx.node("Concat", f"{base}/concat", flat, [t], axis=lv.rank - 1)
        self.added.append(n.name)

    # -------------------------------------------------------------------------------------------- walking
    def run(self) -> None:
        for node in list(self.ctx.graph.nodes):
            if self.build is not None and id(node) not in self.build:
                continue
            seed = self._seed(node)
            if seed is not None:
                self.lifted[node.outputs[0].name] = seed
                self.seeds.append(node)
                self.sunk.append(node)
                continue
            if not any(t.name in self.lifted for t in node.inputs):
                continue
            try:
                outs = self._sink(node)
            except (_Stop, ValueError, TypeError, IndexError):   # malformed attributes (a zero step, a string
                continue                                         # perm): not sunk, as any op it cannot move
            for t, lv in zip(node.outputs, outs):
                if lv is not None:
                    self.lifted[t.name] = lv
            self.sunk.append(node)

    def _seed(self, node: gs.Node) -> Lifted | None:
        """A Concat on the last axis of Reshapes that flatten 4-D maps [N, C, H, W] to [N, d1..dk, H*W]."""
        if node.op != "Concat" or not node.inputs:
            return None
        out = self.ctx.shape(node.outputs[0])
        if out is None or len(out) < 3 or int(node.attrs.get("axis", 0)) % len(out) != len(out) - 1:
            return None
        scales, cdims, batch, feeders = [], None, None, []
        for t in node.inputs:
            prod = t.inputs[0] if len(t.inputs) == 1 else None
            if prod is None or prod.op != "Reshape" or t in self.ctx.graph.outputs:
                return None
            src = self.ctx.shape(prod.inputs[0])
            dst = self.ctx.shape(t)
            if src is None or dst is None or len(src) != 4 or dst[0] != src[0] or dst[-1] != src[2] * src[3] \
                    or int(np.prod(dst[1:-1])) != src[1]:
                return None
            if cdims not in (None, tuple(dst[1:-1])) or batch not in (None, src[0]):
                return None
            cdims, batch = tuple(dst[1:-1]), src[0]
            scales.append((src[2], src[3]))
            feeders.append(prod)
        c = int(np.prod(cdims))
        if self.build is not None:
            # the Reshapes read only by this Concat go with it (cleanup would drop them; the lineage counts them)
            self.feeders += [p for p in feeders if len(p.outputs[0].outputs) == 1]
        return Lifted([f.inputs[0] for f in feeders] if self.build is not None else [None] * len(feeders),
                      np.arange(c).reshape(cdims), c, tuple(scales), batch)

    def _operand(self, t: gs.Tensor) -> Lifted | np.ndarray:
        if t.name in self.lifted:
            return self.lifted[t.name]
        v = constant_value(t)
        if v is None:
            raise _Stop()
        return v

    def _sink(self, node: gs.Node) -> list[Lifted | None]:   # noqa: C901 - one case per op family
        op = node.op
        x = self._operand(node.inputs[0]) if node.inputs else None
        base = node.name
        if op in _PASS:
            if not isinstance(x, Lifted) or (len(node.outputs) > 1 and node.outputs[1].outputs):
                raise _Stop()
            return [x]
        if op in _UNARY:
            if not isinstance(x, Lifted):
                raise _Stop()
            extra = []
            for t in node.inputs[1:]:
                v = constant_value(t) if t.name else np.zeros(1)
                if v is None or v.size != 1:
                    raise _Stop()
                extra.append(t)
            parts = [self._emit(op, f"{base}/s{s}", [p, *extra], (x.batch, x.cphys, *x.scales[s]), **node.attrs)
                     for s, p in enumerate(x.parts)]
            return [Lifted(parts, x.idx, x.cphys, x.scales, x.batch)]
        if op in _BINARY:
            return [self._binary(node)]
        if op in _RESHAPE:
            if not isinstance(x, Lifted):
                raise _Stop()
            shape = self.ctx.shape(node.outputs[0])
            return [self._reshaped(x, shape)]
        if op == "Transpose":
            if not isinstance(x, Lifted):
                raise _Stop()
            perm = [int(p) for p in node.attrs.get("perm", list(range(x.rank))[::-1])]
            if len(perm) != x.rank or perm[0] != 0 or perm[-1] != x.rank - 1:
                raise _Stop()
            return [Lifted(x.parts, x.idx.transpose([p - 1 for p in perm[1:-1]]), x.cphys, x.scales, x.batch)]
        if op == "Slice":
            return [self._slice(node, x)]
        if op == "Split":
            return self._split(node, x)
        if op == "Gather":
            ind = constant_value(node.inputs[1])
            axis = self._axis(node.attrs.get("axis", 0), x)
            if ind is None or not np.issubdtype(ind.dtype, np.integer) or ind.ndim > 1:
                raise _Stop()
            d = x.idx.shape[axis - 1]
            if np.any(ind < -d) or np.any(ind >= d):
                raise _Stop()
            return [Lifted(x.parts, np.take(x.idx, ind % d, axis=axis - 1), x.cphys, x.scales, x.batch)]
        if op == "Concat":
            return [self._concat(node)]
        if op == "Softmax":
            return [self._softmax(node, x)]
        if op == "Conv":
            return [self._conv(node, x)]
        if op == "MatMul":
            return [self._matmul(node)]
        raise _Stop()

    def _axis(self, axis: Any, x: Any) -> int:
        """A channel axis of a lifted value (not the batch, not the positions), else stop."""
        if not isinstance(x, Lifted):
            raise _Stop()
        a = int(axis) % x.rank
        if a == 0 or a == x.rank - 1:
            raise _Stop()
        return a

    def _reshaped(self, x: Lifted, shape: tuple | None) -> Lifted:
        if shape is None or len(shape) < 3 or shape[0] != x.batch or shape[-1] != sum(h * w for h, w in x.scales) \
                or int(np.prod(shape[1:-1])) != x.idx.size:
            raise _Stop()
        return Lifted(x.parts, x.idx.reshape(shape[1:-1]), x.cphys, x.scales, x.batch)

    def _slice(self, node: gs.Node, x: Any) -> Lifted:
        vals = [constant_value(t) if t.name else None for t in node.inputs[1:]]
        if len(vals) < 2 or vals[0] is None or vals[1] is None or any(
                v is None for v, t in zip(vals[2:], node.inputs[3:]) if t.name):
            raise _Stop()
        starts, ends = vals[0].reshape(-1), vals[1].reshape(-1)
        axes = vals[2].reshape(-1) if len(vals) > 2 and vals[2] is not None else np.arange(len(starts))
        steps = vals[3].reshape(-1) if len(vals) > 3 and vals[3] is not None else np.ones(len(starts), np.int64)
        idx = x.idx if isinstance(x, Lifted) else None
        sl = [slice(None)] * (idx.ndim if idx is not None else 0)
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            a = self._axis(ax, x)
            sl[a - 1] = slice(int(max(min(st, 2 ** 62), -2 ** 62)), int(max(min(en, 2 ** 62), -2 ** 62)), int(sp))
        new = idx[tuple(sl)]
        if new.size == 0:
            raise _Stop()
        return Lifted(x.parts, new, x.cphys, x.scales, x.batch)

    def _split(self, node: gs.Node, x: Any) -> list[Lifted]:
        a = self._axis(node.attrs.get("axis", 0), x)
        d = x.idx.shape[a - 1]
        sizes = node.attrs.get("split")
        if sizes is None and len(node.inputs) > 1 and node.inputs[1].name:
            v = constant_value(node.inputs[1])
            if v is None:
                raise _Stop()
            sizes = v.reshape(-1).tolist()
        if sizes is None:
            k = len(node.outputs)
            if d % k:
                raise _Stop()
            sizes = [d // k] * k
        if sum(sizes) != d or len(sizes) != len(node.outputs):
            raise _Stop()
        cuts = np.cumsum([0, *sizes])
        return [Lifted(x.parts, np.take(x.idx, np.arange(cuts[i], cuts[i + 1]), axis=a - 1), x.cphys, x.scales,
                       x.batch) for i in range(len(sizes))]

    def _concat(self, node: gs.Node) -> Lifted:
        ins = [self._operand(t) for t in node.inputs]
        if not all(isinstance(v, Lifted) for v in ins) or len({(v.scales, v.batch) for v in ins}) != 1:
            raise _Stop()
        first = ins[0]
        a = self._axis(node.attrs.get("axis", 0), first)
        if any(v.rank != first.rank for v in ins):
            raise _Stop()
        off, idxs = 0, []
        for v in ins:
            idxs.append(v.idx + off)
            off += v.cphys
        idx = np.concatenate(idxs, axis=a - 1)
        parts = [self._emit("Concat", f"{node.name}/s{s}", [v.parts[s] for v in ins],
                            (first.batch, off, *first.scales[s]), axis=1) for s in range(len(first.scales))]
        return Lifted(parts, idx, off, first.scales, first.batch)

    def _softmax(self, node: gs.Node, x: Any) -> Lifted:
        if (self.ctx.graph.opset or 13) < 13:
            raise _Stop()   # opset < 13 Softmax flattens the trailing axes (the positions among them)
        a = self._axis(node.attrs.get("axis", -1), x)
        moved = np.moveaxis(x.idx, a - 1, -1)
        d = moved.shape[-1]
        groups = moved.reshape(-1, d)
        parts = []
        for s, p in enumerate(x.parts):
            h, w = x.scales[s]
            outs = [self._emit("Softmax", f"{node.name}/s{s}/g{g}",
                               [self._select(x, p, s, groups[g], f"{node.name}/s{s}/g{g}")], (x.batch, d, h, w),
                               axis=1) for g in range(len(groups))]
            parts.append(outs[0] if len(outs) == 1 else self._emit(
                "Concat", f"{node.name}/s{s}/concat", outs, (x.batch, d * len(groups), h, w), axis=1))
        idx = np.moveaxis(np.arange(moved.size).reshape(moved.shape), -1, a - 1)
        return Lifted(parts, idx, moved.size, x.scales, x.batch)

    def _contract(self, node: gs.Node, x: Lifted, axis: int, w: np.ndarray, bias: np.ndarray | None) -> Lifted:
        """out[.., k, ..] = sum_b w[k, b] x[.., b, ..] (+ bias[k]) over channel axis `axis`: one 1x1 Conv over the
        physical channels (rows in the output's canonical order)."""
        k, d = w.shape
        if x.idx.shape[axis - 1] != d:
            raise _Stop()
        out_cdims = list(x.cdims)
        out_cdims[axis - 1] = k
        rows = np.arange(int(np.prod(out_cdims))).reshape(out_cdims)
        r = rows.size // k
        if rows.size * x.cphys > MAX_NEW_WEIGHT_ELEMENTS:
            raise _Stop()
        parts = [None] * len(x.parts)
        if self.build is not None:
            idx_m = np.moveaxis(x.idx, axis - 1, -1).reshape(r, d)
            rows_m = np.moveaxis(rows, axis - 1, -1).reshape(r, k)
            wp = np.zeros((rows.size, x.cphys))
            wp[rows_m[:, :, None], idx_m[:, None, :]] = w[None, :, :]
            ins = [self.ctx.weight(f"{node.name}/weight", wp.reshape(rows.size, x.cphys, 1, 1))]
            if bias is not None:
                bp = np.zeros(rows.size)
                bp[rows_m] = bias[None, :]
                ins.append(self.ctx.weight(f"{node.name}/bias", bp))
            parts = [self._emit("Conv", f"{node.name}/s{s}", [p, *ins], (x.batch, rows.size, *x.scales[s]),
                                kernel_shape=[1, 1]) for s, p in enumerate(x.parts)]
        return Lifted(parts, rows, rows.size, x.scales, x.batch)

    def _conv(self, node: gs.Node, x: Any) -> Lifted:
        if not isinstance(x, Lifted) or x.rank < 3:
            raise _Stop()
        w = constant_value(node.inputs[1]) if len(node.inputs) > 1 else None
        a = node.attrs
        if w is None or w.ndim != x.rank or any(v != 1 for v in w.shape[2:]) or int(a.get("group", 1)) != 1 or \
                any(int(v) != 1 for v in a.get("strides", [])) or any(int(v) for v in a.get("pads", [])) or \
                str_attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise _Stop()   # only a 1x1 convolution acts on each position alone
        bias = None
        if len(node.inputs) > 2 and node.inputs[2].name:
            bias = constant_value(node.inputs[2])
            if bias is None:
                raise _Stop()
        return self._contract(node, x, 1, w.reshape(w.shape[0], w.shape[1]).astype(np.float64),
                              None if bias is None else bias.reshape(-1).astype(np.float64))

    def _matmul(self, node: gs.Node) -> Lifted:
        a = constant_value(node.inputs[0])
        x = self._operand(node.inputs[1])
        if a is None or a.ndim != 2 or not isinstance(x, Lifted) or x.rank < 3:
            raise _Stop()   # x @ B contracts the positions: not per position
        return self._contract(node, x, x.rank - 2, a.astype(np.float64), None)

    def _binary(self, node: gs.Node) -> Lifted:
        a, b = (self._operand(t) for t in node.inputs[:2])
        base = node.name
        if isinstance(a, Lifted) and isinstance(b, Lifted):
            if a.scales != b.scales or a.batch != b.batch or a.cdims != b.cdims:
                raise _Stop()
            if not (a.cphys == b.cphys and np.array_equal(a.idx, b.idx)):
                a, b = self._materialize(a, f"{base}/a"), self._materialize(b, f"{base}/b")
            parts = [self._emit(node.op, f"{base}/s{s}", [pa, pb], (a.batch, a.cphys, *a.scales[s]))
                     for s, (pa, pb) in enumerate(zip(a.parts, b.parts))]
            return Lifted(parts, a.idx, a.cphys, a.scales, a.batch)
        x = a if isinstance(a, Lifted) else b
        c = b if x is a else a
        cname = node.inputs[1 if x is a else 0].name
        if not isinstance(x, Lifted) or not isinstance(c, np.ndarray) or c.ndim > x.rank:
            raise _Stop()
        full = (1, *x.cdims, sum(h * w for h, w in x.scales))
        c = c.reshape((1,) * (x.rank - c.ndim) + c.shape)
        if c.shape[0] != 1 or any(cd not in (1, fd) for cd, fd in zip(c.shape, full)):
            raise _Stop()
        if c.size > 1 and any(cd != 1 for cd in c.shape[1:-1]) and x.idx.size != x.cphys:
            x = self._materialize(x, f"{base}/x")   # a channel subset: constants need every physical channel
        parts = []
        off = 0
        for s, p in enumerate(x.parts):
            h, w = x.scales[s]
            cs = self._scale_const(c, x, off, h, w)
            off += h * w
            # one constant per scale and source constant: the parser makes one CONSTANT layer per name
            k = self._const(f"{base}/s{s}/const", cs, key=(cname, s, x.cphys, x.idx.tobytes(), cs.shape))
            ins = [p, k] if x is a else [k, p]
            parts.append(self._emit(node.op, f"{base}/s{s}", ins, (x.batch, x.cphys, h, w)))
        return Lifted(parts, x.idx, x.cphys, x.scales, x.batch)

    def _scale_const(self, c: np.ndarray, x: Lifted, off: int, h: int, w: int) -> np.ndarray:
        """The constant's part for one scale as [1, C or 1, H or 1, W or 1] in the physical channel order,
        collapsed where it is uniform (a per-scale stride becomes a scalar: a Scale layer on DLA)."""
        seg = c[..., off:off + h * w] if c.shape[-1] != 1 else c
        chans = c.shape[1:-1]
        if all(d == 1 for d in chans):
            v = seg.reshape(1, 1, -1)
        else:
            logical = np.broadcast_to(seg, (1, *x.cdims, seg.shape[-1])).reshape(x.idx.size, -1)
            v = np.empty((x.cphys, logical.shape[-1]), dtype=c.dtype)
            v[x.idx.reshape(-1)] = logical
            v = v.reshape(1, x.cphys, -1)
        if v.shape[-1] > 1 and np.all(v == v[..., :1]):
            v = v[..., :1]
        if v.shape[1] > 1 and np.all(v == v[:, :1]):
            v = v[:, :1]
        spatial = v.shape[-1] > 1
        v = v.reshape(1, v.shape[1], h if spatial else 1, w if spatial else 1)
        if spatial and v.shape[1] == 1 and x.cphys > 1:
            v = np.broadcast_to(v, (1, x.cphys, h, w))   # DLA broadcasts only NC11 / N111 operands
        return np.ascontiguousarray(v)

    # -------------------------------------------------------------------------------------------- results
    def components(self) -> list[set[int]]:
        """The sunk nodes grouped by the lifted values they share (ids), each with at least one op past a seed."""
        parent: dict[int, int] = {}

        def find(i: int) -> int:
            while parent.setdefault(i, i) != i:
                i = parent[i]
            return i
        made: dict[str, int] = {}
        sunk = {id(n) for n in self.sunk}
        for n in self.sunk:
            find(id(n))
            for t in n.inputs:
                if t.name in made:
                    parent[find(id(n))] = find(made[t.name])
            for t in n.outputs:
                made[t.name] = id(n)
        groups: dict[int, set[int]] = {}
        for i in sunk:
            groups.setdefault(find(i), set()).add(i)
        seeds = {id(n) for n in self.seeds}
        return [g for g in groups.values() if g - seeds]

    def needs_back(self) -> list[tuple[gs.Tensor, Lifted]]:
        """Lifted tensors read by a node that did not sink, or graph outputs: they are written back."""
        sunk = {id(n) for n in self.sunk}
        outs = {t.name for t in self.ctx.graph.outputs}
        back = []
        for n in self.sunk:
            for t in n.outputs:
                if t.name in self.lifted and (t.name in outs or any(id(r) not in sunk for r in t.outputs)):
                    back.append((t, self.lifted[t.name]))
        return back


def _component(node: gs.Node, ctx: Context) -> set[int] | str:
    sinker = _Sinker(ctx)
    sinker.run()
    for comp in sinker.components():
        if id(node) in comp or any(id(f) in comp for f in _feeding(node)):
            return comp
    return ("not part of a Concat over scales of flattened 4-D maps followed by ops that act per position "
            "(nothing to sink)")


def _feeding(node: gs.Node) -> list[gs.Node]:
    """A flattening Reshape stands for the Concat it feeds."""
    if node.op != "Reshape":
        return []
    return [r for r in node.outputs[0].outputs if r.op == "Concat"]


def _check(node: gs.Node, ctx: Context) -> str | None:
    got = _component(node, ctx)
    return got if isinstance(got, str) else None


def _apply(node: gs.Node, ctx: Context) -> Change:
    comp = _component(node, ctx)
    sinker = _Sinker(ctx, build=comp)
    sinker.run()
    back = sinker.needs_back()
    removed = [n.name for n in sinker.sunk] + [n.name for n in sinker.feeders]
    ops = sorted({n.op for n in sinker.sunk if n not in sinker.seeds})
    scales = sinker.lifted[sinker.seeds[0].outputs[0].name].scales
    for n in sinker.sunk + sinker.feeders:
        for t in n.outputs:
            t.inputs.clear()
        ctx.remove(n)
    for t, lv in back:
        sinker._finalize(t, lv)
    shown = ", ".join(f"{h}x{w}" for h, w in scales)
    return Change(NAME, node.name, f"Concat over {len(scales)} scales ({shown}) of flattened maps sunk past "
                  f"{len(sinker.sunk) - len(sinker.seeds)} per-position op(s) ({', '.join(ops)}): they run per scale "
                  f"on the 4-D maps; {len(back)} tensor(s) flattened and concatenated at the end", True,
                  sinker.added, removed)


RECIPES = [
    Recipe(NAME, "Concat of flattened per-scale maps -> per-position ops run per scale in 4-D, flattened at the end",
           OPS, "always", "per-scale copies of each sunk op (one per scale); constants cut per scale",
           _check, _apply,
           "Detection heads (YOLOv8/YOLO11 Detect and Segment, and others built the same way) flatten each scale to "
           "[N, C, H*W], concatenate the scales on the positions (8400 > DLA's 8192) and then run per-position "
           "ops on 3-D tensors, all on the GPU. The Concat is pushed down past element-wise ops (constants over "
           "the positions are cut per scale and reshaped to 1xCxHxW, uniform ones collapse to scalars), "
           "activations, Softmax over a channel axis (per group of channels), 1x1 Conv / constant MatMul on "
           "channels, and Reshape/Transpose/Slice/Split/Gather/Concat that move only channel axes (bookkeeping, no "
           "layer); each op then runs per scale on the 4-D maps. It stops at the first op that mixes positions; "
           "only the final per-scale Reshape and Concat stay. Every op acts on each position alone: exact.",
           reach=2),
]
