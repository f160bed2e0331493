"""scripts/gap.py and evaluate.paired_difference: issue 21's gap (compressed - control) with its two noises."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import madtp_deploy
from madtp_deploy.evaluate import paired_difference

ROOT = Path(__file__).parents[1]
_spec = importlib.util.spec_from_file_location("gap", ROOT / "scripts" / "gap.py")
gap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gap)


def test_paired_difference_is_the_recall_difference_over_the_same_queries():
    # hits a: 1 0 1 1, b: 0 0 1 0 -> +50 points
    mean, sd = paired_difference([0, 9, 0, 0], [9, 9, 0, 9])
    assert mean == 50.0 and 0 < sd < 50
    assert paired_difference([0, 3, 7], [0, 3, 7]) == (0.0, 0.0)
    assert paired_difference([3, 3], [6, 6], k=5) == (100.0, 0.0)  # recall@5: every query a hit for a only


def test_several_pairs_resample_their_shared_queries_jointly():
    # two seeds whose per-query differences cancel exactly: the mean gap is 0 on every resample of the
    # queries; resampling each seed's queries on its own would report noise that is not there
    a = [[0, 9, 0, 9], [9, 0, 9, 0]]
    b = [[9, 0, 9, 0], [0, 9, 0, 9]]
    assert paired_difference(a, b) == (0.0, 0.0)
    mean, _ = paired_difference([[0, 0, 9, 9], [0, 9, 9, 9]], [[9, 9, 9, 9], [9, 9, 9, 9]])
    assert mean == pytest.approx(37.5)  # (50 + 25) / 2


def _result(txt_ranks, img_ranks, removed=0.0, t=0.0):
    r = {"txt": txt_ranks, "img": img_ranks}
    return {"ranks": r, "txt_r1": 100 * sum(x < 1 for x in txt_ranks) / len(txt_ranks),
            "img_r1": 100 * sum(x < 1 for x in img_ranks) / len(img_ranks), "gflops_reduction": removed,
            "temperature": t}


def test_gaps_per_pair_and_their_mean_with_test_and_seed_noise():
    c0 = _result([0, 0, 0, 1], [0, 0, 1, 1, 0, 0, 0, 0])          # 75 / 75
    x0 = _result([0, 0, 1, 1], [0, 0, 1, 1, 0, 0, 0, 1], 0.7, 2.5)  # 50 / 62.5
    c1 = _result([0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0])          # 100 / 100
    x1 = _result([0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0, 0], 0.72, 2.7)  # 75 / 100
    rec = gap.gaps([("0", c0, x0), ("1", c1, x1)])
    p0, p1 = rec["pairs"]
    assert p0["gap"]["txt_r1"]["mean"] == -25.0 and p0["gap"]["img_r1"]["mean"] == -12.5
    assert p1["gap"]["txt_r1"]["mean"] == -25.0 and p1["gap"]["img_r1"]["mean"] == 0.0
    m = rec["mean"]
    assert m["gap"]["txt_r1"]["mean"] == -25.0 and m["gap"]["img_r1"]["mean"] == pytest.approx(-6.25)
    assert m["removed"] == pytest.approx(0.71) and m["control"]["txt_r1"] == 87.5
    # the seeds' noise: std of (-12.5, 0) / sqrt(2) = 6.25; none where the seeds agree
    assert m["gap"]["img_r1"]["sd_seeds"] == pytest.approx(6.25) and m["gap"]["txt_r1"]["sd_seeds"] == 0.0
    g = m["gap"]["img_r1"]
    assert g["sd"] == pytest.approx((g["sd_test"] ** 2 + g["sd_seeds"] ** 2) ** 0.5) and g["sd_test"] > 0
    assert gap.gaps([("0", c0, x0)])["mean"]["gap"]["txt_r1"]["sd_seeds"] is None
    # --levels: the pairs are different settings, whose mean means nothing: no mean row
    rows = gap.table({"data": "d", "queries": {"images": 4, "captions": 8}, "gallery": 4, **rec})
    assert rows[-1].startswith("| mean of 2 |")
    rows = gap.table({"data": "d", "queries": {"images": 4, "captions": 8}, "gallery": 4, "levels": True, **rec})
    assert rows[-1].startswith("| 1 |")


def _save(model, path):
    torch.save({"model": model.state_dict(), "temperature": model.temperature, "spec": model.spec.to_dict()}, path)
    return str(path)


def test_the_script_measures_each_pair_on_the_test_split_and_writes_its_section(scenes_dir, tmp_path):
    from madtp_deploy.data import dataset
    from madtp_deploy.evaluate import evaluate

    control = _save(madtp_deploy.load("clip-tiny-test", temperature=0.0), tmp_path / "c.pt")
    pruned = _save(madtp_deploy.load("clip-tiny-test", temperature=3.0), tmp_path / "x.pt")
    (tmp_path / "RESULTS.md").write_text("# r\n\n<!-- gap-t:begin -->\nold\n<!-- gap-t:end -->\ntail\n")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gap.py"), "--data", str(scenes_dir), "--tag", "gap-t",
                        "--gallery", "8", "--out", str(tmp_path), "--pairs", f"a={control}:{pruned},b={control}:{control}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / "results-gap-t.json").read_text())
    split = dataset.load(scenes_dir, "test")
    want, whole = {}, {}
    for path in (control, pruned):  # recall within galleries of 8 of the 24 test images: not the whole split's
        m = madtp_deploy.load(path, mode="invariant")
        want[path] = evaluate(m, split, dataset.tokenizer_for(scenes_dir, m.spec), batch_size=64, gallery=8)
        whole[path] = evaluate(m, split, dataset.tokenizer_for(scenes_dir, m.spec), batch_size=64)
    assert want[control]["txt_r1"] != whole[control]["txt_r1"] and rec["gallery"] == 8
    assert rec["pairs"][0]["control"]["txt_r1"] == pytest.approx(want[control]["txt_r1"])
    a, b = rec["pairs"]
    for k in ("txt_r1", "img_r1"):
        assert a["gap"][k]["mean"] == pytest.approx(want[pruned][k] - want[control][k])
        assert b["gap"][k] == {"mean": 0.0, "sd_test": 0.0}  # a model against itself
    assert a["removed"] == pytest.approx(want[pruned]["gflops_reduction"]) and a["removed"] > 0
    assert rec["queries"] == {"images": 24, "captions": len(split.txt2img)}
    text = (tmp_path / "RESULTS.md").read_text()
    assert "old" not in text and text.endswith("<!-- gap-t:end -->\ntail\n") and "| mean of 2 |" in text


def test_a_malformed_pair_is_a_one_line_usage_error(scenes_dir, tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gap.py"), "--data", str(scenes_dir), "--tag", "t",
                        "--out", str(tmp_path), "--pairs", "a=only-one.pt"], capture_output=True, text=True)
    assert r.returncode == 2 and "--pairs" in r.stderr and "CONTROL:COMPRESSED" in r.stderr
    assert "Traceback" not in r.stderr and not list(tmp_path.iterdir())


def test_on_nlvr2_the_gap_is_the_accuracy_difference_over_the_same_pairs(tmp_path):
    """An NLVR2 dataset: each pair's rank of the true answer is 0 when correct, so the gap is the accuracy
    difference on the same pairs (a bug that compared recalls, or paired pairs out of order, moves it)."""
    from madtp_deploy.data import nlvr
    from madtp_deploy.train.blip_nlvr import evaluate, tokenizer_for

    from madtp_deploy.train.blip_nlvr import run_nlvr

    data = nlvr.generate(tmp_path / "nlvr", n_train=4, n_val=4, n_test=32, seed=5)
    split = nlvr.load(data, "test")
    torch.manual_seed(0)
    base = madtp_deploy.load("blip-nlvr-tiny", mode="invariant")
    # random weights answer "true" to every pair; centring the head's margin on its median makes the dense
    # answers split, so that pruning flips some of them
    logits = run_nlvr(base, *split.pixels(32), *tokenizer_for(data)(split.sentences), 64)[0]
    with torch.no_grad():
        base.cls_head[2].bias[1] -= (logits[:, 1] - logits[:, 0]).median()
    control, pruned = tmp_path / "c.pt", tmp_path / "x.pt"
    for path, t in ((control, 0.0), (pruned, 5.0)):
        base.temperature = t
        _save(base, path)
    (tmp_path / "RESULTS.md").write_text("<!-- gap-n:begin -->\n<!-- gap-n:end -->\n")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gap.py"), "--data", str(data), "--tag", "gap-n",
                        "--out", str(tmp_path), "--levels", "--pairs", f"a={control}:{pruned},b={control}:{control}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / "results-gap-n.json").read_text())
    want = {}
    for path in (control, pruned):
        m = madtp_deploy.load(str(path), mode="invariant")
        want[path] = evaluate(m, split, tokenizer_for(data), batch_size=64, want_ranks=True)
        assert 100 * sum(x < 1 for x in want[path]["ranks"]["pairs"]) / 32 == pytest.approx(want[path]["accuracy"])
    assert want[control]["ranks"] != want[pruned]["ranks"]  # the pruned model answers some pairs differently
    a, b = rec["pairs"]
    assert a["gap"]["accuracy"]["mean"] == pytest.approx(want[pruned]["accuracy"] - want[control]["accuracy"])
    assert a["gap"]["accuracy"]["sd_test"] > 0 and b["gap"]["accuracy"] == {"mean": 0.0, "sd_test": 0.0}
    assert a["removed"] == pytest.approx(want[pruned]["gflops_reduction"]) and a["removed"] > 0
    assert rec["task"] == "nlvr" and rec["queries"] == {"pairs": 32} and rec["gallery"] is None
    assert "| pair | control accuracy | compressed accuracy | removed (T) | Δ accuracy |" in r.stdout
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gap.py"), "--data", str(data), "--tag", "t",
                        "--gallery", "8", "--out", str(tmp_path / "none"), "--pairs", f"a={control}:{pruned}"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--gallery" in r.stderr and "Traceback" not in r.stderr
