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


def _poisoned(sd: dict, *keys: str) -> dict:
    sd = {k: v.clone() for k, v in sd.items()}
    for i, k in enumerate(keys):
        sd[k].view(-1)[0] = (float("nan"), float("inf"), -float("inf"))[i % 3]
    return sd


@pytest.mark.parametrize("kind", ["clip.pt", "clip.safetensors", "blip-nlvr.pth", "hf-dir"])
def test_nan_or_inf_weights_are_refused_at_load(tmp_path, kind, hf_dir):
    """Bug caught: a checkpoint with NaN / Inf weights (a diverged run) loads silently and serves NaN.
    The CLI shows it through `madtp-deploy info FILE` (exit 2, this one line)."""
    from safetensors.torch import load_file, save_file

    bad = ["visual.transformer.resblocks.1.mlp.c_fc.weight", "ln_final.bias"]
    if kind == "clip.pt":
        path = tmp_path / "m.pt"
        torch.save({"model": _poisoned(madtp_deploy.load(TINY).state_dict(), *bad), "temperature": 1.0}, path)
    elif kind == "clip.safetensors":
        path = tmp_path / "m.safetensors"
        save_file(_poisoned(madtp_deploy.load(TINY).state_dict(), *bad), path)
    elif kind == "blip-nlvr.pth":
        path = tmp_path / "m.pth"
        bad = ["text_encoder.encoder.layer.1.crossattention.self0.key.weight", "cls_head.2.bias"]
        torch.save({"model": _poisoned(madtp_deploy.load("blip-nlvr-tiny").state_dict(), *bad)}, path)
    else:
        src, _ = hf_dir
        path = tmp_path / "hf"
        path.mkdir()
        (path / "config.json").write_text((src / "config.json").read_text())
        bad = ["text_projection.weight"]
        save_file(_poisoned(load_file(src / "model.safetensors"), *bad), path / "model.safetensors")
        bad = ["text_projection"]  # the name we load it under
    with pytest.raises(CheckpointError) as err:
        madtp_deploy.load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: weights hold NaN or Inf") and "\n" not in msg
    assert all(k in msg for k in bad) and "re-train" in msg


def test_finite_check_names_the_first_bad_tensors_only(tmp_path):
    keys = [k for k, v in madtp_deploy.load(TINY).state_dict().items() if v.is_floating_point()][:5]
    torch.save(_poisoned(madtp_deploy.load(TINY).state_dict(), *keys), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"\(\+2 more tensor\(s\)\)") as err:
        madtp_deploy.load(tmp_path / "m.pt")
    assert "(1 NaN, 0 Inf of" in str(err.value) and keys[2] in str(err.value) and keys[3] not in str(err.value)
