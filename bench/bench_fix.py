"""Benchmark `dlarules fix` on the corpus, measured in one run: the time split into the first check, the graph
rewrites (recipes, graphsurgeon import/export), the re-checks between rounds, and the onnxruntime proof.

    python bench/bench_fix.py [--corpus DIR]

Target (issue 5): the rewrite part stays within 2x of the time of `check` on the same model. Timings are the best
of 3 runs of each (check, fix without proof); the proof is timed once. Peak memory: each model's whole `fix`
runs once more without and once with the proof, each in a fresh process, whose peak resident set (VmHWM) is
printed beside issue 13's target (4x the model file + 300 MB).
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
    ("yolo11n_640.onnx", "orin", "10.3", None),
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


def _one(path: str, hw: str, trt: str, shapes: str, verify: str) -> None:
    """Child process: one whole fix (with its proof when `verify` is "1"); prints the peak RSS before and after."""
    db = load_db()
    base = _peak_mb()
    fix(path, db, db.target(hw, trt), input_shapes=json.loads(shapes) or None, verify=verify == "1")
    print(json.dumps({"base_mb": base, "peak_mb": _peak_mb()}))


def _peak(path: Path, hw: str, trt: str, shapes: dict | None, verify: bool) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", str(path), hw, trt, json.dumps(shapes or {}),
                          "1" if verify else "0"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def target_mb(path: Path) -> float:
    """Issue 13's memory target: peak RSS at most 4x the model file plus 300 MB."""
    return 4 * path.stat().st_size / 2**20 + 300


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        _one(*args.one)
        return
    db = load_db()
    print(f"{'model':40s} {'target':12s} {'check s':>8s} {'rewrite s':>10s} {'ratio':>6s} {'rechecks s':>11s} "
          f"{'proof s':>8s} {'peak MB':>8s} {'+proof':>7s} {'target':>7s}  changes  GPU layers before -> after")
    worst = 0.0
    over: list[str] = []
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
        bare, proven = _peak(path, hw, trt, shapes, False), _peak(path, hw, trt, shapes, True)
        goal = target_mb(path)
        over += [name] if proven["peak_mb"] > goal else []
        print(f"{name:40s} {hw + ' ' + trt:12s} {check_s:8.3f} {tm['rewrite']:10.3f} {ratio:6.2f} "
              f"{tm['rechecks']:11.3f} {tm.get('proof', 0.0):8.3f} {bare['peak_mb']:8.0f} "
              f"{proven['peak_mb']:7.0f} {goal:7.0f}  {len(r.changes):7d}  "
              f"{r.before.summary['layers_on_gpu']} -> {r.after.summary['layers_on_gpu']}")
    print(f"\nworst rewrite / check ratio: {worst:.2f}; target <= 2")
    print("peak MB: fix without the proof, +proof: with it (each in a fresh process); target: 4x the model file + "
          f"300 MB; over it with the proof: {', '.join(over) or 'none'}")


if __name__ == "__main__":
    main()
