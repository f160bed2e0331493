"""`madtp-deploy train`: dense CLIP training, or MADTP compression to `--reduce P`.

Loss = image-text contrastive (ITC, targets from image ids) + 0.1 x MAG alignment loss (when
pruning). After every control interval the temperature moves toward the GFLOPs target
(train/control.py). Checkpoints are written atomically, each epoch, in the MADTP format
({'model', 'epoch', 'temperature'} plus our 'spec') and as safetensors + JSON; `last.pt` also keeps
the optimizer so an interrupted run resumes from its last complete epoch.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import flops, pruning
from ..data import dataset
from ..errors import MadtpError
from ..evaluate import encode_all
from ..files import atomic, write_text_atomic
from ..models.clip import MadtpCLIP
from . import control


@dataclass
class TrainConfig:
    data: str
    output: str
    init: str = "madtp-clip-tiny"
    reduce: float = 0.0            # fraction of GFLOPs to remove; 0 = dense training
    epochs: int = 5
    batch_size: int = 64
    lr: float = 5e-4
    min_lr: float = 0.0
    weight_decay: float = 0.2
    align_weight: float = 0.1
    mode: str = "invariant"        # batch semantics during training and GFLOPs control
    control_every: int = 0         # steps between temperature updates; 0 = once per epoch (reference)
    max_steps: int = 0             # stop early (tests); 0 = no limit
    seed: int = 0
    resume: bool = False
    tokenizer: str | None = None   # HF tokenizer directory or OpenAI BPE file; default: the dataset's vocab


def _save_atomic(obj, path: Path) -> None:
    with atomic(path) as tmp:
        torch.save(obj, tmp)


def _write_model(model: MadtpCLIP, out: Path, epoch: int, meta: dict) -> None:
    from safetensors.torch import save_file

    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    _save_atomic({"model": sd, "epoch": epoch, "temperature": model.temperature, "spec": model.spec.to_dict()},
                 out / "madtp.pt")
    with atomic(out / "model.safetensors") as tmp:
        save_file(sd, str(tmp))
    write_text_atomic(out / "model.json", json.dumps({"spec": model.spec.to_dict(), "temperature": model.temperature,
                                                      "epoch": epoch, **meta}, indent=2))


def measure_gflops(model: MadtpCLIP, pixels, ids, mask, batch_size: int = 64) -> float:
    """Mean per-instance GFLOPs of one image plus one caption (the retrieval 'pair')."""
    _, ikept, _, tkept, tin = encode_all(model, pixels, ids, mask, batch_size)
    on = model.temperature > 0
    return float(flops.pair_gflops(flops.image_flops(model.spec, ikept, on),
                                   flops.text_flops(model.spec, tin, tkept, on)).mean())


def itc_loss(img, txt, image_ids, logit_scale):
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = logit_scale.exp() * img @ txt.t()
    pos = (image_ids[:, None] == image_ids[None, :]).float()
    targets = pos / pos.sum(1, keepdim=True)
    return (-(F.log_softmax(logits, 1) * targets).sum(1).mean() - (F.log_softmax(logits.t(), 1) * targets).sum(1).mean()) / 2


def train(cfg: TrainConfig, log=print, progress=None) -> dict:
    from ..api import load

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    out = Path(cfg.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MadtpError(f"{out}: cannot create the output folder ({exc.strerror}); fix: pass --output DIR") from None
    model = load(cfg.init, mode=cfg.mode)
    tr, va = dataset.load(Path(cfg.data), "train"), dataset.load(Path(cfg.data), "val")
    tok = dataset.tokenizer_for(Path(cfg.data), model.spec, Path(cfg.tokenizer) if cfg.tokenizer else None)
    log(f"train: {len(tr.images)} images / {len(tr.captions)} captions; val: {len(va.images)} images")
    pixels = tr.pixels(model.spec.image_size)
    ids, mask = tok(tr.captions, where=str(tr.annotation))
    img_of = torch.tensor(tr.txt2img)
    n_ctrl = min(128, len(va.images))
    v_pixels = va.pixels(model.spec.image_size, range(n_ctrl))
    v_ids, v_mask = tok([va.captions[va.img2txt[i][0]] for i in range(n_ctrl)], where=str(va.annotation))

    model.temperature = 0.0
    dense = cur = measure_gflops(model, v_pixels, v_ids, v_mask)
    target = dense * (1 - cfg.reduce)
    model.temperature = 1.0 if cfg.reduce > 0 else 0.0
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, step, history = 0, 0, []
    if cfg.resume and (out / "last.pt").exists():
        state = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        model.temperature, start_epoch, step, history = state["temperature"], state["epoch"] + 1, state["step"], state["history"]
        log(f"resumed from {out / 'last.pt'} at epoch {start_epoch}")
        cur = measure_gflops(model, v_pixels, v_ids, v_mask)
    elif cfg.reduce > 0:  # the reference's calculate_temperature: search an initial T before training
        model.eval()
        for _ in range(25):
            cur = measure_gflops(model, v_pixels, v_ids, v_mask)
            if abs(cur - target) / dense <= 0.013:
                break
            model.temperature = control.next_temperature(model.temperature, cur, target, dense)
        else:
            cur = measure_gflops(model, v_pixels, v_ids, v_mask)  # at the last temperature tried
        log(f"initial temperature {model.temperature:.3f}")

    steps_per_epoch = math.ceil(len(ids) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    task = progress.add_task("train", total=total, completed=step) if progress else None
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        perm = torch.randperm(len(ids))
        for b in range(steps_per_epoch):
            lr = cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * step / max(total, 1)))
            for g in opt.param_groups:
                g["lr"] = lr
            sel = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            want_align = model.temperature > 0
            e_img = model.encode_image(pixels[img_of[sel]], want_align=want_align)
            e_txt = model.encode_text(ids[sel], mask[sel], want_align=want_align)
            loss_itc = itc_loss(e_img.embeds, e_txt.embeds, img_of[sel], model.logit_scale)
            loss_sim = pruning.alignment_loss(e_img.align, e_txt.align) if want_align else torch.zeros(())
            loss = loss_itc + cfg.align_weight * loss_sim
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, 4.6052)
            step += 1
            if cfg.reduce > 0 and cfg.control_every and step % cfg.control_every == 0:
                model.eval()
                cur = measure_gflops(model, v_pixels, v_ids, v_mask)
                model.temperature = control.next_temperature(model.temperature, cur, target, dense)
                model.train()
            history.append({"step": step, "loss": loss.item(), "itc": loss_itc.item(), "align": loss_sim.item(),
                            "temperature": model.temperature})
            if progress:
                progress.update(task, advance=1, description=f"ep {epoch} loss {loss.item():.3f} "
                                f"GFLOPs {cur:.4f}/{target:.4f} T {model.temperature:.2f}")
            if cfg.max_steps and step >= cfg.max_steps:
                break
        model.eval()
        cur = measure_gflops(model, v_pixels, v_ids, v_mask)
        if cfg.reduce > 0 and not cfg.control_every and epoch + 1 < cfg.epochs:
            model.temperature = control.next_temperature(model.temperature, cur, target, dense)
            cur = measure_gflops(model, v_pixels, v_ids, v_mask)
        meta = {"config": asdict(cfg), "gflops_dense": dense, "gflops_target": target, "gflops_current": cur}
        _write_model(model, out, epoch, meta)
        _save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(), "temperature": model.temperature,
                      "epoch": epoch, "step": step, "history": history}, out / "last.pt")
        log(f"epoch {epoch}: loss {history[-1]['loss']:.4f}, GFLOPs/pair {cur:.4f} (target {target:.4f}, "
            f"dense {dense:.4f}), T {model.temperature:.3f}")
        if cfg.max_steps and step >= cfg.max_steps:
            break
    return {"gflops_dense": dense, "gflops_target": target, "gflops_current": cur, "temperature": model.temperature,
            "history": history}
