"""`dlarules fix`: apply the fix recipes the findings name until nothing more changes, keep only the rewrites
that move layers to DLA, and prove the result computes the same function.

Rounds: check the model -> for every GPU layer, the recipes its findings name (filtered by --only/--exclude;
approximate ones only with --allow-approx) -> for each node, cut out its neighbourhood (splice.py), apply the
recipes there, check that small model, and splice it back only if the rewritten layers have fewer GPU layers
than the original ones (otherwise the rewrite is reported as not kept, with the rules still firing) -> check the
whole model again. The first and the last check are the only full checks besides one per round.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import onnx
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.logger import G_LOGGER

from . import splice
from .core import Report, check
from .errors import DlarulesError, OptionError, clip, first_line
from .model import resolve_input_shapes
from .recipes.base import Change, Context
from .recipes.catalog import RECIPES as CATALOG
from .ruledb import RuleDB, Target

# onnx-graphsurgeon prints its warnings ("colored module is not installed", "foldable nodes") to stdout, which
# would corrupt `fix --format json`; its errors still raise
G_LOGGER.severity = G_LOGGER.CRITICAL + 1

MAX_ROUNDS = 8
# A round that is not better by itself but leaves fewer GPU layers may be judged together with the rounds after
# it (at most this many, not nested): a rewrite whose gain needs the next rewrite.
LOOKAHEAD_DEPTH = 1
LOOKAHEAD_ROUNDS = 2


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
    # files written beside the model (suffix -> text): qdq-to-calibration's calibration cache and layer precisions
    artifacts: dict[str, str] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return all(c.exact for c in self.changes)

    @property
    def decision(self) -> dict[str, Any]:
        """Whole-model acceptance: the placement before and after, compared in SCORE_ORDER."""
        return {"order": list(SCORE_ORDER), "before": [self.before.summary[k] for k in SCORE_ORDER],
                "after": [self.after.summary[k] for k in SCORE_ORDER],
                "kept": bool(self.changes), "still_falls_back": bool(self.after.gpu_layers)}

    @property
    def exit_code(self) -> int:
        """0: a better model (proof passed or not run), or nothing to do (all on DLA already); 1: the proof
        failed, or no rewrite makes the whole model better and it still falls back to the GPU."""
        if self.proof is not None and not self.proof.passed:
            return 1
        return 0 if self.changes or not self.before.gpu_layers else 1

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
                                                 "precision": self.after.target.mode_name},
                "changes": [c.to_dict() for c in self.changes],
                "skipped": [s.to_dict() for s in self.skipped], "reverted": [s.to_dict() for s in self.reverted],
                "before": placement(self.before), "after": placement(self.after),
                "decision": self.decision,
                "proof": self.proof.to_dict() if self.proof is not None else None,
                "verified": self.proof is not None, "artifacts": sorted(self.artifacts), "timings_s": {k: round(v, 4) for k, v in self.timings.items()}}


def parse_recipe_list(text: str | None, option: str) -> set[str] | None:
    if not text:
        return None
    names = {n.strip() for n in text.split(",") if n.strip()}
    unknown = sorted(names - set(CATALOG))
    if unknown:
        known = ", ".join(sorted(CATALOG))
        # the whole list when it fits the line, else where to find it
        raise OptionError(option, f"unknown recipe(s) {clip(', '.join(unknown), 60)} (" +
                          (f"known: {known}" if len(known) < 150 else "`dlarules recipes list` names them") + ")")
    return names


def load_full(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """The model with its external weights (recipes need them)."""
    from .model import read_model
    model = read_model(path)
    try:
        onnx.load_external_data_for_model(model, str(Path(path).parent))
    except Exception as exc:
        raise DlarulesError(path, f"cannot read its external data: {exc}") from None
    _check_weight_types(model, path)
    return model


def _check_weight_types(model: onnx.ModelProto, path: str | os.PathLike[str]) -> None:
    """Every weight and declared tensor has a real ONNX data type: the rewrites import the graph with
    onnx-graphsurgeon, which fails on UNDEFINED (0) weights or an unknown code with an exception of its own."""
    known = set(onnx.TensorProto.DataType.values()) - {onnx.TensorProto.UNDEFINED}
    weights = [("initializer", t.name, t) for t in model.graph.initializer]
    weights += [(f"{n.op_type} node", n.name or (n.output[0] if n.output else "?"), a.t)
                for n in model.graph.node for a in n.attribute if a.type == onnx.AttributeProto.TENSOR]
    for what, name, t in weights:
        if t.data_type not in known:
            raise DlarulesError(path, f"{what} {name[:60]!r} has data type {t.data_type}, which is not an ONNX "
                                      f"tensor type; the model is malformed")
    g = model.graph
    for what, infos in (("input", g.input), ("output", g.output), ("value_info", g.value_info)):
        for vi in infos:   # 0 is "not given" here; an unknown code makes onnx-graphsurgeon raise KeyError
            code = vi.type.tensor_type.elem_type if vi.type.HasField("tensor_type") else 0
            if code and code not in known:
                raise DlarulesError(path, f"{what} {vi.name[:60]!r} has element type {code}, which is not an ONNX "
                                          f"tensor type; the model is malformed")


def _candidates(report: Report, allowed: set[str] | None, excluded: set[str] | None) -> dict[str, list[tuple[str, list[str]]]]:
    """node -> [(recipe, rule IDs)] for every GPU layer's findings, in network order."""
    plan: dict[str, dict[str, list[str]]] = {}
    for v in report.gpu_layers:
        for f in v.findings:
            if not f.fix or (allowed is not None and f.fix not in allowed) or (excluded and f.fix in excluded):
                continue
            for node in v.nodes:
                plan.setdefault(node, {}).setdefault(f.fix, []).append(f.rule)
    return {node: [(r, sorted(set(rules))) for r, rules in recipes.items()] for node, recipes in plan.items()}


def _gpu_per_node(report: Report) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in report.gpu_layers:
        for n in v.nodes:
            out[n] = out.get(n, 0) + 1
    return out


def _rules_per_node(report: Report) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for v in report.gpu_layers:
        for n in v.nodes:
            out.setdefault(n, set()).update(f.rule for f in v.findings)
    return out


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give every node a unique name (TensorRT's node_of_<output> for nameless ones): rewrites work by name."""
    seen: set[str] = set()
    for i, n in enumerate(model.graph.node):
        name = n.name or f"node_of_{n.output[0] if n.output else i}"
        while name in seen:
            name = f"{name}_{i}"
        n.name = name
        seen.add(name)


def _export(graph: gs.Graph, like: onnx.ModelProto) -> onnx.ModelProto:
    model = gs.export_onnx(graph)
    model.ir_version = like.ir_version
    # splice's stable toposort: graphsurgeon's is several times slower on a few hundred nodes
    g = model.graph
    ordered = splice.toposort(list(g.node), {i.name for i in g.input} | {i.name for i in g.initializer})
    del g.node[:]
    g.node.extend(ordered)
    return model


class _Unexportable(DlarulesError):
    """The rewritten neighbourhood cannot be exported back to ONNX (a defect of the rewrite, handled as one that
    does not load)."""

    def __init__(self, applied: list, exc: Exception) -> None:
        super().__init__(None, f"onnx-graphsurgeon cannot write it back: {clip(first_line(exc), 100)}")
        self.applied = applied


class _Fixer:
    def __init__(self, db: RuleDB, target: Target, shapes: Mapping[str, tuple[int, ...]] | None,
                 allowed: set[str] | None, excluded: set[str] | None, allow_approx: bool,
                 progress: Callable[[str], None] | None = None) -> None:
        self.db, self.target, self.shapes = db, target, shapes
        self.progress = progress
        self.depth = 0   # > 0 inside a lookahead
        self.allowed, self.excluded, self.allow_approx = allowed, excluded, allow_approx
        self.changes: list[Change] = []
        self.decided: dict[tuple[str, str], str] = {}    # (recipe, node) -> "applied" or why not
        self.reverted: list[Skipped] = []
        self.time = {"check": 0.0, "rechecks": 0.0, "rewrite": 0.0, "local_checks": 0.0}

    def _check(self, model: onnx.ModelProto, kind: str, shapes: Mapping | None = None) -> Report:
        t = time.perf_counter()
        r = check(model, self.db, target=self.target, input_shapes=shapes)
        self.time[kind] += time.perf_counter() - t
        return r

    def run(self, model: onnx.ModelProto) -> tuple[Report, onnx.ModelProto, Report]:
        before = report = self._check(model, "check", self.shapes)
        for k in range(MAX_ROUNDS):
            plan = self._plan(report)
            if not plan:
                break
            self._say(f"round {k + 1}: {len(plan)} node(s) to rewrite, {score_text(report)}")
            better = self._round(model, report, plan)
            if better is None:
                break
            report = better
        return before, model, report

    def _plan(self, report: Report) -> dict[str, list[tuple[str, list[str]]]]:
        """node -> the recipes its findings name that were not decided yet (applied, or why not)."""
        plan = {node: [(r, rules) for r, rules in recipes if (r, node) not in self.decided]
                for node, recipes in _candidates(report, self.allowed, self.excluded).items()}
        return {node: recipes for node, recipes in plan.items() if recipes}

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress(text)

    def _round(self, model: onnx.ModelProto, report: Report, plan: dict[str, list[tuple[str, list[str]]]]) -> Report | None:
        """Try every planned node's recipes at once on one small model made of their neighbourhoods, check it,
        keep the nodes whose rewrite has fewer GPU layers than the original there, then keep those rewrites that
        make the whole model better (score). Returns the whole model's new report, or None when nothing is kept."""
        t = time.perf_counter()
        graph = report.layer_graph.graph
        shapes = splice.shapes_of(graph)
        dtypes = splice.dtypes_of(graph)
        ix = splice.Index(model)
        span = splice.in_model_order(ix, splice.union(splice.neighbourhood(ix, n, _reach(recipes))
                                                      for n, recipes in plan.items() if n in ix.by_name))
        local = splice.extract(ix, span, graph)
        reserved = splice.names_in(model)
        try:
            trial = self._apply_local(local, plan, shapes, dtypes, reserved, record=True)
        except _Unexportable as exc:
            self.time["rewrite"] += time.perf_counter() - t
            return self._unloadable(model, report, plan, exc.applied, exc)
        if not trial[0]:
            self.time["rewrite"] += time.perf_counter() - t
            return None
        lt = time.perf_counter()
        try:
            local_report = self._check(trial[1], "local_checks")
        except DlarulesError as exc:
            self.time["rewrite"] += time.perf_counter() - t
            return self._unloadable(model, report, plan, trial[0], exc)
        self.time["rewrite"] -= time.perf_counter() - lt   # counted as a check, not as rewriting
        gpu_then, gpu_now = _gpu_per_node(report), _gpu_per_node(local_report)
        rules_now, rules_then = _rules_per_node(local_report), _rules_per_node(report)
        keep = {}
        for node, changes in _by_plan_node(trial[0]).items():
            old, new = _lineage(changes)
            if sum(gpu_now.get(n, 0) for n in new) < sum(gpu_then.get(n, 0) for n in old):
                keep[node] = plan[node]
                continue
            still = sorted({r for n in new for r in rules_now.get(n, ())} or rules_then.get(node, set()))
            why = "the rewrite does not move its layers to DLA" + (f" (still firing: {', '.join(still)})"
                                                                   if still else "")
            self._revert(changes, why)
        self.time["rewrite"] += time.perf_counter() - t
        if not keep:
            return None
        whole = _Trial(self, model, span, local, shapes, dtypes, reserved,
                       trial if len(keep) == len(_by_plan_node(trial[0])) else None)
        items = list(keep.items())
        full = whole.try_all(items)
        if full is not None and not better(full[2], report) and self.depth < LOOKAHEAD_DEPTH \
                and full[2].summary["layers_on_gpu"] < report.summary["layers_on_gpu"]:
            # not better yet, but fewer GPU layers: a rewrite that needs the next one (head-sink leaves anchor
            # constants that sub-to-add then folds): judge the pair on the whole model
            ahead = self._lookahead(full, report)
            if ahead is not None:
                m, child, rep = ahead
                model.CopyFrom(m)
                self.changes += [c for _, c in full[1]] + child.changes
                return rep
        accepted, best = whole.accept(report, items, full)
        if not accepted:
            return None
        model.CopyFrom(best[0])
        self.changes += [c for _, c in best[1]]
        return best[2]

    def _lookahead(self, full: tuple, report: Report) -> tuple[onnx.ModelProto, "_Fixer", Report] | None:
        """Rounds on top of a round that was not better by itself: kept (all of it) only if the model they reach
        is better than `report`; otherwise nothing of it is kept and the round is halved as usual."""
        child = _Fixer(self.db, self.target, self.shapes, self.allowed, self.excluded, self.allow_approx)
        child.depth = self.depth + 1
        child.decided = dict(self.decided)
        m = onnx.ModelProto()
        m.CopyFrom(full[0])
        rep = full[2]
        found = None
        for _ in range(LOOKAHEAD_ROUNDS):
            plan = child._plan(rep)
            if not plan:
                break
            nxt = child._round(m, rep, plan)
            if nxt is None:
                break
            rep = nxt
            if better(rep, report):
                found = (m, child, rep)
                break
        for k, v in child.time.items():
            self.time[k] += v
        if found is not None:
            self.decided.update(child.decided)
            self.reverted += child.reverted
        return found

    def _revert(self, changes: list[Change], why: str) -> None:
        for c in changes:
            self.decided[(c.recipe, c.node)] = why
            self.reverted.append(Skipped(c.recipe, c.node, why))

    def _unloadable(self, model: onnx.ModelProto, report: Report, plan: dict[str, list[tuple[str, list[str]]]],
                    applied: list[tuple[str, Change]], exc: DlarulesError) -> Report | None:
        """The rewritten neighbourhood does not load (a recipe made a graph this model's opset or shapes do not
        allow): a defect of the rewrite, not of the user's model. Halve the plan to find the nodes whose rewrite
        does it; those are reported as not kept, the others are tried as usual."""
        if len(plan) > 1:
            items = list(plan.items())
            half = len(items) // 2
            # the second half only when the first changed nothing (the report still describes the model)
            first = self._round(model, report, dict(items[:half]))
            return first if first is not None else self._round(model, report, dict(items[half:]))
        self._revert([c for _, c in applied], f"the rewritten graph does not load ({clip(exc.problem, 120)})")
        return None

    def _apply_local(self, local: onnx.ModelProto, plan: Mapping[str, list[tuple[str, list[str]]]],
                     shapes: Mapping[str, tuple], dtypes: Mapping[str, str], reserved: set[str],
                     record: bool) -> tuple[list[tuple[str, Change]], onnx.ModelProto]:
        """Apply each planned node's recipes; returns (planned node, change) pairs and the rewritten model."""
        from .recipes.registry import REGISTRY
        g = gs.import_onnx(local)
        ctx = Context(g, dict(shapes), reserved, dict(dtypes))
        by_name = {n.name: n for n in g.nodes}
        applied: list[tuple[str, Change]] = []
        for node_name, recipes in plan.items():
            for recipe_name, rules in recipes:
                key = (recipe_name, node_name)
                node = by_name.get(node_name)
                recipe = REGISTRY[recipe_name]
                if node is None or id(node) in ctx.removed:
                    reason = "the node was rewritten by another recipe first"
                elif node.op not in recipe.ops:
                    # a fused layer names every node it holds; the recipe is meant for the others
                    continue
                else:
                    ctx.firing = set(rules)
                    ctx.focus(node)
                    reason = recipe.check(node, ctx)
                    if reason is None and not recipe.is_exact(node, ctx) and not self.allow_approx:
                        reason = "approximate here (changes the numbers): needs --allow-approx"
                if reason is not None:
                    # "rewritten first" is no verdict on this recipe: if that other rewrite is reverted, the
                    # next round tries this one
                    if record and node is not None and id(node) not in ctx.removed:
                        self.decided[key] = reason
                    continue
                change = recipe.apply(node, ctx)
                change.cures = rules
                applied.append((node_name, change))
                by_name.update({n.name: n for n in g.nodes if n.name in change.added_nodes})
                if record:
                    self.decided[key] = "applied"
        if not applied:
            return [], local
        g.cleanup()
        try:
            return applied, _export(g, local)
        except ValueError as exc:   # graphsurgeon cannot write back an empty list attribute (Conv strides=[])
            raise _Unexportable(applied, exc) from None


# The whole model's placement, best first: fewer DLA subgraphs, then fewer GPU layers, then fewer transitions
# (with the loadable limit applied: a subgraph past it counts as GPU layers, not as a subgraph). A model with no
# DLA subgraph counts as one: running nothing on DLA is not "fewer subgraphs" than running all of it there.
SCORE_ORDER = ("dla_subgraphs", "layers_on_gpu", "transitions")


def score(report: Report) -> tuple[int, int, int]:
    s = report.summary
    return (max(int(s["dla_subgraphs"]), 1), int(s["layers_on_gpu"]), int(s["transitions"]))


def score_text(report: Report) -> str:
    s = report.summary
    return f"{s['dla_subgraphs']} DLA subgraph(s), {s['layers_on_gpu']} GPU layer(s), {s['transitions']} transition(s)"


def better(after: Report, before: Report) -> bool:
    """Is the whole model's placement strictly better (SCORE_ORDER, compared in that order)?"""
    return score(after) < score(before)


class _Trial:
    """One round's locally good rewrites, judged on the whole model: splice a set of them into a copy of the model
    as it was before the round, check it, keep the set only if the whole placement gets better. A set that does not
    is halved (each half judged on what was kept so far), so one rewrite that costs a subgraph does not take the
    others down with it; a single rewrite that does not pay off is reported as not kept, with the figures."""

    def __init__(self, fixer: "_Fixer", model: onnx.ModelProto, span: list, local: onnx.ModelProto,
                 shapes: Mapping, dtypes: Mapping, reserved: set[str],
                 first: tuple[list[tuple[str, Change]], onnx.ModelProto] | None) -> None:
        self.fixer, self.model, self.span, self.local = fixer, model, span, local
        self.shapes, self.dtypes, self.reserved = shapes, dtypes, reserved
        self.first = first                  # the round's rewrite of exactly the kept nodes, when it is one
        self.kept: list[tuple[str, list[tuple[str, list[str]]]]] = []
        self.best: tuple[onnx.ModelProto, list[tuple[str, Change]], Report] | None = None

    def _try(self, items: list) -> tuple[onnx.ModelProto, list[tuple[str, Change]], Report] | None:
        f = self.fixer
        t = time.perf_counter()
        plan = dict(self.kept + items)
        if self.first is not None:   # the first try: the whole set, already rewritten by the round
            (applied, after), self.first = self.first, None
        else:
            try:
                applied, after = f._apply_local(self.local, plan, self.shapes, self.dtypes, self.reserved,
                                                record=False)
            except _Unexportable:
                return None
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        splice.splice(m, self.span, after)
        f.time["rewrite"] += time.perf_counter() - t
        try:
            return m, applied, f._check(m, "rechecks", f.shapes)
        except DlarulesError:
            return None

    def try_all(self, items: list) -> tuple[onnx.ModelProto, list[tuple[str, Change]], Report] | None:
        """The whole set spliced in and checked (nothing kept yet)."""
        return self._try(items)

    def accept(self, report: Report, items: list, full: tuple | None = None) -> tuple[bool, tuple]:
        """`full`: try_all(items), when the caller already has it."""
        self._accept(report, items, full)
        return self.best is not None, self.best

    def _accept(self, report: Report, items: list, known: tuple | None = None) -> None:
        current = self.best[2] if self.best is not None else report
        got = known if known is not None else self._try(items)
        if got is not None and better(got[2], current):
            self.kept += items
            self.best = got
            return
        if len(items) > 1:
            half = len(items) // 2
            self._accept(report, items[:half])
            self._accept(report, items[half:])
            return
        node = items[0][0]
        why = ("the rewritten model does not load" if got is None else
               f"the whole model does not get better ({score_text(current)} -> {score_text(got[2])})")
        changes = [c for n, c in got[1] if n == node] if got is not None else []
        if not changes:
            changes = [Change(r, node, "", True) for r, _ in items[0][1]]
        self.fixer._revert(changes, why)


def _reach(recipes: list[tuple[str, list[str]]]) -> int:
    """How far around a node its planned recipes look (a smaller neighbourhood is cheaper to rewrite)."""
    from .recipes.registry import REGISTRY
    return max(REGISTRY[r].reach for r, _ in recipes)


def _by_plan_node(applied: list[tuple[str, Change]]) -> dict[str, list[Change]]:
    out: dict[str, list[Change]] = {}
    for node, c in applied:
        out.setdefault(node, []).append(c)
    return out


def _lineage(changes: list[Change]) -> tuple[set[str], set[str]]:
    """The original nodes a node's rewrites replaced, and the nodes that finally stand for them."""
    old = {changes[0].node}
    new: set[str] = set()
    for c in changes:
        old |= set(c.removed_nodes) - new
        if c.node in new:
            new.discard(c.node)
        new |= set(c.added_nodes)
    return old, new


def fix(source: str | os.PathLike[str], db: RuleDB, target: Target, *, input_shapes: Mapping[str, tuple] | None = None,
        only: Iterable[str] | None = None, exclude: Iterable[str] | None = None, allow_approx: bool = False,
        verify: bool = True, inputs: str | None = None, rtol: float = 1e-3, atol: float = 1e-4,
        progress: Callable[[str], None] | None = None) -> FixResult:
    """Rewrite a model for DLA; nothing is written here (see `write`). The rewrites are kept only if the whole
    model's placement gets strictly better (`better`: fewer DLA subgraphs, then GPU layers, then transitions);
    otherwise the result has no change and the original model. `progress` is told what a long run is doing."""
    from .prove import quiet_onnxruntime
    say = progress or (lambda _text: None)
    quiet_onnxruntime()   # before any recipe: fold-constants runs onnxruntime too
    t0 = time.perf_counter()
    say("loading the model")
    original = load_full(source)
    input_shapes = resolve_input_shapes(original, input_shapes, str(source)) or None
    _name_nodes(original)   # the proof looks at the rewritten nodes' inputs by name; names change no value
    model = onnx.ModelProto()
    model.CopyFrom(original)
    load_s = time.perf_counter() - t0
    allowed = set(only) if only is not None else None
    excluded = set(exclude) if exclude is not None else None
    fixer = _Fixer(db, target, input_shapes, allowed, excluded, allow_approx, progress)
    stripped, first = _strip_qdq(model, db, target, input_shapes, allowed, excluded, allow_approx)
    requant = float_model = None
    if stripped is not None:
        from .recipes import qdq
        # taken before the per-layer rounds rewrite the float model in place
        requant = qdq.requantized_probes(stripped) if verify else None
        if verify:
            float_model = onnx.ModelProto()
            float_model.CopyFrom(stripped.model)
        model = stripped.model
    say("checking the model")
    before, model, after = fixer.run(model)
    before = first or before
    changes = ([_qdq_change(stripped)] if stripped is not None else []) + fixer.changes
    if changes and not better(after, before):
        # every round was better than the one before it, but the Q/DQ strip is judged only here
        why = f"the whole model does not get better ({score_text(before)} -> {score_text(after)})"
        fixer.reverted += [Skipped(c.recipe, c.node, why) for c in changes]
        fixer.changes, changes, stripped, after = [], [], None, before
        model = original
    if input_shapes and fixer.changes:
        _pin_inputs(model, input_shapes)
    # a node that a kept rewrite took out (one recipe rewriting a chain of nodes) is fixed, not skipped
    rewritten = {n for c in fixer.changes for n in c.removed_nodes}
    skipped = [Skipped(r, n, why) for (r, n), why in fixer.decided.items()
               if why != "applied" and n not in rewritten
               and not any(s.recipe == r and s.node == n for s in fixer.reverted)]
    result = FixResult(str(source), before, after, model, changes, skipped, fixer.reverted)
    result.timings = {"load": load_s, **fixer.time}
    if stripped is not None:
        from .recipes import qdq
        result.artifacts = {qdq.CACHE_SUFFIX: qdq.calibration_cache(stripped.scales, target.trt)}
        if stripped.fp16_nodes:
            result.artifacts[qdq.LAYER_ARG_SUFFIX] = qdq.layer_precisions(stripped.fp16_nodes)
    if verify and changes:
        say("proving the rewritten model in onnxruntime")
        t = time.perf_counter()
        if stripped is not None:
            result.proof = _qdq_proof(original, model, stripped, requant, input_shapes, inputs, str(source))
            if fixer.changes:
                # the per-layer rewrites after the strip: proven on the float model, as every rewrite is
                later = _prove_rewrites(float_model, model, fixer.changes, input_shapes, inputs, rtol, atol,
                                        str(source))
                label = f"the per-layer rewrites on the float model, {later.tolerance_text}, {later.inputs} inputs"
                result.proof.outputs += [replace(o, name=f"{o.name} ({label})") for o in later.outputs]
                result.proof.warnings += later.warnings
        else:
            result.proof = _prove_rewrites(original, model, changes, input_shapes, inputs, rtol, atol, str(source))
        result.timings["proof"] = time.perf_counter() - t
    return result


# at most this many tensors read by rewritten nodes are looked at for degenerate proof inputs
_MAX_WATCHED = 64


def _prove_rewrites(reference: onnx.ModelProto, model: onnx.ModelProto, changes: list[Change],
                    shapes: Mapping[str, tuple] | None, inputs: str | None, rtol: float, atol: float,
                    source: str) -> Any:
    """The onnxruntime proof of per-layer rewrites. Exact ones: strict rtol/atol. Approximate ones: each recipe's
    own tolerance (Recipe.tolerance, relative to the output's range; the loosest of them gates). Before it, the
    tensors the rewritten nodes read are looked at under the proof's inputs: where they are constant over the
    positions a rewrite changes, the proof would exercise nothing, so other inputs are tried (larger variance,
    image-like, a structured pattern) and the proof says which it used, or that none helped."""
    from .prove import _inputs, input_variants, prove
    from .recipes.registry import REGISTRY
    approx_changes = [c for c in changes if not c.exact and c.recipe in REGISTRY]
    tols = [REGISTRY[c.recipe].tolerance for c in approx_changes]
    # an approximate recipe without a tolerance of its own keeps the strict one (its proof fails, visibly)
    approx = max(tols) if tols and all(t is not None for t in tols) else None   # type: ignore[type-var]
    watched = _watched_tensors(reference, changes)
    feeds = label = want = None
    warnings: list[str] = []
    if watched:
        from .prove import probe
        feeds = _inputs(reference, shapes, 0, inputs, source)
        label = None if inputs is not None else "random (seed 0)"
        # one run of the original gives both the watched tensors and the proof's reference outputs
        want = probe(reference, feeds, list(watched), source, inputs)
        bad = _degenerate_in(want, watched)
        if bad and inputs is not None:
            warnings.append(f"under the given --inputs {_bad_text(bad)}: the proof does not exercise those "
                            f"rewrites")
        elif bad:
            for name, cand in input_variants(reference, shapes, source):
                values = probe(reference, cand, list(watched), source)
                if not _degenerate_in(values, watched):
                    feeds, label, want = cand, name, values
                    warnings.append(f"random inputs left {_bad_text(bad)}; proven on {name} inputs instead")
                    break
            else:
                warnings.append(f"{_bad_text(bad)} under every input tried (random, random x10, uniform 0..255, a "
                                f"pattern): the proof does not exercise those rewrites")
    proof = prove(reference, model, input_shapes=shapes, inputs=inputs, rtol=rtol, atol=atol, source=source,
                  feeds=feeds, label=label, approx=approx, want=want)
    proof.approx_recipes = sorted({c.recipe for c in approx_changes}) if approx is not None else []
    proof.warnings = warnings
    return proof


def _watched_tensors(reference: onnx.ModelProto, changes: list[Change]) -> dict[str, str]:
    """tensor -> 'recipe on node' for the activations (not weights) that the rewritten nodes read."""
    g = reference.graph
    consts = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    by_name = {n.name: n for n in g.node}
    out: dict[str, str] = {}
    for c in changes:
        for name in [c.node, *c.removed_nodes]:
            n = by_name.get(name)
            if n is None:
                continue
            for t in n.input[:1] if n.op_type in ("Resize", "Upsample", "Reshape", "Slice", "Pad") else n.input:
                if t and t not in consts and len(out) < _MAX_WATCHED:
                    out.setdefault(t, f"{c.recipe} on {c.node}")
    return out


def _degenerate_in(values: Mapping[str, Any], watched: Mapping[str, str]) -> list[tuple[str, str, str]]:
    from .prove import degenerate
    bad = []
    for t, where in watched.items():
        why = degenerate(values[t]) if t in values else None
        if why is not None:
            bad.append((where, t, why))
    return bad


def _bad_text(bad: list[tuple[str, str, str]]) -> str:
    where, t, why = bad[0]
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return f"the input {clip(t, 60)} of {clip(where, 80)} {why}{more}"


def _strip_qdq(model: onnx.ModelProto, db: RuleDB, target: Target, shapes: Mapping[str, tuple] | None,
               allowed: set[str] | None, excluded: set[str] | None, allow_approx: bool) -> tuple[Any, Report | None]:
    """The model-wide recipe qdq-to-calibration: where the findings name it (the release's DLA does not take Q/DQ
    networks), strip the Q/DQ nodes once, before the per-layer rounds. It changes the numbers (by the quantization
    steps), so it runs when --only names it or with --allow-approx."""
    from .recipes import qdq
    if (excluded and qdq.NAME in excluded) or (allowed is not None and qdq.NAME not in allowed):
        return None, None
    if not (allow_approx or allowed is not None):
        return None, None
    if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return None, None
    first = check(model, db, target=target, input_shapes=shapes)
    if not any(f.fix == qdq.NAME for v in first.gpu_layers for f in v.findings):
        return None, first
    return qdq.strip(model), first


def _qdq_proof(original: onnx.ModelProto, model: onnx.ModelProto, stripped: Any, requant: Any,
               shapes: Mapping[str, tuple] | None, inputs: str | None, source: str) -> Any:
    """qdq-to-calibration's own proof (docs/qdq.md). It rests on two checks: the float model with its recorded
    quantizers put back computes exactly what the Q/DQ model computes, and at every quantized tensor the float
    layer is within half a quantization step of the Q/DQ value (rounding). The float model against the Q/DQ model
    at the outputs (the quantization error people will see) is shown beside them."""
    from .prove import OutputError, Proof, _inputs, prove, run
    from .recipes import qdq
    requant_model, probes = requant
    feeds = qdq.proof_inputs(original, stripped, shapes) if inputs is None else None
    values = run(requant_model, feeds if feeds is not None else _inputs(original, shapes, 0, inputs),
                 f"{source} (re-quantized)", inputs)
    exact = prove(original, requant_model, input_shapes=shapes, inputs=inputs, rtol=0.0, atol=0.0,
                  source=source, feeds=feeds)
    steps, saturated = qdq.rounding_error(values, stripped, probes)
    tol = qdq.tolerance(stripped)
    shown = prove(original, model, input_shapes=shapes, inputs=inputs, rtol=0.0, atol=tol, source=source,
                  feeds=feeds)
    outs = [replace(o, name=f"{o.name} (float model + its recorded quantizers: exact)") for o in exact.outputs]
    outs.append(OutputError(f"{len(probes)} quantized tensor(s): float layer, clamped to the pair's range, vs Q/DQ "
                            f"value, in quantization steps (at most 0.5; {saturated} element(s) saturated)",
                            steps, steps, steps <= 0.5 + 1e-3))
    outs += [replace(o, name=f"{o.name} (float model vs Q/DQ model, shown; {tol:.3g} = half the output step per "
                             f"quantized tensor)", gate=False) for o in shown.outputs]
    return Proof(outs, 0.0, 0.0, exact.inputs)


def _qdq_change(stripped: Any) -> Change:
    from .recipes import qdq
    return Change(qdq.NAME, "<model>", qdq.describe(stripped), exact=False, removed_nodes=list(stripped.removed),
                  added_nodes=list(stripped.relus), cures=["QDQ-EXPLICIT"])


def _pin_inputs(model: onnx.ModelProto, shapes: Mapping[str, tuple]) -> None:
    """The rewrites were worked out for these input shapes (pool windows, resize scales, border corrections), so
    the written model says so: its dynamic inputs become static."""
    for inp in model.graph.input:
        if inp.name in shapes and inp.type.HasField("tensor_type"):
            dims = inp.type.tensor_type.shape.dim
            for d, v in zip(dims, shapes[inp.name]):
                d.Clear()
                d.dim_value = int(v)
    # symbolic or placeholder (-1) dims elsewhere would now contradict shape inference: leave them to it
    for vi in list(model.graph.output) + list(model.graph.value_info):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            for d in vi.type.tensor_type.shape.dim:
                if d.HasField("dim_param") or (d.HasField("dim_value") and d.dim_value <= 0):
                    d.Clear()


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
        problem = _checker_problem(model)
        # a defect the input already has (e.g. an output without a shape) is the user's, not the rewrite's
        if problem is not None and _checker_problem(str(src)) is None:
            raise DlarulesError(out, f"the rewritten model fails onnx.checker ({problem}); nothing written")
    extra = {suffix: artifact_path(out, suffix) for suffix in result.artifacts}
    for p in extra.values():
        if p.exists() and not force:
            raise DlarulesError(p, "already exists; pass --force to replace it")
    save_model_atomic(model, out, external=big, inputs=[] if force else [src])
    from .atomic import write_text_atomic
    for suffix, p in extra.items():
        write_text_atomic(p, result.artifacts[suffix])
    if big and (problem := _checker_problem(str(out))) is not None and _checker_problem(str(src)) is None:
        raise DlarulesError(out, f"written, but it fails onnx.checker ({problem})")
    return out


def artifact_path(model_out: str | os.PathLike[str], suffix: str) -> Path:
    """A file written beside the output model: model.dla.onnx -> model.dla<suffix>."""
    p = Path(model_out)
    return p.with_name((p.stem if p.suffix == ".onnx" else p.name) + suffix)


def _checker_problem(model: onnx.ModelProto | str) -> str | None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        return first_line(exc)
    return None


def _has_external(src: Path) -> bool:
    try:
        m = onnx.load(str(src), load_external_data=False)
    except Exception:
        return False
    return any(i.data_location == onnx.TensorProto.EXTERNAL for i in m.graph.initializer)
