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


class Context:
    """What a condition can see of one layer: its attributes, context fields (computed on first use, since
    most layers pass every rule without needing them), and its neighbours."""

    __slots__ = ("layer", "_fields", "_make_fields", "producers", "consumers", "memo")

    def __init__(self, layer: Layer, make_fields: Callable[[Layer], dict[str, Any]],
                 producers: Callable[[Layer, int], Layer | None], consumers: Callable[[Layer], list[Layer]],
                 memo: dict | None = None) -> None:
        self.layer = layer
        self._fields: dict[str, Any] | None = None
        self._make_fields = make_fields
        self.producers = producers
        self.consumers = consumers
        # Tensor tests depend only on the tensor; a tensor is read by several layers and rules, so one
        # evaluation shares the results (keyed by test and tensor).
        self.memo = memo if memo is not None else {}

    def get(self, name: str) -> Any:
        attrs = self.layer.attrs
        if name in attrs:
            return attrs[name]
        if self._fields is None:
            self._fields = self._make_fields(self.layer)
        return self._fields.get(name)


Pred = Callable[[Context], bool]


# ---------------------------------------------------------------------------------------------- value tests

def _conj(checks: list[Callable[[Any, Context], bool]]) -> Callable[[Any, Context], bool]:
    """One predicate from several; specialised because rules run once per layer and per rule."""
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks
        return lambda v, c: a(v, c) and b(v, c)
    return lambda v, c: all(f(v, c) for f in checks)


def _range_check(lo: float | None, hi: float | None) -> Callable[[Any, Context], bool]:
    def check(v: Any, c: Context) -> bool:
        cls = v.__class__
        if cls is not int and cls is not float:
            v = _num(v)
            if v is None:
                return False
        return (lo is None or v >= lo) and (hi is None or v <= hi)
    return check


def _each(f: Callable[[Any, Context], bool]) -> Callable[[Any, Context], bool]:
    def check(v: Any, c: Context) -> bool:
        if v.__class__ is not list and v.__class__ is not tuple:
            return False
        for x in v:
            if not f(x, c):
                return False
        return True
    return check


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
            if key == "max" and "min" in spec:
                continue  # folded into the min check below
            lo = arg if key == "min" else None
            hi = spec.get("max") if key == "min" else arg
            if hi is not None and (not isinstance(hi, (int, float)) or isinstance(hi, bool)):
                raise ConditionError(f"{path}.max", "expected a number")
            checks.append(_range_check(lo, hi))
        elif key == "integer":
            if not isinstance(arg, bool):
                raise ConditionError(p, "expected true or false")
            checks.append((lambda want: lambda v, c: _is_integer(v) == want)(arg))
        elif key in ("each", "len"):
            if type_code is not None and type_code not in ("ints", "floats", "shape"):
                raise ConditionError(p, f"`{key}` needs a list attribute, not {type_code}")
            inner = _compile_tests(arg, p, None, tuple(k for k in TEST_KEYS if k not in ("each", "lt_attr", "le_attr", "eq_attr")))
            if key == "each":
                checks.append(_each(inner))
            else:
                checks.append((lambda f: lambda v, c: isinstance(v, (list, tuple)) and f(len(v), c))(inner))
        elif key in ("lt_attr", "le_attr", "eq_attr"):
            if not isinstance(arg, str):
                raise ConditionError(p, "expected an attribute name")
            checks.append((lambda other, how: lambda v, c: _pairwise(v, c.get(other), how))(arg, key[:2]))
    return _conj(checks)


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

def _batch(t: Any) -> int | None:
    shape = t.shape
    if shape is None or any(d.__class__ is not int for d in shape):
        return None
    return math.prod(shape[:-3]) if len(shape) > 3 else 1


def _uniform(t: Any) -> bool:
    v = t.value() if t.const else None
    return v is not None and v.size > 0 and bool((v == v.reshape(-1)[0]).all())


# tensor test -> how to read it off a tensor (None = unknown, not judged)
_TENSOR_GET: dict[str, Callable[[Any], Any]] = {
    "rank": lambda t: None if t.shape is None else len(t.shape),
    "dims": lambda t: t.shape,
    "nonbatch_dims": lambda t: None if t.shape is None else t.shape[1:],
    "batch": _batch,
    "dtype": lambda t: t.dtype,
    "const": lambda t: bool(t.const),
    "static": lambda t: t.static,
    "uniform": _uniform,
}


def _dims_check(f: Callable[[Any, Context], bool]) -> Callable[[Any, Context], bool]:
    # Unknown (symbolic) dims are not judged here: GEN-STATIC-SHAPE reports them.
    def check(v: Any, c: Context) -> bool:
        if v is None:
            return True
        for x in v:
            if x.__class__ is int and not f(x, c):
                return False
        return True
    return check


def _known(f: Callable[[Any, Context], bool]) -> Callable[[Any, Context], bool]:
    # An unknown rank/batch/dtype cannot be judged; other rules report the unknown shape.
    return lambda v, c: v is None or f(v, c)


def _compile_tensor(spec: Mapping[str, Any], path: str, side: str) -> Pred:
    sel = spec[side]
    quant = spec.get("quantifier", "all")
    if quant not in ("all", "any"):
        raise ConditionError(f"{path}.quantifier", "expected all or any")
    if not (isinstance(sel, int) and not isinstance(sel, bool)) and sel not in ("all", "data", "const"):
        raise ConditionError(f"{path}.{side}", "expected an index, all, data or const")
    tests: list[tuple[Callable[[Any], Any], Callable[[Any, Context], bool]]] = []
    for key, arg in spec.items():
        if key in (side, "quantifier"):
            continue
        p = f"{path}.{key}"
        if key not in TENSOR_TESTS:
            raise ConditionError(p, f"unknown tensor test {key!r} (known: {', '.join(TENSOR_TESTS)})")
        if key in ("const", "static", "uniform"):
            if not isinstance(arg, bool):
                raise ConditionError(p, "expected true or false")
            check = (lambda a: lambda v, c: v == a)(arg)
        elif key in ("dims", "nonbatch_dims"):
            check = _dims_check(_compile_tests(arg, p, None, ("min", "max", "in", "not_in", "eq", "ne", "integer")))
        else:
            check = _known(_compile_tests(arg, p, "str" if key == "dtype" else "int"))
        tests.append((_TENSOR_GET[key], check))
    if not tests:
        raise ConditionError(path, f"`{side}` needs at least one tensor test ({', '.join(TENSOR_TESTS)})")
    outputs = side == "output"
    any_q = quant == "any"
    token = object()  # this test's identity in the shared memo
    if len(tests) == 1:
        get1, check1 = tests[0]
        one = lambda t: check1(get1(t), None)  # noqa: E731
    else:
        one = lambda t: all(check(get(t), None) for get, check in tests)  # noqa: E731

    def chosen(ts: list[Any]) -> list[Any]:
        if sel.__class__ is int:
            return ts[sel:sel + 1]
        if sel == "data":
            return [t for t in ts if not t.const]
        if sel == "const":
            return [t for t in ts if t.const]
        return ts

    def pred(ctx: Context) -> bool:
        # Tensor tests depend only on the tensor: results are shared through the evaluation's memo.
        memo = ctx.memo.get(token)
        if memo is None:
            memo = ctx.memo[token] = {}
        for t in chosen(ctx.layer.outputs if outputs else ctx.layer.inputs):
            ok = memo.get(id(t))
            if ok is None:
                ok = memo[id(t)] = one(t)
            if ok is any_q:
                return ok
        return not any_q  # all: vacuously true; any: nothing matched
    return pred


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
        if len(preds) == 1:
            return preds[0]
        if len(preds) == 2:
            a, b = preds
            return (lambda ctx: a(ctx) and b(ctx)) if subject == "all" else (lambda ctx: a(ctx) or b(ctx))
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
