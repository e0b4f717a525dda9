"""Running the build tools (trtexec, ssh, scp): never through a shell, always with a timeout, and every failure a
one-line VerifyError that keeps what the tool printed."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Sequence

from .errors import VerifyError

_LEADING_TAGS = re.compile(r"^\s*(?:\[[^\]]*\]\s*)+")
_ERROR = re.compile(r"\[E\]|\[F\]|\berror\b|Permission denied|No such file|not found|Could not", re.I)
_MAX_REASON = 300


def run_tool(argv: Sequence[str], *, what: str, timeout: float | None, source: str | Path | None = None,
             merge_output: bool = True, hint: str = "") -> subprocess.CompletedProcess[str]:
    """Run `argv` and return it whatever its exit status; only a program that cannot start or runs past
    `timeout` raises. With `merge_output`, stderr is interleaved into stdout as a terminal would show it, which
    keeps a build log in order."""
    argv = [str(a) for a in argv]
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
                              encoding="utf-8", errors="replace", timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        # On POSIX the partial output of a killed process comes back as bytes even in text mode.
        log = _text(exc.stdout) + _text(exc.stderr)
        raise VerifyError(source, f"{what} did not finish within {timeout:g} s" + (f"; {hint}" if hint else ""),
                          log=log, command=argv) from None
    except OSError as exc:
        raise VerifyError(source, f"cannot run {argv[0]} ({exc.strerror or exc})", command=argv) from None


def output_of(proc: subprocess.CompletedProcess[str]) -> str:
    return (proc.stdout or "") + (proc.stderr or "")


def check_success(proc: subprocess.CompletedProcess[str], *, what: str, source: str | Path | None = None,
                  hint: str = "") -> str:
    """The tool's output, or a VerifyError naming the exit status and the first error line it printed."""
    if proc.returncode != 0:
        raise failure(proc, what=what, source=source, hint=hint)
    return output_of(proc)


def failure(proc: subprocess.CompletedProcess[str], *, what: str, source: str | Path | None = None,
            hint: str = "") -> VerifyError:
    text = output_of(proc)
    reason = error_line(text)
    return VerifyError(source, f"{what} failed (exit {proc.returncode})" + (f": {reason}" if reason else "")
                       + (f"; {hint}" if hint else ""), log=text, command=proc.args)


def error_line(text: str) -> str:
    """The line that best says why a tool failed: the first error line (trtexec's later ones are generic, such as
    "Engine set up failed"), else the last line it printed; without timestamps and severity tags."""
    lines = [(raw, _LEADING_TAGS.sub("", raw).strip()) for raw in text.splitlines()]
    lines = [(raw, msg) for raw, msg in lines if msg and not msg.startswith("&&&&")]
    found = next((msg for raw, msg in lines if _ERROR.search(raw)), lines[-1][1] if lines else "")
    return found if len(found) <= _MAX_REASON else found[:_MAX_REASON - 3] + "..."


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data
