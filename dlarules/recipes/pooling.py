"""Pooling recipes: global pools and ReduceMean to window pools, big average windows to depthwise convolutions,
big max windows to cascades of small max pools."""
from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from ..lowering import cbuf_banks
from .base import (Change, Context, Recipe, chain, constant_value, factor_window, replace, str_attr,
                   weight_budget)

# DLA limits the recipes aim for (POOL-WINDOW, POOL-PADDING, CONV-KERNEL in rules/); the fix re-checks the result.
POOL_WINDOW = 8
POOL_PADDING = 7
MAX_CASCADE = 16   # stride-1 max pools chained for one window (16 cover a 113x113 window; SPP's 13x13 takes 2)
CONV_KERNEL = 32
CBUF_BANKS = 16


def _nchw(ctx: Context, node: gs.Node) -> tuple | None:
    shape = ctx.shape(node.inputs[0])
    return shape if shape is not None and len(shape) == 4 else None


def _mean_hw(ctx: Context, node: gs.Node, h: int, w: int,
             tail: list | None = None) -> tuple[str, list[str], int]:
    """Replace `node` by the mean over H and W of its NCHW input: one pool, a depthwise conv, or a cascade (then
    the `tail` steps, e.g. a Mul turning the mean into a sum)."""
    c = _nchw(ctx, node)[1]
    base = node.name or node.outputs[0].name
    tail = tail or []
    # In INT8 an average pool falls back anyway (POOL-INT8-AVG): go straight to the convolution then.
    as_pool = "POOL-INT8-AVG" not in ctx.firing
    if as_pool and h <= POOL_WINDOW and w <= POOL_WINDOW:
        names = replace(ctx, node, lambda x, y: chain(ctx, x, y, base, [("AveragePool", [], {"kernel_shape": [h, w]}),
                                                                        *tail]))
        return f"AveragePool {h}x{w}", names, 0
    fh, fw = factor_window(h, POOL_WINDOW), factor_window(w, POOL_WINDOW)
    # A cascade of non-overlapping pools is exact and light; a big depthwise kernel can overflow DLA's
    # convolution buffer (CONV-CBUF), so the convolution is the fallback.
    if not as_pool or fh is None or fw is None:
        weight = ctx.weight(f"{base}/mean_weight", np.full((c, 1, h, w), 1.0 / (h * w)))
        names = replace(ctx, node, lambda x, y: chain(ctx, x, y, base, [
            ("Conv", [weight], {"kernel_shape": [h, w], "group": c}), *tail]))
        return f"depthwise Conv {h}x{w} with weights 1/{h * w}", names, c * h * w
    n = max(len(fh), len(fw))
    fh, fw = fh + [1] * (n - len(fh)), fw + [1] * (n - len(fw))
    steps = [("AveragePool", [], {"kernel_shape": [a, b], "strides": [a, b]}) for a, b in zip(fh, fw)] + tail
    names = replace(ctx, node, lambda x, y: chain(ctx, x, y, base, steps))
    return "cascade of AveragePools " + " -> ".join(f"{a}x{b}" for a, b in zip(fh, fw)), names, 0


def _check_mean_hw(ctx: Context, node: gs.Node) -> str | None:
    shape = _nchw(ctx, node)
    if shape is None:
        return "needs a static 4-D NCHW input"
    h, w = shape[2], shape[3]
    splits = factor_window(h, POOL_WINDOW) is not None and factor_window(w, POOL_WINDOW) is not None
    fits_conv = h <= CONV_KERNEL and w <= CONV_KERNEL
    if not fits_conv and (not splits or "POOL-INT8-AVG" in ctx.firing):
        return f"{h}x{w} is too large for a {CONV_KERNEL}x{CONV_KERNEL} convolution and does not split into windows <= 8"
    return weight_budget(shape[1] * h * w, "the averaging kernel")


def _check_global(node: gs.Node, ctx: Context) -> str | None:
    problem = _check_mean_hw(ctx, node) if node.op == "GlobalAveragePool" else (
        None if _nchw(ctx, node) else "needs a static 4-D NCHW input")
    return problem


def _max_cascade(h: int, w: int) -> list[tuple[int, int, int, int, int, int]]:
    """Stages (kh, kw, sh, sw, pad_end_h, pad_end_w) of non-overlapping max pools that reduce h x w to 1 x 1."""
    stages = []
    while h > 1 or w > 1:
        kh, kw = min(h, POOL_WINDOW), min(w, POOL_WINDOW)
        ph, pw = (-h) % kh, (-w) % kw    # pad the end so the windows tile: padding never wins a max
        stages.append((kh, kw, kh, kw, ph, pw))
        h, w = (h + ph) // kh, (w + pw) // kw
    return stages


def _apply_global(node: gs.Node, ctx: Context) -> Change:
    _, c, h, w = _nchw(ctx, node)
    name = node.name
    if node.op == "GlobalAveragePool":
        detail, names, weights = _mean_hw(ctx, node, h, w)
    elif h <= POOL_WINDOW and w <= POOL_WINDOW:
        names = replace(ctx, node, lambda x, y: chain(ctx, x, y, name, [("MaxPool", [], {"kernel_shape": [h, w]})]))
        detail, weights = f"MaxPool {h}x{w}", 0
    else:
        steps = [("MaxPool", [], {"kernel_shape": [kh, kw], "strides": [sh, sw], "pads": [0, 0, ph, pw]})
                 for kh, kw, sh, sw, ph, pw in _max_cascade(h, w)]
        names = replace(ctx, node, lambda x, y: chain(ctx, x, y, name, steps))
        detail, weights = f"cascade of {len(steps)} MaxPools", 0
    return Change("gap-to-avgpool", name, f"{node.op} over {h}x{w} -> {detail}", True, names, [name], weights)


def _check_avgpool(node: gs.Node, ctx: Context) -> str | None:
    a = node.attrs
    k = list(a.get("kernel_shape", []))
    if len(k) != 2:
        return "only 2-D average pooling"
    if a.get("ceil_mode", 0):
        return "ceil_mode=1 changes the output size a convolution would give"
    if str_attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return "auto_pad SAME is not rewritten"
    if max(k) > CONV_KERNEL:
        return f"window {k[0]}x{k[1]} is over the {CONV_KERNEL}x{CONV_KERNEL} convolution kernel limit"
    if _nchw(ctx, node) is None or (_excludes_padding(node) and ctx.shape(node.outputs[0]) is None):
        return "needs a static 4-D NCHW input"
    return weight_budget(_nchw(ctx, node)[1] * k[0] * k[1], "the averaging kernel")


def _box_convs(node: gs.Node, ctx: Context) -> tuple[list[tuple[str, list, dict]], str, int]:
    """The depthwise convolution(s) computing the window sums / kh*kw: one kh x kw kernel, or, when that kernel
    would overflow DLA's convolution buffer, a 1 x kw kernel (which also takes the column stride, so the next
    layer reads a narrower tensor) then a kh x 1 kernel. A box filter is separable: the result is the same."""
    a = node.attrs
    kh, kw = a["kernel_shape"]
    sh, sw = list(a.get("strides", [1, 1]))
    pt, pl, pb, pr = list(a.get("pads", [0, 0, 0, 0]))
    _, c, _, w = _nchw(ctx, node)
    if kh == 1 or kw == 1 or cbuf_banks(c, c, [kh, kw], [1, 1], w, 2) <= CBUF_BANKS:
        weight = ctx.weight(f"{node.name}/mean_weight", np.full((c, 1, kh, kw), 1.0 / (kh * kw)))
        return ([("Conv", [weight], {"kernel_shape": [kh, kw], "group": c, "strides": [sh, sw],
                                     "pads": [pt, pl, pb, pr]})],
                f"depthwise Conv {kh}x{kw} with weights 1/{kh * kw}", c * kh * kw)
    row = ctx.weight(f"{node.name}/row_weight", np.full((c, 1, 1, kw), 1.0 / kw))
    col = ctx.weight(f"{node.name}/col_weight", np.full((c, 1, kh, 1), 1.0 / kh))
    return ([("Conv", [row], {"kernel_shape": [1, kw], "group": c, "strides": [1, sw], "pads": [0, pl, 0, pr]}),
             ("Conv", [col], {"kernel_shape": [kh, 1], "group": c, "strides": [sh, 1], "pads": [pt, 0, pb, 0]})],
            f"depthwise Convs 1x{kw} then {kh}x1 (a {kh}x{kw} kernel would overflow DLA's convolution buffer)",
            c * (kh + kw))


def _apply_avgpool(node: gs.Node, ctx: Context) -> Change:
    kh, kw = node.attrs["kernel_shape"]
    name = node.name
    steps, what, weights = _box_convs(node, ctx)
    detail, extra = "", 0
    if _excludes_padding(node):
        scale, detail = _border_correction(node, ctx)
        steps.append(("Mul", [scale], {}))
        detail, extra = f" x {detail}", int(scale.values.size)
    names = replace(ctx, node, lambda x, y: chain(ctx, x, y, name, steps))
    return Change("avgpool-to-conv", name, f"AveragePool {kh}x{kw} -> {what}{detail}", True, names, [name],
                  weights + extra)


def _check_maxpool(node: gs.Node, ctx: Context) -> str | None:
    a = node.attrs
    k = list(a.get("kernel_shape", []))
    if len(k) != 2:
        return "only 2-D max pooling"
    if len(node.outputs) > 1 and (node.outputs[1].outputs or node.outputs[1] in ctx.graph.outputs):
        return "the Indices output is used"
    if a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1, 1])):
        return "ceil_mode or dilation is not rewritten"
    if str_attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return "auto_pad SAME is not rewritten"
    if max(k) <= POOL_WINDOW:
        return f"window {k[0]}x{k[1]} already fits"
    shape, pads = ctx.shape(node.inputs[0]), list(a.get("pads", [0, 0, 0, 0]))
    if shape is not None and len(shape) == 4 and len(pads) == 4 and \
            (k[0] > shape[2] + pads[0] + pads[2] or k[1] > shape[3] + pads[1] + pads[3]):
        return f"window {k[0]}x{k[1]} is larger than the padded input"
    n = max(-(-(kk - 1) // (POOL_WINDOW - 1)) for kk in k)
    if n > MAX_CASCADE:   # a malformed window (2**62) would build a chain as long as itself
        return f"the cascade would take {n} pooling layers, over {MAX_CASCADE}"
    return None


def _split_window(k: int, pad_pre: int, pad_post: int, n: int) -> list[tuple[int, int, int]]:
    """n stride-1 windows (k_i, pre_i, post_i) that compose to a window k with the given padding."""
    ks = [1] * n
    rest = k - 1
    for i in range(n):
        take = min(POOL_WINDOW - 1, rest)
        ks[i] += take
        rest -= take
    out = []
    for ki in ks:
        pre = min(pad_pre, POOL_PADDING, ki - 1)
        post = min(pad_post, POOL_PADDING, ki - 1)
        pad_pre -= pre
        pad_post -= post
        out.append((ki, pre, post))
    return out


def _apply_maxpool(node: gs.Node, ctx: Context) -> Change:
    a = node.attrs
    kh, kw = a["kernel_shape"]
    sh, sw = list(a.get("strides", [1, 1]))
    p = list(a.get("pads", [0, 0, 0, 0]))
    n = max(-(-(kh - 1) // (POOL_WINDOW - 1)), -(-(kw - 1) // (POOL_WINDOW - 1)))
    hs, ws = _split_window(kh, p[0], p[2], n), _split_window(kw, p[1], p[3], n)
    steps = []
    for i, ((khi, th, bh), (kwi, tw, bw)) in enumerate(zip(hs, ws)):
        last = i == n - 1
        steps.append(("MaxPool", [], {"kernel_shape": [khi, kwi], "strides": [sh, sw] if last else [1, 1],
                                      "pads": [th, tw, bh, bw]}))
    name = node.name
    while len(node.outputs) > 1:   # an unused Indices output
        node.outputs.pop()
    names = replace(ctx, node, lambda x, y: chain(ctx, x, y, name, steps))
    sizes = " -> ".join(f"{s[2]['kernel_shape'][0]}x{s[2]['kernel_shape'][1]}" for s in steps)
    return Change("maxpool-cascade", name, f"MaxPool {kh}x{kw} stride {sh}x{sw} -> cascade {sizes} (windows "
                  f"compose; the last carries the stride)", True, names, [name])


def _reduce_axes(node: gs.Node) -> list[int] | None:
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1:   # opset 13 ReduceSum / opset 18 ReduceMean: an input
        v = constant_value(node.inputs[1])
        axes = None if v is None else [int(x) for x in v.reshape(-1)]
    return None if axes is None else sorted(int(a) % 4 for a in axes)


def _check_reduce(node: gs.Node, ctx: Context) -> str | None:
    if _nchw(ctx, node) is None:
        return "needs a static 4-D NCHW input"
    if not node.attrs.get("keepdims", 1):
        return "keepdims=0 would need a reshape after it"
    axes = _reduce_axes(node)
    if axes == [1]:
        return None
    if axes != [2, 3]:
        return "only a reduction over C (axis 1) or over H and W (axes 2, 3)"
    return _check_mean_hw(ctx, node)


def _apply_reduce(node: gs.Node, ctx: Context) -> Change:
    _, c, h, w = _nchw(ctx, node)
    name, op = node.name, node.op
    total = op == "ReduceSum"
    axes = _reduce_axes(node)
    while len(node.inputs) > 1:   # the axes input goes with the node
        node.inputs.pop()
    if axes == [1]:
        # a weighted sum over channels is a 1x1 convolution to one channel
        weight = ctx.weight(f"{name}/channel_weight", np.full((1, c, 1, 1), 1.0 if total else 1.0 / c))
        names = replace(ctx, node, lambda x, y: chain(ctx, x, y, name, [("Conv", [weight], {"kernel_shape": [1, 1]})]))
        return Change("reduce-to-pool-conv", name, f"{op} over C ({c}) -> Conv 1x1 to one channel with weights "
                      f"{'1' if total else f'1/{c}'}", True, names, [name], c)
    tail = [("Mul", [ctx.weight(f"{name}/window_size", np.array(float(h * w)))], {})] if total else []
    detail, names, weights = _mean_hw(ctx, node, h, w, tail)
    return Change("reduce-to-pool-conv", name, f"{op} over H,W ({h}x{w}) -> {detail}"
                  + (f" x {h * w}" if total else ""), True, names, [name], weights)


RECIPES = [
    Recipe("gap-to-avgpool", "GlobalAveragePool/GlobalMaxPool -> window pools", ("GlobalAveragePool", "GlobalMaxPool"),
           "always", "1 layer (a cascade: one per step); a depthwise conv adds C*H*W weights",
           _check_global, _apply_global,
           "A global pool is a Reduce in TensorRT. With the window H x W it is a Pooling layer: one AveragePool when "
           "H, W <= 8; a depthwise convolution with constant 1/(H*W) weights up to 32x32; a cascade of "
           "non-overlapping pools beyond. GlobalMaxPool becomes MaxPool, or a cascade of max pools whose end padding "
           "never wins."),
    Recipe("avgpool-to-conv", "AveragePool over 8 -> depthwise Convolution", ("AveragePool",), "always",
           "same layer count; adds C*kh*kw weights", _check_avgpool, _apply_avgpool,
           "Exact with inclusive padding (count_include_pad=1) or no padding; with exclusive padding the border "
           "windows are divided by fewer elements, so a constant border correction (see avgpool-exclude-pad-to-mul) "
           "multiplies the convolution's output. A kernel that would overflow DLA's convolution buffer (CONV-CBUF) "
           "is split into a 1 x kw and a kh x 1 depthwise convolution (a box filter is separable)."),
    Recipe("maxpool-cascade", "MaxPool over 8 -> cascade of small max pools", ("MaxPool",), "always",
           "one pooling layer per step", _check_maxpool, _apply_maxpool,
           "Stride-1 max windows compose (k1 + k2 - 1); the padding is spread over the steps and the last step "
           "takes the stride."),
    Recipe("reduce-to-pool-conv", "ReduceMean/ReduceSum over H,W -> pooling; over C -> 1x1 Conv",
           ("ReduceMean", "ReduceSum"), "always", "as gap-to-avgpool (a sum: one Scale more); over C: one 1x1 Conv",
           _check_reduce, _apply_reduce,
           "A mean over H and W with keepdims is a global average pool (see gap-to-avgpool); a sum is that times H*W. "
           "A mean or sum over the channels (channel attention, CBAM) is a 1x1 convolution to one channel with "
           "weights 1/C or 1, as NVIDIA's DLA-SW reconstructs ReduceSum/ReduceMean."),
]


# ---------------------------------------------------------------------------------------------- exclusive padding


def _valid_counts(size: int, k: int, stride: int, pad_pre: int, out: int) -> np.ndarray:
    """For each output position along one axis, how many window elements fall inside the unpadded input."""
    starts = np.arange(out) * stride - pad_pre
    return np.minimum(starts + k, size) - np.maximum(starts, 0)


def _check_exclude_pad(node: gs.Node, ctx: Context) -> str | None:
    a = node.attrs
    if len(list(a.get("kernel_shape", []))) != 2:
        return "only 2-D average pooling"
    if a.get("count_include_pad", 0) or not any(a.get("pads", [0, 0, 0, 0])):
        return "it has no padding excluded from the average"
    if a.get("ceil_mode", 0):
        return "ceil_mode=1 windows may run past the padding; not rewritten"
    if str_attr(node, "auto_pad", "NOTSET") != "NOTSET":
        return "auto_pad is not rewritten (explicit pads only)"
    if _nchw(ctx, node) is None or ctx.shape(node.outputs[0]) is None:
        return "needs static 4-D NCHW input and output shapes"
    out = ctx.shape(node.outputs[0])
    return weight_budget(out[1] * out[2] * out[3], "the border correction") if len(out) == 4 else None


def _excludes_padding(node: gs.Node) -> bool:
    return not node.attrs.get("count_include_pad", 0) and any(node.attrs.get("pads", [0, 0, 0, 0]))


def _border_correction(node: gs.Node, ctx: Context) -> tuple[gs.Constant, str]:
    """The constant that turns an inclusive average into the exclusive one: kh*kw / (real elements per window)."""
    a = node.attrs
    kh, kw = a["kernel_shape"]
    sh, sw = list(a.get("strides", [1, 1]))
    pads = list(a["pads"])
    _, c, h, w = _nchw(ctx, node)
    _, _, oh, ow = ctx.shape(node.outputs[0])
    valid = np.outer(_valid_counts(h, kh, sh, pads[0], oh), _valid_counts(w, kw, sw, pads[1], ow))
    factor = (kh * kw) / valid.astype(np.float64)
    # full C x H x W constant: DLA's elementwise broadcasting takes equal shapes (or NC11 / N111), not 11HW
    scale = ctx.weight(f"{node.name}/pad_correction", np.broadcast_to(factor, (1, c, oh, ow)))
    return scale, f"a constant border correction ({oh}x{ow}, factors {factor.min():g}..{factor.max():g})"


def _apply_exclude_pad(node: gs.Node, ctx: Context) -> Change:
    kh, kw = node.attrs["kernel_shape"]
    scale, detail = _border_correction(node, ctx)
    attrs = {**node.attrs, "count_include_pad": 1}
    name = node.name
    names = replace(ctx, node, lambda x, y: chain(ctx, x, y, name, [("AveragePool", [], attrs), ("Mul", [scale], {})]))
    return Change("avgpool-exclude-pad-to-mul", name, f"AveragePool {kh}x{kw} excluding padding -> inclusive "
                  f"AveragePool x {detail}", True, names, [name], int(scale.values.size))


RECIPES += [
    Recipe("avgpool-exclude-pad-to-mul", "AveragePool excluding padding -> inclusive AveragePool x border correction",
           ("AveragePool",), "always", "one Mul layer more; adds C*Ho*Wo constants", _check_exclude_pad,
           _apply_exclude_pad,
           "With count_include_pad=0 a border window is divided by the number of real elements it covers; "
           "inclusive pooling divides by kh*kw. Multiplying the inclusive result by kh*kw / count, a constant map "
           "known from the shapes, gives the exclusive average (Xavier's DLA pools only inclusively)."),
]
