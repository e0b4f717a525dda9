"""Markdown sized for a PR comment or $GITHUB_STEP_SUMMARY: the verdict, coverage, subgraphs, the fallbacks by
rule (at most MAX_ROWS rows, then "and N more") and what `fix` would do; for compare the agreement and the
disagreements; for fix the placement before and after."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import RULE_DOCS_URL, Context, FixView, Format, display_path, worst_exit
from .many import rules_across, verdict

if TYPE_CHECKING:
    from ..core import CheckItem, Report

MAX_ROWS = 20


def cell(text: Any) -> str:
    """Text safe in a table cell: one line, pipes escaped, no HTML (`<` `>` `&` written as entities)."""
    s = " ".join(str(text).split())
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def code(text: Any) -> str:
    """An inline code span holding `text` (its backticks fenced by longer runs, pipes escaped for tables)."""
    s = " ".join(str(text).split()).replace("|", "\\|")
    run = 0
    longest = 0
    for ch in s:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _more(n: int, what: str) -> list[str]:
    return ["", f"... and {n} more {what}"] if n > 0 else []


def _target(r: "Report") -> str:
    t = r.target
    return f"{t.hardware_text} / TensorRT {t.trt} / {t.platform} / {t.mode_name} (rules {r.db_version})"


def _fix_command(r: "Report") -> str:
    t = r.target
    return (f"dlarules fix {r.model} --target {t.module.name if t.module else t.hardware} --trt {t.trt}"
            + (f" --platform {t.platform}" if t.platform != "jetson" else "")
            + (f" --precision {t.mode_name}" if t.mode_name != "fp16" else "") + " --dry-run")


def _one(item: "CheckItem", ctx: Context) -> list[str]:
    r = item.report
    assert r is not None
    s, cov, only = r.summary, r.coverage, r.dla_only
    ok = item.exit_code == 0
    out = [f"### dlarules: {code(display_path(r.model, ctx.cwd))}: {'PASS' if ok else 'FAIL'}, {verdict(item)}", "",
           f"Target: {cell(_target(r))}", "",
           "| | |", "|---|---|",
           f"| verdict | {('everything runs on DLA' if not r.gpu_layers else 'every GPU fallback is accepted') if r.exit_code == 0 else 'some layers fall back to the GPU'} "
           f"(exit {item.exit_code}) |",
           f"| layers | {s['layers_on_dla']} on DLA, {s['layers_on_gpu']} on GPU (of {s['layers']}) |",
           f"| DLA coverage | {cov['layers_pct']:.1f}% of layers, {cov['flops_pct']:.1f}% of FLOPs |",
           f"| DLA subgraphs | {s['dla_subgraphs']} (limit {r.placement.loadable_limit} per DLA core), "
           f"{s['transitions']} GPU<->DLA transition(s) |",
           f"| DLA-only (cuDLA) | " + ("yes" if only["feasible"] else
                                      f"no ({len(only['blockers'])} GPU layer(s), {only['dla_subgraphs']} "
                                      f"DLA subgraph(s))") + " |"]
    for g in item.gates or []:
        out.append(f"| gate failed | {cell(g)} |")
    groups = r.findings_by_rule()
    if groups:
        out += ["", f"GPU fallbacks by rule ({len(r.fallbacks)} layer(s), {len(groups)} rule(s)):", "",
                "| rule | layers | example | fix |", "|---|---|---|---|"]
        ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        for rule_id, hits in ordered[:MAX_ROWS]:
            v, f = hits[0]
            fixes = sorted({x.fix for _, x in hits if x.fix})
            reasons = sorted({x for h, _ in hits if (x := r.accepted_reason(h.index, rule_id)) is not None})
            n_acc = sum(1 for h, _ in hits if r.accepted_reason(h.index, rule_id) is not None)
            acc = f" ({n_acc} accepted: {cell('; '.join(reasons))})" if n_acc else ""
            out.append(f"| [{rule_id}]({RULE_DOCS_URL.format(id=rule_id)}) | {len(hits)}{acc} | {code(v.kind + ': ' + v.name)}"
                       f" {cell(f.message)} | {', '.join(code(x) for x in fixes) or cell(f.hint) or '-'} |")
        out += _more(len(ordered) - MAX_ROWS, "rule(s)")
        with_recipe = [v for v in r.fallbacks if any(f.fix for f in v.findings)]
        if with_recipe:
            recipes = sorted({f.fix for v in with_recipe for f in v.findings if f.fix})
            out += ["", f"**fix**: {len(with_recipe)} GPU layer(s) name a recipe ({', '.join(code(x) for x in recipes)});"
                        f" `dlarules fix` applies them and proves the rewrite. Try {code(_fix_command(r))}."]
    else:
        out += ["", "No rule fires: every layer fits DLA."]
    unused = [i for i in r.ignores or [] if not i["used"]]
    if unused:
        out += ["", "Unused ignores (they match no GPU layer of this model): "
                + ", ".join(f"{code(i['rule'])} ({cell(i['source'])})" for i in unused)]
    return out


def render_check(items: list["CheckItem"], ctx: Context) -> str:
    if len(items) == 1 and items[0].report is not None:
        return "\n".join(_one(items[0], ctx)) + "\n"
    worst = worst_exit(items)
    first = next((i.report for i in items if i.report is not None), None)
    out = [f"### dlarules: {len(items)} models: {'PASS' if worst == 0 else 'FAIL'} (exit {worst})", ""]
    if first is not None:
        out += [f"Target: {cell(_target(first))}", ""]
    out += ["| model | verdict | DLA | GPU | subgraphs | coverage |", "|---|---|---|---|---|---|"]
    for i in items[:MAX_ROWS]:
        name = code(display_path(i.model, ctx.cwd))
        if i.report is None:
            out.append(f"| {name} | not checked: {cell(i.error)} | - | - | - | - |")
            continue
        s = i.report.summary
        out.append(f"| {name} | {verdict(i)}{''.join('; ' + cell(g) for g in i.gates or [])} | {s['layers_on_dla']} | "
                   f"{s['layers_on_gpu']} | {s['dla_subgraphs']} | {i.report.coverage['layers_pct']:.1f}% |")
    out += _more(len(items) - MAX_ROWS, "model(s)")
    across = rules_across(items)
    if across:
        out += ["", "| rule | models | layers | fix |", "|---|---|---|---|"]
        for rule_id, m, n, fixes in across[:MAX_ROWS]:
            out.append(f"| [{rule_id}]({RULE_DOCS_URL.format(id=rule_id)}) | {m} | {n} | "
                       f"{', '.join(code(x) for x in fixes) or '-'} |")
        out += _more(len(across) - MAX_ROWS, "rule(s)")
    return "\n".join(out) + "\n"


def render_compare(c: Any, ctx: Context) -> str:
    d = c.to_dict()
    s = d["summary"]
    pct = (lambda x: "n/a" if x is None else f"{x:.1f}%")
    out = [f"### dlarules compare: {code(display_path(c.report.model, ctx.cwd))}: "
           f"{'agrees' if c.agreed else 'disagrees'} with {code(display_path(c.log.source, ctx.cwd))}", "",
           f"Target: {cell(_target(c.report))}", "",
           "| | |", "|---|---|",
           f"| layer agreement | {pct(s['layer_agreement_pct'])} |",
           f"| GPU fallbacks | precision {pct(s['gpu_precision_pct'])}, recall {pct(s['gpu_recall_pct'])} "
           f"({cell(s['denominators']['gpu_recall'])}) |",
           f"| DLA subgraphs | {s['dla_subgraphs_predicted']} predicted, "
           f"{'not listed' if s['dla_subgraphs_log'] is None else s['dla_subgraphs_log']} in the log |"]
    dis = {k: v for k, v in s["disagreements"].items() if v}
    if dis:
        out.append(f"| disagreements | {', '.join(f'{k} {v}' for k, v in dis.items())} |")
    rows = [(r.log, r.status, r.disagreement, r.rules) for r in c.gpu_rows if r.disagreement] + \
           [(e.predicted, "predicted-not-seen", e.disagreement, e.rules) for e in c.extra_rows]
    if rows:
        out += ["", "| layer | status | class | rules |", "|---|---|---|---|"]
        out += [f"| {code(n)} | {st} | {cls} | {', '.join(rs) or '-'} |" for n, st, cls, rs in rows[:MAX_ROWS]]
        out += _more(len(rows) - MAX_ROWS, "disagreement(s)")
    if c.unmatched_names:
        out += ["", f"{len(c.unmatched_names)} log name(s) not matched to the model."]
    return "\n".join(out) + "\n"


def render_fix(view: FixView, ctx: Context) -> str:
    res = view.result
    b, a = res.before.summary, res.after.summary
    cb, ca = res.before.coverage, res.after.coverage
    out = [f"### dlarules fix: {code(display_path(res.source, ctx.cwd))}", "", f"Target: {cell(_target(res.after))}",
           "", "| | before | after |", "|---|---|---|",
           f"| GPU layers | {b['layers_on_gpu']} | {a['layers_on_gpu']} |",
           f"| DLA subgraphs | {b['dla_subgraphs']} | {a['dla_subgraphs']} |",
           f"| GPU<->DLA transitions | {b['transitions']} | {a['transitions']} |",
           f"| DLA coverage (layers) | {cb['layers_pct']:.1f}% | {ca['layers_pct']:.1f}% |"]
    if res.changes:
        out += ["", f"Applied {len(res.changes)} rewrite(s):", "", "| recipe | node | exact | for |", "|---|---|---|---|"]
        out += [f"| {code(c.recipe)} | {code(c.node)} | {'yes' if c.exact else 'APPROXIMATE'} | {', '.join(c.cures)} |"
                for c in res.changes[:MAX_ROWS]]
        out += _more(len(res.changes) - MAX_ROWS, "rewrite(s)")
    else:
        out += ["", "No rewrite kept." if res.reverted else "No recipe applies: nothing to rewrite."]
    left: dict[str, int] = {}
    for v in res.after.gpu_layers:
        key = v.findings[0].rule if v.findings else "loadable limit"
        left[key] = left.get(key, 0) + 1
    if left:
        out += ["", "Still on the GPU: " + ", ".join(f"{k} {n}" for k, n in sorted(left.items(), key=lambda kv: -kv[1]))]
    p = res.proof
    if p is None:
        out += ["", "Proof: not run (--no-verify)." if res.changes else "Proof: nothing to prove."]
    else:
        worst = max((o.max_abs for o in p.outputs), default=0.0)
        out += ["", f"Proof (onnxruntime, rtol {p.rtol:g}, atol {p.atol:g}): **{'passed' if p.passed else 'FAILED'}**, "
                    f"max abs error {worst:.3g}."]
    if view.dry_run:
        out.append("Dry run: nothing written.")
    elif view.written is not None:
        out.append(f"Wrote {code(view.written)}.")
    return "\n".join(out) + "\n"


FORMAT = Format("markdown", "a PR-comment-sized summary ($GITHUB_STEP_SUMMARY)",
                {"check": render_check, "compare": render_compare, "fix": render_fix})
