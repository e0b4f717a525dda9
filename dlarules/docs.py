"""Generated documentation: written from the data (layer catalog, lowering table, rule DB), never by hand.

`dlarules rules docs [--out docs]` writes the files; a test fails when the committed ones are stale."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .layers import CONTEXT_FIELDS, KINDS
from .report.rulepages import HEADER


def layers_md() -> str:
    lines = [HEADER, "# TensorRT layer kinds and their attributes", "",
             "What rule conditions and messages may name (`dlarules/layers.py`). Types: int, float, bool, str, "
             "ints / floats (lists), enum (one of the listed values).", "",
             "| kind | attributes |", "|---|---|"]
    for kind, attrs in KINDS.items():
        text = ", ".join(f"`{a}` ({t.replace('|', ' / ')})" for a, t in attrs.items()) or "-"
        lines.append(f"| `{kind}` | {text} |")
    lines += ["", "## Context fields (every kind)", "", "| field | type |", "|---|---|"]
    lines += [f"| `{k}` | {t} |" for k, t in CONTEXT_FIELDS.items()]
    return "\n".join(lines) + "\n"


def lowering_md() -> str:
    from .lowering import OP_TABLE, PARSER_DEFAULTS
    lines = [HEADER, "# ONNX op -> TensorRT layers", "",
             "How TensorRT's ONNX parser (and the builder rewrites that decide placement) turn each ONNX op into "
             "layers, as dlarules models it (`OP_TABLE` in `dlarules/lowering.py`; tested op by op in "
             "`tests/test_lowering.py`). An op missing here becomes an `UNKNOWN` layer, reported as assumed GPU.",
             "", "| ONNX op | TensorRT layer(s) | notes |", "|---|---|---|"]
    for op in sorted(OP_TABLE):
        _, kinds, note = OP_TABLE[op]
        lines.append(f"| {op} | {kinds} | {note} |")
    lines += ["", "## Release-dependent behaviour (`parser:` in rules/releases.yaml)", "",
              "| setting | default | meaning |", "|---|---|---|"]
    meaning = {
        "gemm_const_b": "Gemm/MatMul with constant 2-D weights on a 2-D input: FULLY_CONNECTED (8.0/8.2) or the "
                        "builder's 1x1 CONVOLUTION with a reshape back (8.4+)",
        "reshape_back_name": "name of the builder's reshape back to 2-D (`{}` = the node)",
        "global_avg_pool": "GlobalAveragePool as REDUCE, or re-typed by the builder as a global POOLING (8.5)",
        "flatten_2d": "Flatten of a 2-D input: no layer (<= 8.4.1) or IDENTITY",
        "transpose_identity": "identity Transpose: elided (<= 8.4) or a SHUFFLE",
        "squeeze": "Squeeze/Unsqueeze as SHUFFLE or SQUEEZE/UNSQUEEZE layers (10.7+)",
        "resize_sizes": "Resize `sizes` initializer: a shape-tensor input (<= 8.6) or output dimensions (9+)",
        "pad": "Pad as a PADDING layer (8.0) or a SLICE",
        "cast": "Cast as IDENTITY (<= 8.5) or CAST",
        "instance_norm": "InstanceNormalization as a plugin (<= 9.3) or NORMALIZATION",
        "missing_ops": "ONNX ops this parser has no importer for",
    }
    for k, v in PARSER_DEFAULTS.items():
        lines.append(f"| `{k}` | `{v}` | {meaning.get(k, '')} |")
    return "\n".join(lines) + "\n"


def _cured_by(db: Any) -> dict[str, list[str]]:
    """recipe -> the rule IDs that name it (any op, any entry)."""
    out: dict[str, set[str]] = {}
    for r in db.rules:
        names = r.fix.values() if isinstance(r.fix, dict) else [r.fix] if r.fix else []
        for name in names:
            out.setdefault(name, set()).add(r.id)
    return {k: sorted(v) for k, v in out.items()}


def recipes_md(db: Any) -> str:
    from .recipes.registry import REGISTRY
    cured = _cured_by(db)
    lines = [HEADER, "# Fix recipes", "",
             "The rewrites `dlarules fix` applies (`dlarules/recipes/`), each tested on a model that violates the "
             "rule it cures and proven in onnxruntime (`tests/test_recipes.py`). *exact*: the same function up to "
             "float rounding; *approximate*: applied only with `--allow-approx`, its error is measured and shown.",
             "", "| recipe | rewrites | exact? | cost | cures |", "|---|---|---|---|---|"]
    exactness = {"always": "exact", "approximate": "approximate",
                 "conditional": "exact in the cases below, else approximate"}
    for name in sorted(REGISTRY):
        r = REGISTRY[name]
        rules = ", ".join(f"[{rid}](rules/{rid}.md)" for rid in cured.get(name, [])) or "-"
        lines.append(f"| [`{name}`](#{name}) | {', '.join(r.ops)} | {exactness[r.exactness]} | {r.cost} | {rules} |")
    for name in sorted(REGISTRY):
        r = REGISTRY[name]
        lines += ["", f"## {name}", "", f"{r.title}.", "", r.doc]
    return "\n".join(lines) + "\n"


def generated(db: Any | None = None) -> dict[str, str]:
    """File name (relative to docs/) -> content."""
    files = {"layers.md": layers_md(), "lowering.md": lowering_md()}
    if db is not None:
        from .report.rulepages import rule_pages
        files.update(rule_pages(db))
        files["recipes.md"] = recipes_md(db)
    return files


def write(out: Path, db: Any | None = None) -> list[Path]:
    """Write the generated pages under `out`; each goes through atomic.write_text_atomic (vetted there)."""
    from .atomic import write_text_atomic
    from .errors import DlarulesError
    written = []
    for name, text in generated(db).items():
        path = out / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:   # --out (or a folder under it) is a file, or cannot be created
            raise DlarulesError(out, f"cannot create the folder {path.parent}: {exc.strerror or exc}") from None
        write_text_atomic(path, text, what="page")
        written.append(path)
    return written
