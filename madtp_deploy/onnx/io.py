"""Declarative IO contracts of the exported encoders, and generators of inputs that prune differently."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..models.clip import MadtpCLIP

DEFAULT_ATOL = {"fp32": 1e-4, "fp16": 1e-2, "int8": 5e-2}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    axes: tuple  # ints are fixed sizes, strings are dynamic axes


@dataclass(frozen=True)
class EncoderIO:
    encoder: str                      # "image" | "text"
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    atol: dict = field(default_factory=lambda: dict(DEFAULT_ATOL))

    def to_dict(self) -> dict:
        return {"encoder": self.encoder, "atol": self.atol,
                "inputs": [t.__dict__ | {"axes": list(t.axes)} for t in self.inputs],
                "outputs": [t.__dict__ | {"axes": list(t.axes)} for t in self.outputs]}


def image_io(model: MadtpCLIP) -> EncoderIO:
    s = model.spec
    return EncoderIO("image", (TensorSpec("pixels", "float32", ("batch", 3, s.image_size, s.image_size)),),
                     (TensorSpec("embeds", "float32", ("batch", s.embed_dim)),
                      TensorSpec("kept", "int64", ("batch", s.vision_layers))))


def text_io(model: MadtpCLIP) -> EncoderIO:
    s = model.spec
    return EncoderIO("text", (TensorSpec("input_ids", "int64", ("batch", "seq")),
                              TensorSpec("attention_mask", "int64", ("batch", "seq"))),
                     (TensorSpec("embeds", "float32", ("batch", s.embed_dim)),
                      TensorSpec("kept", "int64", ("batch", s.text_layers))))


class ImageEncoder(nn.Module):
    """pixels -> (embeds, kept): what the image ONNX computes."""

    def __init__(self, model: MadtpCLIP):
        super().__init__()
        self.model = model

    def forward(self, pixels):
        e = self.model.encode_image(pixels)
        return e.embeds, e.kept


class TextEncoder(nn.Module):
    def __init__(self, model: MadtpCLIP):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        e = self.model.encode_text(input_ids, attention_mask)
        return e.embeds, e.kept


def sample_images(model: MadtpCLIP, n: int, seed: int = 0) -> torch.Tensor:
    """Structured images (blobs on gradients at varied contrast) that give varied keep counts."""
    s = model.spec.image_size
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
    out = []
    for i in range(n):
        img = torch.randn(3, 1, 1, generator=g) * (xx + yy)[None] * 0.5
        for _ in range(1 + i % 4):
            c = torch.rand(2, generator=g) * 2 - 1
            r = 0.1 + 0.4 * torch.rand(1, generator=g)
            blob = (((xx - c[0]) ** 2 + (yy - c[1]) ** 2) < r ** 2).float()
            img = img + blob[None] * torch.randn(3, 1, 1, generator=g) * 2
        img = img + torch.randn(3, s, s, generator=g) * (0.05 + 0.5 * (i % 5) / 4)
        out.append(img)
    return torch.stack(out)


def sample_text(model: MadtpCLIP, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids with EOT at varied positions, padded with zeros, OpenAI style (all-ones mask)."""
    s = model.spec
    g = torch.Generator().manual_seed(seed)
    eot_id = s.eot_token_id if s.eot_token_id is not None else s.vocab_size - 1
    ids = torch.randint(1, max(2, min(eot_id, s.vocab_size) - 2), (n, s.context_length), generator=g)
    ids[:, 0] = max(eot_id - 1, 1)
    ends = torch.randint(2, s.context_length, (n,), generator=g)
    ids[torch.arange(n), ends] = eot_id
    ids[torch.arange(s.context_length)[None, :] > ends[:, None]] = 0
    return ids, torch.ones_like(ids)
