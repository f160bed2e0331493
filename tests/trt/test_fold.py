"""Constant folding (madtp_deploy.onnx.fold) keeps the exported graph's outputs, drops nodes."""

import shutil

import numpy as np
import onnx

from madtp_deploy.onnx import io as onnx_io
from madtp_deploy.onnx.fold import fold_file
from madtp_deploy.runtime import open_session


def test_fold_keeps_outputs_on_inputs_that_prune_differently(dynamic_image, tmp_path):
    m, path = dynamic_image
    folded = tmp_path / "folded.onnx"
    counts = fold_file(path, folded)
    shutil.copy(path.with_suffix(".json"), folded.with_suffix(".json"))  # sessions read the IO contract there
    assert counts["nodes_after"] < 0.8 * counts["nodes_before"]
    assert len(onnx.load(str(folded)).graph.node) == counts["nodes_after"]
    assert not [n for n in onnx.load(str(folded)).graph.node if n.op_type == "Constant"]
    io = onnx_io.encoder_io(m, "image")
    inputs = io.example(m.spec, 8, seed=4)
    before, after = open_session(path), open_session(folded)
    kept = []
    for idx in ([0], [1], [2], list(range(8))):
        x = {"pixels": inputs["pixels"][idx].numpy()}
        a, b = before.run(x), after.run(x)
        assert np.array_equal(a["kept"], b["kept"])
        np.testing.assert_array_equal(a["embeds"], b["embeds"])  # folding precomputes, it does not reorder
        kept.append(tuple(a["kept"][0]))
    assert len(set(kept[:3])) > 1, "the inputs must prune differently"
