"""The CLI's overhead over its work, measured in one run (issue 14, item 6).

    python bench/bench_cli.py [--repeat N] [--corpus DIR]

For `dlarules --version`, `rules list`, `check examples/dla_demo.onnx` and `check ../shared/corpus/yolov8n_640.onnx`:
the wall time of the command as a real process (`python -m dlarules ...`, this checkout first on the path; best
of N), next to the in-process work time of the same command (typer's runner in one warm interpreter: imports and
the rule DB cache already paid; best of N), and the overhead (wall - work) and ratio (wall / work). Targets:
`--version` and `rules list` <= 0.3 s wall; `check` of yolov8n <= its work + 0.5 s. bench/bench_startup.py has the
import-time breakdown (onnx, ml_dtypes).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def commands(corpus: Path) -> list[tuple[str, list[str], float | None]]:
    """(label, argv, wall target in s or None); check's target is relative to its work."""
    out = [("dlarules --version", ["--version"], 0.3), ("dlarules rules list", ["rules", "list"], 0.3),
           ("check examples/dla_demo.onnx", ["check", str(ROOT / "examples" / "dla_demo.onnx")], None)]
    y = corpus / "yolov8n_640.onnx"
    if y.is_file():
        out.append(("check corpus/yolov8n_640.onnx", ["check", str(y)], None))
    return out


def wall(argv: list[str], repeat: int) -> float:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)   # as installed: bytecode cached (one warm-up run writes it)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, "-m", "dlarules", *argv]
    subprocess.run(cmd, env=env, capture_output=True)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True)
        best = min(best, time.perf_counter() - t)
    return best


def work(argv: list[str], repeat: int) -> float:
    from typer.testing import CliRunner
    from dlarules.cli import app
    runner = CliRunner()
    runner.invoke(app, argv)   # warm: imports, rule DB cache
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        runner.invoke(app, argv)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    args = ap.parse_args()
    print(f"{'command':34s} {'wall s':>7s} {'work s':>7s} {'overhead s':>10s} {'ratio':>6s}  target")
    for label, argv, target in commands(args.corpus):
        w, k = wall(argv, args.repeat), work(argv, args.repeat)
        if target is not None:
            verdict = f"wall <= {target} s: {'met' if w <= target else 'MISSED'}"
        else:
            verdict = f"wall <= work + 0.5 s: {'met' if w <= k + 0.5 else 'MISSED'}"
        print(f"{label:34s} {w:7.3f} {k:7.3f} {w - k:10.3f} {w / k if k else float('inf'):6.1f}  {verdict}")


if __name__ == "__main__":
    main()
