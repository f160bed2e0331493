"""Analytic per-instance FLOPs against torch's FlopCounterMode at batch 1 (MATH attention)."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import madtp_deploy
from madtp_deploy import flops

from .conftest import TINY, tiny_inputs


def _counted(fn):
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        out = fn()
    return out, counter.get_total_flops()


@pytest.mark.parametrize("temperature", [0.0, 1.0, 3.0, 50.0])
def test_analytic_flops_equal_flop_counter(temperature):
    m = madtp_deploy.load(TINY, temperature=temperature)
    px, ids = tiny_inputs(6, seed=7)
    seen = set()
    for b in range(6):
        e, counted = _counted(lambda: m.encode_image(px[b:b + 1]))
        assert flops.image_flops(m.spec, e.kept, temperature > 0).flops.item() == counted
        t, counted = _counted(lambda: m.encode_text(ids[b:b + 1]))
        assert flops.text_flops(m.spec, t.tokens_in, t.kept, temperature > 0).flops.item() == counted
        seen.add(tuple(e.kept[0].tolist()))
    if temperature >= 3.0:
        assert len(seen) > 1 or all(k < m.spec.vision_tokens for k in next(iter(seen)))


def test_conventions_are_labelled_and_consistent():
    s = madtp_deploy.specs.get_spec("clip-vit-b16")
    f = flops.image_flops(s, flops.dense_image_kept(s), pruning=False)
    assert f.flops.item() == 2 * f.macs.item()
    # ViT-B/16 at 224: the well-known ~17.6 GMACs ("17.6 GFLOPs" in fvcore's convention)
    assert 17.4 < f.gmacs.item() < 17.7
