"""The machine's dense matrix-multiply rate, measured once per runtime (the floor for every config)."""

from __future__ import annotations

import time

import numpy as np


def torch_gemm_gflops(n: int = 1024, seconds: float = 1.0) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    runs, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        runs += 1
    return 2 * n ** 3 * runs / (time.perf_counter() - t0) / 1e9


def ort_gemm_gflops(n: int = 1024, seconds: float = 1.0) -> float:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
                          [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"a": np.random.rand(n, n).astype(np.float32), "b": np.random.rand(n, n).astype(np.float32)}
    s.run(None, feed)
    runs, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        s.run(None, feed)
        runs += 1
    return 2 * n ** 3 * runs / (time.perf_counter() - t0) / 1e9
