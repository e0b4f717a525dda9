"""GitHub Actions workflow-command annotations (`::error file=...,title=...::message`), one per rule per model
(GitHub shows only the first 10 errors and 10 warnings of a step, so a layer each would drown the rest), a
notice with each model's summary, an error for a model that could not be checked or a gate that failed.
Level: error when the model fails the exit code, else warning. compare: one error per disagreement.

Escaping follows @actions/core (toolkit command.ts): in the message % CR LF become %25 %0D %0A; in the
properties also ':' and ',' (%3A, %2C)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Context, Format, display_path

if TYPE_CHECKING:
    from ..core import CheckItem

MAX_LAYERS = 5   # layer names quoted per annotation


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(level: str, file: str, title: str, message: str) -> str:
    return f"::{level} file={escape_property(file)},title={escape_property(title)}::{escape_data(message)}"


def render_check(items: list["CheckItem"], ctx: Context) -> str:
    out: list[str] = []
    for item in items:
        file = display_path(item.model, ctx.cwd)
        if item.report is None:
            out.append(command("error", file, "dlarules: not checked", item.error or "not checked"))
            continue
        r = item.report
        level = "error" if item.exit_code else "warning"
        for rule_id, hits in sorted(r.findings_by_rule().items(), key=lambda kv: (-len(kv[1]), kv[0])):
            f = hits[0][1]
            names = ", ".join(f"{v.kind}: {v.name}" for v, _ in hits[:MAX_LAYERS])
            more = f" and {len(hits) - MAX_LAYERS} more" if len(hits) > MAX_LAYERS else ""
            fixes = sorted({x.fix for _, x in hits if x.fix})
            reasons = [x for v, _ in hits if (x := r.accepted_reason(v.index, rule_id)) is not None]
            if len(reasons) == len(hits):   # every layer accepted (config [[ignore]]): not a failure, a notice
                out.append(command("notice", file, f"{rule_id} ({len(hits)} layer(s) on the GPU, accepted)",
                                   f"accepted: {'; '.join(sorted(set(reasons)))} [{names}{more}]"))
                continue
            out.append(command(level, file, f"{rule_id} ({len(hits)} layer(s) on the GPU"
                               + (f", {len(reasons)} accepted)" if reasons else ")"),
                               f"{f.message} [{names}{more}]" + (f"; fix: {', '.join(fixes)}" if fixes else "")
                               + f"; source: {f.source}"))
        moved = [v for v in r.gpu_layers if not v.findings]
        if moved:
            out.append(command(level, file, f"DLA loadable limit ({len(moved)} layer(s) on the GPU)",
                               f"{len(moved)} layer(s) run on the GPU: their DLA subgraphs are past the loadable "
                               f"limit of {r.placement.loadable_limit} per DLA core"))
        for g in item.gates or []:
            out.append(command("error", file, "dlarules gate failed", g))
        s = r.summary
        out.append(command("notice", file, "dlarules", f"{s['layers_on_dla']} layers on DLA, {s['layers_on_gpu']} on "
                           f"GPU, {s['dla_subgraphs']} DLA subgraph(s), {r.coverage['layers_pct']:.1f}% of layers on "
                           f"DLA ({r.target})"))
    return "".join(line + "\n" for line in out)


def render_compare(c: Any, ctx: Context) -> str:
    file = display_path(c.report.model, ctx.cwd)
    out = []
    for row in c.gpu_rows:
        if row.disagreement:
            out.append(command("error", file, f"dlarules compare: {row.disagreement}",
                               f"log GPU layer {row.log}: {row.status}"
                               + (f"; predicted {', '.join(row.predicted)}" if row.predicted else "")
                               + (f"; rules: {', '.join(row.rules)}" if row.rules else "")))
    for e in c.extra_rows:
        out.append(command("error", file, f"dlarules compare: {e.disagreement}",
                           f"predicted on the GPU, the log runs it on DLA: {e.predicted}; rules: {', '.join(e.rules)}"))
    if c.observed_subgraphs is not None:
        for s in c.subgraph_rows:
            if s.status != "agreed":
                out.append(command("error", file, "dlarules compare: DLA subgraph",
                                   f"log {s.log}: {s.status}" + (f"; predicted {s.predicted}" if s.predicted else "")))
    d = c.to_dict()["summary"]
    out.append(command("notice", file, "dlarules compare", ("agrees" if c.agreed else "disagrees")
                       + f" with {display_path(c.log.source, ctx.cwd)}: recall "
                       + ("n/a" if d["gpu_recall_pct"] is None else f"{d['gpu_recall_pct']:.1f}%")
                       + f" ({d['denominators']['gpu_recall']})"))
    return "".join(line + "\n" for line in out)


FORMAT = Format("github", "GitHub Actions annotations (::error file=...::), one per rule per model",
                {"check": render_check, "compare": render_compare})
