"""The example model that ships in the repo is what examples/make_example.py builds."""
from __future__ import annotations

import subprocess
import sys

from conftest import EXAMPLE, ROOT


def test_example_is_reproducible(tmp_path):
    out = tmp_path / "demo.onnx"
    subprocess.run([sys.executable, str(ROOT / "examples" / "make_example.py"), str(out)], check=True,
                   capture_output=True)
    assert out.read_bytes() == EXAMPLE.read_bytes()


def test_example_trips_several_rules(db):
    from dlarules.api import check
    fired = {r for hw, trt in [("orin", "8.6"), ("xavier", "8.5")]
             for r in check(EXAMPLE, db, hardware=hw, trt=trt).findings_by_rule()}
    assert {"POOL-WINDOW", "ACT-TYPE", "RESIZE-STATIC-SCALES", "REDUCE-OP", "SOFTMAX-XAVIER", "GEN-RANK"} <= fired
