import pytest
import torch

import madtp_deploy
from madtp_deploy.data.dataset import load, tokenizer_for
from madtp_deploy.data.retrieval import RetrievalSplit
from madtp_deploy.evaluate import evaluate, recalls


def test_recalls_on_a_known_similarity():
    split = RetrievalSplit(None, [None] * 3, ["a", "b", "c", "d"], [0, 1, 2, 2], [[0], [1], [2, 3]])
    img = torch.eye(3)
    txt = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0], [0, 0.9, 0.1]])
    r = recalls(img, txt, split)
    # image 1 -> best caption is 2 (image 2's): miss at 1; image 2 -> caption 1 first: miss
    assert r["txt_r1"] == pytest.approx(100 / 3) and r["txt_r5"] == 100.0
    # captions: 0 ok, 1 -> image 2 (wrong), 2 -> image 1 (wrong), 3 -> image 1 (wrong)
    assert r["img_r1"] == 25.0


def test_evaluate_reports_gflops_and_kept(scenes_dir):
    m = madtp_deploy.load("clip-tiny-test", mode="invariant", temperature=3.0)
    split = load(scenes_dir, "test")
    r = evaluate(m, split, tokenizer_for(scenes_dir, m.spec), batch_size=8)
    assert 0 < r["gflops_per_pair"] < r["gflops_dense_per_pair"] and r["gflops_reduction"] > 0
    assert len(r["kept_image_per_layer"]) == 2 and r["gflops_image"]["min"] <= r["gflops_image"]["max"]
    dense = evaluate(madtp_deploy.load("clip-tiny-test"), split, tokenizer_for(scenes_dir, m.spec), 8)
    assert abs(dense["gflops_reduction"]) < 1e-9


def test_a_gallery_ranks_each_query_among_its_own_fold_only():
    from madtp_deploy.errors import UsageError
    from madtp_deploy.evaluate import gallery_ranks

    # 4 images, one caption each; caption 0 is nearest image 2 (another fold), then image 0; image 2 is
    # nearer caption 0 than its own caption 2
    split = RetrievalSplit(None, [None] * 4, list("abcd"), [0, 1, 2, 3], [[0], [1], [2], [3]])
    img = torch.eye(4)
    txt = torch.eye(4)
    txt[0] = torch.tensor([0.5, 0, 1.0, 0])
    txt[2] = torch.tensor([0, 0, 0.8, 0.6])
    whole_txt, whole_img = gallery_ranks(img, txt, split)
    assert whole_img.tolist() == [1, 0, 0, 0] and whole_txt.tolist() == [0, 0, 1, 0]
    txt_r, img_r = gallery_ranks(img, txt, split, 2)
    # folds {0, 1} and {2, 3}: image 2 and caption 0 never meet, so both rank first
    assert img_r.tolist() == [0, 0, 0, 0] and txt_r.tolist() == [0, 0, 0, 0]
    with pytest.raises(UsageError, match="divisor of 4"):
        gallery_ranks(img, txt, split, 3)
