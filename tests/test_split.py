"""`dlarules split`: the largest standalone DLA part and the GPU rest, proven together, checked as a loadable."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from dlarules.api import check
from dlarules.split import default_outputs, load_io_requirements, split

from conftest import CORPUS, need_shared, run_cli

RNG = np.random.default_rng(7)


def _w(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array((RNG.standard_normal(shape) * 0.1).astype(np.float32), name)


def _model(nodes, inits, outputs, in_shape=(1, 8, 32, 32), path=None) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                          outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    if path is not None:
        onnx.save(m, str(path))
    return m


def _out(name: str, shape=None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def conv_stack_pool_more(path, second_output: bool = False):
    """conv -> relu -> conv -> (9x9 AveragePool: outside DLA's 1..8 window, GPU) -> conv -> relu."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="c1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="c2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("AveragePool", ["c2"], ["p"], name="p", kernel_shape=[9, 9], pads=[4, 4, 4, 4]),
             helper.make_node("Conv", ["p", "w3"], ["c3"], name="c3", kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c3"], ["y"], name="y")]
    outs = [_out("y", [1, 8, 32, 32])] + ([_out("c2", [1, 8, 32, 32])] if second_output else [])
    return _model(nodes, [_w("w1", 8, 8, 3, 3), _w("w2", 8, 8, 3, 3), _w("w3", 8, 8, 1, 1)], outs, path=path)


def _run(m: onnx.ModelProto, feeds: dict) -> dict:
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(names, {i.name: feeds[i.name] for i in s.get_inputs()})))


def _closed(m: onnx.ModelProto) -> bool:
    have = {i.name for i in m.graph.input} | {i.name for i in m.graph.initializer} | {""}
    for n in m.graph.node:
        if not all(i in have for i in n.input):
            return False
        have.update(n.output)
    return True


def test_split_writes_both_parts_and_they_chain_to_the_original(tmp_path):
    src = tmp_path / "net.onnx"
    original = conv_stack_pool_more(src)
    before = src.read_bytes()
    r = run_cli("split", str(src), "--target", "orin", "--trt", "10.3")
    assert r.returncode == 0, r.stdout + r.stderr
    dla_p, gpu_p = default_outputs(src)
    assert dla_p.name == "net.dlapart.onnx" and gpu_p.name == "net.gpupart.onnx"
    assert src.read_bytes() == before and f"wrote {dla_p} and {gpu_p}" in r.stdout
    dla, gpu = onnx.load(str(dla_p)), onnx.load(str(gpu_p))
    # the DLA part: the conv stack before the pool, closed under predecessors, alone one loadable
    assert [n.op_type for n in dla.graph.node] == ["Conv", "Relu", "Conv"] and _closed(dla)
    alone = check(dla, hardware="orin", trt="10.3")
    assert alone.summary["layers_on_gpu"] == 0 and alone.summary["dla_subgraphs"] == 1
    # the GPU part reads what the DLA part makes and gives the original outputs
    assert [i.name for i in gpu.graph.input] == [o.name for o in dla.graph.output] == ["c2"]
    assert [o.name for o in gpu.graph.output] == ["y"]
    x = RNG.standard_normal((1, 8, 32, 32)).astype(np.float32)
    want = _run(original, {"x": x})["y"]
    got = _run(gpu, _run(dla, {"x": x}))["y"]
    assert np.array_equal(want, got)
    assert "proof (onnxruntime" in r.stdout and "passed" in r.stdout
    assert "checked alone: 0 GPU layers, 1 DLA subgraph" in r.stdout
    assert "POOLING: p (POOL-WINDOW)" in r.stdout   # where the part ends, and why
    assert (f"trtexec --onnx={dla_p} --useDLACore=0 --buildDLAStandalone --saveEngine={tmp_path / 'net.dlapart.loadable'}"
            f" --fp16 --inputIOFormats=fp16:chw16 --outputIOFormats=fp16:chw16") in r.stdout
    assert f"trtexec --onnx={gpu_p} --saveEngine={tmp_path / 'net.gpupart.engine'} --fp16" in r.stdout
    assert "--allowGPUFallback" not in r.stdout


def test_an_output_made_by_the_dla_part_stays_there(tmp_path):
    src = tmp_path / "two.onnx"
    conv_stack_pool_more(src, second_output=True)
    res = split(src, _db(), _target("orin"))
    assert res.status == "split" and res.proof.passed and res.exit_code == 0
    assert [o.name for o in res.dla_model.graph.output] == ["c2"]
    assert [o.name for o in res.gpu_model.graph.output] == ["y"]   # c2 comes from the DLA part, not recomputed
    assert {o.name for o in res.proof.outputs} == {"y", "c2"}


def test_shape_math_becomes_weights_in_the_gpu_part(tmp_path):
    """A Reshape whose target is computed from a DLA tensor's shape: the GPU part gets the folded target as a
    weight and reads no int64 tensor from the DLA part."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="c1", kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
             helper.make_node("Shape", ["r1"], ["s"], name="s"),
             helper.make_node("Gather", ["s", "zero"], ["b"], name="g", axis=0),
             helper.make_node("Unsqueeze", ["b", "ax"], ["bu"], name="u"),
             helper.make_node("Concat", ["bu", "minus1"], ["tgt"], name="cat", axis=0),
             helper.make_node("Reshape", ["r1", "tgt"], ["flat"], name="reshape"),
             helper.make_node("Softmax", ["flat"], ["y"], name="sm", axis=1)]
    inits = [_w("w1", 4, 8, 1, 1), numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "ax"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    src = tmp_path / "shape.onnx"
    _model(nodes, inits, [_out("y", [1, 4 * 32 * 32])], path=src)
    res = split(src, _db(), _target("orin"))
    assert res.status == "split" and res.proof.passed, res.message
    gpu = res.gpu_model
    assert [i.name for i in gpu.graph.input] == ["r1"]
    assert all(i.type.tensor_type.elem_type == TensorProto.FLOAT for i in gpu.graph.input)
    assert "Shape" not in {n.op_type for n in gpu.graph.node}
    assert [o.name for o in res.dla_model.graph.output] == ["r1"]


def test_a_model_fully_on_dla_needs_no_split(tmp_path):
    src = tmp_path / "all.onnx"
    _model([helper.make_node("Conv", ["x", "w1"], ["c1"], name="c1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c1"], ["y"], name="r1")], [_w("w1", 8, 8, 3, 3)], [_out("y", [1, 8, 32, 32])],
           path=src)
    r = run_cli("split", str(src))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "no split needed: the whole model is one DLA loadable" in r.stdout
    assert f"trtexec --onnx={src} --useDLACore=0 --buildDLAStandalone" in r.stdout
    assert not any(p.exists() for p in default_outputs(src))


def test_a_model_whose_first_layer_falls_back_has_nothing_for_dla(tmp_path):
    src = tmp_path / "first.onnx"
    _model([helper.make_node("AveragePool", ["x"], ["p"], name="p", kernel_shape=[9, 9], pads=[4, 4, 4, 4]),
            helper.make_node("Conv", ["p", "w1"], ["y"], name="c1", kernel_shape=[1, 1])],
           [_w("w1", 8, 8, 1, 1)], [_out("y", [1, 8, 32, 32])], path=src)
    r = run_cli("split", str(src), "--format", "json")
    assert r.returncode == 1, r.stdout + r.stderr
    data = json.loads(r.stdout)
    assert data["status"] == "nothing-on-dla" and data["outputs"] == {}
    assert "nothing to put on DLA" in data["message"] and "POOLING: p (POOL-WINDOW)" in data["message"]
    assert not any(p.exists() for p in default_outputs(src))


def _one_line_exit_2(r, *words):
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) <= 300 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_hostile_options(tmp_path):
    src = tmp_path / "net.onnx"
    conv_stack_pool_more(src)
    before = src.read_bytes()
    _one_line_exit_2(run_cli("split", str(src), "-o", str(src)), "--output-dir", "not a folder")
    _one_line_exit_2(run_cli("split", str(src), "-o", str(tmp_path / "nowhere")), "--output-dir", "does not exist")
    _one_line_exit_2(run_cli("split", str(src), "--target", "tegra9"), "--target")
    _one_line_exit_2(run_cli("split", str(src), "--format", "xml"), "--format")
    _one_line_exit_2(run_cli("split", str(tmp_path / "missing.onnx")), "missing.onnx")
    # an existing part is not replaced without --force, and nothing else is written meanwhile
    dla_p, gpu_p = default_outputs(src)
    dla_p.write_bytes(b"mine")
    _one_line_exit_2(run_cli("split", str(src)), str(dla_p), "already exists")
    assert dla_p.read_bytes() == b"mine" and not gpu_p.exists()
    assert run_cli("split", str(src), "--force").returncode == 0
    assert onnx.load(str(dla_p)).graph.node
    # a part that is the input model (through a symlink) is refused even with --force
    dla_p.unlink()
    dla_p.symlink_to(src)
    _one_line_exit_2(run_cli("split", str(src), "--force"), "is the input")
    assert src.read_bytes() == before


def test_output_dir_and_json(tmp_path):
    src = tmp_path / "net.onnx"
    conv_stack_pool_more(src)
    out = tmp_path / "parts"
    out.mkdir()
    r = run_cli("split", str(src), "-o", str(out), "--format", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["status"] == "split" and data["proof"]["passed"]
    assert data["outputs"] == {"dla": str(out / "net.dlapart.onnx"), "gpu": str(out / "net.gpupart.onnx")}
    assert data["dla_part_check"]["gpu_layers"] == 0 and data["dla_part_check"]["dla_subgraphs"] == 1
    assert data["layers"]["dla"] < data["layers"]["total"] and data["io_ok"]
    assert [t["trtexec"] for t in data["io"]] == ["fp16:chw16", "fp16:chw16"]


def test_int8_io_formats_and_padding(tmp_path):
    src = tmp_path / "net.onnx"
    conv_stack_pool_more(src)
    r = run_cli("split", str(src), "--precision", "int8", "--format", "json", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert {t["trtexec"] for t in data["io"]} == {"int8:chw32"}
    assert all(t["padded_shape"][1] == 32 for t in data["io"])   # C=8 padded to the 32-byte boundary in INT8
    assert "--int8" in data["trtexec"]["dla"] and "--inputIOFormats=int8:chw32" in data["trtexec"]["dla"]
    assert any("calibration" in n for n in data["notes"])


def test_fix_then_split(tmp_path):
    """The 9x9 pool becomes a convolution (avgpool-to-conv), so the DLA part of the fixed model reaches further."""
    src = tmp_path / "net.onnx"
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="c1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("AveragePool", ["c1"], ["p"], name="p", kernel_shape=[9, 9], pads=[4, 4, 4, 4]),
             helper.make_node("Conv", ["p", "w2"], ["c2"], name="c2", kernel_shape=[1, 1]),
             helper.make_node("Flatten", ["c2"], ["f"], name="flat"),
             helper.make_node("Softmax", ["f"], ["y"], name="sm", axis=1)]
    _model(nodes, [_w("w1", 8, 8, 3, 3), _w("w2", 8, 8, 1, 1)], [_out("y", [1, 8 * 32 * 32])], path=src)
    plain = split(src, _db(), _target("orin"))
    r = run_cli("fix", str(src), "--then-split")
    assert r.returncode == 0, r.stdout + r.stderr
    fixed = tmp_path / "net.dla.onnx"
    dla_p, gpu_p = default_outputs(fixed)
    assert fixed.is_file() and dla_p.is_file() and gpu_p.is_file()
    assert dla_p.name == "net.dla.dlapart.onnx"
    dla = onnx.load(str(dla_p))
    assert "AveragePool" not in {n.op_type for n in dla.graph.node}
    after = split(fixed, _db(), _target("orin"))
    assert after.layers["dla"] > plain.layers["dla"] and after.proof.passed
    assert "wrote" in r.stdout and "dlarules split" in r.stdout
    # the same effect in two commands: split on the fixed model (its parts exist now: --force)
    assert run_cli("split", str(fixed), "--force").returncode == 0
    _one_line_exit_2(run_cli("fix", str(src), "--then-split", "--dry-run"), "--then-split")


def test_io_requirements_say_where_they_come_from():
    req = load_io_requirements()
    for key in ("direct_io", "precisions", "static_shapes", "rank", "trtexec"):
        src = req[key]["source"]
        assert src["url"].startswith("https://") and src["quote"] and req[key]["confidence"] in (
            "documented", "observed", "unverified")
    for key in ("format_source", "hwc4_source"):
        assert req[key]["url"].startswith("https://") and req[key]["quote"]
    names = {f["name"] for f in req["formats"]}
    assert names == {"chw16", "chw32", "dla_linear", "dla_hwc4"}
    hwc4 = next(f for f in req["formats"] if f["name"] == "dla_hwc4")
    assert hwc4["outputs"] == []   # an input-only format, as the guide says
    # the rule DB does not read it as a rule family
    from dlarules.ruledb import packaged_rules_dir
    assert (packaged_rules_dir() / "deploy" / "standalone_io.yaml").is_file()
    assert yaml.safe_load((packaged_rules_dir() / "deploy" / "standalone_io.yaml").read_text())["version"] == 1


@pytest.mark.slow
def test_yolov8n_backbone_and_neck_on_dla():
    need_shared()
    path = CORPUS / "yolov8n_640.onnx"
    if not path.is_file():
        pytest.skip("yolov8n_640.onnx is not in the corpus")
    res = split(path, _db(), _target("orin"))
    assert res.status == "split" and res.proof.passed, res.message
    whole = res.report
    # the one predicted DLA subgraph goes whole into the DLA part: every Conv on DLA (backbone, neck, head convs)
    assert whole.summary["dla_subgraphs"] == 1 and res.layers["dla"] == whole.summary["layers_on_dla"]
    on_dla_convs = {n.name for n in whole.nodes if n.op == "Conv" and n.status == "dla"}
    assert {n.name for n in res.dla_model.graph.node if n.op_type == "Conv"} == on_dla_convs
    assert any(n.name.startswith("/model.9/") for n in res.dla_model.graph.node)    # SPPF, the backbone's end
    assert any(n.name.startswith("/model.21/") for n in res.dla_model.graph.node)   # the neck's last C2f
    assert res.dla_check.summary["layers_on_gpu"] == 0 and res.dla_check.summary["dla_subgraphs"] == 1
    assert res.io_ok and all(len(t.shape) == 4 for t in res.io)
    gpu_inputs = {i.name for i in res.gpu_model.graph.input}
    assert gpu_inputs <= {o.name for o in res.dla_model.graph.output}
    assert res.flops["dla"] / res.flops["total"] > 0.99


def _db():
    from dlarules.api import load_db
    return load_db()


def _target(hw: str, trt: str | None = "10.3", precision: str | None = None):
    return _db().target(hw, trt, precision=precision)


def test_a_layer_that_falls_back_once_cut_leaves_the_part(tmp_path):
    """The cut part is checked alone: a rule that reads a neighbour can fire there (a team rule: a Relu must feed
    a pooling layer). The Relu at the cut then leaves the DLA part, which is checked again and holds."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "team.yaml").write_text(yaml.safe_dump({"family": "team", "rules": [{
        "id": "TEAM-RELU-FEEDS-POOL", "title": "A Relu on DLA must feed a pooling layer", "layer": "ACTIVATION",
        "require": {"consumers": "any", "kind": {"eq": "POOLING"}},
        "message": "{op} feeds no pooling layer", "source": {"doc": "a test's private rule"},
        "confidence": "unverified", "fix": None,
        "fixtures": [
            {"expect": "violate", "inputs": {"x": [1, 8, 4, 4]}, "nodes": [{"op": "Relu"}]},
            {"expect": "pass", "inputs": {"x": [1, 8, 4, 4]},
             "nodes": [{"op": "Relu"}, {"op": "MaxPool", "attrs": {"kernel_shape": [2, 2]}}]}]}]}))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="c1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
             helper.make_node("AveragePool", ["r1"], ["p"], name="p", kernel_shape=[9, 9], pads=[4, 4, 4, 4]),
             helper.make_node("Conv", ["p", "w2"], ["y"], name="c2", kernel_shape=[1, 1])]
    src = tmp_path / "net.onnx"
    _model(nodes, [_w("w1", 8, 8, 3, 3), _w("w2", 8, 8, 1, 1)], [_out("y", [1, 8, 32, 32])], path=src)
    from dlarules.api import load_db
    db = load_db([rules])
    t = db.target("orin", "10.3")
    whole = check(str(src), db, target=t)
    assert whole.nodes[1].status == "dla"   # in the whole model the Relu feeds the pool: on DLA
    res = split(src, db, t)
    assert res.status == "split" and res.rounds == 2 and res.proof.passed
    assert [n.op_type for n in res.dla_model.graph.node] == ["Conv"]
    assert res.dla_check.summary["layers_on_gpu"] == 0 and res.dla_check.summary["dla_subgraphs"] == 1
    r = run_cli("split", str(src), "--rules", str(rules))
    assert r.returncode == 0 and "after 1 cut(s) back" in r.stdout, r.stdout + r.stderr


def test_dynamic_input_needs_and_takes_input_shape(tmp_path):
    src = tmp_path / "dyn.onnx"
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="c1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("AveragePool", ["c1"], ["p"], name="p", kernel_shape=[9, 9], pads=[4, 4, 4, 4]),
             helper.make_node("Relu", ["p"], ["y"], name="r")]
    _model(nodes, [_w("w1", 8, 8, 3, 3)], [_out("y", ["N", 8, "H", "W"])], in_shape=("N", 8, "H", "W"), path=src)
    _one_line_exit_2(run_cli("split", str(src)), "--input-shape")
    r = run_cli("split", str(src), "--input-shape", "1x8x32x32")
    assert r.returncode == 0, r.stdout + r.stderr
    for p in default_outputs(src):
        for vi in onnx.load(str(p)).graph.input:
            assert [d.dim_value for d in vi.type.tensor_type.shape.dim] in ([1, 8, 32, 32],)


@pytest.mark.slow
def test_yolov8n_after_fix_splits_at_the_final_reshapes(tmp_path):
    # issue 13's acceptance: after fix (head-sink, sub-to-add) the whole Detect head is DLA work; split cuts the
    # model at the three per-scale flattening Reshapes, and the GPU part is those and the final Concat
    import shutil
    import onnx
    need_shared()
    src = tmp_path / "y8.onnx"
    shutil.copy(CORPUS / "yolov8n_640.onnx", src)
    r = subprocess.run([sys.executable, "-m", "dlarules", "fix", "y8.onnx", "--target", "orin", "--trt", "10.3",
                        "--then-split"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert "checked alone: 0 GPU layers, 1 DLA subgraph" in r.stdout and "max abs error 0" in r.stdout
    assert ("DLA: trtexec --onnx=y8.dla.dlapart.onnx --useDLACore=0 --buildDLAStandalone "
            "--saveEngine=y8.dla.dlapart.loadable --fp16 --inputIOFormats=fp16:chw16 "
            "--outputIOFormats=fp16:chw16,fp16:chw16,fp16:chw16") in r.stdout
    assert "GPU: trtexec --onnx=y8.dla.gpupart.onnx --saveEngine=y8.dla.gpupart.engine --fp16" in r.stdout
    gpu = onnx.load(str(tmp_path / "y8.dla.gpupart.onnx"))
    assert sorted(n.op_type for n in gpu.graph.node) == ["Concat", "Reshape", "Reshape", "Reshape"]


def test_parts_are_checked_before_either_is_written(tmp_path):
    # found by the fuzz campaign: a ThresholdedRelu (opset 10) in an opset-9 model, and an output declared without
    # a shape: the GPU part failed onnx.checker after the DLA part had been written. Now both are checked first,
    # and a defect the input has itself is named on the input.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 16])
    y = helper.make_empty_tensor_value_info("y")
    nodes = [helper.make_node("Mul", ["x", "k"], ["m"], name="mul"),
             helper.make_node("ThresholdedRelu", ["m"], ["y"], name="thr", alpha=1.0)]
    k = numpy_helper.from_array(np.full((1, 1, 1), 2.0, np.float32), "k")
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [k]), opset_imports=[helper.make_opsetid("", 9)])
    src = tmp_path / "m.onnx"
    src.write_bytes(model.SerializeToString())
    r = subprocess.run([sys.executable, "-m", "dlarules", "split", str(src), "--target", "orin", "--trt", "8.4"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"{src}: fails onnx.checker itself" in r.stderr and "nothing written" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
