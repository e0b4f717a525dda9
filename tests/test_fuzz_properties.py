"""dlarules' promises under generated input (issue 11): generated ONNX graphs over lowering.OP_TABLE and damaged
corpus models, run through check / compare / fix / api.check in-process.

Every run must: exit 0, 1 or 2 (never a traceback or exit 3); on exit 2 print one stderr line of at most 300
characters naming a file or an option; keep onnxruntime's log off stderr; write JSON that parses (check's
validates against schemas/report.schema.json); leave its input files unchanged; write only models that pass
onnx.checker and load in onnxruntime.

Profiles: "ci" (default: derandomized, a fixed number of examples, about 30 s in all) and "long" (random, many
examples): HYPOTHESIS_PROFILE=long. bench/fuzz.py runs the long campaign in subprocesses with hang and memory
detection.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import onnx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dlarules.lowering import OP_TABLE

from fuzzing.cases import Case, make_case
from fuzzing.draw import HypothesisDraw, RandomDraw
from fuzzing.graphs import BUILDERS, build_graph
from fuzzing.harness import _check_error_line, run_case
from fuzzing.mutate import available

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
          HealthCheck.function_scoped_fixture]
settings.register_profile("ci", max_examples=25, derandomize=True, deadline=None, database=None,
                          suppress_health_check=_QUIET, print_blob=True)
settings.register_profile("long", max_examples=2000, deadline=None, database=None, suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
_FEWER = max(1, settings().max_examples * 3 // 5)   # compare and api.check share most code with check


@st.composite
def cases(draw, source: str | None = None, kind: str | None = None) -> Case:
    return make_case(HypothesisDraw(draw), source, kind)


def _keeps_promises(case: Case) -> None:
    folder = Path(tempfile.mkdtemp(prefix="dlarules-fuzz-"))
    try:
        outcome = run_case(case, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert outcome.category == "ok", (f"{outcome.category}: {outcome.signature}\n{outcome.detail}\n"
                                      f"case: {case.label}\ncommand: {case.command()}")


@pytest.fixture(autouse=True)
def _cache(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("DLARULES_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@given(cases(source="graph", kind="check"))
def test_check_on_generated_graphs(case):
    _keeps_promises(case)


@given(cases(source="graph", kind="fix"))
def test_fix_on_generated_graphs(case):
    _keeps_promises(case)


@settings(max_examples=_FEWER)
@given(cases(source="graph", kind="compare"))
def test_compare_on_generated_graphs(case):
    _keeps_promises(case)


@settings(max_examples=_FEWER)
@given(cases(source="graph", kind="api"))
def test_api_check_on_generated_graphs(case):
    _keeps_promises(case)


# skipped before hypothesis draws a case: drawing a mutant needs a corpus model to damage
@pytest.mark.skipif(not available(), reason="the shared corpus is not beside the checkout; set DLARULES_SHARED")
@given(cases(source="mutant"))
def test_every_command_on_damaged_corpus_models(case):
    _keeps_promises(case)


# --- the generators and the judge themselves: a fuzz suite that generated nothing, or could not see a broken
# promise, would pass for the wrong reason


def test_every_op_lowering_maps_has_a_builder():
    assert sorted(set(OP_TABLE) - set(BUILDERS)) == []


def test_generated_graphs_are_mostly_valid_and_varied():
    ok, ops, opsets, ranks = 0, set(), set(), set()
    for seed in range(60):
        g = build_graph(RandomDraw(seed))
        try:
            onnx.checker.check_model(g.model, full_check=True)
            ok += 1
        except Exception:
            pass
        ops.update(g.ops)
        opsets.add(g.model.opset_import[0].version)
        ranks.update(len(i.type.tensor_type.shape.dim) for i in g.model.graph.input)
    assert ok >= 35, ok                    # mostly valid (some malformed on purpose)
    assert len(ops) >= 40 and len(opsets) >= 8 and len(ranks) >= 4, (len(ops), opsets, ranks)


def test_the_judge_sees_broken_promises():
    case = Case("check", {"m.onnx": b""}, argv=["check", "m.onnx", "--trt", "x"])
    assert _check_error_line("dlarules: error: --trt: " + "5" * 400, case).category == "bad-error"
    assert _check_error_line("dlarules: error: a\ndlarules: error: b", case).category == "bad-error"
    assert _check_error_line("dlarules: error: shape inference failed", case).category == "bad-error"
    assert _check_error_line("dlarules: error: m.onnx: not an ONNX model", case) is None


def test_the_judge_sees_data_loss_and_crashes(monkeypatch, tmp_path):
    import fuzzing.harness as harness

    def clobber(argv):
        Path("m.onnx").write_bytes(b"report")
        return 1, None
    monkeypatch.setattr(harness, "_run_cli", clobber)
    assert run_case(Case("check", {"m.onnx": b"model"}, argv=["check", "m.onnx"]), tmp_path / "a").category \
        == "data-loss"
    monkeypatch.setattr(harness, "_run_cli", lambda argv: (None, KeyError("x")))
    out = run_case(Case("check", {"m.onnx": b"model"}, argv=["check", "m.onnx"]), tmp_path / "b")
    assert out.category == "crash" and out.signature.startswith("KeyError")


def test_a_written_model_is_checked(tmp_path):
    from onnx import TensorProto, helper
    from fuzzing.harness import _check_model_file
    bad = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])]))
    onnx.save(bad, tmp_path / "bad.onnx")
    assert _check_model_file(tmp_path / "bad.onnx")
    good = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]),
                             opset_imports=[helper.make_opsetid("", 13)])
    good.ir_version = 7
    onnx.save(good, tmp_path / "good.onnx")
    assert _check_model_file(tmp_path / "good.onnx") is None


def test_the_campaign_classifies_dead_workers(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_fuzz", Path(__file__).resolve().parents[1] / "bench" / "fuzz.py")
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    seg = ('@@seed 1\n@@seed 2\nFatal Python error: Segmentation fault\n\nCurrent thread (most recent call first):\n'
           '  File "/x/site-packages/onnx/helper.py", line 436 in make_tensor\n'
           '  File "/work/main/dlarules/fix.py", line 158 in _export\n')
    assert fuzz._died(-11, seg) == ("crash", "worker died (exit -11) @ dlarules/fix.py:_export: "
                                             "Fatal Python error: Segmentation fault")
    assert fuzz._died(-6, "@@seed 3\nterminate called after throwing an instance of 'std::bad_alloc'")[0] == "memory"
    # the previous run's stack is not this run's
    assert "fix.py" not in fuzz._died(-9, seg + "@@seed 3\n")[1]
    shared = Path(__file__).resolve().parents[2] / "shared"
    assert fuzz.campaign(0.01, 1, shared / "x", 1.0, 2.0) == 2
