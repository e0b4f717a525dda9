"""Evaluate the selected rules on every TensorRT layer: which run on DLA, which fall back, and why."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .layers import Layer
from .lowering import LayerGraph
from .matcher import Context, render
from .model import format_shape
from .ruledb import Rule, RuleSet


@dataclass
class Finding:
    """One rule a layer breaks."""

    rule: str
    message: str
    source: str
    url: str
    confidence: str
    fix: str | None
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "message": self.message, "source": self.source, "url": self.url,
                "confidence": self.confidence, "fix": self.fix, "hint": self.hint}


@dataclass
class LayerVerdict:
    index: int
    name: str                 # as TensorRT prints it
    kind: str
    nodes: list[str]          # the ONNX node(s) it comes from
    op: str
    on_dla: bool
    findings: list[Finding] = field(default_factory=list)
    origin: str = "parser"
    in_shape: str = ""
    out_shape: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "kind": self.kind, "nodes": self.nodes, "op": self.op,
                "device": "DLA" if self.on_dla else "GPU", "origin": self.origin, "in_shape": self.in_shape,
                "out_shape": self.out_shape, "findings": [f.to_dict() for f in self.findings]}


def _fields(layer: Layer, ruleset: RuleSet) -> dict[str, Any]:
    t = ruleset.target
    ins = [x for x in layer.inputs if not x.const] or layer.inputs
    first_in = ins[0] if ins else None
    out = layer.outputs[0] if layer.outputs else None
    dims = [d for x in layer.inputs + layer.outputs if x.shape for d in x.shape[1:] if isinstance(d, int)]
    batch = 1
    if first_in is not None and first_in.shape and len(first_in.shape) > 3:
        for d in first_in.shape[:-3]:
            batch *= d if isinstance(d, int) else 1
    return {
        "op": layer.op, "node": layer.node, "name": layer.display_name, "kind": layer.kind,
        "in_shape": format_shape(first_in.shape) if first_in else "none",
        "out_shape": format_shape(out.shape) if out else "none",
        "in_rank": first_in.rank if first_in is not None else None, "out_rank": out.rank if out is not None else None,
        "in_dtype": first_in.dtype if first_in is not None else None, "nb_inputs": len(layer.inputs),
        "batch": batch, "max_dim": max(dims) if dims else 0,
        "hardware": t.hardware, "trt": t.trt, "precision": t.precision, "platform": t.platform,
    }


class _Neighbors:
    def __init__(self, layers: list[Layer]) -> None:
        self.producer: dict[str, Layer] = {}
        self.users: dict[str, list[Layer]] = {}
        for layer in layers:
            for t in layer.outputs:
                self.producer[t.name] = layer
            for t in layer.inputs:
                self.users.setdefault(t.name, []).append(layer)

    def producer_of(self, layer: Layer, k: int) -> Layer | None:
        return self.producer.get(layer.inputs[k].name) if k < len(layer.inputs) else None

    def consumers_of(self, layer: Layer) -> list[Layer]:
        return [u for t in layer.outputs for u in self.users.get(t.name, [])]


class _LazyFields(dict):
    """Context fields computed only when a condition or message asks for one."""

    def __init__(self, layer: Layer, ruleset: RuleSet) -> None:
        super().__init__()
        self._layer, self._ruleset, self._done = layer, ruleset, False

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if not self._done:
            self.update(_fields(self._layer, self._ruleset))
            self._done = True
        return super().get(key, default)


def _finding(rule: Rule, ctx: Context) -> Finding:
    fix = rule.fix
    if isinstance(fix, dict):
        fix = fix.get(ctx.layer.op)
    return Finding(rule.id, render(rule.message, ctx), str(rule.source), rule.source.url, rule.confidence, fix,
                   str(rule.raw.get("hint", "")))


def evaluate(lg: LayerGraph, ruleset: RuleSet) -> list[LayerVerdict]:
    """A verdict for every layer of the network."""
    nb = _Neighbors(lg.layers)
    verdicts = []
    for layer in lg.layers:
        ctx = Context(layer, _LazyFields(layer, ruleset), nb.producer_of, nb.consumers_of)
        findings: list[Finding] = []
        for rule in ruleset.for_kind(layer.kind):
            if rule.when is not None and not rule.when(ctx):
                continue
            if not rule.require(ctx):
                findings.append(_finding(rule, ctx))
                if rule.never:
                    break  # the kind has no DLA implementation: further limits would be noise
        ins = [x for x in layer.inputs if not x.const] or layer.inputs
        verdicts.append(LayerVerdict(
            layer.index, layer.display_name, layer.kind, layer.sources, layer.op, not findings, findings,
            layer.origin, format_shape(ins[0].shape) if ins else "",
            format_shape(layer.outputs[0].shape) if layer.outputs else ""))
    return verdicts
