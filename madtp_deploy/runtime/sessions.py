"""`open_session(path, backend=...)` -> a session with run(inputs: dict[str, np.ndarray]) -> dict.

Every backend is a `ContractSession` (runtime/base.py): inputs named and checked by the artifact's IO
contract (extra keys ignored, a missing one named in the error), outputs keyed by the contract's names,
fresh arrays returned. Backends: torch (eager), ort / ort-cuda (an exported .onnx), aoti (an
AOTInductor .pt2 from `export --format aoti`), trt (a TensorRT engine from `madtp-deploy build`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import RuntimeBackendError
from .base import Contract, ContractSession

BACKENDS = ("torch", "ort", "ort-cuda", "aoti", "trt")
AOTI_SUFFIX = ".pt2"


class Session(Protocol):
    backend: str

    @property
    def input_names(self) -> list[str]: ...

    def run(self, inputs: dict[str, Any]) -> dict[str, np.ndarray]: ...


class OrtSession(ContractSession):
    def __init__(self, path: Path, providers: list[str], threads: int | None = None, spinning: bool = True,
                 contract: Contract | None = None):
        """`contract`: the IO contract when the caller has it (validation, before the sidecar is written);
        default: read from the sidecar beside `path`."""
        import onnxruntime as ort

        self.contract = contract or Contract.from_sidecar(path)  # before loading: a missing sidecar fails fast
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # constant folding warns about CastLike nodes it cannot fold
        if threads:
            opts.intra_op_num_threads = threads
        if not spinning:  # idle pool threads otherwise spin and steal cores from another session
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.backend = "ort-cuda" if "CUDAExecutionProvider" in providers else "ort"
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        except (ort.capi.onnxruntime_pybind11_state.Fail, ort.capi.onnxruntime_pybind11_state.InvalidProtobuf,
                ort.capi.onnxruntime_pybind11_state.InvalidGraph, ort.capi.onnxruntime_pybind11_state.NoSuchFile,
                RuntimeError) as exc:
            raise RuntimeBackendError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:200]}); "
                                      f"fix: pass an .onnx written by `madtp-deploy export`, or re-export") from exc
        if providers[0] not in self.session.get_providers():  # ORT falls back silently: refuse instead
            raise RuntimeBackendError(f"{path}: onnxruntime did not enable {providers[0]} "
                                      f"(active: {self.session.get_providers()}); fix: install the [gpu] extra "
                                      f"in an environment without onnxruntime, on a machine with CUDA")
        graph_inputs = [i.name for i in self.session.get_inputs()]
        if graph_inputs != self.contract.input_names:
            raise RuntimeBackendError(f"{path}: graph inputs {graph_inputs} differ from its sidecar's IO contract "
                                      f"{self.contract.input_names}; fix: keep each .onnx with the .json written "
                                      f"beside it, or re-export")
        self._outputs = [o.name for o in self.session.get_outputs()]

    def _run(self, feeds):
        outs = dict(zip(self._outputs, self.session.run(self._outputs, feeds)))
        return [outs[n] for n in self.output_names]


class AotiSession(ContractSession):
    """An AOTInductor package (`export --format aoti`); outputs are fresh arrays."""

    def __init__(self, path, runner=None, **_):
        """`runner`: a loaded package's callable (tests pass a fake); default: load `path`."""
        import torch

        path = Path(path)
        if path.suffix != AOTI_SUFFIX or not path.is_file():
            raise RuntimeBackendError(f"{path}: not an AOTInductor package (.pt2); fix: make one with "
                                      f"`madtp-deploy export --format aoti`")
        self.contract = Contract.from_sidecar(path)
        self.backend = "aoti"
        if runner is not None:
            self._runner = runner
            return
        try:
            self._runner = torch._inductor.aoti_load_package(str(path))
        except (RuntimeError, OSError) as exc:  # the loader's errors (wrong CPU, corrupt file)
            raise RuntimeBackendError(f"{path}: AOTInductor cannot load it ({str(exc).splitlines()[0][:200]}); "
                                      f"fix: re-export on this machine (packages are compiled per CPU)") from exc

    def _run(self, feeds):
        import torch

        tensors = [torch.as_tensor(np.ascontiguousarray(feeds[n])) for n in self.input_names]
        with torch.inference_mode():
            outs = self._runner(*tensors)
        return [o.detach().cpu().numpy().copy() for o in outs]


class TorchSession(ContractSession):
    """Eager PyTorch behind the same interface; `source` is anything madtp_deploy.load accepts."""

    def __init__(self, source, encoder: str, mode: str = "reference", temperature: float | None = None,
                 model=None):
        from ..api import load
        from ..onnx.io import encoder_io

        self.backend = "torch"
        self.model = model if model is not None else load(source, mode=mode, temperature=temperature)
        self.io = encoder_io(self.model, encoder)
        self.contract = Contract.of(self.io, self.model.spec)

    def _run(self, feeds):
        out = self.io.eager(self.model, feeds)
        return [out[n] for n in self.output_names]


def available_backends() -> dict[str, str | None]:
    """backend -> None if usable here, else the reason it is not."""
    import onnxruntime as ort

    out: dict[str, str | None] = {"torch": None, "ort": None, "aoti": None}
    out["ort-cuda"] = None if "CUDAExecutionProvider" in ort.get_available_providers() else \
        "onnxruntime has no CUDAExecutionProvider here (CPU build, or no GPU): install the [gpu] extra on a GPU machine"
    try:
        import tensorrt  # noqa: F401
        out["trt"] = None
    except ImportError:
        out["trt"] = "tensorrt is not installed (its wheels need NVIDIA's package index; not reachable here)"
    return out


def open_session(path, backend: str = "ort", **kwargs) -> Session:
    if backend not in BACKENDS:
        raise RuntimeBackendError(f"backend {backend!r}: unknown; fix: use one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return TorchSession(path, **kwargs)
    if backend == "aoti":
        return AotiSession(path, **kwargs)
    path = Path(path)
    if backend == "trt" and path.suffix == ".onnx":
        raise RuntimeBackendError(f"{path}: backend trt runs a TensorRT engine, not an ONNX file; fix: build one "
                                  f"with `madtp-deploy build {path}` and open the .plan it writes")
    reason = available_backends()[backend]
    if reason:
        raise RuntimeBackendError(f"backend {backend}: unavailable: {reason}")
    if backend == "trt":
        from ..trt.session import TrtSession
        return TrtSession(path, **kwargs)
    if not path.is_file():
        raise RuntimeBackendError(f"{path}: no such ONNX file; fix: run `madtp-deploy export` first")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if backend == "ort-cuda" else ["CPUExecutionProvider"]
    return OrtSession(path, providers, **kwargs)
