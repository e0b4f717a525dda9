"""Every form TensorRT prints placement in reads to the same placement (made-up lines, not copies of real logs).

One made-up network: two DLA loadables and two GPU layers, printed the way TensorRT 7, 8, 10 and 11 print it, with
and without the `[date] [TRT] [I]` prefixes, with CRLF line ends, without section headers, and as the layer
information JSON of trtexec and of the engine inspector.
"""
from __future__ import annotations

import json
import time

import pytest

from dlarules import trtlog
from dlarules.trtlog import LogError

DLA = [("/backbone/conv1/Conv", "/backbone/relu2/Relu"), ("/neck/conv5/Conv", "/neck/add7/Add")]
GPU = [("SOFTMAX", "/head/Softmax"), ("SHUFFLE", "/head/Reshape + (Unnamed Layer* 41) [Shuffle]")]
NAMES = [n for _, n in GPU]


def _lists(prefix: str, headers: bool = True) -> list[str]:
    out = [f"{prefix}---------- Layers Running on DLA ----------"] if headers else []
    out += [f"{prefix}[DlaLayer] {{ForeignNode[{a}...{b}]}}" for a, b in DLA]
    out += [f"{prefix}---------- Layers Running on GPU ----------"] if headers else []
    out += [f"{prefix}[GpuLayer] {k}: {n}" for k, n in GPU]
    return out


TRT8 = "[12/03/2026-10:11:12] [I] [TRT] "
TRT10 = "[12/03/2026-10:11:12] [I] [TRT] "
TRT11_PY = "[TRT] [I] "       # the Python logger's prefix
FORMS = {
    "trt8-sections": _lists(TRT8),
    "trt8-no-prefix": _lists(""),
    "trt10-verbose-offload": [
        "[12/03/2026-10:11:12] [V] [TRT] Total number of DLA candidates: 2",
        *[f"[12/03/2026-10:11:12] [V] [TRT] {{ForeignNode[{a}...{b}]}} successfully offloaded to DLA." for a, b in DLA],
        "[12/03/2026-10:11:12] [V] [TRT] Number of DLA node candidates offloaded : 2 out of 2",
        *[f"{TRT10}[GpuLayer] {k}: {n}" for k, n in GPU],
    ],
    "trt10-offload-and-lists": [f"[V] [TRT] {{ForeignNode[{DLA[0][0]}...{DLA[0][1]}]}} successfully offloaded to DLA.",
                                *_lists(TRT10)],
    "headerless-pasted": _lists("", headers=False),
    "headerless-with-prefix": _lists(TRT10, headers=False),
    "trt11-python-logger": _lists(TRT11_PY),
    "commented": ["#" + x for x in _lists(TRT8)],
}


def _check(log):
    assert [(s.first, s.last) for s in log.dla_subgraphs] == DLA
    assert [g.name for g in log.gpu_layers] == NAMES
    assert log.has_placement and log.has_dla_list and log.has_gpu_list


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("eol", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_every_text_form_reads_to_the_same_placement(form, eol):
    log = trtlog.parse(eol.join(FORMS[form]) + eol)
    _check(log)
    kinds = [g.kind for g in log.gpu_layers]
    assert kinds == [k for k, _ in GPU]
    assert log.gpu_layers[1].parts == ["/head/Reshape", "(Unnamed Layer* 41) [Shuffle]"]


def test_the_forms_are_named_and_the_offload_count_kept():
    log = trtlog.parse("\n".join(FORMS["trt10-verbose-offload"]))
    assert log.offloaded == (2, 2) and log.forms == ["offload-lines", "headerless-lists"]
    assert trtlog.parse("\n".join(FORMS["trt8-sections"])).forms == ["sections"]
    # the same subgraph printed as an offload line and in the list counts once
    assert len(trtlog.parse("\n".join(FORMS["trt10-offload-and-lists"])).dla_subgraphs) == 2


def test_tensorrt7_groups_and_gpu_line():
    text = "\n".join([
        "[09/30/2020-13:12:43] [I] [TRT] --------------- Layers running on DLA:",
        "[09/30/2020-13:12:43] [I] [TRT] {/backbone/conv1/Conv,/backbone/bn1/BatchNormalization,/backbone/relu2/Relu}, "
        "{/neck/conv5/Conv,/neck/add7/Add},",
        "[09/30/2020-13:12:43] [I] [TRT] --------------- Layers running on GPU:",
        "[09/30/2020-13:12:43] [I] [TRT] /head/Softmax, /head/Reshape + (Unnamed Layer* 41) [Shuffle], ",
    ])
    log = trtlog.parse(text)
    assert log.old_format and [(s.first, s.last) for s in log.dla_subgraphs] == DLA
    assert [g.name for g in log.gpu_layers] == NAMES


def test_dla_offload_lines_alone_give_the_subgraphs_not_the_gpu_list():
    log = trtlog.parse("\n".join(FORMS["trt10-verbose-offload"][:4]))
    assert [(s.first, s.last) for s in log.dla_subgraphs] == DLA
    assert log.has_dla_list and not log.has_gpu_list and log.has_placement


def test_no_layer_on_gpu_is_an_empty_gpu_list():
    log = trtlog.parse("[I] [TRT] {ForeignNode[/a/Conv.../b/Relu]} successfully offloaded to DLA.\n"
                       "[I] [TRT] No layer is running on GPU\n")
    assert log.has_gpu_list and log.gpu_layers == [] and len(log.dla_subgraphs) == 1


def _layer_info_names_only() -> str:
    layers = ["Reformatting CopyNode for Input Tensor 0 to {ForeignNode[/backbone/conv1/Conv.../backbone/relu2/Relu]}",
              "images to nvm", f"{{ForeignNode[{DLA[0][0]}...{DLA[0][1]}]}}", "/backbone/relu2/Relu_out from nvm",
              "/backbone/relu2/Relu_out copy finish", f"{{ForeignNode[{DLA[1][0]}...{DLA[1][1]}]}}",
              "/neck/add7/Add_out from nvm", NAMES[0], NAMES[1], "Reformatting CopyNode for Output Tensor 0 to out"]
    return json.dumps({"Layers": layers, "Bindings": ["images", "out"]})


def _layer_info_detailed() -> str:
    layers = [{"Name": "images to nvm", "LayerType": "Reformat"},
              *[{"Name": f"{{ForeignNode[{a}...{b}]}}", "LayerType": "DLA", "Inputs": [], "Outputs": []}
                for a, b in DLA],
              {"Name": NAMES[0], "LayerType": "CaskSoftMaxV2", "Inputs": [], "Outputs": []},
              {"Name": NAMES[1], "LayerType": "Shuffle"},
              {"Name": "Reformatting CopyNode for Output Tensor 0 to out", "LayerType": "Reformat"}]
    return json.dumps({"Layers": layers, "Bindings": ["images", "out"]}, indent=2)


@pytest.mark.parametrize("make", [_layer_info_names_only, _layer_info_detailed], ids=["names-only", "detailed"])
def test_layer_info_json_reads_to_the_same_placement(make, tmp_path):
    f = tmp_path / "layers.json"
    f.write_text(make())
    log = trtlog.read(f)
    _check(log)
    assert log.forms == ["layer-json"]


def test_a_myelin_foreign_node_runs_on_the_gpu():
    info = {"Layers": [{"Name": f"{{ForeignNode[{DLA[0][0]}...{DLA[0][1]}]}}", "LayerType": "DLA"},
                       {"Name": "{ForeignNode[/attn/MatMul.../attn/Add]}", "LayerType": "Myelin"}]}
    log = trtlog.parse(json.dumps(info))
    assert len(log.dla_subgraphs) == 1 and [g.name for g in log.gpu_layers] == ["{ForeignNode[/attn/MatMul.../attn/Add]}"]
    # names only, with no copy to DLA memory anywhere: nothing says these graphs ran on DLA
    log = trtlog.parse(json.dumps({"Layers": ["{ForeignNode[/attn/MatMul.../attn/Add]}", "/head/Softmax"]}))
    assert not log.dla_subgraphs and len(log.gpu_layers) == 2


@pytest.mark.parametrize("line,layer,reason", [
    ("[W] [TRT] /m/Div: DLA cores do not support DIV ElementWise operation.", "/m/Div",
     "DLA cores do not support DIV ElementWise operation"),
    ("DLA cores do not support AVG Reduce operation.", "", "DLA cores do not support AVG Reduce operation"),
    ("[W] [TRT] /m/Slice: DLA only supports slicing 4 dimensional tensors.", "/m/Slice",
     "DLA only supports slicing 4 dimensional tensors"),
    ("[W] [TRT] (Unnamed Layer* 5) [Unary]: Unary operation: ATAN is not supported on DLA", "(Unnamed Layer* 5) [Unary]",
     "Unary operation: ATAN is not supported on DLA"),
    ("[W] [TRT] Layer '/m/TopK' is not supported on DLA.", "/m/TopK", "is not supported on DLA"),
])
def test_reasons_in_warnings(line, layer, reason):
    log = trtlog.parse(line)
    assert [(w.layer, w.reason) for w in log.warnings] == [(layer, reason)]


def test_versions_in_every_form():
    assert trtlog.parse("&&&& RUNNING TensorRT.trtexec [TensorRT v8510] # trtexec").versions["tensorrt"] == "8.5.10"
    assert trtlog.parse("&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec").versions["tensorrt"] == "10.3.0"
    assert trtlog.parse("[I] TensorRT version: 11.4.1").versions["tensorrt"] == "11.4.1"


def test_a_log_with_none_of_the_forms_stays_a_one_line_error(tmp_path):
    f = tmp_path / "build.log"
    f.write_text("[I] [TRT] Loaded engine size: 12 MiB\n[I] Starting inference\n")
    with pytest.raises(LogError) as exc:
        trtlog.read(f)
    assert "\n" not in exc.value.line() and str(f) in exc.value.line()
    g = tmp_path / "other.json"
    g.write_text(json.dumps({"Bindings": ["x"]}))
    with pytest.raises(LogError):
        trtlog.read(g)


def test_a_huge_line_is_read_in_linear_time():
    """The patterns are anchored or bounded: a 1 MB line of name-like text, or of ': ' pairs, takes no time."""
    for filler in ("a" * (1 << 20), "x: " * (1 << 18), "Layer '" + "a" * (1 << 20), " " * (1 << 20) + "x"):
        t = time.perf_counter()
        trtlog.parse(filler + "\n" + "\n".join(FORMS["trt8-sections"]))
        assert time.perf_counter() - t < 2.0
