"""`fix` keeps rewrites only when the whole model's placement gets better, and its proofs say what they rest on:
the recipe's own tolerance for approximate rewrites, and inputs under which the rewritten nodes see varying data."""
from __future__ import annotations

import numpy as np
import pytest

from dlarules import fixtures
from dlarules.api import load_db
from dlarules.fix import better, fix, score
from dlarules.prove import degenerate


@pytest.fixture(scope="module")
def db():
    return load_db()


def _model(tmp_path, spec, name="m.onnx"):
    p = tmp_path / name
    p.write_bytes(fixtures.build(spec).SerializeToString())
    return p


def _islands(n: int) -> list[dict]:
    """n DLA islands (Relu) each followed by a layer without a DLA layer or a recipe (Sin)."""
    out: list[dict] = []
    for _ in range(n):
        out += [{"op": "Relu"}, {"op": "Sin"}]
    return out


def test_a_rewrite_that_opens_a_new_dla_subgraph_is_not_kept(tmp_path, db):
    # Neg -> Mul moves one layer to DLA, but between two GPU layers: a third DLA subgraph and two more transitions
    # for one GPU layer less. Judged on its neighbourhood alone it paid off; judged on the whole model it does not.
    path = _model(tmp_path, {"inputs": {"x": [1, 8, 4, 4]},
                             "nodes": [{"op": "Relu"}, {"op": "Sin"}, {"op": "Neg"}, {"op": "Sin"}, {"op": "Relu"}]})
    result = fix(path, db, db.target("orin", "10.3"))
    assert result.before.summary["dla_subgraphs"] == 2 and result.before.summary["layers_on_gpu"] == 3
    assert not result.changes and result.exit_code == 1
    assert result.after is result.before
    (why,) = [s.reason for s in result.reverted if s.recipe == "neg-to-mul"]
    assert "whole model does not get better" in why and "2 DLA subgraph(s)" in why and "3 DLA subgraph(s)" in why


def test_the_same_rewrite_is_kept_where_it_joins_a_subgraph(tmp_path, db):
    path = _model(tmp_path, {"inputs": {"x": [1, 8, 4, 4]},
                             "nodes": [{"op": "Relu"}, {"op": "Neg"}, {"op": "Relu"}, {"op": "Sin"}]})
    result = fix(path, db, db.target("orin", "10.3"))
    assert [c.recipe for c in result.changes] == ["neg-to-mul"] and result.exit_code == 0
    assert better(result.after, result.before)
    assert score(result.after) == (1, 1, 1) and score(result.before) == (2, 2, 3)


def test_repairs_that_land_past_the_loadable_limit_are_no_gain(tmp_path, db):
    # 16 DLA subgraphs fill Orin's limit on TensorRT 10.3: a repaired Neg after them would be the 17th, which
    # TensorRT moves back to the GPU: the same GPU layers, the same subgraphs. Nothing is written.
    t = db.target("orin", "10.3")
    assert t.release.loadable_limit == 16
    path = _model(tmp_path, {"inputs": {"x": [1, 8, 4, 4]}, "nodes": _islands(16) + [{"op": "Neg"}, {"op": "Sin"}]})
    result = fix(path, db, t)
    assert result.before.summary["dla_subgraphs"] == 16
    assert not result.changes and result.exit_code == 1
    assert any("whole model does not get better" in s.reason for s in result.reverted)
    assert result.decision == {"order": ["dla_subgraphs", "layers_on_gpu", "transitions"],
                               "before": [16, 18, 31], "after": [16, 18, 31], "kept": False,
                               "still_falls_back": True}


def test_one_bad_rewrite_does_not_take_the_good_ones_down(tmp_path, db):
    # two Negs: one between GPU layers (a new DLA island), one at the end (joins the last DLA run). Both together
    # cost a subgraph, so the set is halved: the trailing one is kept, the island is not.
    path = _model(tmp_path, {"inputs": {"x": [1, 8, 4, 4]},
                             "nodes": [{"op": "Relu"}, {"op": "Sin"}, {"op": "Neg"}, {"op": "Sin"}, {"op": "Relu"},
                                       {"op": "Neg"}]})
    result = fix(path, db, db.target("orin", "10.3"))
    assert [(c.recipe, c.node) for c in result.changes] == [("neg-to-mul", "/Neg_5")]
    assert [(s.recipe, s.node) for s in result.reverted] == [("neg-to-mul", "/Neg_2")]
    assert score(result.before)[:2] == (2, 4) and score(result.after)[:2] == (2, 3)
    assert better(result.after, result.before) and result.proof.passed


def test_approximate_rewrite_gates_on_its_own_tolerance(tmp_path, db):
    path = _model(tmp_path, {"inputs": {"x": [1, 4, 6, 6]}, "initializers": {"sc": {"shape": [4], "value": [1, 1, 8, 8]}},
                             "nodes": [{"op": "Conv", "inputs": ["x", "w"], "attrs": {"pads": [1, 1, 1, 1]}},
                                       {"op": "Resize", "inputs": ["t0", "", "sc"], "attrs": {"mode": "linear"}}]}
                  | {"initializers": {"w": {"shape": [4, 4, 3, 3], "value": 0.1},
                                      "sc": {"shape": [4], "value": [1, 1, 8, 8]}}})
    result = fix(path, db, db.target("orin", "10.3"), allow_approx=True)
    assert [c.exact for c in result.changes] == [False]
    p = result.proof
    assert p.approx == 0.1 and p.approx_recipes == ["resize-linear-to-nearest"] and p.passed
    (o,) = p.outputs
    # the largest error is far beyond the strict tolerance, and shown; the mean is within 10% of the range
    assert o.max_abs > 1e-2 and 0 < o.mean_abs <= 0.1 * o.value_range
    assert "mean |error| <= 0.1 x each output's range" in p.tolerance_text


def test_proof_warns_on_degenerate_inputs_and_finds_better_ones(tmp_path, db):
    # Relu(x - 100) is all zero under standard-normal inputs: bilinear and nearest agree on it. The proof says so
    # and proves on inputs that reach the resize (image-like 0..255) instead.
    path = _model(tmp_path, {"inputs": {"x": [1, 4, 6, 6]},
                             "initializers": {"b": {"shape": [1], "value": 100.0},
                                              "sc": {"shape": [4], "value": [1, 1, 8, 8]}},
                             "nodes": [{"op": "Sub", "inputs": ["x", "b"]}, {"op": "Relu"},
                                       {"op": "Resize", "inputs": ["t1", "", "sc"], "attrs": {"mode": "linear"}}]})
    result = fix(path, db, db.target("orin", "10.3"), allow_approx=True, only={"resize-linear-to-nearest"})
    p = result.proof
    assert p.inputs == "uniform 0..255 (seed 2)"
    assert len(p.warnings) == 1 and "all zero" in p.warnings[0] and "uniform 0..255" in p.warnings[0]
    assert p.outputs[0].max_abs > 0          # now the rewrite is exercised: the error is there to see


def test_proof_says_when_no_input_exercises_the_rewrite(tmp_path, db):
    path = _model(tmp_path, {"inputs": {"x": [1, 4, 6, 6]},
                             "initializers": {"z": {"shape": [1], "value": 0.0},
                                              "sc": {"shape": [4], "value": [1, 1, 8, 8]}},
                             "nodes": [{"op": "Mul", "inputs": ["x", "z"]},
                                       {"op": "Resize", "inputs": ["t0", "", "sc"], "attrs": {"mode": "linear"}}]})
    result = fix(path, db, db.target("orin", "10.3"), allow_approx=True, only={"resize-linear-to-nearest"})
    (w,) = result.proof.warnings
    assert "under every input tried" in w and "does not exercise" in w


@pytest.mark.parametrize("x,why", [
    (np.zeros((1, 2, 3, 3), np.float32), "all zero"),
    (np.broadcast_to(np.arange(2, dtype=np.float32).reshape(1, 2, 1, 1) + 1, (1, 2, 3, 3)), "spatial"),
    (np.arange(18, dtype=np.float32).reshape(1, 2, 3, 3), None),
    (np.ones((1, 2, 1, 1), np.float32) * 3, "constant"),   # 1x1 maps: constant over the channels too
    (np.arange(2, dtype=np.float32).reshape(1, 2, 1, 1), None),
    (np.array([5.0], np.float32), None),                   # a single value cannot vary
    (np.arange(6).reshape(1, 6), None),                    # integers: shape math, not activations
])
def test_degenerate(x, why):
    got = degenerate(np.asarray(x))
    assert (got is None) if why is None else (why in got)
