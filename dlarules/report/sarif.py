"""SARIF 2.1.0 (what GitHub code scanning, ruff, semgrep and cfn-lint speak).

check: one run; one result per GPU layer and rule it breaks (ruleId = the rule ID), level `error` when that
model fails the exit code (without gates: any fallback; with gates: a failed gate), else `warning`; a layer that
runs on DLA only in a fallback precision is a `note` under the rule that demoted it. The model file is the
artifact (a path relative to the working directory when it is inside it), the ONNX node name(s) the logical
locations. The rules come with their title, source and a help URL (their generated docs page). A model that
could not be checked is a tool execution notification (level error). compare: one result per disagreement,
ruleId = its class (missing-rule, rule-too-strict, ...).

Validated in tests/test_formats.py against the official OASIS schema (tests/data/sarif-schema-2.1.0.json).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .base import GATE_RULE, LOADABLE_RULE, RULE_DOCS_URL, Context, Format, gpu_findings, rule_entry

if TYPE_CHECKING:
    from ..core import CheckItem

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = "https://dlarules.dev/"

# compare: what each disagreement class means (README, "Comparing with a real TensorRT build log")
COMPARE_RULES = {
    "missing-rule": "The build log runs on the GPU a layer no rule sends there",
    "rule-too-strict": "dlarules predicts the layer on the GPU; the build log runs it on DLA",
    "lowering-differs": "TensorRT made another layer of this node than dlarules predicts, or none is predicted",
    "name-not-matched": "A layer name of the build log could not be matched to the model",
    "loadable-limit": "The layer moved to the GPU with a DLA subgraph past the loadable limit",
    "subgraph-differs": "A DLA subgraph of the build log differs from the predicted one",
}


def artifact_uri(path: str | os.PathLike[str], cwd: Path) -> str:
    """A relative URI reference when the file is under the working directory (code scanning resolves it against
    the checkout), else a file:// URI."""
    p = Path(path)
    absolute = (p if p.is_absolute() else cwd / p).resolve()
    try:
        return quote(absolute.relative_to(cwd.resolve()).as_posix())
    except ValueError:
        return absolute.as_uri()


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()[:32]


class _Rules:
    """The run's rule descriptors, in first-use order (results point at them by index)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.index: dict[str, int] = {}
        self.descriptors: list[dict[str, Any]] = []

    def add(self, rule_id: str, descriptor: dict[str, Any]) -> int:
        if rule_id not in self.index:
            self.index[rule_id] = len(self.descriptors)
            self.descriptors.append({"id": rule_id, **descriptor})
        return self.index[rule_id]

    def db_rule(self, rule_id: str, finding: Any, hardware: str) -> int:
        if rule_id in self.index:
            return self.index[rule_id]
        entry = rule_entry(self.ctx.db, rule_id, hardware)
        title = entry.title if entry is not None else finding.message
        hint = finding.hint or (entry.raw.get("hint", "") if entry is not None else "")
        source = str(entry.source) if entry is not None else finding.source
        url = RULE_DOCS_URL.format(id=rule_id)
        text = f"{title}. Source: {source}." + (f" Hint: {hint}" if hint else "")
        md = f"**{title}**\n\nSource: {source}" + (f"\n\nHint: {hint}" if hint else "") + f"\n\n[Rule page]({url})"
        props: dict[str, Any] = {"confidence": finding.confidence, "tags": ["dla", "tensorrt"]}
        if finding.fix:
            props["fix"] = finding.fix
        return self.add(rule_id, {"shortDescription": {"text": title}, "fullDescription": {"text": text},
                                  "helpUri": url, "help": {"text": text, "markdown": md},
                                  "defaultConfiguration": {"level": "error"}, "properties": props})


def _location(uri: str, artifact: int, nodes: list[str], layer: str) -> dict[str, Any]:
    loc: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": uri, "index": artifact}}}
    names = [n for n in nodes if n] or [layer]
    loc["logicalLocations"] = [{"name": n, "fullyQualifiedName": f"{n}/{layer}" if n != layer else n,
                                "kind": "object"} for n in names]
    return loc


def _target_props(report: Any) -> dict[str, Any]:
    from ..core import target_dict
    return target_dict(report.target)


def _run(tool_rules: _Rules, results: list[dict[str, Any]], artifacts: list[dict[str, Any]],
         notifications: list[dict[str, Any]], automation: str, props: dict[str, Any]) -> dict[str, Any]:
    from .. import __version__
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "dlarules", "version": __version__, "informationUri": INFORMATION_URI,
                            "rules": tool_rules.descriptors}},
        "automationDetails": {"id": automation},
        "artifacts": artifacts,
        "invocations": [{"executionSuccessful": not notifications,
                         **({"toolExecutionNotifications": notifications} if notifications else {})}],
        "results": results,
        "properties": props,
    }
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def render_check(items: list["CheckItem"], ctx: Context) -> str:
    rules = _Rules(ctx)
    results: list[dict[str, Any]] = []
    artifacts: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    first = next((i.report for i in items if i.report is not None), None)
    for item in items:
        uri = artifact_uri(item.model, ctx.cwd)
        a = len(artifacts)
        artifacts.append({"location": {"uri": uri}, "roles": ["analysisTarget"]})
        if item.report is None:
            notes.append({"level": "error", "message": {"text": item.error or "not checked"},
                          "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri, "index": a}}}]})
            continue
        r = item.report
        level = "error" if item.exit_code else "warning"
        for v, f in gpu_findings(r):
            if f is None:
                idx = rules.add(LOADABLE_RULE, {
                    "shortDescription": {"text": "DLA subgraph past the loadable limit per DLA core"},
                    "fullDescription": {"text": "TensorRT moves the DLA subgraphs beyond the release's loadable "
                                                "limit per DLA core to the GPU."},
                    "defaultConfiguration": {"level": "error"}})
                rule_id, text = LOADABLE_RULE, (f"{v.kind} {v.name} runs on the GPU: its DLA subgraph is past the "
                                                f"loadable limit of {r.placement.loadable_limit} per DLA core")
                props: dict[str, Any] = {}
            else:
                idx = rules.db_rule(f.rule, f, r.target.hardware)
                rule_id = f.rule
                text = f"{v.kind} {v.name} falls back to the GPU: {f.message}" + (f" (fix: {f.fix})" if f.fix else "")
                props = {"confidence": f.confidence, **({"fix": f.fix} if f.fix else {})}
            res = {"ruleId": rule_id, "ruleIndex": idx, "level": level, "message": {"text": text},
                   "locations": [_location(uri, a, v.nodes, v.name)],
                   "partialFingerprints": {"dlarulesLayer/v1": _fingerprint(uri, rule_id, v.name)},
                   "properties": {"layer": v.name, "layerKind": v.kind, "onnxOp": v.op, **props}}
            reason = r.accepted_reason(v.index, rule_id)
            if reason is not None:   # an accepted fallback (config [[ignore]]): suppressed outside the model file
                res["suppressions"] = [{"kind": "external", "status": "accepted", "justification": reason}]
            results.append(res)
        for v in r.layers:   # on DLA, but in a later precision of the build mode: a note
            if v.precision is None or not v.demoted or not r.on_dla(v.index):
                continue
            for p, fs in v.demoted:
                for f in fs:
                    idx = rules.db_rule(f.rule, f, r.target.hardware)
                    results.append({
                        "ruleId": f.rule, "ruleIndex": idx, "level": "note",
                        "message": {"text": f"{v.kind} {v.name} runs on DLA in {v.precision.upper()}, not in "
                                            f"{p.upper()}: {f.message}"},
                        "locations": [_location(uri, a, v.nodes, v.name)],
                        "partialFingerprints": {"dlarulesLayer/v1": _fingerprint(uri, f.rule, v.name, p)},
                        "properties": {"layer": v.name, "layerKind": v.kind, "precision": v.precision}})
        for g in item.gates or []:
            idx = rules.add(GATE_RULE, {"shortDescription": {"text": "A CI gate of dlarules check failed"},
                                        "fullDescription": {"text": "--min-dla-coverage, --max-dla-subgraphs or "
                                                                    "--dla-only is not met."},
                                        "defaultConfiguration": {"level": "error"}})
            results.append({"ruleId": GATE_RULE, "ruleIndex": idx, "level": "error", "message": {"text": g},
                            "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri, "index": a}}}],
                            "partialFingerprints": {"dlarulesLayer/v1": _fingerprint(uri, GATE_RULE, g)}})
    t = first.target if first is not None else None
    automation = (f"dlarules/{t.module.name if t.module else t.hardware}/{t.trt}/{t.platform}/{t.mode_name}/"
                  if t is not None else "dlarules/")
    props = {"target": _target_props(first), "db_version": first.db_version} if first is not None else {}
    props["models"] = [{"model": i.model, "exit_code": i.exit_code,
                        **({"summary": {k: i.report.summary[k] for k in ("layers", "layers_on_dla", "layers_on_gpu",
                                                                        "dla_subgraphs", "transitions")},
                            "coverage": i.report.coverage} if i.report is not None else {})} for i in items]
    return json.dumps(_run(rules, results, artifacts, notes, automation, props), indent=2) + "\n"


def render_compare(c: Any, ctx: Context) -> str:
    rules = _Rules(ctx)
    uri = artifact_uri(c.report.model, ctx.cwd)
    log_uri = artifact_uri(c.log.source, ctx.cwd) if c.log.source else None
    artifacts: list[dict[str, Any]] = [{"location": {"uri": uri}, "roles": ["analysisTarget"]}]
    if log_uri:
        artifacts.append({"location": {"uri": log_uri}, "roles": ["attachment"]})
    results: list[dict[str, Any]] = []

    def add(cls: str, text: str, name: str, props: dict[str, Any]) -> None:
        idx = rules.add(cls, {"shortDescription": {"text": COMPARE_RULES[cls]},
                              "fullDescription": {"text": COMPARE_RULES[cls] + "."},
                              "defaultConfiguration": {"level": "error"}})
        res: dict[str, Any] = {
            "ruleId": cls, "ruleIndex": idx, "level": "error", "message": {"text": text},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri, "index": 0}},
                           "logicalLocations": [{"name": name, "kind": "object"}]}],
            "partialFingerprints": {"dlarulesCompare/v1": _fingerprint(uri, cls, name)}, "properties": props}
        if log_uri:
            res["relatedLocations"] = [{"id": 0, "physicalLocation": {"artifactLocation": {"uri": log_uri,
                                                                                           "index": 1}}}]
        results.append(res)

    for row in c.gpu_rows:
        if row.disagreement:
            name = row.log.split(": ", 1)[-1]
            add(row.disagreement, f"log GPU layer {row.log}: {row.status}"
                + (f"; predicted {', '.join(row.predicted)}" if row.predicted else "")
                + (f"; rules: {', '.join(row.rules)}" if row.rules else "") + (f". {row.note}" if row.note else ""),
                name, {"status": row.status, "rules": row.rules})
    for e in c.extra_rows:
        add(e.disagreement, f"predicted on the GPU, the log runs it on DLA: {e.predicted}; rules: "
            f"{', '.join(e.rules)}", e.predicted.split(": ", 1)[-1].split(" [")[0], {"rules": e.rules})
    if c.observed_subgraphs is not None:
        for s in c.subgraph_rows:
            if s.status != "agreed":
                add("subgraph-differs", f"log DLA subgraph {s.log}: {s.status}"
                    + (f"; predicted {s.predicted}" if s.predicted else ""), s.log, {"status": s.status})
    t = c.report.target
    automation = f"dlarules-compare/{t.module.name if t.module else t.hardware}/{t.trt}/{t.platform}/{t.mode_name}/"
    props = {"target": _target_props(c.report), "summary": c.to_dict()["summary"]}
    return json.dumps(_run(rules, results, artifacts, [], automation, props), indent=2) + "\n"


FORMAT = Format("sarif", "SARIF 2.1.0 for code scanning: a result per GPU layer and rule (compare: per disagreement)",
                {"check": render_check, "compare": render_compare})
