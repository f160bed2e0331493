"""The pruning math against the reference's formulas (double125/MADTP), on hand-made tensors, with loops as the reference."""

import math

import torch

from madtp_deploy import pruning
from madtp_deploy.pruning import dtp

torch.manual_seed(0)
B, H, N, M, C = 2, 3, 6, 4, 5


def _attn():
    return torch.softmax(torch.randn(B, H, N + 1, N + 1), -1)


def test_self_attention_score_matches_loops():
    attn, valid = _attn(), torch.ones(B, N, dtype=torch.bool)
    sa = pruning.self_attention_score(attn, valid)
    want = torch.zeros(B, N)
    for b in range(B):
        for n in range(N):
            want[b, n] = sum(max(attn[b, h, i, n + 1] for h in range(H)) for i in range(1, N + 1))
        want[b] /= want[b].sum() + 1e-8
    torch.testing.assert_close(sa, want)


def test_token_attention_score_is_normalised_row_max_even_when_negative():
    a = torch.tensor([[[1.0, -2.0], [-3.0, -1.0], [0.5, 0.25]]])
    ta = pruning.token_attention_score(a, torch.ones(1, 3, dtype=torch.bool))
    raw = torch.tensor([1.0, -1.0, 0.5])
    torch.testing.assert_close(ta[0], raw / (raw.sum() + 1e-8))


def test_cls_attention_score_weights_heads_by_output_norm():
    attn = _attn()
    out = torch.randn(B, H, N + 1, 7)
    ca = pruning.cls_attention_score(attn, out)
    want = torch.zeros(B, N)
    for b in range(B):
        for n in range(N):
            norms = [out[b, h, n + 1].norm() for h in range(H)]
            want[b, n] = sum(attn[b, h, 0, n + 1] * norms[h] / (sum(norms) + 1e-8) for h in range(H))
    torch.testing.assert_close(ca, want)


def test_cls_attention_is_zero_for_a_causal_tower():
    scores = torch.randn(B, H, N + 1, N + 1).masked_fill(torch.ones(N + 1, N + 1, dtype=torch.bool).triu(1), -1e30)
    ca = pruning.cls_attention_score(torch.softmax(scores, -1), torch.randn(B, H, N + 1, 4))
    assert torch.all(ca == 0)


def test_threshold_is_min_over_alignment_tokens_of_softmax_weighted_tis():
    a, tis, t = torch.randn(B, N, M), torch.rand(B, N), 0.7
    theta = pruning.threshold(a, tis, t, torch.ones(B, N, dtype=torch.bool))
    for b in range(B):
        s = []
        for m in range(M):
            w = [math.exp(a[b, n, m] / t) for n in range(N)]
            s.append(sum(w[n] / sum(w) * tis[b, n] for n in range(N)))
        assert abs(theta[b].item() - min(s)) < 1e-6


def test_higher_temperature_moves_threshold_towards_mean_tis():
    g = torch.Generator().manual_seed(0)  # not the global RNG: its state depends on the tests run before
    a, tis = torch.randn(1, 50, 8, generator=g) * 3, torch.rand(1, 50, generator=g)
    valid = torch.ones(1, 50, dtype=torch.bool)
    gaps = [abs(pruning.threshold(a, tis, t, valid) - tis.mean()).item() for t in (0.1, 1.0, 100.0)]
    assert gaps[0] > gaps[1] > gaps[2]


def test_keep_counts_and_skip_rules():
    tis = torch.tensor([[0.1, 0.5, 0.3, 0.9], [0.2, 0.2, 0.8, 0.1]])
    valid = torch.ones(2, 4, dtype=torch.bool)
    k = pruning.keep_counts(tis, torch.tensor([0.25, 0.5]), valid)
    assert k.tolist() == [3, 1]
    n = valid.sum(1)
    # reference: everyone keeps K = max k = 3, but N - K = 1 -> the whole layer is skipped
    k_eff, pruned = dtp.effective_keep(k, n, torch.tensor([1, 1]), "reference", 4)
    assert k_eff.tolist() == [4, 4] and not pruned.any()
    # invariant: instance 0 skips (N-k = 1), instance 1 skips too (k <= min_keep = 1)
    k_eff, pruned = dtp.effective_keep(k, n, torch.tensor([1, 1]), "invariant", 4)
    assert k_eff.tolist() == [4, 4] and not pruned.any()
    k_eff, pruned = dtp.effective_keep(torch.tensor([2, 1]), n, torch.tensor([1, 0]), "invariant", 4)
    assert k_eff.tolist() == [2, 1] and pruned.tolist() == [True, True]
    k_eff, pruned = dtp.effective_keep(torch.tensor([2, 1]), n, torch.tensor([1, 0]), "reference", 4)
    assert k_eff.tolist() == [2, 2] and pruned.all()


def test_keep_mask_takes_top_k_and_honours_forced_tokens():
    tis = torch.tensor([[0.1, 0.5, 0.3, 0.9]])
    valid = torch.ones(1, 4, dtype=torch.bool)
    assert pruning.keep_mask(tis, torch.tensor([2]), valid).tolist() == [[False, True, False, True]]
    forced = torch.tensor([[True, False, False, False]])
    assert pruning.keep_mask(tis, torch.tensor([2]), valid, forced).tolist() == [[True, False, False, True]]
    masked = torch.tensor([[True, True, True, False]])
    assert pruning.keep_mask(tis, torch.tensor([2]), masked).tolist() == [[False, True, True, False]]


def test_compaction_keeps_original_order_kept_first():
    keep = torch.tensor([[False, True, False, True, True]])
    assert pruning.compaction_order(keep, 4).tolist() == [[1, 3, 4, 0]]


def test_package_token_is_tis_weighted_mean_of_the_rest():
    x = torch.randn(1, 4, C)
    tis = torch.tensor([[0.1, 0.5, 0.3, 0.9]])
    merge = torch.tensor([[True, False, True, False]])
    pkg = pruning.package_token(x, tis, merge)
    want = (0.1 * x[0, 0] + 0.3 * x[0, 2]) / (0.4 + 1e-8)
    torch.testing.assert_close(pkg[0, 0], want)


def test_alignment_loss_is_mean_one_minus_cosine():
    fv, ft = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
    want = sum(1 - torch.dot(fv[b, m], ft[b, m]) / (fv[b, m].norm() * ft[b, m].norm())
               for b in range(2) for m in range(3)) / 6
    assert abs(pruning.alignment_loss(fv, ft).item() - want.item()) < 1e-6
    assert pruning.alignment_loss(fv, fv).abs().item() < 1e-6


def test_pooled_features_softmax_over_tokens():
    q, sd = torch.randn(2, 5, 8), torch.randn(3, 8)
    a = pruning.token_attention_map(q, sd)
    torch.testing.assert_close(a, torch.einsum("bnd,md->bnm", q, sd))
    f = pruning.pooled_features(q, a)
    w = torch.softmax(a / math.sqrt(8), dim=1)
    torch.testing.assert_close(f, torch.einsum("bnm,bnd->bmd", w, q))
