"""Terminal conventions of the CLI (issue 14, item 6): help without `<bool>`, choices from the data, shell
completion, -q/-v, colour only on a terminal (NO_COLOR, --no-color), plain-text `rules list|show`, a missing
dependency as one exit-2 line, and no onnx import for the commands that read no model."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from dlarules import cli
from dlarules.errors import dependency_error

from conftest import EXAMPLE, ROOT

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`dlarules ARGS` in this process (cli.main, as the entry point runs it): exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["dlarules", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out, err = capsys.readouterr()
    return exc.value.code, out, err


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_on_tty(monkeypatch, *args: str) -> tuple[int, str]:
    tty, real = _Tty(), sys.stdout
    monkeypatch.setattr(sys, "argv", ["dlarules", *args])
    sys.stdout = tty
    try:
        with pytest.raises(SystemExit) as exc:
            cli.main()
    finally:
        sys.stdout = real
    return exc.value.code, tty.getvalue()


@pytest.mark.parametrize("command", [[], ["check"], ["compare"], ["fix"], ["verify"], ["rules", "list"],
                                     ["rules", "show"], ["rules", "validate"], ["recipes", "show"]])
def test_help_shows_no_value_after_a_flag(command):
    out = CliRunner().invoke(cli.app, [*command, "--help"], prog_name="dlarules", env={"COLUMNS": "160"}).output
    assert "--help" in out and "<bool>" not in out, out
    if command in (["check"], ["fix"]):
        assert re.search(r"--all\s+List every", out) and "MODEL" in out


def test_trt_help_lists_every_release_of_each_family(db):
    for hw, meta in db.hardware.items():
        part = cli.TRT_HELP.split(f"{hw} ", 1)[1].split(";")[0]
        versions = [r.version for r in db.releases if hw in r.hardware]
        assert re.findall(r"\d+\.\d+", part.split("(")[0]) == versions, hw
        assert f"(default {meta['default_tensorrt']})" in part


def _complete(words: str) -> list[str]:
    res = CliRunner().invoke(cli.app, [], prog_name="dlarules",
                             env={"_DLARULES_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": words})
    return re.findall(r'"([^"]+)"', res.output)


def test_completion_offers_the_values_of_the_rule_db(db):
    assert set(_complete("dlarules check m.onnx --target agx")) == {n for n in db.modules if n.startswith("agx")}
    assert "orin-nano" not in _complete("dlarules check m.onnx --target orin")   # no DLA: never offered
    xavier = [r.version for r in db.releases if "xavier" in r.hardware]
    assert _complete("dlarules check m.onnx --target xavier --trt ") == xavier     # the family's releases only
    assert set(_complete("dlarules fix m.onnx --precision int")) == {m for m in db.mode_names() if m.startswith("int")}


def test_quiet_keeps_the_verdict_lines_named_by_model(monkeypatch, capsys):
    rc, out, _ = run_main(monkeypatch, capsys, "-q", "check", str(EXAMPLE), "--max-dla-subgraphs", "1")
    lines = out.splitlines()
    assert rc == 1 and lines and all(ln.startswith(f"{EXAMPLE}: ") for ln in lines)
    assert [ln.split(": ", 2)[1] for ln in lines] == ["gate failed", "summary"]
    rc, full, _ = run_main(monkeypatch, capsys, "check", str(EXAMPLE), "--max-dla-subgraphs", "1")
    assert lines[-1].split(": ", 1)[1] in full.splitlines()      # the same line as in the full report


def test_quiet_leaves_json_whole(monkeypatch, capsys):
    rc, out, _ = run_main(monkeypatch, capsys, "-q", "check", str(EXAMPLE), "--format", "json")
    assert rc == 1 and json.loads(out)["summary"]["layers_on_gpu"] > 0


def test_verbose_lists_every_node(monkeypatch, capsys):
    _, plain, _ = run_main(monkeypatch, capsys, "check", str(EXAMPLE))
    _, verbose, _ = run_main(monkeypatch, capsys, "-v", "check", str(EXAMPLE))
    assert "every node:" not in plain and "every node:" in verbose
    assert re.search(r"\[DLA sg \d+ FP16\]", verbose) and "[DLA:" not in verbose   # subgraph, not a DLA core


def test_quiet_and_verbose_together_is_an_option_error(monkeypatch, capsys):
    rc, out, err = run_main(monkeypatch, capsys, "-q", "-v", "check", str(EXAMPLE))
    assert rc == 2 and not out and len(err.splitlines()) == 1 and "--quiet" in err


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch, capsys):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)
    rc, coloured = run_on_tty(monkeypatch, "check", str(EXAMPLE), "--all")
    _, piped, _ = run_main(monkeypatch, capsys, "check", str(EXAMPLE), "--all")
    assert rc == 1 and "\x1b[" in coloured and "\x1b[" not in piped
    assert ANSI.sub("", coloured) == piped          # colour adds escapes, never changes a word
    assert "\x1b[32m[DlaLayer]" in coloured and "\x1b[33m[GpuLayer]" in coloured
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in run_on_tty(monkeypatch, "check", str(EXAMPLE))[1]
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(os, "environ", dict(os.environ))      # --no-color sets NO_COLOR for rich's help: keep it here
    assert "\x1b[" not in run_on_tty(monkeypatch, "--no-color", "check", str(EXAMPLE))[1]
    out = run_on_tty(monkeypatch, "check", str(EXAMPLE), "--format", "json")[1]
    assert "\x1b[" not in out and json.loads(out)


def test_verbose_shows_the_traceback_of_an_internal_error(monkeypatch, capsys):
    def broken(*a, **k):
        raise RuntimeError("a bug of ours")
    monkeypatch.setattr("dlarules.api.check", broken)
    monkeypatch.delenv("DLARULES_DEBUG", raising=False)
    rc, _, err = run_main(monkeypatch, capsys, "check", str(EXAMPLE))
    assert rc == 3 and len(err.splitlines()) == 1
    assert err.startswith("dlarules: internal error: RuntimeError: a bug of ours")
    monkeypatch.setattr(sys, "argv", ["dlarules", "-v", "check", str(EXAMPLE)])
    with pytest.raises(RuntimeError, match="a bug of ours"):
        cli.main()


def test_rules_list_and_show_print_plain_text(monkeypatch, capsys):
    rc, out, _ = run_main(monkeypatch, capsys, "rules", "list")
    assert rc == 0 and "fix: hardswish-decompose for HardSwish" in out
    for markdown in ("](", "**", "`"):
        assert markdown not in out, markdown


def _tiny(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])
    g = helper.make_graph([helper.make_node("HardSwish", ["x"], ["y"], name="hs")], "g", [x], [y])
    path = tmp_path / "hs.onnx"
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]).SerializeToString())
    return path


def test_fix_without_onnxruntime_is_one_exit_2_line(monkeypatch, capsys, tmp_path):
    model = _tiny(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)     # `import onnxruntime` fails as when not installed
    rc, out, err = run_main(monkeypatch, capsys, "fix", str(model), "--dry-run")
    assert rc == 2 and len(err.splitlines()) == 1 and len(err) <= 300, err
    assert err.startswith("dlarules: error: onnxruntime: not installed") and "pip install onnxruntime" in err
    assert "internal error" not in err


def test_fix_without_graphsurgeon_is_one_exit_2_line(monkeypatch, capsys, tmp_path):
    model = _tiny(tmp_path)
    for name in [m for m in sys.modules if m == "dlarules.fix" or m.startswith("dlarules.recipes.")
                 or m.startswith("dlarules.report.fixtext")]:
        monkeypatch.delitem(sys.modules, name)                  # imported again, now without onnx-graphsurgeon
    monkeypatch.setitem(sys.modules, "onnx_graphsurgeon", None)
    monkeypatch.setitem(sys.modules, "onnx_graphsurgeon.logger", None)
    rc, _, err = run_main(monkeypatch, capsys, "fix", str(model), "--dry-run")
    assert rc == 2 and len(err.splitlines()) == 1 and "pip install onnx-graphsurgeon" in err, err


def test_an_unknown_missing_module_is_still_a_bug():
    assert dependency_error(ModuleNotFoundError("No module named 'dlarules.nothing'", name="dlarules.nothing")) is None
    dep = dependency_error(ModuleNotFoundError("No module named 'onnxruntime.capi'", name="onnxruntime.capi"))
    assert dep is not None and "pip install onnxruntime" in dep.line()


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["rules", "list"], ["rules", "show", "POOL-WINDOW"]])
def test_commands_that_read_no_model_import_no_onnx(args):
    code = ("import sys\nfrom dlarules.cli import main\nsys.argv = ['dlarules', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    rc = e.code\n"
            "print('\\nIMPORTED', rc, sorted(m for m in ('onnx', 'numpy', 'ml_dtypes', 'dlarules.core') "
            "if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.stdout.splitlines()[-1] == "IMPORTED 0 []", p.stdout[-500:] + p.stderr[-500:]


def test_main_runs_without_the_gc_and_gives_it_back(monkeypatch, capsys):
    import gc
    seen = []
    monkeypatch.setattr("dlarules.api.check", lambda *a, **k: (seen.append(gc.isenabled()), 1 / 0)[1])
    assert gc.isenabled()
    rc, _, _ = run_main(monkeypatch, capsys, "check", str(EXAMPLE))
    assert rc == 3 and seen == [False] and gc.isenabled()   # off for the command, on again for the caller


@pytest.mark.parametrize("command", ["check", "compare", "fix", "split", "verify"])
def test_help_of_every_command_lists_its_choices(command, db):
    from dlarules.report import formats
    out = re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", CliRunner().invoke(cli.app, [command, "--help"],
                                                                          env={"COLUMNS": "200"}).output))
    assert f"Output format: {', '.join(formats.names(command))}." in out, out   # the registry's formats
    for module in ("agx-xavier", "xavier-nx", "agx-orin", "orin-nx-16", "orin-nx-8", "drive-orin"):
        assert module in out, module
    for mode in ("fp16", "int8", "int8+fp16", "best", "strongly-typed"):
        assert mode in out, mode
    assert "jetson" in out and "drive" in out
    assert all(r.version in out for r in db.releases), "--trt lists the releases"
