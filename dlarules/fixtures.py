"""Tiny ONNX models built from a rule's `fixtures:` data (onnx.helper), one that violates the rule and one that
passes it. The test suite builds and checks every fixture of every rule; `dlarules rules show` lists them.

A fixture:
  expect: violate | pass
  target: {hardware, trt, platform, precision}       # default: the first release the rule applies to
  inputs: {x: [1, 8, 16, 16]}                        # graph inputs (float32 unless {shape, dtype})
  initializers: {w: {shape: [8, 1, 3, 3], value: 0.1, dtype: float32}}
  nodes: [{op: AveragePool, attrs: {kernel_shape: [9, 9]}, inputs: [x], outputs: 1}]
A node reads the previous node's first output unless it names its inputs; outputs nobody reads are graph outputs.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

from .errors import clip

DEFAULT_INPUT = {"x": [1, 8, 16, 16]}
_DTYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "int64": TensorProto.INT64,
           "int32": TensorProto.INT32, "bool": TensorProto.BOOL, "int8": TensorProto.INT8, "uint8": TensorProto.UINT8}
_NP = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "bool": np.bool_,
       "int8": np.int8, "uint8": np.uint8}


class FixtureError(ValueError):
    pass


# A fixture is a tiny model: a tensor it spells out (initializer, Constant value) is refused over this many
# elements instead of being built (a [32768, 32768] initializer would take 4 GiB).
MAX_FIXTURE_ELEMENTS = 1 << 20


def _attr(v: Any) -> Any:
    if isinstance(v, Mapping) and "tensor" in v:
        spec = v["tensor"]
        return numpy_helper.from_array(_array(spec), name="value")
    return v


def _array(spec: Mapping[str, Any]) -> np.ndarray:
    dtype = spec.get("dtype", "float32")
    if dtype not in _NP:
        raise FixtureError(f"unknown dtype {dtype!r}")
    shape = [int(d) for d in spec.get("shape", [])]
    total = 1
    for d in shape:
        total *= max(d, 0)
    if total > MAX_FIXTURE_ELEMENTS:
        raise FixtureError(f"a tensor of shape {shape!s:.60} holds {total:,} elements, over the fixture limit of "
                           f"{MAX_FIXTURE_ELEMENTS:,}")
    value = spec.get("value", 0.1 if dtype.startswith("float") else 0)
    if isinstance(value, list):
        return np.asarray(value, dtype=_NP[dtype]).reshape(shape)
    return np.full(shape, value, dtype=_NP[dtype])


def build(spec: Mapping[str, Any]) -> onnx.ModelProto:
    """The ONNX model a fixture describes."""
    opset = int(spec.get("opset", 17))
    graph_inputs = []
    first_input = None
    for name, s in (spec.get("inputs") or DEFAULT_INPUT).items():
        shape, dtype = (s, "float32") if isinstance(s, list) else (s["shape"], s.get("dtype", "float32"))
        graph_inputs.append(helper.make_tensor_value_info(name, _DTYPES[dtype], shape))
        first_input = first_input or name
    inits = [numpy_helper.from_array(_array(s), name=n) for n, s in (spec.get("initializers") or {}).items()]
    nodes = []
    prev = first_input
    produced: list[str] = []
    consumed: set[str] = set()
    for i, n in enumerate(spec["nodes"]):
        op = n["op"]
        ins = list(n.get("inputs") or [prev])
        outs = n.get("outputs", 1)
        outs = [f"t{i}" if outs == 1 else f"t{i}_{k}" for k in range(outs)] if isinstance(outs, int) else list(outs)
        attrs = {k: _attr(v) for k, v in (n.get("attrs") or {}).items()}
        nodes.append(helper.make_node(op, ins, outs, name=n.get("name", f"/{op}_{i}"), domain=n.get("domain", ""),
                                      **attrs))
        consumed.update(x for x in ins if x)
        produced += outs
        prev = outs[0]
    outputs = [helper.make_empty_tensor_value_info(o) for o in produced if o not in consumed]
    graph = helper.make_graph(nodes, "fixture", graph_inputs, outputs, initializer=inits)
    domains = sorted({n.domain for n in nodes if n.domain not in ("", "ai.onnx")})
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)] +
                              [helper.make_opsetid(d, 1) for d in domains])
    model.ir_version = min(model.ir_version, 8)
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception as exc:
        raise FixtureError(f"shape inference failed: {exc}") from None
    known = {vi.name: vi for vi in inferred.graph.value_info}
    known.update({vi.name: vi for vi in inferred.graph.output})
    del model.graph.output[:]
    for o in produced:
        if o not in consumed:
            vi = known.get(o)
            if vi is None or not vi.type.tensor_type.HasField("shape"):
                # an op shape inference does not know (a plugin): assume it keeps the first input's shape
                first = graph_inputs[0].type.tensor_type
                vi = helper.make_tensor_value_info(o, TensorProto.FLOAT, [d.dim_value for d in first.shape.dim])
            model.graph.output.append(vi)
    return model


def default_target(db: Any, rule: Any, fixture: Mapping[str, Any]) -> Any:
    """The target a fixture is checked with: its own `target`, else the rule's first hardware at its default
    TensorRT (or the newest release in the rule's range), first platform and precision."""
    from .versions import parse_version
    t = dict(fixture.get("target") or {})
    hw = t.get("hardware") or rule.hardware[0]
    platform = t.get("platform") or rule.platforms[0]
    precision = t.get("precision") or db.mode_for_precision(rule.precisions[0])
    trt = t.get("trt")
    if trt is None:
        default = str(db.hardware[hw].get("default_tensorrt"))
        cands = [r.version for r in db.releases if hw in r.hardware and platform in r.platforms
                 and rule.tensorrt.contains(r.version)]
        if rule.tensorrt.contains(default) and default in cands:
            trt = default
        elif cands:
            trt = max(cands, key=parse_version)
        else:
            raise FixtureError(f"no release in the DB matches {hw}/{platform} TensorRT {rule.tensorrt}")
    return db.target(hw, trt, platform=platform, precision=precision)


def run(db: Any, rule: Any, fixture: Mapping[str, Any]) -> tuple[bool, Any]:
    """Build and check a fixture; returns (did the rule fire on some layer, the report)."""
    from .core import check
    model = build(fixture)
    report = check(model, db, target=default_target(db, rule, fixture))
    fired = any(f.rule == rule.id for v in report.layers for f in v.findings)
    return fired, report


def fixture_problems(db: Any) -> list[Any]:
    """Every fixture that does not do what it says (a violate fixture the rule does not fire on, or the reverse)."""
    from .ruledb import Problem
    problems = []
    for rule in db.rules:
        for k, fx in enumerate(rule.fixtures):
            try:
                fired, _ = run(db, rule, fx)
            except Exception as exc:  # a broken fixture is a problem to report, not a crash
                problems.append(Problem(rule.file, rule.line, rule.id, f"fixture {k}: cannot be checked: {clip(exc, 160)}"))
                continue
            if fired != (fx.get("expect") == "violate"):
                what = "does not fire on" if fx.get("expect") == "violate" else "fires on"
                problems.append(Problem(rule.file, rule.line, rule.id, f"fixture {k}: the rule {what} its "
                                                                       f"`expect: {fx.get('expect')}` model"))
    return problems
