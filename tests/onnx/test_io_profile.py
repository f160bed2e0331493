"""The TensorRT optimization profile an IO contract gives (onnx/io.py EncoderIO.trt_profile)."""

import pytest

from madtp_deploy.errors import UsageError
from madtp_deploy.onnx.io import encoder_io
from madtp_deploy.specs import get_spec


def test_text_lengths_on_a_static_text_graph_name_its_fixed_length():
    """Bug caught: `build --text-lengths` on a static text graph said "need 1 <= min <= opt <= max <= 1"."""
    spec = get_spec("clip-tiny-test")
    io = encoder_io(spec, "text", static=True)
    with pytest.raises(UsageError, match=r"a static text graph has a fixed length of 16 tokens; fix: drop --text-lengths"):
        io.trt_profile((1, 8, 32), (4, 8, 16))
    shapes = io.trt_profile((1, 8, 32))
    assert shapes["input_ids"] == ((1, 16), (8, 16), (32, 16))
    dyn = encoder_io(spec, "text").trt_profile((1, 8, 32), (4, 8, 16))
    assert dyn["input_ids"] == ((1, 4), (8, 8), (32, 16))
    with pytest.raises(UsageError, match="image graph has no text length"):
        encoder_io(spec, "image").trt_profile((1, 8, 32), (4, 8, 16))
