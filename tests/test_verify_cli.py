"""`dlarules verify` from the command line: no TensorRT here means exit 2 and one line; a fake trtexec replaying
the recorded DDRNet log gives the same agreement report as `dlarules compare` for that log."""
from __future__ import annotations

import json

import fakes
from conftest import CORPUS, EXAMPLE, LOGS, need_shared, run_cli

DDRNET = "ddrnet23_slim_seedlike_1024x2048.onnx"


def _env(tmp_path, with_trtexec: bool) -> dict:
    bin_dir = tmp_path / "bin"
    if with_trtexec:
        fakes.install(bin_dir, "trtexec")
    else:
        bin_dir.mkdir()
    return {"PATH": fakes.path_with(bin_dir), "FAKE_TRTEXEC_LOG": str(LOGS / "ddrnet_before_fix.log")}


def test_verify_without_tensorrt_is_one_line_exit_2(tmp_path):
    r = run_cli("verify", str(EXAMPLE), "--target", "orin", env=_env(tmp_path, with_trtexec=False))
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert "trtexec not found" in lines[0] and "dlarules compare" in lines[0]


def test_verify_with_a_replayed_log_matches_compare(tmp_path):
    need_shared()
    model = CORPUS / DDRNET
    env = _env(tmp_path, with_trtexec=True)
    saved = tmp_path / "build.log"
    args = ["--target", "xavier", "--trt", "8.5", "--precision", "int8", "--format", "json"]
    v = run_cli("verify", str(model), *args, "--backend", "trtexec", "--save-log", str(saved), env=env)
    assert v.returncode == 0, v.stderr
    c = run_cli("compare", str(model), "--log", str(saved), *args)
    assert c.returncode == 0
    verified, compared = json.loads(v.stdout), json.loads(c.stdout)
    assert verified["comparison"] == compared
    assert verified["backend"] == "trtexec" and "--useDLACore=0" in verified["command"]
    assert saved.read_text() == (LOGS / "ddrnet_before_fix.log").read_text()
    # and in text, the same agreement line as compare prints
    t = run_cli("verify", str(model), "--target", "xavier", "--trt", "8.5", "--backend", "trtexec", env=env)
    assert t.returncode == 1 and "seen-not-predicted" in t.stdout and "agreement:" in t.stdout
