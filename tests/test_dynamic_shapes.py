"""Shapes as TensorRT knows them: a dynamic export checked with --input-shape gives the static export's answer.

TensorRT builds a dynamic export from a static profile, so every shape it can compute at build time is static:
the exporter's symbolic value_info is stale, and shape-only subgraphs (Shape -> Gather -> Reshape targets,
Shape -> Range -> Expand anchor grids, several levels deep) fold once the input is fixed.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlarules.api import check
from dlarules.checker import MAX_MESSAGE
from dlarules.errors import OptionError
from dlarules.model import load_graph, parse_input_shapes

from conftest import CORPUS, need_shared

TARGETS = [("orin", "10.3"), ("xavier", "8.5")]


def _placement(report):
    """What a user compares: the GPU layers (name, kind, shapes, rules), the DLA subgraphs, the transitions."""
    gpu = sorted((v.name, v.kind, v.in_shape, v.out_shape, tuple(sorted(f.rule for f in v.findings)))
                 for v in report.gpu_layers)
    subgraphs = [(s.first, s.last, len(s.layers)) for s in report.placement.subgraphs if not s.moved_to_gpu]
    return gpu, subgraphs, report.placement.transitions


def _structure(report):
    """The placement without layer names, for two exports of one network whose exporters numbered nodes
    differently. Constants are counted by shape and value: one export may hold one constant twice."""
    gpu = Counter((v.kind, v.in_shape, v.out_shape, tuple(sorted(f.rule for f in v.findings)))
                  for v in report.gpu_layers if v.kind != "CONSTANT")
    consts = set()
    for v in report.gpu_layers:
        if v.kind == "CONSTANT":
            val = v.layer.outputs[0].value()
            consts.add((v.out_shape, None if val is None else val.tobytes()))
    sizes = sorted(len(s.layers) for s in report.placement.subgraphs if not s.moved_to_gpu)
    return gpu, consts, sizes, report.placement.transitions


def _symbolic(model: onnx.ModelProto, *, stale_value_info: bool) -> onnx.ModelProto:
    """A dynamic re-export: batch/height/width of every input (and the outputs' batch) made symbolic; with
    `stale_value_info`, the symbolic shapes shape inference derives are written in, as exporters do."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    init = {i.name for i in m.graph.initializer}
    for vi in m.graph.input:
        if vi.name in init:
            continue
        dims = vi.type.tensor_type.shape.dim
        for k, name in ((0, "batch"), (2, "height"), (3, "width")):
            if k < len(dims):
                dims[k].dim_param = name
    for vi in m.graph.output:
        dims = vi.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = "batch"
    del m.graph.value_info[:]
    if stale_value_info:
        inferred = onnx.shape_inference.infer_shapes(m)
        m.graph.value_info.extend(inferred.graph.value_info)
        assert any(d.dim_param for vi in m.graph.value_info for d in vi.type.tensor_type.shape.dim)
    return m


@pytest.mark.slow
@pytest.mark.parametrize("hw,trt", TARGETS)
def test_yolo11n_dynamic_export_places_like_the_static_one(hw, trt, db):
    need_shared()
    static = check(CORPUS / "yolo11n_640.onnx", db, hardware=hw, trt=trt)
    dynamic = check(CORPUS / "yolo11n_640_dynamic.onnx", db, hardware=hw, trt=trt,
                    input_shapes=parse_input_shapes(["images:1x3x640x640"]))
    # the two exports number their head nodes differently (onnxslim renamed the static one): compare the
    # placement by structure; the backbone's names agree
    assert _structure(dynamic) == _structure(static)
    assert dynamic.summary["dla_subgraphs"] == static.summary["dla_subgraphs"]
    assert dynamic.summary["transitions"] == static.summary["transitions"]
    assert [s.first for s in dynamic.placement.subgraphs] == [s.first for s in static.placement.subgraphs]
    rules = dynamic.summary["fallbacks_by_rule"]
    assert not {"GEN-STATIC-SHAPE", "SHUFFLE-BATCH", "SLICE-CONST", "SLICE-BATCH"} & set(rules), rules
    # the anchor grid (Shape -> Range -> Expand ...) folded to one constant, as TensorRT folds it
    assert dynamic.summary["nodes_folded"] >= 90
    assert all(len(f.message) <= MAX_MESSAGE for v in dynamic.layers for f in v.findings)


@pytest.mark.slow
@pytest.mark.parametrize("stale", [False, True], ids=["no-value-info", "stale-value-info"])
@pytest.mark.parametrize("name,shape", [
    ("mobilenet_v2.onnx", (1, 3, 224, 224)),
    ("yolov8n_640.onnx", (1, 3, 640, 640)),
    ("ddrnet23_slim_seedlike_1024x2048.onnx", (1, 3, 1024, 2048)),
])
def test_a_dynamic_re_export_places_exactly_like_the_static_model(name, shape, stale, db):
    need_shared()
    model = onnx.load(str(CORPUS / name), load_external_data=False)
    dyn = _symbolic(model, stale_value_info=stale)
    inp = next(i.name for i in model.graph.input if i.name not in {x.name for x in model.graph.initializer})
    for hw, trt in TARGETS:
        want = _placement(check(model, db, hardware=hw, trt=trt))
        got = _placement(check(dyn, db, hardware=hw, trt=trt, input_shapes={inp: shape}))
        assert got == want, (name, hw, trt)


def _deep_shape_chain(dynamic: bool) -> onnx.ModelProto:
    """Two levels of shape math that ONNX shape inference cannot follow alone (the targets go through float
    arithmetic, as exporters write `int(h * 0.5)`): level 2 reads the shape of level 1's Reshape, which is known
    only once level 1's target has folded; then an anchor grid (Shape -> Gather -> Range -> Cast -> Unsqueeze ->
    Expand) from the result, added to it."""
    dims = ["N", 8, "H", "W"] if dynamic else [1, 8, 4, 4]
    i64 = lambda name, v: numpy_helper.from_array(np.array(v, dtype=np.int64), name)  # noqa: E731
    f32 = lambda name, v: numpy_helper.from_array(np.array(v, dtype=np.float32), name)  # noqa: E731

    def level(src: str, k: int) -> list:
        return [helper.make_node("Shape", [src], [f"s{k}"], name=f"shape{k}"),
                helper.make_node("Cast", [f"s{k}"], [f"sf{k}"], name=f"cast{k}", to=TensorProto.FLOAT),
                helper.make_node("Mul", [f"sf{k}", "factors"], [f"tf{k}"], name=f"scale{k}"),
                helper.make_node("Cast", [f"tf{k}"], [f"t{k}"], name=f"target{k}", to=TensorProto.INT64),
                helper.make_node("Reshape", [src, f"t{k}"], [f"r{k}"], name=f"reshape{k}")]

    nodes = [helper.make_node("Relu", ["x"], ["r0"], name="relu"), *level("r0", 1), *level("r1", 2),
             helper.make_node("Shape", ["r2"], ["s3"], name="shape3"),
             helper.make_node("Gather", ["s3", "i3"], ["n"], name="gather_n", axis=0),
             helper.make_node("Range", ["zero", "n", "step"], ["idx"], name="range"),
             helper.make_node("Cast", ["idx"], ["idxf"], name="cast_idx", to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["idxf", "ax012"], ["grid"], name="unsqueeze"),
             helper.make_node("Expand", ["grid", "s3"], ["grid2"], name="expand"),
             helper.make_node("Add", ["r2", "grid2"], ["y"], name="add")]
    inits = [f32("factors", [1, 1, 0.5, 2]), i64("i3", 3), i64("zero", 0), i64("step", 1), i64("ax012", [0, 1, 2])]
    g = helper.make_graph(nodes, "deep", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["A", "B", "C", "D"])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def test_shape_math_folds_to_a_fixpoint(db):
    dyn = _deep_shape_chain(dynamic=True)
    graph = load_graph(dyn, parse_input_shapes(["1x8x4x4"]))  # one input: the name may be left out
    folded = {graph.nodes[i].name for i in graph.folded}
    assert {"shape1", "target1", "shape2", "target2", "shape3", "range", "unsqueeze", "expand"} <= folded
    # 1x8x4x4 -> 1x8x2x8 -> 1x8x1x16
    assert graph.tensors["r1"].shape == (1, 8, 2, 8) and graph.tensors["y"].shape == (1, 8, 1, 16)
    np.testing.assert_array_equal(graph.tensors["grid2"].value()[0, 0, 0], np.arange(16, dtype=np.float32))
    report = check(graph, db, hardware="orin", trt="10.3")
    static = check(_deep_shape_chain(dynamic=False), db, hardware="orin", trt="10.3")
    assert _placement(report) == _placement(static)
    assert "GEN-STATIC-SHAPE" not in report.summary["fallbacks_by_rule"]


def test_unnamed_input_shape_needs_a_single_input():
    two = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "two",
                            [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4]),
                             helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 4])],
                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(two, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OptionError, match="--input-shape.*2 inputs.*NAME:DIMS"):
        load_graph(m, parse_input_shapes(["1x4"]))
    with pytest.raises(OptionError, match="no input name"):
        parse_input_shapes(["1x4", "2x4"])
    assert load_graph(m, parse_input_shapes(["a:1x4", "b:1x4"])).tensors["y"].shape == (1, 4)


def test_a_data_dependent_shape_names_the_node_that_makes_it(db):
    """NonZero's output size is runtime data: the finding says which node, in one short line."""
    nodes = [helper.make_node("NonZero", ["x"], ["nz"], name="/post/NonZero"),
             helper.make_node("Transpose", ["nz"], ["idx"], name="/post/Transpose", perm=[1, 0]),
             helper.make_node("Cast", ["idx"], ["idxf"], name="/post/Cast", to=TensorProto.FLOAT),
             helper.make_node("Relu", ["idxf"], ["y"], name="/post/Relu")]
    g = helper.make_graph(nodes, "nz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    report = check(m, db, hardware="orin", trt="10.3")
    relu = next(v for v in report.layers if v.name == "/post/Relu")
    msg = next(f.message for f in relu.findings if f.rule == "GEN-STATIC-SHAPE")
    assert "/post/NonZero (NonZero)" in msg and len(msg) <= MAX_MESSAGE, msg


@pytest.mark.slow
def test_no_unreadable_or_unfounded_shape_finding_on_the_corpus(db):
    """Every corpus model (dynamic ones with --input-shape), both targets: no finding over 300 characters, and
    GEN-STATIC-SHAPE only where a node makes a shape data-dependent (never a dynamic input, never stale info)."""
    need_shared()
    fixed = {"nudenet_320n.onnx": {"images": (1, 3, 320, 320)}, "ppocr_mobile_v2_cls.onnx": {"x": (1, 3, 48, 192)},
             "ppocrv4_det.onnx": {"x": (1, 3, 640, 640)}, "yolo11n_640_dynamic.onnx": {"images": (1, 3, 640, 640)}}
    checked = 0
    for path in sorted(CORPUS.glob("*.onnx")):
        graph = load_graph(path, fixed.get(path.name))
        for hw, trt in TARGETS:
            report = check(graph, db, hardware=hw, trt=trt)
            for v in report.layers:
                for f in v.findings:
                    assert len(f.message) <= MAX_MESSAGE, (path.name, v.name, f.message[:80])
                    if f.rule == "GEN-STATIC-SHAPE":
                        assert "input " not in f.message.split("made dynamic by")[-1], (path.name, f.message)
            checked += 1
    assert checked >= 2 * 19


def test_fix_takes_an_unnamed_input_shape(db, tmp_path):
    from dlarules.fix import fix
    g = helper.make_graph([helper.make_node("GlobalAveragePool", ["x"], ["y"], name="gap")], "gap",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 32, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 1, 1])])
    path = tmp_path / "gap.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = fix(path, db, db.target("orin", "10.3"), input_shapes=parse_input_shapes(["1x8x32x32"]))
    assert result.changes and result.proof is not None and result.proof.passed
    pinned = [d.dim_value for d in result.model.graph.input[0].type.tensor_type.shape.dim]
    assert pinned == [1, 8, 32, 32]
