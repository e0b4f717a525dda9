"""What changes between two TensorRT releases for one hardware: rules added, removed and changed."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .ruledb import Rule, RuleDB

_IGNORED = ("fixtures",)   # test material, not the limit


@dataclass
class RuleDiff:
    hardware: str
    platform: str
    precision: str
    old: str
    new: str
    added: list[Rule] = field(default_factory=list)
    removed: list[Rule] = field(default_factory=list)
    changed: list[tuple[Rule, Rule, list[str]]] = field(default_factory=list)   # old entry, new entry, fields

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, Any]:
        return {"hardware": self.hardware, "platform": self.platform, "precision": self.precision,
                "from": self.old, "to": self.new,
                "added": [_brief(r) for r in self.added], "removed": [_brief(r) for r in self.removed],
                "changed": [{"id": a.id, "fields": f, "from": _brief(a), "to": _brief(b)} for a, b, f in self.changed]}


def _brief(r: Rule) -> dict[str, Any]:
    return {"id": r.id, "title": r.title, "tensorrt": str(r.tensorrt), "require": r.raw.get("require"),
            "when": r.raw.get("when"), "message": r.message, "confidence": r.confidence, "fix": r.fix,
            "source": r.source.doc}


def _entries(db: RuleDB, hardware: str, trt: str, platform: str, precision: str) -> dict[str, Rule]:
    t = db.target(hardware, trt, platform=platform, precision=precision)
    return {r.id: r for r in db.select(t).rules}


def diff(db: RuleDB, hardware: str, old: str, new: str, *, platform: str = "jetson", precision: str | None = None) -> RuleDiff:
    """Rules holding for `new` but not `old` (added), the reverse (removed), and rules whose entry differs."""
    hw = db.resolve_hardware(hardware)
    precisions = [precision] if precision else ["fp16", "int8"]
    out = RuleDiff(hw, platform, "/".join(precisions), old, new)
    seen: set[str] = set()
    for p in precisions:
        a, b = _entries(db, hw, old, platform, p), _entries(db, hw, new, platform, p)
        for rid in b.keys() - a.keys() - seen:
            out.added.append(b[rid])
        for rid in a.keys() - b.keys() - seen:
            out.removed.append(a[rid])
        for rid in a.keys() & b.keys() - seen:
            if a[rid] is not b[rid]:
                fields = sorted(k for k in set(a[rid].raw) | set(b[rid].raw)
                                if k not in _IGNORED and a[rid].raw.get(k) != b[rid].raw.get(k))
                out.changed.append((a[rid], b[rid], fields))
        seen |= a.keys() | b.keys()
    for lst in (out.added, out.removed):
        lst.sort(key=lambda r: r.id)
    out.changed.sort(key=lambda c: c[0].id)
    return out


def render(d: RuleDiff) -> str:
    lines = [f"rules for {d.hardware} ({d.platform}, {d.precision}): TensorRT {d.old} -> {d.new}"]
    if d.empty:
        lines.append("  no rule differs")
    for r in d.added:
        lines.append(f"  + {r.id}: {r.title} [{r.confidence}]")
    for r in d.removed:
        lines.append(f"  - {r.id}: {r.title}")
    for a, b, fields in d.changed:
        lines.append(f"  ~ {a.id}: {', '.join(fields)} changed")
        if a.title != b.title:
            lines.append(f"      was: {a.title}")
            lines.append(f"      now: {b.title}")
    return "\n".join(lines) + "\n"
