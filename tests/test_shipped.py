"""The shipped model (issue 21): deep, compressed, and `eval` reproduces the metrics recorded beside it."""

import hashlib
import json

import pytest

import madtp_deploy
from madtp_deploy.api import SHIPPED, SHIPPED_NAMES
from madtp_deploy.data import dataset, scenes
from madtp_deploy.evaluate import evaluate

META = json.loads(SHIPPED.with_suffix(".json").read_text())


def test_shipped_is_deep_small_and_compressed():
    assert SHIPPED.stat().st_size < 20 * 2**20
    m = madtp_deploy.load("shipped")
    assert m.temperature == pytest.approx(META["temperature"]) and m.spec.name == "madtp-clip-deep"
    assert m.spec.vision_layers >= 8 and m.spec.text_layers >= 8
    assert META["metrics"]["gflops_reduction"] >= 0.7


@pytest.mark.parametrize("name", ["shipped", "shipped-dense"])
def test_sidecar_names_the_file_it_describes(name):
    """A sidecar left behind by a re-trained checkpoint (or the reverse) is caught here."""
    path = SHIPPED_NAMES[name]
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["file"] == path.name and meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_dense_start_and_test_model_load():
    dense = madtp_deploy.load("shipped-dense")
    assert dense.temperature == 0 and dense.spec == madtp_deploy.load("shipped").spec
    tiny = madtp_deploy.load("shipped-tiny")  # the 4-layer model shipped before issue 21 (tests use it)
    assert tiny.spec.name == "madtp-clip-tiny" and tiny.temperature > 0


def test_eval_reproduces_recorded_metrics(tmp_path):
    root = scenes.generate(tmp_path / "scenes")  # the recipe's dataset: defaults, seed 0
    m = madtp_deploy.load("shipped", mode="invariant")
    r = evaluate(m, dataset.load(root, "test"), dataset.tokenizer_for(root, m.spec), batch_size=64)
    want = META["metrics"]
    for k in ("txt_r1", "txt_r5", "img_r1", "img_r5"):
        assert r[k] == pytest.approx(want[k], abs=0.05), k
    assert r["gflops_per_pair"] == pytest.approx(want["gflops_per_pair"], rel=1e-4)
    # >= 70% of the GFLOPs removed, against the --reduce 0 control trained as long: on these 500 images 0.6 / 2.7
    # points of recall@1 (issue 21's bar, 2, is judged on 5,000 test images over five seeds: -1.6 / -1.8,
    # docs/RESULTS.md). A re-recorded model that costs more than 5 points, or a record without its control, fails.
    control = META["control_metrics"]
    assert r["gflops_reduction"] >= 0.7
    assert r["txt_r1"] >= control["txt_r1"] - 5 and r["img_r1"] >= control["img_r1"] - 5
