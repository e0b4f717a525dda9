"""Benchmark `check` against what loading the model costs anyway, measured in one run.

    python bench/bench_check.py [--corpus DIR] [--repeat N]

For every corpus model with 200+ nodes: check time (in-process, rules loaded) / (onnx.load + infer_shapes) time,
and the cost per node; then synthetic weight-free chains of 1k, 10k and 50k nodes. Targets (issue 3): ratio <= 2
for models whose file carries its weights (> 1 MB), <= 30 us per node without weights, 50k/1k time <= 60x.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnx
from onnx import TensorProto, helper, numpy_helper
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlarules.api import check, check_graph, load_db  # noqa: E402
from dlarules.lowering import lower  # noqa: E402
from dlarules.checker import evaluate  # noqa: E402
from dlarules.model import load_graph  # noqa: E402
from dlarules.partition import predict  # noqa: E402


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def paired(base_fn, check_fn, repeat: int) -> tuple[float, float, float]:
    """Baseline and check timed alternately (this machine's speed drifts): best of each, median of ratios."""
    bases, checks, ratios = [], [], []
    for _ in range(repeat):
        t = time.perf_counter()
        base_fn()
        b = time.perf_counter() - t
        t = time.perf_counter()
        check_fn()
        c = time.perf_counter() - t
        bases.append(b)
        checks.append(c)
        ratios.append(c / b)
    return min(bases), min(checks), statistics.median(ratios)


def baseline(path: Path) -> None:
    onnx.shape_inference.infer_shapes(onnx.load(str(path)))


def chain(n: int, path: Path) -> None:
    """A weight-free chain of n nodes (activations, pools, elementwise), the way a big CNN trunk looks."""
    ops = ["Relu", "Sigmoid", "Abs", "MaxPool", "Add"]
    nodes, prev = [], "x"
    for i in range(n):
        op = ops[i % len(ops)]
        out = f"t{i}"
        if op == "MaxPool":
            nodes.append(helper.make_node(op, [prev], [out], f"/n{i}/{op}", kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        elif op == "Add":
            nodes.append(helper.make_node(op, [prev, prev], [out], f"/n{i}/{op}"))
        else:
            nodes.append(helper.make_node(op, [prev], [out], f"/n{i}/{op}"))
        prev = out
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 32, 32])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 8, 32, 32])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def stages(path: Path, db, target, shapes=None) -> dict[str, float]:
    """Where the time of one check goes (load+infer+fold / lower / rules / partition)."""
    ruleset = db.select(target)
    t0 = time.perf_counter()
    graph = load_graph(path, shapes)
    t1 = time.perf_counter()
    lg = lower(graph, target.release.parser)
    t2 = time.perf_counter()
    verdicts = evaluate(lg, ruleset)
    t3 = time.perf_counter()
    predict(lg.layers, verdicts, target.release.loadable_limit)
    t4 = time.perf_counter()
    return {"load": t1 - t0, "lower": t2 - t1, "rules": t3 - t2, "partition": t4 - t3}


# dynamic corpus models are benchmarked at a fixed shape, as a user would check them (--input-shape)
INPUT_SHAPES = {"nudenet_320n.onnx": {"images": (1, 3, 320, 320)}, "ppocr_mobile_v2_cls.onnx": {"x": (1, 3, 48, 192)},
                "yolo11n_640_dynamic.onnx": {"images": (1, 3, 640, 640)},
                "ppocrv4_det.onnx": {"x": (1, 3, 640, 640)}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    db = load_db()
    target = db.target("orin", "8.6")
    print(f"dlarules check vs onnx.load + infer_shapes (best of {args.repeat}); target {target}")
    print(f"{'model':42s} {'nodes':>6s} {'MB':>6s} {'base ms':>8s} {'check ms':>9s} {'ratio':>6s} {'us/node':>8s}"
          f"  {'partition ms':>12s}")
    rows = []
    models = sorted(args.corpus.glob("*.onnx")) if args.corpus.is_dir() else []
    for path in models:
        n = len(onnx.load(str(path), load_external_data=False).graph.node)
        if n < 200:
            continue
        shapes = INPUT_SHAPES.get(path.name)
        base, chk, ratio = paired(lambda: baseline(path),
                                  lambda: check(path, db, target=target, input_shapes=shapes), args.repeat)
        part = min(stages(path, db, target, shapes)["partition"] for _ in range(args.repeat))
        mb = path.stat().st_size / 1e6
        rows.append((path.name, n, mb, base, chk, ratio))
        print(f"{path.name:42s} {n:6d} {mb:6.1f} {base * 1e3:8.1f} {chk * 1e3:9.1f} {ratio:6.2f} "
              f"{chk / n * 1e6:8.1f}  {part * 1e3:12.2f}")
    print()
    print("synthetic weight-free chains")
    print(f"{'nodes':>8s} {'base ms':>9s} {'check ms':>9s} {'ratio':>6s} {'us/node':>8s} {'added us/node':>13s}"
          f"  stages ms (load/lower/rules/partition)")
    chain_times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1000, 10000, 50000):
            path = Path(tmp) / f"chain{n}.onnx"
            chain(n, path)
            rep = max(1, args.repeat if n <= 10000 else 3)
            base, chk, ratio = paired(lambda: baseline(path), lambda: check(path, db, target=target), rep)
            st = stages(path, db, target)
            chain_times[n] = (chk, base)
            print(f"{n:8d} {base * 1e3:9.1f} {chk * 1e3:9.1f} {ratio:6.2f} {chk / n * 1e6:8.1f} "
                  f"{(chk - base) / n * 1e6:13.1f}  " + "/".join(f"{v * 1e3:.0f}" for v in st.values()))
    print()
    heavy = [r for r in rows if r[2] > 1.0]
    if heavy:
        worst = max(heavy, key=lambda r: r[5])
        print(f"worst ratio on models with weights (> 1 MB): {worst[5]:.2f} ({worst[0]}); target <= 2")
    light = [(r[4], r[3], r[1]) for r in rows if r[2] <= 1.0] + [(c, b, n) for n, (c, b) in chain_times.items()]
    total = max(c / n * 1e6 for c, b, n in light)
    added = max((c - b) / n * 1e6 for c, b, n in light)
    print(f"worst cost per node on weight-free graphs: {total:.1f} us in all, {added:.1f} us over load + "
          f"infer_shapes; target <= 30")
    print(f"50k/1k chain time ratio: {chain_times[50000][0] / chain_times[1000][0]:.1f}; target <= 60 (linear: 50); "
          f"onnx.load + infer_shapes alone on the same files: {chain_times[50000][1] / chain_times[1000][1]:.1f}")


if __name__ == "__main__":
    main()
