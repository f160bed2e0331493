"""Retrieval evaluation: recall@1/5/10 both ways, per-instance GFLOPs and kept tokens per layer;
for MADTP (the model as loaded) or a peer on its weights (`method`, madtp_deploy.peers)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from . import flops
from .errors import UsageError
from .data.retrieval import RetrievalSplit
from .models.clip import MadtpCLIP
from .models.inputs import check_batch_size


@torch.no_grad()
def embed(model: MadtpCLIP, split: RetrievalSplit, tokenizer, batch_size: int = 64, pixels=None, texts=None):
    """encode_all on a split; `texts`: the text side (embeds, kept, tokens in) already encoded."""
    pixels = split.pixels(model.spec.image_size) if pixels is None else pixels
    ids, mask = split.tokenize(tokenizer)
    if texts is not None:
        check_batch_size(batch_size, "batch_size")
        encs = [model.encode_image(pixels[i:i + batch_size]) for i in range(0, len(pixels), batch_size)]
        return (torch.cat([e.embeds for e in encs]), torch.cat([e.kept for e in encs]), *texts)
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
    return recalls_from_ranks(*gallery_ranks(img, txt, split))


def ranks(i2t: torch.Tensor, t2i: torch.Tensor, split: RetrievalSplit) -> tuple[torch.Tensor, torch.Tensor]:
    """(each image's best rank of one of its captions [images], each caption's rank of its image
    [texts]), 0 = first, from score matrices i2t [images, texts] and t2i [texts, images]."""
    i2t_rank = torch.empty(i2t.shape[0])
    for i, caps in enumerate(split.img2txt):
        order = torch.argsort(i2t[i], descending=True)
        pos = torch.isin(order, torch.tensor(caps)).nonzero()
        i2t_rank[i] = pos.min()
    t2i_rank = torch.empty(t2i.shape[0])
    for j, i in enumerate(split.txt2img):
        order = torch.argsort(t2i[j], descending=True)
        t2i_rank[j] = (order == i).nonzero()[0, 0]
    return i2t_rank, t2i_rank


def gallery_ranks(img: torch.Tensor, txt: torch.Tensor, split: RetrievalSplit, gallery: int | None = None):
    """ranks() by cosine similarity, each query ranked within its gallery: consecutive folds of `gallery`
    images and their captions (COCO's 5-fold 1K protocol: more queries, the same task as a split of
    `gallery` images); None: the whole split, one gallery."""
    n = len(split.img2txt)
    gallery = gallery or n
    if gallery < 1 or n % gallery:
        raise UsageError(f"gallery {gallery}: {n} images are not a whole number of galleries; fix: a divisor of {n}")
    img = torch.nn.functional.normalize(img, dim=-1)
    txt = torch.nn.functional.normalize(txt, dim=-1)
    r_txt, r_img = torch.empty(n), torch.empty(len(split.txt2img))
    for start in range(0, n, gallery):
        images = range(start, start + gallery)
        caps = [c for i in images for c in split.img2txt[i]]
        local = {c: j for j, c in enumerate(caps)}
        fold = dataclasses.replace(split, images=[split.images[i] for i in images],
                                   captions=[split.captions[c] for c in caps], caption_where=None,
                                   img2txt=[[local[c] for c in split.img2txt[i]] for i in images],
                                   txt2img=[split.txt2img[c] - start for c in caps])
        sims = img[start:start + gallery] @ txt[caps].t()
        r_txt[start:start + gallery], r_img[caps] = ranks(sims, sims.t(), fold)
    return r_txt, r_img


def recalls_from_ranks(i2t_rank: torch.Tensor, t2i_rank: torch.Tensor) -> dict:
    """Recall@1/5/10 both ways (percent) from each query's rank (0 = first)."""
    out = {}
    for k in (1, 5, 10):
        out[f"txt_r{k}"] = 100.0 * float((i2t_rank < k).float().mean())
        out[f"img_r{k}"] = 100.0 * float((t2i_rank < k).float().mean())
    out["r_mean"] = sum(out.values()) / 6
    return out


def recalls_from_scores(i2t: torch.Tensor, t2i: torch.Tensor, split: RetrievalSplit) -> dict:
    """Recall@1/5/10 both ways from score matrices i2t [images, texts] and t2i [texts, images]
    (equal up to transposition for cosine ranking; not for BLIP's ITM re-ranking)."""
    return recalls_from_ranks(*ranks(i2t, t2i, split))


def paired_difference(a, b, k: int = 1, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """(mean of hit_a - hit_b, its bootstrap standard deviation), in percentage points, over the same
    queries (a hit: rank < k). `a`, `b`: each query's rank under two models ([queries]), or under several
    pairs of models ranking the same queries ([pairs, queries], e.g. a control and its compressed run at
    each seed): then the mean over the pairs, with the queries resampled jointly for all of them."""
    d = (torch.tensor(a) < k).double() - (torch.tensor(b) < k).double()
    d = d.mean(0) if d.dim() == 2 else d
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(d), (resamples, len(d)), generator=g)
    return 100 * float(d.mean()), 100 * float(d[idx].mean(1).std())


def _stats(x: torch.Tensor) -> dict:
    x = x.double()
    return {"mean": float(x.mean()), "std": float(x.std()) if len(x) > 1 else 0.0,
            "min": float(x.min()), "max": float(x.max())}


def evaluate(model: Any, split: RetrievalSplit, tokenizer, batch_size: int = 64, pixels=None,
             method: str = "madtp", knob=None, match=None, want_ranks: bool = False, log=None, texts=None,
             gallery: int | None = None) -> dict:
    """Recalls, GFLOPs and kept tokens of `model` on a split. `method` "madtp": the model as loaded
    (its temperature and mode); a peer ("tome", "topk", "lowres"): that peer on the model's weights,
    the text tower dense, at `knob`, or at the knob whose per-image GFLOPs equal the mean own-token
    image GFLOPs of the model `match` on this split's images (peers.match; within 2% where the knob
    allows, `log` gets the line). `want_ranks`: also each query's rank (for paired statistics).
    `texts`: (embeds, kept, tokens in) of the split's captions, when already encoded (the peers share
    their model's dense text tower). `gallery`: recalls within folds of that many images (gallery_ranks)."""
    from . import peers

    matched = None
    if method != "madtp":
        if knob is None and match is None:
            raise UsageError(f"--method {method}: nothing sets its knob; fix: pass --match MODEL")
        if knob is None:
            pixels = split.pixels(model.spec.image_size) if pixels is None else pixels
            target = float(peers.own_image_gflops(match, pixels, batch_size).mean())
            matched = peers.match(method, model, target)
            knob = matched.knob
            if log is not None:
                log(f"--match: {matched.line()}")
        model = peers.build(method, model, knob)
    elif match is not None:
        raise UsageError("--match: only for a peer (--method tome|topk|lowres); fix: drop --match or pass --method")
    img, ikept, txt, tkept, tin = embed(model, split, tokenizer, batch_size, pixels, texts)
    pruning = model.temperature > 0
    if method == "madtp":
        fi = flops.image_flops(model.spec, ikept, pruning)
    else:
        fi = model.image_flops(len(img))
    ft = flops.text_flops(model.spec, tin, tkept, pruning)
    per_pair = flops.pair_gflops(fi, ft)
    r_txt, r_img = gallery_ranks(img, txt, split, gallery)
    dense_image, dense_text = flops.dense_flops(model.spec, int(tin[0]))
    dense = dense_image.gflops + dense_text.gflops
    out = {
        **recalls_from_ranks(r_txt, r_img),
        "method": method, "knob": None if method == "madtp" else model.knob,
        "mode": model.mode, "batch_size": batch_size, "temperature": model.temperature,
        "images": len(img), "captions": len(txt), "gallery": gallery or len(img),
        "gflops_image": _stats(fi.gflops), "gflops_text": _stats(ft.gflops),
        "gflops_image_dense": float(dense_image.gflops),
        "gflops_per_pair": float(per_pair.mean()), "gflops_dense_per_pair": float(dense),
        "gflops_reduction": 1.0 - float(per_pair.mean()) / float(dense),
        "kept_image_per_layer": [float(v) for v in ikept.double().mean(0)],
        "kept_text_per_layer": [float(v) for v in tkept.double().mean(0)],
        "convention": "GFLOPs = 2 FLOPs per multiply-add, per instance (not padded batch work)",
    }
    if matched is not None:
        out["match"] = {"target_gflops_image": matched.target, "gflops_image": matched.gflops,
                        "error": matched.error, "within_tolerance": matched.within, "tolerance": peers.TOLERANCE}
    if want_ranks:
        out["ranks"] = {"txt": r_txt.long().tolist(), "img": r_img.long().tolist()}
    return out
