"""The agreement with real TensorRT logs may not go down: bench/bench_accuracy.py's totals, kept as floors.

A rule or lowering change that lowers them must say why (and move the floor in the same commit)."""
from __future__ import annotations

import importlib.util
import sys

import pytest

from conftest import ROOT, SHARED, need_shared

# measured with bench/bench_accuracy.py (see the issue notes); raise these when agreement improves
FLOOR = {"logs_compared": 7, "gpu_matched": 48, "gpu_agreed": 43, "subgraphs_agreed": 14}
CEILING = {"missing-rule": 1, "rule-too-strict": 0, "lowering-differs": 4, "name-not-matched": 12}


def _bench():
    spec = importlib.util.spec_from_file_location("bench_accuracy", ROOT / "bench" / "bench_accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_accuracy"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_agreement_with_recorded_logs_does_not_go_down():
    need_shared()
    result = _bench().measure(SHARED)
    t = result["totals"]
    for key, floor in FLOOR.items():
        assert t[key] >= floor, (key, t[key], floor)
    for key, ceiling in CEILING.items():
        assert t["disagreements"][key] <= ceiling, (key, t["disagreements"][key], ceiling)
    # the seed logs agree completely in the build mode they were made with
    by = {(r["log"], r["precision"]): r for r in result["rows"]}
    for key in [("ddrnet_before_fix.log", "int8"), ("public/02_jetson-dla-tutorial-model-bn_orin_trtNA.log", "int8"),
                ("public/03_jetson-dla-tutorial-model-bn_agx-orin-jp5.1_trt8.5.log", "int8"),
                ("public/07_super-resolution-bsd500-onnx_xavier-inferred_trt8.2-inferred.log", "int8")]:
        r = by[key]
        assert r["layer_agreement_pct"] == 100.0 and r["subgraphs_agreed"] == r["subgraphs_log"], r
    assert {s["log"] for s in result["skipped"]} >= {"ddrnet_after_fix.log"}
