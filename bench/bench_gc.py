"""What the cyclic garbage collector costs `check`, measured in one run (issue 13: check() no longer turns it off).

    python bench/bench_gc.py [--repeat N] [--corpus DIR]

For synthetic weight-free chains (10k and 50k nodes) and the largest corpus models: the time of lower + evaluate +
partition (check_graph on a loaded graph) and of a whole check from the file, with the GC as Python starts it
(on, default thresholds) and with gc.disable() around the call (what check() did before). Both alternate, the best
of each is printed with the ratio on/off. gc settings are process-wide, so a library call must not change them
while a host's other threads run; this bench is what the choice to leave them alone rests on.
"""
from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_check import chain  # noqa: E402
from dlarules.api import check, check_graph, load_db  # noqa: E402
from dlarules.model import load_graph  # noqa: E402


def timed(fn: Callable[[], object], gc_off: bool) -> float:
    enabled = gc.isenabled()
    if gc_off:
        gc.disable()
    try:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
    finally:
        if enabled:
            gc.enable()


def pair(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    on, off = [], []
    for _ in range(repeat):
        gc.collect()
        on.append(timed(fn, False))
        gc.collect()
        off.append(timed(fn, True))
    return min(on), min(off)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    args = ap.parse_args()
    db = load_db()
    target = db.target("orin", None)
    ruleset = db.select(target)
    print(f"{'model':44s} {'part':12s} {'GC on ms':>9s} {'GC off ms':>9s} {'on/off':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        models = []
        for n in (10000, 50000):
            path = Path(tmp) / f"chain{n}.onnx"
            chain(n, path)
            models.append((f"synthetic chain {n} nodes", path))
        if args.corpus.is_dir():
            big = sorted(args.corpus.glob("*.onnx"), key=lambda p: p.stat().st_size)[-3:]
            models += [(p.name, p) for p in big]
        for name, path in models:
            graph = load_graph(path)
            rows = [("check_graph", lambda: check_graph(graph, ruleset, db.version)),
                    ("check(file)", lambda: check(path, db, target=target))]
            for part, fn in rows:
                on, off = pair(fn, args.repeat)
                print(f"{name[:44]:44s} {part:12s} {on * 1e3:9.1f} {off * 1e3:9.1f} {on / off:7.2f}")
            del graph


if __name__ == "__main__":
    main()
