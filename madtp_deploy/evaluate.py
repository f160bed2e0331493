"""Retrieval evaluation: recall@1/5/10 both ways, per-instance GFLOPs and kept tokens per layer."""

from __future__ import annotations

import torch

from . import flops
from .data.retrieval import RetrievalSplit
from .models.clip import MadtpCLIP
from .models.inputs import check_batch_size


@torch.no_grad()
def embed(model: MadtpCLIP, split: RetrievalSplit, tokenizer, batch_size: int = 64, pixels=None):
    pixels = split.pixels(model.spec.image_size) if pixels is None else pixels
    ids, mask = split.tokenize(tokenizer)
    return encode_all(model, pixels, ids, mask, batch_size)


@torch.no_grad()
def encode_all(model: MadtpCLIP, pixels, ids, mask, batch_size: int = 64):
    """(image embeds, image kept, text embeds, text kept, text tokens in), in batches."""
    check_batch_size(batch_size, "batch_size")
    img, ikept, txt, tkept, tin = [], [], [], [], []
    for i in range(0, len(pixels), batch_size):
        e = model.encode_image(pixels[i:i + batch_size])
        img.append(e.embeds)
        ikept.append(e.kept)
    for i in range(0, len(ids), batch_size):
        e = model.encode_text(ids[i:i + batch_size], mask[i:i + batch_size])
        txt.append(e.embeds)
        tkept.append(e.kept)
        tin.append(e.tokens_in)
    return (torch.cat(img), torch.cat(ikept), torch.cat(txt), torch.cat(tkept), torch.cat(tin))


def recalls(img: torch.Tensor, txt: torch.Tensor, split: RetrievalSplit) -> dict:
    img = torch.nn.functional.normalize(img, dim=-1)
    txt = torch.nn.functional.normalize(txt, dim=-1)
    sims = img @ txt.t()
    return recalls_from_scores(sims, sims.t(), split)


def recalls_from_scores(i2t: torch.Tensor, t2i: torch.Tensor, split: RetrievalSplit) -> dict:
    """Recall@1/5/10 both ways from score matrices i2t [images, texts] and t2i [texts, images]
    (equal up to transposition for cosine ranking; not for BLIP's ITM re-ranking)."""
    i2t_rank = torch.empty(i2t.shape[0])
    for i, caps in enumerate(split.img2txt):
        order = torch.argsort(i2t[i], descending=True)
        pos = torch.isin(order, torch.tensor(caps)).nonzero()
        i2t_rank[i] = pos.min()
    t2i_rank = torch.empty(t2i.shape[0])
    for j, i in enumerate(split.txt2img):
        order = torch.argsort(t2i[j], descending=True)
        t2i_rank[j] = (order == i).nonzero()[0, 0]
    out = {}
    for k in (1, 5, 10):
        out[f"txt_r{k}"] = 100.0 * float((i2t_rank < k).float().mean())
        out[f"img_r{k}"] = 100.0 * float((t2i_rank < k).float().mean())
    out["r_mean"] = sum(out.values()) / 6
    return out


def _stats(x: torch.Tensor) -> dict:
    x = x.double()
    return {"mean": float(x.mean()), "std": float(x.std()) if len(x) > 1 else 0.0,
            "min": float(x.min()), "max": float(x.max())}


def evaluate(model: MadtpCLIP, split: RetrievalSplit, tokenizer, batch_size: int = 64, pixels=None) -> dict:
    img, ikept, txt, tkept, tin = embed(model, split, tokenizer, batch_size, pixels)
    pruning = model.temperature > 0
    fi = flops.image_flops(model.spec, ikept, pruning)
    ft = flops.text_flops(model.spec, tin, tkept, pruning)
    per_pair = flops.pair_gflops(fi, ft)
    dense_image, dense_text = flops.dense_flops(model.spec, int(tin[0]))
    dense = dense_image.gflops + dense_text.gflops
    return {
        **recalls(img, txt, split),
        "mode": model.mode, "batch_size": batch_size, "temperature": model.temperature,
        "images": len(img), "captions": len(txt),
        "gflops_image": _stats(fi.gflops), "gflops_text": _stats(ft.gflops),
        "gflops_per_pair": float(per_pair.mean()), "gflops_dense_per_pair": float(dense),
        "gflops_reduction": 1.0 - float(per_pair.mean()) / float(dense),
        "kept_image_per_layer": [float(v) for v in ikept.double().mean(0)],
        "kept_text_per_layer": [float(v) for v in tkept.double().mean(0)],
        "convention": "GFLOPs = 2 FLOPs per multiply-add, per instance (not padded batch work)",
    }
