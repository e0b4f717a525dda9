"""The check core: Report, NodeVerdict and check/check_graph (model -> lowering -> checker -> partition).

Features (fix, compare, report formats, trt) import this module; the public facade is `dlarules.api`, which
re-exports these names (the layering is cli -> api -> features -> core, tests/test_layering.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import onnx

from . import __version__
from .checker import Finding, LayerVerdict, evaluate
from .lowering import LayerGraph, lower
from .errors import DlarulesError, clip
from .model import Graph, check_text, load_graph
from .partition import Placement, predict
from .ruledb import RuleDB, RuleSet, Target

REPORT_SCHEMA_VERSION = "1"
PROTO_SOURCE = "<ModelProto>"   # what errors name for a model given as an onnx.ModelProto


@dataclass
class NodeVerdict:
    """One ONNX node: the layers it became and where they run."""

    index: int
    name: str
    op: str
    status: str                      # dla | gpu | mixed | folded | no-layer
    layers: list[int] = field(default_factory=list)

    def to_dict(self, layers: dict[int, LayerVerdict], placement: Placement) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "op": self.op, "status": self.status,
                "layers": [{**layers[i].to_dict(), "placed": placement.device.get(i, "GPU")} for i in self.layers]}


@dataclass
class Report:
    model: str
    target: Target
    db_version: str
    nodes: list[NodeVerdict]
    layers: list[LayerVerdict]
    placement: Placement
    layer_graph: LayerGraph | None = None
    # accepted fallbacks (accept.py, from the config's [[ignore]]): (layer index, rule ID) -> the reason; and the
    # ignores that applied to this model with their use counts (None: no ignore configured; the JSON stays as is)
    accepted: dict[tuple[int, str], str] = field(default_factory=dict)
    ignores: list[dict[str, Any]] | None = None

    def accepted_reason(self, index: int, rule: str) -> str | None:
        """The reason a (layer, rule) fallback is accepted, or None."""
        return self.accepted.get((index, rule))

    def layer_accepted(self, v: LayerVerdict) -> bool:
        """A GPU layer every reason of which is accepted (a layer moved by the loadable limit: DLA-LOADABLE-LIMIT)."""
        rules = [f.rule for f in v.findings] or ["DLA-LOADABLE-LIMIT"]
        return bool(self.accepted) and all((v.index, r) in self.accepted for r in rules)

    @property
    def gpu_layers(self) -> list[LayerVerdict]:
        by = {v.index: v for v in self.layers}
        return [by[i] for i in self.placement.gpu_layers]

    @property
    def fallbacks(self) -> list[LayerVerdict]:
        """Layers that break at least one rule (excluding whole subgraphs moved by the loadable limit)."""
        return [v for v in self.layers if not v.on_dla]

    def on_dla(self, index: int) -> bool:
        return self.placement.device.get(index, "GPU") != "GPU"

    @property
    def coverage(self) -> dict[str, float]:
        """Share of layers and of FLOPs placed on DLA (in %)."""
        from .flops import layer_flops
        layers = self.layer_graph.layers if self.layer_graph else []
        total = sum(layer_flops(x) for x in layers)
        on = sum(layer_flops(x) for x in layers if self.on_dla(x.index))
        n = len(self.layers)
        return {"layers_pct": round(100.0 * sum(1 for v in self.layers if self.on_dla(v.index)) / n, 2) if n else 100.0,
                "flops_pct": round(100.0 * on / total, 2) if total else 100.0,
                "flops_total": total, "flops_on_dla": on}

    @property
    def dla_only(self) -> dict[str, Any]:
        """Can the whole network run on DLA alone (cuDLA / kDLA_STANDALONE): one loadable, no GPU layer."""
        blockers = [{"layer": f"{v.kind}: {v.name}", "rules": [f.rule for f in v.findings]
                     or ["loadable limit: its subgraph moves to the GPU"]} for v in self.gpu_layers]
        live = [s for s in self.placement.subgraphs if not s.moved_to_gpu]
        ok = not blockers and len(live) == 1
        return {"feasible": ok, "blockers": blockers, "dla_subgraphs": len(live)}

    def gates(self, min_dla_coverage: float | None = None, max_dla_subgraphs: int | None = None,
              dla_only: bool = False) -> list[str]:
        """The CI gates this report fails (empty: all pass)."""
        failed = []
        cov = self.coverage
        if min_dla_coverage is not None and cov["layers_pct"] < min_dla_coverage:
            failed.append(f"DLA coverage {cov['layers_pct']:.1f}% of layers is below {min_dla_coverage:g}%")
        n = self.summary["dla_subgraphs"]
        if max_dla_subgraphs is not None and n > max_dla_subgraphs:
            failed.append(f"{n} DLA subgraphs exceed the maximum of {max_dla_subgraphs}")
        if dla_only and not self.dla_only["feasible"]:
            failed.append(f"not DLA-only: {len(self.dla_only['blockers'])} layer(s) on the GPU, "
                          f"{self.dla_only['dla_subgraphs']} DLA subgraph(s)")
        return failed

    @property
    def summary(self) -> dict[str, Any]:
        dla = sum(1 for v in self.layers if self.placement.device.get(v.index, "GPU") != "GPU")
        return {
            "nodes": len(self.nodes),
            "layers": len(self.layers),
            "layers_on_dla": dla,
            "layers_on_gpu": len(self.layers) - dla,
            "nodes_folded": sum(1 for n in self.nodes if n.status == "folded"),
            "nodes_without_layer": sum(1 for n in self.nodes if n.status == "no-layer"),
            "dla_subgraphs": sum(1 for s in self.placement.subgraphs if not s.moved_to_gpu),
            "transitions": self.placement.transitions,
            "loadable_limit_exceeded": self.placement.limit_exceeded,
            "fallbacks_by_rule": {rule: len(items) for rule, items in sorted(self.findings_by_rule().items())},
            "layers_by_precision": self.layers_by_precision,
            "layers_demoted": sum(1 for v in self.layers if v.demoted and self.on_dla(v.index)),
            **({"layers_accepted": self.layers_accepted} if self.ignores is not None else {}),
        }

    @property
    def layers_by_precision(self) -> dict[str, int]:
        """How many layers run on DLA in each precision (placed there, not moved by the loadable limit)."""
        out: dict[str, int] = {}
        for v in self.layers:
            if v.precision is not None and self.on_dla(v.index):
                out[v.precision] = out.get(v.precision, 0) + 1
        return dict(sorted(out.items()))

    @property
    def explicit_quantization(self) -> dict[str, Any] | None:
        """What happens to the model's Q/DQ nodes on this release, with the source (None: it has none)."""
        from .qdqinfo import summary
        return summary(self.layer_graph, self.target) if self.layer_graph is not None else None

    @property
    def exit_code(self) -> int:
        """0 when no layer falls back to the GPU, or every one that does is accepted (config [[ignore]])."""
        return 0 if all(self.layer_accepted(v) for v in self.gpu_layers) else 1

    @property
    def layers_accepted(self) -> int:
        return sum(1 for v in self.gpu_layers if self.layer_accepted(v))

    def findings_by_rule(self) -> dict[str, list[tuple[LayerVerdict, Finding]]]:
        out: dict[str, list[tuple[LayerVerdict, Finding]]] = {}
        for v in self.layers:
            for f in v.findings:
                out.setdefault(f.rule, []).append((v, f))
        return out

    def to_dict(self) -> dict[str, Any]:
        by = {v.index: v for v in self.layers}
        t = self.target
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "tool": {"name": "dlarules", "version": __version__, "db_version": self.db_version},
            "model": self.model,
            "target": target_dict(t),
            "summary": self.summary,
            "coverage": self.coverage,
            "dla_only": self.dla_only,
            **({"explicit_quantization": q} if (q := self.explicit_quantization) is not None else {}),
            "placement": self.placement.to_dict(by),
            "nodes": self._nodes_dict(by),
            **({"ignores": self.ignores} if self.ignores is not None else {}),
        }

    def _nodes_dict(self, by: dict[int, LayerVerdict]) -> list[dict[str, Any]]:
        nodes = [n.to_dict(by, self.placement) for n in self.nodes]
        if self.ignores is not None:   # with ignores configured, every finding says whether it is accepted
            for n in nodes:
                for layer in n["layers"]:
                    for f in layer["findings"]:
                        f["accepted"] = self.accepted_reason(layer["index"], f["rule"])
        return nodes


@dataclass
class CheckItem:
    """One model of a (many-model) check: its report and failed gates, or the one line saying why it could not be
    checked (a bad model among good ones does not stop the others)."""

    model: str                       # the path as given
    report: Report | None = None
    error: str | None = None         # DlarulesError.line() when the model could not be checked
    gates: list[str] | None = None   # the gates it fails (None: no gate asked for)
    seconds: float | None = None     # time the check took (JUnit's time)

    @property
    def exit_code(self) -> int:
        """2: not checked; with gates, 1 when one fails; else the report's 0/1."""
        if self.report is None:
            return 2
        if self.gates is not None:
            return 1 if self.gates else 0
        return self.report.exit_code

    def to_dict(self) -> dict[str, Any]:
        """The report's JSON (+ `gates` when gates were asked for), or {model, error, exit_code}."""
        if self.report is None:
            return {"model": self.model, "error": self.error, "exit_code": 2}
        data = self.report.to_dict()
        if self.gates is not None:
            data["gates"] = self.gates
        return data


def check_many(models: Iterable[str | os.PathLike[str]], db: RuleDB, target: Target, *,
               input_shapes: Mapping[str, tuple[int, ...]] | None = None, min_dla_coverage: float | None = None,
               max_dla_subgraphs: int | None = None, dla_only: bool = False) -> list[CheckItem]:
    """Check each model in turn for one target, in this process; gates apply per model (given any gate). A model
    that cannot be checked (DlarulesError) becomes an item with its one-line error and the others go on."""
    import time
    use_gates = min_dla_coverage is not None or max_dla_subgraphs is not None or dla_only
    out = []
    for m in models:
        start = time.perf_counter()
        try:
            report = check(m, db, target=target, input_shapes=input_shapes)
        except DlarulesError as exc:
            out.append(CheckItem(str(m), error=exc.line(), seconds=time.perf_counter() - start))
            continue
        gates = report.gates(min_dla_coverage, max_dla_subgraphs, dla_only) if use_gates else None
        out.append(CheckItem(str(m), report, gates=gates, seconds=time.perf_counter() - start))
    return out


def target_dict(t: Target) -> dict[str, Any]:
    """The report's `target`: `precision` is the build mode asked for (fp16, int8, int8+fp16, ...)."""
    m = t.mode
    return {"hardware": t.hardware, "tensorrt": t.trt, "release": t.release.version, "platform": t.platform,
            "precision": t.mode_name, "mode": {"name": t.mode_name, "precisions": list(t.chain) or "graph",
                                               "trtexec": list(m.trtexec) if m else []},
            "module": t.module.name if t.module else None, "dla_cores": t.dla_cores,
            "dla_core": t.dla_core}


def load_db(extra_dirs: Iterable[str | os.PathLike[str]] = (), *, base: str | os.PathLike[str] | None = None) -> RuleDB:
    """The packaged rule DB, with DLARULES_RULES and `extra_dirs` layered on top (they add or override by ID)."""
    return RuleDB.load(extra_dirs, base=base)


def check(model: str | os.PathLike[str] | onnx.ModelProto | Graph, db: RuleDB | None = None, *,
          hardware: str = "orin", trt: str | None = None, jetpack: str | None = None, platform: str | None = None,
          precision: str | None = None, input_shapes: Mapping[str, tuple[int, ...]] | None = None,
          target: Target | None = None, dla_core: int | None = None) -> Report:
    """Check a model (path, ModelProto or loaded Graph) against the rules for one target. `hardware` is a
    family (xavier, orin) or a module (agx-orin, orin-nx-8, ...); `precision` a build mode (fp16, int8,
    int8+fp16, best, strongly-typed)."""
    db = db or load_db()
    target = target or db.target(hardware, trt, jetpack=jetpack, platform=platform, precision=precision,
                                 dla_core=dla_core)
    ruleset = db.select(target)
    try:
        if isinstance(model, onnx.ModelProto):
            check_text(model, PROTO_SOURCE)
        graph = model if isinstance(model, Graph) else load_graph(model, input_shapes)
    except DlarulesError as exc:
        if exc.source is not None and exc.source != "<model>":
            raise
        # a ModelProto has no file name: say what was checked (the graph's name) rather than nothing
        name = model.graph.name if isinstance(model, onnx.ModelProto) else ""
        raise type(exc)(f"{PROTO_SOURCE[:-1]} {clip(repr(name), 40)}>" if name else PROTO_SOURCE,
                        exc.problem) from None
    return check_graph(graph, ruleset, db.version)


def check_graph(graph: Graph, ruleset: RuleSet, db_version: str) -> Report:
    """Lower, evaluate and partition a loaded graph. The cyclic GC stays as the host set it: its settings are
    process-wide, and bench/bench_gc.py measures what leaving it on costs (docs/architecture.md)."""
    return _check_graph(graph, ruleset, db_version)


def _check_graph(graph: Graph, ruleset: RuleSet, db_version: str) -> Report:
    target = ruleset.target
    lg = lower(graph, target.release.parser)
    verdicts = evaluate(lg, ruleset)
    mem = ruleset.subgraph_limits.get("internal_tensor_bytes")
    placement = predict(lg.layers, verdicts, target.release.loadable_limit, lg.index,
                        max_internal_bytes=int(mem["max"]) if mem else None,
                        same_batch="same_batch" in ruleset.subgraph_limits, network_outputs=graph.outputs)
    nodes = _node_verdicts(graph, lg, verdicts, placement)
    name = graph.path or (graph.model.graph.name if graph.model is not None else "<model>")
    return Report(name, target, db_version, nodes, verdicts, placement, lg)


def _node_verdicts(graph: Graph, lg: LayerGraph, verdicts: list[LayerVerdict], placement: Placement) -> list[NodeVerdict]:
    by_node: dict[str, list[int]] = {}
    for v in verdicts:
        for n in v.nodes:
            by_node.setdefault(n, []).append(v.index)
    out = []
    for node in graph.nodes:
        idx = by_node.get(node.name, [])
        if node.index in graph.folded:
            status = "folded"
        elif not idx:
            status = "no-layer"
        else:
            devs = {placement.device.get(i, "GPU") == "GPU" for i in idx}
            status = "mixed" if len(devs) > 1 else ("gpu" if True in devs else "dla")
        out.append(NodeVerdict(node.index, node.name, node.op, status, idx))
    return out
