"""Per-instance FLOPs from kept token counts, layer by layer.

Two labelled conventions: `flops` counts 2 per multiply-add (FlopCounterMode's, and hardware
peak rates'); `macs` counts one per multiply-add, which is what the reference's fvcore reports as
"GFLOPs". Only matrix products are counted (linear, conv, attention, MAG, threshold, package merge),
exactly the ops FlopCounterMode counts, so the two agree at batch 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .specs import ClipSpec


@dataclass
class Flops:
    macs: torch.Tensor                 # [B] float64 multiply-adds per instance
    per_layer: torch.Tensor            # [B, layers] float64 multiply-adds per layer

    @property
    def flops(self) -> torch.Tensor:
        return 2.0 * self.macs

    @property
    def gflops(self) -> torch.Tensor:
        return self.flops / 1e9

    @property
    def gmacs(self) -> torch.Tensor:
        return self.macs / 1e9


def block_macs(n_in: torch.Tensor, n_out: torch.Tensor, width: int, mlp: int, sd_num: int, sd_dim: int,
               pruning: bool) -> torch.Tensor:
    """Multiply-adds of one block that sees n_in tokens and keeps n_out after pruning."""
    n, m = n_in.double(), n_out.double()
    attention = 4 * n * width ** 2 + 2 * n ** 2 * width        # qkv + out proj, QKᵀ + AV
    ffn = 2 * m * width * mlp
    if not pruning:
        return attention + ffn
    p = n - 1                                                   # non-CLS tokens
    mag = p * width * sd_dim + p * sd_dim * sd_num              # q_map, A = q·space_dictᵀ
    dtp = p * sd_num + p * width                                # threshold Pᵀ·TIS, package merge
    return attention + ffn + mag + dtp


def tower_macs(tokens_in: torch.Tensor, kept: torch.Tensor, width: int, mlp: int, sd_num: int, sd_dim: int,
               pruning: bool) -> torch.Tensor:
    """[B, layers] multiply-adds, from the tokens entering the tower and the kept counts."""
    n_in = torch.cat([tokens_in[:, None], kept[:, :-1]], 1)
    return block_macs(n_in, kept, width, mlp, sd_num, sd_dim, pruning)


def image_flops(spec: ClipSpec, kept: torch.Tensor, pruning: bool) -> Flops:
    tokens_in = torch.full((kept.shape[0],), spec.vision_tokens, dtype=torch.long, device=kept.device)
    layers = tower_macs(tokens_in, kept, spec.vision_width, spec.vision_mlp, spec.sd_num, spec.sd_dim, pruning)
    stem = (spec.vision_tokens - 1) * 3 * spec.patch_size ** 2 * spec.vision_width
    head = spec.vision_width * spec.embed_dim
    return Flops(layers.sum(1) + stem + head, layers)


def text_flops(spec: ClipSpec, tokens_in: torch.Tensor, kept: torch.Tensor, pruning: bool) -> Flops:
    layers = tower_macs(tokens_in, kept, spec.text_width, spec.text_mlp, spec.sd_num, spec.sd_dim, pruning)
    return Flops(layers.sum(1) + spec.text_width * spec.embed_dim, layers)


def pair_gflops(image: Flops, text: Flops) -> torch.Tensor:
    """Per image: its GFLOPs plus the mean caption's. One retrieval "instance" is an image and a
    caption, as the reference's retrieval GFLOPs count both towers."""
    return image.gflops + text.gflops.mean()


def dense_image_kept(spec: ClipSpec, batch: int = 1) -> torch.Tensor:
    return torch.full((batch, spec.vision_layers), spec.vision_tokens, dtype=torch.long)


def dense_text_kept(spec: ClipSpec, batch: int = 1, length: int | None = None) -> torch.Tensor:
    return torch.full((batch, spec.text_layers), length or spec.context_length, dtype=torch.long)


def dense_flops(spec: ClipSpec, text_tokens: int | None = None) -> tuple[Flops, Flops]:
    """(image, text) FLOPs of one instance of the dense model (no pruning machinery); the text at
    `text_tokens` tokens (default: the full context). One definition for `info`, eval and bench."""
    n = text_tokens or spec.context_length
    image = image_flops(spec, dense_image_kept(spec), pruning=False)
    text = text_flops(spec, torch.tensor([n]), dense_text_kept(spec, 1, n), pruning=False)
    return image, text


def packed_image_flops(spec: ClipSpec, kept: torch.Tensor) -> Flops:
    """What a packed batch computes per instance: the per-token work (projections, MLP, MAG, DTP)
    on its own tokens, attention (QKᵀ and AV) padded to the batch's longest sequence in each layer."""
    own = image_flops(spec, kept, pruning=True)
    tokens_in = torch.full((kept.shape[0], 1), spec.vision_tokens, dtype=torch.long, device=kept.device)
    n_own = torch.cat([tokens_in, kept[:, :-1]], 1).double()
    n_pad = n_own.amax(0, keepdim=True)
    extra = 2 * (n_pad ** 2 - n_own ** 2) * spec.vision_width
    return Flops(own.macs + extra.sum(1), own.per_layer + extra)


def image_gflops(spec: ClipSpec, kept: torch.Tensor, pruning: bool) -> torch.Tensor:
    """Per-image GFLOPs (2/MAC) of the image encoder from kept counts [B, layers] (the family hook)."""
    return image_flops(spec, kept, pruning).gflops


def packed_image_gflops(spec: ClipSpec, kept: torch.Tensor) -> torch.Tensor:
    return packed_image_flops(spec, kept).gflops


def describe(model) -> list[tuple[str, str]]:
    """`madtp-deploy info` rows for a CLIP model: spec, parameters, dense GFLOPs in both conventions."""
    s = model.spec
    rows = [(k, str(v)) for k, v in s.to_dict().items()]
    rows.append(("parameters", f"{sum(p.numel() for p in model.parameters()):,}"))
    img, txt = dense_flops(s)
    rows += [("image GFLOPs (2/MAC, dense)", f"{img.gflops.item():.4f}"),
             ("image GMACs (reference 'GFLOPs', dense)", f"{img.gmacs.item():.4f}"),
             (f"text GFLOPs (2/MAC, dense, {s.context_length} tokens)", f"{txt.gflops.item():.4f}"),
             ("text GMACs (reference 'GFLOPs', dense)", f"{txt.gmacs.item():.4f}")]
    return rows
