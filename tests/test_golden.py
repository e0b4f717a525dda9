"""Report output is golden-file tested: text and JSON for the shipped example model.

Regenerate after an intended change with DLARULES_UPDATE_GOLDEN=1 and review the diff."""
from __future__ import annotations

import json
import os

import pytest

from dlarules.api import check
from dlarules.report.text import render

from conftest import ROOT

GOLDEN = ROOT / "tests" / "golden"
CASES = [
    ("dla_demo_orin_8.6.txt", dict(hardware="orin", trt="8.6"), "text"),
    ("dla_demo_xavier_8.5_all.txt", dict(hardware="xavier", trt="8.5"), "all"),
    ("dla_demo_orin_10.3_int8.json", dict(hardware="orin", trt="10.3", precision="int8"), "json"),
    # a build mode with a fallback precision: layers DLA runs only in FP16 run there in FP16
    ("dla_demo_agx-orin_10.3_int8+fp16_all.txt", dict(hardware="agx-orin", trt="10.3", precision="int8+fp16"), "all"),
]


@pytest.mark.parametrize("name,target,fmt", CASES, ids=[c[0] for c in CASES])
def test_golden(name, target, fmt, db, monkeypatch):
    monkeypatch.chdir(ROOT)
    report = check("examples/dla_demo.onnx", db, **target)
    got = json.dumps(report.to_dict(), indent=2) + "\n" if fmt == "json" else render(report, show_all=fmt == "all")
    path = GOLDEN / name
    if os.environ.get("DLARULES_UPDATE_GOLDEN"):
        path.write_text(got)
    assert path.exists(), f"missing golden file {path}; run with DLARULES_UPDATE_GOLDEN=1"
    assert got == path.read_text()


def test_readme_sample_report_is_what_check_prints(db, monkeypatch):
    # the README shows an excerpt of the example's report: every line it shows (between "..." elisions) must appear
    # in the real output, in order, so the README cannot drift from what runs
    text = (ROOT / "README.md").read_text()
    start = text.index("$ dlarules check examples/dla_demo.onnx --target orin\n")
    block = text[start:text.index("```", start)].splitlines()[1:]
    monkeypatch.chdir(ROOT)
    out = render(check("examples/dla_demo.onnx", db, hardware="orin")).splitlines()
    pos = 0
    for line in (b for b in block if b.strip() != "..."):
        if "(...)" in line:   # an elided list inside a line: compare the two ends
            head, tail = line.split("(...)")
            hits = [i for i in range(pos, len(out)) if out[i].startswith(head) and out[i].endswith(tail)]
        else:
            hits = [i for i in range(pos, len(out)) if out[i] == line]
        assert hits, f"README line not in the report (or out of order): {line!r}"
        pos = hits[0] + 1
