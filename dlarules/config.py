"""Project configuration: `[tool.dlarules]` in pyproject.toml or a `dlarules.toml`, found by walking up from each
model (as ruff does). Pure: find, parse, validate, merge; nothing here checks a model or loads the rule DB.

    target = "orin"                 # any option of `check` below, spelled as on the command line without --
    trt = "10.3"
    rules = ["dla-rules"]           # relative to the config file
    min-dla-coverage = 90

    [[tool.dlarules.overrides]]     # later matching overrides win
    files = ["models/det/*.onnx"]   # globs relative to the config file's folder
    precision = "int8+fp16"

    [[tool.dlarules.ignore]]        # an accepted fallback: reported as accepted, not in the exit code
    rule = "POOL-WINDOW"
    node = "/context/*"             # optional fnmatch glob on the ONNX node name (or TensorRT layer name)
    files = ["models/seg/*.onnx"]   # optional
    reason = "the context pool runs on the GPU by design (ticket 123)"

In a `dlarules.toml` the same keys sit at the top level (`[[overrides]]`, `[[ignore]]`). Precedence: command line
> the last matching override > the top level > the defaults. A bad config is one line `path:line: problem`.
"""
from __future__ import annotations

import difflib
import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

try:   # Python 3.11+: in the standard library
    import tomllib
except ModuleNotFoundError:   # pragma: no cover - Python 3.10 (pyproject: tomli there)
    import tomli as tomllib   # type: ignore[no-redef]

from .errors import DlarulesError, clip
from .readers import read_text

CONFIG_NAMES = ("dlarules.toml", "pyproject.toml")   # in one folder, dlarules.toml wins
MAX_CONFIG_BYTES = 1 << 20

# key -> (type check, what it must be). The keys are the command-line options without their `--`.
_STR = (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string")
_STRS = (lambda v: isinstance(v, list) and all(isinstance(x, str) and x.strip() for x in v),
         "a list of non-empty strings")
OPTION_KEYS: dict[str, tuple[Any, str]] = {
    "target": _STR, "trt": _STR, "jetpack": _STR, "platform": _STR, "precision": _STR,
    "dla-core": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
    "rules": _STRS,
    "min-dla-coverage": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 100,
                         "a percentage (a number from 0 to 100)"),
    "max-dla-subgraphs": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
    "dla-only": (lambda v: isinstance(v, bool), "true or false"),
    "format": _STR,
    "input-shape": _STRS,
}
CALL_KEYS = ("format",)            # one value per call: not per model, so not in overrides
DEFAULTS: dict[str, Any] = {"target": "orin", "trt": None, "jetpack": None, "platform": None, "precision": None,
                            "dla-core": None, "rules": None, "min-dla-coverage": None, "max-dla-subgraphs": None,
                            "dla-only": False, "format": "text", "input-shape": None}
IGNORE_KEYS = ("rule", "node", "files", "reason")
TOP_KEYS = tuple(OPTION_KEYS) + ("overrides", "ignore")


@dataclass(frozen=True)
class Ignore:
    """One accepted fallback: a rule ID, optionally only on nodes/layers matching `node` and models matching
    `files`, with the reason the reports show."""

    rule: str
    reason: str
    node: Optional[str] = None
    files: tuple[str, ...] = ()
    source: str = ""               # path:line of its [[ignore]] table, for messages
    base: Optional[Path] = None    # the config file's folder (the `files` globs are relative to it)

    def applies_to(self, model: str | os.PathLike[str]) -> bool:
        return not self.files or matches_files(self.files, model, self.base)

    def matches_names(self, names: list[str]) -> bool:
        """Whether the node glob matches any of `names` (ONNX node names, the TensorRT layer name)."""
        return self.node is None or any(fnmatch.fnmatchcase(n, self.node) for n in names if n)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "node": self.node, "files": list(self.files), "reason": self.reason,
                "source": self.source}


@dataclass(frozen=True)
class Override:
    files: tuple[str, ...]
    options: Mapping[str, Any]
    lines: Mapping[str, int]       # key -> line, for messages
    line: Optional[int] = None


@dataclass
class Config:
    path: Path
    options: dict[str, Any]
    lines: dict[str, int] = field(default_factory=dict)
    overrides: list[Override] = field(default_factory=list)
    ignores: list[Ignore] = field(default_factory=list)

    @property
    def base(self) -> Path:
        return self.path.parent

    def where(self, line: Optional[int]) -> str:
        return f"{self.path}:{line}" if line else str(self.path)


@dataclass
class Settings:
    """The options in force for one model, where each came from, and the ignores that apply to it."""

    options: dict[str, Any]
    origin: dict[str, str]         # key -> "path:line" for the values a config gave (CLI and defaults: absent)
    ignores: list[Ignore]
    config: Optional[Path] = None

    def __getitem__(self, key: str) -> Any:
        return self.options[key]


# ---- finding ---------------------------------------------------------------------------------------------------

def find(start: str | os.PathLike[str]) -> Optional[Path]:
    """The config that applies to `start` (a model file or a folder): the first `dlarules.toml`, or
    `pyproject.toml` holding a [tool.dlarules] table, in its folder or the folders above it."""
    p = Path(os.path.abspath(start))
    folder = p if p.is_dir() else p.parent
    for d in (folder, *folder.parents):
        for name in CONFIG_NAMES:
            c = d / name
            if not c.is_file():
                continue
            if name == "pyproject.toml" and not _has_table(c):
                continue
            return c
    return None


_TABLE = re.compile(r"^\s*\[\[?\s*tool\s*\.\s*[\"']?dlarules[\"']?\s*[.\]]", re.M)


def _has_table(path: Path) -> bool:
    """Cheap test before parsing: does this pyproject.toml mention [tool.dlarules...]? (A pyproject.toml of
    another project is not ours to validate; unreadable ones are skipped as well.)"""
    try:
        return bool(_TABLE.search(read_text(path, "a pyproject.toml", MAX_CONFIG_BYTES)))
    except DlarulesError:
        return False


# ---- parsing ---------------------------------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*[\"']?([A-Za-z0-9_.-]+)[\"']?\s*=")


def _line_index(text: str, prefix: str) -> dict[tuple[str, int, str], int]:
    """(table, occurrence, key) -> line number, where table is '' (top), 'overrides' or 'ignore' below `prefix`
    ('tool.dlarules' in a pyproject.toml, '' in a dlarules.toml); key '' is the table's header. Best effort:
    tomllib gives no positions, so keys written as inline tables have no line."""
    out: dict[tuple[str, int, str], int] = {}
    counts: dict[str, int] = {}
    table: Optional[tuple[str, int]] = ("", 0) if not prefix else None
    for n, raw in enumerate(text.splitlines(), 1):
        m = _HEADER.match(raw)
        if m:
            name = ".".join(part.strip().strip("\"'") for part in m.group(2).split("."))
            if prefix and not (name == prefix or name.startswith(prefix + ".")):
                table = None
                continue
            rest = name[len(prefix):].lstrip(".") if prefix else name
            if m.group(1) == "[[":
                counts[rest] = counts.get(rest, -1) + 1
                table = (rest, counts[rest])
            else:
                table = (rest, 0)
            out.setdefault((table[0], table[1], ""), n)
            continue
        k = _KEY.match(raw)
        if k and table is not None:
            out.setdefault((table[0], table[1], k.group(1)), n)
    return out


def _unknown(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key.replace("_", "-"), known, n=1, cutoff=0.6)
    return f"unknown key {clip(repr(key), 60)}" + (f" (did you mean {close[0]}?)" if close else "") + \
        f"; known: {', '.join(known)}"


def load(path: str | os.PathLike[str]) -> Config:
    """Parse and validate one config file; any problem is a DlarulesError `path:line: problem`."""
    path = Path(os.path.abspath(path))
    text = read_text(path, "a TOML config file", MAX_CONFIG_BYTES)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column \d+\)", msg)
        where = f"{path}:{m.group(1)}" if m else str(path)
        raise DlarulesError(where, f"not valid TOML: {clip(re.sub(r' ?[(]at line.*', '', msg), 160)}") from None
    if path.name == "pyproject.toml":
        prefix = "tool.dlarules"
        table = data.get("tool", {}).get("dlarules") if isinstance(data.get("tool"), dict) else None
        if table is None:
            raise DlarulesError(path, "has no [tool.dlarules] table")
    else:
        prefix = ""
        table = data
    if not isinstance(table, dict):
        raise DlarulesError(path, f"{prefix or 'the file'} must be a table")
    lines = _line_index(text, prefix)

    def at(tab: str, occ: int, key: str) -> str:
        line = lines.get((tab, occ, key)) or lines.get((tab, occ, ""))
        return f"{path}:{line}" if line else str(path)

    def options(raw: Mapping[str, Any], tab: str, occ: int, allowed: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in allowed:
                where = tab and f"[[{tab}]] " or ""
                if tab == "overrides" and key in CALL_KEYS:
                    raise DlarulesError(at(tab, occ, key), f"{where}{key} is one per call; set it at the top level")
                raise DlarulesError(at(tab, occ, key), where + _unknown(key, allowed))
            ok, what = OPTION_KEYS[key]
            if not ok(value):
                raise DlarulesError(at(tab, occ, key), f"{key} must be {what}, not {clip(repr(value), 60)}"
                                    + ("; write versions as strings (trt = \"10.3\")"
                                       if key in ("trt", "jetpack") and isinstance(value, (int, float)) else ""))
            if key == "rules":   # folders relative to the config file
                value = [str((path.parent / v).resolve()) for v in value]
            out[key] = value
        return out

    for key in table:
        if key not in TOP_KEYS:
            raise DlarulesError(at("", 0, key), _unknown(key, TOP_KEYS))
    top = options({k: v for k, v in table.items() if k not in ("overrides", "ignore")}, "", 0, tuple(OPTION_KEYS))
    cfg = Config(path, top, {k: lines.get(("", 0, k), 0) for k in top})
    for occ, raw in enumerate(_tables(table, "overrides", at)):
        files = _files(raw, at("overrides", occ, "files"), required=True)
        opts = options({k: v for k, v in raw.items() if k != "files"}, "overrides", occ,
                       tuple(k for k in OPTION_KEYS if k not in CALL_KEYS))
        cfg.overrides.append(Override(files, opts, {k: lines.get(("overrides", occ, k), 0) for k in opts},
                                      lines.get(("overrides", occ, ""))))
    for occ, raw in enumerate(_tables(table, "ignore", at)):
        for key in raw:
            if key not in IGNORE_KEYS:
                raise DlarulesError(at("ignore", occ, key), "[[ignore]] " + _unknown(key, IGNORE_KEYS))
        rule, reason, node = raw.get("rule"), raw.get("reason"), raw.get("node")
        if not isinstance(rule, str) or not rule.strip():
            raise DlarulesError(at("ignore", occ, "rule"), "[[ignore]] needs rule, a rule ID such as POOL-WINDOW")
        if not isinstance(reason, str) or not reason.strip():
            raise DlarulesError(at("ignore", occ, "reason"), f"[[ignore]] of {clip(rule, 40)} needs a reason "
                                                             f"(a non-empty string the reports show)")
        if node is not None and (not isinstance(node, str) or not node):
            raise DlarulesError(at("ignore", occ, "node"), "[[ignore]] node must be a non-empty string (a glob)")
        files = _files(raw, at("ignore", occ, "files"), required=False)
        cfg.ignores.append(Ignore(rule.strip().upper(), " ".join(reason.split()), node, files,
                                  at("ignore", occ, ""), path.parent))
    return cfg


def _tables(table: Mapping[str, Any], name: str, at: Any) -> list[Mapping[str, Any]]:
    raw = table.get(name, [])
    if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
        raise DlarulesError(at("", 0, name), f"{name} must be an array of tables ([[{name}]])")
    return raw


def _files(raw: Mapping[str, Any], where: str, required: bool) -> tuple[str, ...]:
    files = raw.get("files")
    if files is None:
        if required:
            raise DlarulesError(where, "[[overrides]] needs files, a list of globs such as [\"models/det/*.onnx\"]")
        return ()
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f.strip() for f in files):
        raise DlarulesError(where, f"files must be a glob or a non-empty list of globs, not {clip(repr(files), 60)}")
    return tuple(f.strip() for f in files)


def matches_files(globs: tuple[str, ...], model: str | os.PathLike[str], base: Optional[Path]) -> bool:
    """Whether a model matches any glob: fnmatch on its path relative to `base` ('/' separators; `*` also crosses
    '/'); a glob without '/' also matches the file name alone (`*.onnx`, `yolo*.onnx`)."""
    p = os.path.abspath(model)
    rel = Path(os.path.relpath(p, base)).as_posix() if base is not None else Path(model).as_posix()
    name = Path(p).name
    for g in globs:
        g = g[2:] if g.startswith("./") else g
        if fnmatch.fnmatchcase(rel, g) or ("/" not in g and fnmatch.fnmatchcase(name, g)):
            return True
    return False


# ---- merging ---------------------------------------------------------------------------------------------------

_CACHE: dict[tuple[Path, int, int], Config] = {}
_CACHE_SIZE = 64


def load_cached(path: Path) -> Config:
    """One parse per config file per process (a many-model check finds the same file for every model), keyed by
    its size and modification time (an edited config is never served stale to a long-lived host) and bounded."""
    p = Path(os.path.abspath(path))
    try:
        st = p.stat()
        key = (p, st.st_size, st.st_mtime_ns)
    except OSError:
        return load(p)   # load says what is wrong with it
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        _CACHE[key] = load(p)
    return _CACHE[key]


def _apply(acc: dict[str, Any], origin: dict[str, str], values: Mapping[str, Any], where: Any) -> None:
    # --trt and --jetpack name one release: a layer that gives either replaces both of the layers below it
    if "trt" in values or "jetpack" in values:
        for k in ("trt", "jetpack"):
            acc[k] = None
            origin.pop(k, None)
    for k, v in values.items():
        acc[k] = v
        w = where(k)
        if w is None:
            origin.pop(k, None)
        else:
            origin[k] = w


def resolve(model: str | os.PathLike[str] | None, given: Mapping[str, Any], *,
            config: str | os.PathLike[str] | None = None, use_config: bool = True,
            start: str | os.PathLike[str] | None = None) -> Settings:
    """The options for `model`: `given` (the command-line values actually given, by config key) over the last
    override whose files match it, over the config's top level, over DEFAULTS. `config` names the file (no
    search); `use_config=False` ignores config files. Without a model (`start`: a folder), no override applies."""
    path: Optional[Path] = None
    if use_config:
        path = Path(config) if config is not None else find(model if model is not None else (start or "."))
    acc = dict(DEFAULTS)
    origin: dict[str, str] = {}
    ignores: list[Ignore] = []
    if path is not None:
        cfg = load_cached(path)
        _apply(acc, origin, cfg.options, lambda k: cfg.where(cfg.lines.get(k)))
        if model is not None:
            for o in cfg.overrides:
                if matches_files(o.files, model, cfg.base):
                    _apply(acc, origin, o.options, lambda k, o=o: cfg.where(o.lines.get(k) or o.line))
            ignores = [i for i in cfg.ignores if i.applies_to(model)]
        path = cfg.path
    _apply(acc, origin, {k: v for k, v in given.items() if k in DEFAULTS}, lambda k: None)
    return Settings(acc, origin, ignores, path)
