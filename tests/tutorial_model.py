"""NVIDIA's DLA tutorial CNN (NVIDIA-AI-IOT/jetson_dla_tutorial, models.py ModelBN), rebuilt with onnx.helper as
torch.onnx.export writes it: BatchNorm folded into the convolutions, AdaptiveAvgPool2d((1, 1)) as GlobalAveragePool,
x.view(x.shape[0], -1) as Shape/Gather/Unsqueeze/Concat/Reshape, nn.Linear as Gemm, a dynamic batch dim.

`style="torch1"` names nodes like the exporter of 2022 (Conv_0 ... Gemm_15: ../shared/logs/public/02);
`style="torch2"` like torch >= 1.13 (/cnn/cnn.0/Conv ... /linear/Gemm: ../shared/logs/public/03)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build(style: str = "torch2") -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    chans = [3, 64, 128, 256, 512]
    inits, nodes = [], []
    x = "input"
    idx = 0

    def name(torch1: str, torch2: str) -> str:
        return torch1 if style == "torch1" else torch2

    for i in range(4):
        w = f"onnx::Conv_{100 + 2 * i}"
        b = f"onnx::Conv_{101 + 2 * i}"
        inits += [numpy_helper.from_array(rng.standard_normal((chans[i + 1], chans[i], 3, 3)).astype(np.float32) * 0.05, w),
                  numpy_helper.from_array(np.zeros(chans[i + 1], np.float32), b)]
        conv = name(f"Conv_{idx}", f"/cnn/cnn.{3 * i}/Conv")
        relu = name(f"Relu_{idx + 1}", f"/cnn/cnn.{3 * i + 2}/Relu")
        nodes.append(helper.make_node("Conv", [x, w, b], [f"{conv}_out"], conv, kernel_shape=[3, 3], strides=[2, 2],
                                      pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"{conv}_out"], [f"{relu}_out"], relu))
        x = f"{relu}_out"
        idx += 2
    gap = name("GlobalAveragePool_8", "/pool/GlobalAveragePool")
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], gap))
    inits += [numpy_helper.from_array(np.array(0, np.int64), "zero"),
              numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
              numpy_helper.from_array(np.array([0], np.int64), "axes0"),
              numpy_helper.from_array(rng.standard_normal((10, 512)).astype(np.float32) * 0.05, "linear.weight"),
              numpy_helper.from_array(np.zeros(10, np.float32), "linear.bias")]
    nodes += [
        helper.make_node("Shape", ["pooled"], ["shape"], name("Shape_9", "/Shape")),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], name("Gather_11", "/Gather"), axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"], name("Unsqueeze_12", "/Unsqueeze")),
        helper.make_node("Concat", ["batch1", "minus_one"], ["newshape"], name("Concat_13", "/Concat"), axis=0),
        helper.make_node("Reshape", ["pooled", "newshape"], ["flat"], name("Reshape_14", "/Reshape")),
        helper.make_node("Gemm", ["flat", "linear.weight", "linear.bias"], ["output"], name("Gemm_15", "/linear/Gemm"),
                         alpha=1.0, beta=1.0, transB=1),
    ]
    graph = helper.make_graph(nodes, "ModelBN",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch_size", 3, 32, 32])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch_size", 10])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model
