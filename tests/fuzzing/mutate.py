"""Damaged copies of the small corpus models: attribute changes, dtype flips, dangling edges, cycles, removed nodes,
opset changes, external-data entries, then sometimes truncation or bit flips of the serialized bytes."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import AttributeProto, TensorProto

from .draw import Draw

SHARED = Path(os.environ.get("DLARULES_SHARED", Path(__file__).resolve().parents[2].parent / "shared"))
CORPUS = SHARED / "corpus"
# the small ones: each loads and checks in milliseconds
SMALL = ["onnxpkg_light_squeezenet", "onnxpkg_light_bvlc_alexnet", "onnxpkg_light_vgg19",
         "onnxpkg_light_inception_v1", "onnxpkg_light_shufflenet", "onnxpkg_light_resnet50",
         "onnxpkg_light_densenet121", "ppocr_mobile_v2_cls"]
# dims for a dynamic corpus model's inputs
DYNAMIC = {"ppocr_mobile_v2_cls": {"x": [1, 3, 48, 192]}}
EXT_LOCATIONS = ["weights.bin", "missing.bin", "../outside.bin", "/etc/hostname", "sub/../weights.bin", "",
                 "w" * 300, "weights.bin\x00x", "./weights.bin", "d/" * 60 + "w.bin"]


def available() -> list[str]:
    return [n for n in SMALL if (CORPUS / f"{n}.onnx").is_file()]


@functools.lru_cache(maxsize=None)
def corpus_bytes(name: str) -> bytes:
    """Each corpus model is read once per process (the corpus is read-only)."""
    return (CORPUS / f"{name}.onnx").read_bytes()


@dataclass
class Mutant:
    source: str
    data: bytes                                  # the model file
    extra: dict[str, bytes] = field(default_factory=dict)   # files beside it (external data)
    shapes: dict[str, list[int]] = field(default_factory=dict)
    edits: list[str] = field(default_factory=list)


def _odd_int(d: Draw) -> int:
    return d.choice([0, -1, 1, 2, 3, 9, 17, 255, 4097, -(2 ** 31), 2 ** 31 - 1, 2 ** 62, 10 ** 9])


def _attr(d: Draw, m: onnx.ModelProto, edits: list[str]) -> None:
    nodes = [n for n in m.graph.node if n.attribute]
    if not nodes:
        return
    node = d.choice(nodes)
    a = d.choice(list(node.attribute))
    edits.append(f"attr {node.op_type}.{a.name}")
    if d.chance(0.1):                        # the wrong attribute type
        a.type = d.choice([AttributeProto.FLOAT, AttributeProto.INTS, AttributeProto.STRING, AttributeProto.TENSOR])
        return
    if a.type == AttributeProto.INT:
        a.i = _odd_int(d)
    elif a.type == AttributeProto.INTS:
        vals = list(a.ints)
        form = d.int(0, 3)
        if form == 0 and vals:
            vals[d.int(0, len(vals) - 1)] = _odd_int(d)
        elif form == 1:
            vals = vals[:-1]
        elif form == 2:
            vals = vals + [_odd_int(d)]
        else:
            vals = []
        del a.ints[:]
        a.ints.extend(vals)
    elif a.type == AttributeProto.FLOAT:
        a.f = d.choice([0.0, -1.0, float("nan"), float("inf"), 1e38, -1e-45])
    elif a.type == AttributeProto.STRING:
        a.s = d.choice([b"", b"bogus", b"\x90\xff\xfe", b"x" * 500, b"NOTSET", b"linear"])
    elif a.type == AttributeProto.TENSOR:
        a.t.data_type = d.int(0, 25)


def _dtype(d: Draw, m: onnx.ModelProto, edits: list[str]) -> None:
    g = m.graph
    code = d.choice([TensorProto.FLOAT16, TensorProto.INT64, TensorProto.STRING, TensorProto.BOOL, 0, 99,
                     TensorProto.BFLOAT16, TensorProto.COMPLEX64, TensorProto.FLOAT8E4M3FN, TensorProto.UINT4, 17])
    pools = [("input", list(g.input)), ("output", list(g.output)), ("value_info", list(g.value_info))]
    if d.chance(0.4) and g.initializer:
        init = d.choice(list(g.initializer))
        init.data_type = code
        edits.append(f"initializer dtype {code}")
        return
    kind, pool = d.choice([p for p in pools if p[1]] or [("input", list(g.input))])
    if not pool:
        return
    vi = d.choice(pool)
    vi.type.tensor_type.elem_type = code
    edits.append(f"{kind} dtype {code}")


def _dims(d: Draw, m: onnx.ModelProto, edits: list[str]) -> None:
    vis = [v for v in list(m.graph.input) + list(m.graph.output) if v.type.tensor_type.shape.dim]
    if not vis:
        return
    vi = d.choice(vis)
    dims = vi.type.tensor_type.shape.dim
    dim = dims[d.int(0, len(dims) - 1)]
    form = d.int(0, 4)
    if form == 0:
        dim.dim_value = d.choice([0, 1, 4097, 2 ** 40])
    elif form == 1:
        dim.dim_param = d.choice(["N", "", "x" * 400, "\u00e9"])
    elif form == 2:
        vi.type.tensor_type.ClearField("shape")
    elif form == 3:
        dims.add().dim_value = 1
    else:
        del dims[-1]
    edits.append(f"dims of {vi.name}")


def _dangling(d: Draw, m: onnx.ModelProto, edits: list[str]) -> None:
    nodes = [n for n in m.graph.node if n.input]
    if nodes:
        n = d.choice(nodes)
        n.input[d.int(0, len(n.input) - 1)] = d.choice(["missing_tensor", "", "\u2603"])
        edits.append(f"dangling input of {n.op_type}")


def _cycle(d: Draw, m: onnx.ModelProto, edits: list[str]) -> None:
    nodes = list(m.graph.node)
    if len(nodes) < 2:
        return
    i = d.int(0, len(nodes) - 2)
    j = d.int(i + 1, len(nodes) - 1)
    if nodes[i].input and nodes[j].output:
        nodes[i].input[0] = nodes[j].output[0]
        edits.append(f"cycle {nodes[i].op_type} <- {nodes[j].op_type}")


def _remove(d: Draw, m: onnx.ModelProto, edits: list[str]) -> None:
    if m.graph.node:
        i = d.int(0, len(m.graph.node) - 1)
        edits.append(f"remove {m.graph.node[i].op_type}")
        del m.graph.node[i]


def _opset(d: Draw, m: onnx.ModelProto, edits: list[str]) -> None:
    form = d.int(0, 3)
    if form == 0 and m.opset_import:
        m.opset_import[0].version = d.choice([1, 6, 13, 21, 30, 10 ** 6])
    elif form == 1:
        m.opset_import.add(domain=d.choice(["com.microsoft", "ai.onnx.ml", "x" * 200]), version=1)
    elif form == 2:
        del m.opset_import[:]
    else:
        m.ir_version = d.choice([0, 1, 3, 11, 99])
    edits.append(f"opset/ir form {form}")


def _external(d: Draw, m: onnx.ModelProto, extra: dict[str, bytes], edits: list[str]) -> None:
    inits = [t for t in m.graph.initializer]
    if not inits:
        return
    t = d.choice(inits)
    loc = d.choice(EXT_LOCATIONS)
    nbytes = len(t.raw_data) or 4 * max(1, len(t.float_data))
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.ClearField("int64_data")
    t.data_location = TensorProto.EXTERNAL
    del t.external_data[:]
    entries = {"location": loc}
    if d.chance(0.5):
        entries["offset"] = d.choice(["0", "-4", "abc", str(2 ** 40), "4"])
    if d.chance(0.5):
        entries["length"] = d.choice([str(nbytes), "0", "-1", "x", str(2 ** 40)])
    if d.chance(0.1):
        entries["checksum"] = "deadbeef"
    for k, v in entries.items():
        t.external_data.add(key=k, value=v)
    if loc in ("weights.bin", "./weights.bin", "sub/../weights.bin") and d.chance(0.7):
        extra["weights.bin"] = d.bytes(min(nbytes, 64)) * max(1, nbytes // 64)
    edits.append(f"external data {loc!r}")


MUTATORS = [_attr, _dtype, _dims, _dangling, _cycle, _remove, _opset, _external]


def mutate_model(d: Draw, names: list[str] | None = None) -> Mutant:
    names = names or available()
    src = d.choice(names)
    m = onnx.load_from_string(corpus_bytes(src))
    extra: dict[str, bytes] = {}
    edits: list[str] = []
    for _ in range(d.int(1, 3)):
        fn = d.choice(MUTATORS)
        if fn is _external:
            _external(d, m, extra, edits)
        else:
            fn(d, m, edits)
    data = m.SerializeToString()
    if d.chance(0.08):
        cut = d.int(0, len(data))
        data = data[:cut]
        edits.append(f"truncated at {cut}")
    elif d.chance(0.08):
        buf = bytearray(data)
        for _ in range(d.int(1, 8)):
            i = d.int(0, len(buf) - 1)
            buf[i] ^= 1 << d.int(0, 7)
        data = bytes(buf)
        edits.append("bit flips")
    return Mutant(src, data, extra, dict(DYNAMIC.get(src, {})), edits)
