"""The rule DB as data: schema, semantic validation with file:line errors, selection, versions, layering."""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from dlarules.errors import OptionError, RulesError
from dlarules.ruledb import RuleDB, packaged_rules_dir, schemas_dir

RULES = packaged_rules_dir()


def copy_rules(tmp_path: Path) -> Path:
    dst = tmp_path / "rules"
    shutil.copytree(RULES, dst)
    return dst


def write_rule_file(d: Path, name: str, body: str) -> Path:
    p = d / name
    p.write_text(textwrap.dedent(body))
    return p


GOOD_RULE = """
rules:
  - id: TEAM-POOL-WINDOW
    title: Our stricter pooling window
    layer: POOLING
    require: {attr: window, each: {max: 4}}
    message: "{op} window {window} is over our limit of 4"
    source: {doc: "team policy"}
    confidence: unverified
    fix: null
    fixtures:
      - expect: violate
        nodes: [{op: MaxPool, attrs: {kernel_shape: [5, 5]}}]
      - expect: pass
        nodes: [{op: MaxPool, attrs: {kernel_shape: [3, 3]}}]
"""


def test_packaged_db_is_clean(db):
    assert db.problems == []
    assert db.version.count(".") == 2
    assert {"xavier", "orin"} <= set(db.hardware)
    assert len(db.ids) >= 50


def test_every_file_validates_against_its_schema():
    rules_schema = json.loads((schemas_dir() / "rules.schema.json").read_text())
    rel_schema = json.loads((schemas_dir() / "releases.schema.json").read_text())
    for f in sorted(RULES.glob("*.yaml")):
        data = yaml.safe_load(f.read_text())
        jsonschema.validate(data, rel_schema if f.name == "releases.yaml" else rules_schema)
        assert f.read_text().startswith("# yaml-language-server: $schema=../schemas/"), f.name


def test_select_differs_by_hardware_and_release(db):
    xavier = {r.id for r in db.select(db.target("xavier", "8.5")).rules}
    orin = {r.id for r in db.select(db.target("orin", "8.6")).rules}
    assert "SOFTMAX-XAVIER" in xavier and "SOFTMAX-XAVIER" not in orin
    assert "SOFTMAX-AXIS" in orin
    assert "SHUFFLE-SUPPORT" in {r.id for r in db.select(db.target("xavier", "8.2")).rules}
    # one ID, several entries with disjoint scopes: each target sees exactly one entry of EW-OP
    for hw, trt, platform in [("xavier", "8.5", "jetson"), ("orin", "8.6", "jetson"), ("orin", "10.3", "jetson"),
                              ("orin", "8.6.12", "drive"), ("orin", "8.5", "drive")]:
        entries = [r for r in db.select(db.target(hw, trt, platform=platform)).rules if r.id == "EW-OP"]
        assert len(entries) == 1, (hw, trt, platform)


def test_precision_selects_rules(db):
    fp16 = {r.id for r in db.select(db.target("orin", "10.3", precision="fp16")).rules}
    int8 = {r.id for r in db.select(db.target("orin", "10.3", precision="int8")).rules}
    assert "SLICE-FP16" in int8 and "SLICE-FP16" not in fp16
    assert "EW-CMP-INT8" in fp16 and "EW-CMP-INT8" not in int8


def test_targets_and_jetpack(db):
    t = db.target("agx-orin", jetpack="5.1.1")
    assert (t.hardware, t.trt) == ("orin", "8.5")
    assert db.target("orin").trt == db.hardware["orin"]["default_tensorrt"]
    assert db.target("xavier", "8.5.2").release.version == "8.5"
    with pytest.raises(OptionError, match="not in the rule DB"):
        db.target("orin", "9.1")
    with pytest.raises(OptionError, match="no DLA support for xavier"):
        db.target("xavier", "10.3")
    with pytest.raises(OptionError, match="unknown hardware"):
        db.target("thor")
    with pytest.raises(OptionError, match="JetPack 9.9"):
        db.target("orin", jetpack="9.9")
    with pytest.raises(OptionError, match="does not support DLA on xavier"):
        db.target("xavier", jetpack="6.0")
    with pytest.raises(OptionError, match="precision"):
        db.target("orin", precision="fp32")


def test_loadable_limit_is_data_per_release(db):
    assert db.target("xavier", "7.1").release.loadable_limit == 8
    assert db.target("orin", "8.6").release.loadable_limit == 16
    assert all(r.loadable_evidence for r in db.releases)


_BAD_RULE = """
 rules:
   - id: {id}
     title: t
     layer: {layer}
     require: {require}
     message: {message}
     source: {{doc: d}}
     confidence: {confidence}
     fix: {fix}
     fixtures: [{{expect: violate, nodes: [{{op: Relu}}]}}, {{expect: {second}, nodes: [{{op: Relu}}]}}]
 """


def _bad_rule(rid: str, **wrong: str) -> str:
    """A one-rule file, valid except for the fields given (the rule ID is on line 3)."""
    fields = {"layer": "POOLING", "require": "{attr: window, each: {max: 8}}", "message": "m",
              "confidence": "documented", "fix": "null", "second": "pass", **wrong}
    return _BAD_RULE.format(id=rid, **fields)


@pytest.mark.parametrize("body,problem", [
    (_bad_rule("BAD-PRED", require="{atrr: window, max: 8}"), "unknown predicate 'atrr'"),
    (_bad_rule("BAD-ATTR", require="{attr: kernel, each: {max: 8}}"), "layer POOLING has no attribute 'kernel'"),
    (_bad_rule("BAD-RECIPE", fix="make-it-fast"), "unknown fix recipe 'make-it-fast'"),
    (_bad_rule("BAD-ENUM", require="{attr: type, eq: AVERGE}"), "'AVERGE' is not one of"),
    (_bad_rule("BAD-MSG", message='"{op} kernel {kernel}"'), "message field {kernel}"),
    (_bad_rule("BAD-KIND", layer="POOLNG", require="{never: true}"), "unknown layer kind 'POOLNG'"),
    (_bad_rule("NO-FIXTURE-PASS", second="violate"), "needs fixtures"),
    (_bad_rule("SCHEMA-BAD", confidence="sure"), "confidence: 'sure' is not one of"),
])
def test_semantic_errors_name_file_line_and_rule(tmp_path, body, problem):
    extra = tmp_path / "team"
    extra.mkdir()
    f = write_rule_file(extra, "bad.yaml", body)
    db = RuleDB.load([extra], strict=False)
    lines = [str(p) for p in db.problems]
    assert any(problem in line and line.startswith(f"{f}:") for line in lines), lines
    rid = yaml.safe_load(f.read_text())["rules"][0]["id"]
    assert any(f":{3}: {rid}:" in line for line in lines), lines
    with pytest.raises(RulesError) as exc:
        RuleDB.load([extra])
    assert str(f) in exc.value.line() and "\n" not in exc.value.line()


def test_malformed_yaml_is_one_line_error(tmp_path):
    extra = tmp_path / "team"
    extra.mkdir()
    f = extra / "broken.yaml"
    f.write_text("rules:\n  - id: X\n    title: [unclosed\n")
    with pytest.raises(RulesError) as exc:
        RuleDB.load([extra])
    assert str(f) in exc.value.line() and "not valid YAML" in exc.value.line()


def test_overlapping_entries_of_one_id_are_reported(tmp_path):
    rules = copy_rules(tmp_path)
    p = rules / "pooling.yaml"
    data = yaml.safe_load(p.read_text())
    dup = dict(next(r for r in data["rules"] if r["id"] == "POOL-WINDOW"))
    dup["tensorrt"] = ">=8.5"
    data["rules"].append(dup)
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    db = RuleDB.load(base=rules, strict=False)
    assert any("POOL-WINDOW: entries of this ID overlap" in str(pr) for pr in db.problems)


def test_layered_rules_add_and_override_by_id(tmp_path, db):
    team = tmp_path / "team"
    team.mkdir()
    write_rule_file(team, "team.yaml", GOOD_RULE + """
  - id: POOL-WINDOW
    title: Pooling window H and W in 1..16 (our DLA build)
    layer: POOLING
    require: {attr: window, each: {min: 1, max: 16}}
    message: "{op} window {window} is outside 1..16"
    source: {doc: "team measurement"}
    confidence: observed
    fix: null
    fixtures:
      - expect: violate
        inputs: {x: [1, 8, 32, 32]}
        nodes: [{op: MaxPool, attrs: {kernel_shape: [17, 17]}}]
      - expect: pass
        inputs: {x: [1, 8, 32, 32]}
        nodes: [{op: MaxPool, attrs: {kernel_shape: [9, 9]}}]
""")
    layered = RuleDB.load([team])
    assert "TEAM-POOL-WINDOW" in layered.ids
    entries = layered.by_id("POOL-WINDOW")
    assert len(entries) == 1 and entries[0].source.doc == "team measurement"
    assert len(db.by_id("POOL-WINDOW")) == 1 and db.by_id("POOL-WINDOW")[0].source.doc != "team measurement"


def test_env_var_adds_rule_dirs(tmp_path, monkeypatch):
    team = tmp_path / "team"
    team.mkdir()
    write_rule_file(team, "team.yaml", GOOD_RULE)
    monkeypatch.setenv("DLARULES_RULES", str(team))
    assert "TEAM-POOL-WINDOW" in RuleDB.load().ids


def test_cache_follows_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("DLARULES_CACHE_DIR", str(tmp_path / "cache"))
    team = tmp_path / "team"
    team.mkdir()
    f = write_rule_file(team, "team.yaml", GOOD_RULE)
    first = RuleDB.load([team])
    assert any((tmp_path / "cache").iterdir())
    assert first.by_id("TEAM-POOL-WINDOW")[0].title == "Our stricter pooling window"
    f.write_text(f.read_text().replace("Our stricter pooling window", "Changed title, same size!!"))
    import os
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    assert RuleDB.load([team]).by_id("TEAM-POOL-WINDOW")[0].title == "Changed title, same size!!"


def test_missing_rules_dir_is_an_error(tmp_path):
    with pytest.raises(RulesError, match="rules directory not found"):
        RuleDB.load([tmp_path / "nope"])
