"""JUnit XML (testsuites/testsuite/testcase), as CI test dashboards read it.

check: one test case per model x target (a call checks one target), failed when that model fails the exit code
(a fallback, or with gates a failed gate), an error when it could not be checked; the failure text lists the
fallbacks by rule. compare: one test case per log GPU layer, predicted-only GPU layer and DLA subgraph, failed
when it disagrees."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

from .base import Context, Format, display_path

if TYPE_CHECKING:
    from ..core import CheckItem

# characters XML 1.0 cannot hold (a model's names may carry them): replaced, so the file always parses
_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _x(text: Any) -> str:
    return _BAD_XML.sub("\ufffd", str(text))


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: Any) -> ET.Element:
    e = ET.SubElement(parent, tag, {k: _x(v) for k, v in attrs.items() if v is not None})
    if text is not None:
        e.text = _x(text)
    return e


def _finish(root: ET.Element) -> str:
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _count(suite: ET.Element) -> tuple[int, int, int]:
    cases = suite.findall("testcase")
    return (len(cases), sum(1 for c in cases if c.find("failure") is not None),
            sum(1 for c in cases if c.find("error") is not None))


def _totals(root: ET.Element) -> None:
    tests = failures = errors = 0
    for suite in root.findall("testsuite"):
        t, f, e = _count(suite)
        suite.set("tests", str(t))
        suite.set("failures", str(f))
        suite.set("errors", str(e))
        suite.set("skipped", "0")
        tests, failures, errors = tests + t, failures + f, errors + e
    root.set("tests", str(tests))
    root.set("failures", str(failures))
    root.set("errors", str(errors))


def _fallback_text(item: "CheckItem") -> str:
    r = item.report
    assert r is not None
    lines = [f"{g}" for g in item.gates or []]
    for rule_id, hits in sorted(r.findings_by_rule().items(), key=lambda kv: (-len(kv[1]), kv[0])):
        f = hits[0][1]
        fixes = sorted({x.fix for _, x in hits if x.fix})
        lines.append(f"{rule_id} [{f.confidence}] {len(hits)} layer(s)" + (f", fix: {', '.join(fixes)}" if fixes else ""))
        lines += [f"  {v.kind}: {v.name}: {x.message}" + (f" (accepted: {a})" if (a := r.accepted_reason(v.index, rule_id))
                                                          is not None else "") for v, x in hits]
    moved = [v for v in r.gpu_layers if not v.findings]
    if moved:
        lines.append(f"loadable limit: {len(moved)} layer(s) in DLA subgraphs moved to the GPU")
    return "\n".join(lines)


def render_check(items: list["CheckItem"], ctx: Context) -> str:
    first = next((i.report for i in items if i.report is not None), None)
    t = first.target if first is not None else None
    target = str(t) if t is not None else "no target"
    tname = (f"{t.module.name if t.module else t.hardware}.{t.trt}.{t.platform}.{t.mode_name}" if t is not None
             else "unknown")
    root = ET.Element("testsuites", {"name": "dlarules check"})
    suite = _el(root, "testsuite", name=f"dlarules check {target}", timestamp=None)
    if first is not None:
        props = _el(suite, "properties")
        _el(props, "property", name="target", value=target)
        _el(props, "property", name="db_version", value=first.db_version)
    total = 0.0
    for item in items:
        case = _el(suite, "testcase", classname=f"dlarules.check.{tname}", name=display_path(item.model, ctx.cwd),
                   time=None if item.seconds is None else f"{item.seconds:.3f}")
        total += item.seconds or 0.0
        if item.report is None:
            _el(case, "error", item.error, type="not-checked", message=item.error)
            continue
        r = item.report
        s = r.summary
        line = (f"{s['layers_on_dla']} layers on DLA, {s['layers_on_gpu']} on GPU, {s['dla_subgraphs']} DLA "
                f"subgraph(s), {r.coverage['layers_pct']:.1f}% of layers on DLA")
        if item.exit_code:
            what = (f"{len(item.gates or [])} gate(s) failed" if item.gates else
                    f"{s['layers_on_gpu']} layer(s) fall back to the GPU")
            _el(case, "failure", _fallback_text(item), type="gate-failed" if item.gates else "dla-fallback",
                message=f"{what}: {line}")
        _el(case, "system-out", line + ("\n" + _fallback_text(item) if not item.exit_code and r.fallbacks else ""))
    if any(i.seconds is not None for i in items):
        suite.set("time", f"{total:.3f}")
    _totals(root)
    return _finish(root)


def render_compare(c: Any, ctx: Context) -> str:
    model = display_path(c.report.model, ctx.cwd)
    root = ET.Element("testsuites", {"name": "dlarules compare"})
    suite = _el(root, "testsuite", name=f"dlarules compare {model} with {display_path(c.log.source, ctx.cwd)}")
    props = _el(suite, "properties")
    _el(props, "property", name="target", value=str(c.report.target))
    _el(props, "property", name="mode", value=c.mode)
    cls = f"dlarules.compare.{model}"
    for row in c.gpu_rows:
        case = _el(suite, "testcase", classname=cls + ".gpu", name=row.log)
        if row.status != "agreed":
            _el(case, "failure", "; ".join(x for x in (f"predicted {', '.join(row.predicted)}" if row.predicted else "",
                                                       f"rules: {', '.join(row.rules)}" if row.rules else "",
                                                       row.note) if x),
                type=row.disagreement or row.status, message=f"{row.status} [{row.disagreement}]")
    for e in c.extra_rows:
        case = _el(suite, "testcase", classname=cls + ".gpu", name=e.predicted)
        _el(case, "failure", f"rules: {', '.join(e.rules)}", type=e.disagreement,
            message=f"predicted on the GPU, the log runs it on DLA [{e.disagreement}]")
    if c.observed_subgraphs is not None:
        for s in c.subgraph_rows:
            case = _el(suite, "testcase", classname=cls + ".subgraph", name=s.log)
            if s.status != "agreed":
                _el(case, "failure", f"predicted {s.predicted}" if s.predicted else "no predicted subgraph",
                    type="subgraph-differs", message=s.status)
        case = _el(suite, "testcase", classname=cls + ".subgraph", name="DLA subgraph count")
        if c.predicted_subgraphs != c.observed_subgraphs:
            _el(case, "failure", None, type="subgraph-count",
                message=f"predicted {c.predicted_subgraphs}, the log has {c.observed_subgraphs}")
    _totals(root)
    return _finish(root)


FORMAT = Format("junit", "JUnit XML: a test case per model x target (compare: per layer and subgraph)",
                {"check": render_check, "compare": render_compare})
