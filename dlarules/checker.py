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
    precision: str | None = None    # the precision it runs in on DLA (None: GPU)
    # the precisions tried before the one it runs in (or all of them, for a GPU layer, but the last): what
    # demoted it, e.g. [("int8", [SLICE-INT8 finding])] for a Slice that runs in FP16 in an int8+fp16 build
    demoted: list[tuple[str, list[Finding]]] = field(default_factory=list)

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
                "out_shape": self.out_shape, "precision": self.precision,
                "demoted": [{"precision": p, "findings": [f.to_dict() for f in fs]} for p, fs in self.demoted],
                "findings": [f.to_dict() for f in self.findings]}

    @property
    def demoted_text(self) -> str:
        """'INT8: SLICE-INT8' (the rules that kept it from the precisions it did not get)."""
        return "; ".join(f"{p.upper()}: {', '.join(f.rule for f in fs)}" for p, fs in self.demoted)


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


_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})


def _key(v: Any) -> Any:
    """An attribute value as part of a signature: lists as tuples; a value that cannot be hashed (a tensor where a
    damaged model has an int) by identity, so that layer shares no verdict (found by the fuzz campaign)."""
    if v.__class__ is list or v.__class__ is tuple:
        return tuple(x if x.__class__ in _PLAIN else _key(x) for x in v)
    try:
        hash(v)
    except TypeError:
        return ("unhashable", id(v))
    return v


def _signature(layer: Layer, neighbors: Any) -> tuple:
    """Everything the rules of a plan can see of a layer, apart from names: equal signatures, equal verdicts.
    Constant inputs enter by identity, since rules may read their values. (Hot: one per layer.)"""
    attrs = []
    for k, v in layer.attrs.items():
        attrs.append(k)
        attrs.append(v if v.__class__ in _PLAIN else _key(v))
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


# A strongly typed network: the precision a layer computes in follows its data tensors' type.
_DTYPE_PRECISION = {"float16": "fp16", "float32": "fp32", "float64": "fp32", "bfloat16": "fp32",
                    "int8": "int8", "uint8": "int8"}


def graph_precision(layer: Layer) -> str:
    """The precision a strongly typed build gives a layer: from its first data input's type (or its output's).
    Integer and bool tensors get "fp16": the general rules then say DLA cannot read them."""
    ts = [t for t in layer.inputs if not t.const] or layer.outputs
    dtype = ts[0].dtype if ts else None
    return _DTYPE_PRECISION.get(dtype or "", "fp16")


class _Evaluator:
    """The rules of one precision, with what is remembered between layers: the plan per layer kind, and the
    failing rules per layer signature (equal signatures, equal verdicts)."""

    __slots__ = ("ruleset", "make_fields", "plans", "seen")

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self.make_fields = lambda layer: _fields(layer, ruleset)
        self.plans: dict[str, tuple[list[tuple[Any, Any, Rule]], str]] = {}
        self.seen: dict[tuple, list[Rule]] = {}


def evaluate(lg: LayerGraph, ruleset: RuleSet) -> list[LayerVerdict]:
    """A verdict for every layer of the network.

    A layer may run in the precisions of the build mode, tried in order (int8 then fp16 for `int8+fp16`); the
    first whose rules all pass is the one it runs in on DLA; when none does, it goes to the GPU with the
    findings of the last. A precision fixed by the graph (Q/DQ, or a strongly typed mode) is the only one tried.
    Networks repeat the same layer many times (same kind, attributes and shapes), so the rules that fail are
    remembered per precision and layer signature, and only the messages are rendered again for each layer."""
    nb = lg.index
    memo: dict = {}  # keyed by ids of tensors that stay alive for the whole call; tensor tests ignore precision
    evaluators: dict[str, _Evaluator] = {}
    chain = ruleset.chain or (ruleset.target.precision,)
    from_graph = ruleset.from_graph
    producer_of, consumers_of = nb.producer_of, nb.consumers_of
    verdicts = []
    for layer in lg.layers:
        kind = layer.kind
        fixed = layer.precision
        tries = (fixed,) if fixed else (graph_precision(layer),) if from_graph else chain
        demoted: list[tuple[str, list[Finding]]] = []
        last: tuple[str, list[Finding]] | None = None   # the latest precision tried, and why it failed
        ran_in = None
        for p in tries:
            ev = evaluators.get(p)
            if ev is None:
                ev = evaluators[p] = _Evaluator(ruleset.for_precision(p))
            entry = ev.plans.get(kind)
            if entry is None:
                rules = ev.ruleset.for_kind(kind)
                mode = ("none" if any(r.uses_identity for r in rules) else
                        "neighbors" if any(r.uses_neighbors for r in rules) else "plain")
                entry = ev.plans[kind] = ([(r.when, r.require, r) for r in rules], mode)
            plan, mode = entry
            ctx = Context(layer, ev.make_fields, producer_of, consumers_of, memo)
            sig = None if mode == "none" else _signature(layer, nb if mode == "neighbors" else None)
            failed = ev.seen.get(sig) if sig is not None else None
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
                    ev.seen[sig] = failed
            if not failed:
                ran_in = p
                break
            if last is not None:
                demoted.append(last)
            last = (p, [_finding(rule, ctx) for rule in failed])
        if ran_in is None:
            findings = last[1] if last is not None else []
        else:
            findings = []
            if last is not None:
                demoted.append(last)
        verdicts.append(LayerVerdict(layer.index, layer.display_name, kind, layer.sources, layer.op,
                                     not findings, findings, layer.origin, layer, ran_in, demoted))
    return verdicts
