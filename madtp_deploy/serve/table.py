"""Every family-specific choice of serving, one entry per family (the registry, madtp_deploy.families, names it).

For each family (the registry's names) and each graph it serves: what a request carries (encoded
images, UTF-8 text), which tokenizer reads its text, what the response holds (graph outputs under
their served names, and this request's own GFLOPs) and how those GFLOPs are computed from the keep
counts (madtp_deploy.flops / flops_blip). Everything else in madtp_deploy.serve is family-blind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np


def _clip_image_gflops(spec, out: dict, feeds: dict, pruning: bool) -> np.ndarray:
    import torch
    from .. import flops

    return flops.image_gflops(spec, torch.from_numpy(out["kept"]), pruning).numpy()


def _clip_text_gflops(spec, out: dict, feeds: dict, pruning: bool) -> np.ndarray:
    import torch
    from .. import flops

    tokens_in = torch.from_numpy(feeds["attention_mask"].sum(1))  # the model's own tokens_in
    return flops.text_flops(spec, tokens_in, torch.from_numpy(out["kept"]), pruning).gflops.numpy()


def _blip_image_gflops(spec, out: dict, feeds: dict, pruning: bool) -> np.ndarray:
    import torch
    from .. import flops_blip

    return flops_blip.image_gflops(spec, torch.from_numpy(out["kept"]), pruning).numpy()


def _blip_text_gflops(spec, out: dict, feeds: dict, pruning: bool) -> np.ndarray:
    import torch
    from .. import flops_blip

    tokens_in = torch.from_numpy(feeds["attention_mask"].sum(1))
    return flops_blip.itc_text_flops(spec, tokens_in, torch.from_numpy(out["kept"]), pruning).gflops.numpy()


def _nlvr_gflops(spec, out: dict, feeds: dict, pruning: bool) -> np.ndarray:
    import torch
    from .. import flops_blip

    tokens_in = torch.from_numpy(feeds["attention_mask"].sum(1))
    return flops_blip.nlvr_flops(spec, torch.from_numpy(out["kept_image"]), tokens_in,
                                 torch.from_numpy(out["kept_text"]), pruning).gflops.numpy()


@dataclass(frozen=True)
class Served:
    """One served graph. `inputs`: request input name -> (kind, graph input(s) it becomes): kind
    "image" (an encoded PNG/JPEG -> the graph's pixels) or "text" (a caption -> input_ids and
    attention_mask). `outputs`: response name -> graph output name, plus GFLOPS from `gflops`."""
    encoder: str
    inputs: Mapping[str, tuple[str, tuple[str, ...]]]
    outputs: dict[str, str]
    gflops: Callable  # (spec, graph outputs, graph feeds, pruning) -> [B] float GFLOPs (2/MAC), own tokens


_IMAGE = {"IMAGE": ("image", ("pixels",))}
_TEXT = {"TEXT": ("text", ("input_ids", "attention_mask"))}
_EMBEDS = {"EMBEDS": "embeds", "KEPT": "kept"}

# each family's serving entry (the registry names it: madtp_deploy/families, `serving`): the tokenizer
# kind that reads its text, and its served graphs (model names are the encoders')
CLIP: dict = {
        "tokenizer": "clip",   # the shipped model's word vocabulary; OpenAI BPE .gz or an HF folder (--tokenizer)
        "graphs": (Served("image", _IMAGE, _EMBEDS, _clip_image_gflops),
                   Served("text", _TEXT, _EMBEDS, _clip_text_gflops)),
}
BLIP_RETRIEVAL: dict = {
        "tokenizer": "wordpiece",   # WordPiece: a folder with vocab.txt (bert-base-uncased's), captions padded to 35
        "graphs": (Served("image", _IMAGE, _EMBEDS, _blip_image_gflops),
                   Served("text", _TEXT, _EMBEDS, _blip_text_gflops)),
}
BLIP_NLVR: dict = {
        "tokenizer": "wordpiece-enc",   # WordPiece with [ENC] first, as BLIP's fusion encoder wants
        "graphs": (Served("nlvr", {"IMAGE0": ("image", ("images0",)), "IMAGE1": ("image", ("images1",)),
                                   "TEXT": ("text", ("input_ids", "attention_mask"))},
                          {"LOGITS": "logits", "KEPT_IMAGE": "kept_image", "KEPT_TEXT": "kept_text"},
                          _nlvr_gflops),),
}


def entry(family: str) -> dict:
    """The family's serving entry, from the registry (a family without the `serve` feature is refused)."""
    from .. import families

    fam = families.get(family)
    fam.require("serve", f"family {family}")
    return fam.hook("serving")


def served_graphs(family: str) -> tuple[Served, ...]:
    return entry(family)["graphs"]


def served(family: str, encoder: str) -> Served:
    return next(s for s in served_graphs(family) if s.encoder == encoder)


def tokenizer_kind(family: str) -> str:
    return entry(family)["tokenizer"]
