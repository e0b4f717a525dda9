"""Loading models: bad input gives one-line errors; dynamic inputs, external data, input-shape overrides."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlarules import fixtures
from dlarules.errors import ModelError, OptionError
from dlarules.model import load_graph, parse_input_shapes

from conftest import EXAMPLE


def dynamic_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph([helper.make_node("Relu", ["images"], ["y"], "relu")], "g", [x], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_missing_file(tmp_path):
    with pytest.raises(ModelError) as exc:
        load_graph(tmp_path / "nope.onnx")
    assert exc.value.line() == f"{tmp_path / 'nope.onnx'}: no such file"


def test_not_onnx(tmp_path):
    f = tmp_path / "notes.onnx"
    f.write_text("this is not a model, just text\n" * 20)
    with pytest.raises(ModelError) as exc:
        load_graph(f)
    assert str(f) in exc.value.line() and "\n" not in exc.value.line()


def test_truncated(tmp_path):
    data = EXAMPLE.read_bytes()
    f = tmp_path / "cut.onnx"
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated"):
        load_graph(f)


def test_empty_file(tmp_path):
    f = tmp_path / "empty.onnx"
    f.write_bytes(b"")
    with pytest.raises(ModelError, match="not an ONNX model"):
        load_graph(f)


def external_model(tmp_path):
    model = fixtures.build({"nodes": [{"op": "Conv", "inputs": ["x", "w"]}],
                            "initializers": {"w": {"shape": [64, 8, 3, 3]}}})
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.weights", size_threshold=0)
    return path


def test_external_data_loads_without_reading_weights(tmp_path):
    path = external_model(tmp_path)
    graph = load_graph(path)
    w = graph.tensors["w"]
    assert w.const and w.shape == (64, 8, 3, 3)
    assert w.value().shape == (64, 8, 3, 3)   # read on demand, from the weights file


def test_missing_external_data(tmp_path):
    path = external_model(tmp_path)
    (tmp_path / "ext.weights").unlink()
    with pytest.raises(ModelError) as exc:
        load_graph(path)
    assert "ext.weights" in exc.value.line() and str(path) in exc.value.line()


def test_dynamic_input_message_names_inputs_and_fix():
    with pytest.raises(ModelError) as exc:
        load_graph(dynamic_model())
    line = exc.value.line()
    assert "images" in line and "batchx3xhxw" in line and "--input-shape images:" in line


def test_input_shape_fixes_dynamic_dims():
    graph = load_graph(dynamic_model(), parse_input_shapes(["images:1x3x64x64"]))
    assert graph.tensors["images"].shape == (1, 3, 64, 64)
    assert graph.tensors["y"].shape == (1, 3, 64, 64)


@pytest.mark.parametrize("spec,msg", [
    ("images", "NAME:DIMS"), ("images:1x3", "rank 4"), ("other:1x3x4x4", "no input 'other'"),
    ("images:0x3x4x4", "positive"), ("images:1,3,4,4", "NAME:DIMS"),
])
def test_bad_input_shapes(spec, msg):
    with pytest.raises(OptionError, match=msg):
        load_graph(dynamic_model(), parse_input_shapes([spec]))


def test_input_shapes_in_trtexec_list_form():
    assert parse_input_shapes(["a:1x3x8x8,b:1x4", "c:2"]) == {"a": (1, 3, 8, 8), "b": (1, 4), "c": (2,)}


def test_fixed_dim_conflict():
    with pytest.raises(OptionError, match="fixed dim 3"):
        load_graph(dynamic_model(), parse_input_shapes(["images:1x4x64x64"]))


def test_folding_computes_shape_values():
    spec = {"nodes": [{"op": "Shape", "inputs": ["x"], "outputs": ["s"]},
                      {"op": "Gather", "inputs": ["s", "i"], "outputs": ["g"]}, {"op": "Relu", "inputs": ["x"]}],
            "initializers": {"i": {"shape": [1], "dtype": "int64", "value": [3]}}}
    graph = load_graph(fixtures.build(spec))
    assert graph.folded == {0, 1}
    assert graph.tensors["g"].value().tolist() == [16]
    assert not graph.tensors["g"].weights   # computed: a shape tensor for the parser, not weights


def test_constant_of_shape_weights_are_constant_but_not_materialized():
    spec = {"nodes": [{"op": "ConstantOfShape", "inputs": ["shape"], "outputs": ["w"],
                       "attrs": {"value": {"tensor": {"shape": [1], "value": 0.02}}}},
                      {"op": "Conv", "inputs": ["x", "w"]}],
            "initializers": {"shape": {"shape": [4], "dtype": "int64", "value": [4096, 8, 64, 64]}}}
    graph = load_graph(fixtures.build(spec))
    w = graph.tensors["w"]
    assert w.const and w.value() is None and w.shape == (4096, 8, 64, 64)


def test_nameless_nodes_get_tensorrt_names():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    graph = load_graph(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    assert graph.nodes[0].name == "node_of_y"


def test_node_missing_a_required_input_is_a_clear_error():
    with pytest.raises(ModelError, match=r"'/Gemm_0' \(Gemm\) has 1 of its 2 required inputs"):
        load_graph(fixtures.build({"inputs": {"x": [1, 16]}, "nodes": [{"op": "Gemm"}]}))
