from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DLARULES_SHARED", ROOT.parent / "shared"))
CORPUS = SHARED / "corpus"
LOGS = SHARED / "logs"
EXAMPLE = ROOT / "examples" / "dla_demo.onnx"


def need_shared() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"the shared corpus is not beside the checkout ({CORPUS}); set DLARULES_SHARED")


@pytest.fixture(scope="session")
def db():
    from dlarules.ruledb import RuleDB
    return RuleDB.load(use_cache=False)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # The rule DB cache goes to a per-session folder, never the user's home.
    monkeypatch.setenv("DLARULES_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("DLARULES_RULES", raising=False)


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m dlarules ARGS` as a user would, capturing output."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "dlarules", *args], capture_output=True, text=True, env=e,
                          cwd=cwd or ROOT, timeout=300)
