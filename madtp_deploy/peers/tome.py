"""ToMe: Bolya, Fu, Dai, Zhang, Feichtenhofer, Hoffman, "Token Merging: Your ViT But Faster", ICLR 2023
(arXiv 2210.09461). Written from the paper (section 3), training-free on the dense model.

In each block, between attention and MLP, r tokens are merged away by bipartite soft matching:
the tokens are split alternately into sets A and B; each A token is linked to its most similar B
token (cosine similarity of the attention keys, averaged over heads); the r most similar links
are merged (a size-weighted average into the B token), the other A tokens stay. Each token carries
its size s (how many patches it stands for); attention is proportional: softmax(QKᵀ/√d + log s).
CLS is protected: it is in neither set. r is the same for every image: static shapes.

The knob: r per layer. A constant r is the paper's default, capped in each layer at half its patch
tokens (all bipartite matching can merge); to reach a GFLOPs budget within a few percent the knob is
a total spread as evenly as possible over the layers (the first layers take the remainder), capped.
"""

from __future__ import annotations

import torch

from .base import PeerCLIP


def keys_of(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, L, 3C] fused q|k|v -> the keys averaged over heads, [B, L, C / heads]."""
    b, n, c3 = qkv.shape
    c = c3 // 3
    return qkv[..., c:2 * c].reshape(b, n, heads, c // heads).mean(2)


def bipartite_merge(x: torch.Tensor, size: torch.Tensor, keys: torch.Tensor, r: int):
    """Merge r of the non-CLS tokens of x [B, 1 + N, C] (sizes [B, 1 + N], keys [B, 1 + N, d]) ->
    (x, size) with 1 + N - r tokens: [CLS, the unmerged A tokens in order, the B tokens].

    A = non-CLS tokens 0, 2, 4, ...; B = 1, 3, 5, ... Each A token's edge goes to its most similar B
    token; the r strongest edges merge: B token <- (Σ s·x) / Σ s over itself and what it receives.
    """
    if r <= 0:
        return x, size
    c = x.shape[-1]
    k = keys[:, 1:]
    k = k / k.norm(dim=-1, keepdim=True)
    sim = k[:, ::2] @ k[:, 1::2].transpose(-1, -2)            # [B, Na, Nb]
    best, dst = sim.max(-1)                                    # each A token's strongest edge
    order = best.argsort(-1, descending=True)
    src = order[:, :r]                                         # A tokens merged away
    stay = order[:, r:].sort(-1).values                        # A tokens kept, in their order
    s = size[:, 1:]
    xw = x[:, 1:] * s[..., None]                               # size-weighted sums
    xa, xb, sa, sb = xw[:, ::2], xw[:, 1::2], s[:, ::2], s[:, 1::2]
    into = dst.gather(1, src)
    xb = xb.scatter_add(1, into[..., None].expand(-1, -1, c), xa.gather(1, src[..., None].expand(-1, -1, c)))
    sb = sb.scatter_add(1, into, sa.gather(1, src))
    xa, sa = xa.gather(1, stay[..., None].expand(-1, -1, c)), sa.gather(1, stay)
    size = torch.cat([size[:, :1], sa, sb], 1)
    x = torch.cat([x[:, :1], torch.cat([xa, xb], 1) / torch.cat([sa, sb], 1)[..., None]], 1)
    return x, size


def mergeable(tokens: int) -> int:
    """How many of a layer's patch tokens bipartite matching can merge, for `tokens` (CLS included): all of
    set A (ceil(patches / 2) = tokens // 2), given a B token to merge into: none when one patch is left."""
    return tokens // 2 if tokens > 2 else 0


def even_schedule(total: int, layers: int, tokens: int) -> tuple[int, ...]:
    """r per layer: `total` spread as evenly as possible (the first layers take the remainder), each
    capped at what bipartite matching can merge in that layer (half its patch tokens, the paper's
    limit) for `tokens` (CLS included) entering the first layer."""
    out, n = [], tokens
    for i in range(layers):
        r = min(total // layers + (1 if i < total % layers else 0), mergeable(n))
        out.append(r)
        n -= r
    return tuple(out)


class ToMeCLIP(PeerCLIP):
    method = "tome"
    code = ("tome.py",)

    def __init__(self, model, r):
        super().__init__(model)
        layers = self.spec.vision_layers
        n = self.spec.vision_tokens
        self.r = even_schedule(r, layers, n) if isinstance(r, int) else tuple(int(v) for v in r)
        if len(self.r) != layers or any(v < 0 for v in self.r):
            raise ValueError(f"ToMe r {r!r}: need {layers} values >= 0 (one per layer) or one total")
        for i, v in enumerate(self.r):
            if v > mergeable(n):
                raise ValueError(f"ToMe r {self.r}: layer {i} has {n - 1} patch tokens, merges at most {mergeable(n)}")
            n -= v

    @property
    def knob(self) -> str:
        return "r=" + ",".join(map(str, self.r))

    def schedule(self):
        out, n = [], self.spec.vision_tokens
        for v in self.r:
            out.append((n, n - v))
            n -= v
        return out

    def attention_bias(self, size):
        return size.log()[:, None, None, :]                    # proportional attention

    def reduce(self, i, x, size, qkv, attn):
        return bipartite_merge(x, size, keys_of(qkv, self.spec.vision_heads), self.r[i])

    def reduction_macs(self, i, n_in):
        if self.r[i] <= 0:
            return 0.0
        p = n_in - 1
        return float(((p + 1) // 2) * (p // 2) * (self.spec.vision_width // self.spec.vision_heads))
