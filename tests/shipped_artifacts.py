"""Session fixtures shared across test folders (imported by their conftest.py files)."""

import pytest

import madtp_deploy
from madtp_deploy.onnx.export import export_model


_MADE = {}  # each conftest that imports the fixture registers its own copy: export once for all


@pytest.fixture(scope="session")
def shipped_onnx(tmp_path_factory):
    """The shipped model (invariant mode) and its dynamic image and text graphs exactly as the
    exporter writes them: before constant folding, not validated (tests/onnx validates)."""
    if "shipped" not in _MADE:
        m = madtp_deploy.load("shipped", mode="invariant")
        out = tmp_path_factory.mktemp("shipped-onnx")
        export_model(m, out, "shipped", source="shipped", validate=False, fold=False, log=lambda *_: None)
        _MADE["shipped"] = (m, out)
    return _MADE["shipped"]
