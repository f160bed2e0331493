"""BLIP retrieval: the scenes vocabulary, ITC + ITM + MAG loss, temperature control, checkpoints,
ITC and ITM-re-ranked recall, GFLOPs, and the CLI."""

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import madtp_deploy
from madtp_deploy import flops_blip
from madtp_deploy.data import dataset, scenes
from madtp_deploy.errors import DataError
from madtp_deploy.train import blip_retrieval as br
from madtp_deploy.train.blip_nlvr import write_checkpoint


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for this module: on the shared 2-core machine the tiny model's many small ops
    ran 7x slower with two spinning threads (docs/NOTES.md, training threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return scenes.generate(tmp_path_factory.mktemp("blip_scenes"), n_train=32, n_val=8, n_test=8, seed=2)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """One short compression run (reduce 0.3, the controller after every step)."""
    out = tmp_path_factory.mktemp("blip_run")
    r = br.train(br.BlipRetrievalConfig(str(data), str(out), reduce=0.3, epochs=2, batch_size=16, lr=1e-3,
                                        control_every=1), log=lambda *_: None)
    return out, r


def _batch(data, n=8):
    m = madtp_deploy.load("blip-retrieval-tiny", mode="invariant")
    split = dataset.load(data, "train")
    tok = br.tokenizer_for(data, m.spec)
    ids, mask = br.tokenize(tok, split, range(n))
    img_of = torch.tensor(split.txt2img[:n])
    return m, split.pixels(m.spec.image_size)[img_of], ids, mask, img_of, tok, split


def test_scenes_vocab_txt_tokenizes_every_caption_for_blip_tiny(data):
    """Bug caught: no vocab.txt, a vocabulary without the task's words ([UNK]), or one whose size puts
    [ENC] anywhere but id 63 (the tiny spec's last id)."""
    m, _, ids, mask, _, tok, split = _batch(data)
    assert tok.enc_id == m.spec.enc_id == 63 and len(tok) == m.spec.vocab_size
    all_ids, _ = br.tokenize(tok, split)
    assert (all_ids[:, 0] == 3).all() and not (all_ids == 2).any()  # [CLS] first (ITC); no [UNK]
    assert (data / "vocab.json").is_file()  # CLIP's vocabulary still written


def test_loss_terms_are_finite_and_gradients_reach_space_dict(data):
    """Bug caught: the MAG alignment term dropped or detached while pruning (space_dict gets no
    gradient from it), or the ITM term not reaching itm_head."""
    m, px, ids, mask, img_of, *_ = _batch(data)
    m.temperature = 2.0
    m.train()
    loss = br.retrieval_loss(m, px, ids, mask, img_of, generator=torch.Generator().manual_seed(0))
    for v in (loss.total, loss.itc, loss.itm, loss.align):
        assert torch.isfinite(v)
    assert loss.align > 0
    torch.testing.assert_close(loss.total, loss.itc + loss.itm + 0.1 * loss.align)
    (g_align,) = torch.autograd.grad(loss.align, m.space_dict, retain_graph=True)  # MAG's own gradient
    assert g_align.abs().sum() > 0
    loss.total.backward()
    assert m.space_dict.grad is not None and m.space_dict.grad.abs().sum() > 0
    assert m.itm_head.weight.grad.abs().sum() > 0 and m.temp.grad is not None


def test_hard_negatives_are_never_positives_and_follow_the_weights():
    """Bug caught: sampling without masking the row's own image's captions (a positive drawn as a
    negative), or ignoring the similarity weights (uniform draws)."""
    image_ids = torch.tensor([0, 0, 1, 2, 2, 3])
    positive = image_ids[:, None] == image_ids[None, :]
    w = torch.full((6, 6), 0.01)
    w[:, 3] = 5.0                                  # column 3 (image 2) is the hardest negative for most rows
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([br.hard_negatives(w, positive, g) for _ in range(200)])
    assert not positive[torch.arange(6).expand(200, -1), draws].any()
    assert (draws[:, 0] == 3).float().mean() > 0.8  # drawn in proportion to the weights
    lone = br.hard_negatives(torch.ones(2, 2), torch.ones(2, 2, dtype=torch.bool))
    assert lone.tolist() == [-1, -1]                 # no negative in the batch: no ITM negative row


def test_training_moves_gflops_toward_target_and_checkpoint_reloads(trained, data):
    """Bug caught: the controller not run (T stays at its initial value, GFLOPs far from target) or the
    checkpoint missing the temperature or spec (load gives a dense or different model)."""
    out, r = trained
    dense, target, cur = r["gflops_dense"], r["gflops_target"], r["gflops_current"]
    assert r["temperature"] > 0 and abs(cur - target) < abs(dense - target)
    assert len({h["temperature"] for h in r["history"]}) > 1  # moved during training
    assert all(h["align"] > 0 for h in r["history"])
    m = madtp_deploy.load(out / "madtp.pt")
    assert m.temperature == pytest.approx(r["temperature"]) and m.spec.name == "blip-retrieval-tiny"
    meta = json.loads((out / "model.json").read_text())
    assert meta["epoch"] == 1 and meta["gflops_current"] == pytest.approx(cur)


def test_checkpoint_round_trip_gives_the_same_embeddings(data, tmp_path):
    """Bug caught: a state dict key or the temperature lost on the way to disk and back."""
    m, px, ids, mask, *_ = _batch(data, 4)
    m.temperature = 3.0
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    write_checkpoint(m, tmp_path, 0, {})
    back = madtp_deploy.load(tmp_path / "madtp.pt", mode="invariant")
    with torch.no_grad():
        pairs = ((m.encode_image(px), back.encode_image(px)), (m.encode_text(ids, mask), back.encode_text(ids, mask)))
        for a, b in pairs:
            torch.testing.assert_close(a.embeds, b.embeds, rtol=0, atol=0)
            assert torch.equal(a.kept, b.kept)


def _brute_recall(i2t, t2i, img2txt, txt2img, k):
    """Independent of argsort: a query's rank is the number of candidates scoring above its best positive."""
    r_txt = sum(int((i2t[i] > i2t[i, caps].max()).sum()) < k for i, caps in enumerate(img2txt)) / len(img2txt)
    r_img = sum(int((t2i[j] > t2i[j, i]).sum()) < k for j, i in enumerate(txt2img)) / len(txt2img)
    return 100 * r_txt, 100 * r_img


@pytest.fixture(scope="module")
def evaluated(trained, data):
    m = madtp_deploy.load(trained[0] / "madtp.pt", mode="invariant")
    split = dataset.load(data, "test")
    tok = br.tokenizer_for(data, m.spec)
    return m, split, tok, br.evaluate(m, split, tok, batch_size=3, k=5)


def test_recall_equals_a_brute_force_recomputation(evaluated):
    """Bug caught: ITC recall from unnormalised embeddings, t2i read from the wrong matrix (i2t
    transposed instead of BLIP's separate text-to-image re-ranking), or recall@k off by one."""
    m, split, tok, r = evaluated
    px = split.pixels(m.spec.image_size)
    ids, mask = br.tokenize(tok, split)
    with torch.no_grad():
        cos = torch.nn.functional.normalize(m.encode_image(px).embeds, dim=-1) @ \
            torch.nn.functional.normalize(m.encode_text(ids, mask).embeds, dim=-1).t()
    enc = br.encode_all(m, px, ids, mask, batch_size=3)
    rr = br.itm_rerank(m, enc, ids, mask, k=5)
    # after re-ranking, candidates beyond the top 5 all score -100 (BLIP's rule): their order is a tie
    for name, (i2t, t2i), ks in (("recall_itc", (cos, cos.t()), (1, 5, 10)), ("recall_itm", (rr.i2t, rr.t2i), (1, 5))):
        for k in ks:
            want = _brute_recall(i2t, t2i, split.img2txt, split.txt2img, k)
            assert (r[name][f"txt_r{k}"], r[name][f"img_r{k}"]) == pytest.approx(want), (name, k)


def test_itm_rerank_rescores_exactly_the_top_k_with_match(evaluated):
    """Bug caught: re-ranked scores written to the wrong candidates, candidates outside the top k
    touched, the cosine not added, or stored image tokens that differ from re-encoding the image."""
    m, split, tok, _ = evaluated
    px = split.pixels(m.spec.image_size)
    ids, mask = br.tokenize(tok, split)
    enc = br.encode_all(m, px, ids, mask, batch_size=3)
    rr = br.itm_rerank(m, enc, ids, mask, k=3)
    cos = enc.cosine()
    for scores, sims, pair in ((rr.i2t, cos, lambda q, c: (q, c)), (rr.t2i, cos.t(), lambda q, c: (c, q))):
        for q in range(len(scores)):
            top = set(sims[q].topk(3).indices.tolist())
            for c in range(scores.shape[1]):
                if c not in top:
                    assert scores[q, c] == -100.0
                    continue
                i, j = pair(q, c)
                with torch.no_grad():
                    logit = m.match(px[i:i + 1], ids[j:j + 1], mask[j:j + 1]).logits[0, 1]
                assert scores[q, c].item() == pytest.approx((logit + sims[q, c]).item(), abs=1e-5)
    # image-to-text agrees with the model's own rerank (one batch of images)
    torch.testing.assert_close(rr.i2t, m.rerank(px, ids, mask, k=3), atol=1e-5, rtol=0)


def test_eval_reports_itc_and_itm_gflops_that_match_the_flop_counter(evaluated):
    """Bug caught: per-pair GFLOPs that drop vision_proj / text_proj / itm_head, count the ITM pass's
    cross-attention wrongly, or report the dense figure for a pruned model."""
    m, split, tok, r = evaluated
    px = split.pixels(m.spec.image_size)
    ids, mask = br.tokenize(tok, split)
    counted_img, counted_txt, counted_itm, kept = [], [], [], []
    for i in range(len(px)):
        n = int(mask[2 * i].sum())
        c = FlopCounterMode(display=False)
        with torch.no_grad(), c:
            e = m.encode_image(px[i:i + 1])
        counted_img.append(c.get_total_flops())
        kept.append(e.kept)
        c = FlopCounterMode(display=False)
        with torch.no_grad(), c:
            m.encode_text(ids[2 * i:2 * i + 1, :n])
        counted_txt.append(c.get_total_flops())
        img = m.image_tokens(px[i:i + 1])
        c = FlopCounterMode(display=False)
        with torch.no_grad(), c:
            o = m.match(None, ids[2 * i:2 * i + 1, :n], image=img)
        counted_itm.append((c.get_total_flops(), o))
    s, on = m.spec, m.temperature > 0
    kept = torch.cat(kept)
    assert flops_blip.itc_image_flops(s, kept, on).flops.tolist() == counted_img
    ti = mask[::2].sum(1)
    enc = br.encode_all(m, px, ids[::2], mask[::2])
    assert flops_blip.itc_text_flops(s, ti, enc.text_kept, on).flops.tolist() == counted_txt
    for i, (f, o) in enumerate(counted_itm):
        assert flops_blip.itm_flops(s, o.tokens_text, o.kept_text, kept[i:i + 1, -1], on).flops.item() == f
    assert 0 < r["gflops_per_pair"] < r["gflops_dense_per_pair"]
    assert 0 < r["gflops_itm_per_pair"] <= r["gflops_itm_dense_per_pair"]
    assert r["itm_pairs"] == 5 * (len(px) + len(ids))
    assert len(r["kept_image_per_layer"]) == s.vision_layers and max(r["kept_image_per_layer"]) < s.vision_tokens


def test_tokenizer_that_does_not_fit_the_model_is_one_clear_error(data, tmp_path):
    """Bug caught: a vocab.txt whose [ENC] id differs from the model's silently used (wrong embeddings)."""
    (tmp_path / "vocab.txt").write_text("\n".join(scenes.BERT_SPECIALS + ["a", "b"]) + "\n")
    spec = madtp_deploy.load("blip-retrieval-tiny").spec
    with pytest.raises(DataError, match=r"vocab.txt: 10 ids with \[ENC\] = 9, but model blip-retrieval-tiny .*fix"):
        br.tokenizer_for(data, spec, tmp_path)


def test_cli_train_and_eval_dispatch_on_blip_retrieval(data, tmp_path):
    """Bug caught: `train --init blip-retrieval-tiny` sent to the CLIP trainer, `eval` of a BLIP retrieval
    model refused or sent to NLVR2, or bad --data not a one-line exit 2."""
    from typer.testing import CliRunner

    from madtp_deploy.cli import app

    run = CliRunner().invoke
    r = run(app, ["train", "--data", str(data), "--output", str(tmp_path / "run"), "--init", "blip-retrieval-tiny",
                  "--epochs", "1", "--batch-size", "32"], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "GFLOPs/pair (ITC)" in r.output and (tmp_path / "run" / "madtp.pt").is_file()
    r = run(app, ["eval", "--model", str(tmp_path / "run" / "madtp.pt"), "--data", str(data), "--k", "4",
                  "--temperature", "3", "--json", str(tmp_path / "e.json")], terminal_width=200)
    assert r.exit_code == 0, r.output
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["k"] == 4 and e["mode"] == "packed" and e["temperature"] == 3.0  # the serving default, passed through
    assert set(e["recall_itm"]) == set(e["recall_itc"]) == {"txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5",
                                                             "img_r10", "r_mean"}
    assert "ITC" in r.output and "ITM" in r.output and "re-ranked pair" in r.output
    r = run(app, ["eval", "--model", "blip-retrieval-tiny", "--data", str(tmp_path / "missing")])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "missing: dataset folder not found" in r.output
    for args, expect in ((["train", "--init", "blip-nlvr-tiny"], "--init blip-nlvr-tiny: not a BLIP retrieval model"),
                         (["eval", "--model", "blip-retrieval-tiny", "--k", "0"], "--k 0: must be in")):
        out = ["--output", str(tmp_path / "x")] if args[0] == "train" else []
        r = run(app, args + ["--data", str(data)] + out)
        assert r.exit_code == 2 and expect in r.output and r.output.count("\n") == 1, r.output


def test_a_few_steps_on_one_batch_lower_the_loss_and_separate_itm_pairs(data):
    """Bug caught: ITM labels inverted or all one class (positives not scored above their hard
    negatives after fitting), or a loss whose gradient does not lower it."""
    torch.manual_seed(0)
    m, px, ids, mask, img_of, *_ = _batch(data, 8)
    m.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(40):
        loss = br.retrieval_loss(m, px, ids, mask, img_of, generator=g)
        first = first if first is not None else loss.total.item()
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    assert loss.total.item() < 0.6 * first
    m.eval()
    shift = torch.roll(torch.arange(8), 2)  # rows 0..7 show images 0,0,1,1,..: a shift by 2 pairs other images
    with torch.no_grad():
        pos = m.match(px, ids, mask).score
        neg = m.match(px[shift], ids, mask).score
    assert (pos - neg).mean() > 0.1  # measured 0.27 (6 of the 8 pairs above their negative)
