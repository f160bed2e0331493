"""A TensorRT engine behind the runtime Session interface (polygraphy's TrtRunner). NOT RUN HERE.

Like the onnxruntime session it ignores input keys the engine does not take, and it returns copies:
TrtRunner.infer returns buffers it reuses on the next call. polygraphy's runner allocates outputs
whose shapes depend on values itself (IOutputAllocator).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import RuntimeBackendError
from ..files import read_json


class TrtSession:
    def __init__(self, engine_path, runner=None, **_):
        """`runner`: an activated object with get_input_metadata() and infer(feed) (tests pass a fake)."""
        self.backend = "trt"
        if runner is None:
            runner = _open_runner(Path(engine_path))
        self._runner = runner
        self.input_names = list(runner.get_input_metadata().keys())

    def run(self, inputs):
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise RuntimeBackendError(f"TensorRT engine: input(s) {', '.join(missing)} missing; fix: pass "
                                      f"{', '.join(self.input_names)}")
        feed = {n: np.ascontiguousarray(inputs[n]) for n in self.input_names}  # polygraphy rejects extras
        return {k: np.array(v, copy=True) for k, v in self._runner.infer(feed).items()}


def _open_runner(path: Path):
    from .build import compute_capability, engine_mismatch, trt_version

    if path.suffix == ".onnx":
        raise RuntimeBackendError(f"{path}: a TensorRT session runs an engine, not an ONNX file; fix: "
                                  f"`madtp-deploy build {path}` and open the .plan it writes")
    if not path.is_file():
        raise RuntimeBackendError(f"{path}: no such engine file; fix: build it with `madtp-deploy build MODEL.onnx`")
    side = read_json(path.with_suffix(".json"), RuntimeBackendError, "engine sidecar missing",
                     "rebuild with `madtp-deploy build`, which writes it")
    why = engine_mismatch(side, trt_version(), compute_capability())
    if why:
        raise RuntimeBackendError(f"{path}: {why}")
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    runner = TrtRunner(EngineFromBytes(BytesFromPath(str(path))))
    runner.activate()
    return runner
