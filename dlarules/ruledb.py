"""The rule database: YAML files under rules/, validated against schemas/, selected per target.

Layout of a rules directory:
  releases.yaml   DB version, hardware, platforms, TensorRT releases (parser behaviour, loadable limit,
                  DLA version) and the JetPack -> TensorRT mapping
  *.yaml          rule files: `rules:` lists, one limit per rule

A rule ID may appear in several entries whose scopes (hardware x TensorRT range x platform x precision) do not
overlap: that is how a limit changes between releases. Extra directories layered on top add rules, or replace
every entry of an ID they redefine, and may add releases.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import __version__
from .errors import DlarulesError, OptionError, RulesError, clip, first_line
from .layers import KINDS
from .matcher import ConditionError, Pred, check_template, compile_condition
from .versions import VersionRange, compare, parse_range, parse_version

PRECISIONS = ("fp16", "int8")            # a rule's `precision` scope when it names none
LAYER_PRECISIONS = ("fp16", "int8", "fp32")  # what a layer may be evaluated in (fp32: strongly typed float32)
GRAPH = "graph"                          # a mode whose layer precisions come from the graph's tensor types
CONFIDENCE = ("documented", "observed", "unverified")
RELEASES_FILE = "releases.yaml"


def packaged_rules_dir() -> Path:
    """The rules shipped with dlarules: rules/ beside the package in a checkout, dlarules/_rules in a wheel.
    DLARULES_BASE_RULES points at another base (a contributor's working copy) instead."""
    env = os.environ.get("DLARULES_BASE_RULES")
    if env:
        if not (Path(env) / RELEASES_FILE).is_file():
            raise RulesError(env, f"DLARULES_BASE_RULES: no {RELEASES_FILE} in this directory")
        return Path(env)
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "rules", here / "_rules"):
        if (cand / RELEASES_FILE).is_file():
            return cand
    raise RulesError(here, "the packaged rule database is missing (no rules/releases.yaml)")


def schemas_dir() -> Path:
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "schemas", here / "_schemas"):
        if (cand / "rules.schema.json").is_file():
            return cand
    raise RulesError(here, "the JSON Schemas are missing (no schemas/rules.schema.json)")


# ---------------------------------------------------------------------------------------------- data

@dataclass(frozen=True)
class Source:
    doc: str
    section: str = ""
    url: str = ""
    quote: str = ""

    def __str__(self) -> str:
        s = self.doc + (f", {self.section}" if self.section else "")
        return s + (f" <{self.url}>" if self.url else "")


@dataclass(eq=False)
class Rule:
    id: str
    title: str
    layers: tuple[str, ...] | None          # None: every layer kind
    hardware: tuple[str, ...]
    tensorrt: VersionRange
    platforms: tuple[str, ...]
    precisions: tuple[str, ...]
    when: Pred | None
    require: Pred
    message: str
    source: Source
    confidence: str
    fix: str | dict[str, str] | None
    fixtures: list[dict[str, Any]]
    file: str
    line: int
    raw: dict[str, Any]
    never: bool = False
    uses_neighbors: bool = False   # reads the producer/consumer layers
    uses_identity: bool = False    # reads a layer or node name (verdicts cannot be shared between layers)

    def applies(self, hardware: str, trt: str, platform: str, precision: str) -> bool:
        return (hardware in self.hardware and self.tensorrt.contains(trt) and platform in self.platforms
                and precision in self.precisions)

    def scope_text(self) -> str:
        parts = ["/".join(self.hardware), f"TensorRT {self.tensorrt}"]
        if set(self.platforms) != {"jetson", "drive"}:
            parts.append("/".join(self.platforms))
        if set(self.precisions) != set(PRECISIONS):
            parts.append("/".join(self.precisions))
        return ", ".join(parts)


@dataclass(frozen=True)
class Release:
    version: str
    hardware: tuple[str, ...]
    platforms: tuple[str, ...]
    parser: Mapping[str, Any]
    loadable_limit: int
    loadable_evidence: str
    dla: Mapping[str, str]
    note: str = ""
    # Does DLA take Q/DQ networks ({dla, confidence, source}); `parser.qdq_fusion` follows it (lowering).
    explicit_quantization: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Mode:
    """A build mode (--precision): its trtexec/builder flags and the precisions a layer may run in on DLA, in
    the order TensorRT tries them (`from_graph`: the graph's tensor types decide, one precision per layer)."""

    name: str
    title: str
    trtexec: tuple[str, ...]
    builder_flags: tuple[str, ...] = ()
    network_flags: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ("fp16",)
    from_graph: bool = False
    tensorrt: VersionRange = field(default_factory=lambda: parse_range("*"))
    note: str = ""
    source: str = ""


@dataclass(frozen=True)
class Module:
    """A Jetson / DRIVE module: the hardware family whose rules it uses and its DLA cores."""

    name: str
    title: str
    hardware: str
    dla_cores: int
    platform: str | None = None
    default_tensorrt: str | None = None
    source: str = ""


@dataclass(frozen=True)
class Target:
    """What the user builds for: hardware, TensorRT version, platform, build mode, module.
    `precision` is what the rules' `precision` field sees: during a check, the precision being tried for a
    layer (the checker makes one Target per precision); `mode` is the build mode the user asked for."""

    hardware: str
    trt: str
    release: Release
    platform: str = "jetson"
    precision: str = "fp16"
    mode: Mode | None = None
    module: Module | None = None
    dla_cores: int = 2
    dla_core: int | None = None

    @property
    def mode_name(self) -> str:
        return self.mode.name if self.mode is not None else self.precision

    @property
    def chain(self) -> tuple[str, ...]:
        """The precisions a layer may run in on DLA, in order (empty for a strongly typed mode)."""
        if self.mode is None:
            return (self.precision,)
        return () if self.mode.from_graph else self.mode.precisions

    @property
    def hardware_text(self) -> str:
        return f"{self.module.name} ({self.hardware})" if self.module is not None else self.hardware

    def __str__(self) -> str:
        return f"{self.hardware_text} / TensorRT {self.trt} / {self.platform} / {self.mode_name}"


@dataclass
class Problem:
    file: str
    line: int
    rule_id: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule_id or '-'}: {self.problem}"


@dataclass
class RuleSet:
    """The rules that hold for one target, indexed by layer kind for an O(layers) walk. `rules` hold for
    `target.precision`; `for_precision` gives the set for another precision of the build mode (selected once)."""

    target: Target
    rules: list[Rule]
    _by_kind: dict[str, list[Rule]] = field(default_factory=dict)
    _all: list[Rule] | None = None                     # every rule of the DB, to select other precisions
    _children: dict[str, "RuleSet"] = field(default_factory=dict)
    # the DB's subgraph limits that hold for the target (releases.yaml `subgraph_limits`), for the partition
    subgraph_limits: dict[str, Any] = field(default_factory=dict)

    @property
    def chain(self) -> tuple[str, ...]:
        return self.target.chain

    @property
    def from_graph(self) -> bool:
        return self.target.mode is not None and self.target.mode.from_graph

    def for_precision(self, precision: str) -> "RuleSet":
        if precision == self.target.precision:
            return self
        got = self._children.get(precision)
        if got is None:
            t = replace(self.target, precision=precision)
            rules = [r for r in (self._all if self._all is not None else self.rules)
                     if r.applies(t.hardware, t.trt, t.platform, precision)]
            got = self._children[precision] = RuleSet(t, rules)
        return got

    def for_kind(self, kind: str) -> list[Rule]:
        got = self._by_kind.get(kind)
        if got is None:
            never = [r for r in self.rules if r.never and r.layers and kind in r.layers]
            specific = [r for r in self.rules if not r.never and r.layers and kind in r.layers]
            general = [r for r in self.rules if r.layers is None]
            got = self._by_kind[kind] = never + specific + general
        return got


# ---------------------------------------------------------------------------------------------- loading

_LOADER: Any = None


def _line_loader() -> Any:
    """The YAML loader that records the line of every mapping with an `id` or `version` (rules, releases) for error
    messages. Made on first use: a DB served from its cache never imports yaml (start-up, bench/bench_cli.py)."""
    global _LOADER
    if _LOADER is None:
        import yaml

        class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
            def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:  # type: ignore[override]
                m = super().construct_mapping(node, deep=deep)
                if "id" in m or "version" in m:
                    m["__line__"] = node.start_mark.line + 1
                return m
        _LOADER = _LineLoader
    return _LOADER


def _read_yaml(path: Path) -> Any:
    # readers.load_yaml: a regular file (a FIFO would block), within the size and alias-expansion budgets, UTF-8
    import yaml
    from .readers import load_yaml
    try:
        return load_yaml(path, _line_loader())
    except RulesError:
        raise
    except DlarulesError as exc:
        raise RulesError(exc.source, exc.problem) from None
    except RecursionError:
        raise RulesError(path, "not valid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise RulesError(where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from None


def _strip_lines(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip_lines(v) for k, v in x.items() if k != "__line__"}
    if isinstance(x, list):
        return [_strip_lines(v) for v in x]
    return x


_SCHEMAS: dict[str, Any] = {}


def _validator(name: str) -> Any:
    v = _SCHEMAS.get(name)
    if v is None:
        import jsonschema  # imported late: only needed when a file is not in the cache
        schema = json.loads((schemas_dir() / name).read_text(encoding="utf-8"))
        v = _SCHEMAS[name] = jsonschema.Draft202012Validator(schema)
    return v


def _schema_problems(data: Any, schema: str, path: Path) -> list[Problem]:
    problems = []
    clean = _strip_lines(data)
    for err in sorted(_validator(schema).iter_errors(clean), key=lambda e: list(map(str, e.absolute_path))):
        line, rid = _locate(data, list(err.absolute_path))
        where = "/".join(str(p) for p in err.absolute_path)
        problems.append(Problem(str(path), line, rid, f"{where + ': ' if where else ''}{err.message}"))
    return problems


def _locate(data: Any, path: list[Any]) -> tuple[int, str]:
    """Line and rule id of the innermost mapping along a JSON path."""
    line, rid, node = 1, "", data
    for p in path:
        if isinstance(node, dict):
            line = node.get("__line__", line)
            rid = node.get("id", rid) if isinstance(node.get("id"), str) else rid
            node = node.get(p)
        elif isinstance(node, list) and isinstance(p, int) and p < len(node):
            node = node[p]
        else:
            break
    if isinstance(node, dict):
        line = node.get("__line__", line)
        rid = node.get("id", rid) if isinstance(node.get("id"), str) else rid
    return line, rid


@dataclass
class RawDB:
    """Validated YAML data of one or more layered directories (what the cache stores)."""

    dirs: list[str]
    meta: dict[str, Any]
    releases: list[dict[str, Any]]
    jetpack: dict[str, Any]
    rules: list[dict[str, Any]]          # each with __file__ and __line__
    problems: list[Problem]


def _rule_files(d: Path) -> list[Path]:
    if not os.path.isdir(d):   # (False, not an exception, for a name over the file system's limit)
        return [d]   # a file (or a FIFO, a device): _read_yaml says what is wrong with it
    return sorted(p for p in d.glob("*.yaml") if p.name != RELEASES_FILE)


def _read_or_problem(path: Path, problems: list[Problem]) -> Any:
    try:
        return _read_yaml(path)
    except RulesError as exc:
        where = exc.source or str(path)
        file, _, line = where.rpartition(":")
        if not line.isdigit():
            file, line = where, "1"
        problems.append(Problem(file, int(line), "", exc.problem))
        return None


def _read_dir(d: Path, is_base: bool) -> tuple[dict[str, Any] | None, list[dict], list[Problem]]:
    problems: list[Problem] = []
    meta = None
    rel = d / RELEASES_FILE
    if d.is_dir() and rel.is_file():
        meta = _read_or_problem(rel, problems)
        if meta is not None:
            problems += _schema_problems(meta, "releases.schema.json", rel)
    elif is_base:
        problems.append(Problem(str(rel), 1, "", "missing: the base rules directory needs releases.yaml"))
    rules: list[dict] = []
    for f in _rule_files(d):
        data = _read_or_problem(f, problems)
        if data is None:
            continue
        problems += _schema_problems(data, "rules.schema.json", f)
        if isinstance(data, dict) and isinstance(data.get("rules"), list):
            for r in data["rules"]:
                if isinstance(r, dict):
                    r["__file__"] = str(f)
                    rules.append(r)
    return meta, rules, problems


def _fingerprint(dirs: list[Path]) -> str:
    h = hashlib.sha256(__version__.encode())
    sd = schemas_dir()
    for f in [sd / "rules.schema.json", sd / "releases.schema.json"] + [
            p for d in dirs for p in ([d / RELEASES_FILE] + _rule_files(d))]:
        try:
            st = f.stat()
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"{f}|missing".encode())
    return h.hexdigest()[:32]


def _cache_path(key: str) -> Path:
    base = os.environ.get("DLARULES_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "dlarules")
    return Path(base) / f"ruledb-{key}.pickle"


def read_raw(dirs: list[Path], use_cache: bool = True) -> RawDB:
    key = _fingerprint(dirs) if use_cache else ""
    if use_cache:
        try:
            with open(_cache_path(key), "rb") as fh:
                raw = pickle.load(fh)
            if isinstance(raw, RawDB):
                return raw
        except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError):
            pass
    raw = _read_uncached(dirs)
    if use_cache:
        _write_cache(_cache_path(key), raw)
    return raw


def _write_cache(path: Path, raw: RawDB) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(raw, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home is fine: we just do not cache


def _read_uncached(dirs: list[Path]) -> RawDB:
    problems: list[Problem] = []
    meta: dict[str, Any] = {}
    releases: dict[str, dict] = {}
    jetpack: dict[str, Any] = {}
    by_id: dict[str, list[dict]] = {}
    order: list[str] = []
    for i, d in enumerate(dirs):
        try:
            os.stat(d)
        except FileNotFoundError:
            raise RulesError(d, "rules directory not found") from None
        except (OSError, ValueError) as exc:   # a name over the file system's limit, a NUL byte, a link loop
            raise RulesError(d, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
        m, rules, probs = _read_dir(d, is_base=i == 0)
        problems += probs
        if isinstance(m, dict):
            if i == 0:
                meta = {k: v for k, v in m.items() if k not in ("releases", "jetpack")}
            else:
                for k in ("hardware", "platforms"):
                    if isinstance(m.get(k), dict):
                        meta.setdefault(k, {}).update(m[k])
            for r in m.get("releases") or []:
                if isinstance(r, dict) and "version" in r:
                    r["__file__"] = str(d / RELEASES_FILE)
                    releases[str(r["version"])] = r
            jetpack.update(m.get("jetpack") or {})
        seen_here: set[str] = set()
        for r in rules:
            rid = r.get("id")
            if not isinstance(rid, str):
                continue
            if i > 0 and rid not in seen_here:
                by_id.pop(rid, None)  # a layered directory replaces every entry of an ID it defines
                if rid in order:
                    order.remove(rid)
            seen_here.add(rid)
            if rid not in by_id:
                order.append(rid)
            by_id.setdefault(rid, []).append(r)
    flat = [r for rid in order for r in by_id[rid]]
    return RawDB([str(d) for d in dirs], meta, list(releases.values()), jetpack, flat, problems)


def _mentions(*conds: Any, keys: tuple[str, ...] = (), attrs: tuple[str, ...] = ()) -> bool:
    """Does a condition use one of these subject keys, or read one of these attributes?"""
    def walk(c: Any) -> bool:
        if isinstance(c, dict):
            if any(k in c for k in keys) or c.get("attr") in attrs:
                return True
            if any(c.get(k) in attrs for k in ("lt_attr", "le_attr", "eq_attr")):
                return True
            return any(walk(v) for v in c.values())
        if isinstance(c, list):
            return any(walk(v) for v in c)
        return False
    return any(walk(c) for c in conds)


# ---------------------------------------------------------------------------------------------- the DB

MAX_NAME = 40   # longer than any hardware, module, release, platform or mode name


def _short(value: str | None) -> str | None:
    return value if value is None or len(str(value)) <= MAX_NAME else clip(value, MAX_NAME)


class RuleDB:
    """A loaded, checked rule database. Build with `RuleDB.load()`."""

    def __init__(self, raw: RawDB, recipes: Iterable[str] | None = None) -> None:
        self.raw = raw
        self.dirs = raw.dirs
        self.version: str = str(raw.meta.get("db_version", "0"))
        self.hardware: dict[str, dict] = dict(raw.meta.get("hardware") or {})
        self.platforms: dict[str, dict] = dict(raw.meta.get("platforms") or {})
        self.defaults: dict[str, Any] = dict(raw.meta.get("defaults") or {})
        self.problems: list[Problem] = list(raw.problems)
        if recipes is None:
            from .recipes.catalog import RECIPES
            recipes = RECIPES
        self._recipes = set(recipes)
        self.releases: list[Release] = self._releases(raw.releases)
        self.modes: list[Mode] = self._modes(raw.meta.get("modes") or [])
        # limits on a DLA subgraph as a whole (releases.yaml `subgraph_limits`), applied by the partition
        self.subgraph_limits: dict[str, dict] = dict(raw.meta.get("subgraph_limits") or {})
        self.modules: dict[str, Module] = {}
        self.ambiguous_modules: dict[str, list[str]] = {}
        self._modules(raw.meta.get("modules") or {})
        self.jetpack: dict[str, dict] = {str(k): v for k, v in raw.jetpack.items()}
        self.rules: list[Rule] = []
        for r in raw.rules:
            try:
                rule = self._compile(r)
            except (AttributeError, TypeError, ValueError, KeyError) as exc:
                # a field of the wrong type (the schema problem says which): a problem to list, not a crash
                self.problems.append(Problem(str(r.get("__file__", "?")), int(r.get("__line__", 1) or 1),
                                             str(r.get("id", "")), f"cannot compile the rule: {first_line(exc)}"))
                continue
            if rule is not None:
                self.rules.append(rule)
        self.problems += self._check_overlaps()

    # -- construction
    @classmethod
    def load(cls, extra_dirs: Iterable[str | os.PathLike[str]] = (), *, base: str | os.PathLike[str] | None = None,
             strict: bool = True, use_cache: bool = True) -> "RuleDB":
        """Load the packaged DB (or `base`) with `extra_dirs` layered on top, plus DLARULES_RULES dirs."""
        dirs = [Path(base) if base else packaged_rules_dir()]
        env = os.environ.get("DLARULES_RULES", "")
        dirs += [Path(p) for p in env.split(os.pathsep) if p.strip()]
        dirs += [Path(p) for p in extra_dirs]
        db = cls(read_raw(dirs, use_cache=use_cache))
        if strict and db.problems:
            first = db.problems[0]
            more = f" (and {len(db.problems) - 1} more; run `dlarules rules validate`)" if len(db.problems) > 1 else ""
            raise RulesError(f"{first.file}:{first.line}", f"{first.rule_id + ': ' if first.rule_id else ''}"
                                                           f"{first.problem}{more}")
        return db

    def subgraph_limit(self, name: str, trt: str) -> dict[str, Any] | None:
        """The `subgraph_limits` entry `name` if it holds for TensorRT `trt`, else None."""
        entry = self.subgraph_limits.get(name)
        if not entry or not parse_range(str(entry.get("tensorrt", "*"))).contains(trt):
            return None
        return entry

    def _releases(self, raw: list[dict]) -> list[Release]:
        out = []
        for r in raw:
            try:
                v = str(r["version"])
                parse_version(v)
                lim = r.get("loadable_limit") or {}
                eq = dict(r.get("explicit_quantization") or {})
                parser = {**dict(r.get("parser") or {}), "qdq_fusion": bool(eq.get("dla", False))}
                out.append(Release(v, tuple(r.get("hardware") or ()), tuple(r.get("platforms") or ("jetson",)),
                                   parser, int(lim.get("per_core", 16)),
                                   str(lim.get("evidence", "")), dict(r.get("dla") or {}), str(r.get("note", "")), eq))
            except (KeyError, ValueError, TypeError) as exc:
                self.problems.append(Problem(r.get("__file__", RELEASES_FILE), r.get("__line__", 1), "",
                                             f"release {r.get('version')!r}: {exc}"))
        out.sort(key=lambda rel: parse_version(rel.version))
        return out

    def _modes(self, raw: list[dict]) -> list[Mode]:
        out = []
        for m in raw:
            try:
                prec = m.get("precisions")
                src = m.get("source") or {}
                out.append(Mode(str(m["mode"]), str(m.get("title", m["mode"])), tuple(m.get("trtexec") or ()),
                                tuple(m.get("builder_flags") or ()), tuple(m.get("network_flags") or ()),
                                () if prec == GRAPH else tuple(prec or ("fp16",)), prec == GRAPH,
                                parse_range(str(m.get("tensorrt", "*"))), str(m.get("note", "")),
                                " ".join(str(src[k]) for k in ("doc", "url") if src.get(k))))
            except (KeyError, ValueError, TypeError) as exc:
                self.problems.append(Problem(RELEASES_FILE, 1, "", f"mode {m.get('mode')!r}: {exc}"))
        for i, a in enumerate(out):
            for b in out[i + 1:]:
                if a.name == b.name and any(a.tensorrt.contains(r.version) and b.tensorrt.contains(r.version)
                                            for r in self.releases):
                    self.problems.append(Problem(RELEASES_FILE, 1, "", f"mode {a.name!r}: entries overlap "
                                                                       "(give them disjoint tensorrt ranges)"))
        return out

    def _modules(self, raw: dict[str, dict]) -> None:
        for name, m in raw.items():
            hw = str(m.get("hardware", ""))
            if hw not in self.hardware:
                self.problems.append(Problem(RELEASES_FILE, 1, "", f"module {name!r}: unknown hardware {hw!r}"))
                continue
            if m.get("choose"):
                self.ambiguous_modules[str(name)] = [str(c) for c in m["choose"]]
                continue
            self.modules[str(name)] = Module(str(name), str(m.get("title", name)), hw, int(m.get("dla_cores", 2)),
                                             m.get("platform"), m.get("default_tensorrt"), str(m.get("source", "")))
        for name, picks in self.ambiguous_modules.items():
            for c in picks:
                if c not in self.modules:
                    self.problems.append(Problem(RELEASES_FILE, 1, "", f"module {name!r}: unknown module {c!r}"))

    def _compile(self, r: dict) -> Rule | None:
        rid, file, line = r.get("id", ""), r.get("__file__", "?"), r.get("__line__", 1)

        def bad(msg: str) -> None:
            self.problems.append(Problem(file, line, rid, msg))

        layer = r.get("layer")
        layers = None if layer in (None, "*") else tuple([layer] if isinstance(layer, str) else layer)
        for k in layers or ():
            if k not in KINDS:
                bad(f"unknown layer kind {k!r}")
                return None
        hardware = tuple(r.get("hardware") or self.hardware.keys())
        for h in hardware:
            if h not in self.hardware:
                bad(f"unknown hardware {h!r} (known: {', '.join(self.hardware)})")
                return None
        platforms = tuple(r.get("platform") or self.platforms.keys() or ("jetson", "drive"))
        for p in platforms:
            if self.platforms and p not in self.platforms:
                bad(f"unknown platform {p!r}")
                return None
        precisions = tuple(r.get("precision") or PRECISIONS)
        try:
            trange = parse_range(str(r.get("tensorrt", "*")))
        except ValueError as exc:
            bad(f"tensorrt: {exc}")
            return None
        kinds = list(layers) if layers else None
        try:
            when = compile_condition(r["when"], kinds, "when") if "when" in r else None
            require = compile_condition(r.get("require"), kinds, "require")
        except ConditionError as exc:
            bad(str(exc))
            return None
        except KeyError as exc:
            bad(f"missing {exc}")
            return None
        for p in check_template(str(r.get("message", "")), kinds):
            bad(p)
        fix = r.get("fix")
        for name in (fix.values() if isinstance(fix, dict) else [fix] if fix is not None else []):
            if name not in self._recipes:
                bad(f"unknown fix recipe {name!r} (known: {', '.join(sorted(self._recipes))})")
        fixtures = list(r.get("fixtures") or [])
        expects = {f.get("expect") for f in fixtures if isinstance(f, dict)}
        if not {"violate", "pass"} <= expects:
            bad("needs fixtures: at least one `expect: violate` and one `expect: pass`")
        src = r.get("source") or {}
        return Rule(rid, str(r.get("title", "")), layers, hardware, trange, platforms, precisions, when, require,
                    str(r.get("message", "")), Source(str(src.get("doc", "")), str(src.get("section", "")),
                                                      str(src.get("url", "")), str(src.get("quote", ""))),
                    str(r.get("confidence", "unverified")), fix, fixtures, file, line, _strip_lines(r),
                    never=r.get("require") == {"never": True} and "when" not in r,
                    uses_neighbors=_mentions(r.get("when"), r.get("require"), keys=("producer", "consumers")),
                    uses_identity=_mentions(r.get("when"), r.get("require"), attrs=("name", "node")))

    def _check_overlaps(self) -> list[Problem]:
        known = [rel.version for rel in self.releases]
        by_id: dict[str, list[Rule]] = {}
        for rule in self.rules:
            by_id.setdefault(rule.id, []).append(rule)
        problems = []
        for rid, entries in by_id.items():
            for i, a in enumerate(entries):
                for b in entries[i + 1:]:
                    hw = set(a.hardware) & set(b.hardware)
                    pl = set(a.platforms) & set(b.platforms)
                    pr = set(a.precisions) & set(b.precisions)
                    both = [v for v in known if a.tensorrt.contains(v) and b.tensorrt.contains(v)]
                    if hw and pl and pr and both:
                        problems.append(Problem(b.file, b.line, rid, f"entries of this ID overlap (with line {a.line}) "
                                                f"for {'/'.join(sorted(hw))} TensorRT {', '.join(both)}: "
                                                f"give them disjoint ranges"))
        return problems

    # -- queries
    @property
    def target_names(self) -> list[str]:
        """What --target accepts: the hardware families, then the modules."""
        return [*self.hardware, *self.modules, *self.ambiguous_modules]

    def resolve_module(self, name: str) -> tuple[str, Module | None]:
        """--target NAME -> (hardware family, module or None for a family name). A module without DLA, or an
        ambiguous name, is an error."""
        name = _short(name)
        n = name.lower()
        if n in self.hardware:
            return n, None
        if n in self.ambiguous_modules:
            picks = [self.modules[c] for c in self.ambiguous_modules[n] if c in self.modules]
            raise OptionError("--target", f"{name!r} is ambiguous: " + " or ".join(
                f"{m.name} ({m.title}, {m.dla_cores} DLA core{'s' if m.dla_cores != 1 else ''})" for m in picks)
                + "; pick one")
        mod = self.modules.get(n)
        if mod is None:
            raise OptionError("--target", f"unknown hardware {name!r} (families and modules: {', '.join(self.target_names)})")
        if mod.dla_cores == 0:
            with_dla = ", ".join(m.name for m in self.modules.values() if m.hardware == mod.hardware and m.dla_cores)
            raise OptionError("--target", f"{mod.name}: {mod.title} has no DLA cores, so TensorRT runs the whole "
                                          f"network on its GPU (modules with DLA: {with_dla})")
        return mod.hardware, mod

    def resolve_hardware(self, name: str) -> str:
        return self.resolve_module(name)[0]

    def family_dla_cores(self, hardware: str) -> int:
        """The most DLA cores a module of this family has (2 when no module says)."""
        return max((m.dla_cores for m in self.modules.values() if m.hardware == hardware), default=2)

    def mode_names(self) -> list[str]:
        seen: dict[str, None] = {}
        for m in self.modes:
            seen.setdefault(m.name, None)
        return list(seen)

    def modes_for(self, trt: str) -> list[Mode]:
        return [m for m in self.modes if m.tensorrt.contains(trt)]

    def mode_for_precision(self, precision: str) -> str:
        """The first build mode whose layers may run in `precision` (a strongly typed mode for the others)."""
        for m in self.modes:
            if precision in m.precisions:
                return m.name
        return next((m.name for m in self.modes if m.from_graph), precision)

    def _mode(self, name: str | None, trt: str) -> Mode | None:
        """The build mode for --precision NAME on this release; the release's first mode when NAME is None and
        the default does not exist there. None when the DB defines no modes (an old layered DB)."""
        if not self.modes:
            return None
        here = self.modes_for(trt)
        want = (name or str(self.defaults.get("precision", "fp16"))).lower()
        got = next((m for m in here if m.name == want), None)
        if got is not None:
            return got
        if want not in self.mode_names():
            raise OptionError("--precision", f"{want!r} is not a build mode (modes: {', '.join(self.mode_names())})")
        if name is None and here:
            return here[0]
        there = ", ".join(m.name for m in here) or "none"
        note = next((m.note for m in here if m.from_graph), "")   # e.g. 11.x: how to get FP16 there
        raise OptionError("--precision", f"{want}: TensorRT {trt} has no {want} build mode (modes there: {there})"
                                         + (f"; {note}" if note else ""))

    def release_for(self, trt: str, hardware: str | None = None, platform: str = "jetson") -> Release:
        """The release entry a version belongs to: '8.5.2' -> 8.5; an unknown release is an error."""
        try:
            v = parse_version(trt)
        except ValueError:
            raise OptionError("--trt", f"{clip(trt, 40)!r} is not a TensorRT version such as 8.6 or 10.3") from None
        cands = [r for r in self.releases if parse_version(r.version) == v[:len(parse_version(r.version))]]
        cands.sort(key=lambda r: len(parse_version(r.version)), reverse=True)
        if not cands:
            known = ", ".join(r.version for r in self.releases if hardware is None or hardware in r.hardware)
            raise OptionError("--trt", f"TensorRT {trt} is not in the rule DB (known releases: {known}); "
                                       f"add it to rules/releases.yaml")
        rel = cands[0]
        if hardware is not None and hardware not in rel.hardware:
            ok = ", ".join(r.version for r in self.releases if hardware in r.hardware)
            raise OptionError("--trt", f"TensorRT {trt} has no DLA support for {hardware} "
                                       f"(releases with DLA on {hardware}: {ok})")
        if platform not in rel.platforms:
            raise OptionError("--platform", f"TensorRT {trt} is not a {platform} release in the rule DB "
                                            f"(platforms: {', '.join(rel.platforms)})")
        return rel

    def target(self, hardware: str, trt: str | None = None, *, jetpack: str | None = None,
               platform: str | None = None, precision: str | None = None, dla_core: int | None = None) -> Target:
        # a value over MAX_NAME characters names nothing in the DB: cut short, it stays unknown and the messages
        # below quote it briefly (with the list of known values still on the line)
        trt, jetpack, platform, precision = (_short(v) for v in (trt, jetpack, platform, precision))
        hw, module = self.resolve_module(hardware)
        if module is not None and module.platform:
            if platform is not None and platform != module.platform:
                raise OptionError("--platform", f"{platform}: {module.title} (--target {module.name}) is a "
                                                f"{module.platform} platform")
            platform = module.platform
        platform = platform or str(self.defaults.get("platform", "jetson"))
        cores = module.dla_cores if module is not None else self.family_dla_cores(hw)
        if dla_core is not None and not 0 <= dla_core < cores:
            what = module.title if module is not None else f"{hw} (up to {cores} DLA cores)"
            raise OptionError("--dla-core", f"{dla_core}: {what} has DLA core" + (
                f" 0 only" if cores == 1 else f"s 0 to {cores - 1}"))
        asked = "--trt" if trt is not None else "--jetpack" if jetpack is not None else None
        if trt is None and jetpack is None and module is not None and module.default_tensorrt:
            trt = module.default_tensorrt
        if jetpack is not None:
            jp = self.jetpack.get(str(jetpack))
            if jp is None:
                raise OptionError("--jetpack", f"JetPack {jetpack} is not in the rule DB (known: "
                                               f"{', '.join(self.jetpack)})")
            if trt is not None and compare(str(trt), str(jp["tensorrt"])) != 0:
                raise OptionError("--trt", f"JetPack {jetpack} ships TensorRT {jp['tensorrt']}, not {trt}")
            if hw not in jp.get("hardware", []):
                raise OptionError("--jetpack", f"JetPack {jetpack} does not support DLA on {hw}")
            trt = str(jp["tensorrt"])
        if trt is None:
            trt = str(self.hardware[hw].get("default_tensorrt"))
        try:
            release = self.release_for(str(trt), hw, platform)
        except OptionError as exc:
            if exc.source != "--platform":
                raise
            # a version that has no release on the platform: name what the user gave (the version, or the module
            # that implies the platform), not an option they did not use
            implied = module is not None and bool(module.platform)
            who = asked or ("--target" if implied else "--platform")
            extra = f"; --target {module.name} is a {platform} platform" if implied else ""
            raise OptionError(who, exc.problem + extra) from None
        mode = self._mode(precision, str(trt))
        if mode is None:   # a DB without modes: the precision is the mode
            p = (precision or str(self.defaults.get("precision", "fp16"))).lower()
            if p not in PRECISIONS:
                raise OptionError("--precision", f"{p!r} is not one of {', '.join(PRECISIONS)}")
            return Target(hw, str(trt), release, platform, p, None, module, cores, dla_core)
        first = mode.precisions[0] if mode.precisions else "fp16"
        return Target(hw, str(trt), release, platform, first, mode, module, cores, dla_core)

    def select(self, target: Target) -> RuleSet:
        rules = [r for r in self.rules if r.applies(target.hardware, target.trt, target.platform, target.precision)]
        limits = {name: entry for name in self.subgraph_limits
                  if (entry := self.subgraph_limit(name, target.trt)) is not None}
        return RuleSet(target, rules, _all=self.rules, subgraph_limits=limits)

    def by_id(self, rid: str) -> list[Rule]:
        return [r for r in self.rules if r.id == rid]

    @cached_property
    def ids(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.rules:
            seen.setdefault(r.id, None)
        return list(seen)
