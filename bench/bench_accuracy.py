"""How well dlarules agrees with real TensorRT builds: `compare` on every recorded log whose model we have.

    python bench/bench_accuracy.py [--shared DIR] [--json]

For every log under ../shared/logs with a model the tests can build (tests/tutorial_model.py,
tests/superres_model.py) or the corpus holds: log, target, precision, layer agreement, GPU precision and recall
(with how many log layers were matched), DLA subgraphs predicted / in the log / agreed, disagreements by class;
then the totals. Logs without a model are listed with the reason. The totals are the number a rule change must
not lower (tests/test_accuracy.py keeps them).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from dlarules import trtlog  # noqa: E402
from dlarules.api import check, load_db  # noqa: E402
from dlarules.compare import CLASSES, compare  # noqa: E402


@dataclass(frozen=True)
class Case:
    log: str                      # path under logs/
    model: str | Callable[[], Any] | None   # corpus file name, a builder, or None (no model)
    hardware: str = "orin"
    trt: str = ""
    precision: str = "fp16"
    input_shapes: dict | None = None
    why: str = ""                 # what the model is, or why there is none


def _tutorial(style: str) -> Callable[[], Any]:
    def build() -> Any:
        import tutorial_model
        return tutorial_model.build(style)
    return build


def _superres() -> Any:
    import superres_model
    return superres_model.build()


CASES = [
    Case("ddrnet_before_fix.log", "ddrnet23_slim_seedlike_1024x2048.onnx", "xavier", "8.5", "int8",
         why="the corpus rebuild of the logged DDRNet-23-slim (every log name exists in it); the log is an INT8 build"),
    Case("ddrnet_before_fix.log", "ddrnet23_slim_seedlike_1024x2048.onnx", "xavier", "8.5", "fp16",
         why="the same log checked as FP16: the one INT8-only rule shows"),
    Case("ddrnet_after_fix.log", None, why="the hand-edited model behind it is not published"),
    Case("public/02_jetson-dla-tutorial-model-bn_orin_trtNA.log", _tutorial("torch1"), "orin", "8.4", "int8",
         {"input": (32, 3, 32, 32)}, "NVIDIA's DLA tutorial CNN, rebuilt (tests/tutorial_model.py)"),
    Case("public/03_jetson-dla-tutorial-model-bn_agx-orin-jp5.1_trt8.5.log", _tutorial("torch2"), "orin", "8.5", "int8",
         {"input": (32, 3, 32, 32)}, "the same CNN, torch >= 1.13 names"),
    Case("public/04_yolov8m_agx-orin64-jp6.0_trt8.6.log", "yolov8n_640_ul8321_unsimplified.onnx", "orin", "8.6",
         why="YOLOv8m log, yolov8n exported the same way (the Detect head's names are the same)"),
    Case("public/06_yolo11n_agx-orin-jp5.1.3_trt8.5.log", "yolo11n_640.onnx", "orin", "8.5",
         why="ultralytics export of yolo11n (the corpus one went through onnxslim, the log's did not)"),
    Case("public/07_super-resolution-bsd500-onnx_xavier-inferred_trt8.2-inferred.log", _superres, "xavier", "8.2",
         "int8", why="jetson_benchmarks super-resolution CNN, rebuilt (tests/superres_model.py); --best"),
    Case("public/08_vgg19-caffe_xavier-inferred_trt8.2-inferred.log", None, why="a Caffe model, not ONNX"),
    Case("public/09_unet-segmentation-uff_xavier-inferred_trt8.2-inferred.log", None, why="a UFF model, not ONNX"),
    Case("public/10_rtmpose-t_xavier-nx-jp4.6_trt8.0.1.log", None, why="the RTMPose ONNX is not in the corpus"),
    Case("public/11_shufflenetv2-tf2onnx_xavier-nx_trtNA.log", None, why="the checkpoint is not public"),
    Case("public/12_yolov4-darknet2onnx_xavier_trt7.1-inferred.log", None, why="the Darknet ONNX is not posted"),
    Case("public/13_yolov4-tiny-darknet-deepstream_xavier_trt7.1-inferred.log", None, why="built from Darknet, not ONNX"),
    Case("public/14_yolov5-custom-truck_jetson-unstated_trt8.5plus-inferred.log", None, why="custom weights, not shared"),
]


def measure(shared: Path) -> dict[str, Any]:
    """Run every case; returns {"rows": [...], "skipped": [...], "totals": {...}}."""
    db = load_db()
    corpus, logs = shared / "corpus", shared / "logs"
    rows, skipped = [], []
    for case in CASES:
        path = logs / case.log
        if case.model is None or not path.is_file():
            skipped.append({"log": case.log, "why": case.why if path.is_file() else "log not found"})
            continue
        model = corpus / case.model if isinstance(case.model, str) else case.model()
        report = check(model, db, hardware=case.hardware, trt=case.trt, precision=case.precision,
                       input_shapes=case.input_shapes)
        c = compare(report, trtlog.read(path))
        s = c.to_dict()["summary"]
        rows.append({
            "log": case.log, "target": f"{case.hardware} {case.trt}", "precision": case.precision, "mode": c.mode,
            "layer_agreement_pct": s["layer_agreement_pct"], "gpu_precision_pct": s["gpu_precision_pct"],
            "gpu_recall_pct": s["gpu_recall_pct"], "gpu_log": s["gpu_layers_log"], "gpu_matched": s["gpu_layers_matched"],
            "gpu_agreed": s["gpu_layers_agreed"], "subgraphs_predicted": s["dla_subgraphs_predicted"],
            "subgraphs_log": s["dla_subgraphs_log"], "subgraphs_agreed": s["dla_subgraphs_agreed"],
            "disagreements": s["disagreements"], "why": case.why,
        })
    totals: dict[str, Any] = {"logs_compared": len(rows), "logs_skipped": len(skipped)}
    for key in ("gpu_log", "gpu_matched", "gpu_agreed"):
        totals[key] = sum(r[key] for r in rows)
    totals["subgraphs_log"] = sum(r["subgraphs_log"] or 0 for r in rows)
    totals["subgraphs_agreed"] = sum(r["subgraphs_agreed"] or 0 for r in rows)
    totals["gpu_recall_pct"] = round(100 * totals["gpu_agreed"] / totals["gpu_matched"], 2) if totals["gpu_matched"] else None
    totals["disagreements"] = {k: sum(r["disagreements"][k] for r in rows) for k in CLASSES}
    return {"rows": rows, "skipped": skipped, "totals": totals}


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.1f}" if isinstance(x, float) else str(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("DLARULES_SHARED", ROOT.parent / "shared")))
    ap.add_argument("--json", action="store_true", help="print the measurement as JSON")
    args = ap.parse_args()
    result = measure(args.shared)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    short = {"missing-rule": "miss", "rule-too-strict": "strict", "lowering-differs": "lower",
             "name-not-matched": "name", "loadable-limit": "limit"}
    head = (f"{'log':58} {'target':10} {'prec':5} {'mode':10} {'layers%':>7} {'prec%':>6} {'recall%':>7} "
            f"{'matched':>9} {'subgraphs p/l/a':>15}  disagreements")
    print(head)
    for r in result["rows"]:
        dis = " ".join(f"{short[k]} {v}" for k, v in r["disagreements"].items() if v) or "none"
        sub = f"{r['subgraphs_predicted']}/{_f(r['subgraphs_log'])}/{_f(r['subgraphs_agreed'])}"
        print(f"{r['log'][:58]:58} {r['target']:10} {r['precision']:5} {r['mode']:10} "
              f"{_f(r['layer_agreement_pct']):>7} {_f(r['gpu_precision_pct']):>6} {_f(r['gpu_recall_pct']):>7} "
              f"{str(r['gpu_matched']) + '/' + str(r['gpu_log']):>9} {sub:>15}  {dis}")
    t = result["totals"]
    dis = ", ".join(f"{k} {v}" for k, v in t["disagreements"].items())
    print(f"\ntotals: {t['logs_compared']} comparisons; GPU layers in the logs {t['gpu_log']}, matched {t['gpu_matched']}, "
          f"agreed {t['gpu_agreed']} (recall {_f(t['gpu_recall_pct'])}% of the matched); DLA subgraphs in the logs "
          f"{t['subgraphs_log']}, agreed {t['subgraphs_agreed']}; disagreements: {dis}")
    print(f"not compared ({t['logs_skipped']}): " + "; ".join(f"{s['log'].split('/')[-1][:28]}: {s['why']}"
                                                            for s in result["skipped"]))


if __name__ == "__main__":
    main()
