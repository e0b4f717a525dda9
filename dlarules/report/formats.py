"""The report formats, behind one registry that `check`, `compare`, `fix` and `verify` share.

A format is a `Format`: a name, a line of help, and one render function per result kind it can render:

    check    list[api.CheckItem]   one item per model given to `check` (a report, or the one-line error)
    compare  compare.Comparison
    fix      FixView               the fix result and what was written
    verify   trt.VerifyResult
    split    SplitView             the split result and the parts written

`text` and `json` (the formats that existed first: their renderers live in text.py, fixtext.py, compare.py and the
results' to_dict) are wired here; every other format is one module of this package that defines `FORMAT`, named
in PLUGINS. `html` is a module another branch builds (`render_html(reports, fix=None)`): it is registered when
that module exists. Format modules import nothing heavy at module level, so listing the formats (the --format
help) stays cheap; the objects they render are duck-typed.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from ..errors import DlarulesError, clip
from .base import (GATE_RULE, KINDS, LOADABLE_RULE, RULE_DOCS_URL, Context, FixView, Format, Renderer,  # noqa: F401
                   SplitView, display_path, gpu_findings, rule_entry, worst_exit)

if TYPE_CHECKING:   # for the annotations only: importing api pulls in onnx (a second at start-up)
    from ..core import CheckItem
    from ..ruledb import RuleDB

# format modules of this package, in the order --format lists them; html is optional (registered when present)
PLUGINS = ("sarif", "markdown", "github", "junit")

# ---- text and json: the first formats, rendered by what already existed ------------------------------------------

def _text_check(items: list["CheckItem"], ctx: Context) -> str:
    if len(items) == 1 and items[0].report is not None:
        from .text import render
        return render(items[0].report, show_all=ctx.show_all, gates=items[0].gates or [])
    from .many import render_text
    return render_text(items, ctx)


def _text_compare(c: Any, ctx: Context) -> str:
    from ..compare import render_text
    return render_text(c)


def _text_fix(view: FixView, ctx: Context) -> str:
    from .fixtext import render_fix
    return render_fix(view.result, view.written, view.dry_run, every=ctx.show_all)


def _text_verify(result: Any, ctx: Context) -> str:
    from ..trt import render_text
    return render_text(result)


def check_json(items: list["CheckItem"]) -> dict[str, Any]:
    """One model: the report as it always was (schemas/report.schema.json, + `gates` with gates). Several: one
    object holding them all (schemas/reports.schema.json)."""
    if len(items) == 1 and items[0].report is not None:
        return items[0].to_dict()
    from ..core import REPORT_SCHEMA_VERSION
    from .. import __version__
    dbv = next((i.report.db_version for i in items if i.report is not None), None)
    return {"schema_version": REPORT_SCHEMA_VERSION,
            "tool": {"name": "dlarules", "version": __version__, "db_version": dbv},
            "summary": {"models": len(items), "exit_code": worst_exit(items),
                        "by_model": [{"model": i.model, "exit_code": i.exit_code} for i in items]},
            "reports": [i.to_dict() for i in items]}


def _dumps(data: Any) -> str:
    return json.dumps(data, indent=2) + "\n"


def _text_split(view: SplitView, ctx: Context) -> str:
    from ..split import render
    return render(view.result, dict(view.written))


TEXT = Format("text", "the report for people (several models: a line each and a summary table)", {
    "check": _text_check, "compare": _text_compare, "fix": _text_fix, "verify": _text_verify,
    "split": _text_split})
JSON = Format("json", "every node (schemas/report.schema.json; several models: schemas/reports.schema.json)", {
    "check": lambda items, ctx: _dumps(check_json(items)),
    "compare": lambda c, ctx: _dumps(c.to_dict()),
    "fix": lambda v, ctx: _dumps({**v.result.to_dict(), "output": str(v.written) if v.written else None}),
    "verify": lambda r, ctx: _dumps(r.to_dict()),
    "split": lambda v, ctx: _dumps(v.result.to_dict(dict(v.written)))})


def _html_format() -> Format:
    """The html module (another branch) exposes render_html(reports, fix=None); wrap it lazily."""
    def check(items: list["CheckItem"], ctx: Context) -> str:
        mod = importlib.import_module(f"{__package__}.html")
        return mod.render_html([i.report for i in items if i.report is not None])

    def fix(view: FixView, ctx: Context) -> str:
        mod = importlib.import_module(f"{__package__}.html")
        return mod.render_html([], fix=view.result)
    return Format("html", "one self-contained page drawing the placement", {"check": check, "fix": fix})


def _load() -> dict[str, Format]:
    out = {"text": TEXT, "json": JSON}
    for name in PLUGINS:
        fmt = importlib.import_module(f"{__package__}.{name}").FORMAT
        out[fmt.name] = fmt
    # html: found without importing it (it imports the report classes, which pull in onnx)
    if importlib.util.find_spec(f"{__package__}.html") is not None:
        out["html"] = _html_format()
    return out


_REGISTRY: dict[str, Format] | None = None


def registry() -> dict[str, Format]:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _load()
    return _REGISTRY


def names(kind: str) -> list[str]:
    """The formats that can render `kind`, in registry order."""
    return [f.name for f in registry().values() if kind in f.renderers]


def get(name: str, kind: str) -> Format:
    """The format `name` for a `kind` result; a name that is unknown, or cannot render that kind, is one line
    naming --format (exit 2)."""
    fmt = registry().get(name)
    if fmt is None or kind not in fmt.renderers:
        what = "is not a format" if fmt is None else f"cannot render a {kind} result"
        raise DlarulesError("--format", f"{clip(name, 40)!r} {what}; {kind} takes {', '.join(names(kind))}")
    return fmt


def help_text(kind: str) -> str:
    """The --format help of a command: the formats it takes, from the registry."""
    return "Output format: " + ", ".join(names(kind)) + "."


