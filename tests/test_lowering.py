"""ONNX op -> TensorRT layers, op by op, and the release-dependent parser behaviours (data in releases.yaml)."""
from __future__ import annotations

import pytest

from dlarules import fixtures
from dlarules.lowering import OP_TABLE, lower
from dlarules.model import load_graph

X = {"x": [1, 8, 16, 16]}
C8 = {"shape": [1, 8, 1, 1], "value": 0.5}
I64 = lambda *v: {"shape": [len(v)], "dtype": "int64", "value": list(v)}  # noqa: E731

# op spec -> TensorRT layer kinds after the builder passes (default release: Orin, TensorRT 10.3)
CASES = [
    ({"nodes": [{"op": "Conv", "inputs": ["x", "w"]}], "initializers": {"w": {"shape": [4, 8, 3, 3]}}}, ["CONVOLUTION"]),
    ({"nodes": [{"op": "ConvTranspose", "inputs": ["x", "w"], "attrs": {"strides": [2, 2]}}],
      "initializers": {"w": {"shape": [8, 4, 2, 2]}}}, ["DECONVOLUTION"]),
    ({"nodes": [{"op": "MaxPool", "attrs": {"kernel_shape": [2, 2]}}]}, ["POOLING"]),
    ({"nodes": [{"op": "AveragePool", "attrs": {"kernel_shape": [2, 2]}}]}, ["POOLING"]),
    ({"nodes": [{"op": "GlobalAveragePool"}]}, ["REDUCE"]),
    ({"nodes": [{"op": "GlobalMaxPool"}]}, ["REDUCE"]),
    ({"nodes": [{"op": "ReduceMean", "attrs": {"axes": [2, 3]}}]}, ["REDUCE"]),
    ({"nodes": [{"op": "Relu"}]}, ["ACTIVATION"]),
    ({"nodes": [{"op": "Sigmoid"}]}, ["ACTIVATION"]),
    ({"nodes": [{"op": "LeakyRelu"}]}, ["ACTIVATION"]),
    ({"nodes": [{"op": "HardSigmoid"}]}, ["ACTIVATION"]),
    ({"nodes": [{"op": "HardSwish"}]}, ["ACTIVATION", "ELEMENTWISE"]),
    ({"nodes": [{"op": "Clip", "inputs": ["x", "lo", "hi"]}],
      "initializers": {"lo": {"shape": [], "value": 0.0}, "hi": {"shape": [], "value": 6.0}}}, ["ACTIVATION"]),
    ({"nodes": [{"op": "PRelu", "inputs": ["x", "s"]}], "initializers": {"s": {"shape": [8, 1, 1]}}},
     ["CONSTANT", "SHUFFLE", "PARAMETRIC_RELU"]),
    ({"inputs": {"a": [1, 8, 16, 16], "b": [1, 8, 16, 16]}, "nodes": [{"op": "Add", "inputs": ["a", "b"]}]},
     ["ELEMENTWISE"]),
    ({"nodes": [{"op": "Mul", "inputs": ["x", "c"]}], "initializers": {"c": C8}}, ["SCALE"]),
    ({"nodes": [{"op": "Div", "inputs": ["x", "c"]}], "initializers": {"c": C8}}, ["CONSTANT", "ELEMENTWISE"]),
    ({"nodes": [{"op": "Add", "inputs": ["x", "c"]}], "initializers": {"c": {"shape": [16]}}},
     ["CONSTANT", "SHUFFLE", "ELEMENTWISE"]),
    ({"inputs": {"a": [1, 8, 16, 16], "b": [1, 8, 16, 16]}, "nodes": [{"op": "GreaterOrEqual", "inputs": ["a", "b"]}]},
     ["ELEMENTWISE", "ELEMENTWISE", "ELEMENTWISE"]),
    ({"nodes": [{"op": "Abs"}]}, ["UNARY"]),
    ({"nodes": [{"op": "Neg"}]}, ["UNARY"]),
    ({"nodes": [{"op": "BatchNormalization", "inputs": ["x", "s", "b", "m", "v"]}],
      "initializers": {k: {"shape": [8]} for k in "sbmv"}}, ["SCALE"]),
    ({"nodes": [{"op": "Reshape", "inputs": ["x", "s"]}], "initializers": {"s": I64(1, 8, 8, 32)}}, ["SHUFFLE"]),
    ({"nodes": [{"op": "Transpose", "attrs": {"perm": [0, 2, 3, 1]}}]}, ["SHUFFLE"]),
    ({"nodes": [{"op": "Flatten"}]}, ["SHUFFLE"]),
    ({"nodes": [{"op": "Unsqueeze", "inputs": ["x", "a"]}], "initializers": {"a": I64(0)}}, ["SHUFFLE"]),
    ({"inputs": {"a": [1, 8, 16, 16], "b": [1, 8, 16, 16]}, "nodes": [{"op": "Concat", "inputs": ["a", "b"],
                                                                       "attrs": {"axis": 1}}]}, ["CONCATENATION"]),
    ({"nodes": [{"op": "Slice", "inputs": ["x", "s", "e", "a"]}],
      "initializers": {"s": I64(0), "e": I64(4), "a": I64(1)}}, ["SLICE"]),
    ({"nodes": [{"op": "Split", "inputs": ["x"], "outputs": 2, "attrs": {"axis": 1}}]}, ["SLICE", "SLICE"]),
    ({"nodes": [{"op": "Pad", "inputs": ["x", "p"]}], "initializers": {"p": I64(0, 0, 1, 1, 0, 0, 1, 1)}}, ["SLICE"]),
    ({"nodes": [{"op": "Pad", "inputs": ["x", "p"]}, {"op": "Relu"}], "initializers": {"p": I64(0, 0, 0, 0, 0, 0, 0, 0)}},
     ["ACTIVATION"]),
    ({"nodes": [{"op": "Tile", "inputs": ["x", "r"]}], "initializers": {"r": I64(1, 1, 2, 2)}}, ["SLICE"]),
    ({"inputs": {"x": [1, 8, 1, 1]}, "nodes": [{"op": "Expand", "inputs": ["x", "s"]}],
      "initializers": {"s": I64(1, 8, 4, 4)}}, ["SLICE"]),
    ({"inputs": {"x": [1, 16]}, "nodes": [{"op": "Gemm", "inputs": ["x", "w", "b"], "attrs": {"transB": 1}}],
      "initializers": {"w": {"shape": [10, 16]}, "b": {"shape": [10]}}}, ["SHUFFLE", "CONVOLUTION", "SHUFFLE"]),
    ({"inputs": {"a": [1, 8, 16, 16], "b": [1, 8, 16, 16]}, "nodes": [{"op": "MatMul", "inputs": ["a", "b"]}]},
     ["MATRIX_MULTIPLY"]),
    # the parser's reshape back is a no-op: removed, the softmax writes the network output itself
    ({"nodes": [{"op": "Softmax", "attrs": {"axis": 1}}]}, ["SOFTMAX"]),
    ({"nodes": [{"op": "Softmax", "attrs": {"axis": 1}}, {"op": "Relu"}]}, ["SOFTMAX", "ACTIVATION"]),
    ({"opset": 11, "nodes": [{"op": "Softmax", "attrs": {"axis": 1}}]}, ["SHUFFLE", "SOFTMAX", "SHUFFLE"]),
    ({"nodes": [{"op": "LogSoftmax", "attrs": {"axis": 1}}]}, ["SOFTMAX", "UNARY"]),
    ({"nodes": [{"op": "Resize", "inputs": ["x", "", "s"]}], "initializers": {"s": {"shape": [4], "value": [1, 1, 2, 2]}}},
     ["RESIZE"]),
    ({"nodes": [{"op": "LRN", "attrs": {"size": 5}}]}, ["LRN"]),
    ({"nodes": [{"op": "Cast", "attrs": {"to": 10}}]}, ["CAST"]),
    ({"nodes": [{"op": "Identity"}, {"op": "Relu"}]}, ["ACTIVATION"]),
    ({"nodes": [{"op": "DepthToSpace", "attrs": {"blocksize": 2}}]}, ["SHUFFLE"]),
    ({"nodes": [{"op": "InstanceNormalization", "inputs": ["x", "s", "b"]}],
      "initializers": {"s": {"shape": [8]}, "b": {"shape": [8]}}}, ["CONSTANT", "CONSTANT", "NORMALIZATION"]),
    ({"nodes": [{"op": "Gather", "inputs": ["x", "i"], "attrs": {"axis": 1}}], "initializers": {"i": I64(0, 1)}},
     ["CONSTANT", "GATHER"]),
    ({"nodes": [{"op": "TopK", "inputs": ["x", "k"], "outputs": 2}], "initializers": {"k": I64(2)}},
     ["CONSTANT", "TOPK"]),
    ({"nodes": [{"op": "NonZero"}]}, ["NON_ZERO"]),
    ({"nodes": [{"op": "Hardmax"}]}, ["UNKNOWN"]),
    ({"nodes": [{"op": "Custom", "domain": "my.ops"}]}, ["PLUGIN"]),
]


def kinds(spec, features=None):
    graph = load_graph(fixtures.build(spec))
    return [layer.kind for layer in lower(graph, features or {}).layers]


@pytest.mark.parametrize("spec,expected", CASES, ids=[c[0]["nodes"][0]["op"] + str(i) for i, c in enumerate(CASES)])
def test_op_lowering(spec, expected, db):
    features = db.target("orin", "10.3").release.parser
    assert kinds(spec, features) == expected


def test_table_covers_the_ops_of_the_cases():
    covered = {c[0]["nodes"][0]["op"] for c in CASES}
    assert covered - {"Hardmax", "Custom"} <= set(OP_TABLE)
    assert len(OP_TABLE) >= 100


def test_release_differences_are_data(db):
    gemm = next(c[0] for c in CASES if c[0]['nodes'][0]['op'] == 'Gemm')
    feats = lambda trt, hw="orin": db.target(hw, trt).release.parser  # noqa: E731
    assert kinds(gemm, feats("8.2", "xavier")) == ["SHUFFLE", "FULLY_CONNECTED", "SHUFFLE"]
    assert kinds({"nodes": [{"op": "GlobalAveragePool"}]}, feats("8.5")) == ["POOLING"]
    assert kinds({"nodes": [{"op": "GlobalAveragePool"}]}, feats("8.6")) == ["REDUCE"]
    assert kinds({"nodes": [{"op": "Cast", "attrs": {"to": 10}}]}, feats("8.5")) == ["IDENTITY"]
    unsq = {"nodes": [{"op": "Unsqueeze", "inputs": ["x", "a"]}], "initializers": {"a": {"shape": [1], "dtype": "int64", "value": [0]}}}
    assert kinds(unsq, feats("10.7")) == ["UNSQUEEZE"]
    assert kinds({"nodes": [{"op": "HardSwish"}]}, feats("7.1", "xavier")) == ["UNKNOWN"]


def test_shape_math_is_folded_not_layers():
    spec = {"nodes": [
        {"op": "Shape", "inputs": ["x"], "outputs": ["shp"]},
        {"op": "Gather", "inputs": ["shp", "i"], "outputs": ["hw"]},
        {"op": "Mul", "inputs": ["hw", "two"], "outputs": ["hw2"]},
        {"op": "Concat", "inputs": ["nc", "hw2"], "outputs": ["sz"], "attrs": {"axis": 0}},
        {"op": "Resize", "inputs": ["x", "", "", "sz"], "attrs": {"mode": "nearest"}},
    ], "initializers": {"i": {"shape": [2], "dtype": "int64", "value": [2, 3]},
                        "two": {"shape": [1], "dtype": "int64", "value": [2]},
                        "nc": {"shape": [2], "dtype": "int64", "value": [1, 8]}}}
    graph = load_graph(fixtures.build(spec))
    lg = lower(graph)
    assert [layer.kind for layer in lg.layers] == ["RESIZE"]
    assert len(lg.folded_nodes) == 4
    resize = lg.layers[0]
    assert resize.attrs["size_source"] == "sizes-tensor" and resize.attrs["spatial_scales"] == [2.0, 2.0]


def test_builder_fuses_flatten_with_the_fc_unsqueeze(db):
    spec = {"nodes": [{"op": "GlobalAveragePool"}, {"op": "Flatten"},
                      {"op": "Gemm", "inputs": ["t1", "w"], "attrs": {"transB": 1}}],
            "initializers": {"w": {"shape": [10, 8]}}}
    names = [(layer.kind, layer.name) for layer in lower(load_graph(fixtures.build(spec)),
                                                         db.target("orin", "8.5").release.parser).layers]
    assert names == [("POOLING", "/GlobalAveragePool_0"), ("CONVOLUTION", "/Gemm_2"),
                     ("SHUFFLE", "reshape_after_/Gemm_2")]


def test_a_node_the_lowering_cannot_handle_is_flagged_not_passed(monkeypatch, db):
    import dlarules.lowering as lowering

    def broken(lw):
        raise ValueError("unexpected attribute combination")
    monkeypatch.setitem(lowering.OP_TABLE, "Relu", (broken, "ACTIVATION", ""))
    from dlarules.api import check
    r = check(fixtures.build({"nodes": [{"op": "Relu"}]}), db, hardware="orin", trt="8.6")
    (v,) = r.layers
    assert v.kind == "UNKNOWN" and not v.on_dla
    assert "not mapped by dlarules (ValueError: unexpected attribute combination)" in v.findings[0].message
