"""TensorRT version numbers and ranges ("8.5", ">=8.4,<10.8"), parsed without eval."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")
_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|>|<)?\s*(\d+(?:\.\d+){0,3})\s*$")


def parse_version(text: str) -> tuple[int, ...]:
    """'8.6.12' -> (8, 6, 12). Raises ValueError on anything else."""
    text = str(text).strip()
    if not _VERSION.match(text):
        raise ValueError(f"not a version number: {text!r}")
    return tuple(int(p) for p in text.split("."))


def _cmp(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    # Missing trailing parts count as 0, so "8.5" == "8.5.0".
    n = max(len(a), len(b))
    a = a + (0,) * (n - len(a))
    b = b + (0,) * (n - len(b))
    return (a > b) - (a < b)


def compare(a: str, b: str) -> int:
    return _cmp(parse_version(a), parse_version(b))


@dataclass(frozen=True)
class VersionRange:
    """A conjunction of clauses such as '>=8.4,<10.8'; '*' or '' means any version."""

    text: str
    clauses: tuple[tuple[str, tuple[int, ...]], ...]

    def contains(self, version: str | tuple[int, ...]) -> bool:
        v = parse_version(version) if isinstance(version, str) else version
        for op, bound in self.clauses:
            c = _cmp(v, bound)
            ok = {
                ">=": c >= 0, "<=": c <= 0, ">": c > 0, "<": c < 0, "==": c == 0, "!=": c != 0,
            }[op]
            if not ok:
                return False
        return True

    def __str__(self) -> str:
        return self.text


@lru_cache(maxsize=None)
def parse_range(text: str) -> VersionRange:
    text = str(text).strip()
    if text in ("", "*"):
        return VersionRange("*", ())
    clauses = []
    for part in text.split(","):
        m = _CLAUSE.match(part)
        if not m:
            raise ValueError(f"not a version range clause: {part.strip()!r} (use e.g. '>=8.4,<10.8')")
        clauses.append((m.group(1) or "==", parse_version(m.group(2))))
    return VersionRange(text, tuple(clauses))


def ranges_overlap(a: VersionRange, b: VersionRange, known: list[str]) -> list[str]:
    """The known releases that fall in both ranges (used to find contradicting rule entries)."""
    return [v for v in known if a.contains(v) and b.contains(v)]
