"""The machine's dense matrix-multiply rate, measured once per runtime (the floor for every config)."""

from __future__ import annotations

import time

import numpy as np


def _rate(fn, n: int, seconds: float) -> float:
    fn()
    runs, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        runs += 1
    return 2 * n ** 3 * runs / (time.perf_counter() - t0) / 1e9


def torch_gemm_gflops(n: int = 1024, seconds: float = 1.0) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    return _rate(lambda: torch.mm(a, b), n, seconds)


def ort_gemm_gflops(n: int = 1024, seconds: float = 1.0) -> float:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
                           helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
                          [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"a": np.random.rand(n, n).astype(np.float32), "b": np.random.rand(n, n).astype(np.float32)}
    return _rate(lambda: s.run(None, feed), n, seconds)
