import pytest

from madtp_deploy.errors import RuntimeBackendError
from madtp_deploy.runtime import available_backends, open_session


def test_unknown_backend():
    with pytest.raises(RuntimeBackendError, match="unknown"):
        open_session("x.onnx", backend="tvm")


def test_unavailable_backends_say_why():
    reasons = available_backends()
    assert reasons["ort"] is None and reasons["torch"] is None
    for name, path in (("ort-cuda", "x.onnx"), ("trt", "x.plan")):
        if reasons[name]:
            with pytest.raises(RuntimeBackendError, match="unavailable"):
                open_session(path, backend=name)


def test_trt_refuses_an_onnx_file_with_guidance():
    with pytest.raises(RuntimeBackendError, match="madtp-deploy build"):
        open_session("m.image.onnx", backend="trt")


def test_aoti_refuses_what_is_not_a_package(tmp_path):
    with pytest.raises(RuntimeBackendError, match="export --format aoti"):
        open_session(tmp_path / "m.image.onnx", backend="aoti")


def test_missing_onnx_file(tmp_path):
    with pytest.raises(RuntimeBackendError, match="no such ONNX file"):
        open_session(tmp_path / "absent.onnx", backend="ort")


def test_torch_session_runs(tmp_path):
    import numpy as np
    s = open_session("clip-tiny-test", backend="torch", encoder="image", temperature=3.0)
    out = s.run({"pixels": np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)})
    assert out["embeds"].shape == (2, 64) and out["kept"].shape == (2, 2)
