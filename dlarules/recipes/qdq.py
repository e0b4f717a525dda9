"""`qdq-to-calibration`: an explicit-quantization (Q/DQ) model -> a float model plus a TensorRT INT8 calibration
cache, what NVIDIA's DLA-SW qdq-translator does (github NVIDIA/Deep-Learning-Accelerator-SW, tools/qdq-translator):
for releases whose DLA takes INT8 scales from calibration (implicit quantization), not from Q/DQ layers.

* weights: a DequantizeLinear of a constant (ORT's int8 initializers, or a QuantizeLinear of float weights as QAT
  exports write) becomes the float constant it computes;
* activations: a QuantizeLinear -> DequantizeLinear pair is removed and its scale recorded for the tensor it
  quantized. TensorRT's implicit INT8 is symmetric (zero point 0), so an asymmetric pair's range [lo, hi] is
  recorded as the symmetric scale max(|lo|, |hi|) / 127; where the range starts at exactly 0 (the quantizer folded
  a ReLU/ReLU6 into it, as onnxruntime's QDQ quantizer does) a Relu takes the pair's place, since a symmetric INT8
  tensor no longer clamps negative values;
* the calibration cache is the text file TensorRT's calibrators write and read (`readCalibrationCache`): a header
  `TRT-<version>-EntropyCalibration2`, then one `tensor: <hex>` line per tensor, the hex being the IEEE-754 float32
  bit pattern of the scale (qdq-translator utils.py: `hex(struct.unpack('<I', struct.pack('<f', f))[0])`),
  written here with 8 digits;
* the per-layer precision file is qdq-translator's `--layerPrecisions` argument: `node:fp16` for the nodes that
  read a tensor without a scale (they run in FP16 on DLA).

The recipe is model-wide (`fix` runs it once on the whole model, before the per-layer recipes). Its proof
(`fix._qdq_proof`, docs/qdq.md): the float model with the recorded quantizers put back (`requantized`) equals the
Q/DQ model exactly, and at every quantized tensor the float layer is within half a step (`rounding_error`).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .base import Change, Recipe

NAME = "qdq-to-calibration"
CACHE_SUFFIX = ".calib.cache"          # beside the output model: model.dla.calib.cache
LAYER_ARG_SUFFIX = ".layer_arg.txt"    # trtexec --layerPrecisions value (qdq-translator's *_layer_arg.txt)
_QRANGE = {onnx.TensorProto.INT8: (-128, 127), onnx.TensorProto.UINT8: (0, 255)}


@dataclass
class Stripped:
    """What stripping the Q/DQ nodes produced."""

    model: onnx.ModelProto
    scales: dict[str, float]                 # activation tensor -> symmetric INT8 scale (cache entries)
    fp16_nodes: list[str]                    # nodes reading a float tensor without a scale
    weights: int = 0                         # weight DequantizeLinear folded into float constants
    pairs: int = 0                           # activation Q -> DQ pairs removed
    relus: list[str] = field(default_factory=list)      # Relu nodes standing for a range starting at 0
    asymmetric: int = 0                      # pairs with a non-zero zero point (widened to a symmetric scale)
    steps: dict[str, float] = field(default_factory=dict)   # tensor -> the pair's own step (scale), for the proof
    left: list[str] = field(default_factory=list)       # Q/DQ nodes that are not part of a pair: kept
    removed: list[str] = field(default_factory=list)    # the Q/DQ nodes taken out
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # tensor -> the pair's [lo, hi]
    output_sources: set[str] = field(default_factory=set)   # quantized tensors that are graph outputs
    quantizers: dict[str, tuple[float, int, int]] = field(default_factory=dict)  # tensor -> (scale, zp, type)


def float_to_hex(value: float) -> str:
    """The calibration cache's spelling of a scale: the float32 bit pattern, hex, big-endian digit order."""
    return f"{struct.unpack('>I', struct.pack('>f', float(value)))[0]:08x}"


def calibration_cache(scales: dict[str, float], trt_version: str) -> str:
    """The text TensorRT's IInt8EntropyCalibrator2 cache holds (header, then `tensor: hex` lines)."""
    lines = [f"TRT-{trt_version_number(trt_version)}-EntropyCalibration2"]
    lines += [f"{name}: {float_to_hex(s)}" for name, s in scales.items()]
    return "\n".join(lines) + "\n"


def trt_version_number(version: str) -> int:
    """TensorRT's NV_TENSORRT_VERSION for a release: major*1000+minor*100+patch up to 9.x, major*10000+minor*100
    +patch from 10.0 (NvInferVersion.h); the cache header carries it (qdq-translator default 8600 = 8.6.0)."""
    parts = [int(p) for p in version.split(".")[:3]] + [0, 0, 0]
    major, minor, patch = parts[:3]
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def layer_precisions(fp16_nodes: list[str]) -> str:
    """trtexec's --layerPrecisions value (qdq-translator's *_layer_arg.txt)."""
    return ",".join(f"{n}:fp16" for n in fp16_nodes)


def trtexec_command(model: str, cache: str, layer_arg_file: str | None, dla_core: int = 0) -> str:
    """The build NVIDIA's qdq-translator README gives for the translated model."""
    cmd = (f"trtexec --onnx={model} --calib={cache} --useDLACore={dla_core} --int8 --fp16 --allowGPUFallback")
    if layer_arg_file:
        cmd += f" --precisionConstraints=prefer --layerPrecisions=$(cat {layer_arg_file})"
    return cmd


def _consts(g: onnx.GraphProto) -> dict[str, np.ndarray]:
    out = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.output:
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = numpy_helper.to_array(a.t)
    return out


def _axis(node: onnx.NodeProto) -> int:
    return next((int(a.i) for a in node.attribute if a.name == "axis"), 1)


def _bcast(v: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    """A per-channel scale/zero point shaped to broadcast along `axis` of x."""
    if v.ndim != 1 or v.size == 1 or x.ndim == 0:
        return v.reshape(()) if v.size == 1 else v
    shape = [1] * x.ndim
    shape[axis % x.ndim] = v.size
    return v.reshape(shape)


def _dequant(x: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int) -> np.ndarray:
    """DequantizeLinear as onnxruntime computes it, in the scale's float type: (x - zero_point) * scale."""
    ft = scale.dtype if scale.dtype.kind == "f" else np.dtype(np.float32)
    s = _bcast(scale.astype(ft), x, axis)
    z = _bcast(zp.astype(ft), x, axis) if zp is not None else ft.type(0)
    return ((x.astype(ft) - z) * s).astype(ft)


def _quant(x: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int, qtype: int) -> np.ndarray:
    lo, hi = _QRANGE.get(qtype, (-128, 127))
    s = _bcast(scale.astype(np.float64), x, axis)
    z = _bcast(zp.astype(np.float64), x, axis) if zp is not None else 0.0
    return np.clip(np.rint(x.astype(np.float64) / s) + z, lo, hi)


def _qtype(node: onnx.NodeProto, consts: dict[str, np.ndarray], g: onnx.GraphProto) -> int:
    if len(node.input) > 2 and node.input[2]:
        for i in g.initializer:
            if i.name == node.input[2]:
                return i.data_type
        zp = consts.get(node.input[2])
        if zp is not None:
            return onnx.TensorProto.UINT8 if zp.dtype == np.uint8 else onnx.TensorProto.INT8
    return onnx.TensorProto.UINT8   # the ONNX default zero point is uint8


def strip(model: onnx.ModelProto) -> Stripped:
    """The float model, the activation scales, and the FP16 nodes of a Q/DQ model (see the module doc)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    consts = _consts(g)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    drop: set[int] = set()
    new_consts: list[onnx.TensorProto] = []
    rename: dict[str, str] = {}          # DQ output -> the tensor that replaces it
    added: list[onnx.NodeProto] = []
    res = Stripped(m, {}, [])
    nonneg: set[str] = set()
    inputs = {i.name for i in g.input}
    producer = {o: n for n in g.node for o in n.output}

    def one(n: onnx.NodeProto) -> None:
        x = consts.get(n.input[0])
        scale = consts.get(n.input[1])
        zp = consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if scale is None:
            res.left.append(n.name)
            return
        if x is not None:                       # weights stored quantized: fold the DQ into a float constant
            w = _dequant(x, scale, zp, _axis(n))
            new_consts.append(numpy_helper.from_array(np.asarray(w), n.output[0]))
            drop.add(id(n))
            res.weights += 1
            return
        q = producer.get(n.input[0])
        q = q if q is not None and q.op_type == "QuantizeLinear" else None
        if q is None:
            res.left.append(n.name)
            return
        src = q.input[0]
        wq = consts.get(src)
        qs = consts.get(q.input[1])
        qz = consts.get(q.input[2]) if len(q.input) > 2 and q.input[2] else None
        if wq is not None and qs is not None:   # QAT weights: Q(w) -> DQ, TensorRT quantizes w with that scale
            w = _dequant(_quant(wq, qs, qz, _axis(q), _qtype(q, consts, g)), scale, zp, _axis(n))
            new_consts.append(numpy_helper.from_array(np.asarray(w).astype(wq.dtype), n.output[0]))
            drop.add(id(n))
            if all(id(c) in drop or c.op_type == "DequantizeLinear" for c in consumers.get(q.output[0], [])):
                drop.add(id(q))
            res.weights += 1
            return
        if scale.size != 1:                      # per-channel activation scales: no calibration-cache form
            res.left.append(n.name)
            return
        s = float(scale.reshape(()))
        z = float(zp.reshape(())) if zp is not None else 0.0
        qtype = _qtype(n, consts, g)
        qmin, qmax = _QRANGE.get(qtype, (-128, 127))
        lo, hi = (qmin - z) * s, (qmax - z) * s
        # zero point 0: the pair's scale is TensorRT's (dynamic range 127 * scale); else the symmetric one covering it
        res.scales[src] = s if z == 0.0 else max(abs(lo), abs(hi)) / 127.0
        res.steps[src] = s
        res.ranges[src] = (lo, hi)
        res.quantizers[src] = (s, int(z), qtype)
        if z != 0.0:
            res.asymmetric += 1
        target = src
        if lo == 0.0 and not _nonneg(src, producer, nonneg, inputs, rename):
            # the quantizer folded a ReLU into the range; symmetric INT8 keeps negatives, so a Relu keeps it
            relu_out = f"{n.output[0]}_relu"
            relu = helper.make_node("Relu", [src], [relu_out], name=f"{n.name}_relu")
            added.append(relu)
            res.relus.append(relu.name)
            res.scales[relu_out] = res.scales[src]
            nonneg.add(relu_out)
            target = relu_out
        rename[n.output[0]] = target
        drop.add(id(n))
        if all(id(c) in drop or c.op_type == "DequantizeLinear" for c in consumers.get(q.output[0], [])):
            drop.add(id(q))
        res.pairs += 1

    for n in g.node:
        if n.op_type != "DequantizeLinear" or id(n) in drop:
            continue
        try:
            one(n)
        except (ValueError, TypeError, IndexError, KeyError):   # a scale or zero point this recipe cannot read
            res.left.append(n.name)
    # rewire consumers and graph outputs of the removed DQ nodes
    keep = [n for n in g.node if id(n) not in drop]
    res.removed = [n.name for n in g.node if id(n) in drop]
    for n in keep + added:
        for k, i in enumerate(n.input):
            if i in rename:
                n.input[k] = rename[i]
    # a graph output keeps its name: the tensor the removed pair read is renamed to it
    out_names = {rename[o.name]: o.name for o in g.output if o.name in rename and rename[o.name] not in inputs}
    for n in keep + added:
        n.input[:] = [out_names.get(i, i) for i in n.input]
        n.output[:] = [out_names.get(o, o) for o in n.output]
    for old, new in out_names.items():
        for d in (res.scales, res.steps, res.ranges, res.quantizers):
            if old in d:
                d[new] = d.pop(old)
    res.output_sources = set(out_names.values())
    ordered = _place(keep, added)
    del g.node[:]
    g.node.extend(ordered)
    # weights: replace any Constant node / initializer of the same name, drop now unused ones
    new_names = {t.name for t in new_consts}
    kept_inits = [i for i in g.initializer if i.name not in new_names]
    del g.initializer[:]
    g.initializer.extend(kept_inits + new_consts)
    _drop_unused(g)
    del g.value_info[:]                           # stale types (int8 tensors are float now): re-inferred
    res.fp16_nodes = _fp16_nodes(g, res.scales)
    return res


def _place(keep: list[onnx.NodeProto], added: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Nodes in a topological order: each added node right after the producer of its input."""
    by_input: dict[str, list[onnx.NodeProto]] = {}
    for a in added:
        by_input.setdefault(a.input[0], []).append(a)
    produced = {o for n in keep for o in n.output}
    out = [a for name, items in by_input.items() if name not in produced for a in items]
    for n in keep:
        out.append(n)
        for o in n.output:
            out += by_input.get(o, [])
    return out


def _drop_unused(g: onnx.GraphProto) -> None:
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    inits = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    # Constant nodes feeding nothing any more (scales, zero points)
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        nodes = [n for n in g.node if n.op_type != "Constant" or any(o in used for o in n.output)]
        if len(nodes) == len(g.node):
            break
        del g.node[:]
        g.node.extend(nodes)


def _fp16_nodes(g: onnx.GraphProto, scales: dict[str, float]) -> list[str]:
    """Nodes that read an activation without an INT8 scale (qdq-translator lists them as `node:fp16`)."""
    consts = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    for n in g.node:   # an Identity of a constant (exporters write them for shared weights) is a constant
        if n.op_type == "Identity" and n.input and n.input[0] in consts:
            consts.update(n.output)
    out = []
    for n in g.node:
        if n.op_type in ("Constant", "Identity"):
            continue
        data = [i for i in n.input if i and i not in consts]
        if any(i not in scales for i in data) and n.name not in out:
            out.append(n.name)
    return out


def tolerance(stripped: Stripped) -> float:
    """A rough scale for the float model's error at the outputs, shown next to the measured one (not a gate: a
    convolution can amplify earlier roundings): half the output's own step for every quantized tensor."""
    out = [s for t, s in stripped.steps.items() if t in stripped.output_sources]
    step = min(out) if out else min(stripped.steps.values(), default=0.0)
    return 0.5 * step * max(len(stripped.steps), 1)


# ops whose output is >= 0 when their data inputs are (a range starting at 0 there needs no Relu)
_KEEPS_NONNEG = {"Relu", "Sigmoid", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten",
                 "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Identity", "Resize"}


def _nonneg(t: str, producer: dict[str, onnx.NodeProto], known: set[str], inputs: set[str],
            rename: dict[str, str]) -> bool:
    """Is tensor t >= 0 whatever the input (a Relu upstream, through pooling/reshapes)? A graph input whose range
    starts at 0 is data (images in [0, 1]), not a folded activation: no Relu either."""
    t = rename.get(t, t)   # a removed pair's output stands for the tensor it read
    if t in known or t in inputs:
        return True
    prod = producer.get(t)
    if prod is None:
        return False
    if prod.op_type == "Relu":
        return True
    if prod.op_type in _KEEPS_NONNEG:
        data = prod.input[:1] if prod.op_type != "Concat" else list(prod.input)
        ok = all(_nonneg(i, producer, known, inputs, rename) for i in data if i)
        if ok:
            known.add(t)
        return ok
    return False


def proof_inputs(original: onnx.ModelProto, stripped: Stripped, shapes: Any = None,
                 seed: int = 0) -> dict[str, np.ndarray] | None:
    """Seeded inputs inside each input quantizer's range (the numbers the Q/DQ model was calibrated for: outside
    it the Q/DQ model saturates where the float model does not). None when an input has no quantizer."""
    rng = np.random.default_rng(seed)
    init = {i.name for i in original.graph.initializer}
    feeds: dict[str, np.ndarray] = {}
    for vi in original.graph.input:
        if vi.name in init:
            continue
        rng_lohi = stripped.ranges.get(vi.name)
        shape = (shapes or {}).get(vi.name) or tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
        if rng_lohi is None or any(d <= 0 for d in shape):
            return None
        lo, hi = rng_lohi
        feeds[vi.name] = rng.uniform(lo, hi, shape).astype(np.float32)
    return feeds


def requantized(stripped: Stripped) -> onnx.ModelProto:
    """See `requantized_probes` (without the extra outputs)."""
    return requantized_probes(stripped, expose=False)[0]


def requantized_probes(stripped: Stripped, expose: bool = True) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The float model with every removed activation quantizer put back (the pair's own scale, zero point and
    type) right where it was recorded. It must compute exactly what the Q/DQ model computes: the proof that the
    cache names the tensors the Q/DQ model quantized and that nothing else changed. Build it before other rewrites
    touch the float model."""
    m = onnx.ModelProto()
    m.CopyFrom(stripped.model)
    g = m.graph
    inputs = {i.name for i in g.input}
    taken = {o for n in g.node for o in n.output} | inputs | {i.name for i in g.initializer}
    nodes = list(g.node)
    added: list[onnx.NodeProto] = []
    probes: dict[str, str] = {}     # quantized tensor -> the float layer's own (unquantized) output
    for k, (t, (scale, zp, qtype)) in enumerate(stripped.quantizers.items()):
        base = f"{t}__requant{k}"
        while any(n in taken for n in (base + "_raw", base + "_q", base + "_s", base + "_z", base + "_fq")):
            base += "_"
        s_name, z_name, q_name = base + "_s", base + "_z", base + "_q"
        zdt = np.uint8 if qtype == onnx.TensorProto.UINT8 else np.int8
        g.initializer.extend([numpy_helper.from_array(np.array(scale, np.float32), s_name),
                              numpy_helper.from_array(np.array(zp, zdt), z_name)])
        if t in inputs:      # consumers of the network input read it re-quantized
            src, out = t, base + "_fq"
            for n in nodes:
                n.input[:] = [out if i == t else i for i in n.input]
        else:                # the producer writes a raw tensor, the quantizer writes t again
            src, out = base + "_raw", t
            for n in nodes:
                n.output[:] = [src if o == t else o for o in n.output]
            probes[t] = src
        added += [helper.make_node("QuantizeLinear", [src, s_name, z_name], [q_name], name=base + "_Q"),
                  helper.make_node("DequantizeLinear", [q_name, s_name, z_name], [out], name=base + "_DQ")]
    # each added pair right after the producer of what it reads (inputs first)
    pairs = [added[i:i + 2] for i in range(0, len(added), 2)]
    by_src: dict[str, list[onnx.NodeProto]] = {}
    for p in pairs:
        by_src.setdefault(p[0].input[0], []).extend(p)
    ordered = [n for name, ps in by_src.items() if name in inputs for n in ps]
    for n in nodes:
        ordered.append(n)
        for o in n.output:
            ordered += by_src.get(o, [])
    del g.node[:]
    g.node.extend(ordered)
    if expose:
        have = {o.name for o in g.output}
        for t, raw in probes.items():
            for name in (t, raw):
                if name not in have:
                    g.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
                    have.add(name)
    return m, probes


def rounding_error(values: dict[str, np.ndarray], stripped: Stripped,
                   probes: dict[str, str]) -> tuple[float, int]:
    """The local half of the proof: at every quantized tensor, the float layer's own output (computed from the
    Q/DQ model's values), clamped to the pair's range [lo, hi] as the Q/DQ pair clamps, against the Q/DQ model's
    value there, in that tensor's quantization steps: rounding keeps it within half a step. Also counts the
    elements the clamp saturated (above hi, or below a lo that is not 0: a range starting at 0 is a folded ReLU).
    Returns (max error in steps, saturated elements)."""
    worst, saturated = 0.0, 0
    for t, raw in probes.items():
        a, b = values.get(raw), values.get(t)
        if a is None or b is None:
            return float("inf"), saturated
        lo, hi = stripped.ranges[t]
        step = stripped.steps[t]
        a64 = a.astype(np.float64)
        saturated += int((a64 > hi).sum() + ((a64 < lo).sum() if lo != 0.0 else 0))
        if a64.size:
            worst = max(worst, float(np.abs(np.clip(a64, lo, hi) - b).max() / step))
    return worst, saturated


def describe(stripped: Stripped) -> str:
    parts = [f"{stripped.pairs} activation Q/DQ pair(s) -> calibration-cache scales",
             f"{stripped.weights} weight DequantizeLinear -> float weights"]
    if stripped.asymmetric:
        parts.append(f"{stripped.asymmetric} asymmetric pair(s) widened to the symmetric scale covering their range")
    if stripped.relus:
        parts.append(f"{len(stripped.relus)} range(s) starting at 0 kept as Relu")
    if stripped.fp16_nodes:
        parts.append(f"{len(stripped.fp16_nodes)} node(s) without a scale -> --layerPrecisions fp16")
    if stripped.left:
        parts.append(f"{len(stripped.left)} Q/DQ node(s) left (no pair)")
    return "; ".join(parts)


def _check(node: Any, ctx: Any) -> str | None:
    return ("model-wide and approximate: `--only qdq-to-calibration` (or --allow-approx) strips every Q/DQ node "
            "of the model at once")


def _apply(node: Any, ctx: Any) -> Change:   # never called: fix runs `strip` on the whole model
    raise NotImplementedError(NAME)


RECIPES = [
    Recipe(NAME, "Q/DQ model -> float model + TensorRT INT8 calibration cache (NVIDIA DLA-SW qdq-translator)",
           ("QuantizeLinear", "DequantizeLinear"), "approximate",
           "none on DLA: INT8 with calibrated scales; layers without a scale run FP16",
           _check, _apply,
           doc="Strips QuantizeLinear/DequantizeLinear: quantized weights become float constants, each activation "
               "Q->DQ pair's scale goes to a calibration cache (asymmetric ranges as the symmetric scale covering "
               "them; a range starting at 0 keeps a Relu where the tensor can be negative). Writes "
               "<model>.calib.cache (and <model>.layer_arg.txt when some node has no scale) beside the model and "
               "prints the trtexec command. Proven: the float model plus its recorded quantizers equals the Q/DQ "
               "model exactly, and at each quantized tensor the float layer is within half a step.")
]
