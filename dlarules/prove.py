"""The numeric proof of a rewrite: the original and the rewritten model run in onnxruntime on the same inputs
(seeded random ones from the model's shapes and dtypes, or the user's .npz), output by output."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx

from .errors import DlarulesError, clip, first_line

# The proof holds every input in memory (and onnxruntime the activations of both models): inputs over this many
# elements in all are refused with one line instead of being drawn (64x3x2048x2048 would take 11 GiB).
MAX_PROOF_ELEMENTS = 1 << 25     # 33,554,432 elements: 128 MiB of float32
MAX_PROOF_BYTES = 1 << 28        # what the arrays of an --inputs .npz may hold, uncompressed (256 MiB)
MAX_PROBE_ELEMENTS = 1 << 23     # inner tensors a proof looks at for degenerate inputs, in all (32 MiB of float32)

_NP = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16, onnx.TensorProto.DOUBLE: np.float64,
       onnx.TensorProto.INT64: np.int64, onnx.TensorProto.INT32: np.int32, onnx.TensorProto.INT8: np.int8,
       onnx.TensorProto.UINT8: np.uint8, onnx.TensorProto.BOOL: np.bool_}


@dataclass
class OutputError:
    name: str
    max_abs: float
    max_rel: float
    passed: bool
    gate: bool = True               # False: shown for information, the proof does not rest on it
    mean_abs: float = 0.0
    value_range: float = 0.0        # max - min of the original's output (what approximate tolerances scale with)

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.name, "max_abs_error": self.max_abs, "max_rel_error": self.max_rel,
                "mean_abs_error": self.mean_abs, "output_range": self.value_range,
                "within_tolerance": self.passed, "gate": self.gate}


@dataclass
class Proof:
    outputs: list[OutputError] = field(default_factory=list)
    rtol: float = 1e-3
    atol: float = 1e-4
    inputs: str = "random"          # "random (seed 0)" or the npz path
    # approximate rewrites: mean |error| <= approx x the output's range (their own tolerance), else None (strict)
    approx: float | None = None
    approx_recipes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs if o.gate)

    @property
    def tolerance_text(self) -> str:
        if self.approx is None:
            return f"rtol {self.rtol:g}, atol {self.atol:g}"
        return (f"approximate ({', '.join(self.approx_recipes)}): mean |error| <= {self.approx:g} x each output's "
                f"range")

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "rtol": self.rtol, "atol": self.atol, "inputs": self.inputs,
                "tolerance": self.tolerance_text, "approximate_tolerance": self.approx,
                "warnings": self.warnings, "outputs": [o.to_dict() for o in self.outputs]}


def _read_npz(npz: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The arrays of an --inputs .npz (readers.read_npz: a regular file, numbers, within MAX_PROOF_BYTES)."""
    from .readers import read_npz
    return read_npz(npz, "the proof's inputs", MAX_PROOF_BYTES)


def _inputs(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]] | None, seed: int,
            npz: str | os.PathLike[str] | None, source: str = "<model>") -> dict[str, np.ndarray]:
    init = {i.name for i in model.graph.initializer}
    feeds: dict[str, np.ndarray] = {}
    given: dict[str, np.ndarray] = {}
    if npz is not None:
        given = _read_npz(npz)
    rng = np.random.default_rng(seed)
    total = 0
    for vi in model.graph.input:
        if vi.name in init:
            continue
        tt = vi.type.tensor_type
        dtype = _NP.get(tt.elem_type, np.float32)
        if vi.name in given:
            feeds[vi.name] = given[vi.name].astype(dtype, copy=False)
            continue
        if npz is not None:
            raise DlarulesError(npz, f"has no array for input {clip(repr(vi.name), 60)} (it has: "
                                     f"{clip(', '.join(given) or 'none', 80)})")
        shape = (shapes or {}).get(vi.name) or tuple(d.dim_value for d in tt.shape.dim)
        if any(d <= 0 for d in shape):
            raise DlarulesError("--input-shape", f"input {clip(repr(vi.name), 60)} is dynamic; give its shape to run "
                                                 f"the proof")
        total += int(np.prod(shape, dtype=object))
        if total > MAX_PROOF_ELEMENTS:
            where = "--input-shape" if shapes and vi.name in shapes else source
            raise DlarulesError(where, f"the proof's random inputs would hold {total:,} elements, over its limit of "
                                       f"{MAX_PROOF_ELEMENTS:,}; give a smaller shape, real --inputs, or --no-verify")
        if np.issubdtype(dtype, np.floating):
            feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[vi.name] = rng.integers(0, 2, shape).astype(np.bool_)
        else:
            feeds[vi.name] = rng.integers(0, 10, shape).astype(dtype)
    return feeds


def quiet_onnxruntime() -> None:
    """ORT's default logger (not the session's) prints warnings while building a session (a deprecated Resize
    attribute) and errors while running one (an allocation that overflows): fatal only, so stderr carries nothing
    but our one line, which reports the error."""
    import onnxruntime as ort
    ort.set_default_logger_severity(4)


def empty_tensor(model: onnx.ModelProto) -> str | None:
    """An activation (rank >= 2, made by a node other than Constant) that shape inference finds empty (a dim of
    0: a pooling window larger than its input), as 'name (dims)', else None. Some onnxruntime kernels crash the
    process on empty activations (InstanceNormalization: a segfault), so no proof runs such a model. Empty 1-D
    constants (a Resize's unused roi) are ordinary and not counted."""
    from .model import weight_free
    try:
        typed = onnx.shape_inference.infer_shapes(weight_free(model))
    except Exception:
        return None   # the session reports what is wrong with the model
    consts = {i.name for i in typed.graph.initializer}
    consts |= {o for n in typed.graph.node if n.op_type in ("Constant", "ConstantOfShape") for o in n.output}
    for vi in list(typed.graph.value_info) + list(typed.graph.output):
        dims = vi.type.tensor_type.shape.dim if vi.type.HasField("tensor_type") else []
        if vi.name in consts or len(dims) < 2:
            continue
        if any(d.HasField("dim_value") and d.dim_value == 0 for d in dims):   # -1: an exporter's "unknown"
            shown = "x".join(str(d.dim_value) if d.HasField("dim_value") else "?" for d in dims)
            return f"{clip(vi.name, 60)} ({shown})"
    return None


def _session(model: onnx.ModelProto, where: str) -> Any:
    import onnxruntime as ort
    quiet_onnxruntime()
    if (empty := empty_tensor(model)) is not None:
        raise DlarulesError(where, f"tensor {empty} is empty; onnxruntime is not run on models with empty tensors "
                                   f"(some of its kernels crash on them), so the proof cannot run")
    opts = ort.SessionOptions()
    opts.log_severity_level = 4   # fatal only: a failing run is reported as one line of ours, not ORT's log
    # The proof compares the graphs as written, not what ORT's optimizer makes of them.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    # no arena: activations are freed when their last reader has run, so the peak is the live set, not the sum
    # of every buffer the run ever needed (DDRNet at 1024x2048: 3.5 GB with the arena)
    opts.enable_cpu_mem_arena = False
    opts.enable_mem_pattern = False
    try:
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise DlarulesError(where, f"onnxruntime cannot run it: {first_line(exc)}") from None


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], where: str,
        feeds_from: str | None = None) -> dict[str, np.ndarray]:
    sess = _session(model, where)
    names = [o.name for o in sess.get_outputs()]
    try:
        return dict(zip(names, sess.run(names, feeds)))
    except Exception as exc:
        # a wrong shape or type in the user's inputs (or an op that fails on them) is a usage error, not a crash
        raise DlarulesError(feeds_from or where, f"onnxruntime cannot run {where} on these inputs: "
                                                 f"{first_line(exc)}") from None


def prove(original: onnx.ModelProto, rewritten: onnx.ModelProto, *, input_shapes: Mapping[str, tuple[int, ...]] | None = None,
          inputs: str | os.PathLike[str] | None = None, seed: int = 0, rtol: float = 1e-3, atol: float = 1e-4,
          source: str = "<model>", feeds: Mapping[str, np.ndarray] | None = None, label: str | None = None,
          approx: float | None = None, want: Mapping[str, np.ndarray] | None = None) -> Proof:
    """`feeds`: inputs chosen by the caller (a Q/DQ model's input ranges, a pattern that exercises the rewrite)
    instead of seeded random ones, described by `label`. `approx`: the rewrite is approximate; each output passes
    when its mean |error| is within approx x its range (the recipe's own tolerance), its max error is shown.
    `want`: the original's outputs on `feeds`, when the caller already ran it (probe)."""
    chosen = feeds is not None
    feeds = dict(feeds) if chosen else _inputs(original, input_shapes, seed, inputs, source)
    given = str(inputs) if inputs is not None else None
    if want is None:
        want = run(original, feeds, source, given)
    else:
        outs = [o.name for o in original.graph.output]
        want = {k: want[k] for k in outs if k in want}
    got = run(rewritten, feeds, f"{source} (rewritten)", given)
    if label is None:
        label = "uniform in the input quantizers' ranges (seed 0)" if chosen else f"random (seed {seed})"
    proof = Proof([], rtol, atol, str(inputs) if inputs is not None else label, approx)
    for name, a in want.items():
        b = got.get(name)
        if b is None or b.shape != a.shape:
            proof.outputs.append(OutputError(name, float("inf"), float("inf"), False))
            continue
        proof.outputs.append(_compare(name, a, b, rtol, atol, approx))
    return proof


# ---------------------------------------------------------------------------------------------- probe inputs
# A proof on inputs under which the rewritten nodes see a constant tensor proves nothing about them (a random-
# weight network whose ReLUs all died hands a Resize a spatially constant map: nearest and bilinear agree there).

def degenerate(x: np.ndarray) -> str | None:
    """Why a tensor cannot exercise a rewrite (constant over the positions it changes), else None."""
    if not np.issubdtype(x.dtype, np.floating) or x.size <= 1:
        return None
    a = x.astype(np.float64)
    if not np.isfinite(a).all():
        return None
    scale = float(np.abs(a).max())
    eps = 1e-6 * scale + 1e-30
    if a.ndim >= 3 and int(np.prod(a.shape[2:])) > 1:
        flat = a.reshape(a.shape[0], a.shape[1], -1)
        if float((flat.max(axis=2) - flat.min(axis=2)).max()) <= eps:
            return "constant over its spatial positions" if scale > 0 else "all zero"
        return None
    per = a.reshape(a.shape[0], -1) if a.ndim >= 2 else a.reshape(1, -1)
    if per.shape[1] > 1 and float((per.max(axis=1) - per.min(axis=1)).max()) <= eps:
        return "constant" if scale > 0 else "all zero"
    return None


def probe(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], names: list[str], where: str,
          feeds_from: str | None = None) -> dict[str, np.ndarray]:
    """The values of inner tensors of `model` on `feeds` (made graph outputs of the model for one run, typed by
    shape inference, within MAX_PROBE_ELEMENTS), with the model's own outputs (one run serves a proof's reference
    too)."""
    from .model import weight_free
    try:
        typed = onnx.shape_inference.infer_shapes(weight_free(model))
    except Exception:
        typed = model
    known = {vi.name: vi for vi in list(typed.graph.value_info) + list(typed.graph.input) + list(typed.graph.output)}
    have = {o.name for o in model.graph.output}
    wanted = []
    budget = MAX_PROBE_ELEMENTS   # every watched tensor stays in memory until the run ends: the first ones that fit
    for n in names:
        if n not in known or n in have:
            continue
        dims = known[n].type.tensor_type.shape.dim
        size = int(np.prod([d.dim_value for d in dims], dtype=object)) if all(d.HasField("dim_value") for d in dims) else None
        if size is None or size > budget:
            continue
        budget -= size
        wanted.append(n)
    # made outputs of the model itself for the run and taken off again: a copy of a model is a copy of its weights
    n_out = len(model.graph.output)
    for n in wanted:
        vi = model.graph.output.add()
        vi.CopyFrom(known[n])
        vi.type.tensor_type.ClearField("shape")   # the value decides; a stale dim would fail the run
    try:
        out = run(model, dict(feeds), where, feeds_from)
    finally:
        while len(model.graph.output) > n_out:
            del model.graph.output[-1]
    feeds_also = {k: v for k, v in feeds.items() if k in names}
    return {**feeds_also, **out}


def input_variants(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]] | None,
                   source: str) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Inputs to try, in order, when the default ones leave a rewrite's inputs degenerate: larger variance,
    image-like positive values, a structured pattern (ramps and a checkerboard over the spatial axes)."""
    base = _inputs(model, shapes, 0, None, source)
    out: list[tuple[str, dict[str, np.ndarray]]] = []
    rng = np.random.default_rng(1)
    out.append(("random x10 (seed 1)", {k: (rng.standard_normal(v.shape) * 10).astype(v.dtype)
                                        if np.issubdtype(v.dtype, np.floating) else v for k, v in base.items()}))
    rng = np.random.default_rng(2)
    out.append(("uniform 0..255 (seed 2)", {k: rng.uniform(0, 255, v.shape).astype(v.dtype)
                                            if np.issubdtype(v.dtype, np.floating) else v for k, v in base.items()}))

    def pattern(v: np.ndarray) -> np.ndarray:
        if not np.issubdtype(v.dtype, np.floating) or v.ndim < 2:
            return v
        idx = np.indices(v.shape).astype(np.float64)
        h, w = idx[-2], idx[-1]
        c = idx[1] if v.ndim >= 3 else 0.0
        return (3 * np.sin(h / 3.0 + c) + 3 * np.cos(w / 5.0 - c) + np.where((h + w) % 2, 2.0, -2.0)).astype(v.dtype)
    out.append(("ramps and checkerboard", {k: pattern(v) for k, v in base.items()}))
    return out


def npz_path(p: str | os.PathLike[str] | None) -> str | None:
    if p is None:
        return None
    from .readers import MAX_NPZ_BYTES, vet_input
    vet_input(p, "an .npz file of inputs", MAX_NPZ_BYTES)   # before the work: no such file, a FIFO, too big
    return str(p)


# _compare works through the outputs in slices of this many elements: a float64 copy of a whole 19x1024x2048
# segmentation map and the arrays derived from it would take about 2 GB
_CHUNK = 1 << 20


def _compare(name: str, a: np.ndarray, b: np.ndarray, rtol: float, atol: float,
             approx: float | None = None) -> OutputError:
    fa, fb = a.reshape(-1), b.reshape(-1)
    if not fa.size:
        return OutputError(name, 0.0, 0.0, True)
    max_abs = max_rel = total = 0.0
    lo, hi = np.inf, -np.inf
    ok_all = True
    with np.errstate(invalid="ignore", over="ignore"):
        for k in range(0, fa.size, _CHUNK):
            a64 = fa[k:k + _CHUNK].astype(np.float64)
            b64 = fb[k:k + _CHUNK].astype(np.float64)
            # the same inf or nan on both sides agrees (a model that divides by zero does so before and after)
            same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
            diff = np.where(same, 0.0, np.abs(a64 - b64))
            diff = np.where(np.isnan(diff), np.inf, diff)
            ok_all = ok_all and bool((same | (np.isfinite(diff) & (diff <= atol + rtol * np.abs(a64)))).all())
            rel = np.where(same, 0.0, diff / np.maximum(np.abs(np.nan_to_num(a64, nan=0.0)), atol))
            max_abs, max_rel = max(max_abs, float(diff.max())), max(max_rel, float(rel.max()))
            total += float(diff.sum())
            finite = a64[np.isfinite(a64)]
            if finite.size:
                lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    span = hi - lo if hi >= lo else 0.0
    mean = total / fa.size
    if approx is not None:   # the recipe's own tolerance: the mean error against the output's range
        passed = bool(np.isfinite(mean) and mean <= approx * span + atol)
    else:
        passed = ok_all
    return OutputError(name, max_abs, max_rel, passed, True, mean, span)


def prove_chained(original: onnx.ModelProto, first: onnx.ModelProto, second: onnx.ModelProto, *,
                  input_shapes: Mapping[str, tuple[int, ...]] | None = None, inputs: str | os.PathLike[str] | None = None,
                  seed: int = 0, rtol: float = 1e-5, atol: float = 1e-6, source: str = "<model>") -> Proof:
    """A model cut in two (dlarules split): `first` reads original inputs, `second` reads original inputs and
    `first`'s outputs; every original output, from whichever part makes it, against the original's."""
    feeds = _inputs(original, input_shapes, seed, inputs, source)
    given = str(inputs) if inputs is not None else None
    want = run(original, feeds, source, given)
    init1 = {i.name for i in first.graph.initializer}
    a = run(first, {k: v for k, v in feeds.items() if k in {i.name for i in first.graph.input} - init1},
            f"{source} (DLA part)", given)
    known = {**feeds, **a}
    names2 = [i.name for i in second.graph.input if i.name not in {x.name for x in second.graph.initializer}]
    missing = [n for n in names2 if n not in known]
    if missing:
        raise DlarulesError(source, f"the second part reads {clip(', '.join(missing), 80)}, which neither the inputs "
                                    f"nor the first part make")
    b = run(second, {n: known[n] for n in names2}, f"{source} (GPU part)", given)
    got = {**a, **b}
    proof = Proof([], rtol, atol, str(inputs) if inputs is not None else f"random (seed {seed})")
    for name, x in want.items():
        y = got.get(name)
        if y is None or y.shape != x.shape:
            proof.outputs.append(OutputError(name, float("inf"), float("inf"), False))
            continue
        proof.outputs.append(_compare(name, x, y, rtol, atol))
    return proof
