"""Structural recipes: a flattened Gemm/MatMul as a convolution on the 4-D tensor, DepthToSpace/SpaceToDepth as
(de)convolutions with 0/1 weights, Transpose-Softmax-Transpose as one Softmax, and constant folding/cleanup."""
from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from .base import (MAX_NEW_WEIGHT_ELEMENTS, Change, Context, Recipe, assign, chain, constant_value, replace, str_attr,
                   weight_budget)

# ---------------------------------------------------------------------------------------------- gemm-to-conv


# Element-wise ops with one data input commute with a reshape: they can run before the Flatten instead of after.
_POINTWISE = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Softplus", "HardSigmoid", "HardSwish",
              "Clip", "Identity", "Dropout", "Abs", "Neg", "Exp", "Sqrt", "Mish"}


def _flatten_source(ctx: Context, a: gs.Tensor) -> tuple[gs.Tensor, list[gs.Node]] | None:
    """The 4-D tensor that a Flatten(axis=1) or a Reshape to [N, C*H*W] made `a` from, and the element-wise nodes
    between that flatten and `a` (each the only reader of its input)."""
    pointwise: list[gs.Node] = []
    while len(a.inputs) == 1 and a.inputs[0].op in _POINTWISE and len(a.inputs[0].inputs[0].outputs) == 1:
        node = a.inputs[0]
        if node.op == "Dropout" and len(node.outputs) > 1 and node.outputs[1].outputs:
            return None
        if any(i.name and not isinstance(i, gs.Constant) and constant_value(i) is None for i in node.inputs[1:]):
            return None
        pointwise.insert(0, node)
        a = node.inputs[0]
    if len(a.inputs) != 1:
        return None
    prod = a.inputs[0]
    src = prod.inputs[0] if prod.inputs else None
    shape = ctx.shape(src) if src is not None else None
    if shape is None or len(shape) != 4:
        return None
    if prod.op == "Flatten" and prod.attrs.get("axis", 1) == 1:
        return src, pointwise
    if prod.op == "Reshape":
        out = ctx.shape(a)
        if out is not None and out == (shape[0], shape[1] * shape[2] * shape[3]):
            return src, pointwise
    return None


def _gemm_parts(node: gs.Node, ctx: Context) -> tuple[tuple[gs.Tensor, list[gs.Node]], np.ndarray, np.ndarray | None] | str:
    a = node.attrs
    if node.op == "Gemm" and a.get("transA", 0):
        return "transA is not rewritten"
    w = constant_value(node.inputs[1])
    if w is None or w.ndim != 2:
        return "the weights are not a constant matrix"
    src = _flatten_source(ctx, node.inputs[0])
    if src is None:
        return "its input is not a Flatten/Reshape of a static 4-D tensor (through element-wise ops)"
    if node.op == "Gemm":
        w = (w if a.get("transB", 0) else w.T) * float(a.get("alpha", 1.0))   # -> [K, C*H*W]
        bias = constant_value(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2].name else None
        if len(node.inputs) > 2 and node.inputs[2].name and bias is None:
            return "the bias is not a constant"
        if bias is not None:
            if bias.size not in (1, w.shape[0]):
                return "the bias is not per output"
            bias = np.broadcast_to(bias.reshape(-1), (w.shape[0],)) * float(a.get("beta", 1.0))
    else:
        w = w.T
        bias = _bias_add(node, w.shape[0], ctx)
        bias = bias[1] if bias is not None else None
    return src, w, bias


def _bias_add(node: gs.Node, k: int, ctx: Context) -> tuple[gs.Node, np.ndarray] | None:
    """MatMul followed by an Add of a constant per-output bias (how Paddle and older exporters write a Linear):
    the Add and its bias, to fold into the convolution."""
    y = node.outputs[0]
    if len(y.outputs) != 1 or y in ctx.graph.outputs or y.outputs[0].op != "Add":
        return None
    add = y.outputs[0]
    other = [t for t in add.inputs if t is not y]
    b = constant_value(other[0]) if len(other) == 1 else None
    if b is None or b.size not in (1, k) or (b.ndim > 1 and b.shape[-1] != b.size):
        return None
    return add, np.broadcast_to(b.reshape(-1), (k,)).astype(np.float64)


def _check_gemm(node: gs.Node, ctx: Context) -> str | None:
    parts = _gemm_parts(node, ctx)
    if isinstance(parts, str):
        return parts
    (src, _), w, _ = parts
    n, c, h, wd = ctx.shape(src)
    if w.shape[1] != c * h * wd:
        return f"weights of {w.shape[1]} inputs do not match {c}x{h}x{wd}"
    return None


def _next_in_chain(node: gs.Node, ctx: Context) -> gs.Node | None:
    """The Gemm/MatMul with constant weights that reads this one's output through single-reader element-wise ops
    (an MLP head: Gemm -> HardSwish -> Dropout -> Gemm), else None."""
    k = _out_features(node)
    add = _bias_add(node, k, ctx) if node.op == "MatMul" and k is not None else None
    y = (add[0] if add is not None else node).outputs[0]
    for _ in range(16):
        if len(y.outputs) != 1 or y in ctx.graph.outputs:
            return None
        reader = y.outputs[0]
        if reader.op in ("Gemm", "MatMul") and reader.inputs[0] is y:
            w = constant_value(reader.inputs[1])
            return reader if w is not None and w.ndim == 2 and not reader.attrs.get("transA", 0) else None
        if reader.op not in _POINTWISE or reader.inputs[0] is not y or any(
                constant_value(i) is None for i in reader.inputs[1:] if i.name):
            return None
        if reader.op == "Dropout" and len(reader.outputs) > 1 and reader.outputs[1].outputs:
            return None
        y = reader.outputs[0]
    return None


def _out_features(node: gs.Node) -> int | None:
    w = constant_value(node.inputs[1]) if len(node.inputs) > 1 else None
    if w is None or w.ndim != 2:
        return None
    return w.shape[0] if node.op == "Gemm" and node.attrs.get("transB", 0) else w.shape[1]


def _apply_gemm(node: gs.Node, ctx: Context) -> Change:
    """The Gemm, then every Gemm/MatMul chained after it through element-wise ops (each now reads a Flatten of a
    [N, K, 1, 1] convolution output, so it is a 1x1 convolution too): one change, the head 4-D up to its end."""
    chain_ = [node]
    while (nxt := _next_in_chain(chain_[-1], ctx)) is not None and len(chain_) < 16:
        chain_.append(nxt)
    change = _apply_one_gemm(node, ctx)
    for later in chain_[1:]:
        if _check_gemm(later, ctx) is not None:
            break
        more = _apply_one_gemm(later, ctx)
        tail = ", then Flatten"
        change.detail = change.detail.removesuffix(tail) + "; then " + more.detail.replace("Flatten + ", "", 1)
        change.added_nodes = [n for n in change.added_nodes if not n.endswith("/Flatten")] + more.added_nodes
        change.removed_nodes += more.removed_nodes
    return change


def _apply_one_gemm(node: gs.Node, ctx: Context) -> Change:
    (src, pointwise), w, bias = _gemm_parts(node, ctx)
    n, c, h, wd = ctx.shape(src)
    moved = _move_before_flatten(pointwise, src)
    src = pointwise[-1].outputs[0] if pointwise else src
    k = w.shape[0]
    name = node.name
    weight = ctx.weight(f"{name}/conv_weight", w.reshape(k, c, h, wd))
    ins = [src, weight] + ([ctx.weight(f"{name}/conv_bias", bias)] if bias is not None else [])
    y = node.outputs[0]
    add = _bias_add(node, k, ctx) if node.op == "MatMul" else None
    removed = [name]
    if add is not None:   # the bias Add goes into the convolution; the Flatten writes the Add's output
        y = add[0].outputs[0]
        removed.append(add[0].name)
        ctx.remove(add[0])
    ctx.remove(node)
    mid = ctx.var(f"{name}/conv_out", like=y, shape=(n, k, 1, 1))
    conv = ctx.node("Conv", f"{name}/Conv", ins, [mid], kernel_shape=[h, wd])
    flat = ctx.node("Flatten", f"{name}/Flatten", [mid], [y], axis=1)
    op = "Gemm" if node.op == "Gemm" else "MatMul + Add" if add is not None else "MatMul"
    return Change("gemm-to-conv", name, f"Flatten + {moved}{op} on {c}x{h}x{wd} -> Conv {h}x{wd} ({k} outputs) on "
                  f"the 4-D tensor, then Flatten", True, [conv.name, flat.name], removed)


def _move_before_flatten(pointwise: list[gs.Node], src: gs.Tensor) -> str:
    """Let the element-wise chain read the 4-D tensor (the Flatten it read from is left to cleanup). Returns the
    ops moved, for the change's description."""
    if not pointwise:
        return ""
    first = pointwise[0]
    assign(first.inputs, [src] + list(first.inputs[1:]))
    for node in pointwise:
        node.outputs[0].shape = None   # now 4-D: let the exporter infer it
    return " ".join(n.op for n in pointwise) + " + "


# ---------------------------------------------------------------------------------------------- depth <-> space


def _block(node: gs.Node, ctx: Context) -> tuple[int, tuple] | str:
    shape = ctx.shape(node.inputs[0])
    if shape is None or len(shape) != 4:
        return "needs a static 4-D NCHW input"
    return int(node.attrs.get("blocksize", 0)), shape


def _check_block(node: gs.Node, ctx: Context) -> str | None:
    got = _block(node, ctx)
    if isinstance(got, str):
        return got
    b, shape = got
    if b < 1 or b > 8:
        return f"blocksize {b} is outside 1..8 (the (de)convolution stride limit)"
    return weight_budget(_block_weights(node.op == "DepthToSpace", shape[1], b), "the one-hot weight")


def _block_weights(to_space: bool, c_in: int, b: int) -> int:
    """Elements of _block_step's one-hot weight: C_in x C_in/b^2 x b x b (depth to space), C_in*b^2 x C_in x b x b."""
    return c_in * c_in if to_space else c_in * c_in * b ** 4


def _one_hot(c: int, b: int, crd: bool) -> np.ndarray:
    """W[(i*b + j)*C + c, c, i, j] = 1 (DCR order; CRD: channel c*b*b + i*b + j)."""
    w = np.zeros((c * b * b, c, b, b), dtype=np.float32)
    for ch in range(c):
        for i in range(b):
            for j in range(b):
                src = ch * b * b + i * b + j if crd else (i * b + j) * c + ch
                w[src, ch, i, j] = 1.0
    return w


def _block_step(ctx: Context, base: str, to_space: bool, c_in: int, b: int,
                crd: bool) -> tuple[str, list[gs.Tensor], dict]:
    """The one-hot (de)convolution with kernel = stride = b that moves depth to space (a ConvTranspose, weights
    [Cin, Cout, b, b]) or space to depth (a Conv, weights [Cout, Cin, b, b]); `c_in` is the input's channels."""
    if to_space:
        op, name, w = "ConvTranspose", "deconv_weight", _one_hot(c_in // (b * b), b, crd)
    else:
        op, name, w = "Conv", "conv_weight", _one_hot(c_in, b, crd)
    return op, [ctx.weight(f"{base}/{name}", w)], {"kernel_shape": [b, b], "strides": [b, b]}


def _apply_d2s(node: gs.Node, ctx: Context) -> Change:
    b, shape = _block(node, ctx)
    crd = str(node.attrs.get("mode", "DCR")).upper() in ("CRD", "B'CRD'")
    name = node.name
    step = _block_step(ctx, name, True, shape[1], b, crd)
    names = replace(ctx, node, lambda x, y: chain(ctx, x, y, name, [step]))
    return Change("depth-to-space-deconv", name, f"DepthToSpace {b} ({'CRD' if crd else 'DCR'}) -> ConvTranspose "
                  f"{b}x{b} stride {b} with 0/1 weights", True, names, [name], int(step[1][0].values.size))


def _apply_s2d(node: gs.Node, ctx: Context) -> Change:
    b, shape = _block(node, ctx)
    name = node.name
    step = _block_step(ctx, name, False, shape[1], b, False)
    names = replace(ctx, node, lambda x, y: chain(ctx, x, y, name, [step]))
    return Change("space-to-depth-conv", name, f"SpaceToDepth {b} -> Conv {b}x{b} stride {b} with 0/1 weights", True,
                  names, [name], int(step[1][0].values.size))


# ---------------------------------------------------------------------------------------------- softmax


def _softmax_pattern(node: gs.Node, ctx: Context) -> tuple[gs.Node, gs.Node, gs.Node] | str:
    """(Transpose, Softmax, Transpose) around `node`, the two permutations undoing each other."""
    if node.op == "Softmax":
        sm = node
    elif node.op == "Transpose":
        nxt = node.outputs[0].outputs
        prv = node.inputs[0].inputs
        sm = nxt[0] if len(nxt) == 1 and nxt[0].op == "Softmax" else (
            prv[0] if len(prv) == 1 and prv[0].op == "Softmax" else None)
        if sm is None:
            return "not next to a Softmax"
    else:
        return "not a Transpose or Softmax"
    if (ctx.graph.opset or 13) < 13:
        return "opset < 13 Softmax flattens to 2-D; only the single-axis form (opset >= 13) is folded"
    before = sm.inputs[0].inputs
    after = sm.outputs[0].outputs
    if len(before) != 1 or before[0].op != "Transpose" or len(after) != 1 or after[0].op != "Transpose":
        return "no Transpose on both sides of the Softmax"
    t1, t2 = before[0], after[0]
    if len(t1.outputs[0].outputs) != 1 or sm.outputs[0] in ctx.graph.outputs or t1.outputs[0] in ctx.graph.outputs:
        return "an intermediate tensor has other readers"
    p1, p2 = list(t1.attrs.get("perm", [])), list(t2.attrs.get("perm", []))
    if not p1 or len(p1) != len(p2) or [p1[i] for i in p2] != list(range(len(p1))):
        return "the two permutations do not undo each other"
    return t1, sm, t2


def _check_softmax(node: gs.Node, ctx: Context) -> str | None:
    got = _softmax_pattern(node, ctx)
    return got if isinstance(got, str) else None


def _apply_softmax(node: gs.Node, ctx: Context) -> Change:
    t1, sm, t2 = _softmax_pattern(node, ctx)
    rank = len(t1.attrs["perm"])
    axis = int(sm.attrs.get("axis", -1)) % rank
    new_axis = t1.attrs["perm"][axis]
    x, y = t1.inputs[0], t2.outputs[0]
    for n in (t1, sm, t2):
        ctx.remove(n)
    new = ctx.node("Softmax", sm.name, [x], [y], axis=new_axis)
    return Change("softmax-transpose-fold", sm.name, f"Transpose -> Softmax(axis {axis}) -> Transpose -> "
                  f"Softmax(axis {new_axis}) on the original layout", True, [new.name], [t1.name, sm.name, t2.name])


# ---------------------------------------------------------------------------------------------- cleanup

_BYPASS = ("Identity", "Dropout")
# ops whose output can be far larger than their inputs
_MAKES_DATA = frozenset({"ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Upsample", "Pad", "OneHot"})


def _check_fold(node: gs.Node, ctx: Context) -> str | None:
    if node.op in _BYPASS or (node.op == "Concat" and len(node.inputs) == 1):
        if node.outputs[0] in ctx.graph.outputs:
            return "it produces a graph output"
        if node.op == "Dropout" and len(node.outputs) > 1 and node.outputs[1].outputs:
            return "the Dropout mask is used"
        return None
    if all(isinstance(i, gs.Constant) or constant_value(i) is not None for i in node.inputs if i.name):
        return None
    if any(_computed_from_constants(i) for i in node.inputs[1:] if i.name):
        return None
    return "no constant input to fold"


def _computed_from_constants(t: gs.Tensor, depth: int = 0) -> bool:
    if isinstance(t, gs.Constant):
        return True
    if depth > 16 or len(t.inputs) != 1:
        return False
    return all(_computed_from_constants(i, depth + 1) for i in t.inputs[0].inputs if i.name)


def _apply_fold(node: gs.Node, ctx: Context) -> Change:
    name = node.name
    if node.op in _BYPASS or node.op == "Concat":
        x, y = node.inputs[0], node.outputs[0]
        for consumer in list(y.outputs):
            assign(consumer.inputs, [x if t is y else t for t in consumer.inputs])
        ctx.remove(node)
        return Change("fold-constants", name, f"removed {node.op} (its output is its input)", True, [], [name])
    before = len(ctx.graph.nodes)
    # a folded tensor is a new weight: none over the recipe budget, and none from a data-making op whose size is
    # unknown (a light model's ConstantOfShape weights would be materialised: VGG's fc6 alone is 411 MB)
    limit = MAX_NEW_WEIGHT_ELEMENTS

    def too_big(n: gs.Node) -> bool:
        for t in n.outputs:
            shape = ctx.shape(t)
            if shape is None:
                if n.op in _MAKES_DATA:
                    return True
                continue
            if int(np.prod(shape, dtype=np.float64)) > limit:
                return True
        return False
    ctx.graph.fold_constants(error_ok=True, size_threshold=4 * limit, should_exclude_node=too_big).cleanup()
    return Change("fold-constants", name, f"folded constant subgraphs ({before - len(ctx.graph.nodes)} nodes "
                  f"fewer) so {node.op} reads constants", True, [], [name])


RECIPES = [
    Recipe("gemm-to-conv", "Flatten + Gemm/MatMul with constant weights -> Convolution on the 4-D tensor",
           ("Gemm", "MatMul"), "always", "a Conv HxW plus a final Flatten; same weights",
           _check_gemm, _apply_gemm,
           "A fully connected layer on a flattened C x H x W tensor is a convolution with an H x W kernel: the "
           "network stays 4-D (DLA) up to the final Flatten, and no 2-D dimension of C*H*W (over 8192 for VGG) "
           "appears.", reach=3),
    Recipe("depth-to-space-deconv", "DepthToSpace -> ConvTranspose with 0/1 weights", ("DepthToSpace",), "always",
           "one layer; adds (C*b*b)*C*b*b weights", _check_block, _apply_d2s,
           "As NVIDIA's DLA-SW op_reconstruction does: kernel = stride = blocksize, one-hot weights; DCR and CRD."),
    Recipe("space-to-depth-conv", "SpaceToDepth -> Conv with 0/1 weights", ("SpaceToDepth",), "always",
           "one layer; adds (C*b*b)*C*b*b weights", _check_block, _apply_s2d,
           "As NVIDIA's DLA-SW op_reconstruction does: kernel = stride = blocksize, one-hot weights."),
    Recipe("softmax-transpose-fold", "Transpose -> Softmax -> Transpose back -> one Softmax on the original axis",
           ("Transpose", "Softmax"), "always", "two layers fewer", _check_softmax, _apply_softmax,
           "A softmax over the last axis of an NHWC view, between a transpose and its inverse, is a softmax over the "
           "channel axis of the NCHW tensor: the transposes (which fall back on Xavier) disappear.", reach=2),
    Recipe("fold-constants", "Constant folding, removal of Identity and dead nodes",
           ("Identity", "Dropout", "Cast", "Concat", "Conv", "ConvTranspose", "Reshape", "PRelu"), "always",
           "fewer layers", _check_fold, _apply_fold,
           "Identity/Dropout (and a one-input Concat) pass their input through; constant subgraphs (weights computed "
           "by Cast, Transpose, DequantizeLinear...) are evaluated once with onnx-graphsurgeon.", reach=3),
]


# ---------------------------------------------------------------------------------------------- padding


def _check_deconv_pads(node: gs.Node, ctx: Context) -> str | None:
    a = node.attrs
    pads = list(a.get("pads", []))
    if len(pads) != 4 or not any(pads):
        return "needs a 2-D ConvTranspose with padding"
    if any(a.get("output_padding", [0, 0])) or a.get("output_shape") or str_attr(node, "auto_pad", "NOTSET") != "NOTSET":
        return "output_padding, output_shape or auto_pad are not rewritten"
    shape = ctx.shape(node.outputs[0])
    if shape is None or len(shape) != 4:
        return "needs a static 4-D output shape"
    return None


def _apply_deconv_pads(node: gs.Node, ctx: Context) -> Change:
    # A padded transposed convolution is the unpadded one with its border cropped: pads [t, l, b, r] remove t rows
    # at the top, b at the bottom, l and r columns. The crop is a Slice (stride 1, constant bounds) DLA runs.
    t, l, b, r = node.attrs["pads"]
    n, c, h, w = ctx.shape(node.outputs[0])
    y = node.outputs[0]
    full = ctx.var(f"{node.name}/unpadded", like=y, shape=(n, c, h + t + b, w + l + r))
    node.attrs["pads"] = [0, 0, 0, 0]
    assign(node.outputs, [full])
    starts = ctx.const(f"{node.name}/crop_starts", np.array([t, l], dtype=np.int64))
    ends = ctx.const(f"{node.name}/crop_ends", np.array([t + h, l + w], dtype=np.int64))
    axes = ctx.const(f"{node.name}/crop_axes", np.array([2, 3], dtype=np.int64))
    crop = ctx.node("Slice", f"{node.name}/crop", [full, starts, ends, axes], [y])
    return Change("deconv-pad-to-slice", node.name, f"ConvTranspose with pads {[t, l, b, r]} -> unpadded "
                  f"ConvTranspose, then a Slice cropping the border", True, [node.name, crop.name], [])


def _pad_parts(node: gs.Node, ctx: Context) -> tuple[list[int], gs.Node] | str:
    """The (constant, zero) pads of a Pad node and the one Conv that reads it."""
    if str_attr(node, "mode", "constant") != "constant":
        return "only constant (zero) padding folds into a convolution"
    pads = node.attrs.get("pads")
    if pads is None and len(node.inputs) > 1:
        v = constant_value(node.inputs[1])
        pads = None if v is None else [int(x) for x in v.reshape(-1)]
    if pads is None or len(pads) != 8:
        return "needs constant pads of a 4-D tensor"
    if len(node.inputs) > 2 and node.inputs[2].name:
        v = constant_value(node.inputs[2])
        if v is None or np.any(v != 0):
            return "the pad value is not 0"
    if len(node.inputs) > 3 and node.inputs[3].name:
        return "an axes input is not rewritten"
    if any(pads[i] for i in (0, 1, 4, 5)) or any(p < 0 for p in pads):
        return "it pads N or C, or crops"
    users = node.outputs[0].outputs
    if len(users) != 1 or users[0].op != "Conv" or node.outputs[0] in ctx.graph.outputs:
        return "its output is not read by exactly one Conv"
    conv = users[0]
    w = constant_value(conv.inputs[1]) if len(conv.inputs) > 1 else None
    kernel = conv.attrs.get("kernel_shape") or (list(w.shape[2:]) if w is not None else [])
    if str_attr(conv, "auto_pad", "NOTSET") != "NOTSET" or len(kernel) != 2:
        return "the Conv uses auto_pad or is not 2-D"
    return [pads[2], pads[3], pads[6], pads[7]], conv


def _check_pad(node: gs.Node, ctx: Context) -> str | None:
    got = _pad_parts(node, ctx)
    return got if isinstance(got, str) else None


def _apply_pad(node: gs.Node, ctx: Context) -> Change:
    (t, l, b, r), conv = _pad_parts(node, ctx)
    old = list(conv.attrs.get("pads", [0, 0, 0, 0]))
    conv.attrs["pads"] = [old[0] + t, old[1] + l, old[2] + b, old[3] + r]
    x = node.inputs[0]
    assign(conv.inputs, [x if i is node.outputs[0] else i for i in conv.inputs])
    name = node.name
    ctx.remove(node)
    return Change("pad-into-conv", name, f"zero Pad {[t, l, b, r]} folded into {conv.name}'s padding "
                  f"(now {conv.attrs['pads']})", True, [conv.name], [name])


RECIPES += [
    Recipe("deconv-pad-to-slice", "Padded ConvTranspose -> unpadded ConvTranspose + crop", ("ConvTranspose",),
           "always", "one Slice layer more", _check_deconv_pads, _apply_deconv_pads,
           "DLA runs deconvolutions only without padding; the padding of a transposed convolution only removes "
           "border rows and columns of its output, which a Slice does."),
    Recipe("pad-into-conv", "Zero Pad before a Conv -> the Conv's own padding", ("Pad",), "always",
           "one layer fewer", _check_pad, _apply_pad,
           "Exporters (TensorFlow SAME padding, explicit nn.ZeroPad2d) write a Pad node that TensorRT turns into a "
           "fill Slice (GPU before TensorRT 10.7); zero padding folds into the convolution's pads exactly."),
]


# ---------------------------------------------------------------------------------------------- channel shuffle

# Verifying the permutation evaluates the chain on an index tensor of the activation's size: bound it.
_MAX_VERIFY_ELEMENTS = 1 << 24


def _shuffle_chain(node: gs.Node) -> tuple[gs.Node, gs.Node, gs.Node] | str:
    """(Reshape, Transpose, Reshape) containing `node`, each intermediate read only by the next."""
    def only_reader(t: gs.Tensor, op: str) -> gs.Node | None:
        return t.outputs[0] if len(t.outputs) == 1 and t.outputs[0].op == op else None

    def producer(t: gs.Tensor, op: str) -> gs.Node | None:
        return t.inputs[0] if len(t.inputs) == 1 and t.inputs[0].op == op and len(t.outputs) == 1 else None

    if node.op == "Transpose":
        first, mid = producer(node.inputs[0], "Reshape"), node
    elif node.op == "Reshape" and only_reader(node.outputs[0], "Transpose") is not None:
        first, mid = node, node.outputs[0].outputs[0]
    elif node.op == "Reshape" and producer(node.inputs[0], "Transpose") is not None:
        mid = node.inputs[0].inputs[0]
        first = producer(mid.inputs[0], "Reshape")
    else:
        return "not part of a Reshape -> Transpose -> Reshape chain"
    last = only_reader(mid.outputs[0], "Reshape") if first is not None else None
    if first is None or last is None:
        return "not part of a Reshape -> Transpose -> Reshape chain"
    return first, mid, last


# What a chain computes: ("channel", p) with out[:, c] = in[:, p[c]]; ("d2s", b, crd) a DepthToSpace;
# ("s2d", b, crd) a SpaceToDepth (crd: PyTorch's PixelUnshuffle channel order).
Layout = tuple


def _d2s(x: np.ndarray, b: int, crd: bool) -> np.ndarray:
    n, c, h, w = x.shape
    if crd:
        return x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, -1, h * b, w * b)
    return x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2).reshape(n, -1, h * b, w * b)


def _s2d(x: np.ndarray, b: int, crd: bool) -> np.ndarray:
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b)
    y = y.transpose(0, 1, 3, 5, 2, 4) if crd else y.transpose(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


def _chain_layout(node: gs.Node, ctx: Context) -> tuple[tuple[gs.Node, gs.Node, gs.Node], Layout] | str:
    """The chain around `node` and what it computes, or why it is neither a channel permutation nor a
    depth/space rearrangement. Memoized per chain (check and apply, and each of its three nodes, ask)."""
    chain_ = _shuffle_chain(node)
    if isinstance(chain_, str):
        return chain_
    key = ("shuffle-chain", *map(id, chain_))
    if key not in ctx.memo:   # the chain is kept in the value: its ids cannot be reused while memoized
        ctx.memo[key] = (chain_, _layout_of(chain_, ctx))
    got = ctx.memo[key][1]
    return got if isinstance(got, str) else (chain_, got)


def _layout_of(chain_: tuple[gs.Node, gs.Node, gs.Node], ctx: Context) -> Layout | str:
    first, mid, last = chain_
    shape, mid_shape, out_shape = ctx.shape(first.inputs[0]), ctx.shape(mid.inputs[0]), ctx.shape(last.outputs[0])
    if shape is None or len(shape) != 4 or out_shape is None or len(out_shape) != 4 or mid_shape is None:
        return "needs static shapes, 4-D NCHW in and out"
    if int(np.prod(shape)) > _MAX_VERIFY_ELEMENTS:
        return f"the tensor ({'x'.join(map(str, shape))}) is too large to verify what the chain computes"
    # Transpose without perm reverses the axes
    perm = mid.attrs["perm"] if "perm" in mid.attrs else list(range(len(mid_shape)))[::-1]
    if not isinstance(perm, (list, tuple)) or not all(isinstance(p, (int, np.integer)) for p in perm):
        return "the Transpose's perm is not a list of axes"   # a malformed attribute (a float, a string)
    perm = [int(p) for p in perm]
    size = int(np.prod(shape))
    if sorted(perm) != list(range(len(mid_shape))) or int(np.prod(mid_shape)) != size or \
            int(np.prod(out_shape)) != size:
        return "the chain's shapes and permutation do not fit together"
    # Evaluate the chain on the element indices and compare with the layouts a (de)convolution can make.
    idx = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    got = idx.reshape(mid_shape).transpose(perm).reshape(out_shape)
    n, c, h, w = shape
    if out_shape == shape:
        p = (got[0, :, 0, 0] // (h * w)) % c
        if sorted(p.tolist()) == list(range(c)) and np.array_equal(got, idx[:, p, :, :]):
            return ("channel", p)
    elif out_shape[2] > h and out_shape[2] % h == 0 and out_shape[2] // h == out_shape[3] // w:
        b = out_shape[2] // h
        for crd in (True, False):
            if c % (b * b) == 0 and np.array_equal(got, _d2s(idx, b, crd)):
                return ("d2s", b, crd)
    elif out_shape[2] < h and h % out_shape[2] == 0 and h // out_shape[2] == w // max(out_shape[3], 1):
        b = h // out_shape[2]
        for crd in (True, False):
            if w % b == 0 and np.array_equal(got, _s2d(idx, b, crd)):
                return ("s2d", b, crd)
    return "the chain is neither a channel permutation nor a depth-to-space / space-to-depth rearrangement"


def _check_shuffle_chain(node: gs.Node, ctx: Context) -> str | None:
    got = _chain_layout(node, ctx)
    if isinstance(got, str):
        return got
    layout = got[1]
    if layout[0] != "channel" and layout[1] > 8:
        return f"block {layout[1]} is over 8 (the (de)convolution stride limit)"
    c = ctx.shape(got[0][0].inputs[0])[1]
    n = c * c if layout[0] == "channel" else _block_weights(layout[0] == "d2s", c, layout[1])
    return weight_budget(n, "the 0/1 weight")


def _apply_shuffle_chain(node: gs.Node, ctx: Context) -> Change:
    (first, mid, last), layout = _chain_layout(node, ctx)
    x, y = first.inputs[0], last.outputs[0]
    c = ctx.shape(x)[1]
    names = [first.name, mid.name, last.name]
    for n in (first, mid, last):
        ctx.remove(n)
    base = mid.name
    if layout[0] == "channel":
        w = np.zeros((c, c, 1, 1), dtype=np.float32)
        w[np.arange(c), layout[1], 0, 0] = 1.0
        op, weights, attrs = "Conv", [ctx.weight(f"{base}/conv_weight", w)], {"kernel_shape": [1, 1]}
        what = f"permuting {c} channels -> Conv 1x1 with a 0/1 matrix"
    else:
        kind, b, crd = layout
        op, weights, attrs = _block_step(ctx, base, kind == "d2s", c, b, crd)
        what = (f"as {'DepthToSpace' if kind == 'd2s' else 'SpaceToDepth'} {b} ({'CRD' if crd else 'DCR'}) -> {op} "
                f"{b}x{b} stride {b} with 0/1 weights")
    new = ctx.node(op, f"{base}/{op}", [x, *weights], [y], **attrs)
    return Change("shuffle-chain-to-conv", base, f"Reshape -> Transpose -> Reshape {what}", True, [new.name], names,
                  int(weights[0].values.size))


RECIPES += [
    Recipe("shuffle-chain-to-conv", "Reshape -> Transpose -> Reshape data movement -> (de)convolution with 0/1 "
           "weights", ("Reshape", "Transpose"), "always", "one layer instead of two or three; adds 0/1 weights",
           _check_shuffle_chain, _apply_shuffle_chain,
           "Channel shuffles (ShuffleNet) and PixelShuffle/PixelUnshuffle (super-resolution, YOLO stems) are exported "
           "as a 5-D or 6-D Reshape -> Transpose -> Reshape, which DLA cannot run. What the chain computes is found "
           "by evaluating it on element indices: a permutation of channels becomes a 1x1 convolution with a 0/1 "
           "matrix; a depth-to-space (DCR or CRD) a ConvTranspose, a space-to-depth a Conv, with kernel = stride = "
           "block and one-hot weights (as depth-to-space-deconv / space-to-depth-conv). Each output is one input "
           "times 1: exact.", reach=2),
]


# ---------------------------------------------------------------------------------------------- gather


def _gather_indices(node: gs.Node, ctx: Context) -> np.ndarray | str:
    shape = ctx.shape(node.inputs[0])
    if shape is None or len(shape) != 4:
        return "needs a static 4-D NCHW input"
    if int(node.attrs.get("axis", 0)) % 4 != 1:
        return "only a gather of channels (axis 1)"
    idx = constant_value(node.inputs[1])
    if idx is None or idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        return "the indices are not a constant 1-D list (a scalar index drops the axis)"
    c = shape[1]
    if np.any(idx < -c) or np.any(idx >= c):
        return "an index is out of range"
    return idx % c


def _check_gather(node: gs.Node, ctx: Context) -> str | None:
    got = _gather_indices(node, ctx)
    if isinstance(got, str):
        return got
    return weight_budget(len(got) * ctx.shape(node.inputs[0])[1], "the one-hot weight")


def _apply_gather(node: gs.Node, ctx: Context) -> Change:
    idx = _gather_indices(node, ctx)
    c = ctx.shape(node.inputs[0])[1]
    w = np.zeros((len(idx), c, 1, 1))
    w[np.arange(len(idx)), idx, 0, 0] = 1.0
    weight = ctx.weight(f"{node.name}/select_weight", w)
    name = node.name
    node.inputs.pop()   # the indices go with the Gather
    names = replace(ctx, node, lambda x, y: chain(ctx, x, y, name, [("Conv", [weight], {"kernel_shape": [1, 1]})]))
    shown = ", ".join(map(str, idx[:8].tolist())) + (", ..." if len(idx) > 8 else "")
    return Change("gather-to-conv", name, f"Gather of channels [{shown}] -> Conv 1x1 with one-hot weights", True,
                  names, [name], int(w.size))


RECIPES += [
    Recipe("gather-to-conv", "Gather of channels with constant indices -> 1x1 Conv with one-hot weights", ("Gather",),
           "always", "one layer; adds len(indices)*C weights", _check_gather, _apply_gather,
           "Picking or reordering channels (an RGB<->BGR swap at the input, a channel subset) is a Gather, which "
           "never runs on DLA; a 1x1 convolution whose weights are one-hot rows computes it exactly, as NVIDIA's "
           "DLA-SW reconstructs Gather with constant indices."),
]
