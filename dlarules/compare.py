"""A prediction next to a real TensorRT build log: which GPU layers and DLA subgraphs agree, and why not.

Log names are resolved to predicted layers only through what can be shown: the layer's own name, each part of a
fused name ("A + B"), the builder's and parser's derived names (`reshape_after_X`, `copied_squeeze_after_X`,
`X_clone_N`) through X, ONNX node names, and the ONNX tensor names TensorRT gives constants and folded results
(`/m/Constant_5_output_0`, `/m/Gather_output_0`) through the node that makes the tensor. TensorRT's own
`(Unnamed Layer* N) [Type]` layers are matched only when the match is provable: fused with a named layer it is
next to, or the one predicted layer of that type between the named layers the log lists before and after it;
never by type and order alone. A name that resolves to nothing is counted as unmatched, never dropped.

Every disagreement gets a class: missing rule (the log runs a layer on the GPU that no rule sends there), rule
too strict (predicted on the GPU, the log runs it on DLA), lowering differs (the log's layer is of another type,
or dlarules makes no layer of that node), name not matched, loadable limit.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .core import Report
from .checker import LayerVerdict
from .trtlog import BuildLog, ObservedLayer, split_fused

_UNNAMED = re.compile(r"^\(Unnamed Layer\* (\d+)\) \[([^\]]+)\]")
_BUILDER_PREFIX = re.compile(r"^(reshape_after_|copied_squeeze_after_|unsqueeze_node_after_|squeeze_after_|"
                             r"reshape_before_)(.+)$")
_CLONE = re.compile(r"^(.+)_clone_\d+$")

# Disagreement classes, in the order reports list them.
CLASSES = ("missing-rule", "rule-too-strict", "lowering-differs", "name-not-matched", "loadable-limit")


@dataclass
class GpuRow:
    log: str                       # "KIND: name" as the log prints it
    predicted: list[str]           # predicted layers it maps to ("KIND: name [DLA:k|GPU]")
    status: str                    # agreed | seen-not-predicted | no-layer-predicted | unmatched
    rules: list[str] = field(default_factory=list)
    note: str = ""
    disagreement: str | None = None   # one of CLASSES, None when agreed
    matched_by: str = ""           # how the log name was resolved (name, fused-part, node, tensor, ...)

    def to_dict(self) -> dict[str, Any]:
        return {"log": self.log, "predicted": self.predicted, "status": self.status, "rules": self.rules,
                "note": self.note, "disagreement": self.disagreement, "matched_by": self.matched_by}


@dataclass
class ExtraRow:
    predicted: str
    rules: list[str]

    @property
    def disagreement(self) -> str:
        return "loadable-limit" if self.rules == ["loadable limit"] else "rule-too-strict"

    def to_dict(self) -> dict[str, Any]:
        return {"predicted": self.predicted, "status": "predicted-not-seen", "rules": self.rules,
                "disagreement": self.disagreement}


@dataclass
class SubgraphRow:
    log: str
    predicted: str
    status: str                    # agreed | first-only | last-only | different | unmatched

    def to_dict(self) -> dict[str, Any]:
        return {"log": self.log, "predicted": self.predicted, "status": self.status}


@dataclass
class Comparison:
    report: Report
    log: BuildLog
    gpu_rows: list[GpuRow]
    extra_rows: list[ExtraRow]
    subgraph_rows: list[SubgraphRow]
    predicted_subgraphs: int
    observed_subgraphs: int | None     # None: the log does not list the DLA subgraphs
    layer_agreement: float | None
    precision: float | None
    recall: float | None               # None: no log GPU layer could be matched
    unmatched_names: list[str]
    # "placement": the log lists the GPU layers (and maybe the subgraphs). "subgraphs": it lists the DLA
    # subgraphs only. "warnings": it only holds fallback warnings (a partial log): only the layers it names can
    # be checked, so neither precision nor subgraphs are known.
    mode: str = "placement"

    @property
    def matched_rows(self) -> list[GpuRow]:
        return [r for r in self.gpu_rows if r.status != "unmatched"]

    @property
    def disagreements(self) -> dict[str, int]:
        out = {c: 0 for c in CLASSES}
        for r in self.gpu_rows:
            if r.disagreement:
                out[r.disagreement] += 1
        for e in self.extra_rows:
            out[e.disagreement] += 1
        return out

    @property
    def agreed(self) -> bool:
        rows_ok = all(r.status == "agreed" for r in self.gpu_rows)
        if self.mode == "warnings":
            return rows_ok
        subgraphs_ok = self.observed_subgraphs is None or (
            all(r.status == "agreed" for r in self.subgraph_rows) and self.predicted_subgraphs == self.observed_subgraphs)
        return rows_ok and not self.extra_rows and subgraphs_ok

    @staticmethod
    def _pct(x: float | None) -> float | None:
        return None if x is None else round(100 * x, 2)

    def denominators(self) -> dict[str, str]:
        """What each figure is a share of, in words: a figure without its denominator misleads."""
        m, n = len(self.matched_rows), len(self.gpu_rows)
        out = {"gpu_recall": f"log GPU layers matched to the model: {m} of {n}"
                             + (f" ({n - m} unmatched)" if n - m else "")}
        if self.precision is not None:
            out["gpu_precision"] = f"predicted GPU layers: {len(self.report.placement.gpu_layers)}"
        if self.layer_agreement is not None:
            out["layer_agreement"] = f"predicted layers: {len(self.report.layers)}"
        return out

    def to_dict(self) -> dict[str, Any]:
        t = self.report.target
        sub_known = self.observed_subgraphs is not None
        return {
            "model": self.report.model, "log": self.log.source, "log_versions": self.log.versions,
            "log_forms": self.log.forms,
            "target": {"hardware": t.hardware, "tensorrt": t.trt, "platform": t.platform, "precision": t.mode_name},
            "mode": self.mode,
            "summary": {
                "layer_agreement_pct": self._pct(self.layer_agreement),
                "gpu_precision_pct": self._pct(self.precision), "gpu_recall_pct": self._pct(self.recall),
                "denominators": self.denominators(),
                "gpu_layers_log": len(self.gpu_rows),
                "gpu_layers_matched": len(self.matched_rows),
                "gpu_layers_agreed": sum(1 for r in self.gpu_rows if r.status == "agreed"),
                "gpu_layers_predicted": len(self.report.placement.gpu_layers),
                "dla_subgraphs_predicted": self.predicted_subgraphs,
                "dla_subgraphs_log": self.observed_subgraphs,
                "dla_subgraphs_agreed": sum(1 for r in self.subgraph_rows if r.status == "agreed") if sub_known else None,
                "disagreements": self.disagreements,
                "unmatched_log_names": self.unmatched_names, "agreed": self.agreed,
            },
            "gpu_layers": [r.to_dict() for r in self.gpu_rows],
            "predicted_not_seen": [r.to_dict() for r in self.extra_rows],
            "dla_subgraphs": [r.to_dict() for r in self.subgraph_rows],
            "log_warnings": [w.to_dict() for w in self.log.warnings],
        }


@dataclass
class _Match:
    layers: list[LayerVerdict]
    how: str = ""
    node: str = ""          # the ONNX node the name resolved to, also when it makes no predicted layer


class _Matcher:
    """Log layer names -> predicted layer verdicts, through provable links only."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.by_name: dict[str, list[LayerVerdict]] = {}
        self.by_node: dict[str, list[LayerVerdict]] = {}
        self.unnamed: dict[str, list[LayerVerdict]] = {}
        self.used_unnamed: set[int] = set()
        lg = report.layer_graph
        self.layers = {x.index: x for x in lg.layers} if lg else {}
        self.verdicts = {v.index: v for v in report.layers}
        self.index = lg.index if lg else None
        graph = lg.graph if lg else None
        self.nodes: set[str] = {n.name for n in graph.nodes} if graph else set()
        self.tensor_node: dict[str, str] = {o: n.name for n in graph.nodes for o in n.outputs if o} if graph else {}
        self.folded: set[str] = {graph.nodes[i].name for i in graph.folded} if graph else set()
        for v in report.layers:
            layer = self.layers.get(v.index)
            names = [v.name] + (list(layer.parts) if layer is not None else [])
            for n in names:
                if not _UNNAMED.match(n):
                    self.by_name.setdefault(n, []).append(v)
            for n in v.nodes:
                self.by_node.setdefault(n, []).append(v)
            if layer is not None:
                for part in (layer.parts or (layer.display_name,)):
                    m = _UNNAMED.match(part)
                    if m:
                        self.unnamed.setdefault(m.group(2).lower(), []).append(v)

    def part(self, name: str, kind: str = "") -> _Match:
        if name in self.by_name:
            return _Match(self.by_name[name], "name")
        m = _BUILDER_PREFIX.match(name)
        if m:
            base = self.part(m.group(2))
            nodes = {n for v in base.layers for n in v.nodes}
            cands = [v for n in nodes for v in self.by_node.get(n, []) if v.origin == "builder"
                     and (not kind or v.kind == kind)]
            if not cands and not base.layers:
                # Named after a layer the builder created itself (e.g. 8.4's "copied_squeeze_after_(Unnamed
                # Layer* 20) [ElementWise]"): the one builder layer with that prefix and kind.
                cands = [v for v in self.report.layers if v.origin == "builder" and v.name.startswith(m.group(1))
                         and (not kind or v.kind == kind) and v.index not in self.used_unnamed]
                cands = cands if len(cands) == 1 else []
                self.used_unnamed.update(v.index for v in cands)
            found = cands or [v for v in base.layers if not kind or v.kind == kind]
            return _Match(found, "builder-name", base.node) if found or base.node else _Match([])
        m = _CLONE.match(name)
        if m and (m.group(1) in self.by_name or m.group(1) in self.nodes):
            got = self.part(m.group(1), kind)
            return _Match(got.layers, "clone", got.node)
        if name in self.nodes:
            cands = self.by_node.get(name, [])
            return _Match(([v for v in cands if v.kind == kind] or cands) if kind else cands, "node", name)
        node = self.tensor_node.get(name)
        if node is not None:
            # TensorRT names a constant (or a result it folded) after the ONNX tensor: the node that makes it
            cands = self.by_node.get(node, [])
            return _Match(([v for v in cands if v.kind == kind] or cands) if kind else cands, "tensor", node)
        return _Match([])

    def _free(self, kind_title: str) -> list[LayerVerdict]:
        return [v for v in self.unnamed.get(kind_title.lower(), []) if v.index not in self.used_unnamed]

    def _adjacent(self, v: LayerVerdict, others: list[LayerVerdict]) -> bool:
        layer = self.layers.get(v.index)
        if layer is None or self.index is None:
            return False
        near = {x.index for x in self.index.consumers_of(layer)}
        near |= {p.index for k in range(len(layer.inputs)) if (p := self.index.producer_of(layer, k)) is not None}
        return any(o.index in near for o in others)

    def unnamed_fused(self, name: str, named: list[LayerVerdict]) -> list[LayerVerdict]:
        """An unnamed part fused with named ones: the one free layer of its type next to them."""
        m = _UNNAMED.match(name)
        if not m or not named:
            return []
        cands = [v for v in self._free(m.group(2)) if self._adjacent(v, named)]
        if len(cands) != 1:
            return []
        self.used_unnamed.add(cands[0].index)
        return cands

    def unnamed_between(self, name: str, before: int | None, after: int | None,
                        neighbors: list[LayerVerdict]) -> list[LayerVerdict]:
        """A standalone unnamed layer: the one free layer of its type between the named layers the log lists
        before and after it (TensorRT and dlarules both number layers in network order), or the one next to a
        neighbour when the log gives only one side."""
        m = _UNNAMED.match(name)
        if not m:
            return []
        free = self._free(m.group(2))
        if before is not None and after is not None:
            cands = [v for v in free if before < v.index < after]
        else:
            cands = [v for v in free if self._adjacent(v, neighbors)]
        if len(cands) != 1:
            return []
        self.used_unnamed.add(cands[0].index)
        return cands

    def entry(self, name: str, kind: str = "") -> _Match:
        """A whole log entry ('A + B'), named parts only; unnamed parts fused with named ones are resolved too."""
        parts = split_fused(name)
        found: list[LayerVerdict] = []
        hows, node = [], ""
        for p in parts:
            if _UNNAMED.match(p):
                continue
            got = self.part(p, kind)
            node = node or got.node
            if got.how:
                hows.append("fused-part" if len(parts) > 1 else got.how)
            found += [v for v in got.layers if v not in found]
        for p in parts:
            if _UNNAMED.match(p) and found and not any(_UNNAMED.match(x) for v in found for x in self._parts(v)):
                found += [v for v in self.unnamed_fused(p, found) if v not in found]
        return _Match(found, hows[0] if hows else "", node)

    def _parts(self, v: LayerVerdict) -> tuple[str, ...]:
        layer = self.layers.get(v.index)
        return layer.parts if layer is not None and layer.parts else (v.name,)


def _resolve_all(match: _Matcher, entries: list[ObservedLayer]) -> list[_Match]:
    """Resolve named entries first, then standalone unnamed ones by their position among the named."""
    out = [match.entry(e.name, e.kind) for e in entries]
    for k, (e, got) in enumerate(zip(entries, out)):
        parts = split_fused(e.name)
        if got.layers or got.node or not all(_UNNAMED.match(p) for p in parts):
            continue
        prev = next((out[j] for j in range(k - 1, -1, -1) if out[j].layers), None)
        nxt = next((out[j] for j in range(k + 1, len(out)) if out[j].layers), None)
        before = max(v.index for v in prev.layers) if prev else None
        after = min(v.index for v in nxt.layers) if nxt else None
        neighbors = (prev.layers if prev else []) + (nxt.layers if nxt else [])
        found: list[LayerVerdict] = []
        for p in parts:
            found += match.unnamed_between(p, before, after, neighbors)
        if found:
            out[k] = _Match(found, "unnamed-position")
    return out


def compare(report: Report, log: BuildLog) -> Comparison:
    match = _Matcher(report)
    placed = report.placement.device
    by_index = {v.index: v for v in report.layers}
    observed_gpu: set[int] = set()
    rows: list[GpuRow] = []
    unmatched: list[str] = []
    warn_reasons: dict[str, list[str]] = {}
    for w in log.warnings:
        if w.layer:
            warn_reasons.setdefault(w.layer, []).append(w.reason)
    mode = "placement" if log.has_gpu_list else "subgraphs" if log.has_dla_list else "warnings"
    entries = log.gpu_layers if log.has_gpu_list else log.switched_layers
    for g, got in zip(entries, _resolve_all(match, entries)):
        label = f"{g.kind}: {g.name}" if g.kind else g.name
        vs = got.layers
        if not vs and got.node:
            why = ("dlarules folds it as a build-time constant; TensorRT warns about such layers before its own "
                   "constant folding, and its final placement list no longer shows them"
                   if got.node in match.folded else "dlarules takes it as a no-op")
            rows.append(GpuRow(label, [], "no-layer-predicted", [],
                               f"ONNX node {got.node} makes no layer in the prediction: {why}",
                               "lowering-differs", got.how))
            continue
        if not vs:
            unmatched.append(g.name)
            rows.append(GpuRow(label, [], "unmatched", [], "no layer or node of this name in the model "
                               "(a different export, or an unnamed layer that cannot be proven)",
                               "name-not-matched"))
            continue
        observed_gpu.update(v.index for v in vs)
        preds = [f"{v.kind}: {v.name} [{placed.get(v.index, 'GPU')}]" for v in vs]
        gpu_pred = [v for v in vs if placed.get(v.index, "GPU") == "GPU"]
        rules = sorted({f.rule for v in vs for f in v.findings})
        if gpu_pred:
            rows.append(GpuRow(label, preds, "agreed", rules, matched_by=got.how))
            continue
        reasons = [r for p in split_fused(g.name) for r in warn_reasons.get(p, [])] + warn_reasons.get(g.name, [])
        said = f" The log says: {'; '.join(dict.fromkeys(reasons))}" if reasons else ""
        kinds = {v.kind for v in vs}
        if g.kind and g.kind not in kinds:
            rows.append(GpuRow(label, preds, "seen-not-predicted", rules,
                               f"the log's layer is a {g.kind}, dlarules lowers this node to "
                               f"{'/'.join(sorted(kinds))}: the lowering differs.{said}", "lowering-differs", got.how))
        else:
            rows.append(GpuRow(label, preds, "seen-not-predicted", rules, "no rule fires: a missing rule?" + said,
                               "missing-rule", got.how))
    pred_gpu = set(report.placement.gpu_layers)
    tp = len(pred_gpu & observed_gpu)
    judged = [r for r in rows if r.status != "unmatched"]
    recall = sum(1 for r in judged if r.status == "agreed") / len(judged) if judged else None
    live = [s for s in report.placement.subgraphs if not s.moved_to_gpu]
    sub_rows = _subgraphs(report, log, match) if log.has_dla_list else []
    observed_sub = len(log.dla_subgraphs) if log.has_dla_list else None
    if mode != "placement":
        # a partial log says nothing about the layers it does not list: no "predicted, not seen" rows
        return Comparison(report, log, rows, [], sub_rows, len(live), observed_sub, None, None, recall, unmatched,
                          mode)
    extra = [ExtraRow(f"{by_index[i].kind}: {by_index[i].name}",
                      [f.rule for f in by_index[i].findings] or ["loadable limit"])
             for i in report.placement.gpu_layers if i not in observed_gpu]
    # Layer-level agreement: a layer the log does not list on the GPU ran on DLA.
    agree = sum(1 for v in report.layers
                if (placed.get(v.index, "GPU") == "GPU") == (v.index in observed_gpu))
    n = len(report.layers)
    precision = tp / len(pred_gpu) if pred_gpu else 1.0
    return Comparison(report, log, rows, extra, sub_rows, len(live), observed_sub,
                      agree / n if n else 1.0, precision, recall, unmatched)


def _subgraphs(report: Report, log: BuildLog, match: _Matcher) -> list[SubgraphRow]:
    placed = report.placement.device
    live = {s.index: s for s in report.placement.subgraphs if not s.moved_to_gpu}
    rows = []
    for sg in log.dla_subgraphs:
        first = match.entry(sg.first).layers
        last = match.entry(sg.last).layers
        if not first and not last:
            rows.append(SubgraphRow(f"ForeignNode[{sg.name}]", "", "unmatched"))
            continue

        def where(vs: list[LayerVerdict]) -> set[int]:
            return {int(placed[v.index].split(":")[1]) for v in vs if placed.get(v.index, "GPU").startswith("DLA:")}

        ks = where(first) | where(last)
        if not ks:
            rows.append(SubgraphRow(f"ForeignNode[{sg.name}]", "", "different"))
            continue
        k = min(ks, key=lambda i: (i not in where(first), i not in where(last), i))
        pred = live[k]
        first_ok = any(v.index == pred.layers[0] for v in first)
        last_ok = any(v.index == pred.layers[-1] for v in last)
        status = ("agreed" if first_ok and last_ok else "first-only" if first_ok else
                  "last-only" if last_ok else "different")
        rows.append(SubgraphRow(f"ForeignNode[{sg.name}]", pred.name, status))
    return rows


def _fmt_pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}%"


def render_text(c: Comparison) -> str:
    d = c.to_dict()
    s = d["summary"]
    t = c.report.target
    out = [f"dlarules compare: {c.report.model}", f"log: {c.log.source}" +
           (f" ({', '.join(f'{k} {v}' for k, v in c.log.versions.items())})" if c.log.versions else ""),
           f"target: {t.hardware_text} / TensorRT {t.trt} / {t.platform} / {t.mode_name}", ""]
    partial = c.mode != "placement"
    if c.mode == "warnings":
        out.append(f"the log has no placement list, only fallback warnings: checking the {len(c.gpu_rows)} layer(s) "
                   "they move to the GPU (a partial log says nothing about the other layers or the DLA subgraphs)")
    elif c.mode == "subgraphs":
        out.append("the log lists the DLA subgraphs but not the GPU layers: checking the subgraphs, and the layers "
                   "its warnings move to the GPU")
    if partial:
        out.append(f"GPU layers named by the warnings: {s['gpu_layers_log']} ({s['gpu_layers_matched']} matched to the "
                   f"model), predicted on GPU among them: {s['gpu_layers_agreed']} (dlarules predicts "
                   f"{s['gpu_layers_predicted']} GPU layer(s) in all)")
    else:
        out.append(f"GPU layers in the log: {s['gpu_layers_log']} ({s['gpu_layers_matched']} matched to the model), "
                   f"predicted on GPU: {s['gpu_layers_predicted']}, agreed: {s['gpu_layers_agreed']}")
    marks = {"agreed": "=", "seen-not-predicted": "!", "no-layer-predicted": "!"}
    for r in c.gpu_rows:
        if r.status == "unmatched":   # listed once, below, with the other names the model does not have
            continue
        out.append(f"  {marks[r.status]} {r.log}")
        out.append(f"      {r.status}" + (f" [{r.disagreement}]" if r.disagreement else "")
                   + (f"; predicted {', '.join(r.predicted)}" if r.predicted else "")
                   + (f"; rules: {', '.join(r.rules)}" if r.rules else ""))
        if r.note:
            out.append(f"      {r.note}")
    for r in c.extra_rows:
        out.append(f"  + {r.predicted}")
        out.append(f"      predicted-not-seen [{r.disagreement}] (the log runs it on DLA); rules: {', '.join(r.rules)}")
    if c.observed_subgraphs is not None:
        out.append("")
        out.append(f"DLA subgraphs: predicted {c.predicted_subgraphs}, log {c.observed_subgraphs}, "
                   f"agreed {s['dla_subgraphs_agreed']}")
        for r in c.subgraph_rows:
            out.append(f"  {'=' if r.status == 'agreed' else '!'} log {r.log}")
            out.append(f"      {r.status}" + (f"; predicted {r.predicted}" if r.predicted else ""))
    out.append("")
    if c.unmatched_names:
        out.append(f"? log names not matched to the model ({len(c.unmatched_names)}; a different export, or unnamed "
                   f"layers that cannot be proven): {', '.join(c.unmatched_names)}")
    dis = {k: v for k, v in c.disagreements.items() if v}
    if dis:
        out.append("disagreements: " + ", ".join(f"{k} {v}" for k, v in dis.items()))
    m, n = s["gpu_layers_matched"], s["gpu_layers_log"]
    over = f"over {m} of {n} log GPU layers matched" + (f"; {n - m} unmatched" if n - m else "")
    if c.mode == "warnings":
        out.append(f"agreement: recall {_fmt_pct(s['gpu_recall_pct'])} of the warned GPU fallbacks ({over}); precision "
                   "and subgraphs need the full placement list (trtexec --verbose)")
    elif c.mode == "subgraphs":
        out.append(f"agreement: recall {_fmt_pct(s['gpu_recall_pct'])} of the warned GPU fallbacks ({over}); subgraphs "
                   f"{c.predicted_subgraphs} predicted vs {c.observed_subgraphs} in the log; precision needs the GPU list")
    else:
        out.append(f"agreement: {_fmt_pct(s['layer_agreement_pct'])} of layers ({len(c.report.layers)}); GPU fallbacks: "
                   f"precision {_fmt_pct(s['gpu_precision_pct'])} of {s['gpu_layers_predicted']} predicted, recall "
                   f"{_fmt_pct(s['gpu_recall_pct'])} ({over}); subgraphs {c.predicted_subgraphs} predicted vs "
                   f"{c.observed_subgraphs} in the log")
    return "\n".join(out) + "\n"
