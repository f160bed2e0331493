"""MAG: multi-modality alignment guidance, as pure tensor functions.

Shapes: q [B, N, D] (non-CLS tokens mapped to the alignment space), space_dict [M, D],
valid [B, N] bool (padding and slots of pruned-away tokens are False).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

NEG = torch.finfo(torch.float32).min


def token_attention_map(q: torch.Tensor, space_dict: torch.Tensor) -> torch.Tensor:
    """A = q · space_dictᵀ: raw dot products, no scaling. [B, N, M]."""
    return torch.matmul(q, space_dict.t())


def pooled_features(q: torch.Tensor, attn_map: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """F = softmax_N(A / sqrt(D))ᵀ · q: one pooled feature per alignment token. [B, M, D]."""
    logits = attn_map / math.sqrt(q.shape[-1])
    if valid is not None:
        logits = logits.masked_fill(~valid[:, :, None], NEG)
    weights = torch.softmax(logits, dim=1).transpose(1, 2)
    return torch.bmm(weights, q)


def alignment_loss(f_image: torch.Tensor, f_text: torch.Tensor) -> torch.Tensor:
    """L_sim = mean over (b, m) of 1 - cos(Fv[b, m], Ft[b, m]); F summed over layers by the caller."""
    return (1.0 - F.cosine_similarity(f_image, f_text, dim=-1, eps=1e-10)).mean()
