"""The super-resolution CNN of PyTorch's ONNX tutorial (SuperResolutionNet, upscale 3), as NVIDIA's jetson_benchmarks
ship it (super_resolution_bsd500): four convolutions, then PixelShuffle exported as Reshape -> Transpose -> Reshape.
Rebuilt with onnx.helper the way the old exporter wrote it: unnamed nodes, numbered tensors ("9" .. "15" for the
convolutions and ReLUs, "17", "18" for the shuffle), so TensorRT names its layers node_of_9 ... node_of_output_0
(../shared/logs/public/07)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build(size: int = 224, r: int = 3) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    convs = [(1, 64, 5), (64, 64, 3), (64, 32, 3), (32, r * r, 3)]
    inits, nodes, x, t = [], [], "input", 1
    for i, (cin, cout, k) in enumerate(convs):
        w, b = str(t), str(t + 1)
        t += 2
        inits += [numpy_helper.from_array((rng.standard_normal((cout, cin, k, k)) * 0.05).astype(np.float32), w),
                  numpy_helper.from_array(np.zeros(cout, np.float32), b)]
    out = 9
    for i, (cin, cout, k) in enumerate(convs):
        nodes.append(helper.make_node("Conv", [x, str(1 + 2 * i), str(2 + 2 * i)], [str(out)], kernel_shape=[k, k],
                                      pads=[k // 2] * 4))
        x, out = str(out), out + 1
        if i < 3:
            nodes.append(helper.make_node("Relu", [x], [str(out)]))
            x, out = str(out), out + 1
    inits += [numpy_helper.from_array(np.array([1, 1, r, r, size, size], np.int64), "16"),
              numpy_helper.from_array(np.array([1, 1, size * r, size * r], np.int64), "19")]
    nodes += [helper.make_node("Reshape", [x, "16"], ["17"]),
              helper.make_node("Transpose", ["17"], ["18"], perm=[0, 1, 4, 2, 5, 3]),
              helper.make_node("Reshape", ["18", "19"], ["output_0"])]
    graph = helper.make_graph(nodes, "super_resolution", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                         [1, 1, size, size])],
                              [helper.make_tensor_value_info("output_0", TensorProto.FLOAT,
                                                             [1, 1, size * r, size * r])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 4
    return model
