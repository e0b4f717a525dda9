"""The command line as a user meets it: exit codes, one-line errors, JSON that validates, rules validate."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import jsonschema
import pytest

from dlarules.cli import main
from dlarules.ruledb import packaged_rules_dir, schemas_dir

from conftest import EXAMPLE, run_cli


@pytest.fixture
def cli(capsys, monkeypatch):
    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["dlarules", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        out, err = capsys.readouterr()
        return exc.value.code, out, err
    return run


def one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_check_text_exit_1_with_fallbacks(cli):
    code, out, err = cli("check", str(EXAMPLE), "--target", "orin", "--trt", "8.6")
    assert code == 1 and err == ""
    assert "GPU fallbacks by rule" in out and "POOL-WINDOW" in out and "summary:" in out


def test_check_json_validates_against_schema(cli):
    code, out, _ = cli("check", str(EXAMPLE), "--target", "xavier", "--jetpack", "5.1.1", "--format", "json")
    assert code == 1
    report = json.loads(out)
    jsonschema.validate(report, json.loads((schemas_dir() / "report.schema.json").read_text()))
    assert report["target"] == {"hardware": "xavier", "tensorrt": "8.5", "release": "8.5", "platform": "jetson",
                                "precision": "fp16", "mode": {"name": "fp16", "precisions": ["fp16"],
                                                              "trtexec": ["--fp16"]},
                                "module": None, "dla_cores": 2, "dla_core": None}
    assert len(report["nodes"]) == 21   # every node, always


def test_check_exit_0_when_all_fits(cli, tmp_path):
    from dlarules import fixtures
    m = tmp_path / "ok.onnx"
    m.write_bytes(fixtures.build({"nodes": [{"op": "Relu"}, {"op": "Sigmoid"}]}).SerializeToString())
    code, out, _ = cli("check", str(m))
    assert code == 0 and "no rule fires" in out


def test_all_lists_every_node(cli):
    _, out, _ = cli("check", str(EXAMPLE), "--all")
    assert "every node:" in out and "/up/Shape: folded" in out


def test_output_file(cli, tmp_path):
    out_file = tmp_path / "r.json"
    code, out, _ = cli("check", str(EXAMPLE), "-f", "json", "-o", str(out_file))
    assert code == 1 and out == "" and json.loads(out_file.read_text())["model"] == str(EXAMPLE)


@pytest.mark.parametrize("args,needles", [
    (["check", "missing.onnx"], ["missing.onnx", "no such file"]),
    (["check", "EXAMPLE", "--target", "thor"], ["unknown hardware 'thor'"]),
    (["check", "EXAMPLE", "--trt", "9.9"], ["TensorRT 9.9 is not in the rule DB"]),
    (["check", "EXAMPLE", "--format", "xml"], ["--format", "xml"]),
    (["check", "EXAMPLE", "--input-shape", "nope:1x2"], ["no input 'nope'"]),
    (["check", "EXAMPLE", "--rules", "/nonexistent/rules"], ["/nonexistent/rules", "not found"]),
    (["check", "EXAMPLE", "--bogus-flag"], ["--bogus-flag"]),
])
def test_bad_input_is_one_line_exit_2(cli, args, needles):
    code, _, err = cli(*[str(EXAMPLE) if a == "EXAMPLE" else a for a in args])
    assert code == 2
    one_line_error(err, *needles)


def test_non_onnx_file(cli, tmp_path):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"\x00\x01garbage" * 100)
    code, _, err = cli("check", str(f))
    assert code == 2
    one_line_error(err, str(f))


def test_malformed_rule_file_is_exit_2(cli, tmp_path):
    (tmp_path / "bad.yaml").write_text("rules: [\n")
    code, _, err = cli("check", str(EXAMPLE), "--rules", str(tmp_path))
    assert code == 2
    one_line_error(err, str(tmp_path / "bad.yaml"), "not valid YAML")


def test_rules_validate_packaged(cli):
    code, out, _ = cli("rules", "validate")
    assert code == 0 and out.startswith("ok: ")


def test_rules_validate_reports_file_line_id(cli, tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(packaged_rules_dir(), rules)
    p = rules / "pooling.yaml"
    p.write_text(p.read_text().replace("require: {attr: window, each: {min: 1, max: 8}}",
                                       "require: {attr: windw, each: {min: 1, max: 8}}"))
    code, out, _ = cli("rules", "validate", str(rules))
    assert code == 1
    line = next(x for x in out.splitlines() if "windw" in x)
    assert line.startswith(f"{p}:") and ": POOL-WINDOW: " in line


def test_version(cli):
    code, out, _ = cli("--version")
    assert code == 0 and out.startswith("dlarules 0.") and "rule DB" in out


def test_module_entry_point_runs():
    r = run_cli("check", str(EXAMPLE), "--target", "xavier")
    assert r.returncode == 1 and "SOFTMAX-XAVIER" in r.stdout and r.stderr == ""


def test_option_values_are_checked():
    r = run_cli("check", str(EXAMPLE), "--min-dla-coverage", "150")
    assert r.returncode == 2 and "--min-dla-coverage: 150 is not a percentage" in r.stderr
    r = run_cli("rules", "diff", "--target", "orin", "--from", "1.0", "--to", "10.3")
    assert r.returncode == 2 and r.stderr.startswith("dlarules: error: --from: TensorRT 1.0")
    r = run_cli()
    assert r.returncode == 2 and "Usage" in r.stdout + r.stderr and "error: \n" not in r.stderr
