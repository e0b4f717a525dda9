"""The `dlarules` command line: thin wrappers over dlarules.api. Bad input is one line and exit code 2."""
from __future__ import annotations

import gc
import json
import math
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from typer.core import TyperArgument, TyperGroup

from . import __version__
from .errors import MAX_LINE, DlarulesError, OptionError, clip

# Start-up is part of every call (`--version`, `--help`, `rules list|show` read no model): nothing here imports
# onnx, numpy or the check core at module level; commands import what they use (bench/bench_startup.py).


def _plain_params(params: list) -> list:
    """Help as terminals show it: a flag takes no value, so no `<bool>` after it; an argument reads MODEL."""
    for p in params:
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""
        elif isinstance(p, TyperArgument) and p.metavar is None and p.name:
            p.metavar = p.name.upper()
    return params


class _Group(TyperGroup):
    """typer's group with _plain_params applied to its own options and to every command it hands out."""

    def get_params(self, ctx):  # type: ignore[no-untyped-def]
        return _plain_params(super().get_params(ctx))

    def get_command(self, ctx, cmd_name):  # type: ignore[no-untyped-def]
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            _plain_params(cmd.get_params(ctx))
        return cmd


app = typer.Typer(cls=_Group, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Will this ONNX model run on NVIDIA's DLA, and if not, what exactly must change?")
rules_app = typer.Typer(cls=_Group, no_args_is_help=True, help="Inspect, validate and export the rule database.")
app.add_typer(rules_app, name="rules")
recipes_app = typer.Typer(cls=_Group, no_args_is_help=True, help="The fix recipes `dlarules fix` applies.")
app.add_typer(recipes_app, name="recipes")


class _State:
    """The global options (-q, -v, --no-color): set by the app callback before any command runs."""

    quiet = False
    verbose = False
    no_color = False


STATE = _State()


def _completion_db():   # shell completion only: the packaged DB (+ DLARULES_RULES); nothing on failure
    from .ruledb import RuleDB
    return RuleDB.load()


def _complete(names: Callable[[Any, dict], list[str]]) -> Callable[[typer.Context, str], list[str]]:
    """A shell-completion callback offering names(db, params so far) that start with what was typed."""
    def complete(ctx: typer.Context, incomplete: str) -> list[str]:
        try:
            return [n for n in names(_completion_db(), ctx.params) if n.startswith(incomplete)]
        except Exception:   # a broken rule dir must not break the user's shell
            return []
    return complete


def _target_names(db: Any, params: dict) -> list[str]:
    """What --target completes to: the families and the modules that have a DLA (orin-nano has none)."""
    return [*db.hardware, *(m for m, spec in db.modules.items() if spec.dla_cores)]


def _trt_names(db: Any, params: dict) -> list[str]:
    """--trt completes to the releases of the --target given before it (all releases without one)."""
    hw = params.get("target")
    try:
        family = db.resolve_hardware(hw) if hw else None
    except DlarulesError:
        family = None
    return [r.version for r in db.releases if family is None or family in r.hardware]


# The names are data (rules/releases.yaml: hardware, modules); tests/test_modes.py keeps these help texts in step.
TARGETS_HELP = ("Hardware family (xavier, orin) or module: agx-xavier, xavier-nx, agx-orin, orin-nx-16, orin-nx-8, "
                "drive-orin (orin-nano has no DLA).")
# The releases per family are data too (rules/releases.yaml `releases:`); tests/test_cli_conventions.py keeps this in
# step. A static string: loading the DB for help text would cost every call its start-up.
TRT_HELP = ("TensorRT release: xavier 7.1, 8.0, 8.2, 8.4, 8.5 (default 8.5); orin 8.4, 8.5, 8.6, 10.0, 10.3, 10.7, "
            "11.4 (default 10.3).")
TargetOpt = typer.Option("orin", "--target", "-t", help=TARGETS_HELP,
                         autocompletion=_complete(_target_names))
TrtOpt = typer.Option(None, "--trt", help=TRT_HELP, autocompletion=_complete(_trt_names))
JetpackOpt = typer.Option(None, "--jetpack", help="JetPack version instead of --trt, e.g. 5.1.1.",
                          autocompletion=_complete(lambda db, _: [str(j) for j in db.jetpack]))
PlatformOpt = typer.Option(None, "--platform", help="jetson (default) or drive.",
                           autocompletion=_complete(lambda db, _: list(db.platforms)))
PrecisionOpt = typer.Option(None, "--precision", autocompletion=_complete(lambda db, _: db.mode_names()),
                            help="Build mode: fp16 (default, trtexec --fp16), int8 (--int8: a layer DLA runs only "
                                 "in FP16 goes to the GPU), int8+fp16 (--int8 --fp16: it runs in FP16 on DLA), "
                                 "best (--best, as int8+fp16 on DLA), strongly-typed (the graph's tensor types "
                                 "decide; the only mode on TensorRT 11).")
DlaCoreOpt = typer.Option(None, "--dla-core", help="DLA core to build for (trtexec --useDLACore); must exist on the "
                                                   "--target module.")
RulesOpt = typer.Option(None, "--rules", help="Extra rule directory layered on the packaged DB (repeatable).")
ShapeOpt = typer.Option(None, "--input-shape", help="Fix a dynamic input: NAME:1x3x640x640, or 1x3x640x640 for a "
                                                     "model with one input (repeatable, or trtexec's comma list "
                                                     "a:DIMS,b:DIMS).")


ConfigOpt = typer.Option(None, "--config", help="Config file to use (a dlarules.toml, or a pyproject.toml with "
                                                 "[tool.dlarules]) instead of the one found above each model.")
NoConfigOpt = typer.Option(False, "--no-config", help="Ignore config files: only the command line counts.")

# command-line parameter -> config key (dlarules/config.py); the command line wins over a config file
_CONFIG_KEYS = {"target": "target", "trt": "trt", "jetpack": "jetpack", "platform": "platform",
                "precision": "precision", "dla_core": "dla-core", "rules": "rules", "input_shape": "input-shape",
                "min_dla_coverage": "min-dla-coverage", "max_dla_subgraphs": "max-dla-subgraphs",
                "dla_only": "dla-only", "fmt": "format"}


def _given(ctx: typer.Context) -> dict:
    """The options given on the command line (not their defaults), by config key: click says where each came from."""
    out = {}
    for param, key in _CONFIG_KEYS.items():
        if param not in ctx.params:
            continue
        src = ctx.get_parameter_source(param)
        if src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP"):
            value = ctx.params[param]
            out[key] = [str(v) for v in value] if key == "rules" and value else value
    return out


def _settings(ctx: typer.Context, model: Optional[Path], config: Optional[Path], no_config: bool):
    """The options in force for `model`: command line > matching config override > config top level > defaults."""
    from .config import resolve
    if config is not None and no_config:
        raise OptionError("--config", "cannot go with --no-config")
    return resolve(model, _given(ctx), config=config, use_config=not no_config)


def _as_config_error(settings, fn):
    """Run fn(); an OptionError about a value the config gave names the config file:line, not the option."""
    try:
        return fn()
    except OptionError as exc:
        key = (exc.source or "").lstrip("-")
        if key in settings.origin:
            raise DlarulesError(settings.origin[key], f"{key}: {exc.problem}") from None
        raise


def _plan(settings, dbs: dict):
    """The rule DB (one per set of rule folders), target and input shapes of one model's settings; any bad value
    stops here, before a model is read."""
    from .accept import vet
    from .model import parse_input_shapes
    s = settings
    key = tuple(s["rules"] or ())
    if key not in dbs:
        try:
            dbs[key] = _as_config_error(s, lambda: _db([Path(p) for p in key]))
        except DlarulesError as exc:
            # a rules folder the config names (resolved against the config's folder): name the config line
            if "rules" not in s.origin:
                raise
            raise DlarulesError(s.origin["rules"], f"rules: {clip(str(exc.source), 80)}: {exc.problem}") from None
    db = dbs[key]
    t = _as_config_error(s, lambda: db.target(s["target"], s["trt"], jetpack=s["jetpack"], platform=s["platform"],
                                              precision=s["precision"], dla_core=s["dla-core"]))
    shapes = _as_config_error(s, lambda: parse_input_shapes(s["input-shape"]))
    vet(s.ignores, db.ids)
    return db, t, shapes


def _version_cb(value: bool) -> None:
    if value:
        try:
            db_version = _db(None).version
        except DlarulesError as exc:
            db_version = f"unavailable ({exc.line()})"
        typer.echo(f"dlarules {__version__} (rule DB {db_version})")
        raise typer.Exit(0)


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version_cb, is_eager=True,
                                       help="Show the package and rule DB versions."),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the verdict lines of a text report "
                                                                  "(summary, gates, agreement, proof), each "
                                                                  "prefixed with the model; errors as always."),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="List every node in check/fix text "
                                                                      "reports (as --all); a traceback with an "
                                                                      "internal error."),
          no_color: bool = typer.Option(False, "--no-color", help="No colour in text reports (also: NO_COLOR set; "
                                                                  "colour only when stdout is a terminal)."),
          ) -> None:
    if quiet and verbose:
        raise OptionError("--quiet", "and --verbose contradict each other; give one")
    STATE.quiet, STATE.verbose, STATE.no_color = quiet, verbose, no_color
    if no_color:   # the help of a subcommand is drawn by rich, which honours NO_COLOR (no-color.org)
        os.environ["NO_COLOR"] = "1"


def _db(rules: Optional[List[Path]]):
    # the rule DB alone (not dlarules.api, which loads onnx for the check): `--version`, `rules ...` stay fast
    from .ruledb import RuleDB
    return RuleDB.load([str(p) for p in rules or []])


def _check_format(fmt: str, kind: str):
    """The registered format `fmt` for a `kind` result (report/formats.py); else one line naming --format."""
    from .report import formats
    return formats.get(fmt, kind)


def _format_opt(kind: str):
    from .report import formats
    return typer.Option("text", "--format", "-f", help=formats.help_text(kind))


def _report(model: Path, rules: Optional[List[Path]], target: str, trt: Optional[str], jetpack: Optional[str],
            platform: Optional[str], precision: Optional[str], input_shape: Optional[List[str]],
            dla_core: Optional[int] = None):
    """The rule DB, the check report and the parsed --input-shape values, as check/compare/verify need them."""
    from .api import check as run_check
    from .model import parse_input_shapes
    db = _db(rules)
    shapes = parse_input_shapes(input_shape)
    # the target first: a bad --target/--precision/--dla-core is reported before the model is read
    t = db.target(target, trt, jetpack=jetpack, platform=platform, precision=precision, dla_core=dla_core)
    report = run_check(model, db, target=t, input_shapes=shapes)
    return db, report, shapes


def _progress():
    """A rich status line for long runs on stderr, only when a person watches it (a terminal) and not with -q:
    logs, pipes and the one-line error contract of stderr stay as they are. Returns (say, stop)."""
    if STATE.quiet or not sys.stderr.isatty():
        return None, lambda: None
    import time
    from rich.console import Console
    status = Console(stderr=True, no_color=not use_color_on(sys.stderr)).status("dlarules fix: starting")
    status.start()
    t0 = time.perf_counter()

    def say(text: str) -> None:
        status.update(f"dlarules fix [{time.perf_counter() - t0:5.1f} s]: {clip(text, 100)}")
    return say, status.stop


def _vet(output: Optional[Path], inputs: list, what: str) -> None:
    """Refuse a bad -o before the work (atomic.vet_output: not an input, not a directory/FIFO, folder writable)."""
    if output is not None:
        from .atomic import vet_output
        vet_output(output, inputs, what)


# -q keeps a text report's verdict lines: check's summary and gates, compare/verify's agreement, fix's placement,
# proof and what it wrote
QUIET_PREFIXES = ("summary:", "gate failed:", "agreement:", "placement before:", "placement after:", "proof",
                  "wrote ", "nothing written", "dry run", "no recipe applies", "no rewrite kept")


def use_color() -> bool:
    """Colour only on a terminal, never with --no-color, NO_COLOR (any non-empty value, no-color.org) or TERM=dumb."""
    return use_color_on(sys.stdout)


def use_color_on(stream) -> bool:
    if STATE.no_color or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


_ANSI = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2"}
_NODE_PLACED = re.compile(r" -> [A-Z_]+: .* \[(GPU|DLA sg \d+[^\]]*)\](?:  \(|$)")
_RULE_ID_LINE = re.compile(r"^(  )([A-Z][A-Z0-9]*(?:-[A-Z0-9]+)+)(  \[)")


def _paint(text: str, style: str) -> str:
    return f"\x1b[{_ANSI[style]}m{text}\x1b[0m"


def colorize(text: str) -> str:
    """ANSI colour for a text report's key lines (DLA green, GPU yellow, failing rules red, the verdict bold).
    The words stay the same: the plain report is the coloured one without escapes."""
    out = []
    for line in text.split("\n"):
        s = line.lstrip()
        if s.startswith("[DlaLayer]"):
            line = line.replace("[DlaLayer]", _paint("[DlaLayer]", "green"), 1)
        elif s.startswith("[GpuLayer]"):
            line = line.replace("[GpuLayer]", _paint("[GpuLayer]", "yellow"), 1)
        elif s.startswith(("summary:", "agreement:")):
            ok = "every layer runs on DLA" in line or line.rstrip().endswith("agree")
            line = _paint(line, "bold") if not ok else _paint(_paint(line, "bold"), "green")
        elif s.startswith("gate failed:"):
            line = _paint(line, "red")
        elif (m := _RULE_ID_LINE.match(line)):
            line = m.group(1) + _paint(m.group(2), "red") + line[m.end(2):]
        elif line.startswith("  ") and (m := _NODE_PLACED.search(line)):   # every-node list: where it runs
            color = "yellow" if m.group(1) == "GPU" else "green"
            line = line[:m.start(1)] + _paint(m.group(1), color) + line[m.end(1):]
        out.append(line)
    return "\n".join(out)


def _quiet(text: str, label: object) -> str:
    keep = [ln for ln in text.splitlines() if ln.startswith(QUIET_PREFIXES)]
    return "".join(f"{label}: {ln}\n" for ln in keep)


def _write(text: str, output: Optional[Path], inputs: Optional[list] = None, what: str = "report",
           human: bool = True) -> None:
    """`human`: the text format (-q filters it, a terminal colours it); every other format is data, written as is."""
    if output is None:
        if human and not text.lstrip().startswith(("{", "[")):   # JSON is data: never filtered or coloured
            if STATE.quiet:
                text = _quiet(text, inputs[0] if inputs else "dlarules")
            elif use_color():
                text = colorize(text)
        sys.stdout.write(text)
        return
    from .atomic import write_text_atomic
    write_text_atomic(output, text, inputs or [], what)


@app.command()
def check(
    ctx: typer.Context,
    models: List[Path] = typer.Argument(..., metavar="MODEL...", help="The ONNX model(s); several are checked in "
                                                                       "one process, exit code the worst of them."),
    target: str = TargetOpt, trt: Optional[str] = TrtOpt, jetpack: Optional[str] = JetpackOpt,
    platform: Optional[str] = PlatformOpt, precision: Optional[str] = PrecisionOpt,
    input_shape: Optional[List[str]] = ShapeOpt, rules: Optional[List[Path]] = RulesOpt,
    dla_core: Optional[int] = DlaCoreOpt,
    fmt: str = _format_opt("check"),
    show_all: bool = typer.Option(False, "--all", help="List every node, not only the fallbacks."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report here instead of stdout."),
    min_dla_coverage: Optional[float] = typer.Option(None, "--min-dla-coverage",
                                                     help="Gate: fail unless this % of layers is on DLA."),
    max_dla_subgraphs: Optional[int] = typer.Option(None, "--max-dla-subgraphs",
                                                    help="Gate: fail if TensorRT would make more DLA subgraphs."),
    dla_only: bool = typer.Option(False, "--dla-only", help="Gate: fail unless the whole network fits one DLA "
                                                            "loadable (cuDLA / standalone)."),
    config: Optional[Path] = ConfigOpt, no_config: bool = NoConfigOpt,
) -> None:
    """Which layers of MODEL run on DLA, which fall back to the GPU and why.

    Exit 0: every layer on DLA, or every fallback accepted by the config's [[ignore]] (with gates: every gate
    passes); 1: fallbacks (or a failed gate); 2: bad input.

    Several models: each is checked (gates per model); one that cannot be read is a line and the others go on; the exit code is the worst (2 over 1 over 0).
    Options not given come from the config found above each model (dlarules.toml or pyproject.toml [tool.dlarules])."""
    import time
    from .accept import apply as accept
    from .api import CheckItem, check as run_check
    from .report.formats import Context
    if min_dla_coverage is not None and not 0 <= min_dla_coverage <= 100:
        raise OptionError("--min-dla-coverage", f"{min_dla_coverage:g} is not a percentage (0 to 100)")
    if max_dla_subgraphs is not None and max_dla_subgraphs < 0:
        raise OptionError("--max-dla-subgraphs", f"{max_dla_subgraphs} is negative")
    # every model's settings, DB and target first: a bad option or config stops the command before any model
    # is read; the format is one per call, the first model's
    settings = [_settings(ctx, m, config, no_config) for m in models]
    form = _as_config_error(settings[0], lambda: _check_format(settings[0]["format"], "check"))
    _vet(output, list(models), "report")
    dbs: dict = {}
    plans = [_plan(s, dbs) for s in settings]
    items = []
    for m, s, (db, t, shapes) in zip(models, settings, plans):
        start = time.perf_counter()
        try:
            report = _as_config_error(s, lambda: run_check(m, db, target=t, input_shapes=shapes))
        except DlarulesError as exc:
            if len(models) == 1:   # one model: a bad one is the one-line error and exit 2, as always
                raise
            items.append(CheckItem(str(m), error=exc.line(), seconds=time.perf_counter() - start))
            typer.echo(f"dlarules: error: {exc.line()}", err=True)
            continue
        if s.ignores:
            accept(report, s.ignores)
        gates = None
        if s["min-dla-coverage"] is not None or s["max-dla-subgraphs"] is not None or s["dla-only"]:
            gates = report.gates(s["min-dla-coverage"], s["max-dla-subgraphs"], bool(s["dla-only"]))
        items.append(CheckItem(str(m), report, gates=gates, seconds=time.perf_counter() - start))
    _write(form.render("check", items, Context(db=plans[0][0], show_all=show_all or STATE.verbose)), output,
           list(models), human=form.name == "text")
    raise typer.Exit(max(i.exit_code for i in items))


@app.command()
def compare(
    ctx: typer.Context,
    model: Path = typer.Argument(..., help="The ONNX model the log was built from."),
    log: Path = typer.Option(..., "--log", help="A trtexec / TensorRT builder log with the DLA/GPU layer lists."),
    target: str = TargetOpt, trt: Optional[str] = TrtOpt, jetpack: Optional[str] = JetpackOpt,
    platform: Optional[str] = PlatformOpt, precision: Optional[str] = PrecisionOpt,
    input_shape: Optional[List[str]] = ShapeOpt, rules: Optional[List[Path]] = RulesOpt,
    fmt: str = _format_opt("compare"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the comparison here."),
    config: Optional[Path] = ConfigOpt, no_config: bool = NoConfigOpt,
) -> None:
    """The prediction next to a real TensorRT build log. Exit 0: full agreement; 1: disagreements.

    Options not given (target, trt, precision, rules, ...) come from the config found above MODEL."""
    from .api import check as run_check
    from .compare import compare as run_compare
    from .report.formats import Context
    from .trtlog import read
    form = _check_format(fmt, "compare")
    _vet(output, [model, log], "comparison")
    observed = read(log)
    settings = _settings(ctx, model, config, no_config)
    db, t, shapes = _plan(settings, {})
    report = _as_config_error(settings, lambda: run_check(model, db, target=t, input_shapes=shapes))
    result = run_compare(report, observed)
    _write(form.render("compare", result, Context(db=db)), output, [model, log], "comparison", human=fmt == "text")
    raise typer.Exit(0 if result.agreed else 1)


@app.command()
def verify(
    model: Path = typer.Argument(..., help="The ONNX model to build."),
    target: str = TargetOpt, trt: Optional[str] = TrtOpt, jetpack: Optional[str] = JetpackOpt,
    platform: Optional[str] = PlatformOpt, precision: Optional[str] = PrecisionOpt,
    input_shape: Optional[List[str]] = ShapeOpt, rules: Optional[List[Path]] = RulesOpt,
    backend: str = typer.Option("auto", "--backend", help="auto, python (TensorRT API) or trtexec."),
    trtexec: Optional[Path] = typer.Option(None, "--trtexec", help="trtexec to run (on the device with --remote)."),
    remote: Optional[str] = typer.Option(None, "--remote", help="user@jetson: build there over ssh."),
    dla_core: int = typer.Option(0, "--dla-core", help="DLA core to build for (trtexec --useDLACore); must exist "
                                                       "on the --target module."),
    inputs: Optional[Path] = typer.Option(None, "--inputs", help="Calibration data for INT8 (.npz, by input name)."),
    save_log: Optional[Path] = typer.Option(None, "--save-log", help="Keep the build log (for dlarules compare)."),
    timeout: float = typer.Option(3600.0, "--timeout", help="Seconds the build may take."),
    trtexec_arg: Optional[List[str]] = typer.Option(None, "--trtexec-arg", help="Extra trtexec argument "
                                                                               "(repeatable), e.g. --skipInference."),
    fmt: str = _format_opt("verify"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report here."),
) -> None:
    """Build MODEL with TensorRT for DLA (GPU fallback) and compare the real placement with the prediction.

    Needs TensorRT (or trtexec) and a DLA, here or on --remote. Exit 0: full agreement; 1: disagreements."""
    from .report.formats import Context
    from .trt import verify as run_verify
    form = _check_format(fmt, "verify")
    if save_log is not None and output is not None and os.path.abspath(save_log) == os.path.abspath(output):
        raise OptionError("--save-log", f"{save_log} is also the -o report; give them different files")
    _vet(output, [model, inputs, save_log], "report")
    _vet(save_log, [model, inputs, output], "build log")
    _, report, shapes = _report(model, rules, target, trt, jetpack, platform, precision, input_shape, dla_core)
    result = run_verify(model, report, backend=backend, dla_core=dla_core, input_shapes=shapes, inputs=inputs,
                        trtexec=trtexec, remote=remote, extra_args=tuple(trtexec_arg or ()), timeout=timeout,
                        save_log=save_log)
    _write(form.render("verify", result, Context()), output, [model, inputs, save_log], human=fmt == "text")
    raise typer.Exit(result.exit_code)


@app.command()
def fix(
    ctx: typer.Context,
    model: Path = typer.Argument(..., help="The ONNX model (not overwritten unless named by -o with --force)."),
    target: str = TargetOpt, trt: Optional[str] = TrtOpt, jetpack: Optional[str] = JetpackOpt,
    platform: Optional[str] = PlatformOpt, precision: Optional[str] = PrecisionOpt,
    input_shape: Optional[List[str]] = ShapeOpt, rules: Optional[List[Path]] = RulesOpt,
    dla_core: Optional[int] = DlaCoreOpt,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write (default: MODEL.dla.onnx)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output; write even if the proof fails."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
    only: Optional[str] = typer.Option(None, "--only", help="Comma-separated recipes to use (default: all)."),
    exclude: Optional[str] = typer.Option(None, "--exclude", help="Comma-separated recipes not to use."),
    allow_approx: bool = typer.Option(False, "--allow-approx", help="Also apply rewrites that change the numbers."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the onnxruntime proof (the report says so)."),
    inputs: Optional[Path] = typer.Option(None, "--inputs", help="Real inputs for the proof (.npz, by input name)."),
    rtol: float = typer.Option(1e-3, "--rtol", help="Relative tolerance of the proof."),
    atol: float = typer.Option(1e-4, "--atol", help="Absolute tolerance of the proof."),
    fmt: str = _format_opt("fix"),
    all_: bool = typer.Option(False, "--all", help="List every layer left on GPU and every recipe not applied."),
    then_split: bool = typer.Option(False, "--then-split", help="Then split the fixed model (or MODEL, when no "
                                                                "rewrite applies) as `dlarules split` does, beside "
                                                                "it; the exit code is split's."),
    config: Optional[Path] = ConfigOpt, no_config: bool = NoConfigOpt,
) -> None:
    """Rewrite MODEL so more of it runs on DLA, prove it computes the same function, and write MODEL.dla.onnx.

    Rewrites are kept only if the whole model gets better: fewer DLA subgraphs, then fewer GPU layers, then fewer
    transitions. Exit 0: a better model written (or dry run) with the proof passing, or nothing to do (all on DLA);
    1: the proof failed (nothing written without --force), or no rewrite makes the model better and it still
    falls back to the GPU (nothing written). With --then-split: split's exit code once the fix is written.

    Options not given (target, trt, precision, rules, input-shape, ...) come from the config found above MODEL."""
    from .fix import default_output, fix as run_fix, parse_recipe_list, write
    from .model import parse_input_shapes
    from .prove import npz_path
    from .report.formats import Context, FixView
    form = _check_format(fmt, "fix")
    for option, value in (("--rtol", rtol), ("--atol", atol)):
        if not math.isfinite(value) or value < 0:
            raise OptionError(option, f"{value:g} is not a tolerance (a finite number >= 0)")
    settings = _settings(ctx, model, config, no_config)
    db, t, shapes = _plan(settings, {})
    out = output or default_output(model)
    if then_split and dry_run:
        raise OptionError("--then-split", "cannot go with --dry-run (a dry run writes no model to split)")
    if not dry_run:   # before the work, not after it; --force may replace the model itself (it is read first)
        _vet(out, [inputs] if force else [model, inputs], "model")
        if out.exists() and not force:
            raise DlarulesError(out, "already exists; pass --force to replace it")
    if then_split:
        from .split import default_outputs, vet_outputs
        vet_outputs(default_outputs(out), model, force)
    say, stop = _progress()
    try:
        result = run_fix(model, db, t, input_shapes=shapes,
                         only=parse_recipe_list(only, "--only"), exclude=parse_recipe_list(exclude, "--exclude"),
                         allow_approx=allow_approx, verify=not no_verify, inputs=npz_path(inputs), rtol=rtol,
                         atol=atol, progress=say)
    except DlarulesError as exc:
        # fix checks the model it loaded as a ModelProto: an error about "<ModelProto ...>" is about MODEL
        if exc.source is None or str(exc.source).startswith("<"):
            raise DlarulesError(model, exc.problem) from None
        raise
    finally:
        stop()   # the status line goes before the report (or the one-line error)
    failed = result.proof is not None and not result.proof.passed
    written = None
    if not dry_run and result.changes and (not failed or force):
        written = write(result, out, force=force)

    def _write_fix() -> None:
        _write(form.render("fix", FixView(result, written, dry_run), Context(db=db, show_all=all_ or STATE.verbose)),
               None, [model], human=fmt == "text")

    if then_split and not failed:
        from .split import default_outputs, vet_outputs
        base = Path(written) if written else model   # no rewrite applied: split the model itself
        paths = default_outputs(base)
        if not written:
            vet_outputs(paths, model, force)
        before = None
        if fmt == "json":
            before = {**result.to_dict(), "output": str(written) if written else None}
        else:
            _write_fix()
            typer.echo("")
        _split_and_report(base, db, t, shapes, paths, force, fmt, before)   # exits with split's code
    _write_fix()
    raise typer.Exit(result.exit_code)


@app.command()
def split(
    ctx: typer.Context,
    model: Path = typer.Argument(..., help="The ONNX model (only read)."),
    target: str = TargetOpt, trt: Optional[str] = TrtOpt, jetpack: Optional[str] = JetpackOpt,
    platform: Optional[str] = PlatformOpt, precision: Optional[str] = PrecisionOpt,
    input_shape: Optional[List[str]] = ShapeOpt, rules: Optional[List[Path]] = RulesOpt,
    dla_core: Optional[int] = DlaCoreOpt,
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o", help="Folder for MODEL.dlapart.onnx and "
                                                                               "MODEL.gpupart.onnx (default: "
                                                                               "beside the model)."),
    force: bool = typer.Option(False, "--force", help="Replace existing parts; write even if the proof fails."),
    fmt: str = _format_opt("split"),
    config: Optional[Path] = ConfigOpt, no_config: bool = NoConfigOpt,
) -> None:
    """Cut MODEL into the largest part that is one standalone DLA loadable (cuDLA) and a GPU part reading its
    outputs; prove the two chained compute the original; print the trtexec commands for both.

    Exit 0: both parts written and proven; 1: no split (the whole model is one DLA loadable, nothing can go on
    DLA, or the proof failed); 2: bad input. Options not given (target, trt, precision, rules, ...) come from the
    config found above MODEL."""
    _check_format(fmt, "split")
    from .split import check_output_dir, default_outputs, vet_outputs
    settings = _settings(ctx, model, config, no_config)
    db, t, shapes = _plan(settings, {})
    check_output_dir(output_dir)
    paths = default_outputs(model, output_dir)
    vet_outputs(paths, model, force)   # before the work
    _split_and_report(model, db, t, shapes, paths, force, fmt)


def _split_and_report(model: Path, db, t, shapes, paths, force: bool, fmt: str, before: Optional[dict] = None) -> None:
    """Split, write when proven (or --force), print it in `fmt` (text when that format renders no split);
    `before`: fix's JSON, for --then-split."""
    from .report import formats
    from .split import split as run_split, write
    result = run_split(model, db, t, input_shapes=shapes, outputs=paths)
    written = {}
    if result.status == "split" and result.proof is not None and (result.proof.passed or force):
        written = write(result, *paths, force=force)
    code = result.exit_code
    if fmt == "json" and before is not None:
        typer.echo(json.dumps({"fix": before, "split": result.to_dict(written)}, indent=2))
    else:
        form = formats.registry().get(fmt)
        form = form if form is not None and "split" in form.renderers else formats.TEXT
        _write(form.render("split", formats.SplitView(result, written)), None, [model], human=form is formats.TEXT)
    raise typer.Exit(code)


@recipes_app.command("list")
def recipes_list() -> None:
    """Every fix recipe: name, exactness, what it rewrites."""
    from .recipes.registry import REGISTRY
    for r in REGISTRY.values():
        typer.echo(f"{r.name:26s} {r.exactness:12s} {', '.join(r.ops):40.40s} {r.title}")


@recipes_app.command("show")
def recipes_show(name: str = typer.Argument(..., help="A recipe name such as gap-to-avgpool.")) -> None:
    """A recipe: what it rewrites, when it applies, exactness, cost, and the rules that name it."""
    from .recipes.registry import REGISTRY
    r = REGISTRY.get(name)
    if r is None:
        import difflib
        close = difflib.get_close_matches(name, REGISTRY, n=3)
        raise DlarulesError(name, "no such recipe" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    db = _db(None)
    cures = sorted({rule.id for rule in db.rules if r.name in ((rule.fix.values() if isinstance(rule.fix, dict)
                                                                 else [rule.fix]) if rule.fix else [])})
    typer.echo(f"{r.name}: {r.title}\n\nrewrites: {', '.join(r.ops)}\nexact: {r.exactness}\ncost: {r.cost}\n"
               f"cures: {', '.join(cures) or 'none'}\n\n{r.doc}")


@rules_app.command("validate")
def rules_validate(
    path: Optional[Path] = typer.Argument(None, help="A rules directory or file (default: the packaged DB)."),
    fixtures: bool = typer.Option(False, "--fixtures", help="Also build and check every rule's fixtures."),
) -> None:
    """Schema and semantic checks; prints `file:line: rule-id: problem`, exit 1 on problems."""
    from .ruledb import RuleDB, packaged_rules_dir
    if path is not None and not path.exists():
        raise DlarulesError(path, "no such file or directory")
    base = packaged_rules_dir()
    if path is None or path.resolve() == base.resolve():
        db = RuleDB.load(base=base, strict=False, use_cache=False)
    elif path.is_dir() and (path / "releases.yaml").is_file():
        db = RuleDB.load(base=path, strict=False, use_cache=False)
    else:
        db = RuleDB.load([path], strict=False, use_cache=False)
    problems = list(db.problems)
    if fixtures and not problems:
        from .fixtures import fixture_problems
        problems += fixture_problems(db)
    for p in problems:
        typer.echo(str(p))
    n = len(db.rules)
    if problems:
        typer.echo(f"{len(problems)} problem(s) in {n} rule entries", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {n} rule entries ({len(db.ids)} rule IDs), {len(db.releases)} releases, rule DB {db.version}")


@rules_app.command("diff")
def rules_diff(
    target: str = typer.Option(..., "--target", "-t", help=TARGETS_HELP),
    old: str = typer.Option(..., "--from", help="TensorRT release to compare from."),
    new: str = typer.Option(..., "--to", help="TensorRT release to compare to."),
    platform: Optional[str] = PlatformOpt, precision: Optional[str] = PrecisionOpt,
    rules: Optional[List[Path]] = RulesOpt, fmt: str = typer.Option("text", "--format", "-f", help="text or json."),
) -> None:
    """Rules added, removed and changed between two TensorRT releases: a release's changes reviewed as data."""
    from .diff import diff, render
    db = _db(rules)
    for option, version in (("--from", old), ("--to", new)):
        try:
            db.target(target, version, platform=platform, precision=precision)
        except OptionError as exc:   # name the option the user gave, not the internal --trt
            raise OptionError(option, exc.problem) from None
    d = diff(db, target, old, new, platform=platform or "jetson", precision=precision)
    typer.echo(json.dumps(d.to_dict(), indent=2) if fmt == "json" else render(d), nl=fmt == "json")


@rules_app.command("export")
def rules_export(
    fmt: str = typer.Option("json", "--format", "-f", help="json (the only export format)."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="Only the rules for this hardware..."),
    trt: Optional[str] = typer.Option(None, "--trt", help="...and this TensorRT release."),
    platform: Optional[str] = PlatformOpt, precision: Optional[str] = PrecisionOpt,
    rules: Optional[List[Path]] = RulesOpt,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
) -> None:
    """The whole DB (or one selection) as one JSON document (schemas/ruledb.schema.json)."""
    from .export import export
    if fmt != "json":
        raise DlarulesError("--format", f"{clip(fmt, 40)!r}: the rule DB exports as json")
    db = _db(rules)
    t = db.target(target, trt, platform=platform, precision=precision) if target else None
    if trt and not target:
        raise DlarulesError("--trt", "give --target too, a release is selected per hardware")
    _write(json.dumps(export(db, t), indent=2, default=str) + "\n", output, list(rules or []), "export")


@rules_app.command("docs")
def rules_docs(
    out: Path = typer.Option(Path("docs"), "--out", help="Where to write the generated pages."),
    check_only: bool = typer.Option(False, "--check", help="Exit 1 if the pages there are stale; write nothing."),
    rules: Optional[List[Path]] = RulesOpt,
) -> None:
    """Generate the rule pages, the rule x target matrix, the layer catalog and the lowering table."""
    from . import docs
    db = _db(rules)
    files = docs.generated(db)
    if check_only:
        stale = [name for name, text in files.items()
                 if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text]
        for name in stale:
            typer.echo(f"{out / name}: stale (run `dlarules rules docs --out {out}`)")
        raise typer.Exit(1 if stale else 0)
    written = docs.write(out, db)
    typer.echo(f"wrote {len(written)} files under {out}")


@rules_app.command("list")
def rules_list(
    target: Optional[str] = typer.Option(None, "--target", "-t", help="Only rules for this hardware."),
    trt: Optional[str] = typer.Option(None, "--trt", help="Only rules for this TensorRT release."),
    platform: Optional[str] = PlatformOpt, precision: Optional[str] = PrecisionOpt,
    layer: Optional[str] = typer.Option(None, "--layer", help="Only rules for this layer kind, e.g. pooling."),
    rules: Optional[List[Path]] = RulesOpt,
) -> None:
    """The rules that hold, one line each: ID, layer, limit, confidence, fix."""
    from .report.rulepages import _fix_text, plain_text
    db = _db(rules)
    entries = list(db.rules)
    if target or trt:
        hw = db.resolve_hardware(target) if target else None
        hws = [hw] if hw else list(db.hardware)
        picked = []
        for h in hws:
            try:
                t = db.target(h, trt, platform=platform, precision=precision)
            except DlarulesError:
                if hw:
                    raise
                continue
            picked += [r for r in db.select(t).rules if r not in picked]
        entries = picked
    if layer:
        kind = layer.upper()
        from .layers import KINDS
        if kind not in KINDS:
            raise DlarulesError("--layer", f"unknown layer kind {clip(layer, 40)!r} (known: {', '.join(KINDS)})")
        entries = [r for r in entries if r.layers is None or kind in r.layers]
    for r in entries:
        layers = ",".join(r.layers) if r.layers else "*"
        typer.echo(f"{r.id:30s} {layers:22.22s} {r.title}  [{r.confidence}; {r.scope_text()}; "
                   f"fix: {plain_text(_fix_text(r.fix))}]")
    if not STATE.quiet:
        typer.echo(f"{len(entries)} rule entries", err=True)


@rules_app.command("show")
def rules_show(rule_id: str = typer.Argument(..., help="A rule ID such as POOL-WINDOW."),
               rules: Optional[List[Path]] = RulesOpt) -> None:
    """Everything about one rule: condition, message, versions and hardware, source, fixtures, recipe."""
    from .report.rulepages import plain_text, rule_page
    db = _db(rules)
    rid = rule_id.upper()
    if not db.by_id(rid):
        import difflib
        close = difflib.get_close_matches(rid, db.ids, n=3)
        raise DlarulesError(rule_id, "no such rule" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    typer.echo(plain_text(rule_page(db, rid).replace(docs_header(), "")).strip("\n"))


def docs_header() -> str:
    from .report.rulepages import HEADER
    return HEADER


def main() -> None:
    """Entry point: one line on stderr and exit 2 for anything the user can fix; never a traceback."""
    # This process is ours alone: a check's many small long-lived objects make the cyclic GC rescan them again and
    # again (2.2x the time of a 50k-node check, bench/bench_gc.py) for nothing to free. The API (a host's process)
    # leaves the GC as the host set it; main() restores it on the way out (tests call main() in their process).
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        _run()
    finally:
        if gc_was_on:
            gc.enable()


def _run() -> None:
    try:
        with warnings.catch_warnings():
            # numpy/onnx warnings (ComplexWarning while folding a complex constant, ...) are no message of ours:
            # stderr holds only our one line
            warnings.simplefilter("ignore")
            rc = app(standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except DlarulesError as exc:
        typer.echo(f"dlarules: error: {exc.line()}", err=True)
        sys.exit(2)
    except ModuleNotFoundError as exc:   # an optional (or broken) dependency: what to install, not a bug
        from .errors import dependency_error
        dep = dependency_error(exc)
        if dep is None:
            _internal(exc)
        typer.echo(f"dlarules: error: {dep.line()}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        typer.echo("dlarules: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # usage errors and internal errors: still one line
        # click (vendored by newer typer releases) usage errors carry format_message()
        fmt = getattr(exc, "format_message", None)
        if callable(fmt):
            message = fmt()
            if message:   # an empty one follows the help text printed for a bare `dlarules`
                typer.echo(f"dlarules: error: {clip(message, MAX_LINE)}", err=True)
            sys.exit(2)
        if type(exc).__name__ == "Abort":
            sys.exit(130)
        _internal(exc)


def _internal(exc: BaseException) -> None:
    """A bug of ours: one line and exit 3; the traceback with DLARULES_DEBUG=1 or -v."""
    if os.environ.get("DLARULES_DEBUG") or STATE.verbose:
        raise exc
    typer.echo(f"dlarules: internal error: {type(exc).__name__}: {clip(exc, 160)} (set DLARULES_DEBUG=1 for a "
               f"traceback)", err=True)
    sys.exit(3)


if __name__ == "__main__":
    main()
