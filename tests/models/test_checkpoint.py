"""Strict checkpoint loading: MADTP format, training-only extras, bad files."""

import pytest
import torch

import madtp_deploy
from madtp_deploy.errors import CheckpointError

from ..conftest import TINY, tiny_inputs


def _madtp_ckpt(path, model, temperature=2.5, extras=True):
    sd = dict(model.state_dict())
    if extras:  # what the reference's training leaves in its checkpoints
        sd["visual_m.conv1.weight"] = sd["visual.conv1.weight"].clone()
        sd["transformer_m.resblocks.0.ln_1.weight"] = torch.ones(128)
        sd["text_projection_m"] = sd["text_projection"].clone()
        sd["image_queue"] = torch.randn(64, 8)
        sd["ptr_queue"] = torch.zeros(1, dtype=torch.long)
    torch.save({"model": sd, "epoch": 3, "temperature": temperature}, path)
    return path


def test_madtp_checkpoint_round_trip(tmp_path):
    src = madtp_deploy.load(TINY, temperature=2.5)
    m = madtp_deploy.load(_madtp_ckpt(tmp_path / "m.pt", src))
    assert m.temperature == 2.5
    px, ids = tiny_inputs(4)
    with torch.no_grad():
        torch.testing.assert_close(m.encode_image(px).embeds, src.encode_image(px).embeds)
        torch.testing.assert_close(m.encode_text(ids).embeds, src.encode_text(ids).embeds)
    assert madtp_deploy.load(tmp_path / "m.pt", temperature=0.0).temperature == 0.0


@pytest.mark.parametrize("mutate, expect", [
    (lambda sd: sd.pop("visual.ln_post.weight"), "missing key(s) visual.ln_post.weight"),
    (lambda sd: sd.__setitem__("visual.bogus", torch.zeros(1)), "unexpected key(s) visual.bogus"),
    (lambda sd: sd.__setitem__("visual.ln_post.bias", torch.zeros(7)), "mis-shaped key(s) visual.ln_post.bias"),
    (lambda sd: sd.pop("visual.transformer.resblocks.0.query_model.q_map.0.bias"), "alignment parameters incomplete"),
])
def test_bad_keys_are_listed(tmp_path, mutate, expect):
    sd = dict(madtp_deploy.load(TINY).state_dict())
    mutate(sd)
    torch.save({"model": sd, "temperature": 1.0}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as err:
        madtp_deploy.load(tmp_path / "bad.pt")
    assert expect in str(err.value) and str(tmp_path / "bad.pt") in str(err.value)
    assert "\n" not in str(err.value)


def test_corrupted_and_foreign_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        madtp_deploy.load(tmp_path / "junk.pt")
    torch.save({"model": {"visual_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16)}}, tmp_path / "blip.pt")
    with pytest.raises(CheckpointError, match="not a CLIP ViT checkpoint: missing key"):
        madtp_deploy.load(tmp_path / "blip.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        madtp_deploy.load(tmp_path / "absent.pt")
    with pytest.raises(madtp_deploy.MadtpError, match="not a registered spec"):
        madtp_deploy.load("clip-vit-nope")


def test_hf_directory_errors(tmp_path, hf_dir):
    d, _ = hf_dir
    bad = tmp_path / "hf"
    bad.mkdir()
    (bad / "config.json").write_text((d / "config.json").read_text())
    (bad / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        madtp_deploy.load(bad)
    (bad / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(CheckpointError, match="model_type"):
        madtp_deploy.load(bad)
