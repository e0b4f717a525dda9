"""A fuzz case: the files of one run (a model, maybe a log or external data) and the command run on them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import onnx

from .draw import Draw
from .graphs import build_graph
from .mutate import available, mutate_model

TARGETS = {"orin": ["10.3", "8.6", "8.5", "8.4", "10.0", "10.7", "11.4"], "xavier": ["8.5", "8.4", "8.2", "8.0", "7.1"]}
MODULES = {"orin": ["agx-orin", "orin-nx-16", "orin-nx-8", "orin-nano", "drive-orin"],
           "xavier": ["agx-xavier", "xavier-nx"]}


@dataclass
class Case:
    kind: str                                  # check | fix | compare | split | api
    files: dict[str, bytes]                    # written into a fresh folder; the run's cwd
    argv: list[str] = field(default_factory=list)     # the CLI arguments (check, fix, compare)
    api: dict[str, Any] = field(default_factory=dict)  # api.check keyword arguments (+ "proto": pass a ModelProto)
    label: str = ""

    def command(self) -> str:
        """The one-line command that reproduces the case from inside its folder."""
        import shlex
        if self.kind == "api":
            kw = {k: v for k, v in self.api.items() if k != "proto"}
            src = 'onnx.load("m.onnx", load_external_data=False)' if self.api.get("proto") else "'m.onnx'"
            code = f"import onnx; from dlarules.api import check, load_db; print(check({src}, load_db(), **{kw!r}).summary)"
            return "python -c " + shlex.quote(code)
        return "dlarules " + " ".join(shlex.quote(a) for a in self.argv)


def _node_names(data: bytes) -> list[tuple[str, str]]:
    try:
        m = onnx.load_from_string(data)
    except Exception:
        return []
    return [(n.name or f"node_of_{n.output[0] if n.output else 'x'}", n.op_type) for n in m.graph.node]


def make_log(d: Draw, data: bytes) -> bytes:
    """A trtexec-like build log over the model's node names: placement lists, fallback warnings, noise."""
    nodes = _node_names(data)
    stamp = "[12/03/2026-12:00:00] "
    lines = [f"{stamp}[I] TensorRT version: {d.choice(['8.5.2', '10.3.0', '8.6.1', '7.1.3'])}"]
    if d.chance(0.2):
        lines += [f"{stamp}[W] [TRT] Layer '{name}' ({op.upper()}): Unsupported on DLA. Switching this layer's "
                  f"device type to GPU." for name, op in nodes if d.chance(0.4)]
    else:
        lines.append(f"{stamp}[I] [TRT] ---------- Layers Running on DLA ----------")
        names = [n for n, _ in nodes]
        if names:
            a = d.int(0, len(names) - 1)
            z = d.int(a, len(names) - 1)
            lines.append(f"{stamp}[I] [TRT] [DlaLayer] {{ForeignNode[{names[a]}...{names[z]}]}}")
        lines.append(f"{stamp}[I] [TRT] ---------- Layers Running on GPU ----------")
        for name, op in nodes:
            if d.chance(0.3):
                lines.append(f"{stamp}[I] [TRT] [GpuLayer] {op.upper()}: {name}")
        if d.chance(0.2):
            lines.append(f"{stamp}[I] [TRT] [GpuLayer] SHUFFLE: (Unnamed Layer* {d.int(0, 999)}) [Shuffle]")
    if d.chance(0.1):
        lines.insert(d.int(0, len(lines)), d.choice(["\x00\x01garbage", "[GpuLayer]", "{ForeignNode[", "x" * 3000]))
    text = ("\r\n" if d.chance(0.1) else "\n").join(lines) + "\n"
    raw = text.encode("utf-8")
    if d.chance(0.05):
        raw = raw[: d.int(0, len(raw))]
    if d.chance(0.05):
        raw = b"\xff\xfe" + raw
    return raw


# what each command's --format takes (report/formats.py); a wrong one now and then: a one-line exit 2
FORMATS = {"check": ["text", "json", "sarif", "markdown", "github", "junit", "html"],
           "compare": ["text", "json", "sarif", "markdown", "github", "junit"],
           "fix": ["text", "json", "markdown", "html"], "split": ["text", "json"]}


def make_config(d: Draw, data: bytes) -> bytes:
    """A dlarules.toml beside the model: valid settings and ignores over its node names, or damaged ones."""
    nodes = _node_names(data)
    target = d.choice(list(TARGETS))
    lines = [f'target = "{target}"']
    if d.chance(0.5):
        lines.append(f'trt = "{d.choice(TARGETS[target])}"')
    if d.chance(0.2):
        lines.append(d.choice(['trt = 10.3', 'precision = "fp33"', 'min-dla-coverage = 150', 'targett = "orin"',
                               'rules = ["nosuch"]', 'format = "sarif"', 'dla-only = "yes"']))
    for _ in range(d.int(0, 3)):
        rule = d.choice(["POOL-WINDOW", "GEN-RANK", "UNARY-OP", "EW-OP", "NO-SUCH-RULE", "GEN-MAX-DIM"])
        lines += ["[[ignore]]", f'rule = "{rule}"']
        if nodes and d.chance(0.6):
            name = d.choice(nodes)[0]
            lines.append(f'node = "{name.replace(chr(92), "").replace(chr(34), "")[:40]}*"')
        if d.chance(0.9):
            lines.append('reason = "known fallback"')
    if d.chance(0.2):
        lines += ["[[overrides]]", 'files = ["*.onnx"]', f'target = "{d.choice(list(TARGETS))}"']
    raw = ("\n".join(lines) + "\n").encode()
    if d.chance(0.08):
        raw = d.choice([b"\xff\xfe not toml", b"[[ignore]\nrule=", b"target = ", raw[: d.int(0, len(raw))]])
    return raw


def _common(d: Draw, shapes: dict[str, list[int]]) -> list[str]:
    target = d.choice(list(TARGETS))
    args = ["--target", target if not d.chance(0.1) else d.choice(MODULES[target])]
    if d.chance(0.7):
        args += ["--trt", d.choice(TARGETS[target])]
    if d.chance(0.02):
        args += ["--trt", d.choice(["9.9", "abc", "8.5.2.2", "-1"])]
    if d.chance(0.4):
        args += ["--precision", d.choice(["fp16", "int8", "int8+fp16", "best", "strongly-typed", "fp32"]
                                         if d.chance(0.2) else ["fp16", "int8"])]
    if shapes and d.chance(0.9):
        for name, dims in shapes.items():
            args += ["--input-shape", f"{name}:{'x'.join(str(v) for v in dims)}"]
    elif d.chance(0.03):
        args += ["--input-shape", d.choice(["x:0x3x8x8", "1x3x8x8", "nosuch:1x2", "x:1x3x8", ":1"])]
    return args


def make_case(d: Draw, source: str | None = None, kind: str | None = None) -> Case:
    """A random case: a generated graph or a mutated corpus model, and a command on it."""
    if source is None:
        source = "graph" if not available() or d.chance(0.65) else "mutant"
    extra: dict[str, bytes] = {}
    kind = kind or d.choice(["check", "check", "fix", "fix", "compare", "split", "api"])
    if source == "graph":
        g = build_graph(d, fixable=kind == "fix" and d.chance(0.6))
        data, shapes, label = g.model.SerializeToString(), g.dynamic, "graph " + ",".join(g.ops)
    else:
        mu = mutate_model(d)
        data, shapes, extra, label = mu.data, mu.shapes, mu.extra, f"mutant {mu.source}: " + "; ".join(mu.edits)
    files = {"m.onnx": data, **extra}
    if kind != "api" and d.chance(0.12):
        files["dlarules.toml"] = make_config(d, data)
    if kind == "api":
        target = d.choice(list(TARGETS))
        api: dict[str, Any] = {"hardware": target, "proto": d.chance(0.3)}
        if d.chance(0.7):
            api["trt"] = d.choice(TARGETS[target])
        if d.chance(0.4):
            api["precision"] = d.choice(["fp16", "int8"])
        if shapes and d.chance(0.9):
            api["input_shapes"] = {k: tuple(v) for k, v in shapes.items()}
        return Case("api", files, api=api, label=label)
    args = [kind, "m.onnx"] + _common(d, shapes)
    fmt = d.choice(FORMATS[kind]) if not d.chance(0.02) else d.choice(["svg", "xml", "json2"])
    if kind == "check":
        if d.chance(0.15):   # several models in one call: a copy, or another generated graph
            files["m2.onnx"] = data if d.chance(0.5) else build_graph(d).model.SerializeToString()
            args.insert(2, "m2.onnx")
        args += ["--format", fmt]
        if d.chance(0.3):
            args.append("--all")
        if d.chance(0.3):
            args += ["-o", "report.out"]
        if d.chance(0.1):
            args += d.choice([["--min-dla-coverage", "50"], ["--max-dla-subgraphs", "1"], ["--dla-only"]])
    elif kind == "compare":
        files["build.log"] = make_log(d, data)
        args += ["--log", "build.log", "--format", fmt]
        if d.chance(0.2):
            args += ["-o", "cmp.out"]
    elif kind == "split":
        args += ["--format", fmt]
        if d.chance(0.5):
            args += ["-o", "out"]
        if d.chance(0.2):
            args.append("--force")
    else:
        args += ["--format", fmt]
        if d.chance(0.25):
            args.append("--dry-run")
        else:
            args += ["-o", "out/fixed.onnx"]
            if d.chance(0.1):
                args.append("--then-split")
        if d.chance(0.4):
            args.append("--allow-approx")
        if d.chance(0.08):
            args.append("--no-verify")
        if d.chance(0.15):
            from dlarules.recipes.registry import REGISTRY
            names = sorted(REGISTRY)
            args += [d.choice(["--only", "--exclude"]), ",".join(d.sample(names, d.int(1, 3)))]
        if d.chance(0.2):
            args.append("--all")
    return Case(kind, files, argv=args, label=label)
