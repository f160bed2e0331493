"""The TensorRT backend's I/O binding plan (engines/cpp/io_plan.hpp), compiled by g++ without TensorRT
and run against engine descriptions built from export sidecars' IO contracts (`io`): what
getNbIOTensors / getIOTensorName / getTensorIOMode / getTensorDataType and the context's shapes
would answer for the engine `madtp-deploy build` makes of that graph."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from madtp_deploy.onnx import io as onnx_io
from madtp_deploy.specs import get_spec

CPP = Path(__file__).resolve().parents[2] / "engines" / "cpp"
SPEC = get_spec("clip-tiny-test")


@pytest.fixture(scope="module")
def plan_test(tmp_path_factory):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not on PATH")
    exe = tmp_path_factory.mktemp("io-plan") / "io_plan_test"
    subprocess.run([gxx, "-std=c++17", "-O0", "-Wall", "-Werror", "-I", str(CPP), str(CPP / "tests" / "io_plan_test.cpp"),
                    "-o", str(exe)], check=True, capture_output=True, text=True)
    return exe


def sidecar_io(static: bool, encoder: str = "image") -> dict:
    """The `io` field an export writes into the graph's sidecar (export_model: io.to_dict())."""
    return onnx_io.encoder_io(SPEC, encoder, static=static).to_dict()


def describe(io: dict, dtypes: dict | None = None, dims: dict | None = None) -> list[str]:
    """The engine built from the graph with contract `io`: inputs with their dynamic axes as -1,
    outputs as the context reports them once the batch is set ('b'). `dtypes`/`dims` override a
    tensor's, as another engine would answer."""
    dtypes, dims = dtypes or {}, dims or {}
    lines = []
    for kind, tensors in (("input", io["inputs"]), ("output", io["outputs"])):
        for t in tensors:
            shape = dims.get(t["name"]) or [(-1 if kind == "input" else "b") if isinstance(a, str) else a
                                            for a in t["axes"]]
            lines.append(f"{kind} {t['name']} {dtypes.get(t['name'], t['dtype'])} {' '.join(map(str, shape))}")
    return lines


def run(exe, lines: list[str], *batches, size=SPEC.image_size) -> list[dict]:
    script = "\n".join(lines + [f"run {b} 3 {size} {size}" for b in batches]) + "\n"
    r = subprocess.run([str(exe)], input=script, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def _bytes(shape, dtype):
    return int(np.prod(shape)) * np.dtype(dtype).itemsize


@pytest.mark.parametrize("static", [True, False])
def test_every_output_of_the_engine_is_bound_by_its_own_name_and_dtype(plan_test, static):
    """Bug caught: only `embeds` and `kept` bound, so a static engine's `overflow` had no address and
    enqueueV3 returned false."""
    io = sidecar_io(static)
    (plan,) = run(plan_test, describe(io), 4)
    want = [(t["name"], t["dtype"], [4 if isinstance(a, str) else a for a in t["axes"]]) for t in io["outputs"]]
    assert [(o["name"], o["dtype"], o["shape"]) for o in plan["outputs"]] == want
    assert ("overflow" in [o["name"] for o in plan["outputs"]]) == static
    assert all(o["addressed"] and o["bytes"] == _bytes(o["shape"], o["dtype"]) for o in plan["outputs"])
    assert plan["input"] == {"name": "pixels", "dtype": "float32", "shape": [4, 3, SPEC.image_size, SPEC.image_size],
                             "bytes": _bytes([4, 3, SPEC.image_size, SPEC.image_size], "float32"), "addressed": True}


def test_the_input_dtype_is_the_engines_not_assumed_float32(plan_test):
    """Bug caught: the input buffer sized (and filled) as float32 whatever the engine's input type."""
    io = sidecar_io(True)
    (plan,) = run(plan_test, describe(io, dtypes={"pixels": "float16", "kept": "int32"}), 2)
    assert plan["input"]["dtype"] == "float16" and plan["input"]["bytes"] == _bytes(plan["input"]["shape"], "float16")
    kept = next(o for o in plan["outputs"] if o["name"] == "kept")
    assert kept["dtype"] == "int32" and kept["bytes"] == _bytes(kept["shape"], "int32")
    (bad,) = run(plan_test, describe(io, dtypes={"pixels": "int64"}), 2)
    assert "engine input 'pixels' is int64" in bad["error"]


def test_device_buffers_are_allocated_once_not_per_run(plan_test):
    """Bug caught: cudaMalloc/cudaFree on every run (inside the latency loop); buffers are now kept
    while a later batch fits and grown only when it does not."""
    io = sidecar_io(True)
    n = len(io["inputs"]) + len(io["outputs"])
    runs = run(plan_test, describe(io), 4, 4, 1, 4, 8)
    assert [(r["allocations"], r["frees"]) for r in runs] == [(n, 0)] * 4 + [(2 * n, n)]


def test_what_the_app_cannot_serve_is_refused_by_name(plan_test):
    static, dynamic = sidecar_io(True), sidecar_io(False)
    (r,) = run(plan_test, describe(dynamic, dims={"kept": ["b", -1]}), 2)
    assert "engine output 'kept'" in r["error"] and "--shapes static" in r["error"]
    (r,) = run(plan_test, describe(static), 2, size=SPEC.image_size * 2)
    assert "engine input 'pixels' has shape [-1,3," in r["error"]
    (r,) = run(plan_test, [ln for ln in describe(static) if " kept " not in ln], 2)
    assert "no output 'kept'" in r["error"]
    (r,) = run(plan_test, describe(sidecar_io(True, "text")), 2)
    assert "2 inputs (input_ids, attention_mask)" in r["error"]


@pytest.mark.skipif(not (os.environ.get("MADTP_TRT_INCLUDE") and os.environ.get("MADTP_CUDA_INCLUDE")),
                    reason="set MADTP_TRT_INCLUDE (TensorRT's include/) and MADTP_CUDA_INCLUDE (folders with "
                           "cuda_runtime_api.h and crt/host_defines.h, ':'-separated) to compile the backend")
def test_trt_backend_compiles_against_tensorrt_headers():
    """trt_backend.cpp against real TensorRT and CUDA headers (no libraries: -fsyntax-only)."""
    import torch.utils.cpp_extension as ext

    inc = [os.environ["MADTP_TRT_INCLUDE"], *os.environ["MADTP_CUDA_INCLUDE"].split(":"), *ext.include_paths()]
    cmd = ["g++", "-std=c++17", "-fsyntax-only", *[a for p in inc for a in ("-isystem", p)], "-I", str(CPP),
           str(CPP / "trt_backend.cpp")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
