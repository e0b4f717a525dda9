"""Names of the fix recipes rules may point to (their rewrites live in the recipe modules)."""
from __future__ import annotations

# name -> one-line description. A rule's `fix` must be one of these names.
RECIPES: dict[str, str] = {
    "gap-to-avgpool": "GlobalAveragePool/GlobalMaxPool -> AveragePool/MaxPool with window HxW, or a depthwise "
                      "convolution / cascade when HxW is over DLA's window limit",
    "avgpool-to-conv": "AveragePool with a window over 8 -> depthwise Convolution with constant 1/(k*k) weights",
    "avgpool-exclude-pad-to-mul": "AveragePool excluding padding -> inclusive AveragePool times a constant border "
                                  "correction",
    "maxpool-cascade": "MaxPool with a window over 8 -> a cascade of small max pools (windows compose)",
    "resize-sizes-to-scales": "Resize whose output size is computed from static shapes -> constant scales",
    "resize-nearest-two-step": "nearest upsampling beyond DLA's scale limit -> two exact nearest steps",
    "resize-linear-to-nearest": "bilinear Resize with a scale DLA rejects -> nearest (approximate)",
    "hardswish-decompose": "HardSwish -> x * Clip(x + 3, 0, 6) / 6 with layers DLA runs",
    "hardsigmoid-decompose": "HardSigmoid -> Clip(alpha * x + beta, 0, 1) with layers DLA runs",
    "reduce-to-pool-conv": "ReduceMean/ReduceSum over H and W -> AveragePool (x H*W for a sum); over C -> 1x1 Conv",
    "div-to-mul": "Div by a constant -> Mul by its reciprocal",
    "broadcast-expand": "ElementWise operand DLA cannot broadcast (N1HW map, 11HW constant) -> expanded to the full "
                        "NCHW shape (1x1 Conv of ones / full-size constant)",
    "clip-shift": "Clip with bounds DLA rejects (Hardtanh, one-sided clips) -> shifted, power-of-two scaled Clip(0, w) "
                  "or ReLU",
    "neg-to-mul": "Neg -> Mul by -1",
    "sub-to-add": "Sub -> Add of the second operand times -1 (a constant minuend becomes a Scale operand; DLA "
                  "releases without SUB)",
    "gemm-to-conv": "Flatten/Reshape + Gemm/MatMul with constant weights on a pooled 4D tensor -> 1x1 Convolution",
    "depth-to-space-deconv": "DepthToSpace -> ConvTranspose with 0/1 weights",
    "space-to-depth-conv": "SpaceToDepth -> Convolution with 0/1 weights",
    "shuffle-chain-to-conv": "Reshape -> Transpose -> Reshape that shuffles channels or moves them into pixels "
                             "(PixelShuffle/Unshuffle) -> a (de)convolution with 0/1 weights",
    "gather-to-conv": "Gather of channels with constant indices (RGB<->BGR, channel subsets) -> 1x1 Conv with one-hot "
                      "weights",
    "fold-constants": "constant folding, removal of Identity and dead nodes",
    "deconv-pad-to-slice": "padded ConvTranspose -> unpadded ConvTranspose followed by a cropping Slice",
    "pad-into-conv": "zero Pad before a Conv -> the Conv's own padding",
    "qdq-to-calibration": "Q/DQ (explicit quantization) model -> float model + TensorRT INT8 calibration cache and "
                          "per-layer precisions (NVIDIA DLA-SW qdq-translator); model-wide",
    "head-sink": "Concat of per-scale maps flattened to [N, C, H*W] (detection heads) -> the per-position ops after it "
                 "run per scale on the 4-D maps; only the final per-scale Reshape + Concat stay",
    "softmax-transpose-fold": "Transpose -> Softmax -> inverse Transpose -> one Softmax on the original axis",
}
