"""CLIP (ViT image tower + causal text tower) with MADTP's MAG and DTP in every layer.

Parameter names are OpenAI CLIP's plus MADTP's `space_dict` and per-block `query_model.q_map.0`,
so OpenAI and MADTP checkpoints load by name. The pruned block loop is models/tower.py's (shared with
BLIP); the pruning math lives in `madtp_deploy.pruning`.

Every layer carries a `valid` mask over its tokens. In "reference" mode with no padding it is all
True and the computation is exactly the reference's; in "invariant" mode it masks the slots an
instance does not own (its batch neighbours kept more tokens), so answers never depend on the batch.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..modes import LIBRARY_DEFAULT, MODES, parse_mode  # noqa: F401 (MODES: the modes this model implements)
from ..specs import ClipSpec
from . import tower
from .inputs import check_pixels, check_text


@dataclass
class Encoded:
    embeds: torch.Tensor           # [B, E] projected, not normalised (like HF's get_*_features)
    kept: torch.Tensor             # [B, layers] int64: tokens an instance keeps after each layer
    tokens_in: torch.Tensor        # [B] int64: tokens entering the first layer
    align: torch.Tensor | None = None  # [B, M, sd_dim] MAG pooled features summed over layers
    overflow: torch.Tensor | None = None  # [B, layers] bool, with capacities: an instance wanted more slots


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Multi-head self-attention with nn.MultiheadAttention's parameter names, in three steps so a
    layout can run the projections on packed rows: qkv(rows) -> attend(padded qkv) -> out_proj(rows).

    `attend` returns the merged heads [B, L, C], the attention probabilities [B, H, L, L] and the
    per-head outputs attn·v [B, H, L, dh], which DTP's SA and CA scores need.
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def qkv(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.in_proj_weight, self.in_proj_bias)

    def attend(self, qkv: torch.Tensor, bias: torch.Tensor):
        b, n, c3 = qkv.shape
        c = c3 // 3
        q, k, v = qkv.reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (c // self.heads) ** -0.5 + bias
        attn = torch.softmax(scores, dim=-1)
        head_out = torch.matmul(attn, v)
        return head_out.transpose(1, 2).reshape(b, n, c), attn, head_out

    def forward(self, x: torch.Tensor, bias: torch.Tensor):
        merged, attn, head_out = self.attend(self.qkv(x), bias)
        return self.out_proj(merged), attn, head_out


class QueryModel(nn.Module):
    """MAG's per-block map of tokens into the alignment space (key: query_model.q_map.0)."""

    def __init__(self, width: int, sd_dim: int):
        super().__init__()
        self.q_map = nn.Sequential(nn.Linear(width, sd_dim))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp: int, sd_dim: int, act: str, eps: float):
        super().__init__()
        self.attn = Attention(width, heads)
        self.ln_1 = nn.LayerNorm(width, eps=eps)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, mlp)),
            ("gelu", QuickGELU() if act == "quick_gelu" else nn.GELU()),
            ("c_proj", nn.Linear(mlp, width)),
        ]))
        self.ln_2 = nn.LayerNorm(width, eps=eps)
        self.query_model = QueryModel(width, sd_dim)

    # -- the pruned tower's block interface (models/tower.py) --
    @property
    def q_map(self) -> nn.Module:
        return self.query_model.q_map

    def attn_in(self, rows: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.attn.qkv(self.ln_1(rows)),)

    def attend(self, qkv: torch.Tensor, bias: torch.Tensor):
        return self.attn.attend(qkv, bias)

    def attn_out(self, merged: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return rows + self.attn.out_proj(merged)

    def feed_forward(self, lay, rows: torch.Tensor, cross=None) -> torch.Tensor:
        return rows + self.mlp(self.ln_2(rows))


class Tower(nn.Module):
    """A stack of blocks; token 0 (CLS / SOT) is never pruned."""

    def __init__(self, width: int, layers: int, heads: int, mlp: int, sd_dim: int, act: str, eps: float,
                 causal: bool):
        super().__init__()
        self.causal = causal
        self.resblocks = nn.Sequential(*[Block(width, heads, mlp, sd_dim, act, eps) for _ in range(layers)])

    def forward(self, x, valid, space_dict, temperature, mode, min_keep, track=None, want_align=False,
                score_fn=None, capacity=None):
        """Run the blocks on x [B, L, C] with its valid mask; prune after each attention when T > 0
        (models/tower.py). Returns x, valid, track, kept [B, layers], the MAG features summed over
        layers (or None) and overflow [B, layers] (or None)."""
        t = tower.forward(self.resblocks, x, valid, space_dict, temperature, mode, min_keep, track=track,
                      want_align=want_align, score_fn=score_fn, capacity=capacity, causal=self.causal)
        return t.x, t.valid, t.track, t.kept, t.align, t.overflow


class VisualTransformer(nn.Module):
    def __init__(self, s: ClipSpec):
        super().__init__()
        scale = s.vision_width ** -0.5
        self.conv1 = nn.Conv2d(3, s.vision_width, s.patch_size, s.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(s.vision_width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(s.vision_tokens, s.vision_width))
        self.ln_pre = nn.LayerNorm(s.vision_width, eps=s.ln_eps)
        self.transformer = Tower(s.vision_width, s.vision_layers, s.vision_heads, s.vision_mlp, s.sd_dim,
                                 s.act, s.ln_eps, causal=False)
        self.ln_post = nn.LayerNorm(s.vision_width, eps=s.ln_eps)
        self.proj = nn.Parameter(scale * torch.randn(s.vision_width, s.embed_dim))


class MadtpCLIP(nn.Module):
    def __init__(self, spec: ClipSpec, mode: str = LIBRARY_DEFAULT, temperature: float = 0.0):
        super().__init__()
        self.spec = spec.validate()
        s = spec
        self.visual = VisualTransformer(s)
        self.transformer = Tower(s.text_width, s.text_layers, s.text_heads, s.text_mlp, s.sd_dim, s.act,
                                 s.ln_eps, causal=True)
        self.token_embedding = nn.Embedding(s.vocab_size, s.text_width)
        self.positional_embedding = nn.Parameter(torch.empty(s.context_length, s.text_width))
        self.ln_final = nn.LayerNorm(s.text_width, eps=s.ln_eps)
        self.text_projection = nn.Parameter(torch.empty(s.text_width, s.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.space_dict = nn.Parameter(torch.randn(s.sd_num, s.sd_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=s.text_width ** -0.5)
        self.mode = mode
        self.temperature = float(temperature)
        self.score_fn = None  # ablations: (attn, head_out, attn_map, valid, temperature) -> (tis, theta)
        # static shapes (engines): {"image": slots per layer, "text": ...}, invariant semantics
        self.capacity: dict[str, tuple[int, ...]] | None = None

    # -- settings -------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        self._mode = parse_mode(value).value

    def _capacity(self, encoder: str):
        if not self.capacity or encoder not in self.capacity:
            return None
        if self.mode == "reference":
            raise ValueError("capacities give invariant answers; set mode to invariant or packed")
        return self.capacity[encoder]

    # -- towers -----------------------------------------------------------------------------------
    def encode_image(self, pixels: torch.Tensor, want_align: bool = False) -> Encoded:
        check_pixels(self.spec, pixels)
        v = self.visual
        x = v.conv1(pixels.to(v.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], 1) + v.positional_embedding.to(x.dtype)
        x = v.ln_pre(x)
        valid = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        min_keep = torch.ones(x.shape[0], dtype=torch.long, device=x.device)
        x, valid, _, kept, align, overflow = v.transformer(
            x, valid, self.space_dict, self.temperature, self.mode, min_keep, want_align=want_align,
            score_fn=self.score_fn, capacity=self._capacity("image"))
        embeds = v.ln_post(x[:, 0]) @ v.proj
        return Encoded(embeds, kept, torch.full_like(min_keep, self.spec.vision_tokens), align, overflow)

    def eot_index(self, input_ids: torch.Tensor) -> torch.Tensor:
        eot = self.spec.eot_token_id
        if eot is None:
            return input_ids.argmax(dim=-1)
        return (input_ids == eot).to(torch.int32).argmax(dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                    want_align: bool = False) -> Encoded:
        check_text(self.spec, input_ids, attention_mask)
        b, n = input_ids.shape
        x = self.token_embedding(input_ids) + self.positional_embedding[:n]
        if attention_mask is None:
            valid = torch.ones(b, n, dtype=torch.bool, device=x.device)
        else:
            valid = attention_mask.to(torch.bool)
        tokens_in = valid.sum(1)
        eot = self.eot_index(input_ids)
        positions = torch.arange(n, device=x.device)[None, :]
        track = positions == eot[:, None]
        # The reference never lets a text layer keep <= max(EOT index) + 2 tokens: the batch's max in
        # reference mode (pruning.effective_keep takes it), each instance's own otherwise.
        min_keep = eot + 2
        x, valid, track, kept, align, overflow = self.transformer(
            x, valid, self.space_dict, self.temperature, self.mode, min_keep, track=track, want_align=want_align,
            score_fn=self.score_fn, capacity=self._capacity("text"))
        x = self.ln_final(x)
        pooled = x[torch.arange(b, device=x.device), track.to(torch.int32).argmax(dim=-1)]
        return Encoded(pooled @ self.text_projection, kept, tokens_in, align, overflow)
