"""BLIP NLVR2's training hooks and evaluator: cross-entropy on cls_head + 0.1 x the MAG alignment loss
while pruning (the image side is the mean of the two images' features, as the reference's NLVR2);
GFLOPs per instance (an image pair and its statement) on a fixed validation subset; checkpoints in the
MADTP format ({'model', 'epoch', 'temperature'} plus our 'spec') and model.json, which
`madtp_deploy.load` reads back. The loop (train/loop.py) does the rest."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from .. import flops_blip, pruning
from ..data import nlvr
from ..data.bert_tokenizer import BlipTokenizer
from ..errors import UsageError
from ..files import write_text_atomic
from ..models.blip_checkpoint import init_nlvr_from_pretrained
from .loop import Step, TrainConfig, TrainHooks, save_atomic


def tokenizer_for(data: Path, tokenizer: str | Path | None = None) -> BlipTokenizer:
    return BlipTokenizer(Path(tokenizer) if tokenizer else Path(data))


@torch.no_grad()
def run_nlvr(model, img0, img1, ids, mask, batch_size: int = 64):
    """Logits and per-instance GFLOPs over a split, in batches."""
    logits, gflops, kept_image, kept_text = [], [], [], []
    prune = model.temperature > 0
    for i in range(0, len(ids), batch_size):
        sl = slice(i, i + batch_size)
        n = int(mask[sl].sum(1).max())  # pad to the batch's longest, as the reference
        o = model.nlvr(img0[sl], img1[sl], ids[sl, :n], mask[sl, :n])
        logits.append(o.logits)
        gflops.append(flops_blip.nlvr_flops(model.spec, o.kept_image, o.tokens_text, o.kept_text, prune).gflops)
        kept_image.append(o.kept_image.double().mean(1))
        kept_text.append(o.kept_text.double())
    return torch.cat(logits), torch.cat(gflops), torch.cat(kept_image), torch.cat(kept_text)


def evaluate(model, split: nlvr.NlvrSplit, tok: BlipTokenizer, batch_size: int = 64, pixels=None,
             want_ranks: bool = False) -> dict:
    """Accuracy, per-instance GFLOPs (2 per multiply-add) against the dense model, kept per layer.
    `want_ranks`: also each pair's rank of the true answer among the two (0: correct), for paired
    statistics (evaluate.paired_difference at k = 1 is then the accuracy difference)."""
    img0, img1 = split.pixels(model.spec.image_size) if pixels is None else pixels
    ids, mask = tok(split.sentences, where=str(split.annotation))
    logits, gflops, kept_image, kept_text = run_nlvr(model, img0, img1, ids, mask, batch_size)
    s, tokens = model.spec, mask.sum(1)
    dense = flops_blip.nlvr_flops(s, torch.full((len(ids), 2, s.vision_layers), s.vision_tokens, dtype=torch.long),
                                  tokens, tokens[:, None].expand(-1, s.text_layers), pruning=False).gflops
    t = model.temperature
    correct = logits.argmax(1) == split.targets()
    acc = correct.double().mean().item()
    ranks = {"ranks": {"pairs": [0 if c else 1 for c in correct.tolist()]}} if want_ranks else {}
    return {**ranks, "accuracy": 100.0 * acc, "instances": len(ids), "mode": model.mode, "batch_size": batch_size,
            "temperature": t, "gflops": float(gflops.mean()), "gflops_dense": float(dense.mean()),
            "gflops_reduction": 1.0 - float(gflops.mean()) / float(dense.mean()),
            "kept_image_per_layer": [float(v) for v in kept_image.mean(0)],
            "kept_text_per_layer": [float(v) for v in kept_text.mean(0)],
            "convention": "GFLOPs = 2 FLOPs per multiply-add, per instance (not padded batch work)"}


def write_checkpoint(model, out: Path, epoch: int, meta: dict) -> None:
    """madtp.pt in the MADTP format ({'model', 'epoch', 'temperature'} + 'spec') and model.json (`meta`),
    both written atomically: a run killed mid-write leaves the previous epoch's files."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    save_atomic({"model": sd, "epoch": epoch, "temperature": model.temperature, "spec": model.spec.to_dict()},
                out / "madtp.pt")
    write_text_atomic(out / "model.json", json.dumps(meta, indent=2))


# -- hooks ---------------------------------------------------------------------------------------------

def prepare(cfg: TrainConfig, model, log) -> SimpleNamespace:
    if not hasattr(model, "nlvr"):
        raise UsageError(f"--init {cfg.init}: not a BLIP NLVR2 model; fix: pass blip-nlvr-tiny or an NLVR2 checkpoint")
    data = Path(cfg.data)
    tr, va = nlvr.load(data, "train"), nlvr.load(data, "val")
    tok = tokenizer_for(data, cfg.tokenizer)
    size = model.spec.image_size
    img0, img1 = tr.pixels(size)
    ids, mask = tok(tr.sentences, where=str(tr.annotation))
    n_ctrl = min(128, len(va))
    v0, v1 = va.pixels(size, range(n_ctrl))
    v_ids, v_mask = tok(va.sentences[:n_ctrl], where=str(va.annotation))
    log(f"train: {len(tr)} pairs; val: {len(va)} pairs")
    return SimpleNamespace(n=len(ids), n_ctrl=n_ctrl, img0=img0, img1=img1, ids=ids, mask=mask, targets=tr.targets(),
                           ctrl=(v0, v1, v_ids, v_mask), v_targets=va.targets()[:n_ctrl])


def loss(model, d, rows: torch.Tensor, cfg: TrainConfig, step: Step) -> dict:
    n = int(d.mask[rows].sum(1).max())  # pad to the batch's longest, as the reference
    want_align = model.temperature > 0
    o = model.nlvr(d.img0[rows], d.img1[rows], d.ids[rows, :n], d.mask[rows, :n], want_align=want_align)
    loss_task = step.share(F.cross_entropy(o.logits, d.targets[rows]), len(rows))
    loss_sim = step.share(pruning.alignment_loss(o.align_image, o.align_text), len(rows)) if want_align \
        else torch.zeros(())
    return {"loss": loss_task + cfg.align_weight * loss_sim, "task": loss_task, "align": loss_sim}


def gflops(model, d, rows: list) -> torch.Tensor:
    return run_nlvr(model, *(t[rows] for t in d.ctrl))[1]


def metrics(model, d) -> dict:
    return {"val_accuracy": (run_nlvr(model, *d.ctrl)[0].argmax(1) == d.v_targets).double().mean().item() * 100}


def summary(m: dict) -> str:
    return f", val acc {m['val_accuracy']:.1f}"


HOOKS = TrainHooks(title="BLIP NLVR2", prepare=prepare, loss=loss, gflops=gflops, write_model=write_checkpoint,
                   metrics=metrics, summary=summary, pretrained=init_nlvr_from_pretrained, unit="GFLOPs/instance")
