"""Every registered spec builds and runs once, pruning on, at its own geometry (timm's habit of
testing over `list_models()`). Bugs caught: a registered geometry that does not build (heads that
do not divide the width, a position table of the wrong length), a tower that breaks at real depth
or width (ViT-L/14-336's 577 tokens and 24 layers), keep counts of the wrong shape."""

import pytest
import torch

import madtp_deploy
from madtp_deploy.specs import ClipSpec, get_spec, spec_names


@pytest.mark.parametrize("name", spec_names())
def test_every_registered_spec_builds_and_prunes(name):
    spec = get_spec(name)
    m = madtp_deploy.load(name, mode="invariant", temperature=2.0)
    g = torch.Generator().manual_seed(0)
    px = torch.randn(1, 3, spec.image_size, spec.image_size, generator=g)
    with torch.inference_mode():
        if isinstance(spec, ClipSpec):
            img = m.encode_image(px)
            assert img.embeds.shape == (1, spec.embed_dim) and img.kept.shape == (1, spec.vision_layers)
            ids = torch.zeros(1, 8, dtype=torch.long)
            ids[0, :4] = torch.tensor([1, 2, 3, spec.eot_token_id or spec.vocab_size - 1])
            txt = m.encode_text(ids)
            assert txt.embeds.shape == (1, spec.embed_dim) and txt.kept.shape == (1, spec.text_layers)
            kept = img.kept
        else:  # BLIP
            ids = torch.tensor([[spec.enc_id, 5, 6, 7, 8, 9]])
            mask = torch.ones_like(ids)
            if spec.task == "nlvr":
                out = m.nlvr(px, px.flip(-1), ids, mask)
                assert out.logits.shape == (1, 2) and out.kept_image.shape == (1, 2, spec.vision_layers)
                kept = out.kept_image[:, 0]
            else:
                img = m.encode_image(px)
                assert img.kept.shape == (1, spec.vision_layers)
                kept = img.kept
    assert (kept[:, -1] <= spec.vision_tokens).all() and (kept >= 1).all()
    assert torch.isfinite(img.embeds if isinstance(spec, ClipSpec) or spec.task != "nlvr" else out.logits).all()
