"""BLIP's analytic per-instance FLOPs against torch's FlopCounterMode at batch 1, and the
reference's fvcore convention against its published dense figure."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import madtp_deploy
from madtp_deploy import flops_blip
from madtp_deploy.specs import get_spec

from .models.test_blip import blip_inputs


def _counted(fn):
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = fn()
    return out, counter.get_total_flops()


@pytest.mark.parametrize("temperature", [0.0, 2.0, 20.0])
def test_nlvr_analytic_flops_equal_flop_counter(temperature):
    m = madtp_deploy.load("blip-nlvr-tiny", mode="invariant", temperature=temperature)
    a, b, ids, mask = blip_inputs(4, seed=9)
    seen = set()
    for i in range(4):
        n = int(mask[i].sum())
        o, counted = _counted(lambda: m.nlvr(a[i:i + 1], b[i:i + 1], ids[i:i + 1, :n]))
        f = flops_blip.nlvr_flops(m.spec, o.kept_image, o.tokens_text, o.kept_text, temperature > 0)
        assert f.flops.item() == counted
        seen.add((tuple(o.kept_image.flatten().tolist()), tuple(o.kept_text[0].tolist())))
    if temperature > 0:
        assert len(seen) > 1  # the counts (and so the FLOPs) differ per instance


def test_pruned_instances_cost_less():
    m = madtp_deploy.load("blip-nlvr-tiny", mode="invariant", temperature=20.0)
    a, b, ids, mask = blip_inputs(6, seed=10)
    with torch.no_grad():
        o = m.nlvr(a, b, ids, mask)
    s = m.spec
    pruned = flops_blip.nlvr_flops(s, o.kept_image, o.tokens_text, o.kept_text, True).gflops
    full_image = torch.full_like(o.kept_image, s.vision_tokens)
    full_text = o.tokens_text[:, None].expand(-1, s.text_layers)
    dense = flops_blip.nlvr_flops(s, full_image, o.tokens_text, full_text, False).gflops
    assert (pruned < dense).all()


def test_fvcore_convention_matches_the_published_dense_figure():
    """132.54 'GFLOPs' (fvcore, the reference's 384 px pair + 36-token sentence); MAG not included."""
    s = get_spec("blip-nlvr")
    assert abs(flops_blip.fvcore_gflops(s) - 132.54) / 132.54 < 0.001
    ki, tt, kt = flops_blip.dense_nlvr(s)
    f = flops_blip.nlvr_flops(s, ki, tt, kt, pruning=False)
    assert f.flops.item() == 2 * f.macs.item() and f.per_layer.shape == (1, 2 * 12 + 12)


def test_info_dispatches_on_blip_specs():
    from typer.testing import CliRunner

    from madtp_deploy.cli import app

    r = CliRunner().invoke(app, ["info", "blip-nlvr-tiny"], terminal_width=200)
    assert r.exit_code == 0, r.output
    s = get_spec("blip-nlvr-tiny")
    want = flops_blip.fvcore_gflops(s)
    assert "reference 'GFLOPs'" in r.output and f"{want:.4f}" in r.output


def test_layernorm_elements_equal_what_the_model_normalises():
    """fvcore's convention adds 5 per LayerNorm element: count them with hooks on a dense forward."""
    m = madtp_deploy.load("blip-nlvr-tiny")
    seen = []
    for mod in m.modules():
        if isinstance(mod, torch.nn.LayerNorm):
            mod.register_forward_hook(lambda mod, i, o: seen.append(i[0].numel()))
    a, b, ids, _ = blip_inputs(1, seed=2)
    with torch.no_grad():
        m.nlvr(a, b, ids)
    assert sum(seen) == flops_blip.nlvr_layernorm_elements(m.spec, ids.shape[1])


@pytest.mark.parametrize("temperature", [5.0, 20.0])
def test_packed_nlvr_flops_are_what_a_packed_batch_computes(temperature):
    """The packed formula (own tokens, attention padded, MAG on the CLS rows) against FlopCounterMode
    on a ragged packed batch: within 0.1% (the rest: a layer's padded length can exceed its largest
    kept count by the package slot, when the longest instance did not prune). Counting a packed batch
    as its own tokens, or padding attention to the wrong length, misses by more."""
    m = madtp_deploy.load("blip-nlvr-tiny", mode="packed", temperature=temperature)
    a, b, ids, mask = blip_inputs(8, seed=9)
    o, counted = _counted(lambda: m.nlvr(a, b, ids, mask))
    s = m.spec
    packed = flops_blip.packed_nlvr_flops(s, o.kept_image, o.tokens_text, o.kept_text).flops.sum().item()
    own = flops_blip.nlvr_flops(s, o.kept_image, o.tokens_text, o.kept_text, True).flops.sum().item()
    assert packed == pytest.approx(counted, rel=1e-3)
    assert abs(own - counted) / counted > 3e-3, "the batch must be ragged enough to tell the two apart"
