"""Activation and arithmetic recipes: HardSwish/HardSigmoid from layers DLA runs, Div by a constant and Neg as
products."""
from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from .base import Change, Context, Recipe, chain, constant_value, replace, weight_budget


def _scalar(ctx: Context, base: str, v: float) -> gs.Constant:
    return ctx.weight(base, v)


def _check_float_input(node: gs.Node, ctx: Context) -> str | None:
    if ctx.float_dtype not in (np.float16, np.float32):
        return f"only float16/float32 tensors (got {ctx.float_dtype})"
    return None


def _apply_hardswish(node: gs.Node, ctx: Context) -> Change:
    # HardSwish(x) = x * Clip(x + 3, 0, 6) / 6: Add/Mul by constants fold into Scale layers, Clip(0, 6) is a DLA
    # activation (ACT-CLIP-RANGE: min 0, max <= 127), and x * (.) an ElementWise product.
    name = node.name
    three, zero, six, sixth = (_scalar(ctx, f"{name}/{n}", v) for n, v in
                               (("three", 3.0), ("zero", 0.0), ("six", 6.0), ("one_sixth", 1.0 / 6.0)))

    def build(x: gs.Tensor, y: gs.Tensor) -> list[gs.Node]:
        gate = ctx.var(f"{name}/gate", like=x)
        nodes = chain(ctx, x, gate, name, [("Add", [three], {}), ("Clip", [None, zero, six], {}),
                                          ("Mul", [sixth], {})])
        nodes.append(ctx.node("Mul", f"{name}/Mul_x", [x, gate], [y]))
        return nodes
    names = replace(ctx, node, build)
    return Change("hardswish-decompose", name, "HardSwish -> x * (Clip(x + 3, 0, 6) * 1/6)", True, names, [name])


def _apply_hardsigmoid(node: gs.Node, ctx: Context) -> Change:
    # HardSigmoid(x) = Clip(alpha * x + beta, 0, 1): two Scale layers and a DLA Clip(0, 1).
    name = node.name
    alpha = float(node.attrs.get("alpha", 0.2))
    beta = float(node.attrs.get("beta", 0.5))
    a, b, zero, one = (_scalar(ctx, f"{name}/{n}", v) for n, v in
                       (("alpha", alpha), ("beta", beta), ("zero", 0.0), ("one", 1.0)))
    names = replace(ctx, node, lambda x, y: chain(ctx, x, y, name, [("Mul", [a], {}), ("Add", [b], {}),
                                                                      ("Clip", [None, zero, one], {})]))
    return Change("hardsigmoid-decompose", name, f"HardSigmoid(alpha={alpha:g}, beta={beta:g}) -> "
                  f"Clip({alpha:g} * x + {beta:g}, 0, 1)", True, names, [name])


def _check_div(node: gs.Node, ctx: Context) -> str | None:
    v = constant_value(node.inputs[1])
    if v is None:
        return "the divisor is not a constant"
    if not np.issubdtype(v.dtype, np.floating):
        return "integer division is not a product"
    if np.any(v == 0):
        return "the divisor has zeros"
    return _check_float_input(node, ctx)


def _apply_div(node: gs.Node, ctx: Context) -> Change:
    v = constant_value(node.inputs[1])
    recip = ctx.const(f"{node.name}/reciprocal", (1.0 / v.astype(np.float64)).astype(v.dtype))
    node.op = "Mul"
    node.inputs[1] = recip
    shown = f"{float(v.reshape(-1)[0]):g}" if v.size == 1 else f"a {v.size}-element constant"
    return Change("div-to-mul", node.name, f"Div by {shown} -> Mul by its reciprocal", True, [node.name], [])


def _apply_neg(node: gs.Node, ctx: Context) -> Change:
    node.op = "Mul"
    node.inputs.append(_scalar(ctx, f"{node.name}/minus_one", -1.0))
    return Change("neg-to-mul", node.name, "Neg -> Mul by -1", True, [node.name], [])


def _check_sub(node: gs.Node, ctx: Context) -> str | None:
    if len(node.inputs) != 2:
        return "needs two operands"
    if constant_value(node.inputs[1]) is not None and constant_value(node.inputs[0]) is None:
        return "x - c already folds into a Scale layer where it can"
    return _check_float_input(node, ctx)


def _apply_sub(node: gs.Node, ctx: Context) -> Change:
    # a - b = a + (-1 * b), bit for bit (negation is exact): the product by -1 is a uniform Scale, and the sum takes
    # a constant a as a Scale operand (TensorRT folds x + c, not c - x) or is an ElementWise SUM
    a, b = node.inputs[0], node.inputs[1]
    neg = ctx.var(f"{node.name}/negated", like=b, shape=ctx.shape(b))
    ctx.node("Mul", f"{node.name}/negate", [b, _scalar(ctx, f"{node.name}/minus_one", -1.0)], [neg])
    node.op = "Add"
    node.inputs[1] = neg
    what = "a constant minus x" if constant_value(a) is not None else "a - b"
    return Change("sub-to-add", node.name, f"Sub ({what}) -> Add of the operand times -1", True,
                  [node.name, f"{node.name}/negate"], [])


RECIPES = [
    Recipe("hardswish-decompose", "HardSwish -> Add, Clip(0,6), Mul", ("HardSwish",), "always",
           "4 layers (2 fold into Scale) instead of 2", _check_float_input, _apply_hardswish,
           "TensorRT imports HardSwish as a hard-sigmoid activation (not on DLA) times x."),
    Recipe("hardsigmoid-decompose", "HardSigmoid -> Mul, Add, Clip(0,1)", ("HardSigmoid",), "always",
           "3 layers (2 fold into Scale) instead of 1", _check_float_input, _apply_hardsigmoid,
           "DLA has no hard-sigmoid activation; Clip(0, 1) is a DLA activation."),
    Recipe("div-to-mul", "Div by a constant -> Mul by its reciprocal", ("Div",), "always", "no new layer",
           _check_div, _apply_div,
           "DLA runs no DIV on Jetson before TensorRT 10; a product by 1/c differs by float rounding only."),
    Recipe("neg-to-mul", "Neg -> Mul by -1", ("Neg",), "always", "no new layer (a Scale)",
           _check_float_input, _apply_neg, "DLA runs only ABS as a unary layer."),
    Recipe("sub-to-add", "Sub -> Add of the second operand times -1", ("Sub",), "always",
           "one Scale layer more; a constant minuend becomes a Scale operand instead of a CONSTANT layer",
           _check_sub, _apply_sub,
           "TensorRT folds a constant operand into a Scale layer for x + c, x * c and x - c, not for c - x (a "
           "YOLO box decode: anchors - distances), which leaves a CONSTANT layer on the GPU; DLA before TensorRT "
           "8.2 runs no SUB. a + (-1 * b) is the same number bit for bit."),
]


# ---------------------------------------------------------------------------------------------- broadcasting

_BINARY = ("Add", "Sub", "Mul", "Div", "Max", "Min")


def _broadcast_plan(node: gs.Node, ctx: Context) -> tuple[int, tuple, bool] | str:
    """(index of the operand to expand, the full NCHW shape, whether it is a constant), or why not."""
    if len(node.inputs) != 2:
        return "needs two operands"
    out = ctx.shape(node.outputs[0])
    if out is None or len(out) != 4:
        return "needs a static 4-D output"
    shapes = [ctx.shape(t) for t in node.inputs]
    if shapes.count(out) != 1:
        return "needs exactly one operand of the output's full shape"
    k = 1 - shapes.index(out)
    other, const = node.inputs[k], constant_value(node.inputs[k]) is not None
    if const:
        return k, out, True
    s = shapes[k]
    if s is None or len(s) != 4 or s[1] != 1 or (s[0], s[2], s[3]) != (out[0], out[2], out[3]):
        return f"the operand {other.name} ({'x'.join(map(str, s)) if s else '?'}) is not a one-channel map N1HW"
    return k, out, False


def _check_broadcast(node: gs.Node, ctx: Context) -> str | None:
    got = _broadcast_plan(node, ctx)
    if isinstance(got, str):
        return got
    k, out, const = got
    if const and (over := weight_budget(out[0] * out[1] * out[2] * out[3], "the expanded operand")):
        return over
    return _check_float_input(node, ctx)


def _apply_broadcast(node: gs.Node, ctx: Context) -> Change:
    k, out, const = _broadcast_plan(node, ctx)
    operand = node.inputs[k]
    n, c, h, w = out
    if const:
        # the constant at full size: an equal-shape operand (TensorRT folds it into a Scale or an ElementWise)
        full = ctx.weight(f"{node.name}/expanded", np.broadcast_to(constant_value(operand), out))
        node.inputs[k] = full
        return Change("broadcast-expand", node.name, f"constant operand expanded to {n}x{c}x{h}x{w}", True,
                      [node.name], [], int(full.values.size))
    # a one-channel map copied to C channels by a 1x1 convolution of ones (each output is the input times 1)
    ones = ctx.weight(f"{node.name}/ones", np.ones((c, 1, 1, 1)))
    copied = ctx.var(f"{node.name}/expanded", like=operand, shape=out)
    conv = ctx.node("Conv", f"{node.name}/expand", [operand, ones], [copied], kernel_shape=[1, 1])
    node.inputs[k] = copied
    return Change("broadcast-expand", node.name, f"{operand.name} ({n}x1x{h}x{w}) copied to {c} channels by a 1x1 "
                  f"Conv of ones before {node.op}", True, [conv.name, node.name], [], c)


RECIPES += [
    Recipe("broadcast-expand", "Operand DLA cannot broadcast -> expanded to the full NCHW shape", _BINARY, "always",
           "a constant: C*H*W values; a one-channel map: one 1x1 Conv layer", _check_broadcast, _apply_broadcast,
           "DLA's ElementWise takes operands of equal shape, NC11 or N111. A spatial attention map N1HW (CBAM, "
           "segmentation masks) times an NCHW tensor is neither: a 1x1 convolution of ones copies the map to C "
           "channels exactly; a constant operand is stored at full size."),
]


# ---------------------------------------------------------------------------------------------- clip

_CLIP_MAX = 127.0   # DLA's Clip: min 0, max in 1..127 (ACT-CLIP-RANGE)


def _clip_bounds(node: gs.Node) -> tuple[float, float] | str:
    """(min, max) of a Clip, -inf/inf where absent; opset < 11 has attributes, later ones inputs."""
    if len(node.inputs) == 1 and ("min" in node.attrs or "max" in node.attrs):
        return float(node.attrs.get("min", -np.inf)), float(node.attrs.get("max", np.inf))
    bounds = []
    for k, default in ((1, -np.inf), (2, np.inf)):
        t = node.inputs[k] if len(node.inputs) > k and node.inputs[k].name else None
        v = constant_value(t) if t is not None else np.array(default)
        if v is None or v.size != 1:
            return "its bounds are not constant scalars"
        bounds.append(float(v.reshape(-1)[0]))
    return bounds[0], bounds[1]


def _check_clip(node: gs.Node, ctx: Context) -> str | None:
    got = _clip_bounds(node)
    if isinstance(got, str):
        return got
    lo, hi = got
    if np.isinf(lo) and np.isinf(hi):
        return "it clips nothing"
    if not lo < hi:
        return f"min {lo:g} is not below max {hi:g}"
    return _check_float_input(node, ctx)


def _pow2_scale(width: float) -> float:
    """A power of two k with width * k in 1..127 (multiplying by a power of two is exact in floating point)."""
    return 2.0 ** -np.floor(np.log2(width / 64.0)) if not 1.0 <= width <= _CLIP_MAX else 1.0


def _apply_clip(node: gs.Node, ctx: Context) -> Change:
    lo, hi = _clip_bounds(node)
    name = node.name
    c = lambda tag, v: _scalar(ctx, f"{name}/{tag}", v)   # noqa: E731
    minus_lo = f"x + {-lo:g}" if lo < 0 else f"x - {lo:g}"
    plus_lo = f"- {-lo:g}" if lo < 0 else f"+ {lo:g}"
    if np.isinf(lo):        # min(x, hi) = hi - relu(hi - x)
        steps = [("Mul", [c("neg", -1.0)], {}), ("Add", [c("hi", hi)], {}), ("Relu", [], {}),
                 ("Mul", [c("neg_back", -1.0)], {}), ("Add", [c("hi_back", hi)], {})]
        what = f"{hi:g} - Relu({hi:g} - x)"
    elif np.isinf(hi):      # max(x, lo) = relu(x - lo) + lo
        steps = [("Add", [c("minus_lo", -lo)], {}), ("Relu", [], {}), ("Add", [c("lo", lo)], {})]
        what = f"Relu({minus_lo}) {plus_lo}"
    else:                   # clip(x, lo, hi) = clip(k * (x - lo), 0, k * (hi - lo)) / k + lo
        k = _pow2_scale(hi - lo)
        scaled = [("Mul", [c("scale", k)], {})] if k != 1.0 else []
        unscaled = [("Mul", [c("unscale", 1.0 / k)], {})] if k != 1.0 else []
        steps = ([("Add", [c("minus_lo", -lo)], {})] + scaled
                 + [("Clip", [None, c("zero", 0.0), c("width", (hi - lo) * k)], {})] + unscaled
                 + [("Add", [c("lo", lo)], {})])
        what = (f"Clip({minus_lo}, 0, {hi - lo:g}) {plus_lo}" if k == 1.0 else
                f"Clip({k:g} * ({minus_lo}), 0, {(hi - lo) * k:g}) / {k:g} {plus_lo}")
    while len(node.inputs) > 1:   # the bounds go with the node
        node.inputs.pop()
    names = replace(ctx, node, lambda x, y: chain(ctx, x, y, name, steps))
    return Change("clip-shift", name, f"Clip({lo:g}, {hi:g}) -> {what}", True, names, [name])


RECIPES += [
    Recipe("clip-shift", "Clip to [min, max] -> shifted (and power-of-two scaled) Clip(0, w) or ReLU", ("Clip",),
           "always", "two to four Scale layers around the activation", _check_clip, _apply_clip,
           "DLA clips only to [0, max] with max in 1..127. Clip(x, a, b) = Clip(x - a, 0, b - a) + a; a width "
           "outside 1..127 is brought inside by a power of two (exact in floating point); a one-sided clip is a "
           "shifted ReLU. The shifts are Scale layers; the result differs from the original only by float rounding."),
]
