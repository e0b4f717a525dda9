"""Resize recipes: computed output sizes to constant scales, nearest upsampling beyond DLA's factor in two exact
steps, linear to nearest (exact from a 1x1 input, approximate otherwise)."""
from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from .base import Change, Context, Recipe, assign, constant_value, str_attr

NEAREST_MAX = 32   # RESIZE-NEAREST-SCALE
_EMPTY = ""


def _io(ctx: Context, node: gs.Node) -> tuple[tuple | None, tuple | None]:
    return ctx.shape(node.inputs[0]), ctx.shape(node.outputs[0])


def _scales(ctx: Context, node: gs.Node) -> list[float] | None:
    """The effective scales: the constant scales input, or output size / input size."""
    if len(node.inputs) > 2 and node.inputs[2].name:
        v = constant_value(node.inputs[2])
        if v is not None and v.size:
            return [float(s) for s in v.reshape(-1)]
    src, dst = _io(ctx, node)
    if src is None or dst is None or len(src) != len(dst):
        return None
    return [d / s for s, d in zip(src, dst)]


def _set_scales(ctx: Context, node: gs.Node, scales: list[float]) -> None:
    """Make the node a Resize(X, roi='', scales=const) (opset >= 11 form)."""
    const = ctx.const(f"{node.name}/scales", np.asarray(scales, dtype=np.float32))
    if (ctx.graph.opset or 13) < 11:
        assign(node.inputs, [node.inputs[0], const])   # Resize-10: (X, scales); gs lists take no slice assignment
    else:
        assign(node.inputs, [node.inputs[0], gs.Variable.empty(), const])


def _check_sizes(node: gs.Node, ctx: Context) -> str | None:
    if node.op != "Resize" or len(node.inputs) < 4 or not node.inputs[3].name:
        return "needs a Resize with a `sizes` input"
    src, dst = _io(ctx, node)
    if src is None or dst is None:
        return "needs static input and output shapes"
    scales = [d / s for s, d in zip(src, dst)]
    if any(int(np.floor(s * k)) != d for s, k, d in zip(src, scales, dst)):
        return f"sizes {list(dst)} are not reproduced by scales {scales} (floor(in*scale) differs)"
    return None


def _apply_sizes(node: gs.Node, ctx: Context) -> Change:
    src, dst = _io(ctx, node)
    scales = [d / s for s, d in zip(src, dst)]
    _set_scales(ctx, node, scales)
    txt = "x".join(f"{s:g}" for s in scales[2:])
    return Change("resize-sizes-to-scales", node.name, f"Resize output size {list(dst)} from a shape tensor -> "
                  f"constant scales {txt}", True, [node.name], [])


def _nearest_exact_mode(node: gs.Node) -> bool:
    # Pixel replication: asymmetric coordinates with floor rounding compose exactly for integer factors.
    return (str_attr(node, "coordinate_transformation_mode", "half_pixel") == "asymmetric"
            and str_attr(node, "nearest_mode", "round_prefer_floor") == "floor")


def _split_factor(s: int) -> tuple[int, int] | None:
    for a in range(NEAREST_MAX, 1, -1):
        if s % a == 0 and s // a <= NEAREST_MAX:
            return a, s // a
    return None


def _upsampling(node: gs.Node, ctx: Context, mode: str) -> list[float] | str:
    """The 4 scales of a `mode` resize with static shapes, or why the recipe does not apply."""
    if str_attr(node, "mode", "nearest") != mode:
        return f"only {mode} resizes"
    scales = _scales(ctx, node)
    if scales is None or len(scales) != 4:
        return "needs static 4-D shapes"
    return scales


def _check_two_step(node: gs.Node, ctx: Context) -> str | None:
    scales = _upsampling(node, ctx, "nearest")
    if isinstance(scales, str):
        return scales
    hw = scales[2:]
    if any(abs(s - round(s)) > 1e-6 for s in hw):
        return f"factors {hw} are not integers"
    if all(s <= NEAREST_MAX for s in hw):
        return "factors already fit"
    if not _nearest_exact_mode(node):
        return "only asymmetric coordinates with floor rounding compose exactly"
    if any(_split_factor(int(round(s))) is None for s in hw if s > NEAREST_MAX):
        return f"factors {hw} do not split into two factors <= {NEAREST_MAX}"
    return None


def _apply_two_step(node: gs.Node, ctx: Context) -> Change:
    hw = [int(round(s)) for s in _scales(ctx, node)[2:]]
    first, second = [], []
    for s in hw:
        a, b = _split_factor(s) if s > NEAREST_MAX else (s, 1)
        first.append(a)
        second.append(b)
    y = node.outputs[0]
    mid = ctx.var(f"{node.name}/step1_out", like=node.inputs[0])
    assign(node.outputs, [mid])
    _set_scales(ctx, node, [1.0, 1.0, *map(float, first)])
    step2 = ctx.node("Resize", f"{node.name}/step2", [mid], [y], **dict(node.attrs))
    _set_scales(ctx, step2, [1.0, 1.0, *map(float, second)])
    return Change("resize-nearest-two-step", node.name, f"nearest x{hw[0]}x{hw[1]} -> x{first[0]}x{first[1]} then "
                  f"x{second[0]}x{second[1]}", True, [node.name, step2.name], [])


def _check_to_nearest(node: gs.Node, ctx: Context) -> str | None:
    scales = _upsampling(node, ctx, "linear")
    if isinstance(scales, str):
        return scales
    if any(abs(s - round(s)) > 1e-6 or s < 1 for s in scales[2:]):
        return f"factors {scales[2:]} are not integer upsampling factors"
    return None


def _apply_to_nearest(node: gs.Node, ctx: Context) -> Change:
    src = ctx.shape(node.inputs[0])
    scales = _scales(ctx, node)
    exact = src is not None and src[2] == 1 and src[3] == 1   # from 1x1 every mode replicates the one value
    node.attrs["mode"] = "nearest"
    if node.op == "Resize" and (ctx.graph.opset or 13) >= 11:
        # Resize-10 and Upsample have no such attributes: their nearest is asymmetric + floor already
        node.attrs.update({"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"})
    _set_scales(ctx, node, scales)
    txt = "x".join(f"{s:g}" for s in scales[2:])
    why = "exact: the input is 1x1, so every mode replicates it" if exact else "approximate: nearest instead of bilinear"
    return Change("resize-linear-to-nearest", node.name, f"linear resize x{txt} -> nearest ({why})", exact,
                  [node.name], [])


RECIPES = [
    Recipe("resize-sizes-to-scales", "Resize sizes computed from static shapes -> constant scales", ("Resize",),
           "always", "no new layer", _check_sizes, _apply_sizes,
           "PyTorch's F.interpolate(size=...) exports the output size as Shape/Gather/Concat math, which TensorRT "
           "imports as a shape-tensor input (a dynamic resize). With static shapes the same resize has constant "
           "scales out/in; the recipe checks that floor(in * scale) gives back every size."),
    Recipe("resize-nearest-two-step", "Nearest upsampling beyond x32 -> two exact steps", ("Resize",), "always",
           "one more resize layer", _check_two_step, _apply_two_step,
           "With asymmetric coordinates and floor rounding, nearest upsampling by an integer factor replicates "
           "pixels, and replications compose: x64 = x32 then x2."),
    Recipe("resize-linear-to-nearest", "Bilinear resize -> nearest", ("Resize",), "conditional",
           "no new layer", _check_to_nearest, _apply_to_nearest,
           "Exact when the input is 1x1 (any mode replicates a single value); otherwise it changes the output and "
           "is applied only with --allow-approx. Its proof: each output's mean |error| within 10% of the output's "
           "range (measured: 4-5% on noisy random feature maps, under 0.5% on smooth ones, for x2 to x16; the "
           "largest single error, up to about 60% of the range on noise, is shown).",
           exact_when=lambda node, ctx: (s := ctx.shape(node.inputs[0])) is not None and s[2:] == (1, 1),
           tolerance=0.1),
]
