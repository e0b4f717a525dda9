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
    fired = {r for hw, trt in [("orin", "8.6"), ("orin", "10.3"), ("xavier", "8.5")]
             for r in check(EXAMPLE, db, hardware=hw, trt=trt).findings_by_rule()}
    # the GlobalAveragePool: no Reduce on Jetson Orin 8.6 (REDUCE-SUPPORT), MAX only on 10.x (REDUCE-OP)
    assert {"POOL-WINDOW", "ACT-TYPE", "RESIZE-STATIC-SCALES", "REDUCE-OP", "REDUCE-SUPPORT", "SOFTMAX-XAVIER",
            "GEN-RANK"} <= fired
