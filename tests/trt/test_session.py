"""The TensorRT session and engine builder without TensorRT or a GPU: the session is a ContractSession
over a fake runner, and the compute capability comes from the CUDA driver (a fake cuda-python), never
from torch.cuda (the project's torch is the CPU build)."""

import ctypes.util
import json
import sys
import types

import numpy as np
import pytest
import torch

from madtp_deploy.errors import InputError, RuntimeBackendError
from madtp_deploy.onnx import io as onnx_io
from madtp_deploy.runtime.base import Contract, ContractSession
from madtp_deploy.specs import get_spec
from madtp_deploy.trt import build
from madtp_deploy.trt.session import TrtSession

from .test_build import _text_graph

SPEC = get_spec("clip-tiny-test")


def _engine(tmp_path, static=False, **extra):
    """An engine path with the sidecar `madtp-deploy build` writes (the engine file itself is fake)."""
    io = onnx_io.encoder_io(SPEC, "image", static=static)
    path = tmp_path / "tiny.image.plan"
    path.write_bytes(b"not an engine")
    side = {"onnx": "export/tiny.image.onnx", "encoder": "image", "shapes": "static" if static else "dynamic",
            "io": io.to_dict(), "model": {"spec": SPEC.to_dict()}, "tensorrt": "11.1.0",
            "compute_capability": "sm_90", **extra}
    path.with_suffix(".json").write_text(json.dumps(side))
    return path, io


class _FakeRunner:
    """Like polygraphy's TrtRunner: rejects unknown inputs, reuses its output buffers, returns by name."""

    def __init__(self, io, batch=2):
        self.io = io
        self.bufs = {t.name: np.zeros(t.shape({"batch": batch}), dtype=t.dtype) for t in io.outputs}

    def get_input_metadata(self):
        return {n: None for n in self.io.input_names}

    def infer(self, feed):
        assert set(feed) == set(self.io.input_names), "polygraphy raises on extra input names"
        for b in self.bufs.values():
            b[...] = feed["pixels"].reshape(-1)[0] if b.dtype.kind == "f" else 1
        return dict(reversed(list(self.bufs.items())))  # not in the contract's order


def _pixels(n=2, seed=0):
    return onnx_io.encoder_io(SPEC, "image").example(SPEC, n, seed)["pixels"].numpy()


@pytest.mark.parametrize("static", [False, True])
def test_trt_session_maps_outputs_by_the_contract_and_copies_them(tmp_path, static):
    """Bugs caught: outputs in the engine's order instead of the contract's (a static engine's
    `overflow`), returned buffers reused by the next call, extra inputs passed on."""
    path, io = _engine(tmp_path, static)
    s = TrtSession(path, runner=_FakeRunner(io))
    assert isinstance(s, ContractSession) and s.backend == "trt"
    x = _pixels()
    a = s.run({"pixels": x, "input_ids": np.zeros(3)})
    assert list(a) == io.output_names and ("overflow" in a) == static
    b = s.run({"pixels": x + 1})
    assert a["embeds"].flat[0] == x.flat[0] and b["embeds"].flat[0] == x.flat[0] + 1


def test_trt_session_checks_inputs_through_the_contract(tmp_path):
    """Bug caught: a missing input raised a backend error, and the model's input checks (NaN pixels,
    wrong image size) never ran on the TensorRT path."""
    path, io = _engine(tmp_path)
    s = TrtSession(path, runner=_FakeRunner(io))
    with pytest.raises(InputError, match="pixels missing"):
        s.run({"input_ids": np.zeros(3)})
    bad = _pixels()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError):
        s.run({"pixels": bad})
    with pytest.raises(InputError):
        s.run({"pixels": np.zeros((2, 3, SPEC.image_size + 1, SPEC.image_size + 1), np.float32)})


def test_trt_session_refuses_an_engine_its_sidecar_does_not_describe(tmp_path):
    path, io = _engine(tmp_path)
    runner = _FakeRunner(io)
    runner.get_input_metadata = lambda: {"images": None}
    with pytest.raises(RuntimeBackendError, match="engine takes images"):
        TrtSession(path, runner=runner)
    path.with_suffix(".json").unlink()
    with pytest.raises(RuntimeBackendError, match="sidecar missing"):
        TrtSession(path, runner=_FakeRunner(io))
    with pytest.raises(RuntimeBackendError, match="no such engine file"):
        TrtSession(tmp_path / "none.plan")


# -- compute capability through the CUDA driver --------------------------------------------------------------

def _fake_driver(major=9, minor=0, init_error=None):
    """A stand-in for cuda-python's cuda.bindings.driver: the calls the builder makes, with their
    (error, value) tuples."""
    d = types.ModuleType("cuda.bindings.driver")
    d.CUresult = types.SimpleNamespace(CUDA_SUCCESS=0)
    d.CUdevice_attribute = types.SimpleNamespace(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR=75,
                                                 CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR=76)

    def cuInit(flags):
        return (init_error or 0,)

    def cuDeviceGet(ordinal):
        return (0, f"dev{ordinal}")

    def cuDeviceGetAttribute(attr, dev):
        assert dev == "dev0"
        return (0, {75: major, 76: minor}[attr])

    d.cuInit, d.cuDeviceGet, d.cuDeviceGetAttribute = cuInit, cuDeviceGet, cuDeviceGetAttribute
    return d


@pytest.fixture
def gpu_machine(monkeypatch):
    """A GPU machine as the project's environment sees it: TensorRT and cuda-python importable, the
    CPU build of torch (torch.cuda raises here if asked)."""
    def install(driver):
        pkg, sub = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
        pkg.bindings, sub.driver = sub, driver
        monkeypatch.setitem(sys.modules, "cuda", pkg)
        monkeypatch.setitem(sys.modules, "cuda.bindings", sub)
        monkeypatch.setitem(sys.modules, "cuda.bindings.driver", driver)
        trt = types.ModuleType("tensorrt")
        trt.__version__ = "11.1.0"
        monkeypatch.setitem(sys.modules, "tensorrt", trt)

    def no_torch_cuda(*_, **__):
        raise AssertionError("torch.cuda was asked; the project's torch is the CPU build")

    for name in ("is_available", "get_device_capability", "device_count"):
        monkeypatch.setattr(torch.cuda, name, no_torch_cuda)
    return install


def test_compute_capability_comes_from_the_cuda_driver(gpu_machine):
    """Bug caught: `build` and the session asked torch.cuda, which the CPU torch of the project's
    environment answers with 'no CUDA GPU visible' on a GPU machine."""
    gpu_machine(_fake_driver(8, 9))
    assert build.compute_capability() == "sm_89"
    gpu_machine(_fake_driver(init_error=100))
    with pytest.raises(RuntimeBackendError, match="cuInit returned 100"):
        build.compute_capability()


def test_build_and_session_reach_the_driver_not_torch(gpu_machine, tmp_path):
    gpu_machine(_fake_driver(9, 0))
    image = _text_graph(tmp_path)  # a stand-in graph with an export sidecar
    # build: a cached engine for this TensorRT/GPU is returned before polygraphy is needed
    shapes = build.profile_shapes(image, (1, 8, 32))
    from madtp_deploy.onnx.export import file_sha256

    key = build.engine_key(file_sha256(image), shapes, "fp32", "11.1.0", "sm_90")
    cached = build.engine_path(tmp_path, image, key, "fp32", "11.1.0", "sm_90")
    cached.write_bytes(b"engine")
    cached.with_suffix(".json").write_text("{}")
    assert build.build_engine(image, engines_dir=tmp_path, log=lambda *_: None) == cached
    # session: an engine built on another GPU is refused with the driver's answer in the message
    path, _ = _engine(tmp_path, compute_capability="sm_89")
    with pytest.raises(RuntimeBackendError, match="this machine has TensorRT 11.1.0 on sm_90"):
        TrtSession(path)


@pytest.mark.skipif(ctypes.util.find_library("cuda") is not None, reason="an NVIDIA driver is installed")
def test_no_driver_here_is_one_clear_error():
    """On a machine without an NVIDIA driver cuda-python raises instead of returning an error code."""
    pytest.importorskip("cuda.bindings.driver")
    with pytest.raises(RuntimeBackendError, match="CUDA driver: cuInit failed"):
        build.compute_capability()


def test_engine_sidecar_carries_the_contract_of_a_static_graph(tmp_path):
    """Bug caught: the engine's sidecar without the graph's `shapes`, so the session read a static
    engine as dynamic and lost its `overflow` output."""
    io = onnx_io.encoder_io(SPEC, "image", static=True)
    onnx_side = {"encoder": "image", "shapes": "static", "io": io.to_dict(), "precision": "fp32",
                 "model": {"spec": SPEC.to_dict(), "capacity": [4, 2]}}
    meta = build.engine_sidecar(tmp_path / "tiny.image.onnx", onnx_side, {}, sha="0" * 64, trt="11.1.0", cc="sm_90",
                                key="k", timing_cache=tmp_path / "timing.cache", build_s=1.0)
    plan = tmp_path / "tiny.image.plan"
    plan.with_suffix(".json").write_text(json.dumps(meta))
    assert Contract.from_sidecar(plan).output_names == ["embeds", "kept", "overflow"]
    assert (meta["tensorrt"], meta["compute_capability"], meta["io"]) == ("11.1.0", "sm_90", io.to_dict())
