"""Every rule entry in the DB has a fixture model that violates it and one that passes it, and both behave.

A rule without fixtures fails here (and in `dlarules rules validate`), so no rule is added untested."""
from __future__ import annotations

import pytest

from dlarules import fixtures
from dlarules.ruledb import RuleDB

_DB = RuleDB.load(use_cache=False)
CASES = [(r, k, fx) for r in _DB.rules for k, fx in enumerate(r.fixtures)]


def test_every_rule_has_both_fixtures():
    missing = [f"{r.id} ({r.file}:{r.line})" for r in _DB.rules
               if not {"violate", "pass"} <= {fx.get("expect") for fx in r.fixtures}]
    assert not missing, f"rules without a violating and a passing fixture: {missing}"
    assert len(_DB.rules) >= 60


def test_every_rule_id_is_exercised_by_a_violation():
    fired = {r.id for r, _, fx in CASES if fx["expect"] == "violate"}
    assert fired == set(_DB.ids)


@pytest.mark.parametrize("rule,k,fx", CASES, ids=[f"{r.id}-{r.line}-{k}-{fx['expect']}" for r, k, fx in CASES])
def test_fixture(rule, k, fx):
    model = fixtures.build(fx)
    import onnx
    onnx.checker.check_model(model)
    fired, report = fixtures.run(_DB, rule, fx)
    findings = [(v.name, f.rule, f.message) for v in report.layers for f in v.findings]
    if fx["expect"] == "violate":
        assert fired, f"{rule.id} did not fire on its violating fixture; findings: {findings}"
        msgs = [f.message for v in report.layers for f in v.findings if f.rule == rule.id]
        assert all(m and "{" not in m for m in msgs)
        assert report.exit_code == 1
    else:
        assert not fired, f"{rule.id} fired on its passing fixture: {findings}"
