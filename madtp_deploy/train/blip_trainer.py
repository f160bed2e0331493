"""`madtp-deploy train` / `eval` for BLIP NLVR2: dense training, or MADTP compression to `--reduce P`.

Loss = cross-entropy on cls_head + 0.1 x MAG alignment loss (when pruning; the image side is the mean
of the two images' features, as the reference's NLVR2). The temperature moves toward the GFLOPs
target with the CLIP training's controller (train/control.py), measured per instance on a fixed
validation subset. Checkpoints are the MADTP format ({'model', 'epoch', 'temperature'} plus our
'spec'), written atomically each epoch; `madtp_deploy.load` reads them back.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import flops_blip, pruning
from ..data import nlvr
from ..data.bert_tokenizer import BlipTokenizer
from ..errors import MadtpError, UsageError
from ..files import atomic, write_text_atomic
from . import control


@dataclass
class BlipTrainConfig:
    data: str
    output: str
    init: str = "blip-nlvr-tiny"
    reduce: float = 0.0
    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-4
    min_lr: float = 0.0
    weight_decay: float = 0.05
    align_weight: float = 0.1
    mode: str = "invariant"
    control_every: int = 0         # steps between temperature updates; 0 = once per epoch (reference)
    max_steps: int = 0
    seed: int = 0
    tokenizer: str | None = None   # directory with vocab.txt; default: the dataset folder


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


def evaluate(model, split: nlvr.NlvrSplit, tok: BlipTokenizer, batch_size: int = 64, pixels=None) -> dict:
    """Accuracy, per-instance GFLOPs (2 per multiply-add) against the dense model, kept per layer."""
    img0, img1 = split.pixels(model.spec.image_size) if pixels is None else pixels
    ids, mask = tok(split.sentences, where=str(split.annotation))
    logits, gflops, kept_image, kept_text = run_nlvr(model, img0, img1, ids, mask, batch_size)
    s, tokens = model.spec, mask.sum(1)
    dense = flops_blip.nlvr_flops(s, torch.full((len(ids), 2, s.vision_layers), s.vision_tokens, dtype=torch.long),
                                  tokens, tokens[:, None].expand(-1, s.text_layers), pruning=False).gflops
    t = model.temperature
    acc = (logits.argmax(1) == split.targets()).double().mean().item()
    return {"accuracy": 100.0 * acc, "instances": len(ids), "mode": model.mode, "batch_size": batch_size,
            "temperature": t, "gflops": float(gflops.mean()), "gflops_dense": float(dense.mean()),
            "gflops_reduction": 1.0 - float(gflops.mean()) / float(dense.mean()),
            "kept_image_per_layer": [float(v) for v in kept_image.mean(0)],
            "kept_text_per_layer": [float(v) for v in kept_text.mean(0)],
            "convention": "GFLOPs = 2 FLOPs per multiply-add, per instance (not padded batch work)"}


def _measure(model, v) -> float:
    return float(run_nlvr(model, *v)[1].mean())


def _save_atomic(obj, path: Path) -> None:
    with atomic(path) as tmp:
        torch.save(obj, tmp)


def write_checkpoint(model, out: Path, epoch: int, meta: dict) -> None:
    """madtp.pt in the MADTP format ({'model', 'epoch', 'temperature'} + 'spec') and model.json (`meta`),
    both written atomically: a run killed mid-write leaves the previous epoch's files."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    _save_atomic({"model": sd, "epoch": epoch, "temperature": model.temperature, "spec": model.spec.to_dict()},
                 out / "madtp.pt")
    write_text_atomic(out / "model.json", json.dumps(meta, indent=2))


def cosine_lr(lr: float, min_lr: float, step: int, total: int) -> float:
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * step / max(total, 1)))


def initial_temperature(model, measure, target: float, dense: float, log=print) -> float:
    """The reference's calculate_temperature: from T = 1, step T with the controller until the GFLOPs
    `measure()` returns at the model's temperature are within 1.3% (of dense) of the target."""
    model.eval()

    def at(t: float) -> float:
        model.temperature = t
        return measure()

    model.temperature, cur = control.search_temperature(at, 1.0, target, dense)
    log(f"initial temperature {model.temperature:.3f} (GFLOPs {cur:.5f}, target {target:.5f})")
    return cur


def train(cfg: BlipTrainConfig, log=print, progress=None) -> dict:
    from ..api import load

    if not 0.0 <= cfg.reduce < 1.0:
        raise UsageError(f"--reduce {cfg.reduce}: must be in [0, 1); fix: e.g. --reduce 0.5")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    out = Path(cfg.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MadtpError(f"{out}: cannot create the output folder ({exc.strerror}); fix: pass --output DIR") from None
    model = load(cfg.init, mode=cfg.mode)
    if not hasattr(model, "nlvr"):
        raise UsageError(f"--init {cfg.init}: not a BLIP NLVR2 model; fix: pass blip-nlvr-tiny or an NLVR2 checkpoint")
    tr, va = nlvr.load(Path(cfg.data), "train"), nlvr.load(Path(cfg.data), "val")
    tok = tokenizer_for(Path(cfg.data), cfg.tokenizer)
    size = model.spec.image_size
    img0, img1 = tr.pixels(size)
    ids, mask = tok(tr.sentences, where=str(tr.annotation))
    targets = tr.targets()
    n_ctrl = min(128, len(va))
    v0, v1 = va.pixels(size, range(n_ctrl))
    v_ids, v_mask = tok(va.sentences[:n_ctrl], where=str(va.annotation))
    ctrl = (v0, v1, v_ids, v_mask)
    log(f"train: {len(tr)} pairs; val: {len(va)} pairs")

    model.temperature = 0.0
    dense = cur = _measure(model, ctrl)
    target = dense * (1 - cfg.reduce)
    if cfg.reduce > 0:  # the reference's calculate_temperature: search an initial T before training
        cur = initial_temperature(model, lambda: _measure(model, ctrl), target, dense, log)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(ids) / cfg.batch_size)
    total, step, history = cfg.epochs * steps_per_epoch, 0, []
    task = progress.add_task("train", total=total) if progress else None
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(ids))
        for b in range(steps_per_epoch):
            lr = cosine_lr(cfg.lr, cfg.min_lr, step, total)
            for g in opt.param_groups:
                g["lr"] = lr
            sel = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            n = int(mask[sel].sum(1).max())
            want_align = model.temperature > 0
            o = model.nlvr(img0[sel], img1[sel], ids[sel, :n], mask[sel, :n], want_align=want_align)
            loss_task = F.cross_entropy(o.logits, targets[sel])
            loss_sim = pruning.alignment_loss(o.align_image, o.align_text) if want_align else torch.zeros(())
            loss = loss_task + cfg.align_weight * loss_sim
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if cfg.reduce > 0 and cfg.control_every and step % cfg.control_every == 0:
                model.eval()
                cur = _measure(model, ctrl)
                model.temperature = control.next_temperature(model.temperature, cur, target, dense)
                model.train()
            history.append({"step": step, "loss": loss.item(), "task": loss_task.item(), "align": loss_sim.item(),
                            "temperature": model.temperature})
            if progress:
                progress.update(task, advance=1, description=f"ep {epoch} loss {loss.item():.3f} T {model.temperature:.2f}")
            if cfg.max_steps and step >= cfg.max_steps:
                break
        model.eval()
        cur = _measure(model, ctrl)
        if cfg.reduce > 0 and not cfg.control_every and epoch + 1 < cfg.epochs:
            model.temperature = control.next_temperature(model.temperature, cur, target, dense)
            cur = _measure(model, ctrl)
        acc = (run_nlvr(model, *ctrl)[0].argmax(1) == va.targets()[:n_ctrl]).double().mean().item() * 100
        write_checkpoint(model, out, epoch, {"config": asdict(cfg), "epoch": epoch, "gflops_dense": dense,
                                             "gflops_target": target, "gflops_current": cur, "val_accuracy": acc,
                                             "temperature": model.temperature})
        log(f"epoch {epoch}: loss {history[-1]['loss']:.4f}, val acc {acc:.1f}, GFLOPs/instance {cur:.5f} "
            f"(target {target:.5f}, dense {dense:.5f}), T {model.temperature:.3f}")
        if cfg.max_steps and step >= cfg.max_steps:
            break
    return {"gflops_dense": dense, "gflops_target": target, "gflops_current": cur, "temperature": model.temperature,
            "val_accuracy": acc, "history": history}
