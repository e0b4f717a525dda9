"""`fix` on real models nobody here wrote: the placement it reaches and the onnxruntime proof."""
from __future__ import annotations

import pytest

from dlarules.fix import fix

from conftest import CORPUS, need_shared

# (model, hardware, trt, GPU layers before -> after, DLA subgraphs after, recipes that must be among the changes)
CASES = [
    ("onnxpkg_light_shufflenet.onnx", "orin", "10.3", 42, 2, 1, {"shuffle-chain-to-conv"}),
    ("onnxpkg_light_shufflenet.onnx", "xavier", "8.5", 45, 2, 1,
     {"shuffle-chain-to-conv", "avgpool-exclude-pad-to-mul"}),
    ("ddrnet23_slim_seedlike_1024x2048.onnx", "xavier", "8.5", 14, 4, 3,
     {"gap-to-avgpool", "avgpool-to-conv", "resize-sizes-to-scales"}),
]


@pytest.mark.parametrize("name,hw,trt,gpu_before,gpu_after,subgraphs,recipes", CASES,
                         ids=[f"{c[0].split('.')[0]}-{c[1]}" for c in CASES])
def test_fix_on_corpus(db, name, hw, trt, gpu_before, gpu_after, subgraphs, recipes):
    need_shared()
    result = fix(CORPUS / name, db, db.target(hw, trt))
    assert result.before.summary["layers_on_gpu"] == gpu_before
    assert result.after.summary["layers_on_gpu"] == gpu_after
    assert result.after.summary["dla_subgraphs"] == subgraphs
    assert recipes <= {c.recipe for c in result.changes}
    assert all(c.exact for c in result.changes)
    assert result.proof is not None and result.proof.passed, result.proof.to_dict()
