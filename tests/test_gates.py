"""Verdicts a CI can gate on: DLA coverage (layers, FLOPs), DLA-only feasibility, and the exit-code options."""
from __future__ import annotations

import json

from dlarules import fixtures
from dlarules.api import check

from conftest import EXAMPLE, run_cli


def test_coverage_and_dla_only(db):
    r = check(EXAMPLE, db, hardware="orin", trt="8.6")
    cov = r.coverage
    assert 0 < cov["layers_pct"] < 100 and 0 < cov["flops_pct"] < 100
    assert cov["flops_pct"] > cov["layers_pct"]  # the convolutions (most FLOPs) run on DLA
    only = r.dla_only
    assert not only["feasible"] and any("POOL-WINDOW" in b["rules"] for b in only["blockers"])


def test_all_dla_model_is_dla_only(db):
    r = check(fixtures.build({"nodes": [{"op": "Conv", "inputs": ["x", "w"]}, {"op": "Relu"}],
                              "initializers": {"w": {"shape": [8, 8, 3, 3]}}}), db)
    assert r.dla_only == {"feasible": True, "blockers": [], "dla_subgraphs": 1}
    assert r.coverage["layers_pct"] == 100.0 and r.gates(100, 1, True) == []


def test_gates_set_the_exit_code(tmp_path):
    r = run_cli("check", str(EXAMPLE), "--min-dla-coverage", "50")
    assert r.returncode == 0 and "gate failed" not in r.stdout
    r = run_cli("check", str(EXAMPLE), "--min-dla-coverage", "95")
    assert r.returncode == 1 and "gate failed: DLA coverage" in r.stdout
    r = run_cli("check", str(EXAMPLE), "--max-dla-subgraphs", "1", "--format", "json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["gates"] == ["5 DLA subgraphs exceed the maximum of 1"]
    r = run_cli("check", str(EXAMPLE), "--dla-only")
    assert r.returncode == 1 and "not DLA-only" in r.stdout
