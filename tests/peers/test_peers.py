"""The peers as models: FLOPs against FlopCounterMode, no reduction = the dense model, the knob
matching, the evaluation with --method / --match."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import madtp_deploy
from madtp_deploy import flops, peers
from madtp_deploy.errors import UsageError

from ..conftest import TINY, tiny_inputs

KNOBS = {"tome": [5, (3, 1)], "topk": [0.6, 0.3], "lowres": [(3, 3), (2, 3)]}


@pytest.fixture(scope="module")
def dense():
    return madtp_deploy.load(TINY)


@pytest.mark.parametrize("method", list(peers.PEERS))
def test_analytic_flops_equal_flop_counter(dense, method):
    px, _ = tiny_inputs(2, seed=3)
    for knob in KNOBS[method]:
        p = peers.build(method, dense, knob)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
            e = p.encode_image(px[:1])
        assert p.image_flops(1).flops.item() == counter.get_total_flops(), p.knob
        assert e.kept[0].tolist() == [n for _, n in p.schedule()]


@pytest.mark.parametrize("method,knob", [("tome", 0), ("topk", 1.0), ("lowres", (4, 4))])
def test_no_reduction_is_the_dense_model(dense, method, knob):
    px, _ = tiny_inputs(3, seed=5)
    p = peers.build(method, dense, knob)
    with torch.no_grad():
        got, want = p.encode_image(px), dense.encode_image(px)
    assert torch.allclose(got.embeds, want.embeds, atol=1e-5)
    assert p.image_flops(1).macs.item() == flops.dense_flops(dense.spec)[0].macs.item()


def test_peers_reduce_tokens_and_change_the_answer(dense):
    px, _ = tiny_inputs(3, seed=5)
    with torch.no_grad():
        want = dense.encode_image(px).embeds
        for method, knobs in KNOBS.items():
            p = peers.build(method, dense, knobs[0])
            assert p.image_flops(1).macs.item() < flops.dense_flops(dense.spec)[0].macs.item()
            assert not torch.allclose(p.encode_image(px).embeds, want, atol=1e-3), method


@pytest.mark.parametrize("method", ["tome", "topk"])
def test_match_finds_the_nearest_knob_within_2_percent(method):
    m = madtp_deploy.load("madtp-clip-tiny")  # the shipped geometry: 64 patches, 4 layers
    dense_gf = flops.dense_flops(m.spec)[0].gflops.item()
    for frac in (0.45, 0.6, 0.8):
        got = peers.match(method, m, frac * dense_gf)
        all_gf = [float(peers.build(method, m, k).image_gflops()[0]) for k in peers.candidates(method, m.spec)]
        assert got.gflops == min(all_gf, key=lambda g: abs(g - frac * dense_gf))
        assert got.within and abs(got.error) <= 0.02
        assert float(peers.build(method, m, got.knob).image_gflops()[0]) == got.gflops


def test_match_says_when_the_knob_is_too_coarse():
    m = madtp_deploy.load("madtp-clip-tiny")
    # 5x5 patches (26 tokens) and 5x6 (31) are the grids around 28 tokens' worth of GFLOPs
    g25, g30 = (float(peers.build("lowres", m, g).image_gflops()[0]) for g in ((5, 5), (5, 6)))
    got = peers.match("lowres", m, (g25 + g30) / 2)
    assert got.knob in ((5, 5), (5, 6)) and not got.within and "OUTSIDE" in got.line()
    assert peers.match("lowres", m, g30).within


def test_own_image_gflops_of_madtp_dense_and_peer(tiny_model, dense):
    px, _ = tiny_inputs(4, seed=1)
    own = peers.own_image_gflops(tiny_model, px, batch_size=2)
    one = torch.cat([peers.own_image_gflops(tiny_model, px[i:i + 1]) for i in range(4)])
    assert torch.equal(own, one) and tiny_model.mode == madtp_deploy.load(TINY, temperature=3.0).mode
    assert torch.allclose(peers.own_image_gflops(dense, px), flops.dense_flops(dense.spec)[0].gflops.expand(4))


def test_bad_knobs_and_methods_are_usage_errors(dense):
    for method, knob in (("tome", (40, 0)), ("topk", 0.0), ("lowres", (9, 1)), ("merge", 1)):
        with pytest.raises(UsageError):
            peers.build(method, dense, knob)


def test_evaluate_a_peer_matched_to_madtp(scenes_dir, tiny_model):
    from madtp_deploy.data.dataset import load, tokenizer_for
    from madtp_deploy.evaluate import evaluate

    m = madtp_deploy.load(TINY, mode="invariant", temperature=3.0)
    split = load(scenes_dir, "test")
    tok = tokenizer_for(scenes_dir, m.spec)
    ref = evaluate(m, split, tok, batch_size=8)
    lines = []
    r = evaluate(madtp_deploy.load(TINY), split, tok, 8, method="topk", match=m, want_ranks=True, log=lines.append)
    assert r["method"] == "topk" and r["knob"].startswith("keep=") and "topk:" in lines[0]
    assert r["match"]["target_gflops_image"] == pytest.approx(ref["gflops_image"]["mean"])
    assert r["gflops_image"]["mean"] == pytest.approx(r["match"]["gflops_image"])
    assert r["gflops_image"]["min"] == r["gflops_image"]["max"] < r["gflops_image_dense"]
    assert len(r["ranks"]["img"]) == r["captions"] and 0 <= r["img_r1"] <= 100
    with pytest.raises(UsageError):
        evaluate(m, split, tok, 8, method="tome")           # no knob, no --match
    with pytest.raises(UsageError):
        evaluate(m, split, tok, 8, match=m)                  # --match without a peer
