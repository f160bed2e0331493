import pytest

from ..shipped_artifacts import shipped_onnx  # noqa: F401 - a session fixture, shared


@pytest.fixture(scope="session")
def dynamic_image(shipped_onnx):  # noqa: F811
    """The test model and its dynamic-shape image graph, unfolded."""
    m, out = shipped_onnx
    return m, out / "shipped.image.onnx"
