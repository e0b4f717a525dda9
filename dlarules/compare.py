"""A prediction next to a real TensorRT build log: which GPU layers and DLA subgraphs agree, and why not.

Log names are mapped back to the predicted layers: whole names, then each part of a fused name ("A + B"),
then the builder's prefixed names (`reshape_after_X`, `copied_squeeze_after_X`, ...) through X, then ONNX node
names, and last TensorRT's own `(Unnamed Layer* N) [Type]` layers by type and order. A name that matches nothing
in the model (a different export) is reported as unmatched, never dropped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .api import Report
from .checker import LayerVerdict
from .trtlog import BuildLog, ObservedLayer, split_fused

_UNNAMED = re.compile(r"^\(Unnamed Layer\* (\d+)\) \[([^\]]+)\]")
_BUILDER_PREFIX = re.compile(r"^(reshape_after_|copied_squeeze_after_|unsqueeze_node_after_|squeeze_after_|"
                             r"reshape_before_)(.+)$")
_KIND_OF_TITLE = {"shuffle": "SHUFFLE", "elementwise": "ELEMENTWISE", "constant": "CONSTANT",
                  "concatenation": "CONCATENATION", "slice": "SLICE", "convolution": "CONVOLUTION",
                  "deconvolution": "DECONVOLUTION", "softmax": "SOFTMAX", "activation": "ACTIVATION",
                  "pooling": "POOLING", "reduce": "REDUCE", "resize": "RESIZE", "unary": "UNARY",
                  "matrix multiply": "MATRIX_MULTIPLY", "fully connected": "FULLY_CONNECTED", "identity": "IDENTITY",
                  "shape": "SHAPE", "gather": "GATHER", "scale": "SCALE", "cast": "CAST"}


@dataclass
class GpuRow:
    log: str                       # "KIND: name" as the log prints it
    predicted: list[str]           # predicted layers it maps to ("KIND: name [DLA:k|GPU]")
    status: str                    # agreed | seen-not-predicted | unmatched
    rules: list[str] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"log": self.log, "predicted": self.predicted, "status": self.status, "rules": self.rules,
                "note": self.note}


@dataclass
class ExtraRow:
    predicted: str
    rules: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"predicted": self.predicted, "status": "predicted-not-seen", "rules": self.rules}


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
    observed_subgraphs: int
    layer_agreement: float | None
    precision: float | None
    recall: float
    unmatched_names: list[str]
    # "placement": the log lists every DLA subgraph and GPU layer. "warnings": it only holds fallback warnings
    # (a partial log): only the layers it names can be checked, so neither precision nor subgraphs are known.
    mode: str = "placement"

    @property
    def agreed(self) -> bool:
        if self.mode == "warnings":
            return all(r.status == "agreed" for r in self.gpu_rows)
        return (not self.extra_rows and all(r.status == "agreed" for r in self.gpu_rows)
                and all(r.status == "agreed" for r in self.subgraph_rows)
                and self.predicted_subgraphs == self.observed_subgraphs)

    @staticmethod
    def _pct(x: float | None) -> float | None:
        return None if x is None else round(100 * x, 2)

    def to_dict(self) -> dict[str, Any]:
        t = self.report.target
        return {
            "model": self.report.model, "log": self.log.source, "log_versions": self.log.versions,
            "target": {"hardware": t.hardware, "tensorrt": t.trt, "platform": t.platform, "precision": t.precision},
            "mode": self.mode,
            "summary": {
                "layer_agreement_pct": self._pct(self.layer_agreement),
                "gpu_precision_pct": self._pct(self.precision), "gpu_recall_pct": self._pct(self.recall),
                "gpu_layers_log": len(self.gpu_rows),
                "gpu_layers_agreed": sum(1 for r in self.gpu_rows if r.status == "agreed"),
                "gpu_layers_predicted": len(self.report.placement.gpu_layers),
                "dla_subgraphs_predicted": self.predicted_subgraphs,
                "dla_subgraphs_log": self.observed_subgraphs if self.mode == "placement" else None,
                "dla_subgraphs_agreed": sum(1 for r in self.subgraph_rows if r.status == "agreed"),
                "unmatched_log_names": self.unmatched_names, "agreed": self.agreed,
            },
            "gpu_layers": [r.to_dict() for r in self.gpu_rows],
            "predicted_not_seen": [r.to_dict() for r in self.extra_rows],
            "dla_subgraphs": [r.to_dict() for r in self.subgraph_rows],
            "log_warnings": [w.to_dict() for w in self.log.warnings],
        }


class _Matcher:
    """Log layer names -> predicted layer verdicts."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.by_name: dict[str, list[LayerVerdict]] = {}
        self.by_node: dict[str, list[LayerVerdict]] = {}
        self.unnamed: dict[str, list[LayerVerdict]] = {}
        lg = report.layer_graph
        layers = {x.index: x for x in lg.layers} if lg else {}
        for v in report.layers:
            layer = layers.get(v.index)
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
        self.used_unnamed: set[int] = set()

    def part(self, name: str, kind: str = "") -> list[LayerVerdict]:
        if name in self.by_name:
            return self.by_name[name]
        m = _BUILDER_PREFIX.match(name)
        if m:
            base = self.part(m.group(2))
            nodes = {n for v in base for n in v.nodes}
            cands = [v for n in nodes for v in self.by_node.get(n, []) if v.origin == "builder"
                     and (not kind or v.kind == kind)]
            if not cands and not base:
                # Named after a layer the builder created itself (e.g. 8.4's "copied_squeeze_after_(Unnamed
                # Layer* 20) [ElementWise]"): the builder layer with the same prefix and kind.
                cands = [v for v in self.report.layers if v.origin == "builder" and v.name.startswith(m.group(1))
                         and (not kind or v.kind == kind) and v.index not in self.used_unnamed]
                cands = cands[:1]
                self.used_unnamed.update(v.index for v in cands)
            return cands or [v for v in base if not kind or v.kind == kind]
        if name in self.by_node:
            cands = self.by_node[name]
            return [v for v in cands if v.kind == kind] or cands if kind else cands
        return []

    def unnamed_part(self, name: str) -> list[LayerVerdict]:
        m = _UNNAMED.match(name)
        if not m:
            return []
        pool = [v for v in self.unnamed.get(m.group(2).lower(), []) if v.index not in self.used_unnamed]
        if not pool:
            return []
        # TensorRT numbers layers in network order, as dlarules does; the closest unused index is the best guess.
        n = int(m.group(1))
        best = min(pool, key=lambda v: abs(v.index - n))
        self.used_unnamed.add(best.index)
        return [best]

    def layer(self, name: str, kind: str = "") -> list[LayerVerdict]:
        found: list[LayerVerdict] = []
        parts = split_fused(name)
        for p in parts:
            for v in self.part(p, kind):
                if v not in found:
                    found.append(v)
        if not found:
            for p in parts:
                found += [v for v in self.unnamed_part(p) if v not in found]
        return found


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
    warnings_only = not log.has_placement
    for g in (log.switched_layers if warnings_only else log.gpu_layers):
        label = f"{g.kind}: {g.name}" if g.kind else g.name
        vs = match.layer(g.name, g.kind)
        if not vs:
            unmatched.append(g.name)
            rows.append(GpuRow(label, [], "unmatched", [], "no layer of this name in the model (a different export?)"))
            continue
        observed_gpu.update(v.index for v in vs)
        preds = [f"{v.kind}: {v.name} [{placed.get(v.index, 'GPU')}]" for v in vs]
        gpu_pred = [v for v in vs if placed.get(v.index, "GPU") == "GPU"]
        rules = sorted({f.rule for v in vs for f in v.findings})
        if gpu_pred:
            rows.append(GpuRow(label, preds, "agreed", rules))
        else:
            reasons = [r for p in split_fused(g.name) for r in warn_reasons.get(p, [])] + warn_reasons.get(g.name, [])
            note = "no rule fires: a missing rule?" + (f" The log says: {'; '.join(dict.fromkeys(reasons))}"
                                                       if reasons else "")
            rows.append(GpuRow(label, preds, "seen-not-predicted", rules, note))
    pred_gpu = set(report.placement.gpu_layers)
    tp = len(pred_gpu & observed_gpu)
    recall = tp / len(observed_gpu) if observed_gpu else 1.0
    live = [s for s in report.placement.subgraphs if not s.moved_to_gpu]
    if warnings_only:
        # a partial log says nothing about the layers it does not warn about: no "predicted, not seen" rows
        return Comparison(report, log, rows, [], [], len(live), 0, None, None, recall, unmatched, "warnings")
    extra = [ExtraRow(f"{by_index[i].kind}: {by_index[i].name}",
                      [f.rule for f in by_index[i].findings] or ["loadable limit"])
             for i in report.placement.gpu_layers if i not in observed_gpu]
    # Layer-level agreement: a layer the log does not list on the GPU ran on DLA.
    agree = sum(1 for v in report.layers
                if (placed.get(v.index, "GPU") == "GPU") == (v.index in observed_gpu))
    n = len(report.layers)
    precision = tp / len(pred_gpu) if pred_gpu else 1.0
    return Comparison(report, log, rows, extra, _subgraphs(report, log, match), len(live), len(log.dla_subgraphs),
                      agree / n if n else 1.0, precision, recall, unmatched)


def _subgraphs(report: Report, log: BuildLog, match: _Matcher) -> list[SubgraphRow]:
    placed = report.placement.device
    live = {s.index: s for s in report.placement.subgraphs if not s.moved_to_gpu}
    rows = []
    for sg in log.dla_subgraphs:
        first = match.layer(sg.first)
        last = match.layer(sg.last)
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


def render_text(c: Comparison) -> str:
    d = c.to_dict()
    s = d["summary"]
    t = c.report.target
    out = [f"dlarules compare: {c.report.model}", f"log: {c.log.source}" +
           (f" ({', '.join(f'{k} {v}' for k, v in c.log.versions.items())})" if c.log.versions else ""),
           f"target: {t.hardware} / TensorRT {t.trt} / {t.platform} / {t.precision}", ""]
    warnings = c.mode == "warnings"
    if warnings:
        out.append(f"the log has no placement list, only fallback warnings: checking the {len(c.gpu_rows)} layer(s) "
                   "they move to the GPU (a partial log says nothing about the other layers or the DLA subgraphs)")
        out.append(f"GPU layers named by the warnings: {s['gpu_layers_log']}, predicted on GPU among them: "
                   f"{s['gpu_layers_agreed']} (dlarules predicts {s['gpu_layers_predicted']} GPU layer(s) in all)")
    else:
        out.append(f"GPU layers in the log: {s['gpu_layers_log']}, predicted on GPU: {s['gpu_layers_predicted']}, "
                   f"agreed: {s['gpu_layers_agreed']}")
    for r in c.gpu_rows:
        if r.status == "unmatched":   # listed once, below, with the other names the model does not have
            continue
        mark = {"agreed": "=", "seen-not-predicted": "!"}[r.status]
        out.append(f"  {mark} {r.log}")
        out.append(f"      {r.status}" + (f"; predicted {', '.join(r.predicted)}" if r.predicted else "")
                   + (f"; rules: {', '.join(r.rules)}" if r.rules else ""))
        if r.note:
            out.append(f"      {r.note}")
    if not warnings:
        for r in c.extra_rows:
            out.append(f"  + {r.predicted}")
            out.append(f"      predicted-not-seen (the log runs it on DLA); rules: {', '.join(r.rules)}")
        out.append("")
        out.append(f"DLA subgraphs: predicted {c.predicted_subgraphs}, log {c.observed_subgraphs}, "
                   f"agreed {s['dla_subgraphs_agreed']}")
        for r in c.subgraph_rows:
            out.append(f"  {'=' if r.status == 'agreed' else '!'} log {r.log}")
            out.append(f"      {r.status}" + (f"; predicted {r.predicted}" if r.predicted else ""))
    out.append("")
    if c.unmatched_names:
        out.append(f"? log names not in the model ({len(c.unmatched_names)}; a different export?): "
                   f"{', '.join(c.unmatched_names)}")
    if warnings:
        out.append(f"agreement: recall {s['gpu_recall_pct']:.1f}% of the warned GPU fallbacks; precision and "
                   "subgraphs need the full placement list (trtexec --verbose)")
    else:
        out.append(f"agreement: {s['layer_agreement_pct']:.1f}% of layers; GPU fallbacks: precision "
                   f"{s['gpu_precision_pct']:.1f}%, recall {s['gpu_recall_pct']:.1f}%; subgraphs "
                   f"{c.predicted_subgraphs} predicted vs {c.observed_subgraphs} in the log")
    return "\n".join(out) + "\n"
