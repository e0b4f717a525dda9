"""The condition vocabulary: rule conditions are data, compiled here into small typed predicates (no eval).

A condition is a mapping with exactly one subject key:

  attr: NAME          a layer attribute (see layers.KINDS) or a context field (layers.CONTEXT_FIELDS),
                      followed by tests: eq, ne, in, not_in, min, max, integer, each: {tests}, len: {tests},
                      lt_attr / le_attr: OTHER (element-wise comparison with another attribute)
  input: SEL          the layer's input tensors (SEL: an index, `all`, `data` = non-constant, `const`),
  output: SEL         or outputs, with tensor tests: rank, dims, nonbatch_dims, batch: {tests}, dtype: {tests},
                      const: bool, static: bool, uniform: bool; `quantifier: any` (default all)
  producer: INDEX     the layer feeding input INDEX, with kind: {tests}
  consumers: any|all  the layers reading the output, with kind: {tests}
  all: [conds] / any: [conds] / not: cond
  never: true         the layer kind never runs on DLA

Every name is checked when the rule DB loads; a mistake is reported, never ignored.
"""
from __future__ import annotations

import math
import string
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from .layers import CONTEXT_FIELDS, KINDS, Layer, attr_type, enum_values

TEST_KEYS = ("eq", "ne", "in", "not_in", "min", "max", "integer", "each", "len", "lt_attr", "le_attr", "eq_attr")
TENSOR_TESTS = ("rank", "dims", "nonbatch_dims", "batch", "dtype", "const", "static", "uniform")
SUBJECT_KEYS = ("attr", "input", "output", "producer", "consumers", "all", "any", "not", "never")


class ConditionError(ValueError):
    """A condition that does not fit the vocabulary; `path` says where inside the rule."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


@dataclass
class Context:
    """What a condition can see of one layer."""

    layer: Layer
    fields: dict[str, Any]
    producers: Callable[[Layer, int], Layer | None]
    consumers: Callable[[Layer], list[Layer]]

    def get(self, name: str) -> Any:
        attrs = self.layer.attrs
        if name in attrs:
            return attrs[name]
        return self.fields.get(name)


Pred = Callable[[Context], bool]


# ---------------------------------------------------------------------------------------------- value tests

def _compile_tests(spec: Mapping[str, Any], path: str, type_code: str | None, allow: Iterable[str] = TEST_KEYS) -> Callable[[Any, Context], bool]:
    if not isinstance(spec, Mapping) or not spec:
        raise ConditionError(path, "expected a mapping of tests such as {min: 1, max: 8}")
    allowed = set(allow)
    checks: list[Callable[[Any, Context], bool]] = []
    enum = enum_values(type_code) if type_code else None
    for key, arg in spec.items():
        p = f"{path}.{key}"
        if key not in allowed:
            raise ConditionError(p, f"unknown test {key!r} (known: {', '.join(sorted(allowed))})")
        if key in ("eq", "ne"):
            _check_enum(arg, enum, p)
            checks.append((lambda a: lambda v, c: v == a)(arg) if key == "eq" else (lambda a: lambda v, c: v != a)(arg))
        elif key in ("in", "not_in"):
            if not isinstance(arg, list) or not arg:
                raise ConditionError(p, "expected a non-empty list")
            for a in arg:
                _check_enum(a, enum, p)
            s = frozenset(_hashable(a) for a in arg)
            checks.append((lambda s: lambda v, c: _hashable(v) in s)(s) if key == "in"
                          else (lambda s: lambda v, c: _hashable(v) not in s)(s))
        elif key in ("min", "max"):
            if not isinstance(arg, (int, float)) or isinstance(arg, bool):
                raise ConditionError(p, "expected a number")
            checks.append((lambda a: lambda v, c: _num(v) is not None and _num(v) >= a)(arg) if key == "min"
                          else (lambda a: lambda v, c: _num(v) is not None and _num(v) <= a)(arg))
        elif key == "integer":
            if not isinstance(arg, bool):
                raise ConditionError(p, "expected true or false")
            checks.append((lambda want: lambda v, c: _is_integer(v) == want)(arg))
        elif key in ("each", "len"):
            if type_code is not None and type_code not in ("ints", "floats", "shape"):
                raise ConditionError(p, f"`{key}` needs a list attribute, not {type_code}")
            inner = _compile_tests(arg, p, None, tuple(k for k in TEST_KEYS if k not in ("each", "lt_attr", "le_attr", "eq_attr")))
            if key == "each":
                checks.append((lambda f: lambda v, c: isinstance(v, (list, tuple)) and all(f(x, c) for x in v))(inner))
            else:
                checks.append((lambda f: lambda v, c: isinstance(v, (list, tuple)) and f(len(v), c))(inner))
        elif key in ("lt_attr", "le_attr", "eq_attr"):
            if not isinstance(arg, str):
                raise ConditionError(p, "expected an attribute name")
            checks.append((lambda other, how: lambda v, c: _pairwise(v, c.get(other), how))(arg, key[:2]))
    return lambda v, c: all(f(v, c) for f in checks)


def _check_enum(value: Any, enum: list[str] | None, path: str) -> None:
    if enum is not None and value not in enum:
        raise ConditionError(path, f"{value!r} is not one of {', '.join(enum)}")


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return v


def _is_integer(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return True
    return isinstance(v, float) and math.isfinite(v) and abs(v - round(v)) < 1e-6


def _pairwise(a: Any, b: Any, how: str) -> bool:
    if not isinstance(a, (list, tuple)) or not isinstance(b, (list, tuple)) or len(a) != len(b):
        return False
    cmp = {"lt": lambda x, y: x < y, "le": lambda x, y: x <= y, "eq": lambda x, y: x == y}[how]
    return all(cmp(x, y) for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------- tensors

def _tensor_value(test: str, t: Any) -> Any:
    shape = t.shape
    if test == "rank":
        return None if shape is None else len(shape)
    if test == "dims":
        return None if shape is None else list(shape)
    if test == "nonbatch_dims":
        return None if shape is None else list(shape[1:])
    if test == "batch":
        if shape is None or any(not isinstance(d, int) for d in shape):
            return None
        return math.prod(shape[:-3]) if len(shape) > 3 else 1
    if test == "dtype":
        return t.dtype
    if test == "const":
        return bool(t.const)
    if test == "static":
        return t.static
    if test == "uniform":
        v = t.value() if t.const else None
        return v is not None and v.size > 0 and bool((v == v.reshape(-1)[0]).all())
    raise KeyError(test)


def _compile_tensor(spec: Mapping[str, Any], path: str, side: str) -> Pred:
    sel = spec[side]
    quant = spec.get("quantifier", "all")
    if quant not in ("all", "any"):
        raise ConditionError(f"{path}.quantifier", "expected all or any")
    if not (isinstance(sel, int) and not isinstance(sel, bool)) and sel not in ("all", "data", "const"):
        raise ConditionError(f"{path}.{side}", "expected an index, all, data or const")
    tests: list[tuple[str, Callable[[Any, Context], bool]]] = []
    for key, arg in spec.items():
        if key in (side, "quantifier"):
            continue
        p = f"{path}.{key}"
        if key not in TENSOR_TESTS:
            raise ConditionError(p, f"unknown tensor test {key!r} (known: {', '.join(TENSOR_TESTS)})")
        if key in ("const", "static", "uniform"):
            if not isinstance(arg, bool):
                raise ConditionError(p, "expected true or false")
            tests.append((key, (lambda a: lambda v, c: v == a)(arg)))
        elif key in ("dims", "nonbatch_dims"):
            # Unknown (symbolic) dims are not judged here: GEN-STATIC-SHAPE reports them.
            inner = _compile_tests(arg, p, None, ("min", "max", "in", "not_in", "eq", "ne", "integer"))
            tests.append((key, (lambda f: lambda v, c: v is None or all(f(x, c) for x in v if isinstance(x, int)))(inner)))
        else:
            inner = _compile_tests(arg, p, "str" if key == "dtype" else "int")
            # An unknown rank/batch/dtype cannot be judged; other rules report the unknown shape.
            tests.append((key, (lambda f: lambda v, c: v is None or f(v, c))(inner)))
    if not tests:
        raise ConditionError(path, f"`{side}` needs at least one tensor test ({', '.join(TENSOR_TESTS)})")

    def select(ctx: Context) -> list[Any]:
        ts = ctx.layer.inputs if side == "input" else ctx.layer.outputs
        if isinstance(sel, int):
            return [ts[sel]] if sel < len(ts) else []
        if sel == "data":
            return [t for t in ts if not t.const]
        if sel == "const":
            return [t for t in ts if t.const]
        return list(ts)

    def one(t: Any, ctx: Context) -> bool:
        return all(f(_tensor_value(k, t), ctx) for k, f in tests)

    if quant == "any":
        return lambda ctx: any(one(t, ctx) for t in select(ctx))
    return lambda ctx: all(one(t, ctx) for t in select(ctx))


# ---------------------------------------------------------------------------------------------- compile

def compile_condition(spec: Any, kinds: list[str] | None, path: str = "") -> Pred:
    """Compile a condition for layers of `kinds` (None = any kind). Raises ConditionError."""
    if spec is True:
        return lambda ctx: True
    if not isinstance(spec, Mapping):
        raise ConditionError(path, "a condition must be a mapping")
    subjects = [k for k in spec if k in SUBJECT_KEYS]
    if len(subjects) != 1:
        unknown = [k for k in spec if k not in SUBJECT_KEYS and k not in TEST_KEYS and k not in TENSOR_TESTS
                   and k not in ("kind", "quantifier")]
        if unknown:
            raise ConditionError(f"{path}.{unknown[0]}", f"unknown predicate {unknown[0]!r} (known: {', '.join(SUBJECT_KEYS)})")
        raise ConditionError(path, f"a condition needs exactly one of {', '.join(SUBJECT_KEYS)}")
    subject = subjects[0]
    p = f"{path}.{subject}" if path else subject
    if subject in ("all", "any"):
        items = spec[subject]
        if not isinstance(items, list) or not items or len(spec) != 1:
            raise ConditionError(p, "expected a non-empty list of conditions (and nothing beside it)")
        preds = [compile_condition(c, kinds, f"{p}[{i}]") for i, c in enumerate(items)]
        return (lambda ps: lambda ctx: all(f(ctx) for f in ps))(preds) if subject == "all" else \
            (lambda ps: lambda ctx: any(f(ctx) for f in ps))(preds)
    if subject == "not":
        if len(spec) != 1:
            raise ConditionError(p, "`not` takes one condition and nothing beside it")
        inner = compile_condition(spec["not"], kinds, p)
        return lambda ctx: not inner(ctx)
    if subject == "never":
        if spec["never"] is not True or len(spec) != 1:
            raise ConditionError(p, "use `never: true` alone")
        return lambda ctx: False
    if subject == "attr":
        return _compile_attr(spec, kinds, p)
    if subject in ("input", "output"):
        return _compile_tensor(spec, path or subject, subject)
    if subject == "producer":
        return _compile_neighbor(spec, p, producer=True)
    return _compile_neighbor(spec, p, producer=False)


def _compile_attr(spec: Mapping[str, Any], kinds: list[str] | None, path: str) -> Pred:
    name = spec["attr"]
    if not isinstance(name, str):
        raise ConditionError(path, "expected an attribute name")
    type_code = attribute_type(name, kinds, path)
    tests = {k: v for k, v in spec.items() if k != "attr"}
    for key in ("lt_attr", "le_attr", "eq_attr"):
        if tests.get(key) is not None:
            attribute_type(tests[key], kinds, f"{path}.{key}")
    if not tests:
        raise ConditionError(path, "an attribute condition needs at least one test (min, max, in, eq, ...)")
    check = _compile_tests(tests, path, type_code)
    return lambda ctx: check(ctx.get(name), ctx)


def attribute_type(name: str, kinds: list[str] | None, path: str) -> str:
    """The type of `name` for every kind in `kinds`; an error if any kind lacks it."""
    if name in CONTEXT_FIELDS:
        return CONTEXT_FIELDS[name]
    if not kinds:
        raise ConditionError(path, f"attribute {name!r} needs a rule for specific layer kinds "
                                   f"(context fields: {', '.join(CONTEXT_FIELDS)})")
    types = set()
    for k in kinds:
        t = attr_type(k, name)
        if t is None:
            known = ", ".join(KINDS.get(k, {})) or "none"
            raise ConditionError(path, f"layer {k} has no attribute {name!r} (its attributes: {known})")
        types.add(t)
    if len(types) != 1:
        raise ConditionError(path, f"attribute {name!r} has different types across {', '.join(kinds)}")
    return types.pop()


def _compile_neighbor(spec: Mapping[str, Any], path: str, producer: bool) -> Pred:
    key = "producer" if producer else "consumers"
    sel = spec[key]
    if producer and (not isinstance(sel, int) or isinstance(sel, bool)):
        raise ConditionError(path, "expected an input index")
    if not producer and sel not in ("any", "all"):
        raise ConditionError(path, "expected any or all")
    extra = [k for k in spec if k not in (key, "kind")]
    if extra or "kind" not in spec:
        raise ConditionError(path, f"`{key}` takes `kind: {{tests}}` and nothing else")
    enum = "enum:" + "|".join(KINDS)
    check = _compile_tests(spec["kind"], f"{path}.kind", enum, ("eq", "ne", "in", "not_in"))
    if producer:
        def prod(ctx: Context) -> bool:
            src = ctx.producers(ctx.layer, sel)
            return src is not None and check(src.kind, ctx)
        return prod

    def cons(ctx: Context) -> bool:
        users = ctx.consumers(ctx.layer)
        if not users:
            return False
        return (any if sel == "any" else all)(check(u.kind, ctx) for u in users)
    return cons


# ---------------------------------------------------------------------------------------------- messages

_LIST_X = {"kernel", "window", "stride", "dilation", "padding_pre", "padding_post", "spatial_scales", "scales"}


def format_value(name: str, v: Any, spec: str = "") -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if abs(v) >= 1e30:
            return "-inf" if v < 0 else "inf"
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        if spec == "list" or (spec != "x" and name not in _LIST_X):
            return "[" + ", ".join(format_value(name, x) for x in v) + "]"
        return "x".join(format_value(name, x) for x in v) if v else "none"
    if v is None:
        return "?"
    return str(v)


def template_fields(template: str) -> list[tuple[str, str]]:
    """(field, spec) pairs of a message template; raises ValueError on a malformed template."""
    out = []
    for _, field, spec, conv in string.Formatter().parse(template):
        if field is None:
            continue
        if conv or not field.isidentifier():
            raise ValueError(f"message field {{{field}}} must be a plain name")
        if spec not in ("", "x", "list"):
            raise ValueError(f"message field {{{field}:{spec}}}: format must be empty, x or list")
        out.append((field, spec))
    return out


def check_template(template: str, kinds: list[str] | None) -> list[str]:
    """Problems with a message template for rules on `kinds`."""
    try:
        fields = template_fields(template)
    except ValueError as exc:
        return [str(exc)]
    problems = []
    for field, _ in fields:
        if field in CONTEXT_FIELDS:
            continue
        if not kinds or any(attr_type(k, field) is None for k in kinds):
            problems.append(f"message field {{{field}}} is not an attribute of {', '.join(kinds or ['every layer'])} "
                            f"nor a context field")
    return problems


def render(template: str, ctx: Context) -> str:
    parts = []
    for literal, field, spec, _ in string.Formatter().parse(template):
        parts.append(literal)
        if field is not None:
            parts.append(format_value(field, ctx.get(field), spec or ""))
    return "".join(parts)
