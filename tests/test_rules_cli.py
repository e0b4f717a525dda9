"""The rule DB as a product: list, show, diff, export, --rules and DLARULES_RULES, the embedding example."""
from __future__ import annotations

import json
import subprocess
import sys

import jsonschema

from dlarules.ruledb import schemas_dir

from conftest import CORPUS, EXAMPLE, ROOT, need_shared, run_cli

PRIVATE = ROOT / "examples" / "private_rules"


def test_list_filters():
    r = run_cli("rules", "list", "--target", "xavier", "--trt", "8.5", "--layer", "softmax")
    assert r.returncode == 0
    ids = {line.split()[0] for line in r.stdout.splitlines()}
    assert "SOFTMAX-XAVIER" in ids and "SOFTMAX-AXIS" not in ids and "GEN-RANK" in ids
    r = run_cli("rules", "list", "--layer", "nonsense")
    assert r.returncode == 2 and "unknown layer kind" in r.stderr


def test_show_everything_about_a_rule():
    r = run_cli("rules", "show", "pool-window")
    assert r.returncode == 0
    assert r.stdout.splitlines()[0] == "POOL-WINDOW"   # terminal text: no heading marks, bold, ticks or link targets
    for part in ("Requires: {attr: window, each: {min: 1, max: 8}}", "Source:", "Fixtures:",
                 "Fix recipe: avgpool-to-conv for AveragePool", "Window size in the range [1,8]"):
        assert part in r.stdout, part
    assert "https://github.com/NVIDIA/TensorRT" in r.stdout and "<https://" not in r.stdout   # the URL, bare
    for markdown in ("](", "**", "`", "# "):
        assert markdown not in r.stdout, markdown
    r = run_cli("rules", "show", "POOL-WINDOWS")
    assert r.returncode == 2 and "no such rule (did you mean POOL-WINDOW" in r.stderr


def test_show_tells_the_documented_limit_and_the_observed_evidence_apart():
    # POOL-INT8-AVG: NVIDIA's condition (source) and what real builds showed, each with its scope (evidence)
    r = run_cli("rules", "show", "POOL-INT8-AVG")
    assert r.returncode == 0
    out = r.stdout
    assert "- Confidence: observed" in out
    assert "the dynamic ranges for input and output tensors must be equal" in out      # NvInfer.h, the limit
    assert "- Evidence (observed; Xavier, TensorRT 8.5" in out and "/spp/scale1/scale1.0/AveragePool" in out
    assert "- Evidence (observed; Orin, TensorRT 8.4" in out                            # on DLA: why it starts at 8.5
    assert "- Evidence (documented; TensorRT 8.4 Developer Guide" in out


def test_diff_between_releases():
    r = run_cli("rules", "diff", "--target", "orin", "--from", "8.6", "--to", "10.3")
    assert r.returncode == 0 and "~ EW-OP" in r.stdout and "+ EW-POW-CONST" in r.stdout
    r = run_cli("rules", "diff", "--target", "orin", "--from", "8.6", "--to", "9.9")
    assert r.returncode == 2 and "TensorRT 9.9 is not in the rule DB" in r.stderr


def test_export_validates_against_its_schema(tmp_path):
    out = tmp_path / "db.json"
    assert run_cli("rules", "export", "-o", str(out)).returncode == 0
    schema = json.loads((schemas_dir() / "ruledb.schema.json").read_text())
    data = json.loads(out.read_text())
    jsonschema.validate(data, schema)
    assert data["selection"] is None and len(data["rules"]) >= 90
    r = run_cli("rules", "export", "--target", "xavier", "--trt", "8.5", "--rules", str(PRIVATE))
    sel = json.loads(r.stdout)
    jsonschema.validate(sel, schema)
    ids = {x["id"] for x in sel["rules"]}
    assert "TEAM-MAX-CHANNELS" in ids and "SOFTMAX-XAVIER" in ids and "SOFTMAX-AXIS" not in ids
    assert run_cli("rules", "export", "--format", "yaml").returncode == 2


def test_private_rules_by_option_and_environment():
    r = run_cli("check", str(EXAMPLE), "--rules", str(PRIVATE), "--format", "json")
    assert json.loads(r.stdout)["summary"]["fallbacks_by_rule"].get("TEAM-MAX-CHANNELS") is None  # 64 channels max
    big = run_cli("rules", "list", env={"DLARULES_RULES": str(PRIVATE)})
    assert "TEAM-MAX-CHANNELS" in big.stdout


def test_validate_bad_input_exits_2(tmp_path):
    r = run_cli("rules", "validate", str(tmp_path / "missing"))
    assert r.returncode == 2 and "no such file" in r.stderr


def test_embed_example_checks_a_corpus_model():
    need_shared()
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "embed.py"), str(CORPUS / "mobilenet_v2.onnx")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    # the GlobalAveragePool: Jetson Orin runs no Reduce through TensorRT 8.6 (NVIDIA's DLA-SW table)
    assert "TEAM-MAX-CHANNELS: 1 layer(s)" in r.stdout and "REDUCE-SUPPORT" in r.stdout
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert summary["layers"] > 90 and summary["dla_only"] is False
