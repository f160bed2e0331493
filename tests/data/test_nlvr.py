"""NLVR2 annotations, the generated NLVR-style task, and BLIP NLVR2 training / evaluation."""

import json

import pytest
import torch
from PIL import Image

import madtp_deploy
from madtp_deploy.data import nlvr
from madtp_deploy.data.bert_tokenizer import BlipTokenizer
from madtp_deploy.errors import DataError


@pytest.fixture(scope="module")
def nlvr_dir(tmp_path_factory):
    return nlvr.generate(tmp_path_factory.mktemp("nlvr"), n_train=48, n_val=16, n_test=16, seed=3)


def _truth(sentence: str, pair) -> bool:
    """An independent reading of a generated statement against the scene it was drawn from."""
    w = sentence.split()
    if w[-1] == "other":
        side = ("left", "right").index(w[1])
        return len(pair[side]) > len(pair[1 - side])
    colour, kind = w[-2], w[-1]
    has = [any(s.colour == colour and s.kind == kind for s in shapes) for shapes in pair]
    if w[0] == "both":
        return all(has)
    if w[0] == "neither":
        return not any(has)
    return has[("left", "right").index(w[1])]


def test_generated_task_is_balanced_true_and_deterministic(nlvr_dir, tmp_path):
    s = nlvr.load(nlvr_dir, "train")
    assert len(s) == 48 and sum(s.labels) == 24
    kinds = ["more" if "more" in w else w.split()[0] for w in s.sentences]
    for kind in ("the", "both", "neither", "more"):  # balanced within each template: text alone says nothing
        labels = [y for k, y in zip(kinds, s.labels) if k == kind]
        assert len(labels) == 12 and sum(labels) == 6, kind
    again = nlvr.generate(tmp_path / "again", n_train=48, n_val=16, n_test=16, seed=3)
    assert (again / "nlvr_train.json").read_text() == (nlvr_dir / "nlvr_train.json").read_text()
    a0, a1 = s.pixels(32, range(2))
    assert a0.shape == (2, 3, 32, 32) and not torch.equal(a0, a1)
    tok = BlipTokenizer(nlvr_dir)
    assert tok.enc_id == 63 and tok.dec_id == 62  # as BLIP's last two ids, for blip-*-tiny (vocab 64)
    ids, mask = tok(s.sentences)
    assert (ids[:, 0] == 63).all() and not (ids == 2).any()  # [ENC] first; no [UNK] (id 2): every word known


def test_statements_are_true_of_their_scenes():
    import random

    rng = random.Random(0)
    for _ in range(300):
        pair = [nlvr._placed(rng, rng.randint(1, 3)) for _ in range(2)]
        sentence, truth = nlvr._statement(rng, pair)
        assert _truth(sentence, pair) == truth, sentence


def _write(tmp_path, entries, images=("a.png", "b.png")):
    for name in images:
        Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / name)
    (tmp_path / "nlvr_dev.json").write_text(json.dumps(entries))
    return tmp_path / "nlvr_dev.json"


def test_reads_blip_nlvr2_annotations(tmp_path):
    f = _write(tmp_path, [{"images": ["a.png", "b.png"], "sentence": "The left image has TWO dogs!", "label": "True"},
                          {"images": ["b.png", "a.png"], "sentence": "No dogs.", "label": "False"}])
    s = nlvr.load(tmp_path, "val")  # val is nlvr_dev.json, as BLIP names it
    assert s.annotation == f and s.labels == [1, 0]
    assert s.sentences == ["the left image has two dogs", "no dogs"]  # the reference's pre_caption
    assert s.images[1] == (tmp_path / "b.png", tmp_path / "a.png")


@pytest.mark.parametrize("entry, expect", [
    ({"images": ["a.png"], "sentence": "x", "label": "True"}, "exactly two"),
    ({"images": ["a.png", "b.png"], "sentence": " ! ", "label": "True"}, "empty sentence"),
    ({"images": ["a.png", "b.png"], "sentence": "x", "label": "maybe"}, "field 'label'"),
    ({"images": ["a.png", "zz.png"], "sentence": "x", "label": "True"}, "zz.png not found"),
    ({"sentence": "x", "label": "True"}, "'images', 'sentence' or 'label' missing"),
])
def test_bad_entries_name_the_entry(tmp_path, entry, expect):
    _write(tmp_path, [entry])
    with pytest.raises(DataError, match=r"nlvr_dev.json\[0\]: .*" + expect.replace("(", r"\(")):
        nlvr.load(tmp_path, "val")


def test_missing_split_names_the_fix(tmp_path):
    with pytest.raises(DataError, match="no nlvr_test.json.*fix"):
        nlvr.load(tmp_path, "test")


def test_training_runs_compresses_and_reloads(nlvr_dir, tmp_path):
    from madtp_deploy.train import loop
    from madtp_deploy.train.blip_nlvr import HOOKS, evaluate, tokenizer_for

    r = loop.train(loop.TrainConfig(data=str(nlvr_dir), output=str(tmp_path / "run"), init="blip-nlvr-tiny",
                                    reduce=0.3, epochs=1, batch_size=16, weight_decay=0.05, mode="invariant",
                                    control_every=1), HOOKS, log=lambda *_: None)
    assert r["temperature"] > 0 and r["gflops_current"] < r["gflops_dense"]
    m = madtp_deploy.load(tmp_path / "run" / "madtp.pt", mode="invariant")
    assert m.temperature == r["temperature"]
    e = evaluate(m, nlvr.load(nlvr_dir, "test"), tokenizer_for(nlvr_dir), batch_size=8)
    assert 0 <= e["accuracy"] <= 100 and e["instances"] == 16
    assert e["gflops"] < e["gflops_dense"] and len(e["kept_image_per_layer"]) == m.spec.vision_layers


def test_cli_make_data_and_eval_dispatch_on_nlvr(nlvr_dir, tmp_path):
    from typer.testing import CliRunner

    from madtp_deploy.cli import app

    r = CliRunner().invoke(app, ["eval", "--model", "blip-nlvr-tiny", "--data", str(nlvr_dir), "--split", "test",
                                 "--batch-size", "8", "--temperature", "5", "--json", str(tmp_path / "e.json")],
                           terminal_width=200)
    assert r.exit_code == 0, r.output
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["instances"] == 16 and e["gflops"] < e["gflops_dense"] and "accuracy" in r.output
    r = CliRunner().invoke(app, ["make-data", "--task", "nlvr", "--output", str(tmp_path / "d"), "--train", "8",
                                 "--val", "8", "--test", "0"])
    assert r.exit_code == 0, r.output
    assert len(nlvr.load(tmp_path / "d", "val")) == 8
    from PIL import Image
    assert Image.open(next((tmp_path / "d" / "images").glob("*.png"))).size == (32, 32)  # the task's default


def test_cli_make_data_image_size_reaches_the_images(tmp_path):
    """--image-size draws the pairs at that side (blip-nlvr-deep64 wants 64 px); a bug that dropped the
    option would leave the 32 px default."""
    from PIL import Image
    from typer.testing import CliRunner

    from madtp_deploy.cli import app

    for task, size in (("nlvr", 64), ("scenes", 48)):
        out = tmp_path / task
        r = CliRunner().invoke(app, ["make-data", "--task", task, "--output", str(out), "--train", "2", "--val", "1",
                                     "--test", "1", "--image-size", str(size)])
        assert r.exit_code == 0, r.output
        sizes = {Image.open(f).size for f in (out / "images").glob("*.png")}
        assert sizes == {(size, size)}, (task, sizes)
