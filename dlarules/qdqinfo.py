"""What happens to a model's QuantizeLinear/DequantizeLinear nodes on the target release, with its source: the
report's `explicit_quantization` section (docs/qdq.md)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .lowering import LayerGraph
from .ruledb import Target

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# TensorRT's ONNX parser (onnx-tensorrt QuantDequantLinearHelper) and NvInfer.h IQuantizeLayer: zero points must be 0.
SYMMETRIC_SOURCE = {
    "doc": "onnx-tensorrt ONNX parser (QuantizeLinear/DequantizeLinear importer); NvInfer.h IQuantizeLayer",
    "url": "https://github.com/onnx/onnx-tensorrt/blob/main/onnxOpImporters.cpp",
    "quote": "TensorRT only supports symmetric quantization. The zero point for the QuantizeLinear/DequantizeLinear "
             "operator must be all zeros.",
}


def summary(lg: LayerGraph, target: Target) -> dict[str, Any] | None:
    """None when the model has no Q/DQ node; else how many there are, what became of them, and the source."""
    graph = lg.graph
    nodes = [n for n in graph.nodes if n.op in QDQ_OPS and n.domain in ("", "ai.onnx")]
    if not nodes:
        return None
    eq = dict(target.release.explicit_quantization or {})
    src = dict(eq.get("source") or {})
    folded = sum(1 for n in nodes if n.index in graph.folded)
    separate = sum(1 for x in lg.layers if x.kind in ("QUANTIZE", "DEQUANTIZE"))
    asym = [n.name for n in nodes if _nonzero_zero_point(graph, n)]
    # onnxruntime quantizes biases to int32; TensorRT's parser refuses a DequantizeLinear of int32 (real log,
    # lyuwenyu/RT-DETR#343: "DequantizeLinear.1357: only activation types allowed as input to this layer")
    int32 = [n.name for n in nodes if n.op == "DequantizeLinear" and n.inputs and graph.tensor(n.inputs[0]).dtype
             in ("int32", "INT32")]
    takes = bool(eq.get("dla", False))
    out: dict[str, Any] = {
        "nodes": len(nodes), "weights_folded": folded, "separate_layers": separate,
        "fused": len(nodes) - folded - separate, "dla_takes_qdq": takes,
        "confidence": str(eq.get("confidence", "unverified")), "source": str(src.get("doc", "")),
        "url": str(src.get("url", "")), "quote": str(src.get("quote", "")),
        "fix": None if takes else "qdq-to-calibration", "asymmetric_nodes": len(asym),
        "int32_dequantize_nodes": len(int32),
    }
    return out


def _nonzero_zero_point(graph: Any, node: Any) -> bool:
    if len(node.inputs) < 3 or not node.inputs[2]:
        return False
    t = graph.tensor(node.inputs[2])
    v = t.value() if t.const else None
    return v is not None and bool(np.any(np.asarray(v) != 0))


def lines(info: dict[str, Any] | None, trt: str) -> list[str]:
    """The text report's lines for it (nothing for a model without Q/DQ)."""
    if info is None:
        return []
    what = (f"{info['fused']} fused into their neighbours, which run in INT8" if info["dla_takes_qdq"] else
            f"{info['separate_layers']} stay QUANTIZE/DEQUANTIZE layers (DLA on TensorRT {trt} does not take Q/DQ "
            f"networks; fix: qdq-to-calibration)")
    url = f" <{info['url']}>" if info["url"] else ""
    out = [f"explicit quantization: {info['nodes']} Q/DQ node(s): {info['weights_folded']} on weights folded into "
           f"them, {what}  [{info['confidence']}: {info['source']}{url}]"]
    if info["asymmetric_nodes"]:
        cure = ("qdq-to-calibration turns their ranges into symmetric scales" if not info["dla_takes_qdq"] else
                "re-quantize with symmetric activations (onnxruntime ActivationSymmetric, TensorRT Model Optimizer)")
        out.append(f"  warning: {info['asymmetric_nodes']} Q/DQ node(s) have a non-zero zero point; TensorRT's ONNX "
                   f"parser rejects them (\"TensorRT only supports symmetric quantization\"); {cure}")
    if info.get("int32_dequantize_nodes"):
        out.append(f"  warning: {info['int32_dequantize_nodes']} DequantizeLinear node(s) read int32 (quantized biases); "
                   f"TensorRT's ONNX parser rejects them (\"only activation types allowed as input to this layer\", "
                   f"lyuwenyu/RT-DETR#343); quantize without biases (onnxruntime QuantizeBias=False)"
                   + ("" if info["dla_takes_qdq"] else " or use qdq-to-calibration (it folds them into float biases)"))
    return out
