"""TensorRT 11 path, thin over polygraphy, imported lazily. NOT RUN HERE: TensorRT cannot be installed
on the development machines (its wheels fetch libraries from NVIDIA's index). Written against the
TRT 11 Python API and polygraphy 0.53 as documented; strongly typed networks only, so precision is
chosen in the ONNX (fp16 via ModelOpt AutoCast, INT8/FP8 as explicit Q/DQ), never with builder flags.
"""

from __future__ import annotations

from pathlib import Path


def build_engine(onnx_path: Path, engine_path: Path, *, min_batch: int = 1, opt_batch: int = 8,
                 max_batch: int = 32, input_shape: tuple[int, ...] | None = None, input_name: str = "pixels"):
    """ONNX -> serialized engine with one optimization profile over the batch dimension."""
    from ..files import atomic
    from polygraphy.backend.trt import (CreateConfig, Profile, engine_from_network, network_from_onnx_path,
                                        save_engine)

    rest = tuple(input_shape or ())
    profile = Profile().add(input_name, (min_batch, *rest), (opt_batch, *rest), (max_batch, *rest))
    network = network_from_onnx_path(str(onnx_path), strongly_typed=True)
    engine = engine_from_network(network, config=CreateConfig(profiles=[profile]))
    with atomic(engine_path) as tmp:
        save_engine(engine, str(tmp))
    return engine_path


class TrtSession:
    """Same interface as the onnxruntime session; polygraphy's TrtRunner allocates the data-dependent
    intermediate shapes itself (IOutputAllocator)."""

    def __init__(self, engine_path, **_):
        from polygraphy.backend.common import BytesFromPath
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        self.backend = "trt"
        self._runner = TrtRunner(EngineFromBytes(BytesFromPath(str(engine_path))))
        self._runner.activate()
        self.input_names = list(self._runner.get_input_metadata().keys())

    def run(self, inputs):
        return dict(self._runner.infer(inputs))
