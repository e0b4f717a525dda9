"""ONNX node -> the TensorRT layer(s) the ONNX parser makes of it, then the builder rewrites that decide placement.

Read from onnx-tensorrt's importers (builtin_op_importers.cpp / onnxOpImporters.cpp, 8.0-GA .. 10.x) and from
real build logs; see docs/lowering.md (generated from `OP_TABLE`) and ../shared/dla-facts/onnx-trt-mapping.md.
Where the parser changed between releases, the behaviour is chosen by the release's `parser` settings in
rules/releases.yaml, so a new release is a data change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .layers import Layer
from .model import Graph, Node, Tensor

# Parser/builder behaviours that differ between TensorRT releases; rules/releases.yaml sets them per release.
PARSER_DEFAULTS: dict[str, Any] = {
    "gemm_const_b": "conv_1x1",          # fully_connected (8.0/8.2) | conv_1x1 (builder rewrite, 8.4+)
    "reshape_back_name": "reshape_after_{}",
    "global_avg_pool": "reduce",         # reduce | pooling (8.5 builder re-types it as a global POOLING)
    "flatten_2d": "identity",            # none (<= 8.4.1) | identity
    "transpose_identity": "shuffle",     # elided (<= 8.4) | shuffle
    "squeeze": "shuffle",                # shuffle | squeeze_layer (10.7+)
    "resize_sizes": "shape_tensor",      # shape_tensor (<= 8.6) | output_dims (9+)
    "pad": "slice",                      # padding (8.0) | slice
    "cast": "identity",                  # identity (<= 8.5) | cast
    "instance_norm": "plugin",           # plugin (<= 9.3) | normalization (10+)
    "missing_ops": [],                   # ONNX ops this parser has no importer for
    "qdq_fusion": False,                 # DLA takes Q/DQ networks: fuse Q/DQ pairs (from explicit_quantization)
}

_FLT_MAX = 3.4028234663852886e38


class LayerIndex:
    """Who produces and who reads each tensor of the network (built once, shared by rules and partition)."""

    def __init__(self, layers: list[Layer]) -> None:
        self.producer: dict[str, Layer] = {}
        self.users: dict[str, list[Layer]] = {}
        for layer in layers:
            for t in layer.outputs:
                self.producer[t.name] = layer
            for t in layer.inputs:
                u = self.users.get(t.name)
                if u is None:
                    self.users[t.name] = [layer]
                else:
                    u.append(layer)

    def producer_of(self, layer: Layer, k: int) -> Layer | None:
        return self.producer.get(layer.inputs[k].name) if k < len(layer.inputs) else None

    def consumers_of(self, layer: Layer) -> list[Layer]:
        return [u for t in layer.outputs for u in self.users.get(t.name, ())]


@dataclass
class LayerGraph:
    """The network TensorRT builds: layers in network order. `folded_nodes` and `noop_nodes` are ONNX nodes
    that became no layer (build-time constants, no-ops)."""

    graph: Graph
    layers: list[Layer]
    folded_nodes: list[str]
    noop_nodes: list[str]
    features: Mapping[str, Any]
    _index: LayerIndex | None = None

    @property
    def index(self) -> LayerIndex:
        if self._index is None:
            self._index = LayerIndex(self.layers)
        return self._index


class Lowerer:
    def __init__(self, graph: Graph, features: Mapping[str, Any]) -> None:
        self.graph = graph
        self.features = {**PARSER_DEFAULTS, **features}
        self.layers: list[Layer] = []
        self._name_counts: dict[str, int] = {}
        self._const_layers: dict[str, Tensor] = {}
        self.node: Node | None = None
        self._missing = frozenset(self.features.get("missing_ops") or ())
        self._aliases: dict[str, Tensor] = {}

    def noop(self) -> None:
        """The node makes no layer: its output is its input."""
        self._aliases[self.node.outputs[0]] = self.inp(0)

    # -- tensors
    def t(self, name: str) -> Tensor:
        return self.graph.tensor(name)

    def inp(self, k: int) -> Tensor | None:
        ins = self.node.inputs
        return self.graph.tensor(ins[k]) if k < len(ins) and ins[k] else None

    def out(self, k: int = 0) -> Tensor:
        return self.graph.tensor(self.node.outputs[k])

    def value(self, k: int) -> np.ndarray | None:
        t = self.inp(k)
        return t.value() if t is not None and t.const else None

    def internal(self, shape: tuple | None, dtype: str | None) -> Tensor:
        return Tensor(f"{self.node.name}:{len(self.layers)}", shape, dtype)

    # -- layers
    def add(self, kind: str, attrs: dict[str, Any], inputs: list[Tensor], out: Tensor | None = None, *,
            named: bool = True, name: str | None = None, origin: str = "parser",
            shape: tuple | None = None, dtype: str | None = None) -> Tensor:
        node = self.node
        if out is None:
            out = self.internal(shape, dtype if dtype is not None else (inputs[0].dtype if inputs else None))
        lname = name or node.name
        if named and name is None:
            lname = self._unique(lname)
        self.layers.append(Layer(len(self.layers), lname, kind, node.name, node.op, attrs, inputs, [out],
                                 named=named, origin=origin))
        return out

    def _unique(self, name: str) -> str:
        n = self._name_counts.get(name, 0)
        self._name_counts[name] = n + 1
        return name if n == 0 else f"{name}_{n}"

    def constant(self, t: Tensor) -> Tensor:
        """A CONSTANT layer for weights used as a tensor (deduplicated by name, as the 8.4+ parser does)."""
        if not t.const:
            return t
        if t.name in self._const_layers:
            return self._const_layers[t.name]
        out = Tensor(t.name, t.shape, t.dtype, True, t.weights)
        out._value, out._value_known = t._value, t._value_known
        self.layers.append(Layer(len(self.layers), t.name, "CONSTANT", self.node.name, self.node.op, {}, [], [out]))
        self._const_layers[t.name] = out
        return out

    def broadcast(self, t: Tensor, rank: int) -> Tensor:
        """Rank-broadcast by prepending 1s: an unnamed SHUFFLE, as the parser's broadcastTensor adds."""
        if t.shape is None or len(t.shape) >= rank:
            return t
        shape = (1,) * (rank - len(t.shape)) + tuple(t.shape)
        return self.add("SHUFFLE", _shuffle_attrs(reshape=True, reshape_const=True), [t], named=False,
                        shape=shape, dtype=t.dtype)


# ---------------------------------------------------------------------------------------------- helpers

def _ints(v: Any) -> list[int]:
    return [int(x) for x in np.asarray(v).reshape(-1)]


def _shuffle_attrs(*, reshape: bool = False, perm: list[int] | None = None, reshape_const: bool = True,
                   touches_batch: bool = False, max_rank: int = 0) -> dict[str, Any]:
    transpose = perm is not None and list(perm) != sorted(perm)
    return {"reshape": reshape, "transpose": transpose, "perm": list(perm) if perm else [],
            "reshape_const": reshape_const, "touches_batch": touches_batch, "fused": False, "max_rank": max_rank}


def _static(shape: tuple | None) -> bool:
    return shape is not None and all(isinstance(d, int) for d in shape)


def _spatial_pads(node: Node, in_shape: tuple | None, kernel: list[int], stride: list[int],
                  dilation: list[int]) -> tuple[list[int], list[int]]:
    n = len(kernel)
    pads = node.attrs.get("pads")
    auto = node.attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER") and in_shape is not None and _static(in_shape[-n:]):
        pre, post = [], []
        for i in range(n):
            size = in_shape[-n + i]
            out = -(-size // stride[i])
            total = max(0, (out - 1) * stride[i] + (kernel[i] - 1) * dilation[i] + 1 - size)
            small, big = total // 2, total - total // 2
            pre.append(big if auto == "SAME_LOWER" else small)
            post.append(small if auto == "SAME_LOWER" else big)
        return pre, post
    if pads:
        return list(pads[:n]), list(pads[n:2 * n])
    return [0] * n, [0] * n


def cbuf_banks(cin: int, groups: int, kernel: list[int], dilation: list[int], win: int, nbytes: int) -> int:
    """DLA convolution buffer banks needed (TensorRT 8.4 guide, 'DLA supported layers', convolution):
    wtBanksForOneKernel + minDataBanks, to compare with the 16 banks DLA has."""
    kh = kernel[0]
    kw = kernel[1] if len(kernel) > 1 else 1
    cin_group = max(1, cin // max(1, groups))
    wt = math.ceil(math.ceil(cin_group * kh * kw * nbytes / 128) * 128 / 32768)
    entries = math.ceil(math.ceil(cin * nbytes / 32) * win / 4)
    dilated_kh = (kh - 1) * dilation[0] + 1
    return wt + math.ceil(entries * dilated_kh / 256)


def _str_attr(node: Node, name: str, default: str) -> str:
    v = node.attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else str(v)


def _conv_common(lw: Lowerer, deconv: bool) -> dict[str, Any]:
    node, x, w = lw.node, lw.inp(0), lw.inp(1)
    wshape = w.shape if w is not None and w.shape is not None else None
    kernel = list(node.attrs.get("kernel_shape") or (wshape[2:] if wshape else []))
    n = len(kernel) or max(0, (x.rank or 4) - 2)
    stride = list(node.attrs.get("strides") or [1] * n)
    dilation = list(node.attrs.get("dilations") or [1] * n)
    groups = int(node.attrs.get("group", 1))
    pre, post = _spatial_pads(node, x.shape, kernel, stride, dilation)
    cin = x.shape[1] if x.shape and len(x.shape) > 1 and isinstance(x.shape[1], int) else 0
    if wshape is None:
        kout = 0
    elif deconv:
        kout = int(wshape[1]) * groups
    else:
        kout = int(wshape[0])
    return {"kernel": kernel, "stride": stride, "padding_pre": pre, "padding_post": post, "dilation": dilation,
            "groups": groups, "out_channels": kout, "in_channels": int(cin) if isinstance(cin, int) else 0,
            "weights_const": bool(w is not None and w.const), "nb_spatial_dims": n}


def _with_1d_wrap(lw: Lowerer, make: Callable[[Tensor], Tensor]) -> None:
    """1-D conv/pool: the parser unsqueezes to 2-D around the layer."""
    x = lw.inp(0)
    if x.rank == 3:
        sq = "SQUEEZE" if lw.features["squeeze"] == "squeeze_layer" else "SHUFFLE"
        x4 = lw.add("UNSQUEEZE" if sq == "SQUEEZE" else "SHUFFLE", _shuffle_attrs(reshape=True) if sq == "SHUFFLE" else {},
                    [x], named=False, shape=tuple(x.shape) + (1,), dtype=x.dtype)
        y = make(x4)
        lw.add(sq, _shuffle_attrs(reshape=True) if sq == "SHUFFLE" else {}, [y], lw.out(0), named=False)
    else:
        make(x)


# ---------------------------------------------------------------------------------------------- op lowerings

def lower_conv(lw: Lowerer) -> None:
    attrs = _conv_common(lw, deconv=False)
    x = lw.inp(0)
    win = x.shape[-1] if x.shape and isinstance(x.shape[-1], int) else 1
    k = attrs["kernel"] or [1]
    attrs["cbuf_banks_fp16"] = cbuf_banks(attrs["in_channels"], attrs["groups"], k, attrs["dilation"] or [1], win, 2)
    attrs["cbuf_banks_int8"] = cbuf_banks(attrs["in_channels"], attrs["groups"], k, attrs["dilation"] or [1], win, 1)
    if attrs["nb_spatial_dims"] == 1:
        attrs = {**attrs, "nb_spatial_dims": 2}
    _with_1d_wrap(lw, lambda t: lw.add("CONVOLUTION", attrs, [t], None if x.rank == 3 else lw.out(0),
                                       shape=_unsq(lw.out(0).shape), dtype=x.dtype))


def _unsq(shape: tuple | None) -> tuple | None:
    return None if shape is None else tuple(shape) + (1,)


def lower_conv_transpose(lw: Lowerer) -> None:
    attrs = _conv_common(lw, deconv=True)
    k = attrs["kernel"]
    attrs["kernel_is_square"] = len(k) == 2 and k[0] == k[1]
    out_pad = lw.node.attrs.get("output_padding")
    y = lw.out(0)
    if out_pad and any(out_pad):
        # Leftover output_padding becomes a zero-filled SLICE after the deconvolution (8.2+).
        d = lw.add("DECONVOLUTION", attrs, [lw.inp(0)], shape=None, dtype=lw.inp(0).dtype)
        lw.add("SLICE", {"mode": "FILL", "stride": [1] * 4, "params_const": False, "sliced_axes": [2, 3],
                         "slices_batch": False, "fill_zero": True}, [d], y, named=False)
    else:
        lw.add("DECONVOLUTION", attrs, [lw.inp(0)], y)


def lower_pool(kind: str) -> Callable[[Lowerer], None]:
    def run(lw: Lowerer) -> None:
        node, x = lw.node, lw.inp(0)
        window = list(node.attrs.get("kernel_shape", []))
        n = len(window)
        stride = list(node.attrs.get("strides") or [1] * n)
        pre, post = _spatial_pads(node, x.shape, window, stride, [1] * n)
        attrs = {"type": kind, "window": window, "stride": stride, "padding_pre": pre, "padding_post": post,
                 "exclude_padding": kind == "AVERAGE" and not node.attrs.get("count_include_pad", 0),
                 "global": False, "nb_spatial_dims": 2 if n == 1 else n}
        _with_1d_wrap(lw, lambda t: lw.add("POOLING", attrs, [t], None if x.rank == 3 else lw.out(0),
                                           shape=_unsq(lw.out(0).shape), dtype=x.dtype))
    return run


def lower_global_pool(op: str) -> Callable[[Lowerer], None]:
    def run(lw: Lowerer) -> None:
        x = lw.inp(0)
        rank = x.rank or 4
        axes = list(range(2, rank))
        if op == "AVG" and lw.features["global_avg_pool"] == "pooling" and rank == 4 and _static(x.shape):
            # TensorRT 8.5's builder turns the parser's Reduce(AVG) into a global POOLING (logs show
            # "POOLING: /pool/GlobalAveragePool"); it then faces the pooling window limit.
            attrs = {"type": "AVERAGE", "window": list(x.shape[2:]), "stride": [1, 1],
                     "padding_pre": [0, 0], "padding_post": [0, 0], "exclude_padding": False, "global": True,
                     "nb_spatial_dims": 2}
            lw.add("POOLING", attrs, [x], lw.out(0), origin="builder")
            return
        lw.add("REDUCE", {"operation": op, "axes": axes, "keep_dims": True, "reduces_batch": False}, [x], lw.out(0))
    return run


def lower_reduce(op: str, extra_unary: str | None = None) -> Callable[[Lowerer], None]:
    def run(lw: Lowerer) -> None:
        node, x = lw.node, lw.inp(0)
        rank = x.rank or 4
        axes = node.attrs.get("axes")
        if axes is None and len(node.inputs) > 1 and node.inputs[1]:
            v = lw.value(1)
            axes = _ints(v) if v is not None else None
        if axes is None:
            axes = [] if node.attrs.get("noop_with_empty_axes", 0) else list(range(rank))
        axes = sorted(a % rank for a in axes)
        attrs = {"operation": op, "axes": axes, "keep_dims": bool(node.attrs.get("keepdims", 1)),
                 "reduces_batch": 0 in axes}
        if extra_unary:
            y = lw.add("REDUCE", attrs, [x], shape=None, dtype=x.dtype)
            lw.add("UNARY", {"operation": extra_unary}, [y], lw.out(0), named=False)
        else:
            lw.add("REDUCE", attrs, [x], lw.out(0))
    return run


def lower_activation(kind: str, alpha: float | None = None, beta: float | None = None) -> Callable[[Lowerer], None]:
    def run(lw: Lowerer) -> None:
        a = lw.node.attrs
        attrs = {"type": kind, "alpha": float(a.get("alpha", alpha if alpha is not None else 0.0)),
                 "beta": float(a.get("beta", a.get("gamma", beta if beta is not None else 0.0)))}
        lw.add("ACTIVATION", attrs, [lw.inp(0)], lw.out(0))
    return run


def lower_clip(lw: Lowerer) -> None:
    node, x = lw.node, lw.inp(0)
    lo_t, hi_t = lw.inp(1), lw.inp(2)
    tensor_bounds = any(t is not None and not t.weights and not t.const for t in (lo_t, hi_t))
    if x.dtype in ("int32", "int64") or tensor_bounds:
        y = x
        for t, op in ((lo_t, "MAX"), (hi_t, "MIN")):
            if t is not None:
                y = lw.add("ELEMENTWISE", _ew_attrs(op, 1 if t.const else 0, "other", True),
                           [y, lw.constant(t)], None, shape=x.shape, dtype=x.dtype)
        lw.layers[-1].outputs = [lw.out(0)]
        return
    lo = node.attrs.get("min")
    hi = node.attrs.get("max")
    if lo_t is not None and lo_t.value() is not None:
        lo = float(np.asarray(lo_t.value()).reshape(-1)[0])
    if hi_t is not None and hi_t.value() is not None:
        hi = float(np.asarray(hi_t.value()).reshape(-1)[0])
    attrs = {"type": "CLIP", "alpha": float(lo) if lo is not None else -_FLT_MAX,
             "beta": float(hi) if hi is not None else _FLT_MAX}
    lw.add("ACTIVATION", attrs, [x], lw.out(0))


def lower_hardswish(lw: Lowerer) -> None:
    x = lw.inp(0)
    hs = lw.add("ACTIVATION", {"type": "HARD_SIGMOID", "alpha": 1 / 6, "beta": 0.5}, [x], shape=x.shape, dtype=x.dtype)
    lw.add("ELEMENTWISE", _ew_attrs("PROD", 0, "equal", False), [x, hs], lw.out(0), named=False)


def lower_mish(lw: Lowerer) -> None:
    x = lw.inp(0)
    sp = lw.add("ACTIVATION", {"type": "SOFTPLUS", "alpha": 1.0, "beta": 1.0}, [x], shape=x.shape, dtype=x.dtype)
    th = lw.add("ACTIVATION", {"type": "TANH", "alpha": 0.0, "beta": 0.0}, [sp], shape=x.shape, dtype=x.dtype,
                named=False)
    lw.add("ELEMENTWISE", _ew_attrs("PROD", 0, "equal", False), [x, th], lw.out(0), named=False)


def lower_gelu(lw: Lowerer) -> None:
    approx = _str_attr(lw.node, "approximate", "none")
    lw.add("ACTIVATION", {"type": "GELU_TANH" if approx == "tanh" else "GELU_ERF", "alpha": 0.0, "beta": 0.0},
           [lw.inp(0)], lw.out(0))


def lower_prelu(lw: Lowerer) -> None:
    x, slope = lw.inp(0), lw.inp(1)
    s = lw.constant(slope) if slope.const else slope
    s = lw.broadcast(s, x.rank or 4)
    lw.add("PARAMETRIC_RELU", {"slope_const": bool(slope.const), "slope_rank": s.rank or 0}, [x, s], lw.out(0))


def _ew_attrs(op: str, nconst: int, bcast: str, uniform: bool) -> dict[str, Any]:
    return {"operation": op, "nb_const_inputs": nconst, "broadcast": bcast, "const_uniform": uniform}


def _broadcast_kind(a: tuple | None, b: tuple | None) -> str:
    """How the smaller operand broadcasts to the larger, in DLA's terms (NCHW, NC11, N111)."""
    if a is None or b is None:
        return "other"
    if tuple(a) == tuple(b):
        return "equal"
    big, small = (a, b) if _numel_or0(a) >= _numel_or0(b) else (b, a)
    if len(big) != 4 or len(small) != 4:
        return "other"
    if small[0] == big[0] and small[1] == big[1] and small[2] == 1 and small[3] == 1:
        return "nc11"
    if small[0] == big[0] and small[1] == 1 and small[2] == 1 and small[3] == 1:
        return "n111"
    return "other"


def _numel_or0(shape: tuple) -> int:
    n = 1
    for d in shape:
        if not isinstance(d, int):
            return 0
        n *= d
    return n


def _is_uniform(t: Tensor) -> bool:
    if t.shape is not None and _numel_or0(t.shape) == 1:
        return True
    v = t.value() if t.const else None
    return v is not None and v.size > 0 and bool(np.all(v == v.reshape(-1)[0]))


def _scale_mode(act: Tensor, c: Tensor) -> str | None:
    """The SCALE mode TensorRT's builder fuses a constant operand into, or None if it cannot."""
    if act.shape is None or len(act.shape) != 4 or c.shape is None:
        return None
    cs = tuple(c.shape)
    n = _numel_or0(cs)
    if n == 1:
        return "UNIFORM"
    chans = act.shape[1]
    trimmed = cs[-3:] if len(cs) >= 3 else (1,) * (3 - len(cs)) + cs
    if len(cs) == 4 and cs[0] != 1:
        return None
    if trimmed == (chans, 1, 1):
        return "CHANNEL"
    if trimmed == tuple(act.shape[1:]):
        return "ELEMENTWISE"
    return None


_EW_OPS = {"Add": "SUM", "Sub": "SUB", "Mul": "PROD", "Div": "DIV", "Pow": "POW", "Max": "MAX", "Min": "MIN",
           "Sum": "SUM", "Equal": "EQUAL", "Greater": "GREATER", "Less": "LESS", "And": "AND", "Or": "OR",
           "Xor": "XOR", "Mean": "SUM"}


def lower_elementwise(lw: Lowerer) -> None:
    node = lw.node
    op = _EW_OPS[node.op]
    ins = [lw.t(i) for i in node.inputs if i]
    if len(ins) == 1:
        lw.add("IDENTITY", {}, ins, lw.out(0))
        return
    if len(ins) == 2 and op in ("SUM", "SUB", "PROD") and node.op != "Mean":
        a, b = ins
        act, c = (a, b) if b.const and not a.const else (b, a) if a.const and not b.const and op != "SUB" else (None, None)
        mode = _scale_mode(act, c) if act is not None else None
        if mode is not None:
            # TensorRT's builder folds a per-tensor/channel constant operand into a SCALE layer (no CONSTANT).
            lw.add("SCALE", {"mode": mode, "has_power": False}, [act], lw.out(0), origin="builder")
            return
    rank = max((t.rank or 0) for t in ins)
    consts = sum(1 for t in ins if t.const)
    uniform = any(_is_uniform(t) for t in ins if t.const)
    tensors = [lw.broadcast(lw.constant(t), rank) for t in ins]
    y = tensors[0]
    for k, t in enumerate(tensors[1:]):
        last = k == len(tensors) - 2
        bc = _broadcast_kind(y.shape, t.shape)
        y = lw.add("ELEMENTWISE", _ew_attrs(op, consts, bc, uniform), [y, t],
                   lw.out(0) if last and node.op != "Mean" else None, named=k == 0,
                   shape=lw.out(0).shape, dtype=lw.out(0).dtype)
    if node.op == "Mean":
        inv = Tensor(f"{node.name}:1/n", (1,) * rank, ins[0].dtype, True)
        lw.add("ELEMENTWISE", _ew_attrs("PROD", 1, "other", True), [y, lw.constant(inv)], lw.out(0), named=False)


def lower_compare_or_equal(base: str) -> Callable[[Lowerer], None]:
    """GreaterOrEqual / LessOrEqual: GREATER/LESS and EQUAL on the same inputs, joined by OR."""
    def run(lw: Lowerer) -> None:
        a, b = (lw.constant(lw.t(i)) for i in lw.node.inputs[:2])
        consts = sum(1 for i in lw.node.inputs[:2] if lw.t(i).const)
        bc = _broadcast_kind(a.shape, b.shape)
        g = lw.add("ELEMENTWISE", _ew_attrs(base, consts, bc, False), [a, b], shape=lw.out(0).shape, dtype="bool")
        e = lw.add("ELEMENTWISE", _ew_attrs("EQUAL", consts, bc, False), [a, b], named=False,
                   shape=lw.out(0).shape, dtype="bool")
        lw.add("ELEMENTWISE", _ew_attrs("OR", 0, "equal", False), [g, e], lw.out(0), named=False)
    return run


_UNARY = {"Abs": "ABS", "Neg": "NEG", "Sqrt": "SQRT", "Exp": "EXP", "Log": "LOG", "Reciprocal": "RECIP",
          "Ceil": "CEIL", "Floor": "FLOOR", "Round": "ROUND", "Erf": "ERF", "Sign": "SIGN", "Not": "NOT",
          "Sin": "SIN", "Cos": "COS", "Tan": "TAN", "Asin": "ASIN", "Acos": "ACOS", "Atan": "ATAN",
          "Sinh": "SINH", "Cosh": "COSH", "Asinh": "ASINH", "Acosh": "ACOSH", "Atanh": "ATANH",
          "IsInf": "ISINF", "IsNaN": "ISNAN"}


def lower_unary(lw: Lowerer) -> None:
    lw.add("UNARY", {"operation": _UNARY[lw.node.op]}, [lw.inp(0)], lw.out(0))


def lower_batchnorm(lw: Lowerer) -> None:
    x = lw.inp(0)
    params = [lw.inp(k) for k in range(1, 5)]
    if all(p is not None and p.const for p in params):
        if x.rank in (4, 5):
            lw.add("SCALE", {"mode": "CHANNEL", "has_power": False}, [x], lw.out(0))
        else:
            r = lw.add("SHUFFLE", _shuffle_attrs(reshape=True), [x], named=False,
                       shape=_to4(x.shape), dtype=x.dtype)
            s = lw.add("SCALE", {"mode": "CHANNEL", "has_power": False}, [r], shape=_to4(x.shape), dtype=x.dtype)
            lw.add("SHUFFLE", _shuffle_attrs(reshape=True), [s], lw.out(0), named=False)
        return
    # Non-constant statistics: an ElementWise/Unary chain on the GPU side of the rules.
    y = x
    for op in ("SUB", "DIV", "PROD"):
        y = lw.add("ELEMENTWISE", _ew_attrs(op, 0, "other", False), [y, lw.constant(params[0])], named=op == "SUB",
                   shape=x.shape, dtype=x.dtype)
    lw.add("ELEMENTWISE", _ew_attrs("SUM", 0, "other", False), [y, lw.constant(params[1])], lw.out(0), named=False)


def _to4(shape: tuple | None) -> tuple | None:
    if shape is None:
        return None
    s = tuple(shape)
    return s + (1,) * (4 - len(s)) if len(s) < 4 else s


def lower_reshape(lw: Lowerer) -> None:
    x, shp = lw.inp(0), lw.inp(1)
    reshape_const = shp is None or shp.const
    ins = [x] if reshape_const else [x, shp]
    lw.add("SHUFFLE", _shuffle_attrs(reshape=True, reshape_const=reshape_const,
                                     touches_batch=_touches_batch(x.shape, lw.out(0).shape)), ins, lw.out(0))


def _touches_batch(a: tuple | None, b: tuple | None) -> bool:
    if not a or not b:
        return False
    return a[0] != b[0]


def lower_flatten(lw: Lowerer) -> None:
    x = lw.inp(0)
    axis = lw.node.attrs.get("axis", 1)
    if x.rank == 2 and axis == 1:
        if lw.features["flatten_2d"] == "identity":
            lw.add("IDENTITY", {}, [x], lw.out(0))
        else:
            lw.noop()
        return
    lw.add("SHUFFLE", _shuffle_attrs(reshape=True, touches_batch=axis == 0), [x], lw.out(0))


def lower_transpose(lw: Lowerer) -> None:
    x = lw.inp(0)
    rank = x.rank or 0
    perm = list(lw.node.attrs.get("perm") or list(range(rank))[::-1])
    if perm == sorted(perm) and lw.features["transpose_identity"] == "elided":
        lw.noop()
        return
    moves_real = _moves_non_unit(x.shape, perm)
    attrs = _shuffle_attrs(reshape=not moves_real, perm=perm if moves_real else None,
                           touches_batch=bool(perm) and perm[0] != 0 and moves_real)
    lw.add("SHUFFLE", attrs, [x], lw.out(0))


def _moves_non_unit(shape: tuple | None, perm: list[int]) -> bool:
    """A transpose that moves only size-1 dims is a reshape (the parser's isTransposeRequired)."""
    if shape is None:
        return perm != sorted(perm)
    order = [p for p in perm if shape[p] != 1]
    return order != sorted(order)


def lower_squeeze(kind: str) -> Callable[[Lowerer], None]:
    def run(lw: Lowerer) -> None:
        x = lw.inp(0)
        if lw.features["squeeze"] == "squeeze_layer":
            lw.add(kind, {}, [x], lw.out(0))
        else:
            lw.add("SHUFFLE", _shuffle_attrs(reshape=True), [x], lw.out(0))
    return run


def lower_concat(lw: Lowerer) -> None:
    ins = [lw.t(i) for i in lw.node.inputs if i]
    y = lw.out(0)
    rank = y.rank or (ins[0].rank if ins else 0) or 0
    axis = lw.node.attrs.get("axis", 0)
    axis = axis % rank if rank else axis
    spatial = [tuple(t.shape[2:]) if t.shape and len(t.shape) == 4 else None for t in ins]
    attrs = {"axis": axis, "axis_from_end": axis - rank if rank else -1, "nb_inputs": len(ins),
             "same_spatial": len(set(spatial)) <= 1}
    lw.add("CONCATENATION", attrs, [lw.constant(t) for t in ins], y)


def _slice_attrs(x: Tensor, y: Tensor, params_const: bool, stride: list[int], mode: str = "DEFAULT") -> dict:
    sliced = []
    if x.shape is not None and y.shape is not None and len(x.shape) == len(y.shape):
        sliced = [i for i, (a, b) in enumerate(zip(x.shape, y.shape)) if a != b]
    return {"mode": mode, "stride": stride, "params_const": params_const, "sliced_axes": sliced,
            "slices_batch": 0 in sliced, "fill_zero": False}


def lower_slice(lw: Lowerer) -> None:
    node, x, y = lw.node, lw.inp(0), lw.out(0)
    rank = x.rank or 0
    stride = [1] * rank
    params_const = True
    if len(node.inputs) > 1:
        params = [lw.inp(k) for k in range(1, 5)]
        params_const = all(p is None or p.const for p in params)
        steps, axes = lw.value(4), lw.value(3)
        if steps is not None:
            ax = _ints(axes) if axes is not None else list(range(len(_ints(steps))))
            for a, s in zip(ax, _ints(steps)):
                if rank:
                    stride[a % rank] = s
    lw.add("SLICE", _slice_attrs(x, y, params_const, stride), [x], y)


def lower_split(lw: Lowerer) -> None:
    x = lw.inp(0)
    for k, _ in enumerate(lw.node.outputs):
        y = lw.out(k)
        lw.add("SLICE", _slice_attrs(x, y, True, [1] * (x.rank or 0)), [x], y)


def lower_pad(lw: Lowerer) -> None:
    node, x = lw.node, lw.inp(0)
    pads = node.attrs.get("pads")
    if pads is None and len(node.inputs) > 1:
        v = lw.value(1)
        pads = _ints(v) if v is not None else None
    if pads is not None and not any(pads):
        lw.add("IDENTITY", {}, [x], lw.out(0))
        return
    mode = _str_attr(node, "mode", "constant")
    value = lw.value(2) if len(node.inputs) > 2 and node.inputs[2] else None
    zero = value is None or float(np.asarray(value).reshape(-1)[0]) == 0.0
    if lw.features["pad"] == "padding":
        lw.add("PADDING", {}, [x], lw.out(0))
        return
    slice_mode = {"constant": "FILL", "reflect": "REFLECT", "edge": "CLAMP", "wrap": "WRAP"}.get(mode, "FILL")
    attrs = _slice_attrs(x, lw.out(0), pads is not None, [1] * (x.rank or 0), slice_mode)
    attrs["fill_zero"] = slice_mode == "FILL" and zero
    lw.add("SLICE", attrs, [x], lw.out(0))


def lower_tile(lw: Lowerer) -> None:
    x = lw.inp(0)
    lw.add("SLICE", _slice_attrs(x, lw.out(0), lw.inp(1).const, [1] * (x.rank or 0), "WRAP"), [x], lw.out(0))


def lower_expand(lw: Lowerer) -> None:
    x = lw.inp(0)
    y = lw.out(0)
    src = lw.broadcast(x, y.rank or x.rank or 0)
    attrs = _slice_attrs(src, y, lw.inp(1).const, [0] * (y.rank or 0))
    lw.add("SLICE", attrs, [src], y)


def lower_matmul(lw: Lowerer) -> None:
    node = lw.node
    a, b = lw.inp(0), lw.inp(1)
    bias = lw.inp(2) if node.op == "Gemm" else None
    y = lw.out(0)
    simple_gemm = node.op != "Gemm" or (node.attrs.get("alpha", 1.0) == 1.0 and node.attrs.get("beta", 1.0) == 1.0
                                          and not node.attrs.get("transA", 0))
    const_b = b is not None and b.const and b.rank == 2 and a.rank == 2 and not a.const
    mode = lw.features["gemm_const_b"]
    if const_b and simple_gemm and mode in ("fully_connected", "conv_1x1") and (bias is None or bias.const):
        _lower_fc(lw, a, b, y, mode)
        return
    mm = lw.add("MATRIX_MULTIPLY", {"b_const": bool(b.const), "a_rank": a.rank or 0, "b_rank": b.rank or 0},
                [lw.constant(a), lw.constant(b)], y if bias is None else None, shape=y.shape, dtype=y.dtype)
    if bias is not None:
        c = lw.broadcast(lw.constant(bias), y.rank or 2)
        lw.add("ELEMENTWISE", _ew_attrs("SUM", 1 if bias.const else 0, _broadcast_kind(y.shape, c.shape), False),
               [mm, c], y, named=False)


def _lower_fc(lw: Lowerer, a: Tensor, b: Tensor, y: Tensor, mode: str) -> None:
    """A 2-D activation times constant weights: an FC (8.0/8.2 parser) or, from 8.4, the builder's rewrite to a
    1x1 convolution on [N, K, 1, 1], with a reshape back to 2-D that logs name `reshape_after_<node>`."""
    n = a.shape[0] if a.shape else 1
    k = a.shape[1] if a.shape and len(a.shape) > 1 else 0
    kout = y.shape[1] if y.shape and len(y.shape) > 1 else 0
    a4 = lw.add("SHUFFLE", _shuffle_attrs(reshape=True), [a], named=False, shape=(n, k, 1, 1), dtype=a.dtype,
                origin="builder")
    if mode == "fully_connected":
        z = lw.add("FULLY_CONNECTED", {"out_channels": int(kout) if isinstance(kout, int) else 0,
                                       "in_channels": int(k) if isinstance(k, int) else 0, "weights_const": True},
                   [a4], shape=(n, kout, 1, 1), dtype=a.dtype)
    else:
        attrs = {"kernel": [1, 1], "stride": [1, 1], "padding_pre": [0, 0], "padding_post": [0, 0],
                 "dilation": [1, 1], "groups": 1, "out_channels": int(kout) if isinstance(kout, int) else 0,
                 "in_channels": int(k) if isinstance(k, int) else 0, "weights_const": True, "nb_spatial_dims": 2,
                 "cbuf_banks_fp16": cbuf_banks(int(k or 0), 1, [1, 1], [1, 1], 1, 2),
                 "cbuf_banks_int8": cbuf_banks(int(k or 0), 1, [1, 1], [1, 1], 1, 1)}
        z = lw.add("CONVOLUTION", attrs, [a4], shape=(n, kout, 1, 1), dtype=a.dtype, origin="builder")
    back = lw.features["reshape_back_name"].format(lw.node.name)
    lw.add("SHUFFLE", _shuffle_attrs(reshape=True), [z], y, name=back, origin="builder")


def lower_softmax(lw: Lowerer, log: bool = False) -> None:
    node, x, y = lw.node, lw.inp(0), lw.out(0)
    rank = x.rank or 2
    if lw.graph.opset >= 13:
        axis = node.attrs.get("axis", -1) % rank
        src = x
        smx_shape = x.shape
    else:
        # Opset < 13 coerces the input to 2-D at `axis` (an unnamed SHUFFLE), softmax over dim 1.
        axis0 = node.attrs.get("axis", 1) % rank
        shp = x.shape
        if _static(shp):
            smx_shape = (int(np.prod(shp[:axis0])), int(np.prod(shp[axis0:])))
        else:
            smx_shape = ("?", "?")
        src = lw.add("SHUFFLE", _shuffle_attrs(reshape=True), [x], named=False, shape=smx_shape, dtype=x.dtype)
        axis = 1
    axis_dim = smx_shape[axis] if smx_shape is not None and isinstance(smx_shape[axis], int) else 0
    others = [d for i, d in enumerate(smx_shape or ()) if i not in (0, axis)]
    attrs = {"axis": axis, "axis_dim": int(axis_dim), "others_all_one": all(d == 1 for d in others)}
    s = lw.add("SOFTMAX", attrs, [src], shape=smx_shape, dtype=x.dtype)
    if log:
        s = lw.add("UNARY", {"operation": "LOG"}, [s], named=False, shape=smx_shape, dtype=x.dtype)
    # The parser always reshapes back to the input shape (a no-op SHUFFLE for opset >= 13).
    lw.add("SHUFFLE", _shuffle_attrs(reshape=True), [s], y, named=False)


_RESIZE_COORD = {"asymmetric": "ASYMMETRIC", "half_pixel": "HALF_PIXEL", "align_corners": "ALIGN_CORNERS",
                 "pytorch_half_pixel": "HALF_PIXEL", "tf_half_pixel_for_nn": "HALF_PIXEL"}
_RESIZE_ROUND = {"floor": "FLOOR", "ceil": "CEIL", "round_prefer_floor": "HALF_DOWN", "round_prefer_ceil": "HALF_UP"}


def lower_resize(lw: Lowerer) -> None:
    node, x, y = lw.node, lw.inp(0), lw.out(0)
    opset = lw.graph.opset
    mode = _str_attr(node, "mode", "nearest").upper()
    mode = {"BILINEAR": "LINEAR", "TRILINEAR": "LINEAR", "BICUBIC": "CUBIC"}.get(mode, mode)
    if node.op == "Upsample" or opset < 11:
        coord_onnx, nearest = "asymmetric", "floor"
        scales_t = lw.inp(1)
        sizes_t = None
    else:
        coord_onnx = _str_attr(node, "coordinate_transformation_mode", "half_pixel")
        nearest = _str_attr(node, "nearest_mode", "round_prefer_floor")
        scales_t, sizes_t = lw.inp(2), lw.inp(3)
    coord = _RESIZE_COORD.get(coord_onnx, "ASYMMETRIC")
    rounding = _RESIZE_ROUND.get(nearest, "FLOOR")
    if coord_onnx == "tf_half_pixel_for_nn":
        rounding = "CEIL"
    selector = "UPPER" if coord_onnx == "pytorch_half_pixel" else "FORMULA"
    scales: list[float] = []
    if node.op == "Upsample" and "scales" in node.attrs:
        scales, source = [float(s) for s in node.attrs["scales"]], "scales"
    elif scales_t is not None and (scales_t.shape is None or _numel_or0(scales_t.shape) > 0):
        source = "scales" if scales_t.weights else "runtime-scales"
        v = scales_t.value() if scales_t.const else None
        scales = [float(s) for s in np.asarray(v).reshape(-1)] if v is not None else []
    elif sizes_t is not None:
        source = ("output-dims" if lw.features["resize_sizes"] == "output_dims" and sizes_t.weights
                  else "sizes-tensor")
        v = sizes_t.value() if sizes_t.const else None
        if v is not None and _static(x.shape):
            scales = [float(o) / float(i) for o, i in zip(_ints(v), x.shape)]
    else:
        source = "runtime-scales"
    if not scales and _static(x.shape) and _static(y.shape) and len(x.shape) == len(y.shape):
        scales = [float(o) / float(i) for o, i in zip(y.shape, x.shape)]
    attrs = {"mode": mode, "coord": coord, "rounding": rounding, "selector": selector, "size_source": source,
             "scales": scales, "spatial_scales": scales[2:],
             "nc_unchanged": len(scales) < 2 or (scales[0] == 1.0 and scales[1] == 1.0)}
    lw.add("RESIZE", attrs, [x], y)


def lower_lrn(lw: Lowerer) -> None:
    lw.add("LRN", {"window": int(lw.node.attrs.get("size", 0)), "region": "ACROSS_CHANNELS"}, [lw.inp(0)], lw.out(0))


_COMPARISONS = frozenset({"EQUAL", "GREATER", "LESS"})
_OR_EQUAL = {"GreaterOrEqual": "GREATER_OR_EQUAL", "LessOrEqual": "LESS_OR_EQUAL"}


def _cast_of(lw: Lowerer, t: Tensor) -> str:
    """The comparison that writes `t` (its ElementWise operation, or GREATER_OR_EQUAL / LESS_OR_EQUAL for the OR
    ending those), else "other". DLA runs a comparison only with its output cast right after it, so that Cast
    belongs to the comparison's DLA pattern where the release runs the comparison."""
    for layer in reversed(lw.layers):
        if any(o is t or o.name == t.name for o in layer.outputs):
            if layer.kind != "ELEMENTWISE":
                return "other"
            if layer.op in _OR_EQUAL:
                return _OR_EQUAL[layer.op]
            op = layer.attrs.get("operation")
            return op if op in _COMPARISONS else "other"
    return "other"


def lower_cast(lw: Lowerer) -> None:
    kind = "CAST" if lw.features["cast"] == "cast" else "IDENTITY"
    x = lw.inp(0)
    lw.add(kind, {"cast_of": _cast_of(lw, x)}, [x], lw.out(0))


def lower_identity(lw: Lowerer) -> None:
    lw.add("IDENTITY", {}, [lw.inp(0)], lw.out(0))


def lower_depth_space(lw: Lowerer) -> None:
    """DepthToSpace/SpaceToDepth: a 6-D reshape+transpose SHUFFLE, then a 4-D reshape SHUFFLE."""
    x = lw.inp(0)
    y = lw.out(0)
    b = int(lw.node.attrs.get("blocksize", 1))
    s = x.shape if x.shape is not None and len(x.shape) == 4 and _static(x.shape) else None
    if s is None:
        mid_shape: tuple = ("?",) * 6
    elif lw.node.op == "DepthToSpace":
        mid_shape = (s[0], s[1] // (b * b), s[2], b, s[3], b)
    else:
        mid_shape = (s[0], b, b, s[1], s[2] // b, s[3] // b)
    mid = lw.add("SHUFFLE", _shuffle_attrs(reshape=True, perm=[0, 1, 4, 2, 5, 3], max_rank=6), [x],
                 shape=mid_shape, dtype=x.dtype)
    lw.add("SHUFFLE", _shuffle_attrs(reshape=True, max_rank=6), [mid], y, named=False)


def lower_instance_norm(lw: Lowerer) -> None:
    if lw.features["instance_norm"] == "normalization":
        lower_generic("NORMALIZATION")(lw)
    else:
        lw.add("PLUGIN", {"plugin": "InstanceNormalization_TRT"}, [lw.inp(0)], lw.out(0))


def lower_generic(kind: str) -> Callable[[Lowerer], None]:
    """Layers with no DLA support at all: one layer reading the node's non-constant inputs."""
    def run(lw: Lowerer) -> None:
        ins = [lw.constant(lw.t(i)) for i in lw.node.inputs if i]
        outs = [lw.t(o) for o in lw.node.outputs if o]
        lw.add(kind, {} if kind != "PLUGIN" else {"plugin": lw.node.op}, ins, outs[0] if outs else None)
        if len(outs) > 1:
            lw.layers[-1].outputs = outs
    return run


def lower_qdq(kind: str) -> Callable[[Lowerer], None]:
    """Quantize/Dequantize: the scale and zero point are parameters of the layer, not CONSTANT layers."""
    def run(lw: Lowerer) -> None:
        lw.add(kind, {}, [lw.constant(lw.t(lw.node.inputs[0]))], lw.t(lw.node.outputs[0]))
    return run


def lower_shape_op(kind: str) -> Callable[[Lowerer], None]:
    return lower_generic(kind)


# Each entry: ONNX op -> (lowering, TensorRT layer kinds it makes, note). The note and kinds feed
# docs/lowering.md; tests check every entry op by op.
OpEntry = tuple[Callable[[Lowerer], None], str, str]

OP_TABLE: dict[str, OpEntry] = {
    "Conv": (lower_conv, "CONVOLUTION", "1-D input: unsqueeze/squeeze SHUFFLEs around a 2-D convolution"),
    "ConvTranspose": (lower_conv_transpose, "DECONVOLUTION", "leftover output_padding adds a zero-fill SLICE"),
    "MaxPool": (lower_pool("MAX"), "POOLING", "kMAX"),
    "AveragePool": (lower_pool("AVERAGE"), "POOLING", "kAVERAGE; count_include_pad=0 means exclusive padding"),
    "GlobalAveragePool": (lower_global_pool("AVG"), "REDUCE | POOLING",
                          "Reduce(AVG) over H,W; TensorRT 8.5's builder re-types it as a global POOLING"),
    "GlobalMaxPool": (lower_global_pool("MAX"), "REDUCE", "Reduce(MAX) over H,W"),
    "ReduceMean": (lower_reduce("AVG"), "REDUCE", ""),
    "ReduceMax": (lower_reduce("MAX"), "REDUCE", ""),
    "ReduceMin": (lower_reduce("MIN"), "REDUCE", ""),
    "ReduceSum": (lower_reduce("SUM"), "REDUCE", ""),
    "ReduceProd": (lower_reduce("PROD"), "REDUCE", ""),
    "ReduceL1": (lower_reduce("SUM", "ABS"), "REDUCE + UNARY", "approximation of the parser's chain"),
    "ReduceL2": (lower_reduce("SUM", "SQRT"), "REDUCE + UNARY", "approximation of the parser's chain"),
    "ReduceLogSum": (lower_reduce("SUM", "LOG"), "REDUCE + UNARY", ""),
    "ReduceLogSumExp": (lower_reduce("SUM", "LOG"), "REDUCE + UNARY", ""),
    "ReduceSumSquare": (lower_reduce("SUM"), "REDUCE", ""),
    "Relu": (lower_activation("RELU"), "ACTIVATION", ""),
    "Sigmoid": (lower_activation("SIGMOID"), "ACTIVATION", ""),
    "Tanh": (lower_activation("TANH"), "ACTIVATION", ""),
    "LeakyRelu": (lower_activation("LEAKY_RELU", alpha=0.01), "ACTIVATION", ""),
    "Elu": (lower_activation("ELU", alpha=1.0), "ACTIVATION", ""),
    "Selu": (lower_activation("SELU", alpha=1.67326, beta=1.0507), "ACTIVATION", ""),
    "Softsign": (lower_activation("SOFTSIGN"), "ACTIVATION", ""),
    "Softplus": (lower_activation("SOFTPLUS", alpha=1.0, beta=1.0), "ACTIVATION", ""),
    "HardSigmoid": (lower_activation("HARD_SIGMOID", alpha=0.2, beta=0.5), "ACTIVATION", ""),
    "ThresholdedRelu": (lower_activation("THRESHOLDED_RELU", alpha=1.0), "ACTIVATION", ""),
    "ScaledTanh": (lower_activation("SCALED_TANH"), "ACTIVATION", ""),
    "Celu": (lower_activation("ELU", alpha=1.0), "ACTIVATION", "parser builds it from ELU-like ops"),
    "Clip": (lower_clip, "ACTIVATION | ELEMENTWISE", "constant bounds: kCLIP (a missing min is -FLT_MAX); "
                                                      "tensor bounds or integers: ElementWise MAX/MIN"),
    "HardSwish": (lower_hardswish, "ACTIVATION + ELEMENTWISE", "kHARD_SIGMOID(1/6, 0.5) times x"),
    "Mish": (lower_mish, "ACTIVATION + ACTIVATION + ELEMENTWISE", "softplus, tanh, product (10.x)"),
    "Gelu": (lower_gelu, "ACTIVATION", "kGELU_ERF / kGELU_TANH (10.x)"),
    "PRelu": (lower_prelu, "PARAMETRIC_RELU", "slope: CONSTANT + broadcast SHUFFLE"),
    "Add": (lower_elementwise, "ELEMENTWISE | SCALE", "a per-tensor/channel constant operand is fused to SCALE"),
    "Sub": (lower_elementwise, "ELEMENTWISE | SCALE", "as Add"),
    "Mul": (lower_elementwise, "ELEMENTWISE | SCALE", "as Add"),
    "Div": (lower_elementwise, "ELEMENTWISE", "constant operand: a CONSTANT layer"),
    "Pow": (lower_elementwise, "ELEMENTWISE", ""),
    "Max": (lower_elementwise, "ELEMENTWISE", "n-ary: a chain"),
    "Min": (lower_elementwise, "ELEMENTWISE", "n-ary: a chain"),
    "Sum": (lower_elementwise, "ELEMENTWISE", "n-ary: a chain"),
    "Mean": (lower_elementwise, "ELEMENTWISE", "SUM chain, then PROD by 1/n"),
    "Equal": (lower_elementwise, "ELEMENTWISE", "comparison, bool output"),
    "Greater": (lower_elementwise, "ELEMENTWISE", "comparison, bool output"),
    "Less": (lower_elementwise, "ELEMENTWISE", "comparison, bool output"),
    "GreaterOrEqual": (lower_compare_or_equal("GREATER"), "ELEMENTWISE x3", "GREATER, EQUAL, OR"),
    "LessOrEqual": (lower_compare_or_equal("LESS"), "ELEMENTWISE x3", "LESS, EQUAL, OR"),
    "And": (lower_elementwise, "ELEMENTWISE", ""),
    "Or": (lower_elementwise, "ELEMENTWISE", ""),
    "Xor": (lower_elementwise, "ELEMENTWISE", ""),
    **{op: (lower_unary, "UNARY", "") for op in _UNARY},
    "BatchNormalization": (lower_batchnorm, "SCALE", "constant statistics: SCALE(kCHANNEL); else an ElementWise chain"),
    "Reshape": (lower_reshape, "SHUFFLE", "a computed shape input makes it a dynamic reshape"),
    "Flatten": (lower_flatten, "SHUFFLE", "2-D input with axis 1: IDENTITY (8.4.2+) or nothing"),
    "Transpose": (lower_transpose, "SHUFFLE", "identity permutation elided up to 8.4"),
    "Squeeze": (lower_squeeze("SQUEEZE"), "SHUFFLE | SQUEEZE", "SQUEEZE layer from 10.7"),
    "Unsqueeze": (lower_squeeze("UNSQUEEZE"), "SHUFFLE | UNSQUEEZE", "UNSQUEEZE layer from 10.7"),
    "Concat": (lower_concat, "CONCATENATION", "constant inputs become CONSTANT layers"),
    "Slice": (lower_slice, "SLICE", ""),
    "Split": (lower_split, "SLICE per output", ""),
    "Pad": (lower_pad, "SLICE | PADDING", "all-zero pads: IDENTITY; 8.0: PADDING; later a FILL/REFLECT/CLAMP SLICE"),
    "Tile": (lower_tile, "SLICE", "kWRAP"),
    "Expand": (lower_expand, "SLICE", "stride-0 slice, after a broadcast SHUFFLE"),
    "Gemm": (lower_matmul, "CONVOLUTION | FULLY_CONNECTED | MATRIX_MULTIPLY",
             "constant 2-D weights: FC (8.0/8.2) or the builder's 1x1 convolution (8.4+) with a reshape back"),
    "MatMul": (lower_matmul, "CONVOLUTION | FULLY_CONNECTED | MATRIX_MULTIPLY", "as Gemm"),
    "Softmax": (lower_softmax, "SOFTMAX + SHUFFLE", "opset < 13: flatten SHUFFLE before; always a reshape back"),
    "LogSoftmax": (lambda lw: lower_softmax(lw, log=True), "SOFTMAX + UNARY + SHUFFLE", ""),
    "Resize": (lower_resize, "RESIZE", "scales weights: static; sizes: a shape-tensor input (<= 8.6) or "
                                       "output dimensions (9+)"),
    "Upsample": (lower_resize, "RESIZE", "asymmetric, floor"),
    "LRN": (lower_lrn, "LRN", ""),
    "Cast": (lower_cast, "IDENTITY | CAST", "CAST layer from 8.6"),
    "Identity": (lower_identity, "IDENTITY", "removed by the builder when it changes nothing"),
    "Dropout": (lower_identity, "IDENTITY", "inference: identity"),
    "DepthToSpace": (lower_depth_space, "SHUFFLE x2", "6-D reshape+transpose, then 4-D reshape"),
    "SpaceToDepth": (lower_depth_space, "SHUFFLE x2", "6-D reshape+transpose, then 4-D reshape"),
    "InstanceNormalization": (lower_instance_norm, "PLUGIN | NORMALIZATION", "plugin <= 9.3, native from 10.0"),
    "LayerNormalization": (lower_generic("NORMALIZATION"), "NORMALIZATION", "8.6+"),
    "GroupNormalization": (lower_generic("NORMALIZATION"), "NORMALIZATION", "8.6+"),
    "Gather": (lower_generic("GATHER"), "GATHER", ""),
    "GatherElements": (lower_generic("GATHER"), "GATHER", ""),
    "GatherND": (lower_generic("GATHER"), "GATHER", ""),
    "ScatterND": (lower_generic("SCATTER"), "SCATTER", ""),
    "ScatterElements": (lower_generic("SCATTER"), "SCATTER", ""),
    "Where": (lower_generic("SELECT"), "SELECT", ""),
    "TopK": (lower_generic("TOPK"), "TOPK", ""),
    "ArgMax": (lower_generic("TOPK"), "TOPK", ""),
    "ArgMin": (lower_generic("TOPK"), "TOPK", ""),
    "NonZero": (lower_generic("NON_ZERO"), "NON_ZERO", ""),
    "OneHot": (lower_generic("ONE_HOT"), "ONE_HOT", ""),
    "NonMaxSuppression": (lower_generic("NMS"), "NMS", ""),
    "GridSample": (lower_generic("GRID_SAMPLE"), "GRID_SAMPLE", ""),
    "Einsum": (lower_generic("EINSUM"), "EINSUM", ""),
    "CumSum": (lower_generic("LOOP"), "LOOP", "built from a loop"),
    "LSTM": (lower_generic("LOOP"), "LOOP", "recurrence"),
    "GRU": (lower_generic("LOOP"), "LOOP", "recurrence"),
    "RNN": (lower_generic("LOOP"), "LOOP", "recurrence"),
    "Loop": (lower_generic("LOOP"), "LOOP", ""),
    "Scan": (lower_generic("LOOP"), "LOOP", ""),
    "If": (lower_generic("CONDITION"), "CONDITION", ""),
    "Shape": (lower_shape_op("SHAPE"), "SHAPE", "only when the input shape is dynamic; else folded"),
    "Size": (lower_shape_op("SHAPE"), "SHAPE", "as Shape"),
    "ConstantOfShape": (lower_shape_op("FILL"), "FILL", "folded when its shape is constant"),
    "Range": (lower_shape_op("FILL"), "FILL", "folded when constant"),
    "QuantizeLinear": (lower_qdq("QUANTIZE"), "QUANTIZE", "scale and zero point are layer parameters"),
    "DequantizeLinear": (lower_qdq("DEQUANTIZE"), "DEQUANTIZE", "scale and zero point are layer parameters; "
                         "on constant weights it folds into the consumer"),
    "ReverseSequence": (lower_generic("REVERSE_SEQUENCE"), "REVERSE_SEQUENCE", ""),
    "Constant": (lambda lw: None, "-", "weights, never a layer"),
}


# ---------------------------------------------------------------------------------------------- driver

def lower(graph: Graph, features: Mapping[str, Any] | None = None) -> LayerGraph:
    """The TensorRT network for `graph`, after the builder rewrites that matter for DLA placement."""
    lw = Lowerer(graph, features or {})
    folded_names: list[str] = []
    noop_names: list[str] = []
    for node in graph.nodes:
        if node.index in graph.folded:
            folded_names.append(node.name)
            continue
        lw.node = node
        before = len(lw.layers)
        entry = OP_TABLE.get(node.op) if node.domain in ("", "ai.onnx") else None
        if node.op in lw._missing:
            entry = None
        if entry is None:
            _lower_unknown(lw, node)
        else:
            try:
                entry[0](lw)
            except Exception as exc:  # a node shape dlarules does not handle: flagged, never silently passed
                del lw.layers[before:]
                _lower_unknown(lw, node, f"not mapped by dlarules ({type(exc).__name__}: {exc})")
        if len(lw.layers) == before:
            noop_names.append(node.name)
    layers = _resolve_aliases(lw.layers, lw._aliases)
    if lw.features.get("qdq_fusion"):
        layers = fuse_qdq(layers, graph)
    layers = builder_passes(layers, graph)
    return LayerGraph(graph, layers, folded_names, noop_names, lw.features)


def _lower_unknown(lw: Lowerer, node: Node, reason: str | None = None) -> None:
    custom = node.domain not in ("", "ai.onnx")
    if custom and reason is None:
        lower_generic("PLUGIN")(lw)  # a custom-domain op needs a TensorRT plugin
        return
    reason = reason or ("this TensorRT release's ONNX parser has no importer for it" if node.op in lw._missing
                        else "unknown to dlarules")
    ins = [lw.constant(lw.t(i)) for i in node.inputs if i]
    outs = [lw.t(o) for o in node.outputs if o]
    lw.add("UNKNOWN", {"reason": reason}, ins, outs[0] if outs else None)
    if len(outs) > 1:
        lw.layers[-1].outputs = outs


def _resolve_aliases(layers: list[Layer], aliases: dict[str, Tensor]) -> list[Layer]:
    if not aliases:
        return layers
    for layer in layers:
        for k, t in enumerate(layer.inputs):
            seen = 0
            while t.name in aliases and seen < 64:
                t = aliases[t.name]
                seen += 1
            layer.inputs[k] = t
    return layers


# ---------------------------------------------------------------------------------------------- Q/DQ

def fuse_qdq(layers: list[Layer], graph: Graph) -> list[Layer]:
    """TensorRT's processing of Q/DQ networks, where the release's DLA takes them (`qdq_fusion`, set from
    `explicit_quantization` in rules/releases.yaml). Weight DequantizeLinear never gets here (a DQ of a constant is
    folded into the weights at build time, folding.py). An activation QUANTIZE -> DEQUANTIZE pair is absorbed
    into the layers around it (Developer Guide, "TensorRT Processing of Q/DQ Networks": quantizable layers fuse
    with their input DQ and output Q; Q propagates backwards, DQ forwards): the layers reading the pair's output
    take INT8 and the layer writing its input emits INT8, so each gets `precision = "int8"`. A network input's Q
    is its INT8 input format, a DQ writing a network output the output format. A Q or DQ with no partner (no
    quantizable neighbour) stays a separate layer, judged by the rules."""
    if not any(x.kind == "DEQUANTIZE" for x in layers):
        return layers
    producer = {t.name: x for x in layers for t in x.outputs}
    cons = _consumers(layers)
    outputs, inputs = set(graph.outputs), set(graph.inputs)
    removed: set[int] = set()
    alias: dict[str, Tensor] = {}
    for dq in layers:
        if dq.kind != "DEQUANTIZE" or not dq.inputs:
            continue
        q = producer.get(dq.inputs[0].name)
        if q is None or q.kind != "QUANTIZE" or not q.inputs:
            continue
        x, y = q.inputs[0], dq.outputs[0]
        src = producer.get(x.name)
        users = cons.get(y.name, [])
        if x.const or (src is None and x.name not in inputs):
            continue
        q_ok = src is None or src.kind in _QUANTIZABLE
        dq_ok = y.name in outputs or (bool(users) and all(u.kind in _QUANTIZABLE for u in users))
        if q_ok and dq_ok and _fuse_pair(q, dq, src, users, x, y, producer, cons, outputs, alias, removed):
            continue
        q_users = cons.get(q.outputs[0].name, [])
        if q_ok and q_users == [dq] and x.name not in outputs and (
                src is None or all(u is q for u in cons.get(x.name, []))):
            # only the Q fuses (its producer emits INT8, or the network input is INT8): the DQ stays a layer
            dq.inputs = [x, *dq.inputs[1:]]
            removed.add(id(q))
            if src is not None:
                src.extra_nodes = src.extra_nodes + (q.node,)
                _mark_int8([src], producer, forward=False)
        elif dq_ok and users:
            # only the DQ fuses: its readers take the Q's INT8 output; the Q stays a layer
            alias[y.name] = q.outputs[0]
            removed.add(id(dq))
            users[0].extra_nodes = users[0].extra_nodes + (dq.node,)
            _mark_int8(users, cons, forward=True)
    if not removed:
        return layers
    kept = [x for x in layers if id(x) not in removed]
    for x in kept:
        x.inputs = [_follow(alias, t) for t in x.inputs]
    return kept


def _fuse_pair(q: Layer, dq: Layer, src: Layer | None, users: list[Layer], x: Tensor, y: Tensor,
               producer: dict[str, Layer], cons: dict[str, list[Layer]], outputs: set[str],
               alias: dict[str, Tensor], removed: set[int]) -> bool:
    """Both halves of a Q -> DQ pair fuse into their neighbours; False when the network output needs the pair."""
    if y.name in outputs:
        # the layer writing x writes the network output instead (x must not be needed under its own name)
        if src is None or x.name in outputs or any(u is not q for u in cons.get(x.name, [])):
            return False
        src.outputs = [y if t is x else t for t in src.outputs]
        producer[y.name] = src
    else:
        alias[y.name] = x
    removed.add(id(dq))
    if all(id(u) in removed for u in cons.get(q.outputs[0].name, [])):
        removed.add(id(q))
    host = src if src is not None else (users[0] if users else None)
    if host is not None:
        host.extra_nodes = host.extra_nodes + tuple(n for n in (q.node, dq.node) if n not in host.sources)
    _mark_int8(users, cons, forward=True)
    if src is not None:
        _mark_int8([src], producer, forward=False)
    return True


# Data-movement layers commute with Q and DQ (Developer Guide: DQ propagates forwards, Q backwards through them),
# so the INT8 reaches the quantizable layer behind them.
_COMMUTING = frozenset({"SHUFFLE", "SLICE", "IDENTITY"})
# Layers with INT8 implementations that fuse with an input DQ and an output Q (the layers DLA runs in INT8, "FP16,
# INT8" in the DLA layer table); a DQ read by anything else (SoftMax, Gather, ...) stays a DEQUANTIZE layer.
_QUANTIZABLE = _COMMUTING | frozenset({"CONVOLUTION", "DECONVOLUTION", "FULLY_CONNECTED", "MATRIX_MULTIPLY",
                                       "POOLING", "ELEMENTWISE", "SCALE", "ACTIVATION", "PARAMETRIC_RELU",
                                       "CONCATENATION", "RESIZE", "LRN", "REDUCE"})


def _mark_int8(start: list[Layer], links: Mapping[str, Any], forward: bool) -> None:
    todo, seen = list(start), set()
    while todo:
        x = todo.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        x.precision = "int8"
        if x.kind not in _COMMUTING:
            continue
        if forward:
            todo += [u for t in x.outputs for u in links.get(t.name, [])]
        elif x.inputs and (p := links.get(x.inputs[0].name)) is not None:
            todo.append(p)


def _follow(alias: dict[str, Tensor], t: Tensor) -> Tensor:
    seen = 0
    while t.name in alias and seen < 64:
        t = alias[t.name]
        seen += 1
    return t


# ---------------------------------------------------------------------------------------------- builder

def builder_passes(layers: list[Layer], graph: Graph) -> list[Layer]:
    """Rewrites TensorRT's builder makes before it assigns devices, limited to those that change placement:
    no-op IDENTITY removal, dead-layer removal, and SHUFFLE+SHUFFLE fusion (an identity result disappears)."""
    layers = _drop_noop_identities(layers, graph)
    layers = _fuse_shuffles(layers, graph)
    layers = _drop_dead(layers, graph)
    return layers


def _consumers(layers: list[Layer]) -> dict[str, list[Layer]]:
    out: dict[str, list[Layer]] = {}
    for layer in layers:
        for t in layer.inputs:
            out.setdefault(t.name, []).append(layer)
    return out


def _rewire(layers: list[Layer], old: str, new: Tensor) -> None:
    for layer in layers:
        for k, t in enumerate(layer.inputs):
            if t.name == old:
                layer.inputs[k] = new


def _drop_noop_identities(layers: list[Layer], graph: Graph) -> list[Layer]:
    if not any(layer.kind == "IDENTITY" for layer in layers):
        return layers
    outputs = set(graph.outputs)
    keep: list[Layer] = []
    alias: dict[str, Tensor] = {}
    for layer in layers:
        if alias:
            layer.inputs = [alias.get(t.name, t) for t in layer.inputs]
        if (layer.kind == "IDENTITY" and layer.inputs and layer.outputs[0].name not in outputs
                and (layer.inputs[0].dtype == layer.outputs[0].dtype or layer.outputs[0].dtype is None)):
            alias[layer.outputs[0].name] = layer.inputs[0]
            continue
        keep.append(layer)
    return keep


def _fuse_shuffles(layers: list[Layer], graph: Graph) -> list[Layer]:
    if not any(layer.kind == "SHUFFLE" for layer in layers):
        return layers
    outputs = set(graph.outputs)
    cons = _consumers(layers)
    removed: set[int] = set()
    for layer in layers:
        if id(layer) in removed or layer.kind != "SHUFFLE":
            continue
        out = layer.outputs[0]
        nxt = cons.get(out.name, [])
        if (len(nxt) == 1 and nxt[0].kind == "SHUFFLE" and out.name not in outputs and len(nxt[0].inputs) == 1
                and len(layer.inputs) == 1):
            second = nxt[0]
            _merge_shuffle(layer, second)
            removed.add(id(second))
            layer.outputs = second.outputs
    kept = [lay for lay in layers if id(lay) not in removed]
    producer = {t.name: lay for lay in kept for t in lay.outputs}
    readers: dict[str, int] = {}
    for lay in kept:
        for t in lay.inputs:
            readers[t.name] = readers.get(t.name, 0) + 1
    final: list[Layer] = []
    alias: dict[str, Tensor] = {}
    for layer in kept:
        if alias:
            layer.inputs = [alias.get(t.name, t) for t in layer.inputs]
        if layer.kind == "SHUFFLE" and _is_noop_shuffle(layer):
            src, out = layer.inputs[0], layer.outputs[0]
            if out.name not in outputs:
                alias[out.name] = src
                continue
            # A no-op reshape producing a network output: its producer writes the output instead.
            prev = producer.get(src.name)
            if prev is not None and readers.get(src.name) == 1 and src.name not in outputs:
                prev.outputs = [out if t is src else t for t in prev.outputs]
                continue
        final.append(layer)
    return final


def _merge_shuffle(first: Layer, second: Layer) -> None:
    a, b = first.attrs, second.attrs
    first.parts = (first.parts or (first.display_name,)) + (second.parts or (second.display_name,))
    first.extra_nodes = first.extra_nodes + tuple(n for n in second.sources if n not in first.sources)
    if first.named or second.named:
        first.name = " + ".join(first.parts)
        first.named = True
    # the tensor between the two shuffles disappears, but DLA runs the parts one by one: keep its rank
    mid = first.outputs[0].rank or 0
    first.attrs = {
        "reshape": a["reshape"] or b["reshape"], "transpose": a["transpose"] or b["transpose"],
        "perm": a["perm"] or b["perm"], "reshape_const": a["reshape_const"] and b["reshape_const"],
        "touches_batch": a["touches_batch"] or b["touches_batch"], "fused": True,
        "max_rank": max(a.get("max_rank", 0), b.get("max_rank", 0), mid),
    }
    if first.origin != second.origin:
        first.origin = "builder"


def _is_noop_shuffle(layer: Layer) -> bool:
    a = layer.attrs
    if a.get("transpose") or not a.get("reshape_const", True):
        return False
    src, dst = layer.inputs[0].shape if layer.inputs else None, layer.outputs[0].shape
    return src is not None and dst is not None and tuple(src) == tuple(dst) and _static(src)


def _drop_dead(layers: list[Layer], graph: Graph) -> list[Layer]:
    needed = set(graph.outputs)
    keep: list[Layer] = []
    for layer in reversed(layers):
        for t in layer.outputs:
            if t.name in needed:
                keep.append(layer)
                for i in layer.inputs:
                    needed.add(i.name)
                break
    if len(keep) == len(layers):
        return layers
    keep.reverse()
    return keep
