"""Run one fuzz case in-process and check dlarules' promises on it.

Promises (README, issue 11): exit 0/1/2 only, never a traceback; exit 2 is one stderr line of at most 300
characters naming a file or an option; third-party noise (onnxruntime's log) stays off stderr; JSON reports parse
(check's validates against schemas/report.schema.json); the input files are unchanged; a written model passes
onnx.checker and loads in onnxruntime. Categories: ok, crash, memory, data-loss, bad-error, bad-output (hang is
the campaign's: it needs a process to kill).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .cases import Case

ROOT = Path(__file__).resolve().parents[2]
MAX_LINE = 300
_ORT_NOISE = re.compile(r"\[[WEIV]:onnxruntime|onnxruntime::|Traceback \(most recent call last\)")


@dataclass
class Outcome:
    category: str          # ok | crash | memory | data-loss | bad-error | bad-output
    signature: str         # one line that groups the same bug (no paths, no numbers)
    detail: str            # what happened, for a human
    rc: int | None = None

    def to_dict(self) -> dict:
        return {"category": self.category, "signature": self.signature, "detail": self.detail, "rc": self.rc}


def _normalize(text: str) -> str:
    """A message without its particulars (quoted names, numbers, parenthesised details), to group one bug."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"|<[^>]*>", "<q>", text)
    text = re.sub(r"\([^()]*\)", "(..)", text)
    text = re.sub(r"\S*\d\S*", "N", text)
    return text[:90]


_SCHEMA: dict | None = None


def report_schema() -> dict:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = json.loads((ROOT / "schemas" / "report.schema.json").read_text(encoding="utf-8"))
    return _SCHEMA


def _sha(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@contextlib.contextmanager
def _captured() -> Iterator[dict[str, str]]:
    """stdout/stderr at both levels: Python's streams and file descriptors 1 and 2 (where onnxruntime's C++
    logger writes)."""
    got: dict[str, str] = {}
    py_out, py_err = io.StringIO(), io.StringIO()
    fd_files = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
    for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            s.flush()
        except Exception:
            pass
    saved = [os.dup(1), os.dup(2)]
    old = sys.stdout, sys.stderr
    try:
        os.dup2(fd_files[0].fileno(), 1)
        os.dup2(fd_files[1].fileno(), 2)
        sys.stdout, sys.stderr = py_out, py_err
        yield got
    finally:
        sys.stdout, sys.stderr = old
        for s in (sys.__stdout__, sys.__stderr__):
            try:
                s.flush()
            except Exception:
                pass
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        raw = []
        for f in fd_files:
            f.seek(0)
            raw.append(f.read().decode("utf-8", "replace"))
            f.close()
        got["stdout"] = py_out.getvalue() + raw[0]
        got["stderr"] = py_err.getvalue() + raw[1]


def _where(exc: BaseException) -> str:
    """ExcType @ the innermost dlarules frame (file:function), the campaign's dedup key."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/dlarules/" in f.filename.replace(os.sep, "/")]
    f = (ours or frames or [None])[-1]
    if f is None:
        return type(exc).__name__
    rel = f.filename.replace(os.sep, "/")
    rel = rel[rel.rfind("/dlarules/") + 1:] if "/dlarules/" in rel else rel.rsplit("/", 1)[-1]
    return f"{type(exc).__name__} @ {rel}:{f.name}"


def _run_cli(argv: list[str]) -> tuple[int | None, BaseException | None]:
    from dlarules.cli import main
    old_argv = sys.argv
    sys.argv = ["dlarules", *argv]
    try:
        main()
        return 0, None
    except SystemExit as exc:
        code = exc.code
        return (code if isinstance(code, int) else (0 if code is None else 2)), None
    except BaseException as exc:  # DLARULES_DEBUG=1 makes main re-raise internal errors: the bug itself
        return None, exc
    finally:
        sys.argv = old_argv


def _run_api(case: Case) -> tuple[int | None, BaseException | None, str]:
    import onnx
    from dlarules.api import check, load_db
    from dlarules.errors import DlarulesError
    kw = {k: v for k, v in case.api.items() if k != "proto"}
    try:
        src = onnx.load("m.onnx", load_external_data=False) if case.api.get("proto") else "m.onnx"
    except Exception:
        return 0, None, ""   # onnx itself cannot read it: nothing of ours to test
    try:
        report = check(src, load_db(), **kw)
        data = report.to_dict()
        text = json.dumps(data, allow_nan=False)
        return report.exit_code, None, text
    except DlarulesError as exc:
        return 2, exc, ""
    except BaseException as exc:
        return None, exc, ""


def _names(case: Case) -> list[str]:
    """What an exit-2 line may name: the files and options of the command."""
    out = list(case.files) + ["<model>"]
    for a in case.argv:
        if a.startswith("-"):
            out.append(a.split("=", 1)[0])
        elif "/" in a or "." in a:
            out.append(a)
    return out


def _models(case: Case) -> int:
    """How many models the command was given (check takes several: one error line for each bad one)."""
    return max(1, sum(1 for a in case.argv[1:] if a.endswith(".onnx") and not a.startswith("-")
                      and case.argv[case.argv.index(a) - 1] not in ("-o", "--output")))


def _check_error_line(err: str, case: Case) -> Outcome | None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if not 1 <= len(lines) <= (_models(case) if case.kind == "check" else 1):
        return Outcome("bad-error", f"{case.kind}: {len(lines)} stderr lines: {_normalize(lines[-1] if lines else '')}",
                       err[-600:])
    line = lines[0]
    if len(line) > MAX_LINE:
        return Outcome("bad-error", f"{case.kind}: error line of >{MAX_LINE} chars: {_normalize(line[:60])}",
                       f"{len(line)} chars: {line[:400]}")
    # the rule DB's own files are named by path (dlarules' packaged rules, a --rules directory)
    paths = re.findall(r"(/[^\s:]+)", line)
    if not any(n in line for n in _names(case)) and not any(os.path.exists(p) for p in paths):
        return Outcome("bad-error", f"{case.kind}: names no file/option: {_normalize(line)}", line)
    return None


def _check_model_file(path: Path) -> str | None:
    import onnx
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        return f"onnx.checker: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__}"
    try:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.log_severity_level = 3
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        return f"onnxruntime: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__}"
    return None


def run_case(case: Case, folder: Path) -> Outcome:
    """Write the case's files into `folder` (a fresh, empty one), run it there, and judge the result."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in case.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "out").mkdir(exist_ok=True)
    before = _sha(folder)
    cwd = os.getcwd()
    env_saved = os.environ.get("DLARULES_DEBUG")
    os.environ["DLARULES_DEBUG"] = "1"
    api_json = ""
    try:
        os.chdir(folder)
        with _captured() as io_:
            if case.kind == "api":
                rc, exc, api_json = _run_api(case)
            else:
                rc, exc = _run_cli(case.argv)
    finally:
        os.chdir(cwd)
        if env_saved is None:
            os.environ.pop("DLARULES_DEBUG", None)
        else:
            os.environ["DLARULES_DEBUG"] = env_saved
    out, err = io_["stdout"], io_["stderr"]
    after = _sha(folder)
    changed = [n for n, h in before.items() if after.get(n) != h]
    if changed:
        return Outcome("data-loss", f"{case.kind}: an input file changed", f"changed: {changed}", rc)
    if exc is not None and rc is None:
        cat = "memory" if isinstance(exc, MemoryError) else "crash"
        return Outcome(cat, _where(exc), f"{type(exc).__name__}: {str(exc)[:300]}", rc)
    if case.kind == "api":
        if exc is not None:   # a DlarulesError: one line that names its source
            line = str(exc)
            src = getattr(exc, "source", None)
            if "\n" in line.strip() or len(line) > MAX_LINE:
                return Outcome("bad-error", f"api: {type(exc).__name__} message of >{MAX_LINE} chars or lines",
                               line[:400], 2)
            if not src:
                return Outcome("bad-error", f"api: {type(exc).__name__} names no source: {_normalize(line)}", line, 2)
        if _ORT_NOISE.search(err):
            return Outcome("bad-error", f"api: third-party noise: {_normalize(err.strip().splitlines()[0])}", err[-400:], rc)
        if api_json:
            return _validate_report(json.loads(api_json), "api", rc)
        return Outcome("ok", "ok", "", rc)
    if rc not in (0, 1, 2):
        return Outcome("crash", f"{case.kind}: exit {rc}", err[-400:], rc)
    if rc == 2:
        bad = _check_error_line(err, case)
        if bad is not None:
            bad.rc = 2
            return bad
        return Outcome("ok", "ok", err.strip(), rc)
    if _ORT_NOISE.search(err):
        return Outcome("bad-error", f"{case.kind}: noise on stderr: {_normalize(err.strip().splitlines()[0])}",
                       err[-400:], rc)
    fmt = case.argv[case.argv.index("--format") + 1] if "--format" in case.argv else "text"
    text = out
    for flag in ("-o", "--output"):
        if flag in case.argv and case.kind in ("check", "compare"):
            p = folder / case.argv[case.argv.index(flag) + 1]
            text = p.read_text(encoding="utf-8") if p.is_file() else ""
    if fmt == "json" and "--then-split" not in case.argv:
        try:
            data = json.loads(text)
        except ValueError as exc:
            return Outcome("bad-output", f"{case.kind}: JSON output does not parse", f"{exc}: {text[:200]!r}", rc)
        if case.kind == "check" and "gates" not in data and "reports" not in data and "ignores" not in data:
            bad = _validate_report(data, "check", rc)
            if bad.category != "ok":
                return bad
    elif fmt == "sarif":
        bad = _validate_sarif(text, case.kind, rc)
        if bad is not None:
            return bad
    elif fmt == "junit":
        import xml.etree.ElementTree as ET
        try:
            ET.fromstring(text)
        except ET.ParseError as exc:
            return Outcome("bad-output", f"{case.kind}: JUnit XML does not parse", f"{exc}: {text[:200]!r}", rc)
    elif fmt == "html" and not text.startswith("<!DOCTYPE html>"):
        return Outcome("bad-output", f"{case.kind}: the HTML page does not start with its doctype", text[:200], rc)
    if case.kind == "split" or "--then-split" in case.argv:
        for part in sorted(folder.rglob("*part.onnx")):
            problem = _check_model_file(part)
            if problem:
                return Outcome("bad-output", f"split: a written part fails {problem.split(':')[0]}", problem, rc)
    if case.kind == "fix" and "-o" in case.argv:
        written = folder / case.argv[case.argv.index("-o") + 1]
        # a promise about what fix writes, for inputs that keep it themselves
        if written.is_file() and _check_model_file(folder / "m.onnx") is None:
            problem = _check_model_file(written)
            if problem:
                return Outcome("bad-output", f"fix: the written model fails {problem.split(':')[0]}", problem, rc)
    return Outcome("ok", "ok", "", rc)


_SARIF: dict | None = None


def _validate_sarif(text: str, kind: str, rc: int | None) -> Outcome | None:
    global _SARIF
    import jsonschema
    try:
        data = json.loads(text)
    except ValueError as exc:
        return Outcome("bad-output", f"{kind}: SARIF output does not parse", f"{exc}: {text[:200]!r}", rc)
    if _SARIF is None:
        _SARIF = json.loads((ROOT / "tests" / "data" / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    try:
        jsonschema.validate(data, _SARIF)
    except jsonschema.ValidationError as exc:
        return Outcome("bad-output", f"{kind}: SARIF does not validate: {_normalize(exc.message)}",
                       exc.message[:300], rc)
    return None


def _validate_report(data: dict, kind: str, rc: int | None) -> Outcome:
    import jsonschema
    try:
        jsonschema.validate(data, report_schema())
    except jsonschema.ValidationError as exc:
        return Outcome("bad-output", f"{kind}: the JSON report does not validate: {_normalize(exc.message)}",
                       exc.message[:300], rc)
    return Outcome("ok", "ok", "", rc)
