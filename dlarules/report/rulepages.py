"""Rule documentation generated from the YAML: one page per rule ID, an index, and the rule x target matrix."""
from __future__ import annotations

from typing import Any

import yaml

from ..docs import HEADER


def _fix_text(fix: Any) -> str:
    if fix is None:
        return "none"
    if isinstance(fix, dict):
        return ", ".join(f"[`{r}`](../recipes.md#{r}) for {op}" for op, r in fix.items())
    return f"[`{fix}`](../recipes.md#{fix})"


def _cond(c: Any) -> str:
    return yaml.safe_dump(c, default_flow_style=True, sort_keys=False, width=1000).strip()


def rule_page(db: Any, rid: str) -> str:
    entries = db.by_id(rid)
    first = entries[0]
    lines = [HEADER, f"# {rid}", "", f"**{first.title}**", ""]
    layers = ", ".join(f"`{k}`" for k in first.layers) if first.layers else "every layer"
    lines += [f"Layer: {layers}", ""]
    for n, r in enumerate(entries, 1):
        if len(entries) > 1:
            lines += [f"## Entry {n}: {r.title}", ""]
        lines += [f"- Applies to: {r.scope_text()}",
                  f"- Confidence: {r.confidence}",
                  f"- Fix recipe: {_fix_text(r.fix)}"]
        if r.raw.get("when") is not None:
            lines.append(f"- Checked when: `{_cond(r.raw['when'])}`")
        lines.append(f"- Requires: `{_cond(r.raw['require'])}`")
        lines.append(f"- Message: \"{r.message}\"")
        if r.raw.get("hint"):
            lines.append(f"- Hint: {r.raw['hint']}")
        src = r.source
        lines.append(f"- Source: {src.doc}" + (f", {src.section}" if src.section else "")
                     + (f" <{src.url}>" if src.url else ""))
        if src.quote:
            lines.append(f"  > {src.quote}")
        # further evidence, each with its own scope: what a real log showed beside the documented text
        for ev in r.raw.get("evidence") or ():
            lines.append(f"- Evidence ({ev['confidence']}; {ev['scope']}): {ev['doc']}"
                         + (f" <{ev['url']}>" if ev.get("url") else ""))
            if ev.get("quote"):
                lines.append(f"  > {ev['quote']}")
            if ev.get("note"):
                lines.append(f"  {ev['note']}")
        lines.append(f"- Defined in: `{_rel(r.file)}` line {r.line}")
        lines += ["", "Fixtures:", ""]
        for fx in r.fixtures:
            ops = " -> ".join(nd["op"] for nd in fx["nodes"])
            attrs = "; ".join(f"{nd['op']} {_cond(nd['attrs'])}" for nd in fx["nodes"] if nd.get("attrs"))
            tgt = f" on {_cond(fx['target'])}" if fx.get("target") else ""
            lines.append(f"- {fx['expect']}: {ops}{' (' + attrs + ')' if attrs else ''}{tgt}")
        lines.append("")
    return "\n".join(lines)


def _rel(path: str) -> str:
    i = path.replace("\\", "/").rfind("/rules/")
    return path[i + 1:] if i >= 0 else path


def matrix(db: Any) -> str:
    targets = [(hw, rel.version) for hw in db.hardware for rel in db.releases
               if hw in rel.hardware and "jetson" in rel.platforms]
    head = "| rule | " + " | ".join(f"{hw} {v}" for hw, v in targets) + " |"
    lines = [HEADER, "# Rules per target (Jetson)", "",
             "`x` = the rule holds for that hardware and TensorRT release (any precision); `fp16` / `int8` = only "
             "for that precision.", "", head, "|---|" + "---|" * len(targets)]
    for rid in sorted(db.ids):
        cells = []
        for hw, v in targets:
            precs = sorted({p for r in db.by_id(rid) if hw in r.hardware and r.tensorrt.contains(v)
                            and "jetson" in r.platforms for p in r.precisions})
            cells.append("x" if len(precs) == 2 else (precs[0] if precs else ""))
        lines.append(f"| [{rid}]({rid}.md) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def index(db: Any) -> str:
    lines = [HEADER, "# DLA rules", "", f"Rule DB {db.version}: {len(db.ids)} rules, {len(db.rules)} entries. "
             "See also the [matrix](matrix.md) of rules per hardware and TensorRT release.", "",
             "| rule | layer | limit | confidence | fix |", "|---|---|---|---|---|"]
    for rid in sorted(db.ids):
        r = db.by_id(rid)[0]
        layers = ", ".join(r.layers) if r.layers else "*"
        lines.append(f"| [{rid}]({rid}.md) | {layers} | {r.title} | {r.confidence} | {_fix_text(r.fix)} |")
    return "\n".join(lines) + "\n"


def rule_pages(db: Any) -> dict[str, str]:
    pages = {f"rules/{rid}.md": rule_page(db, rid) for rid in db.ids}
    pages["rules/README.md"] = index(db)
    pages["rules/matrix.md"] = matrix(db)
    return pages
