"""The pruned tower, written once: CLIP's two towers, BLIP's ViT and BLIP's text / fusion encoder run it.

Per layer: MAG's A at the layer's input, the block's self-attention (with the layout's attention
bias), DTP's scores and threshold, the prune step, the relayout onto the kept tokens, the block's
remaining sub-layers; with the keep counts, the MAG features (`want_align`) and a tracked token
(`track`) carried along. The pruning math is `madtp_deploy.pruning`'s; the layouts are models/layout.py's.

What differs per family comes from the blocks, which provide:
- `q_map`: the module that maps tokens into the alignment space (CLIP's per-block
  `query_model.q_map`), or None where tokens meet `space_dict` directly (BLIP, `map_func=False`);
- the self-attention sub-layer in three steps, so that the layout moves stay here:
  `attn_in(rows) -> (projection, ...)` per token (CLIP, ViT: the fused qkv; BERT: q, k, v),
  `attend(*padded projections, bias) -> (merged heads, attn [B, H, L, L], attn·v [B, H, L, dh])`,
  `attn_out(merged rows, rows) -> rows` (output projection and residual);
- `feed_forward(lay, rows, cross) -> rows`: what follows (the MLP; BERT's cross-attention to
  `cross`, then its FFN).
and from the caller: `min_keep` and `track` (CLIP text's EOT rule), `score_fn` (NLVR2's pair rule,
the ablations), `capacity` (static shapes), `causal`, `cross` and `final` (BLIP ViT's last LayerNorm).

One statement per step, layout moves on lines of their own, in a function named `forward`: the
exporter keeps only the frames of functions named `forward` in a node's stack trace, and the bench's
profile (benchmark/profile.py) attributes kernel time by those lines (`lay.rows(`, `prune_step(`,
`q_map`, `token_attention_map(`, `attention_bias(`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import pruning
from ..pruning import prune_step
from .layout import Packed, Padded

NEG = torch.finfo(torch.float32).min


@dataclass
class TowerOutput:
    x: torch.Tensor                    # [B, L, C] final hidden states (token 0 at 0), padded form
    valid: torch.Tensor                # [B, L] bool
    track: torch.Tensor | None         # the tracked marker after the last layer (or None)
    kept: torch.Tensor                 # [B, layers] int64: valid tokens after each layer
    align: torch.Tensor | None         # [B, M, D] MAG pooled features summed over layers (want_align)
    overflow: torch.Tensor | None      # [B, layers] bool, with capacities: an instance wanted more slots


def layout_for(mode: str, capacity=None):
    """The layout a mode runs on: packed rows, or padded (reference, invariant, fixed capacities:
    their slots stay padded, no data-dependent sizes)."""
    return Packed if mode == "packed" and capacity is None else Padded


def attention_bias(valid: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """Additive attention bias: 0 for valid keys, NEG for the others [B, 1, 1, L] (causal: and for
    future keys, [B, 1, L, L])."""
    n = valid.shape[1]
    bias = torch.zeros(valid.shape[0], 1, 1, n, dtype=torch.float32, device=valid.device)
    bias = bias.masked_fill(~valid[:, None, None, :], NEG)
    if causal:
        pos = torch.arange(n, device=valid.device)
        future = pos[None, :] > pos[:, None]
        bias = bias.masked_fill(future, NEG)
    return bias


def forward(blocks, x: torch.Tensor, valid: torch.Tensor, space_dict: torch.Tensor, temperature: float,
            mode: str, min_keep: torch.Tensor, *, track: torch.Tensor | None = None, want_align: bool = False,
            score_fn=None, capacity=None, causal: bool = False, cross=None, final=None) -> TowerOutput:
    """Run `blocks` on x [B, L, C] (token 0, CLS / SOT / [ENC], never pruned) with its valid mask;
    prune after each self-attention when temperature > 0.

    `mode` picks the batch semantics (reference: max-keep; invariant and packed: each instance on its
    own) and the layout (packed: per-token work on the valid rows only). `min_keep` [B]: a layer is
    skipped for an instance keeping <= it (pruning.effective_keep). `track` [B, L] bool: a token
    always kept and followed. `score_fn(attn=, head_out=, attn_map=, valid=, temperature=)` ->
    (tis, theta) replaces MADTP's scores and threshold. `capacity`: one slot count per layer (static
    shapes). `cross`: passed to every block's feed_forward. `final`: applied to the rows last.
    """
    semantics = "reference" if mode == "reference" else "invariant"
    make_layout = layout_for(mode, capacity)
    kept, overflow, align = [], [], None
    prune = temperature > 0
    lay = make_layout(valid)
    rows = lay.rows(x)
    bias = attention_bias(valid, causal)  # rebuilt after every layer that prunes
    for i, block in enumerate(blocks):
        if prune:
            q = lay.mag_rows(rows)
            if block.q_map is not None:  # CLIP: the block maps its tokens into the alignment space
                q = block.q_map(q)
                q = lay.mag_tokens(q)
                attn_map = pruning.token_attention_map(q, space_dict)
            else:  # BLIP: tokens meet space_dict directly, A computed on the layout's rows
                a = pruning.token_attention_map(q, space_dict)
                attn_map = lay.mag_tokens(a)
                q = lay.mag_tokens(q) if want_align else None
            if want_align:
                f = pruning.pooled_features(q, attn_map, valid[:, 1:])
                align = f if align is None else align + f
        proj = block.attn_in(rows)
        proj = [lay.unrows(p) for p in proj]
        merged, attn, head_out = block.attend(*proj, bias)
        merged = lay.rows(merged)
        rows = block.attn_out(merged, rows)
        if prune:
            tis, theta = score_fn(attn=attn, head_out=head_out, attn_map=attn_map, valid=valid[:, 1:],
                                  temperature=temperature) if score_fn is not None else (None, None)
            x = lay.unrows(rows)
            r = prune_step(x, valid, attn, head_out, attn_map, temperature, min_keep, semantics, track,
                           tis, theta, capacity=None if capacity is None else capacity[i])
            valid, track = r.valid, r.track
            lay = make_layout(valid)
            rows = lay.rows(r.x)
            bias = attention_bias(valid, causal)
            kept.append(r.kept)
            if r.overflow is not None:
                overflow.append(r.overflow)
        else:
            kept.append(valid.sum(1))
        rows = block.feed_forward(lay, rows, cross)
    if final is not None:
        rows = final(rows)
    x = lay.unrows(rows)
    return TowerOutput(x, valid, track, torch.stack(kept, 1), align, torch.stack(overflow, 1) if overflow else None)
