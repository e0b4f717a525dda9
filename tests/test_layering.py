"""The package's import layering (docs/architecture.md): cli -> api -> features -> core -> checker/partition ->
lowering/matcher/ruledb -> model -> base. Every `import` and `from ... import` of a dlarules module, at module level
or inside a function, is read with ast; an import of a higher layer, or a cycle among the modules, fails."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "dlarules"

# Lowest first. A module may import its own layer and the ones below it. Prefixes name packages (trt., recipes.).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("dlarules.__version__", "dlarules.errors", "dlarules.readers", "dlarules.atomic", "dlarules.versions",
              "dlarules.recipes", "dlarules.recipes.catalog")),
    ("model", ("dlarules.model", "dlarules.folding", "dlarules.layers", "dlarules.flops")),
    ("lowering/matcher/ruledb", ("dlarules.lowering", "dlarules.matcher", "dlarules.ruledb", "dlarules.qdqinfo")),
    ("checker/partition", ("dlarules.checker", "dlarules.partition")),
    ("core", ("dlarules.core",)),
    ("features", ("dlarules.fix", "dlarules.compare", "dlarules.diff", "dlarules.export", "dlarules.docs",
                  "dlarules.fixtures", "dlarules.prove", "dlarules.splice", "dlarules.trtlog", "dlarules.recipes.",
                  "dlarules.trt", "dlarules.trt.", "dlarules.report", "dlarules.report.", "dlarules.split",
                  "dlarules.formats", "dlarules.formats.", "dlarules.config", "dlarules.accept")),
    ("api", ("dlarules.api", "dlarules")),   # the package re-exports the API lazily (dlarules/__init__.py)
    ("cli", ("dlarules.cli", "dlarules.__main__")),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    """The layer index; exact names win over package prefixes (dlarules.recipes.catalog is base data)."""
    for i, (_, names) in enumerate(LAYERS):
        if module in names:
            return i
    for i, (_, names) in enumerate(LAYERS):
        if any(n.endswith(".") and module.startswith(n) for n in names):
            return i
    return None


def import_graph() -> dict[str, set[str]]:
    """module -> the dlarules modules it imports (relative imports resolved; `from . import x` is module x
    when x is one)."""
    files = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("dlarules"):
                    continue
                if target == "dlarules" and [a.name for a in node.names] == ["__version__"]:
                    out.add("dlarules.__version__")   # the version string, not the package's API re-exports
                    continue
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in files]
                if subs:
                    out.update(subs)
                if len(subs) < len(node.names):   # names taken from the module itself
                    out.add(target)
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.startswith("dlarules"))
        graph[mod] = {m for m in out if m != mod}
    return graph


def test_every_module_has_a_layer():
    missing = sorted(m for m in import_graph() if layer_of(m) is None)
    assert not missing, f"add these modules to a layer in LAYERS (and docs/architecture.md): {missing}"


def upward(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
            for m, targets in sorted(graph.items()) for t in sorted(targets)
            if layer_of(m) is not None and layer_of(t) is not None and layer_of(t) > layer_of(m)]


def test_no_upward_import():
    up = upward(import_graph())
    assert not up, "upward imports:\n" + "\n".join(up)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (found := visit(t)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle():
    graph = import_graph()
    # a package's __init__ re-exporting its own submodules is no cycle of layers: drop those edges only
    pruned = {m: {t for t in ts if not (t.startswith(m + "."))} for m, ts in graph.items()}
    cycle = _cycle(pruned)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_features_import_the_core_not_the_facade():
    graph = import_graph()
    for m in ("dlarules.fix", "dlarules.compare", "dlarules.report.text", "dlarules.trt.verify"):
        assert "dlarules.core" in graph[m] and "dlarules.api" not in graph[m], m


@pytest.mark.parametrize("file, mod, src, bad", [
    ("compare.py", "dlarules.compare", "from .api import check\n", "dlarules.api"),   # a feature up to the facade
    ("report/text.py", "dlarules.report.text", "def f():\n    from ..cli import main\n", "dlarules.cli"),
    ("model.py", "dlarules.model", "from . import checker\n", "dlarules.checker"),
])
def test_checker_catches_an_upward_import(tmp_path, monkeypatch, file, mod, src, bad):
    """The test itself finds what it is for: a copy of the package with one upward import added fails."""
    import shutil
    copy = tmp_path / "dlarules"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__", "_rules", "_schemas"))
    target = copy / file
    target.write_text(target.read_text(encoding="utf-8") + "\n" + src, encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "PKG", copy)
    up = upward(import_graph())
    assert len(up) == 1 and up[0].startswith(f"{mod} (") and f"imports {bad} (" in up[0]


def test_checker_catches_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
