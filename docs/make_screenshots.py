"""Regenerate the README's pictures (docs/img/*.png): the `--format html` page of two corpus models, rendered by
headless Chromium. Needs ../shared/corpus and a `chromium` binary.

    python docs/make_screenshots.py
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlarules.api import check, load_db  # noqa: E402
from dlarules.report.html import render_html  # noqa: E402

CASES = [("ddrnet23_slim_seedlike_1024x2048.onnx", "xavier", "8.5", "ddrnet-xavier-8.5.png"),
         ("yolov8n_640.onnx", "orin", "10.3", "yolov8n-orin-10.3.png")]


def main() -> None:
    corpus = ROOT.parent / "shared" / "corpus"
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        sys.exit("no chromium on PATH")
    db = load_db()
    for model, hw, trt, png in CASES:
        report = check(corpus / model, db, target=db.target(hw, trt))
        with tempfile.TemporaryDirectory() as tmp:
            page = Path(tmp) / "report.html"
            page.write_text(render_html([report]), encoding="utf-8")
            out = ROOT / "docs" / "img" / png
            subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
                            f"--user-data-dir={tmp}/profile", "--window-size=1400,900", f"--screenshot={out}",
                            page.as_uri()], check=True, capture_output=True, timeout=120)
            print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
