"""The CLIP model: HF equality at temperature 0, pruning behaviour, batch modes."""

import torch

import madtp_deploy
from madtp_deploy import flops
from madtp_deploy.models.hf import convert_hf_state_dict

from ..conftest import TINY, tiny_inputs


def _hf_inputs():
    px, ids = tiny_inputs(5, seed=1)
    mask = (ids != 0).long()
    mask[:, 0] = 1
    return px, ids, mask


def test_hf_directory_matches_transformers(hf_dir):
    d, hf = hf_dir
    m = madtp_deploy.load(d)
    px, ids, mask = _hf_inputs()
    with torch.no_grad():
        torch.testing.assert_close(m.encode_image(px).embeds, hf.get_image_features(pixel_values=px).pooler_output,
                                   atol=1e-5, rtol=0)
        want = hf.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
        torch.testing.assert_close(m.encode_text(ids, mask).embeds, want, atol=1e-5, rtol=0)
        torch.testing.assert_close(m.encode_text(ids).embeds, want, atol=1e-5, rtol=0)  # causal: padding unseen


def test_openai_state_dict_gives_the_same_numbers(hf_dir, tmp_path):
    d, hf = hf_dir
    sd = convert_hf_state_dict({k: v for k, v in hf.state_dict().items()}, d)
    sd.update(input_resolution=torch.tensor(32), context_length=torch.tensor(16), vocab_size=torch.tensor(64))
    torch.save(sd, tmp_path / "openai.pt")
    a, b = madtp_deploy.load(d), madtp_deploy.load(tmp_path / "openai.pt")
    px, ids, _ = _hf_inputs()
    with torch.no_grad():
        torch.testing.assert_close(a.encode_image(px).embeds, b.encode_image(px).embeds, atol=1e-6, rtol=0)
        torch.testing.assert_close(a.encode_text(ids).embeds, b.encode_text(ids).embeds, atol=1e-6, rtol=0)
    # a dense checkpoint gets the same fresh MAG parameters on every load
    torch.testing.assert_close(a.space_dict, b.space_dict)


def test_pruning_varies_per_input_and_gflops_fall(tiny_model):
    px, ids = tiny_inputs(8)
    m = madtp_deploy.load(TINY, mode="invariant", temperature=3.0)
    with torch.no_grad():
        e = m.encode_image(px)
    assert len({tuple(r) for r in e.kept.tolist()}) > 1
    g = flops.image_flops(m.spec, e.kept, pruning=True).gflops
    dense = flops.image_flops(m.spec, flops.dense_image_kept(m.spec, 8), pruning=False).gflops
    assert (g < dense).all()
    for a in range(8):  # an instance that keeps no more tokens in any layer costs no more
        for b in range(8):
            if (e.kept[a] <= e.kept[b]).all():
                assert g[a] <= g[b]


def test_temperature_zero_is_the_dense_model():
    px, ids = tiny_inputs(4)
    m = madtp_deploy.load(TINY)
    with torch.no_grad():
        e, t = m.encode_image(px), m.encode_text(ids)
    assert (e.kept == m.spec.vision_tokens).all() and (t.kept == 16).all()


def test_reference_mode_keeps_the_batch_max():
    px, _ = tiny_inputs(8)
    ref = madtp_deploy.load(TINY, mode="reference", temperature=3.0)
    inv = madtp_deploy.load(TINY, mode="invariant", temperature=3.0)
    with torch.no_grad():
        r, i = ref.encode_image(px).kept, inv.encode_image(px).kept
    assert (r == r[:1]).all(), "reference mode: every instance keeps the same count"
    # first layer: both modes score the same tokens; reference keeps the max over the batch
    assert r[0, 0] == i[:, 0].max()
    assert (r.sum(1) >= i.sum(1)).all()


def test_invariant_mode_batch_equals_batch_one():
    px, ids = tiny_inputs(8, seed=2)
    m = madtp_deploy.load(TINY, mode="invariant", temperature=3.0)
    with torch.no_grad():
        e, t = m.encode_image(px), m.encode_text(ids)
        assert len(set(e.kept[:, -1].tolist())) > 1
        for b in range(8):
            e1, t1 = m.encode_image(px[b:b + 1]), m.encode_text(ids[b:b + 1])
            torch.testing.assert_close(e.embeds[b:b + 1], e1.embeds, atol=1e-5, rtol=0)
            torch.testing.assert_close(t.embeds[b:b + 1], t1.embeds, atol=1e-5, rtol=0)
            assert torch.equal(e.kept[b:b + 1], e1.kept) and torch.equal(t.kept[b:b + 1], t1.kept)


def test_modes_agree_at_batch_one():
    px, ids = tiny_inputs(3, seed=4)
    ref = madtp_deploy.load(TINY, mode="reference", temperature=3.0)
    inv = madtp_deploy.load(TINY, mode="invariant", temperature=3.0)
    with torch.no_grad():
        for b in range(3):
            a, c = ref.encode_image(px[b:b + 1]), inv.encode_image(px[b:b + 1])
            torch.testing.assert_close(a.embeds, c.embeds)
            assert torch.equal(a.kept, c.kept)


def test_text_pruning_follows_the_eot_token():
    """Long padded captions prune the text tower; the pooled EOT token must survive every gather."""
    m = madtp_deploy.load(TINY, mode="invariant", temperature=50.0)
    ids = torch.zeros(4, 16, dtype=torch.long)
    ids[:, 0] = 62
    ids[:, 1:4] = torch.randint(1, 60, (4, 3), generator=torch.Generator().manual_seed(0))  # not the global RNG
    ids[:, 4] = 63
    with torch.no_grad():
        t = m.encode_text(ids)
    pruned = t.kept[:, -1] < 16
    assert pruned.any(), "short captions in a 16-token context should prune"
    # the pruned text embedding stays close to the dense one only if pooling still reads EOT
    dense = madtp_deploy.load(TINY, temperature=0.0)
    with torch.no_grad():
        d = dense.encode_text(ids).embeds
    cos = torch.nn.functional.cosine_similarity(t.embeds, d)
    assert (cos[pruned] > 0.9).all()


def _eot_moving_captions():
    """Captions whose EOT token moves to an earlier slot when tokens before it are pruned."""
    g = torch.Generator().manual_seed(0)
    ids = torch.zeros(8, 16, dtype=torch.long)
    ids[:, 0] = 62
    ids[:, 1:9] = torch.randint(1, 60, (8, 8), generator=g)
    eot = torch.tensor([3, 4, 5, 6, 7, 8, 5, 4])
    ids[torch.arange(8), eot] = 63
    ids[torch.arange(16)[None] > eot[:, None]] = 0
    return ids, eot


def test_pooling_reads_the_eot_token_after_it_moves():
    """Bug caught: pooling at the pre-pruning EOT index once compaction has moved the token."""
    m = madtp_deploy.load(TINY, mode="invariant", temperature=50.0)
    ids, eot = _eot_moving_captions()
    seen = {}
    hooks = [m.transformer.register_forward_hook(lambda mod, a, o: seen.update(track=o[2])),
             m.ln_final.register_forward_hook(lambda mod, a, o: seen.update(final=o))]
    try:
        with torch.no_grad():
            t = m.encode_text(ids)
    finally:
        for h in hooks:
            h.remove()
    slot = seen["track"].int().argmax(1)
    assert (slot < eot).any(), "some EOT token must have moved to an earlier slot"
    want = seen["final"][torch.arange(8), slot] @ m.text_projection
    torch.testing.assert_close(t.embeds, want)


def _early_eot_captions():
    """Short captions (EOT at 2 or 3) in a 16-token context: most of them prune."""
    g = torch.Generator().manual_seed(1)
    ids = torch.zeros(8, 16, dtype=torch.long)
    ids[:, 0] = 62
    ids[:, 1:9] = torch.randint(1, 60, (8, 8), generator=g)
    eot = torch.tensor([2, 3] * 4)
    ids[torch.arange(8), eot] = 63
    ids[torch.arange(16)[None] > eot[:, None]] = 0
    return ids, eot


def test_reference_mode_text_keeps_the_batch_max():
    """Bug caught: the text tower ignoring the batch mode (reference text run as invariant)."""
    ids, _ = _early_eot_captions()
    ref = madtp_deploy.load(TINY, mode="reference", temperature=50.0)
    inv = madtp_deploy.load(TINY, mode="invariant", temperature=50.0)
    with torch.no_grad():
        r, i = ref.encode_text(ids).kept, inv.encode_text(ids).kept
    assert len(set(i[:, -1].tolist())) > 1, "invariant: instances keep different counts"
    assert (r == r[:1]).all(), "reference: every instance keeps the batch's count"
    assert (r[0] < 16).any(), "reference: the batch prunes"
    assert r[0, 0] == i[:, 0].max(), "first layer: the batch keeps its largest own count"


def test_padded_attention_mask_prunes_like_the_unpadded_caption():
    """Zeros in the attention mask (padding at the end) give each caption its unpadded answer,
    pruned or not. Bug caught: padding slots that leak into the scores, the threshold, the
    package token or the keep counts."""
    m = madtp_deploy.load(TINY, mode="invariant", temperature=50.0)
    ids, _ = _early_eot_captions()
    length = 16 - torch.arange(8) % 3  # 16, 15 or 14 valid tokens, zeros in the mask after them
    mask = (torch.arange(16)[None] < length[:, None]).long()
    with torch.no_grad():
        batch = m.encode_text(ids, mask)
        for b in range(8):
            one = m.encode_text(ids[b:b + 1, :int(length[b])])
            torch.testing.assert_close(batch.embeds[b:b + 1], one.embeds, atol=1e-5, rtol=0)
            assert torch.equal(batch.kept[b:b + 1], one.kept)
    padded = length < 16
    assert (batch.kept[padded, -1] < length[padded]).any(), "some padded captions must prune"
    assert (batch.kept[padded, -1] == length[padded]).any(), "and some skip while others prune"
