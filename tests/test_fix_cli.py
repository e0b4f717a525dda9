"""`dlarules fix` as a user meets it: what is written where, what is never overwritten, the proof and its exit code."""
from __future__ import annotations

import json

import numpy as np
import onnx

from dlarules import fixtures

from conftest import EXAMPLE, run_cli


def demo(tmp_path):
    p = tmp_path / "demo.onnx"
    p.write_bytes(EXAMPLE.read_bytes())
    return p


def test_fix_writes_next_to_the_input_and_proves(tmp_path):
    src = demo(tmp_path)
    before = src.read_bytes()
    r = run_cli("fix", str(src), "--target", "orin", "--trt", "8.6")
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "demo.dla.onnx"
    assert out.is_file() and src.read_bytes() == before
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    assert "proof (onnxruntime" in r.stdout and "passed" in r.stdout and f"wrote {out}" in r.stdout
    assert f"trtexec --onnx={out} --useDLACore=0 --allowGPUFallback --fp16" in r.stdout
    assert "placement after:  2 GPU layer(s), 1 DLA subgraph(s)" in r.stdout
    # an existing output is not replaced without --force
    r = run_cli("fix", str(src), "--target", "orin", "--trt", "8.6")
    assert r.returncode == 2 and "already exists" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert run_cli("fix", str(src), "--target", "orin", "--trt", "8.6", "--force").returncode == 0


def test_input_is_never_overwritten(tmp_path):
    src = demo(tmp_path)
    before = src.read_bytes()
    r = run_cli("fix", str(src), "-o", str(src))
    assert r.returncode == 2 and "is the input" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert src.read_bytes() == before


def test_dry_run_and_json(tmp_path):
    src = demo(tmp_path)
    r = run_cli("fix", str(src), "--dry-run", "--format", "json", "--only", "gap-to-avgpool,hardswish-decompose")
    assert r.returncode == 0
    data = json.loads(r.stdout)
    assert data["output"] is None and not (tmp_path / "demo.dla.onnx").exists()
    assert {c["recipe"] for c in data["changes"]} == {"gap-to-avgpool", "hardswish-decompose"}
    assert data["proof"]["passed"] and data["after"]["gpu_layers"] < data["before"]["gpu_layers"]
    r = run_cli("fix", str(src), "--dry-run", "--exclude", "gap-to-avgpool", "--format", "json")
    assert "gap-to-avgpool" not in {c["recipe"] for c in json.loads(r.stdout)["changes"]}


def test_no_verify_says_so(tmp_path):
    r = run_cli("fix", str(demo(tmp_path)), "--no-verify", "--dry-run")
    assert r.returncode == 0 and "proof: not run (--no-verify)" in r.stdout


def test_failed_proof_writes_nothing_unless_forced(tmp_path):
    # x / 6 and x * (1/6) differ in the last bit for some inputs: a zero tolerance cannot hold
    src = tmp_path / "div.onnx"
    src.write_bytes(fixtures.build({
        "inputs": {"x": [1, 8, 16, 16]}, "initializers": {"c": {"shape": [1], "value": 6.0}},
        "nodes": [{"op": "Div", "inputs": ["x", "c"]}]}).SerializeToString())
    r = run_cli("fix", str(src), "--target", "orin", "--trt", "10.3", "--rtol", "0", "--atol", "0")
    assert r.returncode == 1 and "<- beyond tolerance" in r.stdout and "FAILED" in r.stdout
    assert "nothing written" in r.stdout and not (tmp_path / "div.dla.onnx").exists()
    r = run_cli("fix", str(src), "--target", "orin", "--trt", "10.3", "--rtol", "0", "--atol", "0", "--force")
    assert r.returncode == 1 and (tmp_path / "div.dla.onnx").exists()


def test_approximate_rewrite_is_proven_against_its_own_tolerance(tmp_path):
    src = tmp_path / "up.onnx"
    src.write_bytes(fixtures.build({
        "inputs": {"x": [1, 4, 4, 4]}, "initializers": {"sc": {"shape": [4], "value": [1, 1, 8, 8]}},
        "nodes": [{"op": "Resize", "inputs": ["x", "", "sc"], "attrs": {"mode": "linear"}}]}).SerializeToString())
    r = run_cli("fix", str(src), "--allow-approx")
    # an x8 bilinear -> nearest is no bug: it passes its recipe's tolerance (mean error vs the output's range),
    # and the report says which tolerance it was and what the largest error is
    assert r.returncode == 0, r.stdout
    assert "APPROXIMATE" in r.stdout and "mean |error| <= 0.1 x each output's range" in r.stdout
    assert "mean abs error" in r.stdout and (tmp_path / "up.dla.onnx").exists()


def test_real_inputs_from_npz(tmp_path):
    src = demo(tmp_path)
    npz = tmp_path / "in.npz"
    np.savez(npz, input=np.ones((1, 3, 128, 128), np.float32))
    r = run_cli("fix", str(src), "--dry-run", "--inputs", str(npz))
    assert r.returncode == 0 and str(npz) in r.stdout
    bad = tmp_path / "bad.npz"
    np.savez(bad, other=np.ones(3))
    r = run_cli("fix", str(src), "--dry-run", "--inputs", str(bad))
    assert r.returncode == 2 and "has no array for input 'input'" in r.stderr


def test_unknown_recipe_and_recipes_commands():
    r = run_cli("fix", str(EXAMPLE), "--only", "make-fast", "--dry-run")
    assert r.returncode == 2 and "unknown recipe(s) make-fast" in r.stderr
    r = run_cli("recipes", "list")
    assert r.returncode == 0 and "gap-to-avgpool" in r.stdout and "conditional" in r.stdout
    r = run_cli("recipes", "show", "avgpool-to-conv")
    assert r.returncode == 0 and "cures: POOL-INT8-AVG, POOL-PADDING, POOL-WINDOW" in r.stdout
    r = run_cli("recipes", "show", "gap-to-avgpol")
    assert r.returncode == 2 and "did you mean gap-to-avgpool" in r.stderr


def test_long_lists_are_grouped_unless_all(tmp_path):
    # 12 Erf layers nothing can cure: grouped by rule in the default text, every one with --all
    src = tmp_path / "erf.onnx"
    src.write_bytes(fixtures.build({"inputs": {"x": [1, 4, 8, 8]},
                                    "nodes": [{"op": "Erf"} for _ in range(12)]}).SerializeToString())
    r = run_cli("fix", str(src), "--dry-run")
    assert r.returncode == 1, r.stderr   # it still falls back and no rewrite helps
    grouped = [line for line in r.stdout.splitlines() if line.startswith("  still on GPU")]
    assert len(grouped) == 1 and "still on GPU by UNARY-OP: 12 layer(s), e.g. UNARY:" in grouped[0], r.stdout
    assert "--all lists every layer" in r.stdout
    r = run_cli("fix", str(src), "--dry-run", "--all")
    assert sum(line.startswith("  still on GPU: UNARY:") for line in r.stdout.splitlines()) == 12


def test_input_shape_is_written_into_the_fixed_model(tmp_path):
    # the rewrites are worked out for the given shape (here the 16x16 window of the global pool), so the written
    # model's dynamic input becomes that static shape
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, -1, -1])
    model = helper.make_model(helper.make_graph([helper.make_node("GlobalAveragePool", ["x"], ["y"], name="gap")],
                                                "dyn", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    src = tmp_path / "dyn.onnx"
    onnx.save(model, str(src))
    r = run_cli("fix", str(src), "--target", "xavier", "--trt", "8.5", "--input-shape", "x:1x8x16x16")
    assert r.returncode == 0, r.stdout + r.stderr
    out = onnx.load(str(tmp_path / "dyn.dla.onnx"))
    assert [d.dim_value for d in out.graph.input[0].type.tensor_type.shape.dim] == [1, 8, 16, 16]
    assert "gap-to-avgpool" in r.stdout


def test_unwritable_output_and_wrong_inputs_are_one_line_errors(tmp_path):
    src = demo(tmp_path)
    r = run_cli("fix", str(src), "-o", str(tmp_path / "no" / "such" / "dir" / "out.onnx"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "folder" in r.stderr and "does not exist" in r.stderr
    bad = tmp_path / "bad.npz"
    np.savez(bad, input=np.zeros((1, 3, 8, 8), np.float32))   # the model takes 1x3x128x128
    r = run_cli("fix", str(src), "--inputs", str(bad), "--dry-run")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and str(bad) in r.stderr and "onnxruntime" in r.stderr
    r = run_cli("check", str(src), "--format", "json", "-o", str(tmp_path / "nope" / "r.json"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "does not exist" in r.stderr


def test_nothing_to_rewrite_says_nothing_is_written(tmp_path):
    src = tmp_path / "relu.onnx"
    src.write_bytes(fixtures.build({"nodes": [{"op": "Relu"}]}).SerializeToString())
    r = run_cli("fix", str(src))
    assert r.returncode == 0 and "nothing written: every layer already runs on DLA" in r.stdout
    assert not (tmp_path / "relu.dla.onnx").exists()


def test_a_model_that_still_falls_back_with_no_better_rewrite_exits_1(tmp_path):
    # TopK has no DLA layer and no recipe: the model stays as it is, nothing is written, and exit 1 says so
    src = tmp_path / "topk.onnx"
    src.write_bytes(fixtures.build({"inputs": {"x": [1, 8, 4, 4]}, "initializers": {"k": {"shape": [1], "value": [2],
                                                                                         "dtype": "int64"}},
                                    "nodes": [{"op": "Relu"}, {"op": "TopK", "inputs": ["t0", "k"],
                                                               "outputs": ["v", "i"]}]}).SerializeToString())
    r = run_cli("fix", str(src), "--format", "json")
    data = json.loads(r.stdout)
    assert r.returncode == 1 and data["output"] is None and not data["changes"]
    assert data["decision"]["kept"] is False and data["decision"]["still_falls_back"] is True
    assert not (tmp_path / "topk.dla.onnx").exists()


def test_proof_compares_inf_and_nan_as_equal_when_both_sides_have_them():
    from dlarules.prove import _compare
    a = np.array([1.0, np.inf, -np.inf, np.nan, 2.0])
    assert _compare("y", a, a.copy(), 1e-3, 1e-4).passed
    r = _compare("y", a, np.array([1.0, np.inf, np.inf, np.nan, 2.0]), 1e-3, 1e-4)
    assert not r.passed and r.max_abs == float("inf")
    r = _compare("y", a, np.array([1.0, np.inf, -np.inf, 0.0, 2.0]), 1e-3, 1e-4)
    assert not r.passed
