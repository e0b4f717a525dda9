"""`fix` shows a rich status line on stderr when stderr is a terminal, and nothing there otherwise (or with -q)."""
from __future__ import annotations

import os
import pty
import select
import subprocess
import sys

from conftest import EXAMPLE


def _run_with_tty_stderr(tmp_path, *argv: str) -> tuple[int, str, str]:
    src = tmp_path / "demo.onnx"
    src.write_bytes(EXAMPLE.read_bytes())
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    p = subprocess.Popen([sys.executable, "-m", "dlarules", *argv, str(src), "--dry-run", "--no-verify"],
                         stdout=subprocess.PIPE, stderr=slave, env=env, cwd=tmp_path)
    os.close(slave)
    err = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:   # the child closed its end
                break
            if not chunk:
                break
            err += chunk
        elif p.poll() is not None:
            break
    out = p.stdout.read().decode()
    p.wait(timeout=60)
    os.close(master)
    return p.returncode, out, err.decode(errors="replace")


def test_progress_on_a_terminal(tmp_path):
    rc, out, err = _run_with_tty_stderr(tmp_path, "fix")
    assert rc == 0, (out, err)
    assert "dlarules fix [" in err and ("checking the model" in err or "round 1" in err), err[-500:]
    assert "placement after:" in out and "dlarules fix [" not in out   # the report itself is untouched


def test_no_progress_with_quiet_or_without_a_terminal(tmp_path):
    rc, out, err = _run_with_tty_stderr(tmp_path, "-q", "fix")
    assert rc == 0 and "dlarules fix [" not in err
    src = tmp_path / "demo.onnx"
    r = subprocess.run([sys.executable, "-m", "dlarules", "fix", str(src), "--dry-run", "--no-verify"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == ""
