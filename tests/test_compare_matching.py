"""How `compare` resolves log names: each matching path, what counts as proof for unnamed layers, and figures
that name their denominators. Small models built with onnx.helper, logs made up in TensorRT's forms."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlarules import trtlog
from dlarules.api import check
from dlarules.compare import compare, render_text


@pytest.fixture(scope="module")
def report(db):
    """/a/Relu -> /a/Max(b) -> /a/Min(c) -> /a/Relu2 -> /h/Reshape (3-D) -> /h/Softmax on Orin 10.3: the constant
    operands b and c are CONSTANT layers with an unnamed broadcast SHUFFLE each (layers 2 and 5)."""
    b = numpy_helper.from_array(np.ones((1, 1, 16), np.float32), "b")
    c = numpy_helper.from_array(np.full((1, 1, 16), 2, np.float32), "c")
    target = numpy_helper.from_array(np.array([1, 8, 256], np.int64))
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="/a/Relu"),
             helper.make_node("Max", ["r", "b"], ["s"], name="/a/Max"),
             helper.make_node("Min", ["s", "c"], ["m"], name="/a/Min"),
             helper.make_node("Relu", ["m"], ["r2"], name="/a/Relu2"),
             helper.make_node("Constant", [], ["/h/Constant_output_0"], name="/h/Constant", value=target),
             helper.make_node("Reshape", ["r2", "/h/Constant_output_0"], ["f"], name="/h/Reshape"),
             helper.make_node("Softmax", ["f"], ["y"], name="/h/Softmax", axis=-1)]
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 256])], [b, c])
    r = check(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), db, hardware="orin", trt="10.3")
    assert [v.name for v in r.layers if v.kind == "SHUFFLE" and "Unnamed" in v.name] == \
        ["(Unnamed Layer* 2) [Shuffle]", "(Unnamed Layer* 5) [Shuffle]"]
    return r


def _gpu_log(*entries: str) -> trtlog.BuildLog:
    return trtlog.parse("\n".join(["---------- Layers Running on GPU ----------",
                                   *[f"[GpuLayer] {e}" for e in entries]]))


def _rows(report, *entries):
    c = compare(report, _gpu_log(*entries))
    return c, {r.log: r for r in c.gpu_rows}


def test_by_layer_name_fused_parts_clone_and_node(report):
    c, rows = _rows(report, "SOFTMAX: /h/Softmax", "ELEMENTWISE: /a/Max + /a/Min", "SHUFFLE: /h/Reshape_clone_1")
    assert rows["SOFTMAX: /h/Softmax"].matched_by == "name" and rows["SOFTMAX: /h/Softmax"].status == "agreed"
    fused = rows["ELEMENTWISE: /a/Max + /a/Min"]
    assert fused.matched_by == "fused-part" and len(fused.predicted) == 2
    assert rows["SHUFFLE: /h/Reshape_clone_1"].matched_by == "clone"


def test_a_tensor_name_resolves_through_the_node_that_makes_it(report):
    """TensorRT names constants after the ONNX tensor (`/h/Constant_output_0`); dlarules makes no layer of that
    Constant (the Reshape takes it as its shape): matched, and classed as a lowering difference."""
    c, rows = _rows(report, "CONSTANT: /h/Constant_output_0", "CONSTANT: b")
    row = rows["CONSTANT: /h/Constant_output_0"]
    assert row.status == "no-layer-predicted" and row.disagreement == "lowering-differs"
    assert row.matched_by == "tensor" and "/h/Constant" in row.note and "build-time constant" in row.note
    assert rows["CONSTANT: b"].status == "agreed" and not c.unmatched_names


def test_unnamed_layer_matched_by_its_position_between_named_ones(report):
    # the log's own number (7) is not the proof: the one unnamed shuffle between b and /a/Max is
    c, rows = _rows(report, "CONSTANT: b", "SHUFFLE: (Unnamed Layer* 7) [Shuffle]", "ELEMENTWISE: /a/Max")
    row = rows["SHUFFLE: (Unnamed Layer* 7) [Shuffle]"]
    assert row.matched_by == "unnamed-position" and row.predicted == ["SHUFFLE: (Unnamed Layer* 2) [Shuffle] [DLA:0]"]
    assert row.status == "seen-not-predicted" and row.disagreement == "missing-rule"


def test_unnamed_layers_are_never_matched_by_type_and_order_alone(report):
    # alone in the log, even with the same number as a predicted layer: nothing proves which layer it is
    c, _ = _rows(report, "SHUFFLE: (Unnamed Layer* 2) [Shuffle]")
    assert c.unmatched_names == ["(Unnamed Layer* 2) [Shuffle]"] and c.gpu_rows[0].disagreement == "name-not-matched"
    # between /a/Relu and /a/Relu2 lie two unnamed shuffles: ambiguous, so unmatched
    c, _ = _rows(report, "ACTIVATION: /a/Relu", "SHUFFLE: (Unnamed Layer* 9) [Shuffle]", "ACTIVATION: /a/Relu2")
    assert c.unmatched_names == ["(Unnamed Layer* 9) [Shuffle]"]


def test_a_type_mismatch_is_a_lowering_difference(report):
    c, rows = _rows(report, "REDUCE: /a/Relu2")
    assert rows["REDUCE: /a/Relu2"].disagreement == "lowering-differs"
    assert "lowers this node to ACTIVATION" in rows["REDUCE: /a/Relu2"].note


def test_predicted_gpu_layers_the_log_runs_on_dla_are_rule_too_strict(report):
    c = compare(report, _gpu_log("SOFTMAX: /h/Softmax"))
    assert {e.disagreement for e in c.extra_rows} == {"rule-too-strict"}
    assert c.disagreements["rule-too-strict"] == len(c.extra_rows) > 0


def test_warnings_only_figures_name_their_denominators(report, tmp_path):
    f = tmp_path / "w.log"
    f.write_text("[W] [TRT] Layer '/h/Softmax' (SOFTMAX): Unsupported on DLA. Switching this layer's device type to GPU.\n"
                 "[W] [TRT] Layer '/other/Export' (SHUFFLE): Unsupported on DLA. Switching this layer's device type to GPU.\n")
    c = compare(report, trtlog.read(f))
    d = c.to_dict()["summary"]
    assert c.mode == "warnings" and d["gpu_recall_pct"] == 100.0
    assert d["denominators"]["gpu_recall"] == "log GPU layers matched to the model: 1 of 2 (1 unmatched)"
    # what a partial log cannot show is null, not 0
    assert d["dla_subgraphs_agreed"] is None and d["dla_subgraphs_log"] is None and d["gpu_precision_pct"] is None
    assert "recall 100.0% of the warned GPU fallbacks (over 1 of 2 log GPU layers matched; 1 unmatched)" in render_text(c)


def test_nothing_matched_gives_no_recall(report, tmp_path):
    f = tmp_path / "w.log"
    f.write_text("[W] [TRT] Layer '/other/Export' (SHUFFLE): Unsupported on DLA. Switching this layer's device type to GPU.\n")
    c = compare(report, trtlog.read(f))
    assert c.recall is None and c.to_dict()["summary"]["gpu_recall_pct"] is None and "recall n/a" in render_text(c)


def test_a_subgraph_only_log_compares_the_subgraphs(report):
    log = trtlog.parse("[V] [TRT] {ForeignNode[/a/Relu.../a/Relu]} successfully offloaded to DLA.\n"
                       "[V] [TRT] {ForeignNode[/a/Relu2.../a/Relu2]} successfully offloaded to DLA.\n")
    c = compare(report, log)
    assert c.mode == "subgraphs" and c.observed_subgraphs == 2 and c.precision is None
    assert c.to_dict()["summary"]["dla_subgraphs_log"] == 2
