"""`dlarules fix`: apply the fix recipes the findings name until nothing more changes, keep only the rewrites
that move layers to DLA, and prove the result computes the same function.

Rounds: check -> for every GPU layer, the recipes its findings name (filtered by --only/--exclude; approximate
ones only with --allow-approx) -> apply those whose precondition holds -> check again. At the fixpoint, every
rewrite is traced to the nodes that finally replaced it: if they do not have fewer GPU layers than the node it
rewrote, the rewrite is reverted (the rounds are replayed without it) and reported with the rules still firing.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import onnx
import onnx_graphsurgeon as gs

from .api import Report, check
from .errors import DlarulesError, OptionError
from .recipes.base import Change, Context
from .recipes.catalog import RECIPES as CATALOG
from .ruledb import RuleDB, Target

MAX_ROUNDS = 8


@dataclass
class Skipped:
    recipe: str
    node: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"recipe": self.recipe, "node": self.node, "reason": self.reason}


@dataclass
class FixResult:
    source: str
    before: Report
    after: Report
    model: onnx.ModelProto
    changes: list[Change] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    reverted: list[Skipped] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    proof: Any = None               # prove.Proof, or None with --no-verify

    @property
    def exact(self) -> bool:
        return all(c.exact for c in self.changes)

    def to_dict(self) -> dict[str, Any]:
        def placement(r: Report) -> dict[str, Any]:
            s = r.summary
            return {"gpu_layers": s["layers_on_gpu"], "dla_subgraphs": s["dla_subgraphs"],
                    "transitions": s["transitions"], "coverage": r.coverage,
                    "gpu": [{"layer": f"{v.kind}: {v.name}", "rules": [f.rule for f in v.findings],
                             "why": [f.message for f in v.findings]} for v in r.gpu_layers]}
        return {"model": self.source, "target": {"hardware": self.after.target.hardware,
                                                 "tensorrt": self.after.target.trt,
                                                 "platform": self.after.target.platform,
                                                 "precision": self.after.target.precision},
                "changes": [c.to_dict() for c in self.changes],
                "skipped": [s.to_dict() for s in self.skipped], "reverted": [s.to_dict() for s in self.reverted],
                "before": placement(self.before), "after": placement(self.after),
                "proof": self.proof.to_dict() if self.proof is not None else None,
                "verified": self.proof is not None, "timings_s": {k: round(v, 4) for k, v in self.timings.items()}}


def parse_recipe_list(text: str | None, option: str) -> set[str] | None:
    if not text:
        return None
    names = {n.strip() for n in text.split(",") if n.strip()}
    unknown = sorted(names - set(CATALOG))
    if unknown:
        raise OptionError(option, f"unknown recipe(s) {', '.join(unknown)} (known: {', '.join(sorted(CATALOG))})")
    return names


def load_full(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """The model with its external weights (recipes need them)."""
    from .model import read_model
    model = read_model(path)
    try:
        onnx.load_external_data_for_model(model, str(Path(path).parent))
    except Exception as exc:
        raise DlarulesError(path, f"cannot read its external data: {exc}") from None
    return model


def _node_key(n: gs.Node) -> str:
    return n.name or (f"node_of_{n.outputs[0].name}" if n.outputs else "")


def _candidates(report: Report, allowed: set[str] | None, excluded: set[str] | None) -> list[tuple[str, str, list[str]]]:
    """(recipe, node, rule IDs) for every GPU layer, in network order, each pair once."""
    plan: dict[tuple[str, str], list[str]] = {}
    for v in report.gpu_layers:
        for f in v.findings:
            if not f.fix or (allowed is not None and f.fix not in allowed) or (excluded and f.fix in excluded):
                continue
            for node in v.nodes:
                plan.setdefault((f.fix, node), []).append(f.rule)
    return [(recipe, node, sorted(set(rules))) for (recipe, node), rules in plan.items()]


class _Run:
    """One pass of rounds, optionally refusing some (recipe, node) pairs."""

    def __init__(self, db: RuleDB, target: Target, shapes: Mapping[str, tuple[int, ...]] | None,
                 allowed: set[str] | None, excluded: set[str] | None, allow_approx: bool,
                 refused: Mapping[tuple[str, str], str]) -> None:
        self.db, self.target, self.shapes = db, target, shapes
        self.allowed, self.excluded, self.allow_approx = allowed, excluded, allow_approx
        self.refused = refused
        self.changes: list[Change] = []
        self.skipped: dict[tuple[str, str], str] = {}
        self.gpu_before: dict[int, int] = {}     # change index -> GPU layers of its node when applied
        self.rewrite_s = 0.0
        self.check_s = 0.0

    def check(self, model: onnx.ModelProto) -> Report:
        t = time.perf_counter()
        r = check(model, self.db, target=self.target, input_shapes=self.shapes)
        self.check_s += time.perf_counter() - t
        return r

    def rounds(self, model: onnx.ModelProto, report: Report) -> tuple[onnx.ModelProto, Report]:
        from .recipes.registry import REGISTRY
        for _ in range(MAX_ROUNDS):
            plan = [c for c in _candidates(report, self.allowed, self.excluded) if (c[0], c[1]) not in self.skipped]
            if not plan:
                break
            t = time.perf_counter()
            graph = gs.import_onnx(model)
            for n in graph.nodes:
                n.name = _node_key(n)
            shapes = {name: tuple(t.shape) for name, t in report.layer_graph.graph.tensors.items()
                      if t.shape is not None}
            ctx = Context(graph, shapes)
            nodes = {n.name: n for n in graph.nodes}
            gpu_count = _gpu_per_node(report)
            applied = 0
            for recipe_name, node_name, rules in plan:
                key = (recipe_name, node_name)
                node = nodes.get(node_name)
                if node is None or node not in graph.nodes:
                    continue
                recipe = REGISTRY[recipe_name]
                reason = self.refused.get(key) or (None if node.op in recipe.ops else
                                                   f"it is a {node.op}, the recipe rewrites {', '.join(recipe.ops)}")
                ctx.firing = set(rules)
                reason = reason or recipe.check(node, ctx)
                if reason is None and not recipe.is_exact(node, ctx) and not self.allow_approx:
                    reason = "approximate here (changes the numbers): needs --allow-approx"
                if reason is not None:
                    self.skipped[key] = reason
                    continue
                change = recipe.apply(node, ctx)
                change.cures = rules
                self.gpu_before[len(self.changes)] = gpu_count.get(node_name, 0)
                self.changes.append(change)
                self.skipped[key] = "applied"
                applied += 1
            if not applied:
                self.rewrite_s += time.perf_counter() - t
                break
            graph.cleanup().toposort()
            model = _export(graph, model)
            self.rewrite_s += time.perf_counter() - t
            report = self.check(model)
        return model, report


def _gpu_per_node(report: Report) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in report.gpu_layers:
        for n in v.nodes:
            out[n] = out.get(n, 0) + 1
    return out


def _export(graph: gs.Graph, like: onnx.ModelProto) -> onnx.ModelProto:
    model = gs.export_onnx(graph)
    model.ir_version = like.ir_version
    model.producer_name = like.producer_name or model.producer_name
    model.producer_version = like.producer_version
    del model.metadata_props[:]
    model.metadata_props.extend(like.metadata_props)
    return model


def _descendants(changes: list[Change]) -> list[set[str]]:
    """For each change, the nodes that finally stand for it (later changes may have rewritten its nodes)."""
    out = []
    for i, c in enumerate(changes):
        current = set(c.added_nodes)
        for later in changes[i + 1:]:
            if later.node in current:
                current.discard(later.node)
                current |= set(later.added_nodes)
        out.append(current)
    return out


def _ineffective(run: _Run, report: Report) -> dict[tuple[str, str], str]:
    gpu_now = _gpu_per_node(report)
    rules_now: dict[str, set[str]] = {}
    for v in report.gpu_layers:
        for n in v.nodes:
            rules_now.setdefault(n, set()).update(f.rule for f in v.findings)
    bad = {}
    for i, (change, nodes) in enumerate(zip(run.changes, _descendants(run.changes))):
        after = sum(gpu_now.get(n, 0) for n in nodes)
        if after < run.gpu_before.get(i, 0):
            continue
        still = sorted({r for n in nodes for r in rules_now.get(n, ())})
        bad[(change.recipe, change.node)] = ("reverted: the rewrite did not move its layers to DLA"
                                             + (f" (still firing: {', '.join(still)})" if still else ""))
    return bad


def fix(source: str | os.PathLike[str], db: RuleDB, target: Target, *, input_shapes: Mapping[str, tuple] | None = None,
        only: Iterable[str] | None = None, exclude: Iterable[str] | None = None, allow_approx: bool = False,
        verify: bool = True, inputs: str | None = None, rtol: float = 1e-3, atol: float = 1e-4) -> FixResult:
    """Rewrite a model for DLA; nothing is written here (see `write`)."""
    t0 = time.perf_counter()
    original = load_full(source)
    load_s = time.perf_counter() - t0
    allowed = set(only) if only is not None else None
    excluded = set(exclude) if exclude is not None else None
    refused: dict[tuple[str, str], str] = {}
    for _ in range(3):   # replays: each drops the rewrites that did not pay off
        run = _Run(db, target, input_shapes, allowed, excluded, allow_approx, refused)
        before = run.check(original)
        first_check = run.check_s
        model, after = run.rounds(original, before)
        bad = _ineffective(run, after)
        if not bad:
            break
        refused = {**refused, **bad}
    result = FixResult(str(source), before, after, model, run.changes,
                       [Skipped(r, n, why) for (r, n), why in run.skipped.items()
                        if why != "applied" and not why.startswith("reverted")],
                       [Skipped(r, n, why) for (r, n), why in refused.items()])
    result.timings = {"load": load_s, "check": first_check, "rechecks": run.check_s - first_check,
                      "rewrite": run.rewrite_s}
    if verify and run.changes:
        from .prove import prove
        t = time.perf_counter()
        result.proof = prove(original, model, input_shapes=input_shapes, inputs=inputs, rtol=rtol, atol=atol,
                             source=str(source))
        result.timings["proof"] = time.perf_counter() - t
    return result


def default_output(source: str | os.PathLike[str]) -> Path:
    p = Path(source)
    return p.with_name(p.stem + ".dla.onnx")


def write(result: FixResult, output: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write the rewritten model atomically; never over the input or an existing file unless forced."""
    from .atomic import save_model_atomic
    out = Path(output)
    src = Path(result.source)
    if out.exists() and out.resolve() == src.resolve() and not force:
        raise DlarulesError(out, "is the input model; refusing to overwrite it (choose another -o, or --force)")
    if out.exists() and not force:
        raise DlarulesError(out, "already exists; pass --force to replace it")
    model = result.model
    big = model.ByteSize() > 2_000_000_000 or _has_external(src)
    if not big:
        onnx.checker.check_model(model, full_check=True)
    save_model_atomic(model, out, external=big)
    if big:
        onnx.checker.check_model(str(out), full_check=True)
    return out


def _has_external(src: Path) -> bool:
    try:
        m = onnx.load(str(src), load_external_data=False)
    except Exception:
        return False
    return any(i.data_location == onnx.TensorProto.EXTERNAL for i in m.graph.initializer)
