"""Pruning policies the study compares with MADTP, applied to the same trained weights.

Each is a `score_fn` for MadtpCLIP: (attn, head_out, attn_map, valid, temperature) -> (tis, theta);
theta None would mean MADTP's alignment-derived threshold. Each has one knob, searched so that the
policy's mean GFLOPs equal MADTP's (see scripts/study.py).
"""

from __future__ import annotations

import torch

from .pruning import dtp


def ca_fixed(ratio: float):
    """No alignment guidance: TIS = CLS attention alone, fixed threshold ratio x (1 / valid tokens)."""
    def fn(attn, head_out, attn_map, valid, **_):
        tis = dtp.cls_attention_score(attn, head_out) * valid
        theta = ratio / valid.sum(1).clamp(min=1)
        return tis, theta
    return fn


def sa_only(temperature: float):
    """Self-attention only: TIS = SA; the threshold still comes from MAG, at its own temperature."""
    def fn(attn, head_out, attn_map, valid, **_):
        tis = dtp.self_attention_score(attn, valid)
        return tis, dtp.threshold(attn_map, tis, temperature, valid)
    return fn


def random_keep(keep: float, seed: int = 0):
    """Random keep: uniform random scores, threshold 1 - keep (each token kept with probability keep)."""
    gen = torch.Generator().manual_seed(seed)

    def fn(attn, head_out, attn_map, valid, **_):
        tis = torch.rand(valid.shape, generator=gen)
        return tis, torch.full((valid.shape[0],), 1.0 - keep)
    return fn


POLICIES = {"ca_fixed": ca_fixed, "sa_only": sa_only, "random": random_keep}
