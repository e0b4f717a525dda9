"""Real models nobody here wrote (../shared/corpus): every one checks on both targets; DDRNet matches its log."""
from __future__ import annotations

import pytest

from dlarules.api import check
from dlarules.errors import ModelError
from dlarules.model import load_graph

from conftest import CORPUS, need_shared

MODELS = sorted(p.name for p in CORPUS.glob("*.onnx")) if CORPUS.is_dir() else []
DYNAMIC = {"nudenet_320n.onnx": {"images": (1, 3, 320, 320)}, "ppocr_mobile_v2_cls.onnx": {"x": (1, 3, 48, 192)},
           "ppocrv4_det.onnx": {"x": (1, 3, 640, 640)}, "yolo11n_640_dynamic.onnx": {"images": (1, 3, 640, 640)}}
TARGETS = [("xavier", "8.5"), ("orin", "8.6")]


@pytest.fixture(scope="module")
def graphs():
    need_shared()
    return {}


def _graph(graphs, name):
    if name not in graphs:
        graphs[name] = load_graph(CORPUS / name, DYNAMIC.get(name))
    return graphs[name]


@pytest.mark.parametrize("name", MODELS or ["(no corpus)"])
@pytest.mark.parametrize("hw,trt", TARGETS)
def test_every_corpus_model_checks(name, hw, trt, db, graphs):
    need_shared()
    if name in DYNAMIC:
        with pytest.raises(ModelError, match="dynamic input shape.*--input-shape"):
            load_graph(CORPUS / name)
    report = check(_graph(graphs, name), db, hardware=hw, trt=trt)
    assert report.summary["layers"] > 0
    assert report.summary["layers_on_dla"] + report.summary["layers_on_gpu"] == report.summary["layers"]
    assert all(f.message and f.source for v in report.layers for f in v.findings)
    report.to_dict()


def test_ddrnet_fallbacks_match_the_recorded_log(db, graphs):
    need_shared()
    g = _graph(graphs, "ddrnet23_slim_seedlike_1024x2048.onnx")
    fp16 = check(g, db, hardware="xavier", trt="8.5")
    gpu = {v.name: v for v in fp16.layers if not v.on_dla}
    for name, rule in [("/spp/scale2/scale2.0/AveragePool", "POOL-WINDOW"),
                       ("/spp/scale3/scale3.0/AveragePool", "POOL-WINDOW"),
                       ("/spp/scale4/scale4.0/GlobalAveragePool", "POOL-WINDOW"),
                       ("/softmax/Softmax", "SOFTMAX-XAVIER")]:
        assert rule in {f.rule for f in gpu[name].findings}, name
    resizes = [v for v in fp16.layers if v.kind == "RESIZE"]
    assert len(resizes) == 8 and all("RESIZE-STATIC-SCALES" in {f.rule for f in v.findings} for v in resizes)
    assert "window 9x9 is outside DLA's 1..8" in gpu["/spp/scale2/scale2.0/AveragePool"].findings[0].message
    # shape math (Shape/Gather/Slice/Concat/Unsqueeze/Cast feeding the Resize sizes) is folded, not layers
    kinds = {v.kind for v in fp16.layers}
    assert not kinds & {"SHAPE", "GATHER"} and fp16.summary["nodes_folded"] > 100
    assert all(n.status == "folded" for n in fp16.nodes if n.op in ("Shape", "Gather", "Unsqueeze", "Cast"))
    # built in INT8 (as the log's run most likely was), the 5x5 pool falls back too: exactly the log's 15
    int8 = check(g, db, hardware="xavier", trt="8.5", precision="int8")
    by_kind = {}
    for i in int8.placement.gpu_layers:
        v = int8.layers[i]
        by_kind[v.kind] = by_kind.get(v.kind, 0) + 1
    assert by_kind == {"RESIZE": 8, "POOLING": 4, "SHUFFLE": 2, "SOFTMAX": 1}
    assert [(s.first, s.last) for s in int8.placement.subgraphs] == [
        ("/init_bn/BatchNormalization", "/compression3/compression3.0/Conv"),
        ("/relu_2/Relu", "/layer5/layer5.0/Add"),
        ("/spp/scale1/scale1.1/BatchNormalization", "/spp/scale4/scale4.3/Conv"),
        ("/relu_8/Relu", "/spp/Add_4"),
        ("/Add_3", "/final_layer/conv2/Conv"),
    ]


def test_dynamic_models_check_with_input_shape(db, graphs):
    need_shared()
    for name in DYNAMIC:
        report = check(_graph(graphs, name), db, hardware="orin", trt="8.6")
        assert report.summary["layers_on_dla"] > 0, name
