"""Errors the user can act on: one line naming the file and the problem."""
from __future__ import annotations

from pathlib import Path


class DlarulesError(Exception):
    """A problem with the user's input (model, rules, options): printed as one line, exit code 2."""

    def __init__(self, source: str | Path | None, problem: str) -> None:
        self.source = str(source) if source is not None else None
        self.problem = problem
        super().__init__(self.line())

    def line(self) -> str:
        """One line of at most MAX_LINE characters, whatever the message quotes (a 5,000-character option value,
        a path or a list of input names): the source is shortened in the middle (a path's file name stays), the
        problem at its end."""
        source = _middle(self.source, MAX_SOURCE) if self.source else ""
        text = f"{source}: {self.problem}" if source else str(self.problem)
        return clip(text, MAX_LINE)


# `dlarules: error: ` (17 characters) + the line stays within the 300 characters every error line promises.
MAX_LINE = 280
MAX_SOURCE = 120


def _middle(text: str, limit: int) -> str:
    s = " ".join(str(text).split())
    if len(s) <= limit:
        return s
    half = (limit - 3) // 2
    return s[:half] + "..." + s[len(s) - (limit - 3 - half):]


class ModelError(DlarulesError):
    """The ONNX model cannot be used."""


class RulesError(DlarulesError):
    """The rule database cannot be used."""


class OptionError(DlarulesError):
    """A command-line or API option is invalid."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type when it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def clip(text: object, limit: int = 80) -> str:
    """`text` cut to `limit` characters (with an ellipsis), so a message quoting user input stays one short line."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: max(0, limit - 3)] + "..."


class DependencyError(DlarulesError):
    """A package a command needs is not installed: one line saying what to install (exit 2, not a bug)."""


# import name -> (what needs it, what to install). onnxruntime: fix's proof and its constant folding;
# onnx-graphsurgeon: fix's rewrites; tensorrt: verify's Python-API backend.
_DEPENDENCIES: dict[str, tuple[str, str]] = {
    "onnxruntime": ("dlarules fix (the proof and fold-constants run the model)", "pip install onnxruntime"),
    "onnx_graphsurgeon": ("dlarules fix (its rewrites)", "pip install onnx-graphsurgeon"),
    "onnx": ("dlarules (reading models)", "pip install onnx"),
    "numpy": ("dlarules (reading models)", "pip install numpy"),
    "yaml": ("dlarules (the rule DB)", "pip install pyyaml"),
    "jsonschema": ("dlarules (validating the rule DB)", "pip install jsonschema"),
    "tensorrt": ("dlarules verify --backend python",
                 "pip install -e '.[trt]' or JetPack's python3-libnvinfer, or use --backend trtexec"),
}


def dependency_error(exc: ImportError) -> DependencyError | None:
    """The one-line error for an import of a missing third-party package (None: not one we know: a bug)."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if not isinstance(exc, ModuleNotFoundError) or name not in _DEPENDENCIES:
        return None
    needed_by, install = _DEPENDENCIES[name]
    return DependencyError(name, f"not installed; {needed_by} needs it: {install}")
