"""Config files (dlarules/config.py: found above each model, validated strictly, CLI > override > top level >
defaults) and accepted fallbacks ([[ignore]], dlarules/accept.py: in every report, out of the exit code)."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from dlarules import config, fixtures
from dlarules.errors import DlarulesError
from dlarules.ruledb import schemas_dir

from conftest import ROOT, run_cli

SARIF_SCHEMA = json.loads((ROOT / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())
REPORT_SCHEMA = json.loads((schemas_dir() / "report.schema.json").read_text())
# two fallbacks: POOL-WINDOW (9x9 window) on /ctx/pool and ACT-TYPE (HardSwish) on /blk/hs
TWO = {"inputs": {"x": [1, 8, 32, 32]}, "nodes": [
    {"op": "Relu"}, {"op": "AveragePool", "name": "/ctx/pool", "attrs": {"kernel_shape": [9, 9]}},
    {"op": "HardSwish", "name": "/blk/hs"}, {"op": "Relu"}]}
OK = {"nodes": [{"op": "Relu"}, {"op": "Sigmoid"}]}


def _model(path: Path, spec: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(fixtures.build(spec).SerializeToString())
    return path


def _json(proc) -> dict:
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


# ---- finding, parsing, merging (pure) ----------------------------------------------------------------------------

def test_found_walking_up_pyproject_without_table_skipped(tmp_path):
    (tmp_path / "dlarules.toml").write_text('target = "xavier"\n')
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "pyproject.toml").write_text('[project]\nname = "x"\n')   # another tool's: not ours
    (tmp_path / "a" / "b").mkdir()
    model = tmp_path / "a" / "b" / "m.onnx"
    assert config.find(model) == tmp_path / "dlarules.toml"
    (tmp_path / "a" / "pyproject.toml").write_text('[tool.dlarules]\ntarget = "orin"\n')
    assert config.find(model) == tmp_path / "a" / "pyproject.toml"
    (tmp_path / "a" / "dlarules.toml").write_text('trt = "8.6"\n')                 # same folder: dlarules.toml wins
    assert config.find(model) == tmp_path / "a" / "dlarules.toml"


def test_precedence_cli_then_last_override_then_top_then_defaults(tmp_path):
    cfg = tmp_path / "pyproject.toml"
    cfg.write_text('[tool.dlarules]\ntarget = "xavier"\ntrt = "8.5"\nprecision = "int8"\nrules = ["my-rules"]\n'
                   '[[tool.dlarules.overrides]]\nfiles = ["models/*.onnx"]\nprecision = "int8+fp16"\n'
                   '[[tool.dlarules.overrides]]\nfiles = ["models/det/*.onnx"]\njetpack = "5.1.1"\n'
                   'min-dla-coverage = 80\n')
    det = tmp_path / "models" / "det" / "y.onnx"
    s = config.resolve(det, {})
    assert s["target"] == "xavier" and s["precision"] == "int8+fp16"         # first override (models/* crosses /)
    assert s["jetpack"] == "5.1.1" and s["trt"] is None                       # an override's jetpack replaces trt
    assert s["min-dla-coverage"] == 80 and s["dla-only"] is False and s["format"] == "text"   # defaults stay
    assert s["rules"] == [str((tmp_path / "my-rules").resolve())]            # relative to the config file
    assert s.origin["precision"] == f"{cfg}:8" and s.origin["jetpack"] == f"{cfg}:11"
    other = config.resolve(tmp_path / "x.onnx", {})
    assert other["precision"] == "int8" and other["trt"] == "8.5"           # no override matches
    cli = config.resolve(det, {"precision": "fp16", "trt": "8.6"})
    assert cli["precision"] == "fp16" and cli["trt"] == "8.6" and cli["jetpack"] is None
    assert "precision" not in cli.origin
    assert config.resolve(det, {}, use_config=False)["target"] == "orin"     # --no-config: defaults


@pytest.mark.parametrize("text, line, words", [
    ('target = "orin"\nmin_dla_coverage = 5\n', 2, "did you mean min-dla-coverage?"),
    ('trt = 10.3\n', 1, 'write versions as strings (trt = "10.3")'),
    ('target = "orin\n', 1, "not valid TOML"),
    ('[[ignore]]\nrule = "POOL-WINDOW"\n', 1, "needs a reason"),
    ('[[ignore]]\nreason = "x"\nrule = "A"\nnodes = "x"\n', 4, "did you mean node?"),
    ('[[overrides]]\nprecision = "int8"\n', 1, "needs files"),
    ('[[overrides]]\nfiles = ["*.onnx"]\nformat = "json"\n', 3, "one per call"),
    ('dla-core = -1\n', 1, "an integer >= 0"),
    ('min-dla-coverage = 101\n', 1, "a percentage"),
])
def test_bad_config_is_one_line_with_file_and_line(tmp_path, text, line, words):
    cfg = tmp_path / "dlarules.toml"
    cfg.write_text(text)
    with pytest.raises(DlarulesError) as exc:
        config.load(cfg)
    msg = exc.value.line()
    assert msg.startswith(f"{cfg}:{line}: ") and words in msg and "\n" not in msg and len(msg) <= 280


def test_files_globs_are_relative_to_the_config_and_bare_names_match_the_file_name(tmp_path):
    assert config.matches_files(("models/det/*.onnx",), tmp_path / "models" / "det" / "a.onnx", tmp_path)
    assert not config.matches_files(("models/det/*.onnx",), tmp_path / "models" / "seg" / "a.onnx", tmp_path)
    assert config.matches_files(("yolo*.onnx",), tmp_path / "deep" / "yolov8n.onnx", tmp_path)
    assert config.matches_files(("./models/*",), tmp_path / "models" / "a.onnx", tmp_path)


# ---- the command line --------------------------------------------------------------------------------------------

def test_check_takes_target_from_config_and_cli_wins(tmp_path):
    m = _model(tmp_path / "models" / "two.onnx", TWO)
    (tmp_path / "dlarules.toml").write_text('target = "xavier"\ntrt = "8.5"\nformat = "json"\n')
    data = _json(run_cli("check", str(m), cwd=tmp_path))
    assert data["target"]["hardware"] == "xavier" and data["target"]["tensorrt"] == "8.5"
    data = _json(run_cli("check", str(m), "--target", "orin", "--trt", "10.3", cwd=tmp_path))
    assert data["target"]["hardware"] == "orin" and data["target"]["tensorrt"] == "10.3"
    text = run_cli("check", str(m), "--no-config", cwd=tmp_path)
    assert text.stdout.startswith("dlarules: ") and "TensorRT 10.3" in text.stdout   # defaults, text format
    (tmp_path / "dlarules.toml").write_text('target = "orim"\n')
    bad = run_cli("check", str(m), cwd=tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == (f"dlarules: error: {tmp_path / 'dlarules.toml'}:1: target: unknown hardware 'orim' "
                                  f"(families and modules: xavier, orin, agx-xavier, xavier-nx, agx-orin, "
                                  f"orin-nx-16, orin-nx-8, orin-nano, drive-orin, orin-nx)")


def test_accepted_fallbacks_exit_0_and_show_in_every_format(tmp_path):
    m = _model(tmp_path / "two.onnx", TWO)
    assert run_cli("check", "two.onnx", cwd=tmp_path).returncode == 1         # no config: fails
    (tmp_path / "dlarules.toml").write_text(
        'target = "orin"\ntrt = "10.3"\n'
        '[[ignore]]\nrule = "POOL-WINDOW"\nnode = "/ctx/*"\nreason = "context pool stays on the GPU"\n'
        '[[ignore]]\nrule = "ACT-TYPE"\nreason = "HardSwish is cheap on the GPU"\n'
        '[[ignore]]\nrule = "SOFTMAX-AXIS"\nreason = "stale"\n')
    text = run_cli("check", "two.onnx", cwd=tmp_path)
    assert text.returncode == 0, text.stdout + text.stderr
    assert "accepted: context pool stays on the GPU" in text.stdout and text.stderr == ""
    assert f"unused ignore: {tmp_path / 'dlarules.toml'}:10: SOFTMAX-AXIS" in text.stdout
    assert "every GPU fallback is accepted (2 layer(s))" in text.stdout
    js = run_cli("check", "two.onnx", "--format", "json", cwd=tmp_path)
    data = _json(js)
    jsonschema.validate(data, REPORT_SCHEMA)
    findings = {f["rule"]: f for n in data["nodes"] for layer in n["layers"] for f in layer["findings"]}
    assert findings["POOL-WINDOW"]["accepted"] == "context pool stays on the GPU"
    assert [(i["rule"], i["used"]) for i in data["ignores"]] == [("POOL-WINDOW", 1), ("ACT-TYPE", 1),
                                                                  ("SOFTMAX-AXIS", 0)]
    assert data["summary"]["layers_on_gpu"] == 2 and data["summary"]["layers_accepted"] == 2   # still on the GPU
    sarif = run_cli("check", "two.onnx", "--format", "sarif", cwd=tmp_path)
    doc = json.loads(sarif.stdout)
    jsonschema.validate(doc, SARIF_SCHEMA)
    results = doc["runs"][0]["results"]
    assert {r["ruleId"] for r in results} == {"POOL-WINDOW", "ACT-TYPE"}
    assert all(r["suppressions"][0]["kind"] == "external" and r["suppressions"][0]["justification"] for r in results)
    gh = run_cli("check", "two.onnx", "--format", "github", cwd=tmp_path)
    assert gh.returncode == 0 and "::error" not in gh.stdout and "accepted" in gh.stdout
    junit = run_cli("check", "two.onnx", "--format", "junit", cwd=tmp_path)
    assert junit.returncode == 0 and "<failure" not in junit.stdout and "(accepted: " in junit.stdout
    md = run_cli("check", "two.onnx", "--format", "markdown", cwd=tmp_path)
    assert "PASS" in md.stdout.splitlines()[0] and "1 accepted: context pool" in md.stdout
    html = run_cli("check", "two.onnx", "--format", "html", cwd=tmp_path)
    assert html.returncode == 0 and "accepted: context pool stays on the GPU" in html.stdout
    # gates still see the accepted layers on the GPU: coverage stays honest
    gated = run_cli("check", "two.onnx", "--min-dla-coverage", "100", cwd=tmp_path)
    assert gated.returncode == 1 and "gate failed: DLA coverage" in gated.stdout


def test_a_partly_accepted_model_still_fails_and_bad_rule_ids_are_caught(tmp_path):
    _model(tmp_path / "two.onnx", TWO)
    cfg = tmp_path / "pyproject.toml"
    cfg.write_text('[tool.dlarules]\ntrt = "10.3"\n[[tool.dlarules.ignore]]\nrule = "pool-window"\n'
                   'node = "/elsewhere/*"\nreason = "r"\n[[tool.dlarules.ignore]]\nrule = "ACT-TYPE"\nreason = "r"\n')
    r = run_cli("check", "two.onnx", cwd=tmp_path)
    assert r.returncode == 1 and "1 layer(s) (1 accepted)" in r.stdout
    assert f"unused ignore: {cfg}:3: POOL-WINDOW node /elsewhere/*" in r.stdout   # the node glob matched nothing
    cfg.write_text('[tool.dlarules]\n[[tool.dlarules.ignore]]\nrule = "POOL-WINDOWS"\nreason = "r"\n')
    bad = run_cli("check", "two.onnx", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith(f"dlarules: error: {cfg}:2: ")
    assert "did you mean POOL-WINDOW?" in bad.stderr and bad.stdout == ""


def test_many_models_each_get_the_config_above_them(tmp_path):
    a = _model(tmp_path / "a" / "two.onnx", TWO)
    b = _model(tmp_path / "b" / "two.onnx", TWO)
    (tmp_path / "a" / "dlarules.toml").write_text('trt = "10.3"\n[[ignore]]\nrule = "POOL-WINDOW"\nreason = "r"\n'
                                                  '[[ignore]]\nrule = "ACT-TYPE"\nreason = "r"\n')
    (tmp_path / "b" / "dlarules.toml").write_text('target = "xavier"\ntrt = "8.5"\n')
    data = _json(run_cli("check", str(a), str(b), "--format", "json", cwd=tmp_path))
    by = {r["model"]: r for r in data["reports"]}
    assert by[str(a)]["target"]["tensorrt"] == "10.3" and by[str(b)]["target"]["hardware"] == "xavier"
    assert [x["exit_code"] for x in data["summary"]["by_model"]] == [0, 1]
    assert "ignores" not in by[str(b)]


def test_fix_and_split_take_the_target_from_config(tmp_path):
    _model(tmp_path / "two.onnx", TWO)
    (tmp_path / "dlarules.toml").write_text('target = "xavier"\ntrt = "8.5"\n')
    fix = run_cli("fix", "two.onnx", "--dry-run", "--no-verify", cwd=tmp_path)
    assert fix.returncode in (0, 1) and "TensorRT 8.5" in fix.stdout, fix.stdout + fix.stderr
    both = run_cli("split", "two.onnx", "--config", "dlarules.toml", "--no-config", cwd=tmp_path)
    assert both.returncode == 2 and "--config: cannot go with --no-config" in both.stderr


def test_a_missing_rules_folder_in_the_config_names_the_config_line(tmp_path):
    # found by the fuzz campaign: the line named only the resolved folder, not the config that asked for it
    import shutil
    from conftest import EXAMPLE, run_cli
    shutil.copy(EXAMPLE, tmp_path / "m.onnx")
    (tmp_path / "dlarules.toml").write_text('target = "orin"\nrules = ["nosuch"]\n')
    r = run_cli("check", str(tmp_path / "m.onnx"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "dlarules.toml:2: rules: " in r.stderr and "nosuch" in r.stderr


def test_a_release_the_module_s_platform_lacks_names_the_version_given(tmp_path):
    # found by the fuzz campaign: `--target drive-orin` with trt 10.0 (from the config) blamed --platform, which
    # nobody gave; now the version is named, where it came from (the config line, or --trt)
    import shutil
    from conftest import EXAMPLE, run_cli
    shutil.copy(EXAMPLE, tmp_path / "m.onnx")
    r = run_cli("check", str(tmp_path / "m.onnx"), "--target", "drive-orin", "--trt", "10.0", "--no-config")
    assert r.returncode == 2 and r.stderr.startswith("dlarules: error: --trt: TensorRT 10.0 is not a drive release")
    assert "--target drive-orin is a drive platform" in r.stderr
    (tmp_path / "dlarules.toml").write_text('trt = "10.0"\n')
    r = run_cli("check", str(tmp_path / "m.onnx"), "--target", "drive-orin")
    assert r.returncode == 2 and "dlarules.toml:1: trt: TensorRT 10.0 is not a drive release" in r.stderr


def test_an_edited_config_is_read_again(tmp_path):
    # a long-lived host (the API, a pre-commit run) must not be served a stale parse of a config that changed
    import os
    from dlarules import config
    p = tmp_path / "dlarules.toml"
    p.write_text('target = "orin"\n')
    assert config.load_cached(p).options["target"] == "orin"
    p.write_text('target = "xavier"\n')
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))   # a new mtime even on a coarse clock
    assert config.load_cached(p).options["target"] == "xavier"
