"""Rough FLOPs per TensorRT layer (multiply-add = 2), to weigh DLA coverage by work rather than by layer count.

Data-movement layers (shuffle, slice, concatenation, constant) count 0; unknown shapes count 0."""
from __future__ import annotations

import math

from .layers import Layer


def _numel(shape: tuple | None) -> int:
    if not shape or any(not isinstance(d, int) for d in shape):
        return 0
    return math.prod(shape)


def layer_flops(layer: Layer) -> int:
    out = _numel(layer.outputs[0].shape) if layer.outputs else 0
    a = layer.attrs
    kind = layer.kind
    if kind in ("CONVOLUTION", "DECONVOLUTION"):
        k = math.prod(a.get("kernel") or [1])
        cin = a.get("in_channels") or 0
        groups = a.get("groups") or 1
        if kind == "CONVOLUTION":
            return 2 * out * k * max(1, cin // groups)
        src = _numel(layer.inputs[0].shape) if layer.inputs else 0
        return 2 * src * k * max(1, (a.get("out_channels") or 0) // groups)
    if kind == "FULLY_CONNECTED":
        return 2 * out * (a.get("in_channels") or 0)
    if kind == "MATRIX_MULTIPLY":
        shape = layer.inputs[0].shape if layer.inputs else None
        k = shape[-1] if shape and isinstance(shape[-1], int) else 0
        return 2 * out * k
    if kind == "POOLING":
        return out * math.prod(a.get("window") or [1])
    if kind in ("REDUCE",):
        return _numel(layer.inputs[0].shape) if layer.inputs else 0
    if kind == "SOFTMAX":
        return 3 * out
    if kind in ("ACTIVATION", "ELEMENTWISE", "SCALE", "PARAMETRIC_RELU", "UNARY", "RESIZE", "LRN", "NORMALIZATION"):
        return out * (2 if kind in ("SCALE", "RESIZE") else 1) * (5 if kind in ("LRN", "NORMALIZATION") else 1)
    return 0
