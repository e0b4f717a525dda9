"""Benchmark `dlarules fix` on the corpus, measured in one run: the time split into the first check, the graph
rewrites (recipes, graphsurgeon import/export), the re-checks between rounds, and the onnxruntime proof.

    python bench/bench_fix.py [--corpus DIR]

Target (issue 5): the rewrite part stays within 2x of the time of `check` on the same model. Timings are the best
of 3 runs of each (check, fix without proof); the proof is timed once. Peak memory: each model's whole `fix`
(with the proof) runs once more in a fresh process, whose peak resident set (ru_maxrss) is printed beside the
process's size after importing dlarules (the ratio is what fix adds on top of the interpreter and libraries).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlarules.api import check, load_db  # noqa: E402
from dlarules.fix import fix  # noqa: E402

REPEAT = 3

CASES = [
    ("ddrnet23_slim_seedlike_1024x2048.onnx", "xavier", "8.5", None),
    ("mobilenet_v2.onnx", "orin", "8.6", None),
    ("yolov8n_640.onnx", "orin", "8.6", None),
    ("yolov8n_seg_640.onnx", "orin", "8.6", None),
    ("ppocr_mobile_v2_cls.onnx", "orin", "8.6", {"x": (1, 3, 48, 192)}),
    ("ppocrv4_det.onnx", "orin", "8.6", {"x": (1, 3, 640, 640)}),
    ("onnxpkg_light_vgg19.onnx", "orin", "8.6", None),
    ("onnxpkg_light_shufflenet.onnx", "xavier", "8.5", None),
]


def _peak_mb() -> float:
    """The process's peak resident set (VmHWM: reset by exec, unlike ru_maxrss, which a child inherits from the
    process it was forked from)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux


def _one(path: str, hw: str, trt: str, shapes: str) -> None:
    """Child process: one whole fix with its proof; prints the peak RSS before and after."""
    db = load_db()
    base = _peak_mb()
    fix(path, db, db.target(hw, trt), input_shapes=json.loads(shapes) or None)
    print(json.dumps({"base_mb": base, "peak_mb": _peak_mb()}))


def _peak(path: Path, hw: str, trt: str, shapes: dict | None) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", str(path), hw, trt, json.dumps(shapes or {})],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        _one(*args.one)
        return
    db = load_db()
    print(f"{'model':40s} {'target':12s} {'check s':>8s} {'rewrite s':>10s} {'ratio':>6s} {'rechecks s':>11s} "
          f"{'proof s':>8s} {'peak MB':>8s} {'x base':>6s}  changes  GPU layers before -> after")
    worst = 0.0
    for name, hw, trt, shapes in CASES:
        path = args.corpus / name
        if not path.is_file():
            continue
        target = db.target(hw, trt)
        # best of REPEAT for the timings (a shared machine's noise only ever adds time); the proof once
        check_s = rewrite_s = rechecks_s = float("inf")
        for _ in range(REPEAT):
            t = time.perf_counter()
            check(path, db, target=target, input_shapes=shapes)
            check_s = min(check_s, time.perf_counter() - t)
            tm = fix(path, db, target, input_shapes=shapes, verify=False).timings
            rewrite_s, rechecks_s = min(rewrite_s, tm["rewrite"]), min(rechecks_s, tm["rechecks"])
        r = fix(path, db, target, input_shapes=shapes)
        tm = {**r.timings, "rewrite": rewrite_s, "rechecks": rechecks_s}
        ratio = tm["rewrite"] / check_s
        worst = max(worst, ratio)
        mem = _peak(path, hw, trt, shapes)
        print(f"{name:40s} {hw + ' ' + trt:12s} {check_s:8.3f} {tm['rewrite']:10.3f} {ratio:6.2f} "
              f"{tm['rechecks']:11.3f} {tm.get('proof', 0.0):8.3f} {mem['peak_mb']:8.0f} "
              f"{mem['peak_mb'] / mem['base_mb']:6.2f}  {len(r.changes):7d}  "
              f"{r.before.summary['layers_on_gpu']} -> {r.after.summary['layers_on_gpu']}")
    print(f"\nworst rewrite / check ratio: {worst:.2f}; target <= 2")


if __name__ == "__main__":
    main()
