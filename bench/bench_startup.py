"""Start-up of the `dlarules` command, measured in one run (issue 14, item 6: <= 0.3 s for what reads no model).

    python bench/bench_startup.py [--repeat N] [--ml-dtypes-dir DIR]

Runs each command N times in a fresh interpreter (`python -m dlarules ...`, this checkout first on the path) and
prints the best and the median wall time, next to a bare `python -c pass`. Then what `check` cannot avoid: the time
to import onnx, and of that the time to import its ml_dtypes dependency (ml_dtypes 0.7's C extension takes about
1 s here, 0.6's about 0.1 s). `--ml-dtypes-dir` puts another ml_dtypes first on the path (e.g. one installed with
`pip install --target DIR 'ml_dtypes<0.7'`) and times onnx with it too. The machine is shared: the best of N is the
figure to read, the median says how noisy the run was.

Bytecode: an installed package has its .pyc files (pip compiles them); a checkout run with PYTHONDONTWRITEBYTECODE=1
compiles every dlarules module on every call (~60 ms more here). By default the runs here may write __pycache__
(gitignored) after one warm-up run, as an install would; `--no-bytecode` keeps the environment's setting.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "dla_demo.onnx"

COMMANDS: list[tuple[str, list[str]]] = [
    ("python -c pass", ["-c", "pass"]),
    ("dlarules --version", ["-m", "dlarules", "--version"]),
    ("dlarules --help", ["-m", "dlarules", "--help"]),
    ("dlarules check --help", ["-m", "dlarules", "check", "--help"]),
    ("dlarules rules list", ["-m", "dlarules", "rules", "list"]),
    ("dlarules rules show POOL-WINDOW", ["-m", "dlarules", "rules", "show", "POOL-WINDOW"]),
    ("dlarules check examples/dla_demo.onnx", ["-m", "dlarules", "check", str(EXAMPLE)]),
]

IMPORT_ONNX = ("import time; t = time.perf_counter(); import ml_dtypes; m = time.perf_counter(); import onnx; "
               "e = time.perf_counter(); print(ml_dtypes.__version__, m - t, e - t)")


KEEP_ENV_BYTECODE = False


def env_with(path_first: list[str]) -> dict[str, str]:
    env = dict(os.environ)
    if not KEEP_ENV_BYTECODE:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join([*path_first, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("DLARULES_RULES", None)
    return env


def wall(args: list[str], env: dict[str, str], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def onnx_import(env: dict[str, str], repeat: int) -> tuple[str, float, float]:
    best_md, best_all, version = float("inf"), float("inf"), "?"
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", IMPORT_ONNX], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
        version, best_md, best_all = out[0], min(best_md, float(out[1])), min(best_all, float(out[2]))
    return version, best_md, best_all


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--ml-dtypes-dir", type=Path, default=None)
    ap.add_argument("--no-bytecode", action="store_true", help="keep PYTHONDONTWRITEBYTECODE from the environment")
    args = ap.parse_args()
    global KEEP_ENV_BYTECODE
    KEEP_ENV_BYTECODE = args.no_bytecode
    env = env_with([str(ROOT)])
    cached = "PYTHONDONTWRITEBYTECODE" not in env
    print(f"bytecode cache: {'on (as installed)' if cached else 'off (every run compiles the sources)'}")
    if cached:
        wall(COMMANDS[-1][1], env, 1)   # warm-up: writes the .pyc files an install would have
    print(f"{'command':40s} {'best s':>7s} {'median s':>8s}")
    for label, argv in COMMANDS:
        best, med = wall(argv, env, args.repeat)
        print(f"{label:40s} {best:7.3f} {med:8.3f}")
    print()
    print(f"{'import (in a fresh interpreter)':40s} {'ml_dtypes s':>11s} {'onnx incl. s':>12s}")
    rows = [("installed", env)]
    if args.ml_dtypes_dir:
        rows.append((f"{args.ml_dtypes_dir}", env_with([str(args.ml_dtypes_dir), str(ROOT)])))
    for label, e in rows:
        version, md, total = onnx_import(e, args.repeat)
        print(f"{('ml_dtypes ' + version + ' (' + label + ')')[:40]:40s} {md:11.3f} {total:12.3f}")


if __name__ == "__main__":
    main()
