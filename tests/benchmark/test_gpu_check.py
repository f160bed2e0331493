"""scripts/gpu_check.py (`make gpu-check`) on a machine without a GPU: every check skips, with a reason."""

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"
TRT_STATIC = ("tensorrt-static-build", "tensorrt-static-session", "tensorrt-static-cpp")


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: run `make gpu-check` for the real checks")
def test_gpu_check_writes_json_with_skip_reasons(tmp_path):
    out = tmp_path / "gpu_check.json"
    assert _script().main(["--output", str(out), "--model", "clip-tiny-test", "--batch", "2"]) == 0
    r = json.loads(out.read_text())
    assert set(r["checks"]) == {"torch-cuda-eager", "torch-cuda-compiled", "aoti-cuda", "ort-cuda", "tensorrt",
                                *TRT_STATIC}
    for name, check in r["checks"].items():
        assert check["status"] == "skip" and len(check["reason"]) > 20, name
    assert r["summary"]["skip"] == sorted(r["checks"]) and r["machine"]["gpu"] is None
    cmds = r["checks"]["tensorrt"]["commands"]
    assert set(cmds) == {"dynamic", "static"} and "--shapes static" in cmds["static"][0]
    assert all(c[1].startswith("madtp-deploy build") and c[2].startswith("polygraphy run") for c in cmds.values())
    build_reason = r["checks"]["tensorrt-static-build"]["reason"]
    for name in TRT_STATIC[1:]:  # the session and the C++ app run the engine the build makes
        assert "tensorrt-static-build" in r["checks"][name]["reason"] and build_reason in r["checks"][name]["reason"]


def test_tensorrt_checks_ask_the_cuda_driver_not_torch(monkeypatch):
    """Bug caught: the TensorRT checks skipped with torch's 'no CUDA device' on a GPU machine whose
    environment has the CPU torch; they now ask the CUDA driver, as `madtp-deploy build` does."""
    gpu_check = _script()
    for name in ("tensorrt", "polygraphy"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))

    def no_torch_cuda(*_, **__):
        raise AssertionError("torch.cuda was asked")

    monkeypatch.setattr(torch.cuda, "is_available", no_torch_cuda)
    driver = types.ModuleType("cuda.bindings.driver")
    driver.CUresult = types.SimpleNamespace(CUDA_SUCCESS=0)
    driver.cuInit = lambda flags: (100,)  # CUDA_ERROR_NO_DEVICE
    pkg, sub = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    pkg.bindings, sub.driver = sub, driver
    for name, mod in (("cuda", pkg), ("cuda.bindings", sub), ("cuda.bindings.driver", driver)):
        monkeypatch.setitem(sys.modules, name, mod)
    assert gpu_check._no_tensorrt().startswith("CUDA driver: cuInit returned 100")
    driver.cuInit = lambda flags: (0,)
    driver.cuDeviceGet = lambda i: (0, i)
    driver.CUdevice_attribute = types.SimpleNamespace(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR=75,
                                                      CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR=76)
    driver.cuDeviceGetAttribute = lambda attr, dev: (0, 9 if attr == 75 else 0)
    assert gpu_check._no_tensorrt() is None


def test_cpp_check_needs_a_tensorrt_sdk(monkeypatch, tmp_path):
    gpu_check = _script()
    ctx = types.SimpleNamespace(plan=tmp_path / "m.plan", results={})
    monkeypatch.delenv("TENSORRT_ROOT", raising=False)
    r = gpu_check.check_trt_static_cpp(ctx)
    assert r["status"] == "skip" and "TENSORRT_ROOT is not set" in r["reason"]
    monkeypatch.setenv("TENSORRT_ROOT", str(tmp_path))
    r = gpu_check.check_trt_static_cpp(ctx)
    assert r["status"] == "skip" and "has no include/NvInfer.h" in r["reason"]
