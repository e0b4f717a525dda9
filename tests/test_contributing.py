"""CONTRIBUTING.md's steps for a new TensorRT release, followed end to end on a copy of the rules."""
from __future__ import annotations

import re
import shutil

import yaml

from dlarules.ruledb import packaged_rules_dir

from conftest import EXAMPLE, ROOT, run_cli


def test_add_a_release_end_to_end(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(packaged_rules_dir(), rules)
    env = {"DLARULES_BASE_RULES": str(rules), "DLARULES_CACHE_DIR": str(tmp_path / "cache")}
    # 1. the release entry (and a JetPack that ships it)
    rel = yaml.safe_load((rules / "releases.yaml").read_text())
    base = next(r for r in rel["releases"] if r["version"] == "10.7")
    rel["releases"].append({**base, "version": "10.99", "note": "made-up",
                            "loadable_limit": {"per_core": 16, "evidence": "made-up release notes"}})
    rel["jetpack"]["9.9"] = {"tensorrt": "10.99", "hardware": ["orin"]}
    # 7. the version bump
    major, minor, patch = map(int, rel["db_version"].split("."))
    rel["db_version"] = f"{major}.{minor + 1}.0"
    (rules / "releases.yaml").write_text(yaml.safe_dump(rel, sort_keys=False))
    # 2. a changed limit: cap the old entry, add the new one under the same ID; 3. with fixtures
    lrn_file = rules / "misc.yaml"
    data = yaml.safe_load(lrn_file.read_text())
    old = next(r for r in data["rules"] if r["id"] == "LRN-WINDOW")
    old["tensorrt"] = "<10.99"
    data["rules"].append({**old, "tensorrt": ">=10.99", "title": "LRN window is odd, 3 to 11",
                          "require": {"attr": "window", "in": [3, 5, 7, 9, 11]},
                          "message": "{op} window {window} is not one of DLA's 3, 5, 7, 9, 11",
                          "fixtures": [{"expect": "violate", "target": {"hardware": "orin", "trt": "10.99"},
                                        "nodes": [{"op": "LRN", "attrs": {"size": 13}}]},
                                       {"expect": "pass", "target": {"hardware": "orin", "trt": "10.99"},
                                        "nodes": [{"op": "LRN", "attrs": {"size": 11}}]}]})
    lrn_file.write_text(yaml.safe_dump(data, sort_keys=False))
    # 4. validate, fixtures included
    r = run_cli("rules", "validate", "--fixtures", env=env)
    assert r.returncode == 0 and r.stdout.startswith("ok:"), r.stdout + r.stderr
    # 5. review the release as data
    r = run_cli("rules", "diff", "--target", "orin", "--from", "10.7", "--to", "10.99", "--format", "json", env=env)
    assert r.returncode == 0
    import json
    d = json.loads(r.stdout)
    assert [c["id"] for c in d["changed"]] == ["LRN-WINDOW"] and not d["added"] and not d["removed"]
    # the release is usable: by version and by JetPack
    model = tmp_path / "lrn.onnx"
    from dlarules import fixtures
    model.write_bytes(fixtures.build({"nodes": [{"op": "LRN", "attrs": {"size": 11}}]}).SerializeToString())
    assert run_cli("check", str(model), "--target", "orin", "--trt", "10.7", env=env).returncode == 1
    assert run_cli("check", str(model), "--target", "orin", "--jetpack", "9.9", env=env).returncode == 0
    assert run_cli("check", str(EXAMPLE), "--target", "orin", "--trt", "10.99", env=env).returncode == 1
    # 6. regenerated docs show both entries
    docs = tmp_path / "docs"
    assert run_cli("rules", "docs", "--out", str(docs), env=env).returncode == 0
    page = (docs / "rules" / "LRN-WINDOW.md").read_text()
    assert "TensorRT <10.99" in page and "TensorRT >=10.99" in page
    assert "orin 10.99" in (docs / "rules" / "matrix.md").read_text()
    r = run_cli("--version", env=env)
    assert f"rule DB {major}.{minor + 1}.0" in r.stdout


def test_changelog_has_a_section_for_the_current_db_version():
    version = yaml.safe_load((packaged_rules_dir() / "releases.yaml").read_text())["db_version"]
    assert re.search(rf"^### Rule DB {re.escape(version)}$", (ROOT / "CHANGELOG.md").read_text(), re.M)


def test_rule_files_carry_the_schema_modeline():
    for f in list(packaged_rules_dir().glob("*.yaml")) + list((ROOT / "examples" / "private_rules").glob("*.yaml")):
        first = f.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema=") and "schemas/" in first, f
