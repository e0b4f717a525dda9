"""Q/DQ (explicit quantization) models: per-release truth, Q/DQ fusion in lowering, the qdq-to-calibration recipe."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlarules.api import check, load_db
from dlarules.fix import artifact_path, fix, write
from dlarules.recipes import qdq

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
QDQ_MODEL = CORPUS / "mobilenet_v2_qdq_int8.onnx"
FLOAT_MODEL = CORPUS / "mobilenet_v2.onnx"
needs_corpus = pytest.mark.skipif(not QDQ_MODEL.exists(), reason="corpus not available")


@pytest.fixture(scope="module")
def db():
    return load_db()


def _orin_releases(db):
    return [r.version for r in db.releases if "orin" in r.hardware]


def _gpu_names(report):
    return sorted(v.name for v in report.gpu_layers)


def _qdq_conv_model(zero_point: int = 0) -> onnx.ModelProto:
    """x -> Q/DQ -> Conv(int8 weights via DQ) -> Q/DQ -> Relu -> y: a small symmetric Q/DQ network."""
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (8, 4, 3, 3)).astype(np.int8)
    inits = [numpy_helper.from_array(w, "w_q"), numpy_helper.from_array(np.array(0.01, np.float32), "w_s"),
             numpy_helper.from_array(np.array(0, np.int8), "w_z"),
             numpy_helper.from_array(np.array(0.02, np.float32), "a_s"),
             numpy_helper.from_array(np.array(zero_point, np.int8), "a_z"),
             numpy_helper.from_array(np.array(0.05, np.float32), "c_s")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "a_s", "a_z"], ["xq"], name="x_q"),
             helper.make_node("DequantizeLinear", ["xq", "a_s", "a_z"], ["xd"], name="x_dq"),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], name="w_dq"),
             helper.make_node("Conv", ["xd", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "c_s", "w_z"], ["cq"], name="c_q"),
             helper.make_node("DequantizeLinear", ["cq", "c_s", "w_z"], ["cd"], name="c_dq"),
             helper.make_node("Relu", ["cd"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_every_release_says_whether_dla_takes_qdq_with_a_source(db):
    for r in db.releases:
        eq = r.explicit_quantization
        assert set(eq) >= {"dla", "confidence", "source"}, r.version
        assert eq["source"].get("doc") and eq["source"].get("url"), r.version
        if eq["confidence"] == "documented":
            assert eq["source"].get("quote"), r.version   # documented only with the release's own words
        assert r.parser["qdq_fusion"] is bool(eq["dla"])
    takes = {r.version for r in db.releases if r.explicit_quantization["dla"]}
    assert takes == {"11.4"}


def test_small_qdq_network_fuses_on_11_4_and_stays_split_before(db):
    model = _qdq_conv_model()
    fused = check(model, db, hardware="orin", trt="11.4")
    kinds = [v.kind for v in fused.layers]
    assert "QUANTIZE" not in kinds and "DEQUANTIZE" not in kinds, kinds
    conv = next(v for v in fused.layer_graph.layers if v.kind == "CONVOLUTION")
    assert conv.precision == "int8"
    assert {"x_q", "x_dq", "c_q", "c_dq"} <= set(conv.sources) | {
        n for x in fused.layer_graph.layers for n in x.sources}
    assert fused.explicit_quantization["fused"] == 4 and fused.explicit_quantization["weights_folded"] == 1
    split = check(model, db, hardware="orin", trt="10.3", precision="int8")
    assert [v.kind for v in split.gpu_layers].count("QUANTIZE") == 2
    rules = {f.rule: f for v in split.gpu_layers for f in v.findings}
    assert rules["QDQ-EXPLICIT"].fix == "qdq-to-calibration"
    eq = split.explicit_quantization
    assert eq["separate_layers"] == 4 and eq["fix"] == "qdq-to-calibration"


def test_unpaired_quantize_stays_a_layer_and_is_judged(db):
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], name="lonely_q")]
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z")]
    g = helper.make_graph(nodes, "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.INT8, [1, 4, 8, 8])], inits)
    r = check(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), db, hardware="orin", trt="11.4")
    assert [v.kind for v in r.layers] == ["QUANTIZE"]


@needs_corpus
def test_corpus_qdq_model_on_every_orin_release(db):
    for trt in _orin_releases(db):
        rel = next(r for r in db.releases if r.version == trt)
        prec = None if trt.startswith("11") else "int8"
        r = check(str(QDQ_MODEL), db, hardware="orin", trt=trt, precision=prec)
        info = r.explicit_quantization
        assert info is not None and info["nodes"] == 199 and info["source"], trt
        assert info["asymmetric_nodes"] == 132    # onnxruntime's asymmetric activations: the parser rejects them
        assert info["int32_dequantize_nodes"] == 14   # and its int32 biases
        if rel.explicit_quantization["dla"]:
            # 11.x builds a float model in FP32 (strongly typed, no --int8): its INT8 placement is the last one
            # a release with an INT8 build mode gives (10.7)
            plain = check(str(FLOAT_MODEL), db, hardware="orin", trt="10.7", precision="int8")
            assert not any(v.kind in ("QUANTIZE", "DEQUANTIZE") for v in r.gpu_layers)
            assert _gpu_names(r) == _gpu_names(plain)
            assert r.summary["dla_subgraphs"] == plain.summary["dla_subgraphs"]
            assert r.summary["transitions"] == plain.summary["transitions"]
            assert info["fused"] == 132
        else:
            assert info["separate_layers"] == 132 and info["fix"] == "qdq-to-calibration"
            assert r.summary["fallbacks_by_rule"]["QDQ-EXPLICIT"] == 132


def _parse_cache(text: str) -> tuple[str, dict[str, float]]:
    """TensorRT's calibration cache format: a header line, then `tensor: <8 hex digits of the float32 bits>`."""
    lines = text.splitlines()
    header, entries = lines[0], {}
    for line in lines[1:]:
        name, _, hexval = line.rpartition(": ")
        assert len(hexval) == 8 and all(c in "0123456789abcdef" for c in hexval), line
        entries[name] = struct.unpack(">f", bytes.fromhex(hexval))[0]
    return header, entries


def test_cache_format_round_trips():
    assert qdq.float_to_hex(1.0) == "3f800000"
    assert qdq.float_to_hex(0.05) == "3d4ccccd"
    assert qdq.trt_version_number("8.6") == 8600 and qdq.trt_version_number("10.3") == 100300
    header, entries = _parse_cache(qdq.calibration_cache({"a": 0.05, "b:0": 1.5}, "8.6"))
    assert header == "TRT-8600-EntropyCalibration2"
    assert entries == {"a": pytest.approx(0.05, rel=1e-7), "b:0": 1.5}


def test_trtexec_command_is_the_translators():
    assert qdq.trtexec_command("m.onnx", "m.calib.cache", None) == (
        "trtexec --onnx=m.onnx --calib=m.calib.cache --useDLACore=0 --int8 --fp16 --allowGPUFallback")
    assert qdq.trtexec_command("m.onnx", "c", "m.txt").endswith(
        "--precisionConstraints=prefer --layerPrecisions=$(cat m.txt)")


def test_strip_small_model_symmetric_is_exact_scales(tmp_path):
    from dlarules.prove import run
    s = qdq.strip(_qdq_conv_model())
    x = {"x": np.random.default_rng(2).uniform(-2.5, 2.5, (1, 4, 16, 16)).astype(np.float32)}
    want = run(_qdq_conv_model(), x, "qdq")["y"]
    assert np.array_equal(run(qdq.requantized(s), x, "requantized")["y"], want)

    assert s.pairs == 2 and s.weights == 1 and not s.relus and not s.asymmetric
    assert s.scales == {"x": pytest.approx(0.02), "c": pytest.approx(0.05)}
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in s.model.graph.node)
    onnx.checker.check_model(s.model, full_check=True)


@needs_corpus
def test_fix_qdq_to_calibration_on_the_corpus_model(db, tmp_path):
    target = db.target("orin", "10.3", precision="int8")
    result = fix(str(QDQ_MODEL), db, target, only={"qdq-to-calibration"})
    assert [c.recipe for c in result.changes] == ["qdq-to-calibration"]
    assert result.before.summary["layers_on_gpu"] == 183 and result.before.summary["dla_subgraphs"] == 16
    plain = check(str(FLOAT_MODEL), db, target=target)
    assert _gpu_names(result.after) == _gpu_names(plain)
    assert result.after.summary["dla_subgraphs"] == plain.summary["dla_subgraphs"] == 2
    p = result.proof
    assert p is not None and p.passed and p.rtol == 0.0 and p.atol == 0.0
    # 1. the float model with its recorded quantizers put back is the Q/DQ model, bit for bit
    exact = [o for o in p.outputs if "recorded quantizers" in o.name]
    assert len(exact) == 1 and exact[0].gate and exact[0].max_abs == 0.0
    # 2. at each of the 65 quantized activations (the input's quantizer is the input format) the float layer is
    #    within half a quantization step of the Q/DQ value
    local = [o for o in p.outputs if "quantized tensor(s)" in o.name]
    assert len(local) == 1 and local[0].gate and local[0].passed and local[0].max_abs <= 0.5 + 1e-3
    assert local[0].name.startswith("65 ")
    # 3. shown, not a gate: the float model against the Q/DQ model at the output, within the output steps
    shown = [o for o in p.outputs if not o.gate]
    assert len(shown) == 1 and shown[0].passed and 0 < shown[0].max_abs < 1e-9
    out = write(result, tmp_path / "m.dla.onnx")
    cache = artifact_path(out, qdq.CACHE_SUFFIX)
    header, entries = _parse_cache(cache.read_text())
    assert header == "TRT-100300-EntropyCalibration2"
    original = onnx.load(str(QDQ_MODEL))
    quantized = {n.input[0] for n in original.graph.node if n.op_type == "QuantizeLinear"}
    consts = {i.name for i in original.graph.initializer}
    activations = quantized - consts
    assert len(activations) == 66
    written = onnx.load(str(out))
    names = {o for n in written.graph.node for o in n.output} | {i.name for i in written.graph.input}
    # a quantized tensor that is a graph output keeps the output's name
    renamed = {n.input[0]: d.output[0] for n in original.graph.node if n.op_type == "QuantizeLinear"
               for d in original.graph.node if d.op_type == "DequantizeLinear" and d.input[0] == n.output[0]
               and d.output[0] in {o.name for o in original.graph.output}}
    for t in activations:
        t = renamed.get(t, t)
        assert t in entries and entries[t] > 0, t
    assert set(entries) <= names          # every entry names a tensor of the written model
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in written.graph.node)
    with pytest.raises(Exception):
        write(result, tmp_path / "m.dla.onnx")   # never replaces what exists without --force


@needs_corpus
def test_fix_does_not_strip_where_dla_takes_qdq(db):
    target = db.target("orin", "11.4")
    result = fix(str(QDQ_MODEL), db, target, only={"qdq-to-calibration"}, verify=False)
    assert not result.changes and not result.artifacts


def test_dq_read_by_a_layer_without_int8_stays_a_layer(db):
    """Conv -> Q -> DQ -> Softmax on 11.4: the Q fuses into the convolution (it emits INT8), the DQ before the
    SoftMax (no INT8 implementation) stays a DEQUANTIZE layer."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"], name="c_q"),
             helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["cd"], name="c_dq"),
             helper.make_node("Softmax", ["cd"], ["y"], name="softmax", axis=1)]
    g = helper.make_graph(nodes, "qs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 1, 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1, 1])], inits)
    r = check(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), db, hardware="orin", trt="11.4")
    layers = r.layer_graph.layers
    kinds = [x.kind for x in layers]
    assert "QUANTIZE" not in kinds and kinds.count("DEQUANTIZE") == 1, kinds
    conv = next(x for x in layers if x.kind == "CONVOLUTION")
    assert conv.precision == "int8" and "c_q" in conv.sources
    dq = next(x for x in layers if x.kind == "DEQUANTIZE")
    assert dq.inputs[0].name == "c"


def test_cli_fix_writes_model_cache_layer_precisions_and_prints_the_command(tmp_path):
    """A node reading a tensor without a scale (the Sigmoid after the last Q/DQ pair's Relu) goes to the
    --layerPrecisions file; the printed trtexec command uses all three files."""
    from conftest import run_cli
    m = _qdq_conv_model()
    g = m.graph
    g.node[-1].output[0] = "r"
    g.node.append(helper.make_node("Sigmoid", ["r"], ["y"], name="sig"))
    src = tmp_path / "q.onnx"
    onnx.save(m, str(src))
    out = tmp_path / "q.dla.onnx"
    r = run_cli("fix", str(src), "--target", "orin", "--trt", "8.6", "--precision", "int8",
                "--only", "qdq-to-calibration", "-o", str(out))
    assert r.returncode == 0, r.stderr
    cache, layer_arg = tmp_path / "q.dla.calib.cache", tmp_path / "q.dla.layer_arg.txt"
    header, entries = _parse_cache(cache.read_text())
    assert header == "TRT-8600-EntropyCalibration2" and set(entries) == {"x", "c"}
    assert layer_arg.read_text() == "sig:fp16"
    assert (f"trtexec --onnx={out} --calib={cache} --useDLACore=0 --int8 --fp16 --allowGPUFallback "
            f"--precisionConstraints=prefer --layerPrecisions=$(cat {layer_arg})") in r.stdout
    assert "proof" in r.stdout and "passed" in r.stdout
    again = run_cli("fix", str(src), "--target", "orin", "--trt", "8.6", "--precision", "int8",
                    "--only", "qdq-to-calibration", "-o", str(tmp_path / "other.onnx"))
    assert again.returncode == 0                       # a fresh output name: fresh side files
    (tmp_path / "clash.dla.onnx").unlink(missing_ok=True)
    (tmp_path / "clash.calib.cache").write_text("mine")
    clash = run_cli("fix", str(src), "--target", "orin", "--trt", "8.6", "--precision", "int8",
                    "--only", "qdq-to-calibration", "-o", str(tmp_path / "clash.onnx"))
    assert clash.returncode == 2 and len(clash.stderr.strip().splitlines()) == 1
    assert "clash.calib.cache" in clash.stderr and (tmp_path / "clash.calib.cache").read_text() == "mine"
    assert not (tmp_path / "clash.onnx").exists()


@needs_corpus
@pytest.mark.parametrize("trt", ["10.3", "11.4"])
def test_json_report_states_the_qdq_handling_and_validates(db, trt):
    import json
    import jsonschema
    from dlarules.ruledb import schemas_dir
    r = check(str(QDQ_MODEL), db, hardware="orin", trt=trt, precision="int8" if trt == "10.3" else None)
    data = json.loads(json.dumps(r.to_dict()))
    jsonschema.validate(data, json.loads((schemas_dir() / "report.schema.json").read_text()))
    eq = data["explicit_quantization"]
    assert eq["dla_takes_qdq"] is (trt == "11.4") and eq["url"].startswith("https://")
    assert eq["confidence"] == ("documented" if trt == "11.4" else "unverified")
    # every Q/DQ node is accounted for: folded into weights, fused into a layer, or a layer of its own
    assert eq["weights_folded"] + eq["fused"] + eq["separate_layers"] == eq["nodes"] == 199
    # fused Q/DQ nodes are listed with the layer that absorbed them
    if trt == "11.4":
        qdq_nodes = [n for n in data["nodes"] if n["op"] in ("QuantizeLinear", "DequantizeLinear")
                     and n["status"] != "folded"]
        # on the layers around them: DLA, except the 4 fused into the two GPU layers (GlobalAveragePool, the
        # reshape after the classifier) and the Flatten's pair, whose no-op reshape the builder removes
        status = [n["status"] for n in qdq_nodes]
        assert status.count("dla") == 126 and status.count("gpu") == 4 and status.count("no-layer") == 2
    assert r.explicit_quantization is not None and check(str(FLOAT_MODEL), db).explicit_quantization is None


def test_per_layer_rewrites_after_the_strip_are_proven_on_the_float_model(db, tmp_path):
    """With --allow-approx the strip runs, then the per-layer recipes (here hardswish-decompose, Orin 8.6 INT8);
    those are proven like every rewrite, on the float model before and after them."""
    m = _qdq_conv_model()
    m.graph.node[-1].op_type = "HardSwish"
    src = tmp_path / "h.onnx"
    onnx.save(m, str(src))
    result = fix(str(src), db, db.target("orin", "8.6", precision="int8"), allow_approx=True)
    assert [c.recipe for c in result.changes] == ["qdq-to-calibration", "hardswish-decompose"]
    later = [o for o in result.proof.outputs if "per-layer rewrites" in o.name]
    assert len(later) == 1 and later[0].gate and later[0].passed
    assert result.proof.passed


def test_qat_export_per_channel_weights_and_constant_node_scales(db):
    """pytorch-quantization / Model Optimizer form: float weights behind a per-channel Q -> DQ (axis 0), activation
    scales and zero points as Constant nodes. The weights become the fake-quantized float weights TensorRT would
    use; the re-quantized float model equals the Q/DQ model exactly."""
    from dlarules.prove import run
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    ws = (np.abs(w).reshape(6, -1).max(axis=1) / 127).astype(np.float32)
    const = lambda name, v: helper.make_node("Constant", [], [name], name=f"{name}_c",  # noqa: E731
                                             value=numpy_helper.from_array(v, name))
    nodes = [const("a_s", np.array(0.03, np.float32)), const("a_z", np.array(0, np.int8)),
             helper.make_node("QuantizeLinear", ["x", "a_s", "a_z"], ["xq"], name="x_q"),
             helper.make_node("DequantizeLinear", ["xq", "a_s", "a_z"], ["xd"], name="x_dq"),
             helper.make_node("QuantizeLinear", ["w", "w_s", "w_z"], ["wq"], name="w_q", axis=0),
             helper.make_node("DequantizeLinear", ["wq", "w_s", "w_z"], ["wd"], name="w_dq", axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(ws, "w_s"),
             numpy_helper.from_array(np.zeros(6, np.int8), "w_z")]
    g = helper.make_graph(nodes, "qat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 8, 8])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    s = qdq.strip(m)
    assert s.weights == 1 and s.pairs == 1 and s.scales == {"x": pytest.approx(0.03)} and not s.left
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in s.model.graph.node)
    folded = {i.name: numpy_helper.to_array(i) for i in s.model.graph.initializer}["wd"]
    fq = np.clip(np.rint(w / ws[:, None, None, None]), -128, 127) * ws[:, None, None, None]
    assert np.allclose(folded, fq, rtol=0, atol=1e-7)
    x = {"x": rng.uniform(-3.8, 3.8, (1, 3, 8, 8)).astype(np.float32)}
    assert np.array_equal(run(qdq.requantized(s), x, "requantized")["y"], run(m, x, "qat")["y"])
    # the conv is on DLA once stripped (Orin 8.6 INT8); with the Q/DQ it is the QUANTIZE/DEQUANTIZE that is not
    assert check(s.model, db, hardware="orin", trt="8.6", precision="int8").summary["layers_on_gpu"] == 0
