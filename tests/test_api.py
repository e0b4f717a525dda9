"""The public Python API (dlarules.api): a facade over the core and the features, and a good guest in a host's
process (it leaves the garbage collector alone)."""
from __future__ import annotations

import gc
import json
import sys
import threading

import onnx
import pytest
from onnx import TensorProto, helper

import dlarules
from dlarules import api, core
from dlarules.compare import compare as feature_compare
from dlarules.errors import DependencyError, OptionError
from dlarules.trtlog import read


def _model(tmp_path, name: str = "m.onnx", hardswish: bool = True):
    """x -> Conv -> Relu -> HardSwish: HardSwish falls back on Orin, hardswish-decompose cures it."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 8, 1, 1], [0.1] * 64)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r" if hardswish else "y"], name="relu")]
    nodes += [helper.make_node("HardSwish", ["r"], ["y"], name="hs")] if hardswish else []
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], [w])
    path = tmp_path / name
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]), str(path))
    return path


def test_the_facade_exports_the_core_and_the_features():
    for name in api.__all__:
        assert hasattr(api, name), name
    assert api.Report is core.Report and api.check is core.check and api.NodeVerdict is core.NodeVerdict
    assert dlarules.check is api.check and dlarules.Report is core.Report and dlarules.load_db is api.load_db
    for fn in (api.check, api.fix, api.compare, api.split, api.load_db):
        assert fn.__doc__ and len(fn.__doc__) > 60, fn


def test_check_leaves_the_gc_as_the_host_set_it(tmp_path, monkeypatch, db):
    """gc settings are process-wide: a host's other threads would feel a library call that changes them."""
    calls = []
    for fn in ("disable", "enable", "freeze", "set_threshold"):
        monkeypatch.setattr(gc, fn, lambda *a, _fn=fn: calls.append(_fn))
    seen = []
    before = gc.isenabled()
    stop = threading.Event()

    def watch() -> None:   # another thread of the host, looking while check runs
        while not stop.is_set():
            seen.append(gc.isenabled())

    t = threading.Thread(target=watch)
    t.start()
    try:
        report = api.check(_model(tmp_path), db, hardware="orin")
    finally:
        stop.set()
        t.join()
    assert report.summary["layers_on_gpu"] >= 1
    assert calls == [] and seen and all(s == before for s in seen) and gc.isenabled() == before


def test_fix_facade_is_what_the_feature_does(tmp_path, db):
    model = _model(tmp_path)
    out = tmp_path / "m.dla.onnx"
    result = api.fix(model, db, hardware="orin", output=out)
    assert [c.recipe for c in result.changes] == ["hardswish-decompose"]
    assert result.proof is not None and result.proof.passed
    assert result.before.summary["layers_on_gpu"] > result.after.summary["layers_on_gpu"] == 0
    written = api.check(out, db, hardware="orin")
    assert written.summary == result.after.summary          # the file holds the model the result describes
    with pytest.raises(api.DlarulesError, match="already exists"):
        api.fix(model, db, hardware="orin", output=out)      # never over an existing file without force
    dry = api.fix(model, db, hardware="orin", only=["hardswish-decompose"], verify=False)
    assert dry.proof is None and dry.changes
    with pytest.raises(OptionError, match="unknown recipe"):
        api.fix(model, db, only=["no-such-recipe"])


def test_fix_facade_without_onnxruntime_says_what_to_install(tmp_path, monkeypatch, db):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(DependencyError) as exc:
        api.fix(_model(tmp_path), db, hardware="orin")
    assert "pip install onnxruntime" in exc.value.line() and "\n" not in exc.value.line()


def _log(report: core.Report, extra_gpu: tuple[str, ...] = ()) -> str:
    """A trtexec-style placement log of exactly the prediction (plus layers the 'build' moved to the GPU)."""
    names = {v.index: v for v in report.layers}
    lines = ["[I] [TRT] ---------- Layers Running on DLA ----------"]
    for sg in report.placement.subgraphs:
        first, last = names[sg.layers[0]].name, names[sg.layers[-1]].name
        lines.append(f"[I] [TRT] [DlaLayer] {{ForeignNode[{first}...{last}]}}" if first != last
                     else f"[I] [TRT] [DlaLayer] {{ForeignNode[{first}]}}")
    lines.append("[I] [TRT] ---------- Layers Running on GPU ----------")
    lines += [f"[I] [TRT] [GpuLayer] {names[i].kind}: {names[i].name}" for i in report.placement.gpu_layers]
    lines += [f"[I] [TRT] [GpuLayer] {g}" for g in extra_gpu]
    return "\n".join(lines) + "\n"


def test_compare_facade_is_what_the_feature_does(tmp_path, db):
    model = _model(tmp_path, hardswish=False)     # Conv -> Relu: one DLA subgraph conv...relu
    report = api.check(model, db, hardware="orin")
    log = tmp_path / "build.log"
    log.write_text(_log(report))
    result = api.compare(model, log, db, hardware="orin")
    assert result.agreed
    assert json.dumps(result.to_dict(), default=str) == json.dumps(feature_compare(report, read(log)).to_dict(),
                                                                    default=str)
    assert api.compare(report, log).agreed                    # a Report from check works as well
    log.write_text(_log(report, extra_gpu=("ACTIVATION: relu",)))
    assert not api.compare(model, log, db, hardware="orin").agreed   # the log runs relu on the GPU: missing rule


def test_split_facade_is_what_the_feature_does(tmp_path, db):
    # Conv -> Relu -> HardSwish on Orin: the DLA part holds the Conv and the Relu, the GPU part the HardSwish
    from dlarules import split as feature
    model = _model(tmp_path)
    result = api.split(model, db, hardware="orin")
    same = feature.split(model, db, db.target("orin"))
    assert result.status == same.status == "split" and result.proof.passed
    assert result.to_dict({}) == same.to_dict({})
    assert not (tmp_path / "m.dlapart.onnx").exists()          # nothing written unless asked
    api.split(model, db, hardware="orin", write=True)
    assert (tmp_path / "m.dlapart.onnx").is_file() and (tmp_path / "m.gpupart.onnx").is_file()
    with pytest.raises(api.DlarulesError, match="already exists"):
        api.split(model, db, hardware="orin", write=True)
