"""TensorRT layers as dlarules sees them, and the catalog of layer kinds and their attributes.

The catalog is the vocabulary rules may use: a rule that names a layer kind or an attribute missing here is a
validation error. Attribute values are in TensorRT's terms (a pooling `window`, an activation `type`), filled by
`lowering` from the ONNX node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import Tensor

# type codes: int, float, bool, str, ints (list of int), floats, enum:<A|B|C>
_SPATIAL = {"nb_spatial_dims": "int"}

KINDS: dict[str, dict[str, str]] = {
    "CONVOLUTION": {
        "kernel": "ints", "stride": "ints", "padding_pre": "ints", "padding_post": "ints", "dilation": "ints",
        "groups": "int", "out_channels": "int", "in_channels": "int", "weights_const": "bool",
        "cbuf_banks_fp16": "int", "cbuf_banks_int8": "int", **_SPATIAL,
    },
    "FULLY_CONNECTED": {"out_channels": "int", "in_channels": "int", "weights_const": "bool"},
    "DECONVOLUTION": {
        "kernel": "ints", "stride": "ints", "padding_pre": "ints", "padding_post": "ints", "dilation": "ints",
        "groups": "int", "out_channels": "int", "in_channels": "int", "weights_const": "bool",
        "kernel_is_square": "bool", **_SPATIAL,
    },
    "POOLING": {
        "type": "enum:MAX|AVERAGE|MAX_AVERAGE_BLEND", "window": "ints", "stride": "ints",
        "padding_pre": "ints", "padding_post": "ints", "exclude_padding": "bool", "global": "bool", **_SPATIAL,
    },
    "ACTIVATION": {
        "type": "enum:RELU|SIGMOID|TANH|LEAKY_RELU|CLIP|ELU|SELU|SOFTSIGN|SOFTPLUS|HARD_SIGMOID|"
                "THRESHOLDED_RELU|SCALED_TANH|GELU_ERF|GELU_TANH",
        "alpha": "float", "beta": "float",
    },
    "PARAMETRIC_RELU": {"slope_const": "bool", "slope_rank": "int"},
    "ELEMENTWISE": {
        "operation": "enum:SUM|SUB|PROD|DIV|POW|MAX|MIN|EQUAL|GREATER|LESS|AND|OR|XOR|FLOOR_DIV",
        "nb_const_inputs": "int", "broadcast": "enum:equal|nc11|n111|other",
        "const_uniform": "bool",
    },
    "SCALE": {"mode": "enum:UNIFORM|CHANNEL|ELEMENTWISE", "has_power": "bool"},
    "LRN": {"window": "int", "region": "enum:ACROSS_CHANNELS|WITHIN_CHANNEL"},
    "CONCATENATION": {"axis": "int", "axis_from_end": "int", "nb_inputs": "int", "same_spatial": "bool"},
    "RESIZE": {
        "mode": "enum:NEAREST|LINEAR|CUBIC", "coord": "enum:ASYMMETRIC|HALF_PIXEL|ALIGN_CORNERS",
        "rounding": "enum:FLOOR|CEIL|HALF_DOWN|HALF_UP", "selector": "enum:FORMULA|UPPER",
        "size_source": "enum:scales|sizes-tensor|output-dims|runtime-scales",
        "scales": "floats", "spatial_scales": "floats", "nc_unchanged": "bool",
    },
    "UNARY": {
        "operation": "enum:ABS|NEG|SQRT|EXP|LOG|RECIP|CEIL|FLOOR|ROUND|ERF|SIGN|NOT|SIN|COS|TAN|ASIN|ACOS|ATAN|"
              "SINH|COSH|ASINH|ACOSH|ATANH|ISINF|ISNAN",
    },
    "SLICE": {
        "mode": "enum:DEFAULT|STRICT_BOUNDS|WRAP|CLAMP|FILL|REFLECT", "stride": "ints", "params_const": "bool",
        "sliced_axes": "ints", "slices_batch": "bool", "fill_zero": "bool",
    },
    "SOFTMAX": {"axis": "int", "axis_dim": "int", "others_all_one": "bool"},
    "SHUFFLE": {
        "reshape": "bool", "transpose": "bool", "perm": "ints", "reshape_const": "bool", "touches_batch": "bool",
        "fused": "bool", "max_rank": "int",
    },
    "REDUCE": {"operation": "enum:AVG|MAX|MIN|SUM|PROD", "axes": "ints", "keep_dims": "bool", "reduces_batch": "bool"},
    "MATRIX_MULTIPLY": {"b_const": "bool", "a_rank": "int", "b_rank": "int"},
    "CONSTANT": {},
    # cast_of: the comparison whose output this casts (the documented comparison -> cast pattern), else "other"
    "IDENTITY": {"cast_of": "enum:EQUAL|GREATER|LESS|GREATER_OR_EQUAL|LESS_OR_EQUAL|other"},
    "CAST": {"cast_of": "enum:EQUAL|GREATER|LESS|GREATER_OR_EQUAL|LESS_OR_EQUAL|other"},
    "GATHER": {},
    "SCATTER": {},
    "SELECT": {},
    "TOPK": {},
    "NORMALIZATION": {},
    "PLUGIN": {"plugin": "str"},
    "SHAPE": {},
    "FILL": {},
    "PADDING": {},
    "EINSUM": {},
    "NON_ZERO": {},
    "ONE_HOT": {},
    "GRID_SAMPLE": {},
    "LOOP": {},
    "CONDITION": {},
    "NMS": {},
    "QUANTIZE": {},
    "DEQUANTIZE": {},
    "SQUEEZE": {},
    "UNSQUEEZE": {},
    "RAGGED_SOFTMAX": {},
    "REVERSE_SEQUENCE": {},
    "CUMULATIVE": {},
    # An ONNX op dlarules has no mapping for: assumed to run on the GPU, never silently passed.
    "UNKNOWN": {"reason": "str"},
}

# Fields every message template and condition may use, whatever the layer kind.
CONTEXT_FIELDS: dict[str, str] = {
    "op": "str", "node": "str", "name": "str", "kind": "str", "in_shape": "str", "out_shape": "str",
    "in_rank": "int", "out_rank": "int", "in_dtype": "str", "nb_inputs": "int", "batch": "int",
    "hardware": "str", "trt": "str", "precision": "str", "platform": "str", "max_dim": "int",
    "shape_origin": "str",  # for a non-static input: the node (or input) that makes its shape dynamic
}

TYPE_CODES = ("int", "float", "bool", "str", "ints", "floats")


def attr_type(kind: str, attr: str) -> str | None:
    """The catalog type of `attr` on `kind`, or None if the layer kind does not have it."""
    return KINDS.get(kind, {}).get(attr)


def enum_values(type_code: str) -> list[str] | None:
    return type_code[5:].split("|") if type_code.startswith("enum:") else None


@dataclass(slots=True, eq=False)
class Layer:
    """One TensorRT layer. `inputs`/`outputs` are the data tensors it reads and writes (weights folded into a
    layer, like convolution kernels, are not inputs). `node` is the ONNX node it comes from."""

    index: int
    name: str
    kind: str
    node: str
    op: str
    attrs: dict[str, Any]
    inputs: list[Tensor]
    outputs: list[Tensor]
    named: bool = True
    origin: str = "parser"          # parser | builder
    parts: tuple[str, ...] = ()        # names fused into this layer ("A + B")
    extra_nodes: tuple[str, ...] = ()  # other ONNX nodes fused into this layer
    # A precision the graph fixes ("int8" for a layer fused with Q/DQ): only that precision is tried on DLA.
    precision: str | None = None

    @property
    def sources(self) -> list[str]:
        return [self.node, *self.extra_nodes]

    @property
    def display_name(self) -> str:
        """The name TensorRT prints for this layer."""
        return self.name if self.named else f"(Unnamed Layer* {self.index}) [{_KIND_TITLE.get(self.kind, self.kind.title())}]"

    @property
    def log_kind(self) -> str:
        return self.kind


_KIND_TITLE = {
    "SHUFFLE": "Shuffle", "ELEMENTWISE": "ElementWise", "CONSTANT": "Constant", "CONCATENATION": "Concatenation",
    "SLICE": "Slice", "CONVOLUTION": "Convolution", "DECONVOLUTION": "Deconvolution", "SOFTMAX": "Softmax",
    "ACTIVATION": "Activation", "POOLING": "Pooling", "REDUCE": "Reduce", "RESIZE": "Resize", "UNARY": "Unary",
    "MATRIX_MULTIPLY": "Matrix Multiply", "FULLY_CONNECTED": "Fully Connected", "IDENTITY": "Identity",
    "SHAPE": "Shape", "GATHER": "Gather", "SCALE": "Scale", "CAST": "Cast",
}
