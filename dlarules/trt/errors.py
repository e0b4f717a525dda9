"""The one error a verification build raises: one line for the user, the captured log kept for whoever wants it."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import DlarulesError


class VerifyError(DlarulesError):
    """TensorRT, trtexec, ssh or a DLA is missing, or the build failed or printed no placement.

    `log` is what the build printed before it stopped ("" when nothing ran), `command` what was run."""

    def __init__(self, source: str | Path | None, problem: str, *, log: str = "",
                 command: Sequence[str] = ()) -> None:
        # The CLI prints line() as the whole message: never let a tool's multi-line output break it.
        super().__init__(source, " ".join(problem.split()))
        self.log = log
        self.command = list(command)

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.splitlines()[-lines:])
