"""Reading TensorRT DLA build logs: the recorded DDRNet logs exactly, public logs, and made-up variants."""
from __future__ import annotations

import re

import pytest

from dlarules import trtlog
from dlarules.trtlog import LogError

from conftest import LOGS, need_shared

BEFORE_GPU = [
    ("RESIZE", "/Resize"), ("POOLING", "/spp/scale1/scale1.0/AveragePool"),
    ("POOLING", "/spp/scale2/scale2.0/AveragePool"), ("POOLING", "/spp/scale3/scale3.0/AveragePool"),
    ("POOLING", "/spp/scale4/scale4.0/GlobalAveragePool"), ("RESIZE", "/spp/Resize"), ("RESIZE", "/spp/Resize_1"),
    ("RESIZE", "/spp/Resize_2"), ("RESIZE", "/spp/Resize_3"), ("RESIZE", "/Resize_1"), ("RESIZE", "/Resize_2"),
    ("RESIZE", "/Resize_3"), ("SHUFFLE", "/softmax/Transpose + (Unnamed Layer* 193) [Shuffle]"),
    ("SOFTMAX", "/softmax/Softmax"), ("SHUFFLE", "(Unnamed Layer* 195) [Shuffle] + /softmax/Transpose_1"),
]
BEFORE_DLA = [
    ("/init_bn/BatchNormalization", "/compression3/compression3.0/Conv"), ("/relu_2/Relu", "/layer5/layer5.0/Add"),
    ("/spp/scale1/scale1.1/BatchNormalization", "/spp/scale4/scale4.3/Conv"), ("/relu_8/Relu", "/spp/Add_4"),
    ("/Add_3", "/final_layer/conv2/Conv"),
]


def summary(log):
    return ([(s.first, s.last) for s in log.dla_subgraphs], [(g.kind, g.name) for g in log.gpu_layers])


def text(name: str) -> str:
    need_shared()
    return (LOGS / name).read_text()


def test_ddrnet_before_fix_exactly():
    need_shared()
    log = trtlog.read(LOGS / "ddrnet_before_fix.log")
    assert summary(log) == (BEFORE_DLA, BEFORE_GPU)
    assert log.complete and len(log.warnings) == 1
    w = log.warnings[0]
    assert (w.kind, w.layer) == ("validation-failed", "/softmax/Transpose + (Unnamed Layer* 193) [Shuffle]")
    kinds = {}
    for g in log.gpu_layers:
        kinds[g.kind] = kinds.get(g.kind, 0) + 1
    assert kinds == {"RESIZE": 8, "POOLING": 4, "SHUFFLE": 2, "SOFTMAX": 1}
    assert log.gpu_layers[12].parts == ["/softmax/Transpose", "(Unnamed Layer* 193) [Shuffle]"]


def test_ddrnet_after_fix_exactly():
    log = trtlog.parse(text("ddrnet_after_fix.log"))
    assert summary(log) == (
        [("/init_bn/BatchNormalization", "/spp/Add"), ("/spp/Resize_3", "/spp/Add_4"),
         ("/Add_4", "/final_layer/conv2/Conv")],
        [("RESIZE", "/spp/Resize_1"), ("RESIZE", "/Resize_2"), ("SHUFFLE", "(Unnamed Layer* 187) [Shuffle]"),
         ("SOFTMAX", "/softmax/Softmax"), ("SHUFFLE", "(Unnamed Layer* 189) [Shuffle]")])


def test_without_timestamps():
    bare = "\n".join(re.sub(r"^\[[^\]]*\] \[[IW]\] \[TRT\] ", "", line) for line in text("ddrnet_before_fix.log").splitlines())
    assert "[08/10" not in bare
    assert summary(trtlog.parse(bare)) == (BEFORE_DLA, BEFORE_GPU)


def test_crlf_line_ends():
    crlf = text("ddrnet_before_fix.log").replace("\n", "\r\n")
    log = trtlog.parse(crlf)
    assert summary(log) == (BEFORE_DLA, BEFORE_GPU)
    assert not any(g.name.endswith("\r") for g in log.gpu_layers)


def test_verbose_noise_and_other_text_around():
    noise = "\n".join([
        "&&&& RUNNING TensorRT.trtexec [TensorRT v8502] # trtexec --onnx=m.onnx --useDLACore=0 --allowGPUFallback",
        "[08/10/2023-13:50:01] [I] TensorRT version: 8.5.2",
        "[08/10/2023-13:50:01] [I] Selected Device: Xavier",
        "[08/10/2023-13:50:02] [V] [TRT] Registered plugin creator - ::GridAnchor_TRT version 1",
        "[08/10/2023-13:50:03] [V] [TRT] Parsing node: /init_bn/BatchNormalization [BatchNormalization]",
        "[08/10/2023-13:50:04] [V] [TRT] Fusing /layer1/Conv with /layer1/Relu",
        "some unrelated line { with braces } and: colons",
    ])
    tail = "[08/10/2023-13:58:20] [I] [TRT] Total Activation Memory: 123\n&&&& PASSED TensorRT.trtexec"
    log = trtlog.parse(noise + "\n" + text("ddrnet_before_fix.log") + tail)
    assert summary(log) == (BEFORE_DLA, BEFORE_GPU)
    assert log.versions == {"tensorrt": "8.5.2", "device": "Xavier"}


def test_truncated_log():
    lines = text("ddrnet_before_fix.log").splitlines()
    head = "\n".join(lines[:5])          # cut inside the DLA list, before the GPU section
    log = trtlog.parse(head)
    assert log.has_placement and not log.complete
    assert [(s.first, s.last) for s in log.dla_subgraphs] == BEFORE_DLA[:3]
    cut = "\n".join(lines[:12]) + "\n[08/10/2023-13:58:11] [I] [TRT] [GpuLa"
    log = trtlog.parse(cut)
    assert log.complete and len(log.gpu_layers) == 4   # what is there is read; the half line is ignored


def test_no_placement_section_is_a_clear_error(tmp_path):
    f = tmp_path / "build.log"
    f.write_text("[I] TensorRT version: 8.6.2\n[W] [TRT] DLA Layer x does not support dynamic shapes in any "
                 "dimension.\n")
    with pytest.raises(LogError) as exc:
        trtlog.read(f)
    line = exc.value.line()
    assert str(f) in line and "no DLA placement found (no 'Layers Running on DLA/GPU' lines" in line and "\n" not in line
    assert trtlog.read(f, require_placement=False).warnings[0].layer == "x"


def test_fallback_warnings_alone_are_readable(tmp_path):
    # posted excerpts often keep only the warnings: the layers they switch to the GPU are what can be compared
    f = tmp_path / "build.log"
    f.write_text("[W] [TRT] /m/Div: DLA cores do not support DIV ElementWise operation.\n"
                 "[W] [TRT] Layer '/m/Div' (ELEMENTWISE): Unsupported on DLA. Switching this layer's device type to GPU.\n"
                 "[W] [TRT] Default DLA is enabled but layer /m/Reshape is not supported on DLA, falling back to GPU.\n"
                 "[W] [TRT] Layer '/m/Div' (ELEMENTWISE): Unsupported on DLA. Switching this layer's device type to GPU.\n")
    log = trtlog.read(f)
    assert not log.has_placement
    assert [(g.kind, g.name) for g in log.switched_layers] == [("ELEMENTWISE", "/m/Div"), ("", "/m/Reshape")]


def test_missing_log_file(tmp_path):
    with pytest.raises(LogError, match="no such file"):
        trtlog.read(tmp_path / "nope.log")


PUBLIC = [
    ("02_jetson-dla-tutorial-model-bn_orin_trtNA.log", 2, 2),
    ("03_jetson-dla-tutorial-model-bn_agx-orin-jp5.1_trt8.5.log", 2, 2),
    ("07_super-resolution-bsd500-onnx_xavier-inferred_trt8.2-inferred.log", 1, 2),
    ("08_vgg19-caffe_xavier-inferred_trt8.2-inferred.log", 2, 3),
    ("09_unet-segmentation-uff_xavier-inferred_trt8.2-inferred.log", 5, 5),
    ("10_rtmpose-t_xavier-nx-jp4.6_trt8.0.1.log", 0, 2),
    ("12_yolov4-darknet2onnx_xavier_trt7.1-inferred.log", 8, 0),
]


@pytest.mark.parametrize("name,dla,gpu", PUBLIC)
def test_public_logs_counts(name, dla, gpu):
    log = trtlog.parse(text(f"public/{name}"))
    assert (len(log.dla_subgraphs), len(log.gpu_layers)) == (dla, gpu)


def test_commented_log_and_untyped_gpu_layers():
    log = trtlog.parse(text("public/07_super-resolution-bsd500-onnx_xavier-inferred_trt8.2-inferred.log"))
    assert [(g.kind, g.name) for g in log.gpu_layers] == [("SHUFFLE", "node_of_17 + node_of_18"),
                                                          ("SHUFFLE", "node_of_output_0")]
    log = trtlog.parse(text("public/10_rtmpose-t_xavier-nx-jp4.6_trt8.0.1.log"))
    assert log.gpu_layers[0].kind == "" and log.gpu_layers[0].parts == ["onnx::MatMul_546", "(Unnamed Layer* 144) [Shuffle]"]
    assert log.warnings[0].kind == "profile"


def test_tensorrt7_groups():
    log = trtlog.parse(text("public/12_yolov4-darknet2onnx_xavier_trt7.1-inferred.log"))
    assert log.old_format and log.dla_subgraphs[0].first == "Tanh_3"
    assert log.dla_subgraphs[0].last == "scale_operand_of_Sub_1441"


def test_warning_kinds():
    log = trtlog.parse(text("public/06_yolo11n_agx-orin-jp5.1.3_trt8.5.log"))
    kinds = {(w.kind, w.layer) for w in log.warnings}
    assert ("reason", "/model.23/Split") in kinds
    assert ("unsupported", "/model.23/Concat_3") in kinds
    assert ("validation-failed", "/model.10/m/m.0/attn/Reshape") in kinds
    assert ("split", "/model.10/m/m.0/attn/Reshape") in kinds
    reasons = {w.reason for w in log.warnings}
    assert "DLA only supports concatenation on the C dimension" in reasons
    log13 = trtlog.parse(text("public/13_yolov4-tiny-darknet-deepstream_xavier_trt7.1-inferred.log"))
    limit = [w for w in log13.warnings if w.kind == "subgraph-limit"]
    assert len(limit) == 12 and limit[0].layer == "conv_6"
    assert {w.kind for w in log13.warnings} >= {"activation", "not-supported", "reason"}
