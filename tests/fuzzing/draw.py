"""One interface for choices, so the same generators serve hypothesis (shrinkable) and the seeded campaign."""
from __future__ import annotations

import random
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")


class Draw:
    """Choices a generator makes. Every method shrinks (under hypothesis) toward its simplest answer: the low
    bound, the first element, False."""

    def int(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def choice(self, seq: Sequence[T]) -> T:
        return seq[self.int(0, len(seq) - 1)]

    def chance(self, p: float) -> bool:
        """True with probability p (shrinks to False: the plain case)."""
        return self.int(0, 999) >= 1000 - int(p * 1000)

    def float(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.int(0, 1000) / 1000.0

    def bytes(self, n: int) -> bytes:
        return bytes(self.int(0, 255) for _ in range(n))

    def sample(self, seq: Sequence[T], k: int) -> list[T]:
        pool = list(seq)
        return [pool.pop(self.int(0, len(pool) - 1)) for _ in range(min(k, len(pool)))]


class RandomDraw(Draw):
    """The campaign's draw: one random.Random per run, so a run is replayed from its seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


class HypothesisDraw(Draw):
    """The tests' draw: each choice is a hypothesis draw, so failures shrink to a small graph."""

    def __init__(self, draw: Callable[[Any], Any]) -> None:
        from hypothesis import strategies as st
        self._draw = draw
        self._st = st

    def int(self, lo: int, hi: int) -> int:
        return self._draw(self._st.integers(lo, hi))
