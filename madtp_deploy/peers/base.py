"""What the three peers share: a dense CLIP whose image tower is re-run block by block, with a
training-free token reduction (the peer's) between each block's attention and its MLP.

A peer wraps a `MadtpCLIP` (its weights, unchanged) and calls only the block's public pieces:
`ln_1`, `attn.qkv`, `attn.attend`, `attn.out_proj`, `ln_2`, `mlp`; MADTP's machinery (MAG, DTP) is
never run. Every peer reduces the same number of tokens for every image (static shapes), so its keep
counts, and its FLOPs, depend only on its knob: `kept` is that schedule repeated for each image.
The text tower is the wrapped model's, dense.
"""

from __future__ import annotations

import abc

import hashlib
from pathlib import Path

import torch
from torch import nn

from .. import flops
from ..models.clip import Encoded, MadtpCLIP
from ..models.inputs import check_pixels


def _code_sha(files: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update((Path(__file__).parent / f).read_bytes())
    return h.hexdigest()[:12]


class PeerCLIP(nn.Module, abc.ABC):
    """A dense CLIP with a static token reduction in its image tower. Subclasses set `method`,
    `code` (their files, hashed into `mode` so cached graphs follow code edits) and implement
    `reduce` and `schedule`."""

    method = "dense"
    code: tuple[str, ...] = ("base.py",)

    def __init__(self, model: MadtpCLIP):
        super().__init__()
        self.base = model
        self.spec = model.spec
        self.temperature = 0.0   # no MADTP pruning: the peers are training-free on the dense model
        self.capacity = None

    # -- what a peer defines ---------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def knob(self) -> str:
        """The peer's knob, as the reports print it."""

    @abc.abstractmethod
    def schedule(self) -> list[tuple[int, int]]:
        """(tokens entering, tokens leaving) of each block, CLS included."""

    @abc.abstractmethod
    def reduce(self, i: int, x: torch.Tensor, size: torch.Tensor, qkv: torch.Tensor, attn: torch.Tensor):
        """Block i's reduction, between its attention and its MLP -> (x, size)."""

    @abc.abstractmethod
    def reduction_macs(self, i: int, n_in: int) -> float:
        """Multiply-adds of block i's reduction itself (its matrix products, as FlopCounterMode counts)."""

    def attention_bias(self, size: torch.Tensor):
        """Added to the attention scores (0: plain attention)."""
        return 0.0

    # -- the identity the bench's ONNX cache and sidecars record ---------------------------------
    @property
    def mode(self) -> str:
        return f"peer:{self.method}[{self.knob}]#{_code_sha(('base.py',) + self.code)}"

    # -- the image tower --------------------------------------------------------------------------
    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 1 + N, C]: patch embedding, CLS, positional embedding, ln_pre (the dense model's)."""
        v = self.base.visual
        x = v.conv1(pixels.to(v.conv1.weight.dtype)).flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        return v.ln_pre(torch.cat([cls, x], 1) + self.positional_embedding().to(x.dtype))

    def positional_embedding(self) -> torch.Tensor:
        return self.base.visual.positional_embedding

    def encode_image(self, pixels: torch.Tensor, want_align: bool = False) -> Encoded:
        check_pixels(self.spec, pixels)
        v = self.base.visual
        x = self.tokens(pixels)
        size = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)
        for i, block in enumerate(v.transformer.resblocks):
            qkv = block.attn.qkv(block.ln_1(x))
            merged, attn, _ = block.attn.attend(qkv, self.attention_bias(size))
            x = x + block.attn.out_proj(merged)
            x, size = self.reduce(i, x, size, qkv, attn)
            x = x + block.mlp(block.ln_2(x))
        embeds = v.ln_post(x[:, 0]) @ v.proj
        counts = torch.tensor([n for _, n in self.schedule()], dtype=torch.long, device=x.device)
        kept = counts[None].expand(x.shape[0], -1)
        tokens_in = torch.full((x.shape[0],), self.schedule()[0][0], dtype=torch.long, device=x.device)
        return Encoded(embeds, kept, tokens_in)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                    want_align: bool = False) -> Encoded:
        """The wrapped model's text tower, dense (temperature 0 for the call)."""
        saved, self.base.temperature = self.base.temperature, 0.0
        try:
            return self.base.encode_text(input_ids, attention_mask)
        finally:
            self.base.temperature = saved

    # -- FLOPs --------------------------------------------------------------------------------------
    def stem_macs(self) -> float:
        s = self.spec
        return (self.schedule()[0][0] - 1) * 3 * s.patch_size ** 2 * s.vision_width

    def image_flops(self, batch: int = 1) -> flops.Flops:
        """Per-image FLOPs (the same for every image): the dense blocks at the scheduled token counts
        (flops.block_macs), each reduction's own products, the stem and the projection."""
        s = self.spec
        n_in = torch.tensor([a for a, _ in self.schedule()])
        n_out = torch.tensor([b for _, b in self.schedule()])
        layers = flops.block_macs(n_in, n_out, s.vision_width, s.vision_mlp, s.sd_num, s.sd_dim, pruning=False)
        layers = layers + torch.tensor([self.reduction_macs(i, int(n)) for i, n in enumerate(n_in)], dtype=torch.float64)
        total = layers.sum() + self.stem_macs() + s.vision_width * s.embed_dim
        return flops.Flops(total.expand(batch).clone(), layers[None].expand(batch, -1).clone())

    def image_gflops(self, kept: torch.Tensor | None = None) -> torch.Tensor:
        """[B] per-image GFLOPs for B = len(kept) images (kept is only counted: the schedule is static)."""
        return self.image_flops(1 if kept is None else len(kept)).gflops
