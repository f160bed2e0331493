"""`open_session(path, backend=...)` -> Session with run(inputs: dict[str, np.ndarray]) -> dict.

Every session ignores input keys its graph does not take and returns arrays it does not reuse.
Backends: torch (eager), ort / ort-cuda (an exported .onnx), aoti (an AOTInductor .pt2 from
`export --format aoti`), trt (a TensorRT engine from `madtp-deploy build`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import RuntimeBackendError

BACKENDS = ("torch", "ort", "ort-cuda", "aoti", "trt")


class Session(Protocol):
    backend: str
    input_names: list[str]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class OrtSession:
    def __init__(self, path: Path, providers: list[str], threads: int | None = None, spinning: bool = True):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # constant folding warns about CastLike nodes it cannot fold
        if threads:
            opts.intra_op_num_threads = threads
        if not spinning:  # idle pool threads otherwise spin and steal cores from another session
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.backend = "ort-cuda" if "CUDAExecutionProvider" in providers else "ort"
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        if providers[0] not in self.session.get_providers():  # ORT falls back silently: refuse instead
            raise RuntimeBackendError(f"{path}: onnxruntime did not enable {providers[0]} "
                                      f"(active: {self.session.get_providers()}); fix: install the [gpu] extra "
                                      f"in an environment without onnxruntime, on a machine with CUDA")
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._check = _input_check(Path(path))

    def run(self, inputs):
        feeds = {k: inputs[k] for k in self.input_names}  # extras ignored
        if self._check is not None:
            self._check(feeds)
        outs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outs))


def _input_check(path: Path):
    """The eager model's input checks (NaN pixels, wrong sizes, 0-255 data, text without EOT or
    [CLS]) for a CLIP or BLIP retrieval encoder graph, from the spec in its sidecar; None where there
    is no such sidecar."""
    import json

    from ..onnx.io import encoder_io
    from ..specs import spec_from_dict

    try:
        side = json.loads(path.with_suffix(".json").read_text())
        spec = spec_from_dict(side["model"]["spec"])
        io = encoder_io(spec, side["encoder"])
    except Exception:  # noqa: BLE001 - no sidecar, or not an encoder's (NLVR2): nothing to check against
        return None
    return lambda feeds: io.check(spec, feeds)


class TorchSession:
    """Eager PyTorch behind the same interface; `source` is anything madtp_deploy.load accepts."""

    def __init__(self, source, encoder: str, mode: str = "reference", temperature: float | None = None,
                 model=None):
        from ..api import load
        from ..onnx.io import encoder_io

        self.backend = "torch"
        self.model = model if model is not None else load(source, mode=mode, temperature=temperature)
        self.io = encoder_io(self.model, encoder)
        self.input_names = self.io.input_names

    def run(self, inputs):
        return self.io.eager(self.model, self.io.feeds(inputs))


def available_backends() -> dict[str, str | None]:
    """backend -> None if usable here, else the reason it is not."""
    import onnxruntime as ort

    out = {"torch": None, "ort": None, "aoti": None}
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
        from ..aoti import AotiSession
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
    try:
        return OrtSession(path, providers, **kwargs)
    except RuntimeBackendError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime's load errors
        raise RuntimeBackendError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0][:200]}); "
                                  f"fix: re-export") from None
