"""BLIP checkpoints (MADTP and Salesforce files), strict keys, geometry from weights, the tokenizer."""

import pytest
import torch

import madtp_deploy
from madtp_deploy.data.bert_tokenizer import BlipTokenizer
from madtp_deploy.errors import CheckpointError, DataError
from madtp_deploy.models.blip import MadtpBlipNLVR, MadtpBlipRetrieval

from .test_blip import blip_inputs

NLVR, RET = "blip-nlvr-tiny", "blip-retrieval-tiny"


def _extras(sd: dict) -> dict:
    """What the reference's training leaves in its files: momentum encoders, queues, a saved buffer."""
    sd = dict(sd)
    sd["visual_encoder_m.cls_token"] = sd["visual_encoder.cls_token"].clone()
    sd["text_encoder_m.embeddings.LayerNorm.weight"] = torch.ones(128)
    sd["image_queue"] = torch.randn(64, 8)
    sd["idx_queue"] = torch.full((1, 8), -100)
    sd["ptr_queue"] = torch.zeros(1, dtype=torch.long)
    sd["text_encoder.embeddings.position_ids"] = torch.arange(32)[None]
    if "vision_proj.weight" in sd:
        sd["vision_proj_m.weight"] = sd["vision_proj.weight"].clone()
    return sd


@pytest.mark.parametrize("name, cls", [(NLVR, MadtpBlipNLVR), (RET, MadtpBlipRetrieval)])
def test_madtp_file_round_trip(tmp_path, name, cls):
    src = madtp_deploy.load(name, temperature=3.0)
    torch.save({"model": _extras(src.state_dict()), "epoch": 4, "temperature": 3.0}, tmp_path / "m.pth")
    m = madtp_deploy.load(tmp_path / "m.pth")
    assert isinstance(m, cls) and m.temperature == 3.0 and m.mode == "reference"
    assert m.spec.vision_heads == 2 and m.spec.text_heads == 2 and m.spec.merge_from == src.spec.merge_from
    a, b, ids, mask = blip_inputs(3, seed=1)
    with torch.no_grad():
        if cls is MadtpBlipNLVR:
            x, y = m.nlvr(a, b, ids, mask), src.nlvr(a, b, ids, mask)
            torch.testing.assert_close(x.logits, y.logits, atol=0, rtol=0)
            assert torch.equal(x.kept_image, y.kept_image) and (x.kept_image[..., -1] < 17).any()
        else:
            torch.testing.assert_close(m.match(a, ids, mask).logits, src.match(a, ids, mask).logits, atol=0, rtol=0)
            torch.testing.assert_close(m.encode_text(ids, mask).embeds, src.encode_text(ids, mask).embeds)
    assert madtp_deploy.load(tmp_path / "m.pth", temperature=0.0).temperature == 0.0


def test_salesforce_file_gets_seeded_mag_and_temperature_zero(tmp_path):
    src = madtp_deploy.load(NLVR)
    sd = {k: v for k, v in src.state_dict().items() if k != "space_dict"}
    torch.save({"model": sd, "optimizer": {}, "config": {"image_size": 32}, "epoch": 9}, tmp_path / "sf.pth")
    a, b = madtp_deploy.load(tmp_path / "sf.pth"), madtp_deploy.load(tmp_path / "sf.pth")
    assert a.temperature == 0.0
    torch.testing.assert_close(a.space_dict, b.space_dict)  # fresh, but the same on every load
    assert not torch.equal(a.space_dict, src.space_dict)


def test_geometry_is_read_from_the_weights(tmp_path):
    spec = madtp_deploy.specs.BlipSpec("w192", "nlvr", 32, 16, 192, 3, 3, 384, 40, 192, 3, 3, 384,
                                       max_positions=20, merge_from=2, sd_num=8, sd_dim=192)
    src = madtp_deploy.models.blip.build(spec)
    torch.save({"model": src.state_dict(), "temperature": 1.0}, tmp_path / "w.pth")
    m = madtp_deploy.load(tmp_path / "w.pth")
    got = m.spec.to_dict()
    want = {**spec.to_dict(), "name": "w"}
    assert got == want  # heads = 192 // 64 = 3, merge_from from the merge_layer keys, sd from space_dict


@pytest.mark.parametrize("mutate, expect", [
    (lambda sd: sd.pop("visual_encoder.norm.weight"), "missing key(s) visual_encoder.norm.weight"),
    (lambda sd: sd.__setitem__("text_encoder.bogus", torch.zeros(1)), "unexpected key(s) text_encoder.bogus"),
    (lambda sd: sd.__setitem__("cls_head.2.bias", torch.zeros(3)), "mis-shaped key(s) cls_head.2.bias"),
    (lambda sd: sd.pop("cls_head.0.weight"), "without cls_head (NLVR2) or itm_head"),
    (lambda sd: sd.pop("text_encoder.encoder.layer.1.crossattention.output.merge_layer.weight"),
     "unexpected key(s) text_encoder.encoder.layer.1.crossattention.output.merge_layer.bias"),
])
def test_strict_keys(tmp_path, mutate, expect):
    sd = dict(madtp_deploy.load(NLVR).state_dict())
    mutate(sd)
    torch.save({"model": sd, "temperature": 1.0}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=expect.replace("(", r"\(").replace(")", r"\)")) as e:
        madtp_deploy.load(tmp_path / "bad.pth")
    assert str(tmp_path / "bad.pth") in str(e.value) and "fix:" in str(e.value)


def test_unknown_spec_field_and_bad_temperature_are_named(tmp_path):
    sd = madtp_deploy.load(NLVR).state_dict()
    torch.save({"model": sd, "temperature": 1.0, "spec": {"bogus": 1}}, tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match="unknown key.*bogus"):
        madtp_deploy.load(tmp_path / "a.pth")
    torch.save({"model": sd, "temperature": "hot"}, tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match="temperature"):
        madtp_deploy.load(tmp_path / "b.pth")


@pytest.fixture
def vocab_dir(tmp_path):
    words = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "left", "image", "has", "two",
             "red", "dog", "##s", ","]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    return tmp_path, len(words)


def test_tokenizer_adds_dec_and_enc(vocab_dir):
    d, n = vocab_dir
    tok = BlipTokenizer(d)
    assert (tok.dec_id, tok.enc_id) == (n, n + 1) and len(tok) == n + 2
    ids, mask = tok(["the left image has two red dogs", "two dogs"])
    assert ids[:, 0].tolist() == [n + 1, n + 1]  # [ENC] replaces [CLS]
    assert ids[0, 1:].tolist() == [6, 7, 8, 9, 10, 11, 12, 13, 4]  # WordPiece: dog ##s, then [SEP]
    assert mask.sum(1).tolist() == [10, 5] and ids.shape == (2, 10)  # padded to the longest
    ids, _ = BlipTokenizer(d, max_length=12)(["two dogs"], enc=False)
    assert ids.shape == (1, 12) and ids[0, 0] == 3


def test_tokenizer_errors_name_the_file(tmp_path, vocab_dir):
    with pytest.raises(DataError, match="no vocab.txt"):
        BlipTokenizer(tmp_path / "nothing")
    with pytest.raises(DataError, match=r"texts\[1\]: empty"):
        BlipTokenizer(vocab_dir[0])(["two dogs", "  "])


def test_nlvr_fine_tuning_starts_from_a_pretrained_blip_as_blip_does(tmp_path):
    """`train --pretrained`: every shared tensor comes from the pre-trained file, each cross-attention into
    both images' twin attention; merge layers and cls_head stay fresh. Bugs caught: the twin attention of
    image 1 left random (only self0 copied), the MAG tokens dropped, a different geometry loaded silently."""
    from madtp_deploy.models.blip_checkpoint import init_nlvr_from_pretrained

    pre = madtp_deploy.load("blip-retrieval-tiny")
    with torch.no_grad():
        pre.space_dict.add_(1.0)  # the MAG tokens a pre-trained MADTP file carries
    torch.save({"model": pre.state_dict()}, tmp_path / "pre.pt")
    nlvr = madtp_deploy.load("blip-nlvr-tiny")
    fresh_head = nlvr.cls_head[0].weight.clone()
    n = init_nlvr_from_pretrained(nlvr, tmp_path / "pre.pt")
    got, want = nlvr.state_dict(), pre.state_dict()
    layer = "text_encoder.encoder.layer.0.crossattention"
    for i in (0, 1):
        assert torch.equal(got[f"{layer}.self{i}.query.weight"], want[f"{layer}.self.query.weight"])
        assert torch.equal(got[f"{layer}.output.dense{i}.weight"], want[f"{layer}.output.dense.weight"])
    assert torch.equal(got["visual_encoder.blocks.1.attn.qkv.weight"], want["visual_encoder.blocks.1.attn.qkv.weight"])
    assert torch.equal(got["space_dict"], want["space_dict"])
    assert torch.equal(nlvr.cls_head[0].weight, fresh_head)
    assert n["new"] == 4 + 2 * (nlvr.spec.text_layers - nlvr.spec.merge_from) and n["ignored"] == 7
    with pytest.raises(CheckpointError, match="does not cover blip-nlvr-deep"):
        init_nlvr_from_pretrained(madtp_deploy.load("blip-nlvr-deep"), tmp_path / "pre.pt")
