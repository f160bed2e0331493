"""The shipped model: small, loads, and `eval` reproduces the metrics recorded beside it."""

import json

import pytest

import madtp_deploy
from madtp_deploy.api import SHIPPED
from madtp_deploy.data import dataset, scenes
from madtp_deploy.evaluate import evaluate

META = json.loads(SHIPPED.with_suffix(".json").read_text())


def test_shipped_is_small_and_compressed():
    assert SHIPPED.stat().st_size < 20 * 2**20
    m = madtp_deploy.load("shipped")
    assert m.temperature == pytest.approx(META["temperature"]) and m.spec.name == "madtp-clip-tiny"
    assert META["metrics"]["gflops_reduction"] >= 0.5


def test_eval_reproduces_recorded_metrics(tmp_path):
    root = scenes.generate(tmp_path / "scenes")  # the recipe's dataset: defaults, seed 0
    m = madtp_deploy.load("shipped", mode="invariant")
    r = evaluate(m, dataset.load(root, "test"), dataset.tokenizer_for(root, m.spec), batch_size=64)
    want = META["metrics"]
    for k in ("txt_r1", "txt_r5", "img_r1", "img_r5"):
        assert r[k] == pytest.approx(want[k], abs=0.5), k
    assert r["gflops_per_pair"] == pytest.approx(want["gflops_per_pair"], rel=2e-3)
    # within 2 points of recall@1 of its dense start, at >= 50% fewer GFLOPs
    dense = META["dense_start_metrics"]
    assert r["txt_r1"] >= dense["txt_r1"] - 2 and r["img_r1"] >= dense["img_r1"] - 2
