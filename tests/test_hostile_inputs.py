"""The one output vetting (atomic.py), the one input reader (readers.py) and the budgets, beyond the fuzz
reproducers: what each refuses, in one line naming the file, and what it still lets through."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from dlarules import atomic, readers
from dlarules.errors import DlarulesError, ModelError
from dlarules.model import parse_input_shapes, read_model

from conftest import EXAMPLE, run_cli


def test_output_symlink_is_written_through(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old")
    os.chmod(target, 0o640)
    link = tmp_path / "link.txt"
    link.symlink_to("real.txt")
    atomic.write_text_atomic(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert (target.stat().st_mode & 0o777) == 0o640   # the replaced file keeps its permissions


def test_output_that_is_an_input_is_refused_through_links(tmp_path):
    src = tmp_path / "m.onnx"
    src.write_bytes(b"model")
    hard = tmp_path / "hard.onnx"
    os.link(src, hard)
    soft = tmp_path / "soft.onnx"
    soft.symlink_to(src)
    for out in (src, hard, soft):
        with pytest.raises(DlarulesError, match="is the input"):
            atomic.write_text_atomic(out, "report", [src])
    assert src.read_bytes() == b"model"


@pytest.mark.parametrize("make,what", [
    (lambda p: os.mkfifo(p), "FIFO"), (lambda p: p.mkdir(), "directory"),
])
def test_output_special_files_are_refused(tmp_path, make, what):
    p = tmp_path / "out"
    make(p)
    with pytest.raises(DlarulesError, match=what) as exc:
        atomic.write_text_atomic(p, "x")
    assert "\n" not in exc.value.line() and str(p) in exc.value.line()


def test_output_device_and_long_names_are_refused(tmp_path):
    with pytest.raises(DlarulesError, match="character device"):
        atomic.vet_output("/dev/null")
    with pytest.raises(DlarulesError, match="too long"):
        atomic.vet_output(tmp_path / ("o" * 300))
    # a name just under the limit is written (the temp name is kept short)
    atomic.write_text_atomic(tmp_path / ("o" * 250 + ".json"), "{}")
    assert (tmp_path / ("o" * 250 + ".json")).read_text() == "{}"


def test_reader_refuses_fifos_and_sizes_before_reading(tmp_path, monkeypatch):
    fifo = tmp_path / "m.onnx"
    os.mkfifo(fifo)
    with pytest.raises(ModelError, match="FIFO"):
        read_model(fifo)          # returns at once: no open() that waits for a writer
    big = tmp_path / "big.onnx"
    with open(big, "wb") as fh:
        fh.truncate(3 << 20)
    monkeypatch.setattr(readers, "MAX_MODEL_BYTES", 1 << 20)
    with pytest.raises(ModelError, match=r"over the 1\.0 MiB limit"):
        read_model(big)


def test_reader_text_must_be_utf8(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_bytes(b"rules: []\n\xff\xfe")
    with pytest.raises(DlarulesError, match="not UTF-8"):
        readers.read_text(p, "a YAML rule file", readers.MAX_YAML_BYTES)
    assert readers.read_text(p, "a log", 1 << 20, latin1_fallback=True).startswith("rules")


def test_yaml_recursive_alias_is_refused(tmp_path):
    from dlarules.ruledb import _line_loader
    _LineLoader = _line_loader()
    p = tmp_path / "r.yaml"
    p.write_text("a: &x [*x]\n")
    with pytest.raises(DlarulesError, match="aliases"):
        readers.load_yaml(p, _LineLoader)
    p.write_text("s: &s {doc: d}\nrules: [{source: *s}, {source: *s}]\n")   # ordinary anchors are fine
    assert readers.load_yaml(p, _LineLoader)["rules"][1]["source"]["doc"] == "d"


@pytest.mark.parametrize("spec,msg", [
    ("x:" + "9" * 5000 + "x3", "at most 2147483647"), ("x:2147483648x1", "at most 2147483647"),
    ("x:" + "x".join(["2"] * 17), "rank limit"), ("x:2147483647x2147483647x2147483647", "int64"),
])
def test_input_shape_values_are_bounded_and_clipped(spec, msg):
    with pytest.raises(DlarulesError, match=msg) as exc:
        parse_input_shapes([spec])
    assert len(exc.value.line()) < 300
    assert parse_input_shapes(["x:2147483647x1"]) == {"x": (2147483647, 1)}


def test_every_error_line_is_capped():
    e = DlarulesError("p" * 5000, "q" * 5000 + "\nsecond line")
    assert len(e.line()) <= 280 and "\n" not in e.line() and e.line().startswith("ppp")


def test_proof_refuses_huge_random_inputs(tmp_path):
    from dlarules.prove import MAX_PROOF_ELEMENTS, prove
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 3, 2048, 2048])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 3, 2048, 2048])
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    with pytest.raises(DlarulesError, match=f"{MAX_PROOF_ELEMENTS:,}"):
        prove(m, m, source="big.onnx")


def test_npz_of_strings_is_one_line(tmp_path):
    from dlarules.prove import _read_npz
    p = tmp_path / "s.npz"
    np.savez(p, x=np.array(["a", "b"]))
    with pytest.raises(DlarulesError, match="not numbers"):
        _read_npz(p)


def test_onnxruntime_default_logger_is_quiet(tmp_path):
    """A deprecated Resize attribute makes ORT's default logger (not the session's) warn while building the
    session: prove keeps it off stderr."""
    code = """if True:
        import numpy as np
        from onnx import TensorProto, helper
        from dlarules import prove
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])
        sc = helper.make_tensor("sc", TensorProto.FLOAT, [4], [1, 1, 2, 2])
        n = helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="nearest",
                             coordinate_transformation_mode="tf_half_pixel_for_nn")
        m = helper.make_model(helper.make_graph([n], "g", [x], [y], [sc]),
                              opset_imports=[helper.make_opsetid("", 19)])
        m.ir_version = 9
        prove.run(m, {"x": np.ones((1, 1, 2, 2), np.float32)}, "m.onnx")
    """
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "onnxruntime" not in r.stderr, r.stderr


def test_model_text_that_is_not_utf8_is_one_line(tmp_path):
    m = onnx.load(str(EXAMPLE))
    data = bytearray(m.SerializeToString())
    op = m.graph.node[0].op_type.encode()
    i = data.find(op)
    data[i] = 0xF7   # a byte flip inside an op_type: protobuf hands back bytes
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(bytes(data))
    r = run_cli("check", str(bad), "--format", "json")
    assert r.returncode == 2 and "not valid UTF-8" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_rules_docs_out_must_be_a_folder(tmp_path):
    f = tmp_path / "afile"
    f.write_text("")
    r = run_cli("rules", "docs", "--out", str(f))
    assert r.returncode == 2 and "cannot create the folder" in r.stderr and r.stderr.count("\n") == 1


def test_npz_is_budgeted_before_decompressing(tmp_path, monkeypatch):
    from dlarules import prove
    p = tmp_path / "z.npz"
    np.savez_compressed(p, x=np.zeros((1 << 20,), np.float32))   # 4 MiB of zeros, a few KiB on disk
    assert p.stat().st_size < 100_000
    monkeypatch.setattr(prove, "MAX_PROOF_BYTES", 1 << 20)
    with pytest.raises(DlarulesError, match="over the limit"):
        prove._read_npz(p)


@pytest.mark.parametrize("args,needle", [
    (["fix", str(EXAMPLE), "--dry-run", "--rtol", "nan"], "--rtol"),
    (["fix", str(EXAMPLE), "--dry-run", "--atol", "-1"], "--atol"),
    (["check", str(EXAMPLE), "--rules", "r" * 4000], "cannot read"),
])
def test_option_values_are_one_line(args, needle):
    r = run_cli(*args)
    assert r.returncode == 2 and needle in r.stderr and r.stderr.count("\n") == 1 and len(r.stderr) <= 301


def test_a_constant_whose_data_does_not_fit_is_no_constant():
    """bench/fuzz.py seed 303603911792: a Constant whose value holds no data for its shape crashed fix."""
    import onnx_graphsurgeon as gs
    from dlarules.recipes.base import constant_value
    t = onnx.TensorProto(data_type=TensorProto.FLOAT, name="v")   # a scalar with no bytes
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    g = helper.make_graph([helper.make_node("Constant", [], ["c"], value=t), helper.make_node("Add", ["x", "c"], ["y"])],
                          "g", [x], [y])
    graph = gs.import_onnx(helper.make_model(g))
    add = next(n for n in graph.nodes if n.op == "Add")
    assert constant_value(add.inputs[1]) is None


@pytest.mark.parametrize("option", ["--target", "--trt", "--platform", "--precision", "--jetpack", "--format"])
def test_long_option_values_are_quoted_short(option):
    r = run_cli("check", str(EXAMPLE), option, "z" * 4000)
    line = r.stderr.strip()
    assert r.returncode == 2 and "\n" not in line and len(line) <= 300 and option in line
    assert "z" * 41 not in line and not line.endswith("...")   # the value cut short, the message whole
