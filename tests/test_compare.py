"""The prediction against real TensorRT logs: DDRNet (every name in its log exists in the corpus graph) and
NVIDIA's DLA tutorial CNN and the jetson_benchmarks super-resolution CNN, rebuilt with onnx.helper
(tests/tutorial_model.py, tests/superres_model.py)."""
from __future__ import annotations

import json

import pytest

from dlarules.api import check
from dlarules.compare import compare, render_text
from dlarules import trtlog

import tutorial_model
from conftest import CORPUS, LOGS, need_shared, run_cli

DDRNET = "ddrnet23_slim_seedlike_1024x2048.onnx"


@pytest.fixture(scope="module")
def ddrnet_graph():
    need_shared()
    from dlarules.model import load_graph
    return load_graph(CORPUS / DDRNET)


def test_ddrnet_fp16_lines_up_every_gpu_layer(db, ddrnet_graph):
    c = compare(check(ddrnet_graph, db, hardware="xavier", trt="8.5"), trtlog.read(LOGS / "ddrnet_before_fix.log"))
    assert len(c.gpu_rows) == 15 and not c.unmatched_names
    status = {r.log: r.status for r in c.gpu_rows}
    # the one disagreement: the 5x5 pool, which only the INT8 pooling rule sends to the GPU
    assert [k for k, v in status.items() if v != "agreed"] == ["POOLING: /spp/scale1/scale1.0/AveragePool"]
    row = next(r for r in c.gpu_rows if r.status != "agreed")
    assert "missing rule" in row.note
    # fused and unnamed TensorRT layers map back to their ONNX nodes
    fused = next(r for r in c.gpu_rows if r.log.startswith("SHUFFLE: (Unnamed Layer* 195)"))
    assert fused.status == "agreed" and "/softmax/Transpose_1" in fused.predicted[0]
    assert (c.predicted_subgraphs, c.observed_subgraphs) == (5, 5)
    assert [r.status for r in c.subgraph_rows] == ["agreed", "agreed", "last-only", "agreed", "agreed"]
    assert c.precision == 1.0 and round(c.recall, 3) == round(14 / 15, 3)
    assert not c.agreed


def test_ddrnet_int8_agrees_completely(db, ddrnet_graph):
    c = compare(check(ddrnet_graph, db, hardware="xavier", trt="8.5", precision="int8"),
                trtlog.read(LOGS / "ddrnet_before_fix.log"))
    assert c.agreed and c.layer_agreement == 1.0 and c.precision == c.recall == 1.0
    assert all(r.status == "agreed" for r in c.subgraph_rows)
    assert "agreement: 100.0% of layers" in render_text(c)


def test_names_from_another_export_are_reported_unmatched(db, ddrnet_graph):
    c = compare(check(ddrnet_graph, db, hardware="xavier", trt="8.5"), trtlog.read(LOGS / "ddrnet_after_fix.log"))
    # the hand-edited model made its own unnamed shuffle before the softmax: nothing in this model proves which
    # layer it is (no unnamed shuffle lies between /Resize_2 and /softmax/Softmax here), so it stays unmatched; the
    # one after the softmax is its consumer, fused with /softmax/Transpose_1 in the prediction too
    assert c.unmatched_names == ["(Unnamed Layer* 187) [Shuffle]"]
    row = next(r for r in c.gpu_rows if "189" in r.log)
    assert row.status == "agreed" and row.matched_by == "unnamed-position" and "/softmax/Transpose_1" in row.predicted[0]
    assert any(r.status == "unmatched" and r.disagreement == "name-not-matched" for r in c.gpu_rows)


@pytest.mark.parametrize("style,log,trt", [
    ("torch1", "02_jetson-dla-tutorial-model-bn_orin_trtNA.log", "8.4"),
    ("torch2", "03_jetson-dla-tutorial-model-bn_agx-orin-jp5.1_trt8.5.log", "8.5"),
])
def test_dla_tutorial_logs(db, style, log, trt):
    need_shared()
    report = check(tutorial_model.build(style), db, hardware="orin", trt=trt, precision="int8",
                   input_shapes={"input": (32, 3, 32, 32)})
    c = compare(report, trtlog.read(LOGS / "public" / log))
    assert c.agreed, render_text(c)
    assert c.layer_agreement == 1.0


def test_compare_cli_json_and_exit_codes(tmp_path):
    need_shared()
    r = run_cli("compare", str(CORPUS / DDRNET), "--log", str(LOGS / "ddrnet_before_fix.log"), "--target", "xavier",
                "--trt", "8.5", "--precision", "int8", "--format", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["summary"]["agreed"] and data["summary"]["dla_subgraphs_agreed"] == 5
    r = run_cli("compare", str(CORPUS / DDRNET), "--log", str(LOGS / "ddrnet_before_fix.log"), "--target", "xavier",
                "--trt", "8.5")
    assert r.returncode == 1 and "seen-not-predicted" in r.stdout
    bad = tmp_path / "no_layers.log"
    bad.write_text("[I] [TRT] TensorRT version: 8.5.2\n[I] [TRT] Engine built in 12 s.\n")
    r = run_cli("compare", str(CORPUS / DDRNET), "--log", str(bad))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and str(bad) in r.stderr


def _warned(tmp_path, *layers):
    f = tmp_path / "warnings.log"
    f.write_text("".join(f"[W] [TRT] Layer '{name}' ({kind}): Unsupported on DLA. Switching this layer's device type "
                         "to GPU.\n" for kind, name in layers))
    return f


def test_warnings_only_log_checks_the_warned_layers(tmp_path, db):
    # Orin, TensorRT 8.6: HardSwish is not a DLA activation; the log is an excerpt holding only its warning
    from dlarules import fixtures
    model = fixtures.build({"nodes": [{"op": "Relu"}, {"op": "HardSwish"}, {"op": "Relu"}]})
    report = check(model, db, hardware="orin", trt="8.6")
    hs = next(v.name for v in report.layers if v.kind == "ACTIVATION" and report.placement.device.get(v.index, "GPU") == "GPU")
    c = compare(report, trtlog.read(_warned(tmp_path, ("ACTIVATION", hs))))
    assert c.mode == "warnings" and c.agreed and c.recall == 1.0
    d = c.to_dict()
    assert d["summary"]["gpu_precision_pct"] is None and d["summary"]["dla_subgraphs_log"] is None
    assert "only fallback warnings" in render_text(c) and "precision and subgraphs need" in render_text(c)
    # a warned layer dlarules runs on DLA is a disagreement
    relu = next(v.name for v in report.layers if v.kind == "ACTIVATION" and v.name != hs)
    c = compare(report, trtlog.read(_warned(tmp_path, ("ACTIVATION", hs), ("ACTIVATION", relu))))
    assert not c.agreed and [r.status for r in c.gpu_rows] == ["agreed", "seen-not-predicted"] and c.recall == 0.5
    # the HardSwish the excerpt does not mention is not claimed to run on DLA: a partial log cannot show that
    c = compare(report, trtlog.read(_warned(tmp_path, ("ACTIVATION", relu))))
    assert c.to_dict()["predicted_not_seen"] == [] and "predicted-not-seen" not in render_text(c)


def test_super_resolution_log_07_agrees(db):
    # jetson_benchmarks' super_resolution_bsd500 on Xavier (TensorRT 8.2, --best): the convolutions are one DLA
    # subgraph; PixelShuffle's Reshape + Transpose (fused) and the last Reshape run on the GPU (no DLA shuffle < 8.5)
    import superres_model
    need_shared()
    log = trtlog.read(LOGS / "public" / "07_super-resolution-bsd500-onnx_xavier-inferred_trt8.2-inferred.log")
    c = compare(check(superres_model.build(), db, hardware="xavier", trt="8.2", precision="int8"), log)
    assert c.agreed and c.layer_agreement == 1.0
    assert [r.log for r in c.gpu_rows] == ["SHUFFLE: node_of_17 + node_of_18", "SHUFFLE: node_of_output_0"]
    assert [r.predicted for r in c.subgraph_rows] == ["ForeignNode[node_of_9...node_of_15]"]


# NVIDIA's DLA tutorial, step 9 (github.com/NVIDIA-AI-IOT/jetson_dla_tutorial, README): the trained CNN with its
# GlobalAveragePool replaced by hand with a 2x2 AveragePool, built with trtexec (INT8, Orin, TensorRT 8.4 era).
STEP9_LOG = """\
[04/28/2022-21:30:53] [I] [TRT] ---------- Layers Running on DLA ----------
[04/28/2022-21:30:53] [I] [TRT] [DlaLayer] {ForeignNode[Conv_0...Gemm_15]}
[04/28/2022-21:30:53] [I] [TRT] ---------- Layers Running on GPU ----------
[04/28/2022-21:30:53] [I] [TRT] [GpuLayer] SHUFFLE: reshape_after_Gemm_15
"""


def test_fix_reproduces_the_dla_tutorial_hand_edit(tmp_path, db):
    # `fix` makes the same edit the tutorial makes by hand, and the result agrees with the tutorial's own log
    from dlarules.fix import fix
    src = tmp_path / "model_bn.onnx"
    src.write_bytes(tutorial_model.build("torch1").SerializeToString())
    target = db.target("orin", "8.4", precision="int8")
    result = fix(src, db, target, input_shapes={"input": (32, 3, 32, 32)})
    assert [c.recipe for c in result.changes] == ["gap-to-avgpool"] and "AveragePool 2x2" in result.changes[0].detail
    assert result.proof.passed
    c = compare(check(result.model, db, hardware="orin", trt="8.4", precision="int8"),
                trtlog.parse(STEP9_LOG, "tutorial step 9"))
    assert c.agreed and c.layer_agreement == 1.0, render_text(c)


def test_yolov8m_log_names_all_resolve_in_the_unsimplified_export(db):
    """Log 04 (YOLOv8m, Orin, TensorRT 8.6) against the yolov8n export made the way its author exported it
    (ultralytics 8.3.21, opset 19, no onnxslim): every ONNX-derived name of the log resolves, constants through
    their output tensor; only TensorRT's own unnamed constants, which nothing here can prove, stay unmatched."""
    need_shared()
    report = check(CORPUS / "yolov8n_640_ul8321_unsimplified.onnx", db, hardware="orin", trt="8.6")
    c = compare(report, trtlog.read(LOGS / "public" / "04_yolov8m_agx-orin64-jp6.0_trt8.6.log"))
    assert c.mode == "warnings" and len(c.gpu_rows) == 12
    assert all(n.startswith("(Unnamed Layer*") for n in c.unmatched_names) and len(c.unmatched_names) == 5
    rows = {r.log.split(": ", 1)[1]: r for r in c.gpu_rows}
    for name in ("/model.22/Div", "/model.22/Gather_output_0", "/model.22/Constant_5_output_0",
                 "/model.22/Constant_6_output_0"):
        assert rows[name].status == "no-layer-predicted" and rows[name].disagreement == "lowering-differs", name
    assert rows["/model.22/Gather_output_0"].matched_by == "tensor"
    d = c.to_dict()["summary"]
    assert d["gpu_layers_matched"] == 7 and d["dla_subgraphs_agreed"] is None
    assert d["denominators"]["gpu_recall"] == "log GPU layers matched to the model: 7 of 12 (5 unmatched)"
