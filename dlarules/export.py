"""The rule DB as one JSON document (schemas/ruledb.schema.json), for tools that evaluate the rules themselves
(a C++ or Rust checker, an IDE) with docs/rule-format.md."""
from __future__ import annotations

from typing import Any

from . import __version__
from .layers import CONTEXT_FIELDS, KINDS
from .ruledb import Rule, RuleDB, Target

EXPORT_SCHEMA_VERSION = "1"


def _rule(r: Rule) -> dict[str, Any]:
    raw = dict(r.raw)
    raw.pop("__file__", None)
    return {**raw, "layer": list(r.layers) if r.layers else "*", "hardware": list(r.hardware),
            "tensorrt": str(r.tensorrt), "platform": list(r.platforms), "precision": list(r.precisions),
            "never": r.never}


def export(db: RuleDB, target: Target | None = None) -> dict[str, Any]:
    """The whole DB, or only the rules that hold for `target`."""
    rules = db.select(target).rules if target is not None else db.rules
    return {
        "schema_version": EXPORT_SCHEMA_VERSION,
        "db_version": db.version,
        "generator": f"dlarules {__version__}",
        "selection": None if target is None else {"hardware": target.hardware, "tensorrt": target.trt,
                                                  "platform": target.platform, "precision": target.mode_name},
        "hardware": db.hardware,
        "platforms": db.platforms,
        "releases": [{"version": r.version, "hardware": list(r.hardware), "platforms": list(r.platforms),
                      "loadable_limit": r.loadable_limit, "loadable_evidence": r.loadable_evidence,
                      "dla": dict(r.dla), "parser": dict(r.parser)} for r in db.releases],
        "jetpack": db.jetpack,
        # limits on a DLA subgraph as a whole, for a reimplementation of the partition (docs/architecture.md)
        "subgraph_limits": db.subgraph_limits,
        "layer_kinds": KINDS,
        "context_fields": CONTEXT_FIELDS,
        "rules": [_rule(r) for r in rules],
    }
