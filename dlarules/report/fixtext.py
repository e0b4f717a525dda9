"""Text rendering of a `dlarules fix` result."""
from __future__ import annotations

from pathlib import Path

from ..fix import FixResult


def render_fix(result: FixResult, written: Path | None, dry_run: bool) -> str:
    b, a = result.before.summary, result.after.summary
    t = result.after.target
    out = [f"dlarules fix: {result.source}", f"target: {t.hardware} / TensorRT {t.trt} / {t.platform} / {t.precision}", ""]
    if not result.changes:
        out.append("no rewrite kept" if result.reverted else "no recipe applies: nothing to rewrite")
    else:
        out.append(f"applied {len(result.changes)} rewrite(s):")
        for c in result.changes:
            kind = "exact" if c.exact else "APPROXIMATE"
            extra = f", +{c.extra_weights} weights" if c.extra_weights else ""
            out.append(f"  {c.recipe} on {c.node} [{kind}{extra}] (for {', '.join(c.cures)})")
            out.append(f"      {c.detail}")
    for s in result.reverted:
        out.append(f"  not kept: {s.recipe} on {s.node}: {s.reason}")
    if result.skipped:
        out.append(f"not applied ({len(result.skipped)}):")
        for s in result.skipped:
            out.append(f"  {s.recipe} on {s.node}: {s.reason}")
    out.append("")
    out.append(f"placement before: {b['layers_on_gpu']} GPU layer(s), {b['dla_subgraphs']} DLA subgraph(s), "
               f"{b['transitions']} transition(s)")
    out.append(f"placement after:  {a['layers_on_gpu']} GPU layer(s), {a['dla_subgraphs']} DLA subgraph(s), "
               f"{a['transitions']} transition(s)")
    for v in result.after.gpu_layers:
        why = "; ".join(f"{f.rule}: {f.message}" for f in v.findings) or "its DLA subgraph is past the loadable limit"
        out.append(f"  still on GPU: {v.kind}: {v.name} ({why})")
    out.append("")
    if result.proof is None:
        out.append("proof: not run (--no-verify)" if result.changes else "proof: nothing to prove")
    else:
        p = result.proof
        out.append(f"proof (onnxruntime, {p.inputs}, rtol {p.rtol:g}, atol {p.atol:g}): "
                   + ("passed" if p.passed else "FAILED"))
        for o in p.outputs:
            out.append(f"  {o.name}: max abs error {o.max_abs:.3g}, max rel error {o.max_rel:.3g}"
                       + ("" if o.passed else "  <- beyond tolerance"))
    if dry_run:
        out.append("dry run: nothing written")
    elif written is not None:
        out.append(f"wrote {written}")
    elif result.changes:
        out.append("nothing written: the proof failed (use --force to write anyway)")
    return "\n".join(out) + "\n"
