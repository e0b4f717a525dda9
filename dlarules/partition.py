"""Predict how TensorRT splits the network into DLA subgraphs (loadables) and GPU layers.

TensorRT groups DLA layers "as late as possible": a DLA layer's phase is the number of DLA -> GPU -> DLA
crossings on the longest path from it to the network outputs, and all DLA layers of one phase form one DLA
subgraph (`ForeignNode[first...last]`, named by its first and last layer in network order), connected or not.
Layers of one phase can never reach each other through a GPU layer, so the split has no cycle. This reproduces
every DLA subgraph, first and last layer included, of the recorded DDRNet log (../shared/logs) and of NVIDIA's DLA
tutorial logs; see docs/partition.md. Past the release's loadable limit, the subgraphs beyond it (in network
order) move to the GPU, as TensorRT's "DLA supports only N subgraphs per DLA core" warning says.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from .checker import LayerVerdict
from .layers import Layer
from .lowering import LayerIndex


@dataclass
class Subgraph:
    index: int
    layers: list[int]           # layer indices (network order)
    first: str
    last: str
    moved_to_gpu: bool = False

    @property
    def name(self) -> str:
        return f"ForeignNode[{self.first}...{self.last}]" if self.first != self.last else f"ForeignNode[{self.first}]"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "first": self.first, "last": self.last,
                "layer_count": len(self.layers), "moved_to_gpu": self.moved_to_gpu}


@dataclass
class Placement:
    subgraphs: list[Subgraph]
    gpu_layers: list[int]              # layer indices on the GPU (rule fallbacks and moved subgraphs)
    transitions: int
    loadable_limit: int
    limit_exceeded: bool
    device: dict[int, str] = field(default_factory=dict)   # layer index -> "DLA:<sg>" or "GPU"

    def to_dict(self, layers: dict[int, LayerVerdict]) -> dict[str, Any]:
        return {
            "dla_subgraphs": [s.to_dict() for s in self.subgraphs if not s.moved_to_gpu],
            "moved_subgraphs": [s.to_dict() for s in self.subgraphs if s.moved_to_gpu],
            "gpu_layers": [f"{layers[i].kind}: {layers[i].name}" for i in self.gpu_layers],
            "transitions": self.transitions,
            "loadable_limit": self.loadable_limit,
            "limit_exceeded": self.limit_exceeded,
        }


def _phases(layers: list[Layer], on_dla: dict[int, bool], consumers: dict[str, list[Layer]]) -> dict[int, int]:
    """For each DLA layer, the number of DLA->GPU->DLA crossings on the longest path to an output."""
    rank: dict[int, int] = {}
    for layer in reversed(layers):  # network order is topological, so consumers are ranked first
        best = 0
        dla = on_dla[layer.index]
        for t in layer.outputs:
            for c in consumers.get(t.name, ()):
                r = rank.get(c.index, 0)
                # crossing into a DLA layer from the GPU side opens a new phase
                if not dla and on_dla[c.index]:
                    r += 1
                if r > best:
                    best = r
        rank[layer.index] = best
    return {i: r for i, r in rank.items() if on_dla[i]}


# bytes per element of a tensor computed on DLA, by the precision its layer runs in
_BYTES = {"int8": 1, "fp16": 2}


def _batch(layer: Layer) -> int | None:
    """DLA's batch of a layer: the product of its output's dims before C, H, W (None when not static)."""
    shape = layer.outputs[0].shape if layer.outputs else None
    if not shape or not all(isinstance(d, int) for d in shape):
        return None
    b = 1
    for d in shape[:-3]:
        b *= d
    return b


def _internal_bytes(layer: Layer, group: set[int], users: dict[str, list[Layer]], outputs: frozenset[str],
                    precision: str | None) -> int:
    """Bytes of the layer's outputs that stay inside its DLA group: read only by layers of the group and not a
    network output (NvInfer.h ITensor: tensors 'not marked as Network Input or Output')."""
    total = 0
    for t in layer.outputs:
        readers = users.get(t.name, ())
        if t.name in outputs or not readers or any(r.index not in group for r in readers):
            continue
        if t.shape and all(isinstance(d, int) for d in t.shape):
            n = 1
            for d in t.shape:
                n *= d
            total += n * _BYTES.get(precision or "fp16", 2)
    return total


def _split(group: list[int], by_index: dict[int, Layer], users: dict[str, list[Layer]], outputs: frozenset[str],
           precision: dict[int, str | None], max_internal_bytes: int | None, same_batch: bool) -> list[list[int]]:
    """Split one phase's DLA layers (network order) where a subgraph limit would break: a change of batch, or
    internal tensors reaching `max_internal_bytes`. Pieces are consecutive in network order, so no piece can
    reach an earlier one and the split stays acyclic. TensorRT's own split points are not documented; cutting
    at the first layer that breaks the limit is dlarules' approximation."""
    if max_internal_bytes is None and not same_batch:
        return [group]
    members = set(group)
    pieces: list[list[int]] = [[]]
    size, batch = 0, None
    for i in group:
        layer = by_index[i]
        b = _batch(layer) if same_batch else None
        add = _internal_bytes(layer, members, users, outputs, precision.get(i)) if max_internal_bytes else 0
        cut = pieces[-1] and ((same_batch and b is not None and batch is not None and b != batch)
                              or (max_internal_bytes is not None and size + add >= max_internal_bytes))
        if cut:
            pieces.append([])
            size = 0
        pieces[-1].append(i)
        size += add
        batch = b if b is not None else batch
    return pieces


def predict(layers: list[Layer], verdicts: list[LayerVerdict], loadable_limit: int,
            index: LayerIndex | None = None, *, max_internal_bytes: int | None = None, same_batch: bool = False,
            network_outputs: Iterable[str] = ()) -> Placement:
    """`max_internal_bytes` and `same_batch` are the release's subgraph limits (releases.yaml
    `subgraph_limits`): a phase's DLA layers that break one are cut into several subgraphs."""
    index = index or LayerIndex(layers)
    on_dla = {v.index: v.on_dla for v in verdicts}
    names = {v.index: v.name for v in verdicts}
    phase = _phases(layers, on_dla, index.users)
    groups: dict[int, list[int]] = {}
    for layer in layers:
        if layer.index in phase:
            groups.setdefault(phase[layer.index], []).append(layer.index)
    by_index = {layer.index: layer for layer in layers}
    precision = {v.index: getattr(v, "precision", None) for v in verdicts}
    outputs = frozenset(network_outputs)
    # TensorRT lists (and numbers) subgraphs from the earliest phase on: the highest crossing count first.
    ordered = [piece for r in sorted(groups, reverse=True)
               for piece in _split(groups[r], by_index, index.users, outputs, precision, max_internal_bytes,
                                   same_batch)]
    subgraphs = [Subgraph(k, g, names[g[0]], names[g[-1]]) for k, g in enumerate(ordered)]
    exceeded = len(subgraphs) > loadable_limit
    device: dict[int, str] = {}
    for sg in subgraphs:
        if sg.index >= loadable_limit:
            sg.moved_to_gpu = True
        for i in sg.layers:
            device[i] = "GPU" if sg.moved_to_gpu else f"DLA:{sg.index}"
    for layer in layers:
        device.setdefault(layer.index, "GPU")
    gpu = [layer.index for layer in layers if device[layer.index] == "GPU"]
    return Placement(subgraphs, gpu, count_transitions(layers, device, index.producer), loadable_limit, exceeded,
                     device)


def count_transitions(layers: list[Layer], device: dict[int, str], producer: dict[str, Layer]) -> int:
    """Tensors copied between devices: each (tensor, consuming partition) pair whose producer sits in another
    partition and at least one side is a DLA subgraph. Constants are weights, not runtime copies."""
    seen: set[tuple[str, str]] = set()
    for layer in layers:
        dst = device[layer.index]
        for t in layer.inputs:
            src_layer = producer.get(t.name)
            if src_layer is None or src_layer.kind == "CONSTANT":
                continue
            src = device[src_layer.index]
            if src != dst and ("DLA" in src or "DLA" in dst):
                seen.add((t.name, dst))
    return len(seen)
