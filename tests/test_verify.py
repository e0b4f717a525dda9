"""`dlarules verify` without hardware: fake trtexec / ssh / scp executables (tests/fakes) replay a real recorded
DDRNet build log, and a test double of the `tensorrt` module drives the Python-API backend. The tests marked
`hardware` build for real and run only where TensorRT sees a DLA."""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlarules import trtlog
from dlarules.api import check
from dlarules.compare import compare
from dlarules.errors import OptionError
from dlarules.trt import VerifyError, choose_backend, render_text, verify
from dlarules.trt import python_api, remote as remote_mod, trtexec as trtexec_mod
from dlarules.trt.build import BuildRequest
from dlarules.trt.calibration import calibration_batches
from dlarules.trt.process import error_line

import fakes
from fakes import fake_tensorrt
from conftest import CORPUS, EXAMPLE, LOGS, need_shared

DDRNET = "ddrnet23_slim_seedlike_1024x2048.onnx"
HOST = "nvidia@jetson"
NEEDS_DLA = "needs TensorRT and a DLA (Jetson Xavier/Orin)"


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def ddrnet():
    """The DDRNet model, its recorded build log, and the predictions for both precisions (loaded once)."""
    need_shared()
    from dlarules.model import load_graph
    from dlarules.ruledb import RuleDB
    db = RuleDB.load(use_cache=False)
    graph = load_graph(CORPUS / DDRNET)
    reports = {p: check(graph, db, hardware="xavier", trt="8.5", precision=p) for p in ("fp16", "int8")}
    return CORPUS / DDRNET, LOGS / "ddrnet_before_fix.log", reports


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Fake trtexec, ssh and scp first on PATH (nothing else of TensorRT reachable), records in tmp_path."""
    bin_dir = fakes.install(tmp_path / "bin")
    monkeypatch.setenv("PATH", fakes.path_with(bin_dir))
    monkeypatch.setitem(sys.modules, "tensorrt", None)          # `import tensorrt` fails, as without the extra
    monkeypatch.setattr(trtexec_mod, "JETSON_TRTEXEC", tmp_path / "no-jetson" / "trtexec")
    monkeypatch.setattr(remote_mod, "JETSON_TRTEXEC", tmp_path / "no-jetson" / "trtexec")
    device_tmp = tmp_path / "device-tmp"
    device_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(device_tmp))                # where the fake ssh's mktemp makes its folder
    for name in ("trtexec", "ssh", "scp"):
        monkeypatch.setenv(f"FAKE_{name.upper()}_RECORD", str(tmp_path / f"{name}.jsonl"))
    return tmp_path


@pytest.fixture
def fake_trt(monkeypatch):
    """The tensorrt test double in sys.modules, and its scenario."""
    sc = fake_tensorrt.reset()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)
    monkeypatch.setattr(fake_tensorrt, "__version__", "8.5.2.2")
    monkeypatch.setattr(python_api, "load_cudart", lambda: fake_tensorrt.scenario.cuda)
    return sc


def records(tmp: Path, name: str) -> list:
    path = tmp / f"{name}.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def one_line(exc: pytest.ExceptionInfo, *needles: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    for n in needles:
        assert n in text, (n, text)
    return text


def without_source(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "log"}


def tiny_model(path: Path, dims: list, *, external: bool = False) -> Path:
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="/conv/Conv")
    graph = helper.make_graph([node], "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, location="tiny.weights", size_threshold=0)
    else:
        onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------- trtexec backend

@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_trtexec_gives_the_same_report_as_compare_log(env, ddrnet, monkeypatch, precision):
    model, log, reports = ddrnet
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", str(log))
    result = verify(model, reports[precision], backend="trtexec")
    expected = compare(reports[precision], trtlog.read(log)).to_dict()
    assert without_source(result.comparison.to_dict()) == without_source(expected)
    assert result.comparison.agreed is (precision == "int8")   # the recorded build was INT8 (see README)
    assert result.backend == "trtexec" and result.remote is None and result.can_run_on_dla == {}
    argv = records(env, "trtexec")[0]["argv"]
    # the build mode's trtexec flags: --int8 alone for int8 (a layer DLA cannot run in INT8 goes to the GPU)
    assert argv[:4] == [f"--onnx={model}", "--useDLACore=0", "--allowGPUFallback", f"--{precision}"]
    assert ("--fp16" in argv) is (precision == "fp16") and "--verbose" in argv
    assert not any(a.startswith("--shapes") for a in argv)
    assert result.command[0] == str(env / "bin" / "trtexec") and result.command[1:] == argv


def test_save_log_replays_with_compare(env, ddrnet, monkeypatch):
    model, log, reports = ddrnet
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", str(log))
    saved = env / "build.log"
    result = verify(model, reports["int8"], save_log=saved)
    assert saved.read_bytes() == log.read_bytes() and result.saved_log == str(saved)
    # the saved log is the same evidence: `dlarules compare --log build.log` gives exactly this report
    assert result.comparison.to_dict() == compare(reports["int8"], trtlog.read(saved)).to_dict()
    d = result.to_dict()
    assert d["comparison"]["summary"]["agreed"] and d["backend"] == "trtexec" and d["command"].endswith("--verbose")
    json.dumps(d)
    text = render_text(result)
    assert text.startswith(f"dlarules verify: {model}\nlog: {saved}\nbuilt with trtexec: ")
    assert "agreement: 100.0% of layers" in text


def test_trtexec_shapes_dla_core_and_extra_args(env, ddrnet, monkeypatch):
    model, log, reports = ddrnet
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", str(log))
    verify(model, reports["fp16"], backend="trtexec", dla_core=1, input_shapes={"input": (1, 3, 1024, 2048)},
           extra_args=["--skipInference"])
    argv = records(env, "trtexec")[0]["argv"]
    assert "--useDLACore=1" in argv and "--shapes=input:1x3x1024x2048" in argv and argv[-1] == "--skipInference"
    # an unnamed --input-shape names the model's one input on the trtexec line
    verify(model, reports["fp16"], backend="trtexec", input_shapes={"": (1, 3, 1024, 2048)})
    assert "--shapes=input:1x3x1024x2048" in records(env, "trtexec")[-1]["argv"]
    req = BuildRequest(Path("m.onnx"), input_shapes={"images:0": (1, 3, 8, 8), "b": (2,)})
    assert trtexec_mod.shapes_arg(req.input_shapes) == "--shapes='images:0':1x3x8x8,b:2"


def test_trtexec_failure_is_one_line_and_keeps_the_log(env, ddrnet, monkeypatch):
    model, log, reports = ddrnet
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", str(log))
    monkeypatch.setenv("FAKE_TRTEXEC_RC", "1")
    monkeypatch.setenv("FAKE_TRTEXEC_ERROR", "Error[4]: [network.cpp::validate::3062] Error Code 4: Internal Error")
    saved = env / "failed.log"
    with pytest.raises(VerifyError) as exc:
        verify(model, reports["fp16"], backend="trtexec", save_log=saved)
    one_line(exc, str(model), "trtexec failed (exit 1)", "Error Code 4", f"the build log is in {saved}")
    assert "Engine could not be created" in exc.value.log and "Layers Running on DLA" in exc.value.log
    assert saved.read_text() == exc.value.log
    assert "Error Code 4" in exc.value.log_tail(3)


def test_log_without_placement_is_an_error(env, ddrnet, monkeypatch):
    model, log, reports = ddrnet
    monkeypatch.setenv("FAKE_TRTEXEC_MODE", "no-placement")
    with pytest.raises(VerifyError) as exc:
        verify(model, reports["fp16"], backend="trtexec")
    one_line(exc, "printed no 'Layers Running on DLA/GPU' section", "--save-log")
    assert "Original: 321 layers" in exc.value.log


def test_trtexec_past_its_timeout_is_killed(env, ddrnet, monkeypatch):
    model, log, reports = ddrnet
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", str(log))
    monkeypatch.setenv("FAKE_TRTEXEC_MODE", "hang")
    start = time.monotonic()
    with pytest.raises(VerifyError) as exc:
        verify(model, reports["fp16"], backend="trtexec", timeout=1)
    assert time.monotonic() - start < 10
    one_line(exc, "trtexec did not finish within 1 s")
    assert "[DlaLayer]" in exc.value.log          # what it printed before it hung


def test_trtexec_lookup(env, monkeypatch):
    with pytest.raises(VerifyError) as exc:
        trtexec_mod.find_trtexec(env / "nowhere" / "trtexec")
    one_line(exc, "--trtexec", "no such executable file")
    assert trtexec_mod.find_trtexec(None) == str(env / "bin" / "trtexec")          # PATH
    monkeypatch.chdir(env / "bin")   # a relative --trtexec is the file here, not a name to look up on PATH
    assert trtexec_mod.find_trtexec("./trtexec") == str((env / "bin" / "trtexec").resolve())
    monkeypatch.setenv("PATH", str(env / "empty"))
    assert trtexec_mod.find_trtexec(None) is None
    with pytest.raises(VerifyError) as exc:
        trtexec_mod.require_trtexec(None, "m.onnx")
    assert str(exc.value) == ("trtexec not found (no --trtexec, not on PATH, not in /usr/src/tensorrt/bin); "
                              "run the build on the device and use `dlarules compare m.onnx --log build.log`")
    jetson = fakes.install(env / "jetson", "trtexec") / "trtexec"                    # JetPack's location
    monkeypatch.setattr(trtexec_mod, "JETSON_TRTEXEC", jetson)
    assert trtexec_mod.find_trtexec(None) == str(jetson)


def test_no_tensorrt_machine_says_what_to_do(env, monkeypatch):
    monkeypatch.setenv("PATH", str(env / "empty"))
    report = check(EXAMPLE, hardware="orin")
    with pytest.raises(VerifyError) as exc:
        verify(EXAMPLE, report)
    one_line(exc, "the tensorrt module does not import", "trtexec not found (no --trtexec, not on PATH",
             f"dlarules compare {EXAMPLE} --log build.log", "--remote")
    with pytest.raises(VerifyError) as exc:
        verify(EXAMPLE, report, backend="python")
    one_line(exc, "tensorrt Python module is not available", "pip install -e '.[trt]'")


def test_bad_options(env, ddrnet):
    model, _, reports = ddrnet
    with pytest.raises(OptionError, match="--backend"):
        verify(model, reports["fp16"], backend="gpu")
    with pytest.raises(OptionError, match="--dla-core"):
        verify(model, reports["fp16"], dla_core=-1)
    with pytest.raises(OptionError, match="--inputs"):
        verify(model, reports["fp16"], inputs=env / "missing.npz")
    with pytest.raises(OptionError, match="--remote runs trtexec"):
        verify(model, reports["fp16"], backend="python", remote=HOST)
    with pytest.raises(VerifyError, match="--remote"):
        verify(model, reports["fp16"], remote="-oProxyCommand=touch /tmp/x")


def test_error_line_prefers_the_first_error():
    text = ("[08/10/2023-13:58:11] [I] building\n[08/10/2023-13:58:12] [E] Cannot create DLA engine, 0 not available\n"
            "[08/10/2023-13:58:12] [E] Engine set up failed\n&&&& FAILED TensorRT.trtexec # trtexec\n")
    assert error_line(text) == "Cannot create DLA engine, 0 not available"
    assert error_line("just this\n") == "just this" and error_line("") == ""


# ---------------------------------------------------------------- remote mode

def test_remote_end_to_end(env, ddrnet, monkeypatch):
    model, log, reports = ddrnet
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", str(log))
    result = verify(model, reports["int8"], remote=HOST)
    assert result.comparison.agreed and result.remote == HOST and result.backend == "trtexec"
    assert without_source(result.comparison.to_dict()) == \
        without_source(compare(reports["int8"], trtlog.read(log)).to_dict())
    ssh = records(env, "ssh")
    assert all(c[:2] == ["-o", "BatchMode=yes"] and HOST in c for c in ssh)
    assert [("mktemp" in c[-1], "trtexec" in c[-1], "rm -rf" in c[-1]) for c in ssh] == \
        [(True, False, False), (False, True, False), (False, False, True)]
    (scp,) = records(env, "scp")
    assert scp[:2] == ["-o", "BatchMode=yes"] and scp[-2] == str(model.resolve())
    workdir = scp[-1].removeprefix(f"{HOST}:").rstrip("/")
    assert workdir.startswith(str(env / "device-tmp" / "dlarules."))
    (run,) = records(env, "trtexec")
    assert run["argv"][:2] == [f"--onnx={workdir}/{DDRNET}", "--useDLACore=0"] and "--int8" in run["argv"]
    assert run["files"] == [DDRNET]                                  # the copy was there when trtexec ran
    assert not Path(workdir).exists()                                 # and the device's folder is gone
    assert result.command[:2] == ["trtexec", f"--onnx={workdir}/{DDRNET}"]
    assert f"built with trtexec on {HOST}: trtexec --onnx=" in render_text(result)


def test_remote_copies_external_data(env, monkeypatch, tmp_path):
    need_shared()
    model = tiny_model(tmp_path / "tiny.onnx", [1, 3, 8, 8], external=True)
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", str(LOGS / "ddrnet_before_fix.log"))
    verify(model, check(model, hardware="orin"), remote=HOST)
    assert records(env, "trtexec")[0]["files"] == ["tiny.onnx", "tiny.weights"]


def test_remote_login_failure_is_one_line(env, ddrnet, monkeypatch):
    model, _, reports = ddrnet
    monkeypatch.setenv("FAKE_SSH_FAIL", "Permission denied (publickey).")
    with pytest.raises(VerifyError) as exc:
        verify(model, reports["fp16"], remote=HOST)
    one_line(exc, f"{HOST}: ssh (creating a temporary folder) failed (exit 255)", "Permission denied (publickey)",
             "BatchMode=yes", "never asks for a password", f"ssh-copy-id {HOST}")
    assert records(env, "scp") == [] and records(env, "trtexec") == []


def test_remote_build_failure_still_removes_the_folder(env, ddrnet, monkeypatch):
    model, log, reports = ddrnet
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", str(log))
    monkeypatch.setenv("FAKE_TRTEXEC_RC", "1")
    with pytest.raises(VerifyError) as exc:
        verify(model, reports["fp16"], remote=HOST)
    one_line(exc, f"{HOST}: trtexec on {HOST} failed (exit 1)")
    assert "Layers Running on DLA" in exc.value.log
    assert list((env / "device-tmp").iterdir()) == []


def test_remote_without_trtexec_on_the_device(env, ddrnet, monkeypatch):
    model, _, reports = ddrnet
    (env / "bin" / "trtexec").unlink()
    with pytest.raises(VerifyError) as exc:
        verify(model, reports["fp16"], remote=HOST)
    one_line(exc, f"trtexec not found on {HOST}", "--trtexec")
    assert list((env / "device-tmp").iterdir()) == []


def test_remote_uses_the_given_trtexec_path_on_the_device(env, ddrnet, monkeypatch):
    model, log, reports = ddrnet
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", str(log))
    device_trtexec = fakes.install(env / "device-bin", "trtexec") / "trtexec"
    (env / "bin" / "trtexec").unlink()
    result = verify(model, reports["int8"], remote=HOST, trtexec=str(device_trtexec))
    assert result.comparison.agreed and result.command[0] == str(device_trtexec)


# ---------------------------------------------------------------- Python-API backend (tensorrt test double)

def test_python_backend_logger_capture_becomes_the_placement(env, ddrnet, fake_trt):
    model, log, reports = ddrnet
    fake_trt.log = log
    fake_trt.not_on_dla = {"/Resize", "/spp/scale1/scale1.0/AveragePool"}
    result = verify(model, reports["int8"], backend="python", dla_core=1)
    got, want = result.comparison.to_dict(), compare(reports["int8"], trtlog.read(log)).to_dict()
    for key in ("summary", "gpu_layers", "predicted_not_seen", "dla_subgraphs"):
        assert got[key] == want[key], key
    assert [(w["kind"], w["layer"]) for w in got["log_warnings"]] == \
        [(w["kind"], w["layer"]) for w in want["log_warnings"]]
    assert result.comparison.agreed and result.backend == "python"
    # every captured line is in trtexec's format: [timestamp] [severity] [TRT|dlarules] message
    lines = result.log_text.splitlines()
    assert all(re.match(r"\[\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\] \[[FEWIV]\] \[(TRT|dlarules)\] ", x) for x in lines)
    assert "] [W] [TRT] Validation failed for DLA layer: /softmax/Transpose" in result.log_text
    assert "] [V] [TRT] Original: 321 layers" in result.log_text
    assert result.log.versions["tensorrt"] == "8.5.2.2"
    # the builder was set up as trtexec --useDLACore=1 --allowGPUFallback --int8 would (INT8 only: the mode)
    cfg = fake_trt.config
    flags = {f.name for f in cfg.flags}
    assert flags == {"INT8", "GPU_FALLBACK"}
    assert cfg.default_device_type.name == "DLA" and cfg.DLA_core == 1 and fake_trt.runtime_dla_core == 1
    assert fake_trt.network_flags == 1 << 0                        # EXPLICIT_BATCH before TensorRT 10
    # can_run_on_DLA, per layer name
    assert len(result.can_run_on_dla) == len(onnx.load(str(model), load_external_data=False).graph.node)
    assert result.can_run_on_dla["/Resize"] is False and result.can_run_on_dla["/init_bn/BatchNormalization"]
    assert "2 of " in render_text(result) and "/Resize" in render_text(result)
    # the engine inspector's layers
    assert sum(1 for x in result.engine_layers if x["name"].startswith("{ForeignNode[")) == 5
    assert result.command[0] == "tensorrt 8.5.2.2 Python API" and "--int8" in result.command
    assert "INT8 calibrated with 2 batch(es) of random data" in result.notes
    assert [b["input"].shape for b in fake_trt.calibrated] == [(1, 3, 1024, 2048)] * 2
    assert sorted(fake_trt.cuda.freed) == sorted(fake_trt.cuda.memory)   # device buffers freed


def test_python_backend_tensorrt_10_and_version_note(env, ddrnet, fake_trt, monkeypatch):
    model, log, reports = ddrnet
    monkeypatch.setattr(fake_tensorrt, "__version__", "10.3.0")
    fake_trt.log = log
    result = verify(model, reports["fp16"], backend="python")
    assert fake_trt.network_flags == 0                              # every network is explicit-batch in 10
    assert {f.name for f in fake_trt.config.flags} == {"FP16", "GPU_FALLBACK"}
    assert any("the build used TensorRT 10.3.0 but the prediction is for TensorRT 8.5: predict for the same "
               "release with --trt 10.3" in n for n in result.notes)


def test_python_backend_without_dla(env, ddrnet, fake_trt):
    model, _, reports = ddrnet
    fake_trt.dla_cores = 0
    with pytest.raises(VerifyError) as exc:
        verify(model, reports["fp16"], backend="python")
    one_line(exc, "no DLA on this machine (TensorRT 8.5.2.2 reports 0 DLA cores)", "--remote",
             "dlarules compare")
    fake_trt.dla_cores = 2
    with pytest.raises(VerifyError) as exc:
        verify(model, reports["fp16"], backend="python", dla_core=2)
    one_line(exc, "--dla-core: DLA core 2 does not exist: this device has 2 (0..1)")


def test_python_backend_parse_and_build_failures(env, ddrnet, fake_trt):
    model, log, reports = ddrnet
    fake_trt.parse_errors = ["In node 3 (importConv): UNSUPPORTED_NODE: bad kernel"]
    with pytest.raises(VerifyError) as exc:
        verify(model, reports["fp16"], backend="python")
    one_line(exc, "ONNX parser rejected the model: In node 3 (importConv)")
    assert "[E] [dlarules] In node 3" in exc.value.log
    fake_trt.parse_errors = []
    fake_trt.build_fails = True
    with pytest.raises(VerifyError) as exc:
        verify(model, reports["fp16"], backend="python", save_log=env / "b.log")
    one_line(exc, "TensorRT could not build the engine: 2: [builder.cpp::buildSerializedNetwork::751]",
             "the build log is in")
    assert "Error Code 2" in (env / "b.log").read_text()


def test_python_backend_dynamic_inputs_get_one_static_profile(tmp_path, fake_trt):
    model = tiny_model(tmp_path / "dyn.onnx", ["N", 3, 8, 8])
    python_api.build(BuildRequest(model, input_shapes={"x": (2, 3, 8, 8)}))
    (profile,) = fake_trt.config.profiles
    assert profile.shapes == {"x": ((2, 3, 8, 8),) * 3}
    out = python_api.build(BuildRequest(model))
    assert fake_trt.config.profiles[0].shapes == {"x": ((1, 3, 8, 8),) * 3}
    assert any("input x is dynamic (-1x3x8x8)" in n and "built as 1x3x8x8" in n for n in out.notes)
    with pytest.raises(VerifyError, match="does not fit the model's input"):
        python_api.build(BuildRequest(model, input_shapes={"x": (1, 4, 8, 8)}))
    with pytest.raises(VerifyError, match="has no input 'y'"):
        python_api.build(BuildRequest(model, input_shapes={"y": (1, 3, 8, 8)}))
    static = tiny_model(tmp_path / "static.onnx", [1, 3, 8, 8])
    python_api.build(BuildRequest(static))
    assert fake_trt.config.profiles == []


def test_python_backend_int8_calibration_from_npz(tmp_path, fake_trt):
    model = tiny_model(tmp_path / "m.onnx", [1, 3, 8, 8])
    data = np.arange(3 * 3 * 8 * 8, dtype=np.float32).reshape(3, 3, 8, 8)
    np.savez(tmp_path / "calib.npz", x=data)
    out = python_api.build(BuildRequest(model, precision="int8", inputs=tmp_path / "calib.npz",
                                        trtexec_flags=("--int8",), builder_flags=("INT8",)))
    assert len(fake_trt.calibrated) == 3
    assert all(np.array_equal(b["x"][0], data[i]) for i, b in enumerate(fake_trt.calibrated))
    assert fake_trt.config.int8_calibrator is not None
    assert any(f"3 batch(es) of arrays from {tmp_path / 'calib.npz'}" in n for n in out.notes)
    np.savez(tmp_path / "bad.npz", other=data)
    with pytest.raises(OptionError, match="no array for input"):
        python_api.build(BuildRequest(model, precision="int8", inputs=tmp_path / "bad.npz",
                                      trtexec_flags=("--int8",), builder_flags=("INT8",)))


def test_calibration_batches_from_arrays(tmp_path):
    specs = {"x": ((2, 3, 4, 4), np.float32)}
    random = calibration_batches(specs, None)
    assert len(random) == 2 and random[0]["x"].shape == (2, 3, 4, 4) and random[0]["x"].dtype == np.float32
    for shape, n in [((2, 3, 4, 4), 1), ((5, 2, 3, 4, 4), 5), ((6, 3, 4, 4), 3)]:
        np.savez(tmp_path / "a.npz", x=np.zeros(shape, np.float64))
        got = calibration_batches(specs, tmp_path / "a.npz")
        assert len(got) == n and all(b["x"].shape == (2, 3, 4, 4) and b["x"].dtype == np.float32 for b in got)
    np.savez(tmp_path / "a.npz", x=np.zeros((3, 3, 4, 4)))
    with pytest.raises(OptionError, match="has shape 3x3x4x4; the input is 2x3x4x4"):
        calibration_batches(specs, tmp_path / "a.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(OptionError, match="not a readable .npz"):
        calibration_batches(specs, tmp_path / "junk.npz")


# ---------------------------------------------------------------- backend selection

def test_auto_picks_python_when_tensorrt_sees_a_dla(env, ddrnet, fake_trt):
    assert choose_backend("auto") == ("python", None)
    model, log, reports = ddrnet
    fake_trt.log = log
    fake_trt.loggers.clear()
    result = verify(model, reports["int8"])
    assert result.backend == "python" and result.comparison.agreed
    # the probe's builder, the build's and the runtime all log to one logger (TensorRT keeps the first it gets)
    assert len(fake_trt.loggers) == 3 and len({id(x) for x in fake_trt.loggers}) == 1


def test_auto_picks_trtexec_without_a_dla_or_without_tensorrt(env, fake_trt, monkeypatch):
    fake_trt.dla_cores = 0
    assert choose_backend("auto") == ("trtexec", str(env / "bin" / "trtexec"))
    fake_trt.dla_cores = 2
    fake_trt.builder_raises = True                                  # tensorrt installed, no GPU
    assert choose_backend("auto")[0] == "trtexec"
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert choose_backend("auto")[0] == "trtexec"


def test_auto_with_neither_is_an_error(env, fake_trt, monkeypatch):
    monkeypatch.setenv("PATH", str(env / "empty"))
    fake_trt.dla_cores = 0
    with pytest.raises(VerifyError) as exc:
        choose_backend("auto", model="m.onnx")
    one_line(exc, "tensorrt 8.5.2.2 imports but reports no DLA core", "trtexec not found",
             "dlarules compare m.onnx --log build.log")


def test_explicit_choices(env, fake_trt):
    assert choose_backend("trtexec") == ("trtexec", str(env / "bin" / "trtexec"))
    assert choose_backend("python") == ("python", None)
    other = fakes.install(env / "other", "trtexec") / "trtexec"
    assert choose_backend("auto", trtexec=other) == ("trtexec", str(other))   # a given path wins


# ---------------------------------------------------------------- real hardware

def _real_dla() -> None:
    ok, _ = python_api.dla_available()
    if not ok:
        pytest.skip(NEEDS_DLA)


@pytest.mark.hardware
def test_real_build_with_the_python_api(tmp_path):
    _real_dla()
    result = verify(EXAMPLE, check(EXAMPLE, hardware="orin"), backend="python", save_log=tmp_path / "build.log")
    assert result.comparison.gpu_rows or result.comparison.subgraph_rows
    assert result.can_run_on_dla and (tmp_path / "build.log").stat().st_size > 0


@pytest.mark.hardware
def test_real_build_with_trtexec(tmp_path):
    _real_dla()
    if trtexec_mod.find_trtexec(None) is None:
        pytest.skip(NEEDS_DLA + " and trtexec")
    result = verify(EXAMPLE, check(EXAMPLE, hardware="orin"), backend="trtexec")
    assert result.comparison.gpu_rows or result.comparison.subgraph_rows
