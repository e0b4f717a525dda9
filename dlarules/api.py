"""The public Python API: load the rule DB, check, fix and compare models, get plain dataclasses back.

    from dlarules.api import load_db, check, fix, compare, split
    db = load_db()                                   # packaged rules (+ DLARULES_RULES, + extra dirs)
    report = check("model.onnx", db, hardware="orin", trt="8.6")
    report.exit_code, report.summary, report.to_dict()   # the dict is the JSON report (schemas/report.schema.json)

A thin facade: the check lives in `dlarules.core`, `fix` in `dlarules.fix`, `compare` in `dlarules.compare`
(features import the core, never this module). `fix` and `compare` import their feature (onnx-graphsurgeon,
the log reader) only when called.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable, Mapping

from .core import (PROTO_SOURCE, REPORT_SCHEMA_VERSION, CheckItem, NodeVerdict, Report, check, check_graph,
                   check_many, load_db, target_dict)
from .errors import DependencyError, DlarulesError, ModelError, OptionError, RulesError, dependency_error
from .ruledb import RuleDB, Target

if TYPE_CHECKING:   # only for the annotations: importing them costs onnx-graphsurgeon / the log reader
    from .compare import Comparison
    from .fix import FixResult
    from .split import SplitResult

__all__ = ["load_db", "check", "check_many", "check_graph", "fix", "compare", "split", "Report", "NodeVerdict", "CheckItem", "RuleDB", "Target",
           "DlarulesError", "DependencyError", "ModelError", "OptionError", "RulesError", "REPORT_SCHEMA_VERSION", "PROTO_SOURCE",
           "target_dict"]


def _target(db: RuleDB, target: Target | None, hardware: str, trt: str | None, jetpack: str | None,
            platform: str | None, precision: str | None, dla_core: int | None) -> Target:
    return target or db.target(hardware, trt, jetpack=jetpack, platform=platform, precision=precision,
                               dla_core=dla_core)


def fix(model: str | os.PathLike[str], db: RuleDB | None = None, *, hardware: str = "orin", trt: str | None = None,
        jetpack: str | None = None, platform: str | None = None, precision: str | None = None,
        dla_core: int | None = None, target: Target | None = None,
        input_shapes: Mapping[str, tuple[int, ...]] | None = None, only: Iterable[str] | None = None,
        exclude: Iterable[str] | None = None, allow_approx: bool = False, verify: bool = True,
        inputs: str | os.PathLike[str] | None = None, rtol: float = 1e-3, atol: float = 1e-4,
        output: str | os.PathLike[str] | None = None, force: bool = False) -> FixResult:
    """Rewrite `model` so more of it runs on DLA (what `dlarules fix` does) and return the FixResult: the changes,
    the placement before and after (`before`, `after` Reports) and the onnxruntime proof (`proof`; None with
    `verify=False`). Nothing is written unless `output` is given; then the rewritten model is written there
    atomically when there are changes and the proof passed (or `force`); an existing file is replaced only with
    `force`. The proof needs onnxruntime; without it this raises DlarulesError saying what to install."""
    db = db or load_db()
    t = _target(db, target, hardware, trt, jetpack, platform, precision, dla_core)
    try:   # onnx-graphsurgeon when the feature loads, onnxruntime when the proof (or fold-constants) runs
        from . import fix as _fix
        from .prove import npz_path
        result = _fix.fix(model, db, t, input_shapes=input_shapes,
                          only=_fix.parse_recipe_list(",".join(only or ()), "only"),   # None or empty: every recipe
                          exclude=_fix.parse_recipe_list(",".join(exclude or ()), "exclude"),
                          allow_approx=allow_approx, verify=verify, inputs=npz_path(inputs), rtol=rtol, atol=atol)
    except ModuleNotFoundError as exc:
        raise (dependency_error(exc) or exc) from None
    failed = result.proof is not None and not result.proof.passed
    if output is not None and result.changes and (not failed or force):
        _fix.write(result, output, force=force)
    return result


def compare(model: str | os.PathLike[str] | Report, log: str | os.PathLike[str], db: RuleDB | None = None, *,
            hardware: str = "orin", trt: str | None = None, jetpack: str | None = None,
            platform: str | None = None, precision: str | None = None, target: Target | None = None,
            input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> Comparison:
    """The prediction for `model` (a path, or a Report from `check`) next to a real TensorRT build log (what
    `dlarules compare` does): per GPU layer of the log, whether the prediction agrees and, if not, the class of the
    disagreement. `result.agreed`, `result.to_dict()` (the JSON of `dlarules compare --format json`)."""
    from .compare import compare as _compare
    from .trtlog import read
    observed = read(log)
    if isinstance(model, Report):
        report = model
    else:
        db = db or load_db()
        t = _target(db, target, hardware, trt, jetpack, platform, precision, None)
        report = check(model, db, target=t, input_shapes=input_shapes)
    return _compare(report, observed)


def split(model: str | os.PathLike[str], db: RuleDB | None = None, *, hardware: str = "orin",
          trt: str | None = None, jetpack: str | None = None, platform: str | None = None,
          precision: str | None = None, dla_core: int | None = None, target: Target | None = None,
          input_shapes: Mapping[str, tuple[int, ...]] | None = None, verify: bool = True,
          output_dir: str | os.PathLike[str] | None = None, write: bool = False,
          force: bool = False) -> SplitResult:
    """Cut `model` into the largest part that is one standalone DLA loadable and a GPU part reading its outputs
    (what `dlarules split` does) and return the SplitResult: `status` ("split", "dla-only" or why not), the two
    ONNX models (`dla_model`, `gpu_model`), the chained onnxruntime proof, the I/O checks and the trtexec commands.
    With `write=True` the parts are written as MODEL.dlapart.onnx / MODEL.gpupart.onnx (beside the model or in
    `output_dir`) when the proof passed (or `force`); an existing file is replaced only with `force`."""
    db = db or load_db()
    t = _target(db, target, hardware, trt, jetpack, platform, precision, dla_core)
    try:
        from . import split as _split
        paths = _split.default_outputs(model, output_dir)
        if write:
            _split.check_output_dir(output_dir)
            _split.vet_outputs(paths, model, force)
        result = _split.split(model, db, t, input_shapes=input_shapes, verify=verify, outputs=paths)
    except ModuleNotFoundError as exc:
        raise (dependency_error(exc) or exc) from None
    if write and result.status == "split" and (result.proof is None or result.proof.passed or force):
        _split.write(result, *paths, force=force)
    return result
