"""Build modes (--precision fp16 | int8 | int8+fp16 | best | strongly-typed) and Jetson modules (--target, --dla-core):
the modes and modules are data in rules/releases.yaml; a layer runs in the first precision of the mode whose rules
all pass, else on the GPU."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlarules.api import check
from dlarules.checker import evaluate
from dlarules.cli import PrecisionOpt, TARGETS_HELP
from dlarules.errors import OptionError
from dlarules.lowering import lower
from dlarules.model import load_graph
from dlarules.report.text import render
from dlarules.trt import python_api, verify
from dlarules.trt.build import BuildRequest

from conftest import CORPUS, EXAMPLE, LOGS, ROOT, need_shared, run_cli

SCHEMA = json.loads((ROOT / "schemas" / "report.schema.json").read_text())


def _const(name: str, values: list[int]):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def slice_model(dtype: int = TensorProto.FLOAT, n_slices: int = 1):
    """x -> Relu -> n x Slice (channels 0..4, the same each time) -> Add: a Slice is the layer DLA runs only in FP16."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu")]
    outs = []
    for i in range(n_slices):
        nodes.append(helper.make_node("Slice", ["r", "s", "e", "a"], [f"sl{i}"], name=f"slice{i}"))
        outs.append(f"sl{i}")
    if n_slices > 1:
        nodes.append(helper.make_node("Add", outs[:2], ["y"], name="add"))
        out = "y"
    else:
        out = outs[0]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", dtype, [1, 8, 16, 16])],
                          [helper.make_tensor_value_info(out, dtype, [1, 4, 16, 16])],
                          initializer=[_const("s", [0]), _const("e", [4]), _const("a", [1])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def compare_model():
    """Greater + Cast: a comparison, which DLA on Orin (TensorRT >= 10) runs only in INT8."""
    nodes = [helper.make_node("Greater", ["a", "b"], ["g"], name="greater"),
             helper.make_node("Cast", ["g"], ["y"], name="cast", to=TensorProto.FLOAT16)]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 8, 16, 16])
                                       for n in "ab"],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 8, 16, 16])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def layer(report, name):
    return next(v for v in report.layers if v.name == name)


# ---------------------------------------------------------------- modes: fallback chains on fixtures

def test_a_layer_rejected_only_in_int8_runs_fp16_in_int8_fp16_and_gpu_in_int8(db):
    m = slice_model()
    fp16 = check(m, db, hardware="orin", trt="10.3", precision="fp16")
    int8 = check(m, db, hardware="orin", trt="10.3", precision="int8")
    mixed = check(m, db, hardware="orin", trt="10.3", precision="int8+fp16")
    best = check(m, db, hardware="orin", trt="10.3", precision="best")
    # fp16 unchanged: everything on DLA in FP16
    assert fp16.exit_code == 0 and {v.precision for v in fp16.layers} == {"fp16"}
    assert all(not v.demoted for v in fp16.layers)
    # int8 alone: the Slice goes to the GPU, with the INT8 rule that sends it there
    s = layer(int8, "slice0")
    assert not int8.on_dla(s.index) and s.precision is None and [f.rule for f in s.findings] == ["SLICE-FP16"]
    assert layer(int8, "relu").precision == "int8"
    # int8+fp16: the Slice runs on DLA in FP16, demoted from INT8 by that rule; the Relu stays INT8
    for r in (mixed, best):
        s = layer(r, "slice0")
        assert r.exit_code == 0 and r.on_dla(s.index) and s.precision == "fp16" and s.findings == []
        assert [(p, [f.rule for f in fs]) for p, fs in s.demoted] == [("int8", ["SLICE-FP16"])]
        assert layer(r, "relu").precision == "int8"
        assert r.summary["layers_by_precision"] == {"fp16": 1, "int8": 1} and r.summary["layers_demoted"] == 1
        assert r.placement.subgraphs and len([sg for sg in r.placement.subgraphs if not sg.moved_to_gpu]) == 1
    text = render(mixed, show_all=True)
    assert "summary: 2 layers on DLA (1 in INT8, 1 in FP16 demoted from INT8), 0 on GPU" in text
    assert "on DLA in a fallback precision, by rule (1 layer(s)):" in text
    assert "SLICE-FP16  [documented]  1 layer(s): not in INT8, so in FP16" in text
    assert "-> SLICE: slice0 [DLA sg 0 FP16]  (not INT8: SLICE-FP16)" in text
    # single-precision modes keep their summary line as it was
    assert "summary: 2 layers on DLA, 0 on GPU" in render(fp16)


def test_a_layer_dla_runs_only_in_int8_stays_on_dla_in_int8_fp16(db):
    m = compare_model()
    fp16 = check(m, db, hardware="orin", trt="10.3", precision="fp16")
    mixed = check(m, db, hardware="orin", trt="10.3", precision="int8+fp16")
    g16, g8 = layer(fp16, "greater"), layer(mixed, "greater")
    assert not fp16.on_dla(g16.index) and "EW-CMP-INT8" in {f.rule for f in g16.findings}
    assert mixed.on_dla(g8.index) and g8.precision == "int8" and not g8.demoted


def test_a_layer_rejected_in_every_precision_keeps_both_reasons(db):
    # a 9x9 average pool: POOL-WINDOW in both precisions, POOL-INT8-AVG in INT8 too
    g = helper.make_graph([helper.make_node("AveragePool", ["x"], ["y"], name="pool", kernel_shape=[9, 9])], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 32, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 24, 24])])
    r = check(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), db, hardware="orin", trt="10.3",
              precision="int8+fp16")
    v = layer(r, "pool")
    assert not r.on_dla(v.index) and v.precision is None
    assert [f.rule for f in v.findings] == ["POOL-WINDOW"]                      # the last precision tried: FP16
    assert [(p, sorted(f.rule for f in fs)) for p, fs in v.demoted] == [("int8", ["POOL-INT8-AVG", "POOL-WINDOW"])]
    assert "INT8: POOL-WINDOW, POOL-INT8-AVG" in v.demoted_text or "INT8: POOL-INT8-AVG, POOL-WINDOW" in v.demoted_text
    assert "(POOL-WINDOW; in INT8 also POOL-INT8-AVG)" in render(r, show_all=True)
    d = r.to_dict()
    jsonschema.validate(d, SCHEMA)
    lay = d["nodes"][0]["layers"][0]
    assert lay["precision"] is None and lay["demoted"][0]["precision"] == "int8"


def test_a_precision_fixed_by_the_graph_is_the_only_one_tried_and_enters_the_memo(db):
    # two identical Slices: in int8 mode both go to the GPU, unless the graph fixes one to FP16 (the Q/DQ contract:
    # lowering sets Layer.precision); the verdict memo must not hand the first one's verdict to the second
    graph = load_graph(slice_model(n_slices=2))
    t = db.target("orin", "10.3", precision="int8")
    lg = lower(graph, t.release.parser)
    slices = [x for x in lg.layers if x.kind == "SLICE"]
    assert len(slices) == 2
    slices[1].precision = "fp16"
    by = {v.name: v for v in evaluate(lg, db.select(t))}
    assert by["slice0"].precision is None and [f.rule for f in by["slice0"].findings] == ["SLICE-FP16"]
    assert by["slice1"].precision == "fp16" and by["slice1"].findings == [] and by["slice1"].demoted == []
    # and the other way round: a layer fixed to INT8 in an fp16 build is checked with the INT8 rules only
    t16 = db.target("orin", "10.3", precision="fp16")
    lg16 = lower(load_graph(slice_model(n_slices=2)), t16.release.parser)
    for x in lg16.layers:
        if x.kind == "SLICE":
            x.precision = "int8"
    by16 = {v.name: v for v in evaluate(lg16, db.select(t16))}
    assert [f.rule for f in by16["slice0"].findings] == ["SLICE-FP16"] and by16["relu"].precision == "fp16"


# ---------------------------------------------------------------- strongly typed

def test_strongly_typed_takes_each_layers_precision_from_its_tensor_types(db):
    r32 = check(slice_model(TensorProto.FLOAT), db, hardware="orin", trt="10.3", precision="strongly-typed")
    r16 = check(slice_model(TensorProto.FLOAT16), db, hardware="orin", trt="10.3", precision="strongly-typed")
    assert r16.exit_code == 0 and {v.precision for v in r16.layers} == {"fp16"}
    assert r32.summary["layers_on_dla"] == 0
    assert {f.rule for v in r32.layers for f in v.findings} == {"GEN-STRONGLY-TYPED-FP32"}
    assert "computes in FP32 (float32 tensors in a strongly typed network)" in r32.layers[0].findings[0].message
    for r in (r16, r32):
        d = r.to_dict()
        jsonschema.validate(d, SCHEMA)
        assert d["target"]["precision"] == "strongly-typed" and d["target"]["mode"]["precisions"] == "graph"
        assert d["target"]["mode"]["trtexec"] == ["--stronglyTyped"]


def test_tensorrt_11_is_strongly_typed_and_has_no_fp16_flag(db):
    t = db.target("orin", "11.4")                        # no --precision: the release's only mode
    assert t.mode_name == "strongly-typed" and t.mode.trtexec == ()
    with pytest.raises(OptionError) as exc:
        db.target("orin", "11.4", precision="fp16")
    msg = exc.value.line()
    assert "\n" not in msg and len(msg) <= 300
    assert "TensorRT 11.4 has no fp16 build mode (modes there: strongly-typed)" in msg and "AutoCast" in msg
    with pytest.raises(OptionError, match="TensorRT 8.5 has no strongly-typed build mode"):
        db.target("xavier", "8.5", precision="strongly-typed")
    with pytest.raises(OptionError, match="'fp32' is not a build mode"):
        db.target("orin", precision="fp32")


# ---------------------------------------------------------------- the modes are data

def test_modes_and_their_flags_come_from_the_release_data(db):
    flags = {m.name: m.trtexec for m in db.modes_for("10.3")}
    assert flags == {"fp16": ("--fp16",), "int8": ("--int8",), "int8+fp16": ("--int8", "--fp16"),
                     "best": ("--best",), "strongly-typed": ("--stronglyTyped",)}
    chains = {m.name: m.precisions for m in db.modes_for("8.5")}
    assert chains == {"fp16": ("fp16",), "int8": ("int8",), "int8+fp16": ("int8", "fp16"), "best": ("int8", "fp16")}
    assert [m.name for m in db.modes_for("11.4")] == ["strongly-typed"]
    # the README table names every mode with its trtexec flags
    readme = (ROOT / "README.md").read_text()
    for m in db.modes:
        row = next((x for x in readme.splitlines() if x.startswith(f"| `{m.name}`")), None)
        assert row is not None, m.name
        for f in m.trtexec:
            assert f"`{f}`" in row or f in row, (m.name, f)
    assert all(m in PrecisionOpt.help for m in db.mode_names())


def test_verify_passes_the_modes_flags(monkeypatch):
    from fakes import fake_tensorrt
    from dlarules.trt import VerifyError
    from dlarules.trt.trtexec import trtexec_args
    req = BuildRequest(Path("m.onnx"), "int8+fp16", trtexec_flags=("--int8", "--fp16"),
                       builder_flags=("INT8", "FP16"))
    assert trtexec_args(req, "m.onnx")[:5] == ["--onnx=m.onnx", "--useDLACore=0", "--allowGPUFallback", "--int8",
                                                "--fp16"]
    # the Python-API backend sets the same builder flags, and says so in one line when a flag does not exist

    class Config:
        def __init__(self):
            self.flags = []

        def set_flag(self, f):
            self.flags.append(f)
    fake_tensorrt.reset()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)
    c = Config()
    python_api._configure(fake_tensorrt, c, req)
    assert {f.name for f in c.flags} == {"INT8", "FP16", "GPU_FALLBACK"}
    with pytest.raises(VerifyError, match="no BF16 builder flag") as exc:
        python_api._configure(fake_tensorrt, Config(), BuildRequest(Path("m.onnx"), "x", builder_flags=("BF16",)))
    assert "\n" not in str(exc.value)


def test_verify_request_carries_the_target_mode(db, tmp_path):
    from dlarules.trt.verify import _request
    report = check(EXAMPLE, db, hardware="orin", trt="10.3", precision="best")
    req = _request(EXAMPLE, report, 1, None, None, (), None)
    assert (req.precision, req.trtexec_flags, req.builder_flags) == ("best", ("--best",), ("INT8", "FP16"))


# ---------------------------------------------------------------- yolo11n: int8+fp16 equals fp16 but for INT8-only rules

def test_yolo11n_int8_fp16_keeps_the_fp16_only_splits_on_dla(db):
    need_shared()
    graph = load_graph(CORPUS / "yolo11n_640.onnx")
    r = {p: check(graph, db, hardware="orin", trt="10.3", precision=p) for p in ("fp16", "int8", "int8+fp16")}
    gpu = {p: {v.name for v in rep.gpu_layers} for p, rep in r.items()}
    # int8 alone puts the Splits (SLICE, FP16-only on DLA) on the GPU and cuts the network into more subgraphs
    splits = [v for v in r["int8"].layers if v.op == "Split"]
    assert splits and all(not r["int8"].on_dla(v.index) for v in splits if v.name not in gpu["fp16"])
    assert len(gpu["int8"]) > len(gpu["fp16"])
    assert r["int8"].summary["dla_subgraphs"] > r["fp16"].summary["dla_subgraphs"]
    # int8+fp16: those Splits stay on DLA, in FP16, demoted from INT8 by SLICE-FP16
    mixed = r["int8+fp16"]
    for v in splits:
        if v.name not in gpu["fp16"]:
            m = layer(mixed, v.name)
            assert mixed.on_dla(m.index) and m.precision == "fp16"
            assert [(p, [f.rule for f in fs]) for p, fs in m.demoted] == [("int8", ["SLICE-FP16"])]
    # the placement equals the fp16 one, except where an INT8 rule with no FP16 counterpart applies
    int8_only = {rule.id for rule in db.rules if rule.precisions == ("int8",) and rule.confidence == "documented"}
    for name in gpu["int8+fp16"] - gpu["fp16"]:
        assert {f.rule for f in layer(mixed, name).findings} & int8_only, name
    assert gpu["int8+fp16"] == gpu["fp16"]               # on yolo11n no such rule applies
    for k in ("dla_subgraphs", "transitions"):
        assert mixed.summary[k] == r["fp16"].summary[k]
    assert [sg.name for sg in mixed.placement.subgraphs] == [sg.name for sg in r["fp16"].placement.subgraphs]


# ---------------------------------------------------------------- modules

def test_every_module_resolves_to_its_familys_rules(db):
    assert set(db.modules) == {"agx-xavier", "xavier-nx", "agx-orin", "orin-nx-16", "orin-nx-8", "orin-nano",
                               "drive-orin"}
    cores = {m.name: m.dla_cores for m in db.modules.values()}
    assert cores == {"agx-xavier": 2, "xavier-nx": 2, "agx-orin": 2, "orin-nx-16": 2, "orin-nx-8": 1,
                     "orin-nano": 0, "drive-orin": 2}
    assert all(m.source for m in db.modules.values())
    for m in db.modules.values():
        if m.dla_cores == 0:
            continue
        t = db.target(m.name)
        fam = db.target(m.hardware, t.trt, platform=t.platform)
        assert t.hardware == m.hardware and t.module is m and t.dla_cores == m.dla_cores
        assert [r.id for r in db.select(t).rules] == [r.id for r in db.select(fam).rules], m.name
    d = db.target("drive-orin")
    assert (d.platform, d.trt) == ("drive", "8.6.12")
    assert db.target("xavier").dla_cores == 2 and db.target("orin", dla_core=1).dla_core == 1


def test_module_errors_are_one_line(db):
    cases = [(dict(hardware="orin-nano"), "--target", "orin-nano: Jetson Orin Nano (4 GB / 8 GB) has no DLA cores"),
             (dict(hardware="orin-nx"), "--target", "'orin-nx' is ambiguous: orin-nx-8"),
             (dict(hardware="orin-nx-8", dla_core=1), "--dla-core", "1: Jetson Orin NX 8GB has DLA core 0 only"),
             (dict(hardware="agx-orin", dla_core=2), "--dla-core", "has DLA cores 0 to 1"),
             (dict(hardware="orin", dla_core=-1), "--dla-core", ""),
             (dict(hardware="drive-orin", platform="jetson"), "--platform", "DRIVE AGX Orin"),
             (dict(hardware="thor"), "--target", "unknown hardware 'thor'")]
    for kw, option, text in cases:
        hw = kw.pop("hardware")
        with pytest.raises(OptionError) as exc:
            db.target(hw, **kw)
        line = exc.value.line()
        assert "\n" not in line and len(line) <= 300 and option in line and text in line, line


def test_cli_modules_and_modes(tmp_path):
    p = run_cli("check", str(EXAMPLE), "--target", "orin-nano")
    assert p.returncode == 2 and p.stdout == "" and len(p.stderr.strip().splitlines()) == 1
    assert "orin-nano: Jetson Orin Nano" in p.stderr and "no DLA cores" in p.stderr
    p = run_cli("check", str(EXAMPLE), "--target", "orin-nx-8", "--dla-core", "1")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "--dla-core" in p.stderr
    p = run_cli("verify", str(EXAMPLE), "--target", "orin-nx-8", "--dla-core", "1")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "DLA core 0 only" in p.stderr
    p = run_cli("check", str(EXAMPLE), "--target", "orin-nx-16", "--dla-core", "1", "--precision", "int8+fp16",
                "--format", "json")
    assert p.returncode == 1, p.stderr
    d = json.loads(p.stdout)
    jsonschema.validate(d, SCHEMA)
    assert d["target"] | {} == d["target"] and d["target"]["module"] == "orin-nx-16"
    assert (d["target"]["precision"], d["target"]["dla_cores"], d["target"]["dla_core"]) == ("int8+fp16", 2, 1)
    p = run_cli("check", str(EXAMPLE), "--target", "orin", "--trt", "11.4", "--precision", "fp16")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "strongly-typed" in p.stderr
    # --help lists the accepted targets and modes
    h = run_cli("check", "--help").stdout
    for name in ("agx-xavier", "xavier-nx", "agx-orin", "orin-nx-16", "orin-nx-8", "drive-orin", "orin-nano",
                 "int8+fp16", "strongly-typed"):
        assert name in h, name


def test_targets_help_names_every_target_in_the_data(db):
    for name in [*db.hardware, *db.modules]:
        assert name in TARGETS_HELP, name


def test_compare_takes_the_modes(tmp_path):
    need_shared()
    model = CORPUS / "ddrnet23_slim_seedlike_1024x2048.onnx"
    log = LOGS / "ddrnet_before_fix.log"
    out = {}
    for mode in ("int8", "int8+fp16"):
        p = run_cli("compare", str(model), "--log", str(log), "--target", "xavier", "--trt", "8.5",
                    "--precision", mode, "--format", "json")
        assert p.returncode in (0, 1), p.stderr
        out[mode] = json.loads(p.stdout)
        assert out[mode]["target"]["precision"] == mode
    # the recorded DDRNet build agrees with INT8 alone (its padded 5x5 average pool ran on the GPU); with an FP16
    # fallback that pool would have run on DLA in FP16
    assert out["int8"]["summary"]["layer_agreement_pct"] == 100.0
    assert out["int8+fp16"]["summary"]["layer_agreement_pct"] < 100.0


def test_fix_prints_the_build_command_of_the_mode_and_core(tmp_path):
    out = tmp_path / "out.onnx"
    p = run_cli("fix", str(EXAMPLE), "--target", "orin-nx-16", "--dla-core", "1", "--precision", "int8+fp16",
                "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert f"trtexec --onnx={out} --useDLACore=1 --allowGPUFallback --int8 --fp16`" in p.stdout
    assert "--target orin-nx-16 --trt 10.3 --precision int8+fp16 --dla-core 1` to compare" in p.stdout
    p = run_cli("fix", str(EXAMPLE), "--target", "orin-nx-8", "--dla-core", "1", "--dry-run")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "DLA core 0 only" in p.stderr
