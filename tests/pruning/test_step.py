"""prune_step against a loop re-implementation of the reference's Reduce_token (max-keep)."""

import torch

from madtp_deploy import pruning


def reference_reduce(tokens, tis, theta, max_keep):
    """The reference algorithm as double125/MADTP computes it (all tokens valid, batch max-keep)."""
    b, n, _ = tokens.shape
    k = max(int((tis[i] > theta[i]).sum()) for i in range(b))
    if k <= max_keep or n - k <= 1:
        return None, k
    kept, pkgs = [], []
    for i in range(b):
        order = torch.argsort(tis[i], descending=True)
        kept.append(set(order[:k].tolist()))
        rest = order[k:]
        w = tis[i, rest] / (tis[i, rest].sum() + 1e-8)
        pkgs.append((w[:, None] * tokens[i, rest]).sum(0))
    return (kept, torch.stack(pkgs)), k


def _case(seed, b=4, n=12, m=5, c=8, h=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n + 1, c, generator=g)
    attn = torch.softmax(torch.randn(b, h, n + 1, n + 1, generator=g) * 2, -1)
    head_out = torch.randn(b, h, n + 1, 4, generator=g)
    amap = torch.randn(b, n, m, generator=g) * 2
    return x, torch.ones(b, n + 1, dtype=torch.bool), attn, head_out, amap


def test_reference_mode_matches_reference_algorithm():
    pruned_cases = 0
    for seed in range(20):
        x, valid, attn, head_out, amap = _case(seed)
        r = pruning.prune_step(x, valid, attn, head_out, amap, 2.0, torch.ones(4, dtype=torch.long), "reference")
        theta = pruning.threshold(amap, r.tis, 2.0, valid[:, 1:])
        ref, k = reference_reduce(x[:, 1:], r.tis, theta, 1)
        if ref is None:
            torch.testing.assert_close(r.x, x)
            assert r.kept.tolist() == [13] * 4
            continue
        pruned_cases += 1
        kept_sets, pkgs = ref
        assert r.x.shape[1] == 1 + k + 1 and r.kept.tolist() == [k + 2] * 4
        for i in range(4):
            got = {int((x[i, 1:] == r.x[i, 1 + j]).all(-1).nonzero()) for j in range(k)}
            assert got == kept_sets[i]
        torch.testing.assert_close(r.x[:, -1], pkgs)
        torch.testing.assert_close(r.x[:, 0], x[:, 0])
    assert pruned_cases >= 5


def test_invariant_mode_each_instance_matches_itself_alone():
    x, valid, attn, head_out, amap = _case(3, b=6)
    ones = torch.ones(6, dtype=torch.long)
    r = pruning.prune_step(x, valid, attn, head_out, amap, 2.0, ones, "invariant")
    assert len(set(r.kept.tolist())) > 1, "test needs instances that keep different counts"
    for i in range(6):
        s = pruning.prune_step(x[i:i + 1], valid[i:i + 1], attn[i:i + 1], head_out[i:i + 1], amap[i:i + 1],
                               2.0, ones[:1], "invariant")
        own = r.x[i][r.valid[i]]
        torch.testing.assert_close(own, s.x[0])
        assert r.kept[i] == s.kept[0] == int(r.valid[i].sum())


def test_tracked_token_is_kept_and_followed():
    x, valid, attn, head_out, amap = _case(5)
    track = torch.zeros(4, 13, dtype=torch.bool)
    track[torch.arange(4), torch.tensor([2, 5, 9, 12])] = True
    r = pruning.prune_step(x, valid, attn, head_out, amap, 50.0, torch.ones(4, dtype=torch.long), "reference", track)
    assert r.x.shape[1] < 13
    idx = r.track.to(torch.int32).argmax(1)
    torch.testing.assert_close(r.x[torch.arange(4), idx], x[torch.arange(4), torch.tensor([2, 5, 9, 12])])
