"""The peers' reductions against hand computations (ToMe's merge, EViT's fuse, proportional attention)."""

import math

import pytest
import torch

import madtp_deploy
from madtp_deploy.peers.tome import ToMeCLIP, bipartite_merge, even_schedule, keys_of
from madtp_deploy.peers.topk import keep_counts, topk_fuse


def _tokens():
    # CLS, t1, t2, t3, t4 with 3 features each (easy to average by hand)
    return torch.tensor([[[9.0, 9, 9], [1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 3, 3]]])


def _keys():
    # A = {t1, t3}, B = {t2, t4}: t1 -> t4 (cos 0.95) and t3 -> t4 (0.82) beat t3 -> t2 (0.8), t1 -> t2 (0).
    # CLS's key equals t4's: were CLS matched it would be the strongest edge.
    k4 = [0.95, math.sqrt(1 - 0.95 ** 2)]
    return torch.tensor([[k4, [1.0, 0], [0, 1.0], [0.6, 0.8], k4]]) * 2.0  # scale: cosine ignores it


def test_bipartite_merge_r1_by_hand():
    size = torch.tensor([[1.0, 2, 1, 1, 1]])  # t1 already stands for 2 patches
    x, s = bipartite_merge(_tokens(), size, _keys(), 1)
    # t1 (size 2) merges into t4: (2·t1 + 1·t4) / 3, size 3; t3 stays; order: CLS, kept A, then B
    want = torch.tensor([[[9.0, 9, 9], [0, 0, 1], [0, 1, 0], [(2 + 3) / 3, 3 / 3, 3 / 3]]])
    assert torch.allclose(x, want) and s.tolist() == [[1.0, 1, 1, 3]]


def test_bipartite_merge_r2_by_hand():
    x, s = bipartite_merge(_tokens(), torch.tensor([[1.0, 2, 1, 1, 1]]), _keys(), 2)
    # t1 and t3 both merge into t4: (2·t1 + t3 + t4) / 4
    want = torch.tensor([[[9.0, 9, 9], [0, 1, 0], [(2 + 3) / 4, 3 / 4, (1 + 3) / 4]]])
    assert torch.allclose(x, want) and s.tolist() == [[1.0, 1, 4]]


def test_keys_are_averaged_over_heads():
    qkv = torch.arange(2 * 12, dtype=torch.float32).reshape(1, 2, 12)  # C = 4, 2 heads of 2
    k = keys_of(qkv, heads=2)
    assert k.tolist() == [[[(4 + 6) / 2, (5 + 7) / 2], [(16 + 18) / 2, (17 + 19) / 2]]]


def test_proportional_attention_equals_attention_over_the_duplicates():
    """A token of size 2 with bias log 2 attends like two identical copies of it (ToMe §3)."""
    m = madtp_deploy.load("clip-tiny-test")
    block = m.visual.transformer.resblocks[0]
    peer = ToMeCLIP(m, 0)
    g = torch.Generator().manual_seed(0)
    cls, u, w = torch.randn(3, 1, 1, 128, generator=g).unbind(0)
    dup = torch.cat([cls, u, u, w], 1)
    merged = torch.cat([cls, u, w], 1)
    size = torch.tensor([[1.0, 2.0, 1.0]])
    want, _, _ = block.attn.attend(block.attn.qkv(dup), 0.0)
    got, _, _ = block.attn.attend(block.attn.qkv(merged), peer.attention_bias(size))
    assert torch.allclose(got, want[:, [0, 1, 3]], atol=1e-6)


def test_even_schedule_caps_at_half_the_patches():
    assert even_schedule(7, 4, 65) == (2, 2, 2, 1)
    # 64 patches: at most 32 merge in layer 0, then 16 of the 32 left, ...
    assert even_schedule(400, 4, 65) == (32, 16, 8, 4)


def test_one_patch_token_left_merges_nothing():
    """Catches: the cap letting the last patch token merge with no B token to merge into (an IndexError
    inside bipartite_merge when a budget merges deep models down to CLS + 1, e.g. ToMe matched to the
    shipped 8-layer model)."""
    assert even_schedule(100, 8, 17) == (8, 4, 2, 1, 0, 0, 0, 0)   # 16 -> 8 -> 4 -> 2 -> 1 patch tokens
    dense = madtp_deploy.load("madtp-clip-deep", temperature=0.0)  # 8 layers, 64 patches
    with pytest.raises(ValueError, match="layer 6 has 1 patch tokens, merges at most 0"):
        ToMeCLIP(dense, (32, 16, 8, 4, 2, 1, 1, 0))
    peer = ToMeCLIP(dense, 400)                                     # the largest budget: down to CLS + 1
    assert peer.r == (32, 16, 8, 4, 2, 1, 0, 0)
    enc = peer.encode_image(torch.randn(2, 3, dense.spec.image_size, dense.spec.image_size))
    assert torch.isfinite(enc.embeds).all() and enc.kept[:, -1].tolist() == [2, 2]  # CLS + 1 after layer 6


def test_topk_fuse_by_hand():
    score = torch.tensor([[0.1, 0.4, 0.2, 0.3]])
    out = topk_fuse(_tokens(), score, 2)
    # keep t2 (0.4) and t4 (0.3) in their order; fuse t1, t3 weighted 0.1 : 0.2
    want = torch.tensor([[[9.0, 9, 9], [0, 1, 0], [3, 3, 3], [1 / 3, 0, 2 / 3]]])
    assert torch.allclose(out, want)


@pytest.mark.parametrize("rate,want", [(0.5, (32, 17, 9, 5)), (0.99, (64, 64, 64, 64)), (0.97, (62, 61, 60, 59))])
def test_keep_counts(rate, want):
    # k = round(rate · n), the fused token counted in n (0.97: 62 of 64, 61 of 63, ...);
    # no layer fuses fewer than 2 tokens (0.99: 63 of 64 would fuse one)
    assert keep_counts(rate, 64, 4) == want
