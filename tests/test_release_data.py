"""Adding a TensorRT release is a data change: a made-up release in a temporary rules directory, one changed limit,
no code change, and `check` uses it."""
from __future__ import annotations

import shutil

import yaml

from dlarules.api import check
from dlarules.ruledb import RuleDB, packaged_rules_dir

from conftest import EXAMPLE


def test_new_release_is_data_only(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(packaged_rules_dir(), rules)
    rel = yaml.safe_load((rules / "releases.yaml").read_text())
    base = next(r for r in rel["releases"] if r["version"] == "10.7")
    rel["releases"].append({**base, "version": "10.99", "note": "made-up release for this test",
                            "loadable_limit": {"per_core": 32, "evidence": "test"}})
    (rules / "releases.yaml").write_text(yaml.safe_dump(rel, sort_keys=False))
    pooling = yaml.safe_load((rules / "pooling.yaml").read_text())
    old = next(r for r in pooling["rules"] if r["id"] == "POOL-WINDOW")
    old["tensorrt"] = "<10.99"
    new = {**old, "tensorrt": ">=10.99", "title": "Pooling window H and W in 1..16",
           "require": {"attr": "window", "each": {"min": 1, "max": 16}},
           "message": "{op} window {window} is outside DLA's 1..16",
           "fixtures": [{"expect": "violate", "inputs": {"x": [1, 8, 32, 32]},
                         "nodes": [{"op": "AveragePool", "attrs": {"kernel_shape": [17, 17]}}]},
                        {"expect": "pass", "inputs": {"x": [1, 8, 32, 32]},
                         "nodes": [{"op": "AveragePool", "attrs": {"kernel_shape": [9, 9]}}]}]}
    pooling["rules"].append(new)
    (rules / "pooling.yaml").write_text(yaml.safe_dump(pooling, sort_keys=False))

    db = RuleDB.load(base=rules)
    assert db.problems == []
    before = check(EXAMPLE, db, hardware="orin", trt="10.7")
    after = check(EXAMPLE, db, hardware="orin", trt="10.99")
    assert "POOL-WINDOW" in before.findings_by_rule()
    assert "POOL-WINDOW" not in after.findings_by_rule()   # the 9x9 pool fits the new 1..16 limit
    assert after.placement.loadable_limit == 32
    assert after.target.release.version == "10.99"
