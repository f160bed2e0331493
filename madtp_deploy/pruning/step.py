"""One DTP step: scores -> threshold -> keep -> gather + package. Pure; used by every tower."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import dtp


@dataclass
class PruneResult:
    x: torch.Tensor          # [B, 1 + K + P, C]: CLS, K gathered slots, P (0 or 1) package slot
    valid: torch.Tensor      # [B, 1 + K + P] bool
    track: torch.Tensor | None  # a [B, L] bool marker (CLIP text: the EOT token) carried along
    kept: torch.Tensor       # [B] int64: valid tokens after this layer (CLS and package included)
    tis: torch.Tensor        # [B, N] the token importance scores (for inspection and ablations)
    overflow: torch.Tensor | None = None  # [B] bool, with a capacity: the instance wanted more slots


def prune_step(x: torch.Tensor, valid: torch.Tensor, attn: torch.Tensor, head_out: torch.Tensor,
               attn_map: torch.Tensor, temperature: float, min_keep: torch.Tensor, mode: str,
               track: torch.Tensor | None = None, tis: torch.Tensor | None = None,
               theta: torch.Tensor | None = None, capacity: int | None = None) -> PruneResult:
    """Prune the non-CLS tokens of x ([B, L, C], CLS at 0) after the attention sub-layer.

    `track` (optional, [B, L] bool) marks tokens that must be kept and followed through the gather.
    `tis` / `theta` override the importance score and the threshold (ablations); by default they are
    MADTP's (SA + TA + CA) / 3 and the alignment-derived threshold.

    Where the kept tokens go: without `capacity` the batch gets max_b(k_eff) slots plus a package
    slot when any instance pruned (two host syncs; data-dependent shapes in an exported graph).
    With a fixed `capacity` the output always has 1 + capacity + 1 slots (static shapes): an
    instance whose decision fits gets exactly its answer; one that wants more keeps its top
    `capacity` tokens by TIS and merges the rest into its package token (`overflow` is True).
    """
    tokens, tv = x[:, 1:], valid[:, 1:]
    if tis is None:
        tis = dtp.importance_score(dtp.self_attention_score(attn, tv),
                                   dtp.token_attention_score(attn_map, tv),
                                   dtp.cls_attention_score(attn, head_out))
    if theta is None:
        theta = dtp.threshold(attn_map, tis, temperature, tv)
    n_valid = tv.sum(dim=1)
    k = dtp.keep_counts(tis, theta, tv)
    k_eff, pruned = dtp.effective_keep(k, n_valid, min_keep, mode, tokens.shape[1])
    overflow = None
    if capacity is not None:
        slots = min(capacity, tokens.shape[1])  # a static size: no host sync, no data-dependent shape
        overflow = k_eff > slots
        k_eff = torch.minimum(k_eff, torch.full_like(k_eff, slots))
        pruned = k_eff < n_valid
    force = track[:, 1:] if track is not None else None
    keep = dtp.keep_mask(tis, k_eff, tv, force)

    if capacity is None:
        # Host sync 1 of 2: the batch's slot count. Under torch.export it becomes an unbacked symbol,
        # so the exported graph computes it at run time (TopK with a run-time K).
        slots = k_eff.max().item()  # type: ignore[assignment]  # an unbacked SymInt under torch.export: never int()
        torch._check(slots >= 1)
        torch._check(slots <= tokens.shape[1])
        # Host sync 2 of 2: the package slot exists only when some instance pruned (a run-time size).
        n_pkg = pruned.long().max().item()
        torch._check(n_pkg >= 0)
        torch._check(n_pkg <= 1)
    else:
        n_pkg = 1
    order = dtp.compaction_order(keep, slots)
    gathered = dtp.gather_tokens(tokens, order)
    slot_valid = torch.arange(slots, device=x.device)[None, :] < k_eff[:, None]

    length = 1 + slots + n_pkg
    package = dtp.package_token(tokens, tis, tv & ~keep)
    new_x = torch.cat([x[:, :1], gathered, package], 1)[:, :length]
    new_valid = torch.cat([valid[:, :1], slot_valid, pruned[:, None]], 1)[:, :length]
    new_track = None
    if track is not None:
        t = torch.gather(track[:, 1:], 1, order)
        new_track = torch.cat([track[:, :1], t, torch.zeros_like(t[:, :1])], 1)[:, :length]
    return PruneResult(new_x, new_valid, new_track, 1 + k_eff + pruned.long(), tis, overflow)
