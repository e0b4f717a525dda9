"""Text rendering of a `dlarules fix` result."""
from __future__ import annotations

from pathlib import Path

from ..fix import FixResult, Skipped

# Beyond this many lines a list is grouped (by recipe and reason, or by rule); --all lists every line.
_LIST = 10
_EXAMPLES = 3


def _skipped_lines(skipped: list[Skipped], prefix: str, every: bool) -> list[str]:
    if every or len(skipped) <= _LIST:
        return [f"  {prefix}{s.recipe} on {s.node}: {s.reason}" for s in skipped]
    groups: dict[tuple[str, str], list[str]] = {}
    for s in skipped:
        groups.setdefault((s.recipe, s.reason), []).append(s.node)
    out = []
    for (recipe, reason), nodes in groups.items():
        where = nodes[0] if len(nodes) == 1 else (
            f"{len(nodes)} nodes ({', '.join(nodes[:_EXAMPLES])}{', ...' if len(nodes) > _EXAMPLES else ''})")
        out.append(f"  {prefix}{recipe} on {where}: {reason}")
    return out


def _gpu_lines(result: FixResult, every: bool) -> list[str]:
    layers = result.after.gpu_layers
    why = {id(v): "; ".join(f"{f.rule}: {f.message}" for f in v.findings)
           or "its DLA subgraph is past the loadable limit" for v in layers}
    if every or len(layers) <= _LIST:
        return [f"  still on GPU: {v.kind}: {v.name} ({why[id(v)]})" for v in layers]
    groups: dict[str, list] = {}
    for v in layers:
        groups.setdefault(v.findings[0].rule if v.findings else "loadable limit", []).append(v)
    out = []
    for rule, group in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        names = ", ".join(f"{v.kind}: {v.name}" for v in group[:_EXAMPLES]) + (", ..." if len(group) > _EXAMPLES else "")
        out.append(f"  still on GPU by {rule}: {len(group)} layer(s), e.g. {names}")
    out.append("  (--all lists every layer and every recipe not applied)")
    return out


def render_fix(result: FixResult, written: Path | None, dry_run: bool, every: bool = False) -> str:
    b, a = result.before.summary, result.after.summary
    t = result.after.target
    out = [f"dlarules fix: {result.source}", f"target: {t.hardware_text} / TensorRT {t.trt} / {t.platform} / {t.mode_name}", ""]
    if not result.changes:
        out.append("no rewrite kept" if result.reverted else "no recipe applies: nothing to rewrite")
    else:
        out.append(f"applied {len(result.changes)} rewrite(s):")
        for c in result.changes:
            kind = "exact" if c.exact else "APPROXIMATE"
            extra = f", +{c.extra_weights} weights" if c.extra_weights else ""
            out.append(f"  {c.recipe} on {c.node} [{kind}{extra}] (for {', '.join(c.cures)})")
            out.append(f"      {c.detail}")
    out += _skipped_lines(result.reverted, "not kept: ", every)
    if result.skipped:
        out.append(f"not applied ({len(result.skipped)}):")
        out += _skipped_lines(result.skipped, "", every)
    out.append("")
    out.append(f"placement before: {b['layers_on_gpu']} GPU layer(s), {b['dla_subgraphs']} DLA subgraph(s), "
               f"{b['transitions']} transition(s)")
    out.append(f"placement after:  {a['layers_on_gpu']} GPU layer(s), {a['dla_subgraphs']} DLA subgraph(s), "
               f"{a['transitions']} transition(s)")
    if result.changes:
        out.append("whole model: better (judged by DLA subgraphs, then GPU layers, then transitions)")
    elif result.before.gpu_layers:
        out.append("whole model: no rewrite makes it better (DLA subgraphs, then GPU layers, then transitions); "
                   "it still falls back to the GPU")
    out += _gpu_lines(result, every)
    out.append("")
    if result.proof is None:
        out.append("proof: not run (--no-verify)" if result.changes else "proof: nothing to prove")
    else:
        p = result.proof
        out.append(f"proof (onnxruntime, {p.inputs} inputs, {p.tolerance_text}): "
                   + ("passed" if p.passed else "FAILED"))
        for o in p.outputs:
            mean = (f", mean abs error {o.mean_abs:.3g} of range {o.value_range:.3g}"
                    if p.approx is not None and o.gate else "")
            out.append(f"  {o.name}: max abs error {o.max_abs:.3g}, max rel error {o.max_rel:.3g}{mean}"
                       + ("" if o.passed else "  <- beyond tolerance"))
        out += [f"  warning: {w}" for w in p.warnings]
    if dry_run:
        out.append("dry run: nothing written")
    elif written is not None and result.artifacts:
        from ..fix import artifact_path
        from ..recipes import qdq
        files = {sfx: artifact_path(written, sfx) for sfx in result.artifacts}
        out.append(f"wrote {written}, " + ", ".join(str(p) for p in files.values()))
        out.append("next: build it on the device with `" + qdq.trtexec_command(
            str(written), str(files[qdq.CACHE_SUFFIX]),
            str(files[qdq.LAYER_ARG_SUFFIX]) if qdq.LAYER_ARG_SUFFIX in files else None) + "`")
    elif written is not None:
        out.append(f"wrote {written}")
        flags = " ".join(t.mode.trtexec) if t.mode is not None else f"--{t.precision}"
        out.append(f"next: build it on the device with `trtexec --onnx={written} --useDLACore={t.dla_core or 0} "
                   f"--allowGPUFallback{' ' + flags if flags else ''}`, or `dlarules verify {written} --target "
                   f"{t.module.name if t.module else t.hardware} --trt {t.trt}"
                   + (f" --precision {t.mode_name}" if t.mode_name != "fp16" else "")
                   + (f" --dla-core {t.dla_core}" if t.dla_core else "") + "` to compare")
    elif result.changes:
        out.append("nothing written: the proof failed (use --force to write anyway)")
    elif result.before.gpu_layers:
        out.append("nothing written: no rewrite makes the whole model better")
    else:
        out.append("nothing written: every layer already runs on DLA")
    return "\n".join(out) + "\n"
