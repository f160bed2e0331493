"""`madtp-deploy train` / `eval` for BLIP image-text retrieval: dense training, MADTP compression to
`--reduce P`, recall@1/5/10 both ways with BLIP's ITM re-ranking.

Loss (the reference's models/blip_retrieval.py, without what only a large model needs):
- ITC: image-text contrastive on the normalised vision_proj / text_proj embeddings divided by the
  learnable `temp` (clamped to [0.001, 0.5] before every step, as the reference); the captions of the
  same image are all positives. No momentum encoders, no momentum distillation (alpha) and no
  feature queues: the in-batch negatives are enough for the tiny model and the generated task, and
  without momentum encoders the reference's second MAG loss (loss_fdt_m) has nothing to compare.
- ITM: the positive pairs, plus for each caption a negative image and for each image a negative
  caption drawn from the in-batch ITC similarities (softmax, own image's captions masked out), as
  the reference's `negative_all_rank=False` branch; cross-entropy on itm_head. The positive and the
  negative passes are two fusion-encoder batches, as the reference runs them.
- 0.1 x MAG alignment loss (`pruning.alignment_loss` on the image and text towers' pooled features)
  while pruning (temperature > 0).
Total = ITC + ITM + 0.1 x MAG, the reference's weights.

GFLOPs (2 per multiply-add, per instance, from the kept counts; madtp_deploy/flops_blip.py): the
controller steers the ITC GFLOPs of one retrieval "pair" (one image through the ViT + vision_proj,
plus the mean caption through the text encoder + text_proj), as the CLIP training and evaluation do.
ITM re-ranking is not in that figure: `eval` reports it separately, per re-ranked (image, caption)
pair (the fusion encoder with cross-attention to the image's kept tokens, and itm_head).

Checkpoints: madtp.pt in the MADTP format ({'model', 'epoch', 'temperature'} plus our 'spec') and
model.json, written atomically each epoch (train/blip_nlvr.py); `madtp_deploy.load` reads them.
Training runs in the one loop (train/loop.py) with this module's HOOKS; under torchrun the ITC loss
and the hard negatives are taken over the global batch (all-gathered), as in one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

from .. import flops, flops_blip, pruning
from ..data import dataset
from ..data.bert_tokenizer import BlipTokenizer
from ..data.retrieval import RetrievalSplit
from ..errors import DataError, MadtpError, UsageError
from ..evaluate import recalls_from_scores
from ..models.blip import Tokens
from ..models.inputs import check_batch_size, check_number
from . import loop
from .blip_nlvr import write_checkpoint
from .clip import itc_loss
from .loop import Step, TrainConfig, TrainHooks

MAX_LENGTH = 35  # BLIP retrieval's caption length (the tiny specs' max_positions caps it)


@dataclass
class BlipRetrievalConfig(TrainConfig):
    """TrainConfig's fields and checks (train/loop.py), BLIP's defaults. The former entry point `train`
    below keeps refusing --resume (the CLI's contract until it calls `loop.train(cfg, HOOKS)`, which
    resumes exactly)."""
    init: str = "blip-retrieval-tiny"
    batch_size: int = 32
    weight_decay: float = 0.05

    def validate(self) -> "BlipRetrievalConfig":
        super().validate()
        return self


def is_blip(init: str) -> bool:
    """Is `--init` a BLIP model (spec name or checkpoint)? BLIP retrieval trains here; `train` tells an
    NLVR2 model on retrieval data what to do. Unreadable sources say no: the CLIP path reports them."""
    from ..api import load
    from ..specs import BlipSpec, get_spec, spec_names

    if init in spec_names():
        return isinstance(get_spec(init), BlipSpec)
    try:
        return hasattr(load(init), "text_encoder")
    except MadtpError:
        return False


def tokenizer_for(data: Path, spec, tokenizer: str | Path | None = None) -> BlipTokenizer:
    """--tokenizer DIR (bert-base-uncased's vocab.txt) wins; else the dataset's vocab.txt. Its [ENC]
    id and size must fit the model's embedding table."""
    folder = Path(tokenizer) if tokenizer else Path(data)
    if tokenizer and not (folder / "vocab.txt").is_file():
        raise DataError(f"--tokenizer {tokenizer}: no vocab.txt in {folder}; fix: pass the directory that holds "
                        f"bert-base-uncased's (or the model's) vocab.txt")
    if not (folder / "vocab.txt").is_file():
        raise DataError(f"--data {data}: no vocab.txt in {folder}; fix: regenerate the data with `madtp-deploy "
                        f"make-data --task scenes` (it writes one) or pass --tokenizer DIR with bert-base-uncased's "
                        f"vocab.txt")
    tok = BlipTokenizer(folder, max_length=min(MAX_LENGTH, spec.max_positions))
    if len(tok) > spec.vocab_size or tok.enc_id != spec.enc_id:
        raise DataError(f"{folder / 'vocab.txt'}: {len(tok)} ids with [ENC] = {tok.enc_id}, but model {spec.name} "
                        f"has vocab_size {spec.vocab_size} with [ENC] = {spec.enc_id}; fix: pass the tokenizer the "
                        f"model was trained with (--tokenizer DIR)")
    return tok


def tokenize(tok: BlipTokenizer, split: RetrievalSplit, idx=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions -> (ids, mask) with [CLS] first (the ITC text encoder's input; ITM puts [ENC] there)."""
    idx = range(len(split.captions)) if idx is None else idx
    return tok([split.captions[j] for j in idx], enc=False, where=f"{split.annotation} captions")


def _longest(mask: torch.Tensor) -> int:
    return max(int(mask.sum(1).max()), 1)


# -- the loss ---------------------------------------------------------------------------------------

def hard_negatives(weights: torch.Tensor, positive: torch.Tensor, generator=None) -> torch.Tensor:
    """One column per row drawn with probability proportional to `weights` (the reference's
    torch.multinomial), never a positive; a row whose weights all underflowed draws uniformly among its
    negatives; a row without any negative in the batch gets -1."""
    w = weights.masked_fill(positive, 0.0).cpu()  # the step's generator is a CPU one (any device: the same draws)
    positive = positive.cpu()
    empty = w.sum(1) <= 0
    w[empty] = (~positive[empty]).to(w.dtype)
    has = w.sum(1) > 0
    idx = torch.full((w.shape[0],), -1, dtype=torch.long)
    if has.any():
        idx[has] = torch.multinomial(w[has], 1, generator=generator).squeeze(1)
    return idx


def _rows(t: Tokens, rows: torch.Tensor) -> Tokens:
    return Tokens(t.x[rows], t.valid[rows], t.kept[rows], t.tokens_in[rows])


@dataclass
class Losses:
    total: torch.Tensor
    itc: torch.Tensor
    itm: torch.Tensor
    align: torch.Tensor


def retrieval_loss(model, pixels, ids, mask, image_ids, align_weight: float = 0.1, generator=None,
                   step: Step | None = None) -> Losses:
    """ITC + ITM (hard negatives) + align_weight x MAG for one batch: row b is (pixels[b], caption b);
    rows with equal image_ids show the same image. Under torchrun (`step` of a distributed loop) the
    rows are this process's share of the global batch: ITC and the hard negatives are taken over the
    all-gathered batch, each process scores the ITM pairs of its own images, and every term is its
    share of the global mean (train/loop.py `Step`)."""
    step = step or Step(0, generator, rows=len(ids))
    generator = step.generator
    with torch.no_grad():
        model.temp.clamp_(0.001, 0.5)
    want_align = model.temperature > 0
    img = model.image_tokens(pixels, want_align)
    txt = model.encode_text(ids, mask, want_align=want_align)
    img_feat = F.normalize(model.vision_proj(img.x[:, 0]), dim=-1)
    txt_feat = F.normalize(txt.embeds, dim=-1)
    all_img, all_txt, all_ids = step.gather(img_feat), step.gather(txt_feat), step.gather(image_ids)
    loss_itc = itc_loss(all_img, all_txt, all_ids, -torch.log(model.temp))  # exp(-log temp) = 1 / temp

    b = len(all_ids)
    with torch.no_grad():
        positive = all_ids[:, None] == all_ids[None, :]
        sim = all_img @ all_txt.t() / model.temp
        neg_txt = hard_negatives(F.softmax(sim, 1), positive, generator)       # a caption for each image
        neg_img = hard_negatives(F.softmax(sim.t(), 1), positive, generator)   # an image for each caption
    rows = torch.arange(b)
    ci, ti = neg_img >= 0, neg_txt >= 0
    img_rows = torch.cat([neg_img[ci], rows[ti]])
    txt_rows = torch.cat([rows[ci], neg_txt[ti]])
    n_pairs = b + len(img_rows)  # ITM rows of the global batch: positives and negatives
    if step.dist.world > 1:  # this process scores the pairs of its own images, whose tokens carry gradients here
        local = step.local(img_rows)
        mine = local >= 0
        img_rows, txt_rows = local[mine], txt_rows[mine]
        ids_all, mask_all = step.gather(ids), step.gather(mask)
    else:
        ids_all, mask_all = ids, mask
    pos = model.match(None, ids, mask, image=img).logits
    logits = [pos]
    if len(img_rows):
        logits.append(model.match(None, ids_all[txt_rows], mask_all[txt_rows], image=_rows(img, img_rows)).logits)
    labels = torch.cat([torch.ones(len(ids), dtype=torch.long), torch.zeros(len(img_rows), dtype=torch.long)]).to(pos.device)
    loss_itm = step.share(F.cross_entropy(torch.cat(logits), labels), len(labels), n_pairs)
    loss_sim = step.share(pruning.alignment_loss(img.align, txt.align), len(ids)) if want_align else torch.zeros(())
    return Losses(loss_itc + loss_itm + align_weight * loss_sim, loss_itc, loss_itm, loss_sim)


# -- encoding, re-ranking, GFLOPs -------------------------------------------------------------------

@dataclass
class Encodings:
    image: torch.Tensor            # [I, E] ITC embeddings (not normalised)
    image_tokens: Tokens           # every image's final tokens, padded to one length (invalid = masked)
    text: torch.Tensor             # [T, E]
    text_kept: torch.Tensor        # [T, text_layers]
    text_in: torch.Tensor          # [T]

    @property
    def image_kept(self) -> torch.Tensor:
        return self.image_tokens.kept

    def cosine(self) -> torch.Tensor:
        return F.normalize(self.image, dim=-1) @ F.normalize(self.text, dim=-1).t()


def _cat_tokens(parts: list[Tokens]) -> Tokens:
    """Batches of image tokens as one: padded to the longest with masked slots, which cross-attention
    gives zero weight, so each image's ITM answers are unchanged."""
    n = max(t.x.shape[1] for t in parts)
    x = torch.cat([F.pad(t.x, (0, 0, 0, n - t.x.shape[1])) for t in parts])
    valid = torch.cat([F.pad(t.valid, (0, n - t.valid.shape[1]), value=False) for t in parts])
    return Tokens(x, valid, torch.cat([t.kept for t in parts]), torch.cat([t.tokens_in for t in parts]))


@torch.no_grad()
def encode_all(model, pixels, ids, mask, batch_size: int = 64) -> Encodings:
    """ITC embeddings of images and captions, in batches (captions padded to each batch's longest)."""
    check_batch_size(batch_size, "batch_size")
    img, toks, txt, kept, tin = [], [], [], [], []
    for i in range(0, len(pixels), batch_size):
        t = model.image_tokens(pixels[i:i + batch_size])
        img.append(model.vision_proj(t.x[:, 0]))
        toks.append(t)
    for i in range(0, len(ids), batch_size):
        m = mask[i:i + batch_size]
        n = _longest(m)
        e = model.encode_text(ids[i:i + batch_size, :n], m[:, :n])
        txt.append(e.embeds)
        kept.append(e.kept)
        tin.append(e.tokens_in)
    return Encodings(torch.cat(img), _cat_tokens(toks), torch.cat(txt), torch.cat(kept), torch.cat(tin))


def itc_pair_flops(model, enc: Encodings) -> torch.Tensor:
    """[images] GFLOPs: each image's ITC embedding plus the mean caption's (one retrieval 'pair')."""
    on, s = model.temperature > 0, model.spec
    return flops.pair_gflops(flops_blip.itc_image_flops(s, enc.image_kept, on),
                             flops_blip.itc_text_flops(s, enc.text_in, enc.text_kept, on))


def itc_gflops(model, pixels, ids, mask, batch_size: int = 64) -> float:
    """Mean ITC GFLOPs per pair: what the temperature controller steers."""
    return float(itc_pair_flops(model, encode_all(model, pixels, ids, mask, batch_size)).mean())


@dataclass
class Reranked:
    i2t: torch.Tensor              # [images, texts]: ITM "match" logit + cosine for the top k, -100 elsewhere
    t2i: torch.Tensor              # [texts, images]
    gflops: torch.Tensor           # [pairs] ITM GFLOPs of every re-ranked pair
    kept_text: torch.Tensor        # [pairs, text_layers] the fusion encoder's kept counts
    tokens_text: torch.Tensor      # [pairs] caption tokens entering the fusion encoder


@torch.no_grad()
def itm_rerank(model, enc: Encodings, ids, mask, k: int = 16) -> Reranked:
    """BLIP's evaluation, both ways: the k best candidates of each query by ITC cosine are re-scored
    with ITM (its "match" logit plus the cosine); the others score -100. One fusion-encoder batch per
    query (its k candidates), as the reference; image tokens come from `enc`, not re-encoded."""
    check_number(k, "--k", lo=1, integer=True, fix="a number of candidates >= 1, e.g. --k 16", error=UsageError)
    cos, s, on = enc.cosine(), model.spec, model.temperature > 0
    images = enc.image_tokens
    gflops, kept, tokens = [], [], []

    def score(img_rows: torch.Tensor, txt_rows: torch.Tensor) -> torch.Tensor:
        m = mask[txt_rows]
        n = _longest(m)
        o = model.match(None, ids[txt_rows, :n], m[:, :n], image=_rows(images, img_rows))
        gflops.append(flops_blip.itm_flops(s, o.tokens_text, o.kept_text, images.kept[img_rows, -1], on).gflops)
        kept.append(o.kept_text)
        tokens.append(o.tokens_text)
        return o.logits[:, 1]

    i2t = torch.full_like(cos, -100.0)
    ki = min(k, cos.shape[1])
    for i in range(cos.shape[0]):
        top, idx = cos[i].topk(ki)
        i2t[i, idx] = score(torch.full_like(idx, i), idx) + top
    t2i = torch.full_like(cos.t(), -100.0)
    kt = min(k, cos.shape[0])
    for j in range(cos.shape[1]):
        top, idx = cos[:, j].topk(kt)
        t2i[j, idx] = score(idx, torch.full_like(idx, j)) + top
    return Reranked(i2t, t2i, torch.cat(gflops), torch.cat(kept), torch.cat(tokens))


def _per_layer(kept: torch.Tensor) -> list[float]:
    return [float(v) for v in kept.double().mean(0)]


def evaluate(model, split: RetrievalSplit, tok: BlipTokenizer, batch_size: int = 64, k: int = 16,
             pixels=None) -> dict:
    """Recall@1/5/10 both ways by ITC alone and after ITM re-ranking of the top k, per-instance GFLOPs
    (2 per multiply-add) against the dense model, kept tokens per layer. After re-ranking every
    candidate outside the top k scores -100 (BLIP's rule), so ITM recall@n for n > k ranks ties:
    keep k >= 10."""
    check_number(k, "--k", lo=1, integer=True, fix="a number of candidates >= 1, e.g. --k 16", error=UsageError)
    pixels = split.pixels(model.spec.image_size) if pixels is None else pixels
    ids, mask = tokenize(tok, split)
    enc = encode_all(model, pixels, ids, mask, batch_size)
    rr = itm_rerank(model, enc, ids, mask, k)
    s = model.spec
    per_pair = itc_pair_flops(model, enc)
    dense = flops.pair_gflops(
        flops_blip.itc_image_flops(s, torch.full_like(enc.image_kept, s.vision_tokens), False),
        flops_blip.itc_text_flops(s, enc.text_in, enc.text_in[:, None].expand_as(enc.text_kept), False))
    n_itm, t_in = len(rr.gflops), rr.tokens_text
    dense_itm = flops_blip.itm_flops(s, t_in, t_in[:, None].expand(-1, s.text_layers),
                                     torch.full((n_itm,), s.vision_tokens), False).gflops
    cos = enc.cosine()
    return {
        "recall_itc": recalls_from_scores(cos, cos.t(), split),
        "recall_itm": recalls_from_scores(rr.i2t, rr.t2i, split),
        "k": k, "mode": model.mode, "batch_size": batch_size, "temperature": model.temperature,
        "images": len(pixels), "captions": len(ids),
        "gflops_per_pair": float(per_pair.mean()), "gflops_dense_per_pair": float(dense.mean()),
        "gflops_reduction": 1.0 - float(per_pair.mean()) / float(dense.mean()),
        "gflops_itm_per_pair": float(rr.gflops.mean()), "gflops_itm_dense_per_pair": float(dense_itm.mean()),
        "itm_pairs": n_itm,
        "kept_image_per_layer": _per_layer(enc.image_kept),
        "kept_text_per_layer": _per_layer(enc.text_kept),
        "kept_itm_text_per_layer": _per_layer(rr.kept_text),
        "convention": "GFLOPs = 2 FLOPs per multiply-add, per instance (not padded batch work); gflops_per_pair: "
                      "ITC (image + mean caption); gflops_itm_per_pair: one ITM re-ranked pair (fusion encoder)",
    }


# -- training ---------------------------------------------------------------------------------------

def _val_recall(model, v_pixels, v_ids, v_mask) -> dict:
    """ITC recall on the control subset (image i with its first caption i): a cheap progress signal."""
    enc = encode_all(model, v_pixels, v_ids, v_mask)
    n = len(v_ids)
    cos = enc.cosine()
    pairs: Any = SimpleNamespace(img2txt=[[i] for i in range(n)], txt2img=list(range(n)))  # a split's two maps
    return recalls_from_scores(cos, cos.t(), pairs)


def prepare(cfg: TrainConfig, model, log) -> SimpleNamespace:
    if not hasattr(model, "match"):
        raise UsageError(f"--init {cfg.init}: not a BLIP retrieval model, and --data {cfg.data} is retrieval data; "
                         f"fix: pass blip-retrieval-tiny or a BLIP retrieval checkpoint (BLIP NLVR2 trains on "
                         f"`make-data --task nlvr` folders)")
    data = Path(cfg.data)
    tr, va = dataset.load(data, "train"), dataset.load(data, "val")
    tok = tokenizer_for(data, model.spec, cfg.tokenizer)
    size = model.spec.image_size
    ids, mask = tokenize(tok, tr)
    n_ctrl = min(128, len(va.images))
    v_ids, v_mask = tokenize(tok, va, [va.img2txt[i][0] for i in range(n_ctrl)])
    log(f"train: {len(tr.images)} images / {len(tr.captions)} captions; val: {len(va.images)} images")
    return SimpleNamespace(n=len(ids), n_ctrl=n_ctrl, pixels=tr.pixels(size), ids=ids, mask=mask,
                           img_of=torch.tensor(tr.txt2img), v_pixels=va.pixels(size, range(n_ctrl)), v_ids=v_ids,
                           v_mask=v_mask)


def _loss(model, d, rows: torch.Tensor, cfg: TrainConfig, step: Step) -> dict:
    n = _longest(d.mask[rows])
    img_of = d.img_of[rows]
    r = retrieval_loss(model, d.pixels[img_of], d.ids[rows, :n], d.mask[rows, :n], img_of, cfg.align_weight,
                       step=step)
    return {"loss": r.total, "itc": r.itc, "itm": r.itm, "align": r.align}


def _gflops(model, d, rows: list) -> torch.Tensor:
    """[rows] ITC GFLOPs of control image i plus its caption i."""
    enc = encode_all(model, d.v_pixels[rows], d.v_ids[rows], d.v_mask[rows])
    on, s = model.temperature > 0, model.spec
    return flops_blip.itc_image_flops(s, enc.image_kept, on).gflops + \
        flops_blip.itc_text_flops(s, enc.text_in, enc.text_kept, on).gflops


def _metrics(model, d) -> dict:
    return {"val_recall_itc": _val_recall(model, d.v_pixels, d.v_ids, d.v_mask)}


def _summary(m: dict) -> str:
    v = m["val_recall_itc"]
    return f", val ITC txt_r1 {v['txt_r1']:.1f} img_r1 {v['img_r1']:.1f}"


def _write(model, out: Path, epoch: int, meta: dict) -> None:
    write_checkpoint(model, out, epoch, {**meta, "gflops": "ITC per pair (image + caption), 2 per multiply-add"})


HOOKS = TrainHooks(title="BLIP retrieval", prepare=prepare, loss=_loss, gflops=_gflops, write_model=_write,
                   metrics=_metrics, summary=_summary, unit="GFLOPs/pair (ITC)")


def train(cfg: BlipRetrievalConfig, log=print, progress=None) -> dict:
    """The former entry point (the CLI's until it calls `loop.train(cfg, HOOKS)`)."""
    cfg.validate()
    return loop.train(cfg, HOOKS, log=log, progress=progress)
