"""Build examples/dla_demo.onnx: a small CNN that trips several common DLA limits.

    python examples/make_example.py [OUT]

What it contains (and which rule each part trips):
  conv-bn-relu stem, conv + HardSwish          ACT-TYPE (HardSwish -> hard sigmoid activation)
  AveragePool 9x9 context branch               POOL-WINDOW (window over 8)
  MaxPool, nearest Resize x2 whose size is     RESIZE-STATIC-SCALES (sizes computed from a Shape: a
    computed from a Shape (PyTorch-style)        shape tensor at build time, not constant scales)
  Concat on C, 1x1 conv, GlobalAveragePool     REDUCE-SUPPORT on Orin 8.6, REDUCE-OP on 10.x; POOL-WINDOW on Xavier 8.5
  Flatten + Gemm classifier + Softmax          SOFTMAX-XAVIER on Xavier; GEN-RANK for the 2-D tail
The output is deterministic (seeded weights), so the committed file can be checked against a rebuild.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _w(rng: np.random.Generator, name: str, *shape: int) -> onnx.TensorProto:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32), name)


def build() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [
        _w(rng, "stem.w", 16, 3, 3, 3), _w(rng, "stem.b", 16),
        numpy_helper.from_array(np.ones(16, np.float32), "bn.scale"),
        numpy_helper.from_array(np.zeros(16, np.float32), "bn.bias"),
        numpy_helper.from_array(np.zeros(16, np.float32), "bn.mean"),
        numpy_helper.from_array(np.ones(16, np.float32), "bn.var"),
        _w(rng, "c2.w", 32, 16, 3, 3), _w(rng, "c2.b", 32),
        _w(rng, "fuse.w", 32, 64, 1, 1), _w(rng, "fuse.b", 32),
        _w(rng, "fc.w", 10, 32), _w(rng, "fc.b", 10),
        numpy_helper.from_array(np.array([0, 1], np.int64), "keep_nc"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "hw_idx"),
        numpy_helper.from_array(np.array([2], np.int64), "two"),
    ]
    n = helper.make_node
    nodes = [
        n("Conv", ["input", "stem.w", "stem.b"], ["stem"], "/stem/Conv", kernel_shape=[3, 3], strides=[2, 2],
          pads=[1, 1, 1, 1]),
        n("BatchNormalization", ["stem", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["bn"], "/stem/bn"),
        n("Relu", ["bn"], ["r1"], "/stem/Relu"),
        n("Conv", ["r1", "c2.w", "c2.b"], ["c2"], "/block/Conv", kernel_shape=[3, 3], strides=[2, 2],
          pads=[1, 1, 1, 1]),
        n("HardSwish", ["c2"], ["hs"], "/block/HardSwish"),
        n("AveragePool", ["hs"], ["ctx"], "/context/AveragePool", kernel_shape=[9, 9], pads=[4, 4, 4, 4],
          count_include_pad=1),
        n("Add", ["hs", "ctx"], ["mix"], "/context/Add"),
        n("MaxPool", ["mix"], ["mp"], "/down/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
        # PyTorch-style F.interpolate(scale_factor=2): the size is computed from the input's shape
        n("Shape", ["mp"], ["shp"], "/up/Shape"),
        n("Gather", ["shp", "hw_idx"], ["hw"], "/up/Gather"),
        n("Mul", ["hw", "two"], ["hw2"], "/up/Mul"),
        n("Gather", ["shp", "keep_nc"], ["nc"], "/up/Gather_1"),
        n("Concat", ["nc", "hw2"], ["sizes"], "/up/Concat", axis=0),
        n("Resize", ["mp", "", "", "sizes"], ["up"], "/up/Resize", mode="nearest",
          coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        n("Concat", ["up", "mix"], ["cat"], "/fuse/Concat", axis=1),
        n("Conv", ["cat", "fuse.w", "fuse.b"], ["fuse"], "/fuse/Conv", kernel_shape=[1, 1]),
        n("Relu", ["fuse"], ["fr"], "/fuse/Relu"),
        n("GlobalAveragePool", ["fr"], ["gap"], "/head/GlobalAveragePool"),
        n("Flatten", ["gap"], ["flat"], "/head/Flatten", axis=1),
        n("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], "/head/Gemm", transB=1),
        n("Softmax", ["logits"], ["probs"], "/head/Softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "dla_demo",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 128, 128])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 10])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="dlarules-example")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("dla_demo.onnx")
    out.write_bytes(build().SerializeToString())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
