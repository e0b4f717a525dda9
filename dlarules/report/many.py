"""Text for a check of several models: one line per model, a summary table, and the rules that fire across them.
(One model keeps the full report of text.py.)"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Context, display_path, worst_exit

if TYPE_CHECKING:
    from ..core import CheckItem, Report

MAX_RULES = 20


def verdict(item: "CheckItem") -> str:
    """A model's verdict in a few words (the same words every format uses)."""
    if item.report is None:
        return "not checked"
    if item.gates:
        return "gate failed"
    if item.report.exit_code == 0:
        return "all on DLA" if not item.report.gpu_layers else "GPU fallbacks accepted"
    return "GPU fallbacks" + (" (gates pass)" if item.gates is not None else "")


def problem(item: "CheckItem") -> str:
    """The error of a model not checked, without its leading path when it names the model (the line shows it)."""
    err = item.error or "not checked"
    return err[len(item.model) + 2:] if err.startswith(item.model + ": ") else err


def model_line(item: "CheckItem", ctx: Context) -> str:
    name = display_path(item.model, ctx.cwd)
    if item.report is None:
        return f"{name}: error: {problem(item)}"
    s = item.report.summary
    cov = item.report.coverage
    line = (f"{name}: {s['layers_on_dla']} layers on DLA, {s['layers_on_gpu']} on GPU, {s['dla_subgraphs']} DLA "
            f"subgraph(s), {cov['layers_pct']:.1f}% of layers on DLA: {verdict(item)}")
    return line + "".join(f"; gate failed: {g}" for g in item.gates or [])


def rules_across(items: list["CheckItem"]) -> list[tuple[str, int, int, list[str]]]:
    """(rule, models it fires in, layers, fix recipes), most layers first."""
    acc: dict[str, dict[str, Any]] = {}
    for it in items:
        if it.report is None:
            continue
        for rule, hits in it.report.findings_by_rule().items():
            a = acc.setdefault(rule, {"models": 0, "layers": 0, "fix": set()})
            a["models"] += 1
            a["layers"] += len(hits)
            a["fix"].update(f.fix for _, f in hits if f.fix)
    rows = [(r, a["models"], a["layers"], sorted(a["fix"])) for r, a in acc.items()]
    return sorted(rows, key=lambda r: (-r[2], r[0]))


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def target_line(items: list["CheckItem"]) -> str:
    r = next((i.report for i in items if i.report is not None), None)
    if r is None:
        return "target: -"
    t = r.target
    return f"target: {t.hardware_text} / TensorRT {t.trt} / {t.platform} / {t.mode_name}  (rules {r.db_version})"


def render_text(items: list["CheckItem"], ctx: Context) -> str:
    lines = [f"dlarules: {len(items)} model(s)", target_line(items), ""]
    lines += [model_line(i, ctx) for i in items]
    lines.append("")
    rows = [["model", "exit", "DLA", "GPU", "subgraphs", "coverage", "verdict"]]
    for i in items:
        r: Report | None = i.report
        if r is None:
            rows.append([display_path(i.model, ctx.cwd), "2", "-", "-", "-", "-", verdict(i)])
            continue
        s = r.summary
        rows.append([display_path(i.model, ctx.cwd), str(i.exit_code), str(s["layers_on_dla"]),
                     str(s["layers_on_gpu"]), str(s["dla_subgraphs"]), f"{r.coverage['layers_pct']:.1f}%", verdict(i)])
    lines.append("summary:")
    lines += _table(rows)
    across = rules_across(items)
    if across:
        lines.append("")
        lines.append(f"rules that send layers to the GPU ({len(across)}):")
        shown = across if ctx.show_all else across[:MAX_RULES]
        lines += _table([["rule", "models", "layers", "fix"]] +
                        [[r, str(m), str(n), ", ".join(f) or "-"] for r, m, n, f in shown])
        if len(across) > len(shown):
            lines.append(f"  ... and {len(across) - len(shown)} more (--all lists them)")
    unused = [(i, ig) for i in items if i.report is not None for ig in i.report.ignores or [] if not ig["used"]]
    if unused:
        lines.append("")
        lines += [f"unused ignore: {ig['source']}: {ig['rule']} in {display_path(i.model, ctx.cwd)}" for i, ig in unused]
    counts = {c: sum(1 for i in items if i.exit_code == c) for c in (0, 1, 2)}
    lines.append("")
    lines.append(f"{counts[0]} model(s) all on DLA (or passing the gates), {counts[1]} with GPU fallbacks or failed gates, "
                 f"{counts[2]} not checked: exit {worst_exit(items)} (the worst; check one model for its full report)")
    return "\n".join(lines) + "\n"
