"""Test doubles for `dlarules verify`: fake trtexec / ssh / scp executables and a fake `tensorrt` module.

Every one of them is a stand-in for tests only; none builds anything."""
from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROGRAMS = {"trtexec": "fake_trtexec.py", "ssh": "fake_ssh.py", "scp": "fake_scp.py"}


def install(bin_dir: Path, *names: str) -> Path:
    """Executables NAME in bin_dir that run the fake with this test run's Python (so it works in any venv)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in names or tuple(PROGRAMS):
        exe = bin_dir / name
        exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / PROGRAMS[name]}" "$@"\n', encoding="utf-8")
        exe.chmod(0o755)
    return bin_dir


def path_with(bin_dir: Path) -> str:
    """PATH with bin_dir first, then only the system folders the fakes need (sh, mktemp, rm, timeout)."""
    return os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])
