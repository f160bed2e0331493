"""Each peer exported to ONNX (static shapes) and validated against eager by the export's own check."""

import json

import pytest

import madtp_deploy
from madtp_deploy import peers
from madtp_deploy.onnx.export import export_model

from ..conftest import TINY


@pytest.mark.parametrize("method,knob", [("tome", 5), ("topk", 0.5), ("lowres", (3, 2))])
def test_export_matches_eager(tmp_path, method, knob):
    p = peers.build(method, madtp_deploy.load(TINY), knob)
    written = export_model(p, tmp_path, method, source="test", encoders=("image",), batch_sizes=(1, 3),
                           log=lambda *_: None)
    path, = [f for f in written if f.suffix == ".onnx"]
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["validation"]["passed"] and side["model"]["mode"] == p.mode
    assert all(c["max_abs_diff"] < 1e-4 for c in side["validation"]["cases"])
