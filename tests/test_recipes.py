"""Every recipe on a tiny model that violates its rule: applied, the rule no longer fires, the result passes
onnx.checker (full check) and computes the same function in onnxruntime (approximate ones report their error)."""
from __future__ import annotations

import onnx
import pytest

from dlarules import fixtures
from dlarules.fix import fix, write
from dlarules.recipes.catalog import RECIPES as CATALOG
from dlarules.recipes.registry import REGISTRY

I64 = lambda *v: {"shape": [len(v)], "dtype": "int64", "value": list(v)}  # noqa: E731
F32 = lambda *v: {"shape": [len(v)], "value": list(v)}  # noqa: E731

# (recipe, rule it cures, (hardware, trt, precision), fixture, expected detail fragment)
CASES = [
    ("gap-to-avgpool", "REDUCE-OP", ("orin", "10.3", "fp16"),
     {"inputs": {"x": [1, 8, 7, 7]}, "nodes": [{"op": "GlobalAveragePool"}]}, "AveragePool 7x7"),
    ("gap-to-avgpool", "POOL-WINDOW", ("xavier", "8.5", "fp16"),
     {"inputs": {"x": [1, 8, 16, 32]}, "nodes": [{"op": "GlobalAveragePool"}]}, "cascade of AveragePools 8x8 -> 2x4"),
    ("gap-to-avgpool", "POOL-WINDOW", ("xavier", "8.5", "fp16"),
     {"inputs": {"x": [1, 8, 17, 17]}, "nodes": [{"op": "GlobalAveragePool"}]}, "depthwise Conv 17x17"),
    ("gap-to-avgpool", "REDUCE-SUPPORT", ("xavier", "8.5", "fp16"),
     {"inputs": {"x": [1, 8, 20, 20]}, "nodes": [{"op": "GlobalMaxPool"}]}, "cascade of 2 MaxPools"),
    ("gap-to-avgpool", "POOL-INT8-AVG", ("xavier", "8.5", "int8"),
     {"inputs": {"x": [1, 8, 4, 4]}, "nodes": [{"op": "GlobalAveragePool"}]}, "depthwise Conv 4x4"),
    ("avgpool-to-conv", "POOL-WINDOW", ("orin", "10.3", "fp16"),
     {"inputs": {"x": [1, 8, 32, 32]}, "nodes": [{"op": "AveragePool", "attrs": {
         "kernel_shape": [9, 9], "strides": [4, 4], "pads": [4, 4, 4, 4], "count_include_pad": 1}}]},
     "depthwise Conv 9x9"),
    ("avgpool-exclude-pad-to-mul", "POOL-AVG-EXCLUDE-PAD", ("xavier", "8.5", "fp16"),
     {"inputs": {"x": [1, 8, 9, 10]}, "nodes": [{"op": "AveragePool", "attrs": {
         "kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 0}}]},
     "factors 1..2.25"),
    ("avgpool-to-conv", "POOL-WINDOW", ("xavier", "8.5", "fp16"),   # DDRNet's SPP pool: one 17x17 kernel overflows CBUF
     {"inputs": {"x": [1, 512, 16, 32]}, "nodes": [{"op": "AveragePool", "attrs": {
         "kernel_shape": [17, 17], "strides": [8, 8], "pads": [8, 8, 8, 8], "count_include_pad": 1}}]},
     "depthwise Convs 1x17 then 17x1"),
    ("maxpool-cascade", "POOL-WINDOW", ("orin", "10.3", "fp16"),
     {"inputs": {"x": [1, 8, 32, 32]}, "nodes": [{"op": "MaxPool", "attrs": {
         "kernel_shape": [13, 13], "strides": [2, 2], "pads": [6, 6, 6, 6]}}]}, "cascade 8x8 -> 6x6"),
    ("reduce-to-pool-conv", "REDUCE-OP", ("orin", "10.3", "fp16"),
     {"inputs": {"x": [1, 8, 6, 6]}, "nodes": [{"op": "ReduceMean", "attrs": {"axes": [2, 3], "keepdims": 1}}]},
     "AveragePool 6x6"),
    ("reduce-to-pool-conv", "REDUCE-OP", ("orin", "10.3", "fp16"),   # CBAM channel pooling
     {"inputs": {"x": [1, 8, 6, 6]}, "nodes": [{"op": "ReduceMean", "attrs": {"axes": [1], "keepdims": 1}},
                                              {"op": "Relu"}]}, "ReduceMean over C (8) -> Conv 1x1"),
    ("reduce-to-pool-conv", "REDUCE-SUPPORT", ("xavier", "8.5", "fp16"),
     {"inputs": {"x": [1, 8, 6, 6]}, "initializers": {"ax": I64(2, 3)},
      "nodes": [{"op": "ReduceSum", "inputs": ["x", "ax"], "attrs": {"keepdims": 1}}, {"op": "Relu"}]},
     "ReduceSum over H,W (6x6) -> AveragePool 6x6 x 36"),
    ("head-sink", "SLICE-RANK", ("orin", "10.3", "fp16"),   # two scales flattened, concatenated, sliced, Sigmoid
     {"inputs": {"a": [1, 4, 8, 8], "b": [1, 4, 4, 4]},
      "initializers": {"s": I64(1, 4, -1), "st": I64(1), "en": I64(3), "ax": I64(1)},
      "nodes": [{"op": "Reshape", "inputs": ["a", "s"]}, {"op": "Reshape", "inputs": ["b", "s"]},
                {"op": "Concat", "inputs": ["t0", "t1"], "attrs": {"axis": 2}},
                {"op": "Slice", "inputs": ["t2", "st", "en", "ax"]}, {"op": "Sigmoid"}]},
     "Concat over 2 scales (8x8, 4x4) of flattened maps sunk past 2 per-position op(s) (Sigmoid, Slice)"),
    ("gather-to-conv", "NEVER-GATHER", ("orin", "10.3", "fp16"),   # RGB -> BGR at the input
     {"inputs": {"x": [1, 3, 8, 8]}, "initializers": {"i": I64(2, 1, 0)},
      "nodes": [{"op": "Gather", "inputs": ["x", "i"], "attrs": {"axis": 1}}, {"op": "Relu"}]},
     "Gather of channels [2, 1, 0] -> Conv 1x1"),
    ("resize-sizes-to-scales", "RESIZE-STATIC-SCALES", ("xavier", "8.5", "fp16"),
     {"nodes": [{"op": "Shape", "inputs": ["x"], "outputs": ["s"]},
                {"op": "Gather", "inputs": ["s", "hw"], "outputs": ["g"]},
                {"op": "Mul", "inputs": ["g", "two"], "outputs": ["g2"]},
                {"op": "Concat", "inputs": ["nc", "g2"], "outputs": ["sz"], "attrs": {"axis": 0}},
                {"op": "Resize", "inputs": ["x", "", "", "sz"], "attrs": {"mode": "nearest",
                 "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}}],
      "initializers": {"hw": I64(2, 3), "two": I64(2), "nc": I64(1, 8)}}, "constant scales 2x2"),
    ("resize-nearest-two-step", "RESIZE-NEAREST-SCALE", ("orin", "10.3", "fp16"),
     {"inputs": {"x": [1, 4, 2, 2]}, "initializers": {"sc": F32(1, 1, 64, 64)},
      "nodes": [{"op": "Resize", "inputs": ["x", "", "sc"], "attrs": {"mode": "nearest",
                 "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}}]}, "x32x32 then x2x2"),
    ("resize-linear-to-nearest", "RESIZE-LINEAR-SCALE", ("orin", "10.3", "fp16"),
     {"inputs": {"x": [1, 4, 1, 1]}, "initializers": {"sc": F32(1, 1, 16, 8)},
      "nodes": [{"op": "Resize", "inputs": ["x", "", "sc"], "attrs": {"mode": "linear"}}]}, "exact: the input is 1x1"),
    ("hardswish-decompose", "ACT-TYPE", ("orin", "8.6", "fp16"), {"nodes": [{"op": "HardSwish"}]},
     "Clip(x + 3, 0, 6)"),
    ("hardsigmoid-decompose", "ACT-TYPE", ("orin", "8.6", "fp16"),
     {"nodes": [{"op": "HardSigmoid", "attrs": {"alpha": 0.1666667, "beta": 0.5}}]}, "Clip(0.166667 * x + 0.5"),
    ("div-to-mul", "EW-OP", ("xavier", "8.5", "fp16"),
     {"initializers": {"c": {"shape": [1, 8, 16, 16], "value": 4.0}}, "nodes": [{"op": "Div", "inputs": ["x", "c"]}]},
     "Mul by its reciprocal"),
    ("div-to-mul", "NEVER-CONSTANT", ("orin", "10.3", "fp16"),   # Orin runs DIV, but not its constant operand
     {"initializers": {"c": {"shape": [1], "value": 6.0}}, "nodes": [{"op": "Div", "inputs": ["x", "c"]}]},
     "Mul by its reciprocal"),
    ("broadcast-expand", "EW-BROADCAST", ("orin", "10.3", "fp16"),   # CBAM-style spatial attention
     {"inputs": {"a": [1, 8, 6, 6], "m": [1, 1, 6, 6]}, "nodes": [{"op": "Sigmoid", "inputs": ["m"]},
                                                                  {"op": "Mul", "inputs": ["a", "t0"]}]},
     "copied to 8 channels by a 1x1 Conv of ones"),
    ("broadcast-expand", "EW-BROADCAST", ("orin", "10.3", "fp16"),
     {"inputs": {"a": [1, 4, 3, 5]}, "initializers": {"c": {"shape": [1, 1, 3, 5], "value": 0.5}},
      "nodes": [{"op": "Add", "inputs": ["a", "c"]}]}, "constant operand expanded to 1x4x3x5"),
    ("clip-shift", "ACT-CLIP-RANGE", ("orin", "10.3", "fp16"),   # Hardtanh
     {"initializers": {"lo": {"shape": [], "value": -1.0}, "hi": {"shape": [], "value": 1.0}},
      "nodes": [{"op": "Clip", "inputs": ["x", "lo", "hi"]}, {"op": "Relu"}]}, "Clip(x + 1, 0, 2) - 1"),
    ("clip-shift", "ACT-CLIP-RANGE", ("orin", "10.3", "fp16"),   # a narrow clip: power-of-two scaling
     {"initializers": {"lo": {"shape": [], "value": 0.0}, "hi": {"shape": [], "value": 0.25}},
      "nodes": [{"op": "Clip", "inputs": ["x", "lo", "hi"]}, {"op": "Relu"}]}, "Clip(256 * (x - 0), 0, 64) / 256"),
    ("clip-shift", "ACT-CLIP-RANGE", ("orin", "10.3", "fp16"),   # only a max (min absent: -inf)
     {"initializers": {"hi": {"shape": [], "value": 6.0}},
      "nodes": [{"op": "Clip", "inputs": ["x", "", "hi"]}, {"op": "Relu"}]}, "6 - Relu(6 - x)"),
    ("sub-to-add", "NEVER-CONSTANT", ("orin", "10.3", "fp16"),   # c - x: the anchors minus distances of a box decode
     {"initializers": {"c": {"shape": [1, 8, 16, 16], "value": 0.5}}, "nodes": [{"op": "Sub", "inputs": ["c", "x"]}]},
     "a constant minus x"),
    ("sub-to-add", "EW-OP", ("xavier", "8.0", "fp16"),           # no SUB on DLA before TensorRT 8.2
     {"inputs": {"a": [1, 8, 16, 16], "b": [1, 8, 16, 16]}, "nodes": [{"op": "Sub", "inputs": ["a", "b"]}]},
     "a - b"),
    ("neg-to-mul", "UNARY-OP", ("orin", "10.3", "fp16"), {"nodes": [{"op": "Neg"}, {"op": "Relu"}]},
     "Neg -> Mul by -1"),
    ("gemm-to-conv", "GEN-MAX-DIM", ("orin", "10.3", "fp16"),
     {"inputs": {"x": [1, 200, 7, 7]}, "initializers": {"w": {"shape": [16, 9800], "value": 0.001},
                                                        "b": {"shape": [16], "value": 0.5}},
      "nodes": [{"op": "Relu"}, {"op": "Flatten"}, {"op": "Gemm", "inputs": ["t1", "w", "b"], "attrs": {"transB": 1}}]},
     "Conv 7x7 (16 outputs)"),
    ("gemm-to-conv", "GEN-RANK", ("orin", "10.3", "fp16"),
     {"inputs": {"x": [1, 4, 1, 1]}, "initializers": {"w": {"shape": [8, 4], "value": 0.25},
                                                      "r": {"shape": [], "value": 0.5}, "s": I64(1, 8, 1, 1)},
      "nodes": [{"op": "Relu"}, {"op": "Flatten"}, {"op": "Relu"}, {"op": "Dropout", "inputs": ["t2", "r"]},
                {"op": "Gemm", "inputs": ["t3", "w"], "attrs": {"transB": 1}}, {"op": "Reshape", "inputs": ["t4", "s"]}]},
     "Flatten + Relu Dropout + Gemm on 4x1x1"),
    ("gemm-to-conv", "GEN-RANK", ("orin", "10.3", "fp16"),   # MatMul + Add bias, as Paddle exports a Linear
     {"inputs": {"x": [1, 6, 2, 2]}, "initializers": {"w": {"shape": [24, 5], "value": 0.1},
                                                      "b": {"shape": [5], "value": 0.5}, "s": I64(1, 5, 1, 1)},
      "nodes": [{"op": "Flatten"}, {"op": "MatMul", "inputs": ["t0", "w"]}, {"op": "Add", "inputs": ["t1", "b"]},
                {"op": "Reshape", "inputs": ["t2", "s"]}]},
     "Flatten + MatMul + Add on 6x2x2 -> Conv 2x2 (5 outputs)"),
    ("depth-to-space-deconv", "SHUFFLE-RANK", ("orin", "10.3", "fp16"),
     {"nodes": [{"op": "DepthToSpace", "attrs": {"blocksize": 2, "mode": "DCR"}}, {"op": "Relu"}]},
     "DepthToSpace 2 (DCR)"),
    ("depth-to-space-deconv", "SHUFFLE-RANK", ("orin", "10.3", "fp16"),
     {"nodes": [{"op": "DepthToSpace", "attrs": {"blocksize": 2, "mode": "CRD"}}, {"op": "Relu"}]},
     "DepthToSpace 2 (CRD)"),
    ("space-to-depth-conv", "SHUFFLE-RANK", ("orin", "10.3", "fp16"),
     {"nodes": [{"op": "SpaceToDepth", "attrs": {"blocksize": 2}}, {"op": "Relu"}]}, "SpaceToDepth 2 -> Conv"),
    ("shuffle-chain-to-conv", "SHUFFLE-RANK", ("orin", "10.3", "fp16"),
     {"inputs": {"x": [1, 12, 5, 6]}, "initializers": {"s1": I64(1, 3, 4, 5, 6), "s2": I64(1, 12, 5, 6)},
      "nodes": [{"op": "Relu"}, {"op": "Reshape", "inputs": ["t0", "s1"]},
                {"op": "Transpose", "attrs": {"perm": [0, 2, 1, 3, 4]}}, {"op": "Reshape", "inputs": ["t2", "s2"]},
                {"op": "Relu"}]}, "permuting 12 channels"),
    ("shuffle-chain-to-conv", "SHUFFLE-RANK", ("orin", "10.3", "fp16"),   # PyTorch PixelShuffle(2)
     {"inputs": {"x": [1, 12, 5, 6]}, "initializers": {"s1": I64(1, 3, 2, 2, 5, 6), "s2": I64(1, 3, 10, 12)},
      "nodes": [{"op": "Relu"}, {"op": "Reshape", "inputs": ["t0", "s1"]},
                {"op": "Transpose", "attrs": {"perm": [0, 1, 4, 2, 5, 3]}}, {"op": "Reshape", "inputs": ["t2", "s2"]},
                {"op": "Relu"}]}, "as DepthToSpace 2 (CRD) -> ConvTranspose 2x2 stride 2"),
    ("shuffle-chain-to-conv", "SHUFFLE-SUPPORT", ("xavier", "8.2", "int8"),   # ONNX SpaceToDepth(2) order
     {"inputs": {"x": [1, 3, 8, 6]}, "initializers": {"s1": I64(1, 3, 4, 2, 3, 2), "s2": I64(1, 12, 4, 3)},
      "nodes": [{"op": "Relu"}, {"op": "Reshape", "inputs": ["t0", "s1"]},
                {"op": "Transpose", "attrs": {"perm": [0, 3, 5, 1, 2, 4]}}, {"op": "Reshape", "inputs": ["t2", "s2"]},
                {"op": "Relu"}]}, "as SpaceToDepth 2 (DCR) -> Conv 2x2 stride 2"),
    ("softmax-transpose-fold", "SHUFFLE-TRANSPOSE-XAVIER", ("xavier", "8.5", "fp16"),
     {"nodes": [{"op": "Transpose", "attrs": {"perm": [0, 2, 3, 1]}}, {"op": "Softmax", "attrs": {"axis": -1}},
                {"op": "Transpose", "attrs": {"perm": [0, 3, 1, 2]}}]}, "Softmax(axis 1)"),
    ("deconv-pad-to-slice", "DECONV-PADDING", ("orin", "10.3", "fp16"),
     {"inputs": {"x": [1, 8, 8, 8]}, "initializers": {"w": {"shape": [8, 8, 4, 4], "value": 0.05}},
      "nodes": [{"op": "ConvTranspose", "inputs": ["x", "w"], "attrs": {"strides": [2, 2], "pads": [1, 1, 1, 1]}}]},
     "Slice cropping the border"),
    ("pad-into-conv", "SLICE-MODE", ("orin", "8.6", "fp16"),
     {"initializers": {"p": I64(0, 0, 1, 2, 0, 0, 1, 2), "w": {"shape": [8, 8, 3, 3], "value": 0.05}},
      "nodes": [{"op": "Pad", "inputs": ["x", "p"], "attrs": {"mode": "constant"}},
                {"op": "Conv", "inputs": ["t0", "w"]}]}, "folded into /Conv_1's padding"),
    ("fold-constants", "CONCAT-INPUTS", ("orin", "10.3", "fp16"),
     {"nodes": [{"op": "Relu"}, {"op": "Concat", "attrs": {"axis": 1}}, {"op": "Relu"}]}, "removed Concat"),
]


def run_case(tmp_path, db, recipe, target, spec, allow_approx=False, **kw):
    path = tmp_path / "m.onnx"
    path.write_bytes(fixtures.build(spec).SerializeToString())
    hw, trt, precision = target
    t = db.target(hw, trt, precision=precision)
    return path, fix(path, db, t, only={recipe}, allow_approx=allow_approx, **kw)


@pytest.mark.parametrize("recipe,rule,target,spec,detail", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_recipe(tmp_path, db, recipe, rule, target, spec, detail):
    path, result = run_case(tmp_path, db, recipe, target, spec)
    assert rule in result.before.findings_by_rule(), f"fixture does not trip {rule}"
    assert [c.recipe for c in result.changes] == [recipe], (result.skipped, result.reverted)
    change = result.changes[0]
    assert change.exact and detail in change.detail, change.detail
    assert rule not in result.after.findings_by_rule(), result.after.findings_by_rule().get(rule)
    assert result.after.summary["layers_on_gpu"] < result.before.summary["layers_on_gpu"]
    assert result.proof is not None and result.proof.passed, result.proof.to_dict()
    out = write(result, tmp_path / "fixed.onnx")
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)


def test_every_recipe_is_exercised_and_registered():
    assert set(REGISTRY) == set(CATALOG)
    # the model-wide qdq-to-calibration has its own tests (tests/test_qdq.py)
    assert {c[0] for c in CASES} | {"resize-linear-to-nearest", "qdq-to-calibration"} == set(REGISTRY)


def test_approximate_recipe_needs_opt_in_and_reports_its_error(tmp_path, db):
    spec = {"inputs": {"x": [1, 4, 4, 4]}, "initializers": {"sc": F32(1, 1, 8, 8)},
            "nodes": [{"op": "Resize", "inputs": ["x", "", "sc"], "attrs": {"mode": "linear"}}]}
    _, result = run_case(tmp_path, db, "resize-linear-to-nearest", ("orin", "10.3", "fp16"), spec)
    assert not result.changes
    assert any("needs --allow-approx" in s.reason for s in result.skipped)
    _, result = run_case(tmp_path, db, "resize-linear-to-nearest", ("orin", "10.3", "fp16"), spec, allow_approx=True)
    assert [c.exact for c in result.changes] == [False]
    err = result.proof.outputs[0]
    # the error is measured and shown, never hidden; the gate is the recipe's own (mean error vs the range)
    assert err.max_abs > 1e-3 and err.mean_abs <= 0.1 * err.value_range and result.proof.passed
    assert result.proof.approx == REGISTRY["resize-linear-to-nearest"].tolerance == 0.1
    assert "RESIZE-LINEAR-SCALE" not in result.after.findings_by_rule()


def test_a_rewrite_that_does_not_move_to_dla_is_reverted(tmp_path, db):
    # sizes -> scales alone cannot bring an x8 bilinear resize to DLA (linear factors stop at 4)
    spec = {"inputs": {"x": [1, 4, 4, 4]}, "initializers": {"sz": I64(1, 4, 32, 32)},
            "nodes": [{"op": "Resize", "inputs": ["x", "", "", "sz"], "attrs": {"mode": "linear"}}]}
    _, result = run_case(tmp_path, db, "resize-sizes-to-scales", ("xavier", "8.5", "fp16"), spec)
    assert not result.changes
    assert result.reverted and "RESIZE-LINEAR-SCALE" in result.reverted[0].reason


def test_exclusive_padding_with_a_big_window(tmp_path, db):
    # Xavier: a 9x9 exclusive-padding average pool trips POOL-WINDOW and POOL-AVG-EXCLUDE-PAD; the inclusive pool
    # alone would not reach DLA (reverted), the depthwise convolution with the border correction does
    spec = {"inputs": {"x": [1, 4, 20, 20]}, "nodes": [{"op": "AveragePool", "attrs": {
        "kernel_shape": [9, 9], "pads": [4, 4, 4, 4], "count_include_pad": 0}}]}
    path = tmp_path / "m.onnx"
    path.write_bytes(fixtures.build(spec).SerializeToString())
    result = fix(path, db, db.target("xavier", "8.5"))
    assert [c.recipe for c in result.changes] == ["avgpool-to-conv"]
    assert "border correction" in result.changes[0].detail
    assert result.after.summary["layers_on_gpu"] == 0
    assert result.proof.passed and result.proof.outputs[0].max_abs < 1e-5


def test_chain_that_swaps_rows_is_not_rewritten(tmp_path, db):
    # Reshape -> Transpose -> Reshape through 5-D that swaps row halves: not a channel permutation
    spec = {"inputs": {"x": [1, 4, 4, 6]}, "initializers": {"s1": I64(1, 4, 2, 2, 6), "s2": I64(1, 4, 4, 6)},
            "nodes": [{"op": "Relu"}, {"op": "Reshape", "inputs": ["t0", "s1"]},
                      {"op": "Transpose", "attrs": {"perm": [0, 1, 3, 2, 4]}},
                      {"op": "Reshape", "inputs": ["t2", "s2"]}, {"op": "Relu"}]}
    _, result = run_case(tmp_path, db, "shuffle-chain-to-conv", ("orin", "10.3", "fp16"), spec)
    assert "SHUFFLE-RANK" in result.before.findings_by_rule()
    assert not result.changes
    assert any("neither a channel permutation" in s.reason for s in result.skipped), result.skipped


def test_classifier_head_of_fully_connected_layers_stays_4d(tmp_path, db):
    # VGG/AlexNet-style head: Flatten -> Gemm -> Relu -> Gemm. The chain is one rewrite: each Gemm becomes a
    # convolution and the Relu moves before the Flatten, until only the final Flatten is 2-D.
    spec = {"inputs": {"x": [1, 8, 3, 3]},
            "initializers": {"w1": {"shape": [16, 72], "value": 0.01}, "b1": {"shape": [16], "value": 0.1},
                             "w2": {"shape": [10, 16], "value": -0.2}, "b2": {"shape": [10], "value": 0.3}},
            "nodes": [{"op": "Flatten"}, {"op": "Gemm", "inputs": ["t0", "w1", "b1"], "attrs": {"transB": 1}},
                      {"op": "Relu"}, {"op": "Gemm", "inputs": ["t2", "w2", "b2"], "attrs": {"transB": 1}}]}
    path = tmp_path / "m.onnx"
    path.write_bytes(fixtures.build(spec).SerializeToString())
    result = fix(path, db, db.target("orin", "10.3"))
    assert [c.recipe for c in result.changes] == ["gemm-to-conv"]
    assert "; then Relu + Gemm" in result.changes[0].detail
    gpu = [v for v in result.after.layers if not v.on_dla]
    assert [v.kind for v in gpu] == ["SHUFFLE"] and result.before.summary["layers_on_gpu"] > 1
    assert result.proof.passed


def test_fp16_model_gets_fp16_weights(tmp_path, db):
    # an fp16 export stays fp16: the recipes' new weights take the activations' type (onnxruntime would reject
    # a float32 weight on a float16 Conv or Mul); the output has no shape, which onnx.checker flags in the input
    # already, so it does not stop the write
    from onnx import TensorProto, helper, numpy_helper
    import numpy as np
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 8, 17, 17])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)
    c = numpy_helper.from_array(np.full([1], 4.0, np.float16), "c")
    nodes = [helper.make_node("HardSwish", ["x"], ["h"], name="hs"), helper.make_node("Div", ["h", "c"], ["d"], name="div"),
             helper.make_node("GlobalAveragePool", ["d"], ["g"], name="gap"), helper.make_node("Flatten", ["g"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "fp16", [x], [y], [c]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "fp16.onnx"
    onnx.save(model, str(path))
    result = fix(path, db, db.target("xavier", "8.5"))
    assert {c.recipe for c in result.changes} == {"hardswish-decompose", "div-to-mul", "gap-to-avgpool"}
    assert result.proof.passed, result.proof.to_dict()
    float_inits = [i for i in result.model.graph.initializer if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    assert float_inits and all(i.data_type == TensorProto.FLOAT16 for i in float_inits)
    out = write(result, tmp_path / "fixed.onnx")
    assert out.is_file()


def test_super_resolution_pixel_shuffle_moves_to_dla(tmp_path, db):
    # the CNN of log 07: its PixelShuffle (6-D Reshape -> Transpose -> Reshape) is all that ran on the GPU
    import superres_model
    path = tmp_path / "sr.onnx"
    onnx.save(superres_model.build(size=32), str(path))
    for hw, trt in (("xavier", "8.2"), ("orin", "8.6")):
        result = fix(path, db, db.target(hw, trt, precision="int8"))
        assert result.before.summary["layers_on_gpu"] == 2 and result.after.summary["layers_on_gpu"] == 0
        assert [c.recipe for c in result.changes] == ["shuffle-chain-to-conv"]
        assert "DepthToSpace 3 (CRD)" in result.changes[0].detail
        assert result.proof.passed and result.proof.outputs[0].max_abs == 0.0


def test_readme_lists_every_recipe():
    import re
    from conftest import ROOT
    text = (ROOT / "README.md").read_text()
    listed = text[text.index("\nRecipes: "):].split(". Each says", 1)[0]
    assert set(re.findall(r"`([a-z0-9-]+)`", listed)) == set(REGISTRY)


def test_cbam_spatial_attention_moves_to_dla(tmp_path, db):
    # CBAM: mean and max over channels -> 7x7 conv -> sigmoid -> times the input (a one-channel map)
    spec = {"inputs": {"x": [1, 16, 20, 20]}, "initializers": {"w": {"shape": [1, 2, 7, 7], "value": 0.02}},
            "nodes": [{"op": "Relu", "inputs": ["x"], "outputs": ["r"]},
                      {"op": "ReduceMean", "inputs": ["r"], "outputs": ["m"], "attrs": {"axes": [1], "keepdims": 1}},
                      {"op": "ReduceMax", "inputs": ["r"], "outputs": ["M"], "attrs": {"axes": [1], "keepdims": 1}},
                      {"op": "Concat", "inputs": ["m", "M"], "outputs": ["c"], "attrs": {"axis": 1}},
                      {"op": "Conv", "inputs": ["c", "w"], "outputs": ["a"], "attrs": {"pads": [3, 3, 3, 3]}},
                      {"op": "Sigmoid", "inputs": ["a"], "outputs": ["s"]},
                      {"op": "Mul", "inputs": ["r", "s"], "outputs": ["y"]}, {"op": "Relu", "inputs": ["y"]}]}
    path = tmp_path / "cbam.onnx"
    path.write_bytes(fixtures.build(spec).SerializeToString())
    result = fix(path, db, db.target("orin", "10.3"))
    assert sorted(c.recipe for c in result.changes) == ["broadcast-expand", "reduce-to-pool-conv"]
    assert result.before.summary["layers_on_gpu"] == 2 and result.after.summary["layers_on_gpu"] == 0
    assert result.after.summary["dla_subgraphs"] == 1 and result.proof.passed
