"""Static top-k pruning, EViT-style: Liang, Ge, Tong, Song, Wang, Xie, "Not All Patches are What You
Need: Expediting Vision Transformers via Token Reorganizations", ICLR 2022 (arXiv 2202.07800).
Written from the paper (section 3), training-free here (EViT fine-tunes; we do not).

In each block, between attention and MLP: the patch tokens are ranked by the attention CLS pays
them (averaged over heads); the top k = round(ρ · n) of the n patch tokens stay, the others are
fused into one token, their average weighted by that attention. The fused token is an ordinary
token in later blocks. ρ (the keep rate) is the same for every layer and every image: static shapes.
"""

from __future__ import annotations

import torch

from .base import PeerCLIP


def cls_attention(attn: torch.Tensor) -> torch.Tensor:
    """[B, H, L, L] attention probabilities -> CLS's attention to each patch token, mean over heads [B, L - 1]."""
    return attn[:, :, 0, 1:].mean(1)


def topk_fuse(x: torch.Tensor, score: torch.Tensor, k: int) -> torch.Tensor:
    """x [B, 1 + N, C], score [B, N] -> [B, 1 + k + 1, C]: CLS, the k top-scored patch tokens (in
    their order), and the others fused: Σ (score_j / Σ score) · x_j over the N - k others."""
    c = x.shape[-1]
    order = score.argsort(-1, descending=True)
    top, rest = order[:, :k].sort(-1).values, order[:, k:]
    xs = x[:, 1:]
    w = score.gather(1, rest)
    w = w / w.sum(-1, keepdim=True)
    fused = w[:, None, :] @ xs.gather(1, rest[..., None].expand(-1, -1, c))   # [B, 1, C]
    return torch.cat([x[:, :1], xs.gather(1, top[..., None].expand(-1, -1, c)), fused], 1)


def keep_counts(rate: float, patches: int, layers: int) -> tuple[int, ...]:
    """Patch tokens kept by each layer at keep rate ρ: k = round(ρ n) of the n entering (the fused
    token of the layer before counts); a layer that would fuse fewer than 2 tokens prunes nothing."""
    out, n = [], patches
    for _ in range(layers):
        k = max(1, int(rate * n + 0.5))
        if n - k >= 2:
            out.append(k)
            n = k + 1
        else:
            out.append(n)
    return tuple(out)


class TopKCLIP(PeerCLIP):
    method = "topk"
    code = ("topk.py",)

    def __init__(self, model, rate: float):
        super().__init__(model)
        if not 0.0 < float(rate) <= 1.0:
            raise ValueError(f"top-k keep rate {rate!r}: need 0 < rate <= 1")
        self.rate = float(rate)
        self.k = keep_counts(self.rate, self.spec.vision_tokens - 1, self.spec.vision_layers)

    @property
    def knob(self) -> str:
        return f"keep={self.rate:.3f} (k=" + ",".join(map(str, self.k)) + ")"

    def schedule(self):
        out, n = [], self.spec.vision_tokens - 1
        for k in self.k:
            m = k + 1 if k < n else n
            out.append((n + 1, m + 1))
            n = m
        return out

    def reduce(self, i, x, size, qkv, attn):
        n_in, n_out = self.schedule()[i]
        if n_out == n_in:
            return x, size
        x = topk_fuse(x, cls_attention(attn), self.k[i])
        return x, size[:, :x.shape[1]]

    def reduction_macs(self, i, n_in):
        n_out = self.schedule()[i][1]
        return 0.0 if n_out == n_in else float((n_in - 1 - self.k[i]) * self.spec.vision_width)
