"""Verification by a real TensorRT DLA build: the Python API, trtexec, or trtexec on a Jetson over ssh.

    from dlarules.api import check
    from dlarules.trt import verify
    result = verify("model.onnx", check("model.onnx", hardware="orin", trt="8.6"))
    result.comparison.agreed, result.to_dict()

TensorRT itself is an optional extra, imported only when the Python-API backend runs."""
from __future__ import annotations

from .errors import VerifyError
from .verify import BACKENDS, VerifyResult, choose_backend, render_text, verify

__all__ = ["BACKENDS", "VerifyError", "VerifyResult", "choose_backend", "render_text", "verify"]
