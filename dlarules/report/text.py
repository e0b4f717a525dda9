"""Plain-text rendering of a check report: fallbacks grouped by rule, the placement, a summary; every node with
`show_all`. Deterministic (golden-file tested), no colors."""
from __future__ import annotations

from ..core import Report

MAX_PER_RULE = 12


def render(report: Report, show_all: bool = False, gates: list[str] | None = None) -> str:
    lines: list[str] = []
    t = report.target
    s = report.summary
    lines.append(f"dlarules: {report.model}")
    lines.append(f"target: {t.hardware_text} / TensorRT {t.trt} / {t.platform} / {t.mode_name}  (rules {report.db_version})")
    lines.append(f"{s['nodes']} ONNX nodes -> {s['layers']} TensorRT layers; {s['nodes_folded']} nodes folded at build "
                 f"time, {s['nodes_without_layer']} without a layer")
    from ..qdqinfo import lines as qdq_lines
    lines += qdq_lines(report.explicit_quantization, t.trt)
    lines.append("")
    lines += _fallbacks(report, show_all)
    lines += _demoted(report, show_all)
    lines += _placement(report, show_all)
    if show_all:
        lines += _nodes(report)
    cov = report.coverage
    only = report.dla_only
    lines.append(f"DLA coverage: {cov['layers_pct']:.1f}% of layers, {cov['flops_pct']:.1f}% of FLOPs; DLA-only "
                 f"(cuDLA standalone): " + ("yes" if only["feasible"] else
                                            f"no ({len(only['blockers'])} GPU layer(s), "
                                            f"{only['dla_subgraphs']} DLA subgraph(s))"))
    lines += ignore_lines(report)
    for g in gates or []:
        lines.append(f"gate failed: {g}")
    verdict = ("everything runs on DLA" if not report.gpu_layers else
               f"every GPU fallback is accepted ({report.layers_accepted} layer(s))" if report.exit_code == 0 else
               "some layers fall back to the GPU")
    lines.append(f"summary: {s['layers_on_dla']} layers on DLA{_precisions(report)}, {s['layers_on_gpu']} on GPU, "
                 f"{s['dla_subgraphs']} DLA subgraph(s), {s['transitions']} GPU<->DLA transition(s): {verdict}")
    lines += _next_step(report)
    return "\n".join(lines) + "\n"


def ignore_lines(report: Report) -> list[str]:
    """The config's ignores for this model: how many fallbacks each accepted, and the unused ones (a stale ignore
    is worth removing: it would silently accept a new fallback later)."""
    if report.ignores is None:
        return []
    used = [i for i in report.ignores if i["used"]]
    out = [f"accepted fallbacks: {report.layers_accepted} GPU layer(s) by {len(used)} of {len(report.ignores)} "
           f"ignore(s) of the config (still on the GPU: counted in coverage and gates)"]
    for i in report.ignores:
        if not i["used"]:
            where = (f" node {i['node']}" if i["node"] else "") + (f" files {', '.join(i['files'])}" if i["files"] else "")
            out.append(f"unused ignore: {i['source']}: {i['rule']}{where} matches no GPU layer of this model")
    return out


def _next_step(report: Report) -> list[str]:
    """Point to `fix` when findings name recipes (a recipe may still refuse or not pay off: fix says)."""
    with_recipe = [v for v in report.fallbacks if any(f.fix for f in v.findings)]
    if not with_recipe:
        return []
    t = report.target
    recipes = sorted({f.fix for v in with_recipe for f in v.findings if f.fix})
    return [f"next: {len(with_recipe)} GPU layer(s) name a fix recipe ({', '.join(recipes)}); try "
            f"dlarules fix {report.model} --target {t.module.name if t.module else t.hardware} --trt {t.trt}"
            + (f" --platform {t.platform}" if t.platform != "jetson" else "")
            + (f" --precision {t.mode_name}" if t.mode_name != "fp16" else "") + " --dry-run"]


def _precisions(report: Report) -> str:
    """' (283 in INT8, 22 in FP16 demoted from INT8)' when the build mode lets layers run in more than one
    precision; nothing for fp16 or int8 alone."""
    t = report.target
    if len(t.chain) < 2 and not (t.mode is not None and t.mode.from_graph):
        return ""
    by = report.layers_by_precision
    order = [p for p in t.chain if p in by] + [p for p in by if p not in t.chain]
    parts = [f"{by[p]} in {p.upper()}" + (f" demoted from {t.chain[0].upper()}" if t.chain and p != t.chain[0]
                                          else "") for p in order]
    return f" ({', '.join(parts)})" if parts else ""


def _demoted(report: Report, show_all: bool) -> list[str]:
    """Layers that run on DLA in a later precision of the build mode, grouped by the rule that demoted them."""
    groups: dict[str, list] = {}
    for v in report.layers:
        if v.precision is None or not v.demoted or not report.on_dla(v.index):
            continue
        for p, fs in v.demoted:
            for f in fs:
                groups.setdefault(f.rule, []).append((v, p, f))
    if not groups:
        return []
    n = len({id(v) for items in groups.values() for v, _, _ in items})
    out = [f"on DLA in a fallback precision, by rule ({n} layer(s)):"]
    for rule_id, items in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        v0, p0, f0 = items[0]
        out.append(f"  {rule_id}  [{f0.confidence}]  {len(items)} layer(s): not in {p0.upper()}, "
                   f"so in {v0.precision.upper()}")
        shown = items if show_all else items[:MAX_PER_RULE]
        for v, _, f in shown:
            out.append(f"    {v.kind}: {v.name}")
        if len(items) > len(shown):
            out.append(f"    ... and {len(items) - len(shown)} more (--all lists every node)")
    out.append("")
    return out


def _fallbacks(report: Report, show_all: bool) -> list[str]:
    groups = report.findings_by_rule()
    if not groups:
        return ["no rule fires: every layer fits DLA", ""]
    n_layers = len(report.fallbacks)
    out = [f"GPU fallbacks by rule ({n_layers} layer(s), {len(groups)} rule(s)):"]
    for rule_id, items in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        first = items[0][1]
        fixes = sorted({f.fix for _, f in items if f.fix})
        fix = f"  fix: {', '.join(fixes)}" if fixes else ""
        n_acc = sum(1 for v, _ in items if report.accepted_reason(v.index, rule_id) is not None)
        acc = f" ({n_acc} accepted)" if n_acc else ""
        out.append(f"  {rule_id}  [{first.confidence}]  {len(items)} layer(s){acc}{fix}")
        shown = items if show_all else items[:MAX_PER_RULE]
        for v, f in shown:
            out.append(f"    {v.kind}: {v.name}")
            out.append(f"      {f.message}")
            reason = report.accepted_reason(v.index, rule_id)
            if reason is not None:
                out.append(f"      accepted: {reason}")
        if len(items) > len(shown):
            out.append(f"    ... and {len(items) - len(shown)} more (--all lists every node)")
        out.append(f"    source: {first.source}")
        if first.hint:
            out.append(f"    hint: {first.hint}")
    out.append("")
    return out


def _placement(report: Report, show_all: bool) -> list[str]:
    p = report.placement
    by = {v.index: v for v in report.layers}
    live = [sg for sg in p.subgraphs if not sg.moved_to_gpu]
    out = [f"predicted placement: {len(live)} DLA subgraph(s) (limit {p.loadable_limit} per DLA core), "
           f"{len(p.gpu_layers)} GPU layer(s), {p.transitions} GPU<->DLA transition(s)"]
    for sg in live:
        out.append(f"  [DlaLayer] {{{sg.name}}}  ({len(sg.layers)} layers)")
    gpu = p.gpu_layers if show_all else p.gpu_layers[:MAX_PER_RULE * 2]
    for i in gpu:
        out.append(f"  [GpuLayer] {by[i].kind}: {by[i].name}")
    if len(p.gpu_layers) > len(gpu):
        out.append(f"  ... and {len(p.gpu_layers) - len(gpu)} more GPU layers (--all lists them)")
    if p.limit_exceeded:
        moved = [sg for sg in p.subgraphs if sg.moved_to_gpu]
        out.append(f"  warning: {len(p.subgraphs)} DLA subgraphs exceed the limit of {p.loadable_limit} per DLA core; "
                   f"TensorRT moves {len(moved)} to the GPU:")
        for sg in moved:
            out.append(f"    {sg.name} ({len(sg.layers)} layers)")
    out.append("")
    return out


def _nodes(report: Report) -> list[str]:
    by = {v.index: v for v in report.layers}
    out = ["every node:"]
    for n in report.nodes:
        if not n.layers:
            out.append(f"  {n.index:4d} {n.op} {n.name}: {n.status}")
            continue
        for i in n.layers:
            v = by[i]
            # "DLA:1" is DLA subgraph 1 (the report's data), not DLA core 1: the text says so
            where = report.placement.device.get(i, "GPU").replace("DLA:", "DLA sg ", 1)
            if where != "GPU" and v.precision:
                where += f" {v.precision.upper()}"
            why = ", ".join(f.rule for f in v.findings)
            if v.demoted and v.precision is not None:      # on DLA in a fallback precision: why not the first
                why = f"not {v.demoted_text}"
            elif v.demoted:                                # on GPU: the earlier precisions' other reasons
                have = {f.rule for f in v.findings}
                more = [(p, [f.rule for f in fs if f.rule not in have]) for p, fs in v.demoted]
                why += "".join(f"; in {p.upper()} also {', '.join(rs)}" for p, rs in more if rs)
            out.append(f"  {n.index:4d} {n.op} {n.name} -> {v.kind}: {v.name} [{where}]" + (f"  ({why})" if why else ""))
    out.append("")
    return out
