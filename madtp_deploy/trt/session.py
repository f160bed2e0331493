"""A TensorRT engine behind the runtime session interface (polygraphy's TrtRunner). NOT RUN HERE.

A `ContractSession` (runtime/base.py): its IO contract comes from the engine's sidecar (which
`madtp-deploy build` writes with the graph's `io`, `model`, `encoder` and `shapes`), so a missing
input is an InputError naming it, the model's input checks run, extra keys are ignored, and the
outputs are the contract's, in its order. It returns copies: TrtRunner.infer returns buffers it
reuses on the next call. polygraphy's runner allocates outputs whose shapes depend on values
itself (IOutputAllocator). The TensorRT version and compute capability the engine was built for
are checked against this machine's (the latter asked of the CUDA driver, not torch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import RuntimeBackendError
from ..files import read_json
from ..runtime.base import Contract, ContractSession


class TrtSession(ContractSession):
    backend = "trt"

    def __init__(self, engine_path, runner=None, **_):
        """`runner`: an activated object with get_input_metadata() and infer(feed) (tests pass a fake)."""
        path = Path(engine_path)
        if path.suffix == ".onnx":
            raise RuntimeBackendError(f"{path}: a TensorRT session runs an engine, not an ONNX file; fix: "
                                      f"`madtp-deploy build {path}` and open the .plan it writes")
        if runner is None and not path.is_file():
            raise RuntimeBackendError(f"{path}: no such engine file; fix: build it with `madtp-deploy build MODEL.onnx`")
        self.contract = Contract.from_sidecar(path)
        self._runner = runner if runner is not None else _open_runner(path)
        engine_inputs = sorted(self._runner.get_input_metadata().keys())
        if engine_inputs != sorted(self.contract.input_names):
            raise RuntimeBackendError(f"{path}: the engine takes {', '.join(engine_inputs)}, its sidecar's IO contract "
                                      f"{', '.join(self.contract.input_names)}; fix: rebuild it with `madtp-deploy build`")

    def _run(self, feeds):
        # polygraphy rejects extras; the contract has dropped them
        outs = self._runner.infer({n: np.ascontiguousarray(feeds[n]) for n in self.input_names})
        missing = [n for n in self.output_names if n not in outs]
        if missing:
            raise RuntimeBackendError(f"{self.contract.where}: the engine has no output(s) {', '.join(missing)} "
                                      f"(it returns {', '.join(outs)}); fix: rebuild it from the exported graph")
        return [np.array(outs[n], copy=True) for n in self.output_names]


def _open_runner(path: Path):
    from .build import compute_capability, engine_mismatch, trt_version

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
