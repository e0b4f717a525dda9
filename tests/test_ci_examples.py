"""The CI integrations the repository ships: the pre-commit hook (.pre-commit-hooks.yaml, run through
`pre-commit try-repo` against this checkout) and the GitHub Actions workflow (examples/github-action.yml: parsed,
and its `run:` steps executed here on builder models)."""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from dlarules import fixtures

from conftest import ROOT

SARIF_SCHEMA = json.loads((ROOT / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())
OK = {"nodes": [{"op": "Relu"}, {"op": "Sigmoid"}]}
BAD = {"inputs": {"x": [1, 8, 32, 32]}, "nodes": [{"op": "Relu"},
                                                 {"op": "AveragePool", "attrs": {"kernel_shape": [9, 9]}}]}
# building the hook's environment pip-installs this checkout and its dependencies: about 25 s here
ENV_BUILD_LIMIT = float(os.environ.get("DLARULES_PRECOMMIT_TIMEOUT", "60"))
OFFLINE = re.compile(r"Could not find a version|No matching distribution|Failed to establish a new connection|"
                     r"Temporary failure in name resolution|Network is unreachable|ConnectionError", re.I)


def _write(folder: Path, name: str, spec: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(fixtures.build(spec).SerializeToString())


def test_pre_commit_hook_definition():
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    hook = {h["id"]: h for h in hooks}["dlarules-check"]
    assert hook["entry"] == "dlarules check" and hook["language"] == "python" and hook["pass_filenames"] is True
    assert re.search(hook["files"], "models/a.onnx") and not re.search(hook["files"], "a.onnx.txt")


def test_pre_commit_try_repo_runs_the_hook_from_this_checkout(tmp_path):
    pre_commit = shutil.which("pre-commit", path=str(Path(sys.executable).parent)) or shutil.which("pre-commit")
    if pre_commit is None:
        pytest.skip("pre-commit is not installed (pip install -e '.[test]' installs it)")
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git checkout: pre-commit try-repo needs one")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pc-home"), "GIT_CONFIG_NOSYSTEM": "1"}
    env.pop("PYTHONPATH", None)   # the hook runs the dlarules pre-commit installs from the checkout, not ours

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=env)
    git("init", "-q")
    git("config", "user.email", "test@example.com")
    git("config", "user.name", "test")
    _write(repo / "models", "ok.onnx", OK)
    _write(repo / "models", "bad.onnx", BAD)
    git("add", ".")
    git("commit", "-qm", "models")
    try:
        # try-repo builds the hook's environment in a fresh store each time (about 25 s here)
        proc = subprocess.run([pre_commit, "try-repo", str(ROOT), "dlarules-check", "--all-files"], cwd=repo,
                              capture_output=True, text=True, env=env, timeout=ENV_BUILD_LIMIT)
    except subprocess.TimeoutExpired:
        pytest.skip(f"building the hook's environment (pip install of this checkout) took over {ENV_BUILD_LIMIT:g} s;"
                    f" set DLARULES_PRECOMMIT_TIMEOUT to allow more")
    out = proc.stdout + proc.stderr
    if proc.returncode not in (0, 1) and OFFLINE.search(out):
        pytest.skip(f"pre-commit could not install the hook's dependencies (no network?): "
                    f"{OFFLINE.search(out).group(0)}")
    assert proc.returncode == 1, out                     # the failing model fails the hook
    assert re.search(r"dlarules check \(ONNX models on NVIDIA DLA\)\.+Failed", out), out
    assert re.search(r"models/ok\.onnx: .*: all on DLA", out), out          # the passing model passes
    assert re.search(r"models/bad\.onnx: .*: GPU fallbacks", out), out
    assert "POOL-WINDOW" in out                          # the failing one's rule ID


def _shim(bin_dir: Path) -> Path:
    """`dlarules` on PATH running this checkout (what `pip install dlarules` gives a workflow)."""
    bin_dir.mkdir()
    exe = bin_dir / "dlarules"
    exe.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m dlarules "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def _run_workflow(steps: list[dict], cwd: Path, env: dict) -> tuple[list[tuple[str, int]], bool]:
    """Run the `run:` steps as a runner would (bash -e, continue-on-error, `if:` on always() and step outcomes);
    pip installs are what the shim stands for. Returns (name, exit code) per step run and whether the job failed."""
    outcomes: dict[str, str] = {}
    ran: list[tuple[str, int]] = []
    failed = False
    for step in steps:
        if "run" not in step:
            continue
        cond = str(step.get("if", "success()")).strip()
        m = re.fullmatch(r"steps\.([\w-]+)\.outcome == '(\w+)'", cond)
        if m:
            go = outcomes.get(m.group(1)) == m.group(2)
        elif cond == "always()":
            go = True
        elif cond == "success()":
            go = not failed
        else:
            raise AssertionError(f"the test cannot evaluate if: {cond}")
        if not go:
            continue
        script = "\n".join(line for line in step["run"].splitlines() if not line.strip().startswith("pip install"))
        rc = subprocess.run(["bash", "-e", "-c", script or "true"], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=300).returncode
        ran.append((step.get("name", script), rc))
        outcomes[step.get("id", "")] = "success" if rc == 0 else "failure"
        if rc != 0 and not step.get("continue-on-error"):
            failed = True
    return ran, failed


@pytest.mark.parametrize("with_bad", [True, False])
def test_github_action_example_runs(tmp_path, with_bad):
    wf = yaml.safe_load((ROOT / "examples" / "github-action.yml").read_text())
    assert wf.get("on", wf.get(True))                    # PyYAML reads the bare key `on` as true
    steps = wf["jobs"]["dla"]["steps"]
    uses = [s["uses"].split("@")[0] for s in steps if "uses" in s]
    assert uses == ["actions/checkout", "actions/setup-python", "github/codeql-action/upload-sarif"]
    upload = next(s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif"))
    assert upload["with"]["sarif_file"] == "dlarules.sarif"
    work = tmp_path / "checkout"
    _write(work / "models", "ok.onnx", OK)
    if with_bad:
        _write(work / "models", "bad.onnx", BAD)
    summary = tmp_path / "summary.md"
    env = {**os.environ, "PATH": f"{_shim(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}",
           "GITHUB_STEP_SUMMARY": str(summary)}
    ran, failed = _run_workflow(steps, work, env)
    assert any("pip install" in s.get("run", "") for s in steps)
    sarif = json.loads((work / "dlarules.sarif").read_text())
    jsonschema.validate(sarif, SARIF_SCHEMA)
    rules = {r["ruleId"] for r in sarif["runs"][0]["results"]}
    md = summary.read_text()
    if with_bad:
        assert rules == {"POOL-WINDOW"} and failed   # the job fails, after the upload and the summary ran
        assert "FAIL (exit 1)" in md and "`models/bad.onnx` | GPU fallbacks" in md
        assert ran[-1][1] == 1
    else:
        assert rules == set() and not failed
        assert md.startswith("### dlarules: `models/ok.onnx`: PASS") and "everything runs on DLA" in md
