"""BLIP with MADTP: Hugging Face BLIP equality at temperature 0, the twin fusion, pruning, batch modes.

Parity with the reference code itself (double125/MADTP) needs the reference's own environment:
scripts/blip_reference_parity.py (docs/NOTES.md, BLIP).
"""

from pathlib import Path

import pytest
import torch

import madtp_deploy
from madtp_deploy.errors import UsageError
from madtp_deploy.models.blip import MadtpBlipNLVR, MadtpBlipRetrieval
from madtp_deploy.models.blip_checkpoint import build_from_state_dict, spec_from_state_dict

NLVR, RET = "blip-nlvr-tiny", "blip-retrieval-tiny"
ENC = 63


def blip_inputs(batch: int, seed: int = 0, length: int = 12):
    """Image pairs of varied content; texts of varied length ([ENC] first, zero padding, mask)."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.2, 3.0, 2 * batch)[torch.randperm(2 * batch, generator=g)][:, None, None, None]
    px = torch.randn(2 * batch, 3, 32, 32, generator=g) * scale
    ids = torch.randint(8, 60, (batch, length), generator=g)
    ids[:, 0] = ENC
    lengths = torch.randint(4, length + 1, (batch,), generator=g)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    ids = ids * mask
    return px[:batch], px[batch:], ids, mask


@pytest.fixture(scope="module")
def hf_retrieval():
    """A tiny random Hugging Face BlipForImageTextRetrieval (its own code, its own init)."""
    from transformers import BlipConfig, BlipForImageTextRetrieval

    torch.manual_seed(0)
    cfg = BlipConfig(
        text_config=dict(vocab_size=64, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=32, encoder_hidden_size=128,
                         bos_token_id=62, sep_token_id=6, pad_token_id=0),
        vision_config=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, layer_norm_eps=1e-6),
        image_text_hidden_size=64)
    hf = BlipForImageTextRetrieval(cfg).eval()
    with torch.no_grad():  # no LayerNorm may stay the identity, no bias zero
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return hf


def to_blip_keys(hf_sd: dict) -> dict:
    """HF BLIP names -> Salesforce BLIP names (a rename only: the numbers are HF's)."""
    vision = {"embeddings.class_embedding": "cls_token", "embeddings.position_embedding": "pos_embed",
              "embeddings.patch_embedding.weight": "patch_embed.proj.weight",
              "embeddings.patch_embedding.bias": "patch_embed.proj.bias",
              "post_layernorm.weight": "norm.weight", "post_layernorm.bias": "norm.bias"}
    block = {"self_attn.qkv": "attn.qkv", "self_attn.projection": "attn.proj", "layer_norm1": "norm1",
             "layer_norm2": "norm2"}
    out = {}
    for k, v in hf_sd.items():
        if k.startswith("vision_model."):
            k = k[len("vision_model."):]
            if k.startswith("encoder.layers."):
                k = k.replace("encoder.layers.", "blocks.")
                for a, b in block.items():
                    k = k.replace(a, b)
            else:
                k = vision[k]
            k = "visual_encoder." + k
        out[k] = v
    out["temp"] = torch.tensor(0.07)
    return out


def _from_hf(hf):
    sd = to_blip_keys(hf.state_dict())
    spec = spec_from_state_dict(sd, Path("hf.pth"))
    return build_from_state_dict(sd, Path("hf.pth"), spec, "reference", 0.0)


def test_retrieval_matches_hf_blip_at_temperature_zero(hf_retrieval):
    m = _from_hf(hf_retrieval)
    assert isinstance(m, MadtpBlipRetrieval) and m.spec.vision_heads == 2 and m.spec.embed_dim == 64
    px, _, ids, mask = blip_inputs(5, seed=1)
    with torch.no_grad():
        itm = hf_retrieval(input_ids=ids, pixel_values=px, attention_mask=mask, use_itm_head=True)
        itc = hf_retrieval(input_ids=ids, pixel_values=px, attention_mask=mask, use_itm_head=False)
        got = m.match(px, ids, mask)
        img, txt = m.encode_image(px), m.encode_text(ids, mask)
    torch.testing.assert_close(got.logits, itm.itm_score, atol=1e-5, rtol=0)
    cos = torch.nn.functional.normalize(img.embeds, dim=-1) @ torch.nn.functional.normalize(txt.embeds, dim=-1).t()
    torch.testing.assert_close(cos, itc.itm_score, atol=1e-5, rtol=0)
    assert (img.kept == 17).all() and torch.equal(txt.kept, mask.sum(1, keepdim=True).expand(-1, 2))


def test_nlvr_twin_fusion_reduces_to_one_cross_attention(hf_retrieval):
    """With self0 = self1 = self, dense0 = dense1 = dense, the same image twice and no merge layer,
    the twin fusion is HF BLIP's cross-attention: (h0 + h1) / 2 = h (how BLIP initialises NLVR2)."""
    sd = {k: v for k, v in to_blip_keys(hf_retrieval.state_dict()).items()
          if not k.startswith(("vision_proj", "text_proj", "itm_head", "temp"))}
    for k in [k for k in sd if ".crossattention." in k]:  # what BLIP's NLVR2 loader does
        v = sd.pop(k)
        if ".crossattention.self." in k:
            sd[k.replace(".self.", ".self0.")] = sd[k.replace(".self.", ".self1.")] = v
        elif ".crossattention.output.dense." in k:
            sd[k.replace(".dense.", ".dense0.")] = sd[k.replace(".dense.", ".dense1.")] = v
        else:
            sd[k] = v
    torch.manual_seed(3)
    sd["cls_head.0.weight"], sd["cls_head.0.bias"] = torch.randn(128, 128) * 0.05, torch.randn(128) * 0.05
    sd["cls_head.2.weight"], sd["cls_head.2.bias"] = torch.randn(2, 128) * 0.05, torch.randn(2) * 0.05
    spec = spec_from_state_dict(sd, Path("nlvr.pth"))
    assert spec.task == "nlvr" and spec.merge_from == spec.text_layers  # no merge_layer keys: none built
    m = build_from_state_dict(sd, Path("nlvr.pth"), spec, "reference", 0.0)
    px, _, ids, mask = blip_inputs(4, seed=2)
    with torch.no_grad():
        hf_out = hf_retrieval(input_ids=ids, pixel_values=px, attention_mask=mask, use_itm_head=True)
        want = m.cls_head(hf_out.question_embeds[:, 0])
        got = m.nlvr(px, px, ids, mask)
        other = px.flip(0)
        ab, ba = m.nlvr(px, other, ids, mask).logits, m.nlvr(other, px, ids, mask).logits
    torch.testing.assert_close(got.logits, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(ab, ba, atol=1e-6, rtol=0)  # (h0 + h1) / 2 is symmetric in the two images
    assert (ab - got.logits).abs().max() > 1e-4  # ... and does see the second image


def test_merge_layer_fuses_the_two_images():
    """Layers >= merge_from fuse with merge_layer(cat(h0, h1)): swapping the images changes the answer
    there, while the average below it is symmetric."""
    m = madtp_deploy.load(NLVR)
    assert hasattr(m.text_encoder.encoder.layer[1].crossattention.output, "merge_layer")
    assert not hasattr(m.text_encoder.encoder.layer[0].crossattention.output, "merge_layer")
    a, b, ids, mask = blip_inputs(3, seed=5)
    with torch.no_grad():
        x, y = m.nlvr(a, b, ids, mask).logits, m.nlvr(b, a, ids, mask).logits
    assert (x - y).abs().max() > 1e-4


def test_temperature_zero_is_dense():
    m = madtp_deploy.load(NLVR)
    a, b, ids, mask = blip_inputs(4)
    with torch.no_grad():
        o = m.nlvr(a, b, ids, mask)
    assert o.logits.shape == (4, 2)
    assert o.kept_image.shape == (4, 2, 2) and (o.kept_image == 17).all()
    assert torch.equal(o.kept_text, mask.sum(1, keepdim=True).expand(-1, 2))


def test_pruning_varies_per_input_in_both_towers():
    m = madtp_deploy.load(NLVR, mode="invariant", temperature=5.0)
    a, b, ids, mask = blip_inputs(8, seed=3)
    with torch.no_grad():
        o = m.nlvr(a, b, ids, mask)
    assert (o.kept_image[..., -1] < 17).any() and (o.kept_text[:, -1] < mask.sum(1)).any()
    assert len({tuple(r) for r in o.kept_image.flatten(0, 1).tolist()}) > 1
    assert len({tuple(r) for r in o.kept_text.tolist()}) > 1


def test_invariant_mode_batch_equals_batch_one():
    m = madtp_deploy.load(NLVR, mode="invariant", temperature=5.0)
    a, b, ids, mask = blip_inputs(6, seed=4)
    with torch.no_grad():
        o = m.nlvr(a, b, ids, mask)
        assert len(set(o.kept_image[:, 0, -1].tolist())) > 1
        assert torch.equal(o.kept_image[:, 0], o.kept_image[:, 1]), "a pair keeps the larger of its counts"
        for i in range(6):
            n = int(mask[i].sum())  # batch 1: no padding at all
            o1 = m.nlvr(a[i:i + 1], b[i:i + 1], ids[i:i + 1, :n], mask[i:i + 1, :n])
            torch.testing.assert_close(o.logits[i:i + 1], o1.logits, atol=1e-5, rtol=0)
            assert torch.equal(o.kept_image[i:i + 1], o1.kept_image) and torch.equal(o.kept_text[i:i + 1], o1.kept_text)


def test_reference_mode_is_max_keep_over_both_images_of_the_batch():
    ref = madtp_deploy.load(NLVR, mode="reference", temperature=5.0)
    inv = madtp_deploy.load(NLVR, mode="invariant", temperature=5.0)
    a, b, ids, mask = blip_inputs(6, seed=4)
    ids, mask = ids[:, :6].clone(), torch.ones(6, 6, dtype=torch.long)  # no padding
    with torch.no_grad():
        r, i = ref.nlvr(a, b, ids, mask), inv.nlvr(a, b, ids, mask)
    assert (r.kept_image == r.kept_image[:1, :1]).all(), "the vision batch is image 0 and image 1 together"
    assert r.kept_image[0, 0, 0] == i.kept_image[:, :, 0].max()
    assert (r.kept_text == r.kept_text[:1]).all() and r.kept_text[0, 0] == i.kept_text[:, 0].max()


def test_modes_agree_at_batch_one():
    ref = madtp_deploy.load(NLVR, mode="reference", temperature=5.0)
    inv = madtp_deploy.load(NLVR, mode="invariant", temperature=5.0)
    a, b, ids, _ = blip_inputs(3, seed=6)
    with torch.no_grad():
        for i in range(3):
            x, y = ref.nlvr(a[i:i + 1], b[i:i + 1], ids[i:i + 1]), inv.nlvr(a[i:i + 1], b[i:i + 1], ids[i:i + 1])
            torch.testing.assert_close(x.logits, y.logits)
            assert torch.equal(x.kept_image, y.kept_image) and torch.equal(x.kept_text, y.kept_text)


def test_retrieval_pruning_is_batch_invariant_in_every_entry_point():
    m = madtp_deploy.load(RET, mode="invariant", temperature=5.0)
    px, _, ids, mask = blip_inputs(5, seed=7)
    with torch.no_grad():
        img, txt, itm = m.encode_image(px), m.encode_text(ids, mask), m.match(px, ids, mask)
        assert (img.kept[:, -1] < 17).any() and (txt.kept[:, -1] < mask.sum(1)).any()
        for i in range(5):
            n = int(mask[i].sum())
            torch.testing.assert_close(img.embeds[i:i + 1], m.encode_image(px[i:i + 1]).embeds, atol=1e-5, rtol=0)
            torch.testing.assert_close(txt.embeds[i:i + 1], m.encode_text(ids[i:i + 1, :n]).embeds, atol=1e-5, rtol=0)
            torch.testing.assert_close(itm.logits[i:i + 1], m.match(px[i:i + 1], ids[i:i + 1, :n]).logits,
                                       atol=1e-5, rtol=0)


def test_alignment_features_average_the_two_images():
    m = madtp_deploy.load(NLVR, mode="invariant", temperature=2.0)
    a, b, ids, mask = blip_inputs(3, seed=8)
    o = m.nlvr(a, b, ids, mask, want_align=True)
    img = m.image_tokens(torch.cat([a, b]), want_align=True, pairs=3).align
    torch.testing.assert_close(o.align_image, (img[:3] + img[3:]) / 2)
    assert o.align_text.shape == (3, m.spec.sd_num, m.spec.sd_dim)
    loss = madtp_deploy.pruning.alignment_loss(o.align_image, o.align_text) + o.logits.sum()
    loss.backward()
    assert m.space_dict.grad is not None and m.space_dict.grad.abs().sum() > 0


@pytest.mark.parametrize("batch", [1, 8])
def test_packed_nlvr_gives_the_invariant_answers(batch):
    """Packed rows give invariant's answers: a dropped, duplicated or misplaced row (or a pair rule lost
    in packed mode) changes the logits or the kept counts."""
    inv = madtp_deploy.load(NLVR, mode="invariant", temperature=5.0)
    packed = madtp_deploy.load(NLVR, mode="packed", temperature=5.0)
    a, b, ids, mask = blip_inputs(batch, seed=9)
    with torch.no_grad():
        want, got = inv.nlvr(a, b, ids, mask), packed.nlvr(a, b, ids, mask)
    if batch > 1:
        assert len({tuple(r) for r in want.kept_image.flatten(1).tolist()}) > 1
        assert len({tuple(r) for r in want.kept_text.tolist()}) > 1
    torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=0)
    assert torch.equal(got.kept_image, want.kept_image) and torch.equal(got.kept_text, want.kept_text)


def test_packed_retrieval_gives_the_invariant_answers():
    inv = madtp_deploy.load(RET, mode="invariant", temperature=5.0)
    packed = madtp_deploy.load(RET, mode="packed", temperature=5.0)
    px, _, ids, mask = blip_inputs(8, seed=10)
    with torch.no_grad():
        for f in (lambda m: m.encode_image(px), lambda m: m.encode_text(ids, mask)):
            want, got = f(inv), f(packed)
            assert len({tuple(r) for r in want.kept.tolist()}) > 1
            torch.testing.assert_close(got.embeds, want.embeds, atol=1e-5, rtol=0)
            assert torch.equal(got.kept, want.kept)
        want, got = inv.match(px, ids, mask), packed.match(px, ids, mask)
        torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=0)
        assert torch.equal(got.kept_text, want.kept_text)
        torch.testing.assert_close(packed.rerank(px, ids, mask, k=3), inv.rerank(px, ids, mask, k=3),
                                   atol=1e-5, rtol=0)


def test_packed_per_token_work_sees_only_kept_tokens():
    """After pruning, the ViT MLP, the BERT FFN and the cross-attention's image keys run on exactly
    the kept rows of the batch (a "packed" mode that runs padded fails this)."""
    m = madtp_deploy.load(NLVR, mode="packed", temperature=5.0)
    a, b, ids, mask = blip_inputs(8, seed=9)
    seen = {}
    mods = {"vit_mlp": m.visual_encoder.blocks[1].mlp.fc1,
            "bert_ffn": m.text_encoder.encoder.layer[1].intermediate.dense,
            "cross_key": m.text_encoder.encoder.layer[0].crossattention.self0.key}
    def record(name):
        def hook(mod, args, out):
            seen.setdefault(name, args[0].shape[0])  # the first call: image 0 / the first layer's
        return hook

    hooks = [mod.register_forward_hook(record(n)) for n, mod in mods.items()]
    try:
        with torch.no_grad():
            o = m.nlvr(a, b, ids, mask)
    finally:
        for h in hooks:
            h.remove()
    kept_img = o.kept_image[:, :, 1].sum()
    assert seen["vit_mlp"] == kept_img and kept_img < 16 * o.kept_image[:, :, 1].max(), "ragged, packed"
    assert seen["bert_ffn"] == o.kept_text[:, 1].sum() < 8 * o.kept_text[:, 1].max()
    assert seen["cross_key"] == o.kept_image[:, 0, -1].sum()  # image 0's final tokens


def test_unknown_mode_is_one_line():
    with pytest.raises(UsageError, match="not a batch mode"):
        MadtpBlipNLVR(madtp_deploy.specs.get_spec(NLVR), mode="fast")


def test_rerank_rescores_the_itc_top_k_with_itm():
    m = madtp_deploy.load(RET, mode="invariant", temperature=3.0)
    px, _, ids, mask = blip_inputs(4, seed=12)
    scores = m.rerank(px, ids, mask, k=2)
    with torch.no_grad():
        img, txt = m.encode_image(px).embeds, m.encode_text(ids, mask).embeds
        cos = torch.nn.functional.normalize(img, dim=-1) @ torch.nn.functional.normalize(txt, dim=-1).t()
        for i in range(4):
            top = cos[i].topk(2).indices
            assert set((scores[i] > -100).nonzero().flatten().tolist()) == set(top.tolist())
            itm = m.match(px[i:i + 1].expand(2, -1, -1, -1), ids[top], mask[top]).logits[:, 1]
            torch.testing.assert_close(scores[i, top], itm + cos[i, top], atol=1e-5, rtol=0)


def test_entry_points_check_their_inputs():
    """Bad inputs fail with a one-line InputError in every public entry point (before: NaN pixels gave
    NaN logits, an out-of-vocabulary id an IndexError deep inside BERT, a pair batch mismatch a
    shape error inside torch.cat)."""
    from madtp_deploy.errors import InputError

    nlvr, ret = madtp_deploy.load(NLVR), madtp_deploy.load(RET)
    a, b, ids, mask = blip_inputs(2)
    nan = a.clone()
    nan[0, 0, 0, 0] = float("nan")
    bad_mask = mask.clone()
    bad_mask[1, 0] = 0
    cases = [
        (lambda: nlvr.nlvr(nan, b, ids, mask), "images0: contains NaN"),
        (lambda: nlvr.nlvr(a, b[:1], ids, mask), "one image pair per statement"),
        (lambda: nlvr.nlvr(a, b, ids + 64, mask), "outside the vocabulary"),
        (lambda: ret.encode_image(a[:, :, :16]), r"expected \[B, 3, 32, 32\]"),
        (lambda: ret.encode_text(ids, bad_mask), "position 0"),
        (lambda: ret.encode_text(ids.float(), mask), "integer tensor"),
        (lambda: ret.match(a * 100, ids, mask), "not CLIP-normalised"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message) as info:
            call()
        assert "\n" not in str(info.value) and "fix:" in str(info.value)
