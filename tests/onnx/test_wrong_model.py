"""A graph that prunes differently from eager is a wrong model: export writes nothing and exits 1."""

import numpy as np
import pytest
from typer.testing import CliRunner

import madtp_deploy
from madtp_deploy.cli import app
from madtp_deploy.errors import WrongModelError
from madtp_deploy.onnx import io as onnx_io
from madtp_deploy.onnx.export import export_model

TINY = "clip-tiny-test"


def _shift_eager(monkeypatch, name: str, delta):
    """Make eager PyTorch answer differently from the graph it exported: the situation of an exporter
    (or model) bug, planted on the eager side so the graph itself stays what the exporter wrote."""
    eager = onnx_io.EncoderIO.eager

    def shifted(self, model, inputs):
        out = eager(self, model, inputs)
        out[name] = out[name] + delta
        return out
    monkeypatch.setattr(onnx_io.EncoderIO, "eager", shifted)


def test_a_different_keep_decision_fails_the_export_and_writes_nothing(monkeypatch, tmp_path):
    """Bug caught: `export` exited 0 when the graph's `kept` differed from eager's (validate.py logged
    "artifact is kept")."""
    m = madtp_deploy.load(TINY, mode="packed", temperature=3.0)
    _shift_eager(monkeypatch, "kept", 1)
    with pytest.raises(WrongModelError, match=r"keep decisions differ from eager.*field kept"):
        export_model(m, tmp_path, "tiny", source=TINY, log=lambda *_: None, encoders=("image",), fold=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_cli_exits_1_for_a_wrong_model(monkeypatch, tmp_path):
    _shift_eager(monkeypatch, "kept", 1)
    r = CliRunner().invoke(app, ["export", "--model", TINY, "--temperature", "3", "--output", str(tmp_path / "o")])
    assert r.exit_code == 1, r.output
    assert "keep decisions differ" in r.output and "Traceback" not in r.output
    assert not list((tmp_path / "o").glob("*.onnx"))


def test_a_float_drift_alone_warns_and_keeps_the_artifact(monkeypatch, tmp_path):
    """The tolerance policy (optimum's): embeddings beyond atol with equal keep decisions are a warning."""
    m = madtp_deploy.load(TINY, mode="packed", temperature=3.0)
    _shift_eager(monkeypatch, "embeds", np.float32(1e-2))
    logs = []
    export_model(m, tmp_path, "tiny", source=TINY, log=logs.append, encoders=("image",), fold=False)
    assert (tmp_path / "tiny.image.onnx").is_file()
    assert any("WARNING" in line and "float drift" in line for line in logs)
