"""DTP: dynamic token pruning, as pure tensor functions (the reference code double125/MADTP, formula by formula).

Conventions: the sequence is [CLS, N tokens]; `attn` is [B, H, L, L] with L = N + 1 (CLS at 0),
`head_out` is attn·v per head [B, H, L, dh], `attn_map` is MAG's A over the N tokens [B, N, M],
`valid` [B, N] marks real tokens (False: padding, or a slot another instance needed).
With every token valid these are exactly the reference's formulas.
"""

from __future__ import annotations

import torch

EPS = 1e-8
NEG = torch.finfo(torch.float32).min


def self_attention_score(attn: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """SA[b,n] = Σ_i max_h attn[b,h,i,n] over non-CLS query rows i; normalised over n."""
    per_row = attn.amax(dim=1)[:, 1:, 1:]  # [B, N(query), N(key)]; reduce heads before slicing
    sa = (per_row * valid[:, :, None].to(per_row.dtype)).sum(dim=1)
    sa = sa * valid.to(sa.dtype)
    return sa / (sa.sum(dim=1, keepdim=True) + EPS)


def token_attention_score(attn_map: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """TA[b,n] = max_m A[b,n,m]; normalised over n (A may be negative: so does the reference)."""
    ta = attn_map.amax(dim=2) * valid.to(attn_map.dtype)
    return ta / (ta.sum(dim=1, keepdim=True) + EPS)


def cls_attention_score(attn: torch.Tensor, head_out: torch.Tensor) -> torch.Tensor:
    """CA[b,n] = Σ_h attn[b,h,0,n] · ||o[b,h,n]|| / Σ_h ||o[b,h,n]||; not renormalised.

    Zero for a causal tower (row 0 sees only itself). Padding keys have attn 0, so no mask is needed.
    """
    norms = head_out.norm(dim=-1)[:, :, 1:]  # [B, H, N]
    w = norms / (norms.sum(dim=1, keepdim=True) + EPS)
    return (attn[:, :, 0, 1:] * w).sum(dim=1)


def importance_score(sa: torch.Tensor, ta: torch.Tensor, ca: torch.Tensor) -> torch.Tensor:
    """TIS = (SA + TA + CA) / 3."""
    return (sa + ta + ca) / 3.0


def threshold(attn_map: torch.Tensor, tis: torch.Tensor, temperature: float, valid: torch.Tensor) -> torch.Tensor:
    """θ_b = min_m Σ_n softmax_N(A / T)[b,n,m] · TIS[b,n]. [B]."""
    logits = (attn_map / temperature).masked_fill(~valid[:, :, None], NEG)
    p = torch.softmax(logits, dim=1)  # [B, N, M]
    s = torch.bmm(p.transpose(1, 2), tis[:, :, None]).squeeze(-1)  # [B, M]
    return s.amin(dim=1)


def keep_counts(tis: torch.Tensor, theta: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """k_b = #{n valid : TIS[b,n] > θ_b}. int64 [B]."""
    return ((tis > theta[:, None]) & valid).sum(dim=1)


def effective_keep(k: torch.Tensor, n_valid: torch.Tensor, min_keep: torch.Tensor, mode: str,
                   n_slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the skip rule and the batch mode. Returns (k_eff [B], pruned [B] bool).

    reference: K = max_b k_b for everyone; the whole layer is skipped when K <= max_b min_keep or
    N - K <= 1 (N the slot count), as the reference does. invariant: each instance on its own.
    A skipped instance keeps all its valid tokens and gets no package token.
    """
    if mode == "reference":
        big_k = k.max()
        skip = (big_k <= min_keep.max()) | (n_slots - big_k <= 1)
        k_eff = torch.where(skip, n_valid, torch.minimum(big_k.expand_as(n_valid), n_valid))
    elif mode == "invariant":
        skip = (k <= min_keep) | (n_valid - k <= 1)
        k_eff = torch.where(skip, n_valid, k)
    else:
        raise ValueError(f"mode must be 'reference' or 'invariant', got {mode!r}")
    return k_eff, k_eff < n_valid


def keep_mask(tis: torch.Tensor, k_eff: torch.Tensor, valid: torch.Tensor,
              force_keep: torch.Tensor | None = None) -> torch.Tensor:
    """Each instance keeps its top-k_eff valid tokens by TIS (force_keep ones first). [B, N] bool."""
    sel = tis.masked_fill(~valid, -1e30)  # finite sentinels: onnxruntime TopK mishandles inf
    if force_keep is not None:
        sel = sel.masked_fill(force_keep & valid, 1e30)
    order = torch.topk(sel, sel.shape[1], dim=1, largest=True, sorted=True).indices
    # rank of every token (the inverse permutation of `order`); scattered as int64, which TensorRT's
    # ScatterElements supports (it does not take BOOL data)
    positions = torch.arange(sel.shape[1], device=sel.device).expand_as(order)
    rank = torch.empty_like(order).scatter(1, order, positions)
    return rank < k_eff[:, None]


def compaction_order(keep: torch.Tensor, slots: int) -> torch.Tensor:
    """Indices of the first `slots` tokens when kept ones go first, each group in original order."""
    n = keep.shape[1]
    pos = torch.arange(n, device=keep.device, dtype=torch.float32)
    key = torch.where(keep, pos, pos + n)
    return torch.topk(key, slots, dim=1, largest=False, sorted=True).indices


def package_token(tokens: torch.Tensor, tis: torch.Tensor, merge: torch.Tensor) -> torch.Tensor:
    """x_pkg = Σ_j (TIS_j / Σ TIS_rest) · x_j over the merged (valid, not kept) tokens. [B, 1, C]."""
    w = tis * merge.to(tis.dtype)
    w = w / (w.sum(dim=1, keepdim=True) + EPS)
    return torch.bmm(w[:, None, :], tokens)


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[b, index[b, k]] for [B, N, C] x and [B, K] index."""
    return torch.gather(x, 1, index[:, :, None].expand(-1, -1, x.shape[-1]))
