"""Evaluate the selected rules on every TensorRT layer: which run on DLA, which fall back, and why."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import clip
from .layers import Layer
from .lowering import LayerGraph
from .matcher import Context, render
from .model import format_shape
from .ruledb import Rule, RuleSet


MAX_MESSAGE = 300  # a finding is one readable line, whatever names and shapes the model has


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


@dataclass(slots=True)
class LayerVerdict:
    index: int
    name: str                 # as TensorRT prints it
    kind: str
    nodes: list[str]          # the ONNX node(s) it comes from
    op: str
    on_dla: bool
    findings: list[Finding] = field(default_factory=list)
    origin: str = "parser"
    layer: Layer | None = field(default=None, repr=False)

    @property
    def in_shape(self) -> str:
        ins = [x for x in self.layer.inputs if not x.const] or self.layer.inputs if self.layer else []
        return format_shape(ins[0].shape) if ins else ""

    @property
    def out_shape(self) -> str:
        return format_shape(self.layer.outputs[0].shape) if self.layer and self.layer.outputs else ""

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
        "shape_origin": next((x.origin for x in layer.inputs if x.origin), "") or "a dynamic input",
        "hardware": t.hardware, "trt": t.trt, "precision": t.precision, "platform": t.platform,
    }


def _finding(rule: Rule, ctx: Context) -> Finding:
    fix = rule.fix
    if isinstance(fix, dict):
        fix = fix.get(ctx.layer.op)
    return Finding(rule.id, clip(render(rule.message, ctx), MAX_MESSAGE), str(rule.source), rule.source.url,
                   rule.confidence, fix, str(rule.raw.get("hint", "")))


def _signature(layer: Layer, neighbors: Any) -> tuple:
    """Everything the rules of a plan can see of a layer, apart from names: equal signatures, equal verdicts.
    Constant inputs enter by identity, since rules may read their values. (Hot: one per layer.)"""
    attrs = []
    for k, v in layer.attrs.items():
        attrs.append(k)
        attrs.append(tuple(v) if v.__class__ is list else v)
    ins = []
    for t in layer.inputs:
        ins.append(t.shape)
        ins.append(t.dtype)
        ins.append(id(t) if t.const else 0)
    sig = (layer.kind, layer.op, tuple(attrs), tuple(ins), tuple([t.shape for t in layer.outputs]),
           tuple([t.dtype for t in layer.outputs]))
    if neighbors is not None:
        sig += (tuple(p.kind if (p := neighbors.producer_of(layer, k)) else "" for k in range(len(layer.inputs))),
                tuple(sorted(c.kind for c in neighbors.consumers_of(layer))))
    return sig


def evaluate(lg: LayerGraph, ruleset: RuleSet) -> list[LayerVerdict]:
    """A verdict for every layer of the network.

    Networks repeat the same layer many times (same kind, attributes and shapes), so the rules that fail are
    remembered per layer signature and only the messages are rendered again for each layer."""
    nb = lg.index
    make_fields = lambda layer: _fields(layer, ruleset)  # noqa: E731
    memo: dict = {}  # keyed by ids of tensors that stay alive for the whole call
    plans: dict[str, tuple[list[tuple[Any, Any, Rule]], str]] = {}
    seen: dict[tuple, list[Rule]] = {}
    producer_of, consumers_of = nb.producer_of, nb.consumers_of
    verdicts = []
    for layer in lg.layers:
        kind = layer.kind
        entry = plans.get(kind)
        if entry is None:
            rules = ruleset.for_kind(kind)
            mode = ("none" if any(r.uses_identity for r in rules) else
                    "neighbors" if any(r.uses_neighbors for r in rules) else "plain")
            entry = plans[kind] = ([(r.when, r.require, r) for r in rules], mode)
        plan, mode = entry
        ctx = Context(layer, make_fields, producer_of, consumers_of, memo)
        sig = None if mode == "none" else _signature(layer, nb if mode == "neighbors" else None)
        failed = seen.get(sig) if sig is not None else None
        if failed is None:
            failed = []
            for when, require, rule in plan:
                if when is not None and not when(ctx):
                    continue
                if not require(ctx):
                    failed.append(rule)
                    if rule.never:
                        break  # the kind has no DLA implementation: further limits would be noise
            if sig is not None:
                seen[sig] = failed
        findings = [_finding(rule, ctx) for rule in failed]
        verdicts.append(LayerVerdict(layer.index, layer.display_name, kind, layer.sources, layer.op,
                                     not findings, findings, layer.origin, layer))
    return verdicts
