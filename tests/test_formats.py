"""Report formats (report/formats.py registry): SARIF validated against the official OASIS 2.1.0 schema, JUnit
parsed, Markdown and GitHub annotations checked for content, golden files on a small builder model; many models
in one `check` call (per-model lines, worst exit code, one JSON document, schemas/reports.schema.json)."""
from __future__ import annotations

import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from dlarules import fixtures, trtlog
from dlarules.api import CheckItem, check, check_many
from dlarules.compare import compare
from dlarules.report import formats
from dlarules.report.formats import Context, FixView
from dlarules.report.github import escape_data, escape_property
from dlarules.ruledb import schemas_dir

from conftest import EXAMPLE, ROOT

GOLDEN = ROOT / "tests" / "golden"
SARIF_SCHEMA = json.loads((ROOT / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())
# a node name with every character a format must escape (GitHub properties, Markdown tables, XML)
ODD = "/blk|a,b:50%`x`<&>"
TINY = {"inputs": {"x": [1, 8, 32, 32]}, "nodes": [
    {"op": "Relu"},
    {"op": "AveragePool", "attrs": {"kernel_shape": [9, 9]}},       # POOL-WINDOW (window 1..8)
    {"op": "HardSwish", "name": ODD},                               # ACT-TYPE
    {"op": "Relu"}]}


@pytest.fixture
def models(tmp_path, monkeypatch):
    """tiny.onnx (3 rules fire), ok.onnx (all on DLA), bad.onnx (not ONNX), in a working directory of their own."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.onnx").write_bytes(fixtures.build(TINY).SerializeToString())
    (tmp_path / "ok.onnx").write_bytes(fixtures.build({"nodes": [{"op": "Relu"}, {"op": "Sigmoid"}]})
                                       .SerializeToString())
    (tmp_path / "bad.onnx").write_text("not onnx\n")
    return tmp_path


def _items(db, names, **gates):
    items = check_many(names, db, db.target("orin", "10.3"), **gates)
    for i in items:
        i.seconds = None   # golden files hold no timings
    return items


def _render(name, kind, result, db, cwd):
    return formats.get(name, kind).render(kind, result, Context(db=db, cwd=cwd))


def _golden(name: str, got: str) -> None:
    path = GOLDEN / name
    if os.environ.get("DLARULES_UPDATE_GOLDEN"):
        path.write_text(got)
    assert path.exists(), f"missing golden file {path}; run with DLARULES_UPDATE_GOLDEN=1"
    assert got == path.read_text()


# ---- the registry ----------------------------------------------------------------------------------------------

def test_registry_lists_formats_per_result_kind():
    assert formats.names("check")[:6] == ["text", "json", "sarif", "markdown", "github", "junit"]
    assert set(formats.names("compare")) >= {"text", "json", "sarif", "markdown", "github", "junit"}
    assert set(formats.names("fix")) >= {"text", "json", "markdown"} and "sarif" not in formats.names("fix")
    assert formats.names("verify") == ["text", "json"]
    # html is another branch's module: registered exactly when it exists
    import importlib.util
    assert ("html" in formats.registry()) == (importlib.util.find_spec("dlarules.report.html") is not None)


def test_a_format_that_cannot_render_a_kind_says_so():
    from dlarules.errors import DlarulesError
    with pytest.raises(DlarulesError) as exc:
        formats.get("sarif", "fix")
    assert exc.value.line().startswith("--format: 'sarif' cannot render a fix result; fix takes text, json")
    with pytest.raises(DlarulesError, match="'xml' is not a format; check takes text, json, sarif"):
        formats.get("xml", "check")


# ---- SARIF -----------------------------------------------------------------------------------------------------

def test_sarif_validates_and_has_a_result_per_fallback_layer(db, models):
    items = _items(db, ["tiny.onnx"])
    report = items[0].report
    doc = json.loads(_render("sarif", "check", items, db, models))
    jsonschema.validate(doc, SARIF_SCHEMA)
    run = doc["runs"][0]
    fallbacks = [(v.name, f.rule) for v in report.gpu_layers for f in v.findings]
    assert len(fallbacks) >= 2
    assert sorted((r["properties"]["layer"], r["ruleId"]) for r in run["results"]) == sorted(fallbacks)
    assert {r["level"] for r in run["results"]} == {"error"}          # the model fails the exit code
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    for res in run["results"]:
        assert rules[res["ruleId"]] is run["tool"]["driver"]["rules"][res["ruleIndex"]]
        loc = res["locations"][0]
        assert loc["physicalLocation"]["artifactLocation"]["uri"] == "tiny.onnx"   # relative to the working dir
        node = next(v for v in report.layers if v.name == res["properties"]["layer"]).nodes
        assert [x["name"] for x in loc["logicalLocations"]] == node
    pool = rules["POOL-WINDOW"]
    assert pool["shortDescription"]["text"] == db.by_id("POOL-WINDOW")[0].title
    assert pool["helpUri"].endswith("/POOL-WINDOW.md") and "avgpool-to-conv" == pool["properties"]["fix"]
    assert run["artifacts"] == [{"location": {"uri": "tiny.onnx"}, "roles": ["analysisTarget"]}]


def test_sarif_levels_follow_the_exit_code_and_errors_are_notifications(db, models):
    # gates that pass: the fallbacks are warnings; the unreadable model is a tool execution notification
    items = _items(db, ["tiny.onnx", "ok.onnx", "bad.onnx"], min_dla_coverage=10)
    assert [i.exit_code for i in items] == [0, 0, 2]
    doc = json.loads(_render("sarif", "check", items, db, models))
    jsonschema.validate(doc, SARIF_SCHEMA)
    run = doc["runs"][0]
    assert {r["level"] for r in run["results"]} == {"warning"}
    inv = run["invocations"][0]
    assert inv["executionSuccessful"] is False
    [note] = inv["toolExecutionNotifications"]
    assert note["level"] == "error" and "bad.onnx" in note["message"]["text"]
    assert [a["location"]["uri"] for a in run["artifacts"]] == ["tiny.onnx", "ok.onnx", "bad.onnx"]
    # a failed gate is an error result of its own
    gated = _items(db, ["tiny.onnx"], max_dla_subgraphs=0)
    doc = json.loads(_render("sarif", "check", gated, db, models))
    jsonschema.validate(doc, SARIF_SCHEMA)
    gates = [r for r in doc["runs"][0]["results"] if r["ruleId"] == formats.GATE_RULE]
    assert len(gates) == 1 and gates[0]["level"] == "error" and "exceed the maximum of 0" in gates[0]["message"]["text"]


def test_sarif_notes_layers_demoted_to_a_fallback_precision(db, tmp_path, monkeypatch):
    # a Split becomes Slices, which DLA runs in FP16 only: in an int8+fp16 build they run on DLA, demoted
    monkeypatch.chdir(tmp_path)
    spec = {"opset": 11, "inputs": {"x": [1, 8, 16, 16]},
            "nodes": [{"op": "Split", "attrs": {"axis": 1, "split": [4, 4]}, "outputs": 2}, {"op": "Relu"}]}
    (tmp_path / "split.onnx").write_bytes(fixtures.build(spec).SerializeToString())
    report = check("split.onnx", db, hardware="agx-orin", trt="10.3", precision="int8+fp16")
    demoted = [v for v in report.layers if v.demoted and v.precision is not None and report.on_dla(v.index)]
    assert demoted
    doc = json.loads(_render("sarif", "check", [CheckItem(report.model, report)], db, tmp_path))
    jsonschema.validate(doc, SARIF_SCHEMA)
    notes = [r for r in doc["runs"][0]["results"] if r["level"] == "note"]
    assert sorted(r["properties"]["layer"] for r in notes) == sorted(
        v.name for v in demoted for _, fs in v.demoted for _ in fs)
    assert all(r["properties"]["precision"] == "fp16" for r in notes)


def test_sarif_uri_outside_the_working_dir_is_a_file_uri(tmp_path):
    from dlarules.report.sarif import artifact_uri
    assert artifact_uri(tmp_path / "a b.onnx", tmp_path) == "a%20b.onnx"
    assert artifact_uri(tmp_path / "m.onnx", tmp_path / "sub") == (tmp_path / "m.onnx").resolve().as_uri()


# ---- JUnit, GitHub, Markdown -----------------------------------------------------------------------------------

def test_junit_one_case_per_model_failure_when_it_falls_back(db, models):
    items = _items(db, ["tiny.onnx", "ok.onnx", "bad.onnx"])
    root = ET.fromstring(_render("junit", "check", items, db, models))
    assert root.tag == "testsuites" and (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "1")
    [suite] = root.findall("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["tiny.onnx", "ok.onnx", "bad.onnx"]
    failure = cases["tiny.onnx"].find("failure")
    assert failure is not None and "POOL-WINDOW" in failure.text and ODD in failure.text
    assert cases["ok.onnx"].find("failure") is None and cases["ok.onnx"].find("error") is None
    assert cases["bad.onnx"].find("error").get("type") == "not-checked"
    assert "orin / TensorRT 10.3" in suite.get("name")


def test_junit_survives_names_xml_cannot_hold(db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = {"inputs": {"x": [1, 8, 32, 32]}, "nodes": [{"op": "HardSwish", "name": "bad\x01name\x1f"}]}
    (tmp_path / "m.onnx").write_bytes(fixtures.build(spec).SerializeToString())
    root = ET.fromstring(_render("junit", "check", _items(db, ["m.onnx"]), db, tmp_path))
    assert "bad\ufffdname\ufffd" in root.find("testsuite/testcase/failure").text


def test_github_escapes_per_workflow_command_rules(db, models):
    assert escape_data("50% a\r\nb") == "50%25 a%0D%0Ab"
    assert escape_property("a,b:c%\n") == "a%2Cb%3Ac%25%0A"
    out = _render("github", "check", _items(db, ["tiny.onnx", "bad.onnx"]), db, models)
    lines = out.splitlines()
    errors = [x for x in lines if x.startswith("::error file=tiny.onnx,title=")]
    report = check("tiny.onnx", db, hardware="orin", trt="10.3")
    assert len(errors) == len(report.findings_by_rule())            # one per rule
    act = next(x for x in errors if "title=ACT-TYPE" in x)
    assert "/blk|a,b:50%25`x`<&>" in act                            # the data part: only % CR LF escaped
    assert any(x.startswith("::error file=bad.onnx,title=dlarules%3A not checked::") for x in lines)
    assert any(x.startswith("::notice file=tiny.onnx,title=dlarules::") for x in lines)
    assert all(x.startswith("::") and "\r" not in x for x in lines)


def test_markdown_summary_and_fix_hint(db, models):
    items = _items(db, ["tiny.onnx"])
    md = _render("markdown", "check", items, db, models)
    assert md.startswith("### dlarules: `tiny.onnx`: FAIL")
    cov = items[0].report.coverage["layers_pct"]
    assert f"| DLA coverage | {cov:.1f}% of layers" in md
    assert "[POOL-WINDOW](" in md and "`avgpool-to-conv`" in md and "dlarules fix tiny.onnx" in md
    # a code span holding a backtick is fenced by two; its pipe is escaped for the table; <&> stay literal in code
    assert "``ACTIVATION: /blk\\|a,b:50%`x`<&>``" in md
    assert len(md.splitlines()) < 40


def test_markdown_caps_the_rule_table(db, models):
    from dlarules.report import markdown
    items = _items(db, ["tiny.onnx", "ok.onnx"])
    old = markdown.MAX_ROWS
    markdown.MAX_ROWS = 1
    try:
        md = _render("markdown", "check", items, db, models)
    finally:
        markdown.MAX_ROWS = old
    n_rules = len(items[0].report.findings_by_rule())
    assert f"... and {n_rules - 1} more rule(s)" in md and "... and 1 more model(s)" in md


# ---- golden files on the builder model ---------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["sarif", "markdown", "github", "junit", "text", "json"])
def test_golden_many_models(fmt, db, models):
    names = ["tiny.onnx", "ok.onnx", "bad.onnx"]
    got = _render(fmt, "check", _items(db, names), db, models)
    _golden(f"many_tiny_ok_bad_orin_10.3.{ {'markdown': 'md', 'github': 'gh', 'junit': 'xml'}.get(fmt, fmt) }", got)


@pytest.mark.parametrize("fmt", ["sarif", "markdown", "github", "junit"])
def test_golden_one_model(fmt, db, models):
    got = _render(fmt, "check", _items(db, ["tiny.onnx"]), db, models)
    _golden(f"tiny_orin_10.3.{ {'markdown': 'md', 'github': 'gh', 'junit': 'xml'}.get(fmt, fmt) }", got)


# ---- compare and fix -------------------------------------------------------------------------------------------

def _log(report, drop: int = 1) -> str:
    """A trtexec-style placement list from the prediction, with the first `drop` GPU layers run on DLA instead
    (so the comparison has rule-too-strict rows) and one made-up GPU layer (missing-rule)."""
    by = {v.index: v for v in report.layers}
    gpu = [f"{by[i].kind}: {by[i].name}" for i in report.placement.gpu_layers][drop:]
    lines = ["[I] [TRT] ---------- Layers Running on DLA ----------"]
    lines += [f"[I] [TRT] [DlaLayer] {{{sg.name}}}" for sg in report.placement.subgraphs if not sg.moved_to_gpu]
    lines += ["[I] [TRT] ---------- Layers Running on GPU ----------"]
    lines += [f"[I] [TRT] [GpuLayer] {g}" for g in gpu + ["CONVOLUTION: /stem/Conv"]]
    return "\n".join(lines) + "\n"


def test_compare_formats(db, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    report = check("examples/dla_demo.onnx", db, hardware="orin", trt="10.3")
    log = tmp_path / "build.log"
    log.write_text(_log(report))
    c = compare(report, trtlog.read(log))
    assert not c.agreed and c.disagreements["rule-too-strict"] == 1 and c.disagreements["missing-rule"] == 1
    doc = json.loads(_render("sarif", "compare", c, db, ROOT))
    jsonschema.validate(doc, SARIF_SCHEMA)
    bad_subgraphs = [r for r in c.subgraph_rows if r.status != "agreed"]
    want = sorted(["missing-rule", "rule-too-strict"] + ["subgraph-differs"] * len(bad_subgraphs))
    assert sorted(r["ruleId"] for r in doc["runs"][0]["results"]) == want
    root = ET.fromstring(_render("junit", "compare", c, db, ROOT))
    fails = [tc for tc in root.iter("testcase") if tc.find("failure") is not None]
    count_differs = c.predicted_subgraphs != c.observed_subgraphs
    assert int(root.get("failures")) == len(fails) == len(want) + count_differs
    assert {"missing-rule", "rule-too-strict"} <= {f.find("failure").get("type") for f in fails}
    gh = _render("github", "compare", c, db, ROOT).splitlines()
    assert sum(x.startswith("::error file=examples/dla_demo.onnx,title=dlarules compare%3A ") for x in gh) == len(want)
    md = _render("markdown", "compare", c, db, ROOT)
    assert "disagrees with" in md and "| rule-too-strict |" in md.replace("predicted-not-seen | ", "")


def test_fix_markdown_before_after(db, monkeypatch):
    from dlarules.fix import fix
    monkeypatch.chdir(ROOT)
    result = fix("examples/dla_demo.onnx", db, db.target("orin", "10.3"), verify=False)
    md = _render("markdown", "fix", FixView(result, None, True), db, ROOT)
    b, a = result.before.summary, result.after.summary
    assert a["layers_on_gpu"] < b["layers_on_gpu"]
    assert f"| GPU layers | {b['layers_on_gpu']} | {a['layers_on_gpu']} |" in md
    assert all(f"`{c.recipe}`" in md for c in result.changes) and "Dry run: nothing written." in md


# ---- many models on the command line -----------------------------------------------------------------------------

def _cli(monkeypatch, capsys, *args):
    from dlarules.cli import main
    monkeypatch.setattr(sys, "argv", ["dlarules", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_check_many_models_text_worst_exit(models, monkeypatch, capsys):
    code, out, err = _cli(monkeypatch, capsys, "check", "tiny.onnx", "ok.onnx", "--trt", "10.3")
    assert code == 1 and err == ""
    assert out.splitlines()[0] == "dlarules: 2 model(s)"
    assert any(x.startswith("tiny.onnx: ") and x.endswith(": GPU fallbacks") for x in out.splitlines())
    assert any(x.startswith("ok.onnx: ") and x.endswith(": all on DLA") for x in out.splitlines())
    assert "summary:" in out and "POOL-WINDOW" in out
    # a bad model: its line (stdout and one stderr line), the others still checked, exit 2
    code, out, err = _cli(monkeypatch, capsys, "check", "bad.onnx", "ok.onnx", "--trt", "10.3")
    assert code == 2 and "ok.onnx: 2 layers on DLA" in out and "bad.onnx: error: not a readable ONNX model" in out
    assert len(err.strip().splitlines()) == 1 and "bad.onnx" in err


def test_check_many_bad_option_stops_at_once(models, monkeypatch, capsys):
    code, out, err = _cli(monkeypatch, capsys, "check", "tiny.onnx", "ok.onnx", "--target", "thor")
    assert code == 2 and out == "" and "unknown hardware 'thor'" in err
    code, out, err = _cli(monkeypatch, capsys, "check", "tiny.onnx", "ok.onnx", "-f", "nope")
    assert code == 2 and out == "" and "--format" in err


def test_check_many_json_one_document_and_schema(models, monkeypatch, capsys):
    code, _, _ = _cli(monkeypatch, capsys, "check", "tiny.onnx", "ok.onnx", "bad.onnx", "--trt", "10.3", "-f",
                      "json", "-o", "all.json", "--max-dla-subgraphs", "1")
    assert code == 2
    doc = json.loads(Path("all.json").read_text())
    assert [r.get("exit_code") for r in doc["reports"]] == [None, None, 2]
    assert doc["summary"]["by_model"] == [{"model": "tiny.onnx", "exit_code": 1}, {"model": "ok.onnx", "exit_code": 0},
                                          {"model": "bad.onnx", "exit_code": 2}]
    assert doc["reports"][0]["gates"] and doc["reports"][1]["gates"] == []      # gates apply per model
    from referencing import Registry, Resource
    one = json.loads((schemas_dir() / "report.schema.json").read_text())
    many = json.loads((schemas_dir() / "reports.schema.json").read_text())
    reg = Registry().with_resource(one["$id"], Resource.from_contents(one))
    jsonschema.Draft202012Validator(many, registry=reg).validate(doc)
    # one model: the report itself, as always
    code, out, _ = _cli(monkeypatch, capsys, "check", "tiny.onnx", "--trt", "10.3", "-f", "json")
    data = json.loads(out)
    assert "reports" not in data and data["model"] == "tiny.onnx"
    jsonschema.validate(data, one)


def test_help_lists_the_formats_from_the_registry(monkeypatch, capsys):
    for command, kind in (("check", "check"), ("compare", "compare"), ("fix", "fix")):
        code, out, _ = _cli(monkeypatch, capsys, command, "--help")
        assert code == 0
        flat = " ".join(out.replace("│", " ").split())
        assert formats.help_text(kind) in flat, (command, flat)


def test_every_format_renders_a_check_where_no_model_could_be_read(db, models):
    items = _items(db, ["bad.onnx", "missing.onnx"])
    assert [i.exit_code for i in items] == [2, 2]
    for name in formats.names("check"):
        if name == "html":
            continue
        out = _render(name, "check", items, db, models)
        assert "bad.onnx" in out and "missing.onnx" in out, name
    jsonschema.validate(json.loads(_render("sarif", "check", items, db, models)), SARIF_SCHEMA)
    assert json.loads(_render("json", "check", items, db, models))["tool"]["db_version"] is None


@pytest.mark.parametrize("which", ["demo", "yolov8n"])
def test_sarif_of_the_demo_and_of_yolov8n_validates(which):
    # issue 14's acceptance: `check --format sarif` on the shipped demo and on yolov8n, through the CLI
    from conftest import CORPUS, need_shared, run_cli
    if which == "yolov8n":
        need_shared()
    model = EXAMPLE if which == "demo" else CORPUS / "yolov8n_640.onnx"
    r = run_cli("check", str(model), "--target", "orin", "--trt", "10.3", "--format", "sarif")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, SARIF_SCHEMA)
    results = doc["runs"][0]["results"]
    assert results and all(x["ruleId"] and x["locations"][0]["logicalLocations"] for x in results)
