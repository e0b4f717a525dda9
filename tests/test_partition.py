"""DLA subgraph prediction on small graphs with known answers, and on the recorded DDRNet log."""
from __future__ import annotations

from dlarules import fixtures
from dlarules.api import check


def run(spec, db, hw="orin", trt="10.3"):
    return check(fixtures.build(spec), db, hardware=hw, trt=trt)


def test_chain_with_one_gpu_layer(db):
    r = run({"nodes": [{"op": "Relu"}, {"op": "Neg"}, {"op": "Relu"}]}, db)
    assert [s.name for s in r.placement.subgraphs] == ["ForeignNode[/Relu_0]", "ForeignNode[/Relu_2]"]
    assert r.placement.transitions == 2
    assert [r.layers[i].name for i in r.placement.gpu_layers] == ["/Neg_1"]


def test_all_dla_chain_is_one_subgraph_without_transitions(db):
    r = run({"nodes": [{"op": "Relu"}, {"op": "Sigmoid"}, {"op": "Relu"}]}, db)
    assert len(r.placement.subgraphs) == 1 and r.placement.transitions == 0 and r.exit_code == 0


def _reaches(layers, src_set, dst_set):
    """Is there a path from a layer in src_set to one in dst_set that leaves src_set?"""
    consumers = {}
    for layer in layers:
        for t in layer.inputs:
            consumers.setdefault(t.name, []).append(layer)
    frontier = [c for layer in layers if layer.index in src_set for t in layer.outputs
                for c in consumers.get(t.name, []) if c.index not in src_set]
    seen = set()
    while frontier:
        layer = frontier.pop()
        if layer.index in seen:
            continue
        seen.add(layer.index)
        if layer.index in dst_set:
            return True
        frontier += [c for t in layer.outputs for c in consumers.get(t.name, [])]
    return False


def test_diamond_with_a_gpu_branch_is_not_split_cyclically(db):
    spec = {"nodes": [
        {"op": "Relu", "inputs": ["x"], "outputs": ["a"]},
        {"op": "Neg", "inputs": ["a"], "outputs": ["b"]},          # GPU branch
        {"op": "Sigmoid", "inputs": ["b"], "outputs": ["c"]},
        {"op": "Relu", "inputs": ["a"], "outputs": ["d"]},          # DLA branch
        {"op": "Add", "inputs": ["c", "d"], "outputs": ["y"]},
    ]}
    r = run(spec, db)
    sgs = r.placement.subgraphs
    assert len(sgs) == 2
    first = set(sgs[0].layers)
    second = set(sgs[1].layers)
    # the DLA branch joins the Add's subgraph, so the first subgraph never feeds itself through the GPU
    assert not _reaches(r.layer_graph.layers, first, first)
    assert not _reaches(r.layer_graph.layers, second, first)
    assert r.layers[0].name in sgs[0].first


def test_alternating_fallbacks_exceed_the_loadable_limit(db):
    nodes = []
    for i in range(20):
        nodes += [{"op": "Relu"}, {"op": "Neg"}]
    nodes.append({"op": "Relu"})
    r = run({"nodes": nodes}, db)
    p = r.placement
    assert len(p.subgraphs) == 21 and p.limit_exceeded and p.loadable_limit == 16
    moved = [s for s in p.subgraphs if s.moved_to_gpu]
    assert len(moved) == 5 and [s.first for s in moved] == [f"/Relu_{2 * i}" for i in range(16, 21)]
    assert r.summary["dla_subgraphs"] == 16
    from dlarules.report.text import render
    text = render(r)
    assert "exceed the limit of 16" in text and "ForeignNode[/Relu_40]" in text


def test_loadable_limit_follows_the_release(db):
    nodes = []
    for i in range(10):
        nodes += [{"op": "Relu"}, {"op": "Abs"}, {"op": "Neg"}]
    r = run({"nodes": nodes}, db, hw="xavier", trt="7.1")
    assert r.placement.loadable_limit == 8 and r.placement.limit_exceeded


def test_internal_tensors_over_1gb_split_the_subgraph(db):
    # six 1x32x2048x2048 ReLUs: five internal tensors of 256 MiB in FP16 (1.25 GiB) break NvInfer.h's "less than
    # 1GB of internal tensors" per DLA subgraph; in INT8 (1 byte) they total 640 MiB and stay one subgraph
    spec = {"inputs": {"x": [1, 32, 2048, 2048]}, "nodes": [{"op": "Relu"}] * 6}
    fp16 = check(fixtures.build(spec), db, hardware="orin", trt="10.3", precision="fp16")
    assert [s.name for s in fp16.placement.subgraphs] == ["ForeignNode[/Relu_0.../Relu_2]",
                                                          "ForeignNode[/Relu_3.../Relu_5]"]
    assert not fp16.placement.gpu_layers and fp16.placement.transitions == 1
    int8 = check(fixtures.build(spec), db, hardware="orin", trt="10.3", precision="int8")
    assert len(int8.placement.subgraphs) == 1
    assert db.subgraph_limit("internal_tensor_bytes", "10.3")["max"] == 2 ** 30


def test_layers_of_another_batch_get_their_own_subgraph(db):
    # two DLA branches of one phase; with one batch they share a loadable, with two they cannot
    def spec(b):
        return {"inputs": {"a": [1, 8, 16, 16], "b": [b, 8, 16, 16]},
                "nodes": [{"op": "Relu", "inputs": ["a"]}, {"op": "Relu", "inputs": ["b"]}]}
    same = check(fixtures.build(spec(1)), db, hardware="orin", trt="10.3")
    assert len(same.placement.subgraphs) == 1
    mixed = check(fixtures.build(spec(2)), db, hardware="orin", trt="10.3")
    assert [s.name for s in mixed.placement.subgraphs] == ["ForeignNode[/Relu_0]", "ForeignNode[/Relu_1]"]
