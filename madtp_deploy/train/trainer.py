"""`madtp-deploy train`: dense CLIP training, or MADTP compression to `--reduce P`.

Loss = image-text contrastive (ITC, targets from image ids) + 0.1 x MAG alignment loss (when
pruning). After every control interval the temperature moves toward the GFLOPs target
(train/control.py). Checkpoints are written atomically, each epoch, in the MADTP format
({'model', 'epoch', 'temperature'} plus our 'spec') and as safetensors + JSON.

`last.pt` holds everything the rest of the run depends on: model, optimizer, the step (the cosine
schedule is a function of it), the temperature controller's state, every RNG state and the position
inside the epoch's data order (each epoch's order comes from its own generator seeded by seed and
epoch). A run stopped mid-epoch (`--max-steps`) or killed after an epoch resumes with `--resume`
and ends with the weights of the uninterrupted run, bit for bit.
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import flops, pruning
from ..data import dataset
from ..errors import CheckpointError, MadtpError, UsageError
from ..evaluate import encode_all
from ..files import atomic, remove_stale_temps, write_text_atomic
from ..models.clip import MadtpCLIP
from ..models.inputs import check_batch_size, check_number
from ..modes import SERVING_DEFAULT, parse_mode
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
    mode: str = SERVING_DEFAULT.value  # batch semantics during training and GFLOPs control
    control_every: int = 0         # steps between temperature updates; 0 = once per epoch (reference)
    max_steps: int = 0             # stop early (tests); 0 = no limit
    seed: int = 0
    resume: bool = False
    tokenizer: str | None = None   # HF tokenizer directory or OpenAI BPE file; default: the dataset's vocab

    def validate(self) -> "TrainConfig":
        """Every field in range, or a UsageError naming the CLI option and the fix."""
        num = check_number
        num(self.reduce, "--reduce", lo=0.0, hi=0.99, error=UsageError,
            fix="a fraction of GFLOPs to remove in [0, 0.99], e.g. --reduce 0.5 (0 = dense training)")
        num(self.epochs, "--epochs", lo=1, hi=100000, integer=True, error=UsageError,
            fix="at least one epoch, e.g. --epochs 5")
        check_batch_size(self.batch_size, "--batch-size", error=UsageError)
        num(self.lr, "--lr", lo=0.0, hi=1.0, lo_open=True, error=UsageError, fix="a learning rate in (0, 1], e.g. --lr 5e-4")
        num(self.min_lr, "min_lr", lo=0.0, hi=self.lr, error=UsageError, fix="0 <= min_lr <= lr")
        num(self.weight_decay, "--wd", lo=0.0, hi=10.0, error=UsageError, fix="a weight decay in [0, 10], e.g. --wd 0.2")
        num(self.align_weight, "align_weight", lo=0.0, error=UsageError, fix="a weight >= 0, e.g. 0.1")
        num(self.control_every, "--control-every", lo=0, integer=True, error=UsageError,
            fix="steps between temperature updates >= 0 (0 = once per epoch)")
        num(self.max_steps, "--max-steps", lo=0, integer=True, error=UsageError, fix="a step count >= 0 (0 = no limit)")
        num(self.seed, "--seed", lo=0, hi=2**32 - 1, integer=True, error=UsageError, fix="an integer seed >= 0")
        self.mode = parse_mode(self.mode, "--mode").value
        return self


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


OUTPUTS = ("madtp.pt", "model.safetensors", "model.json", "last.pt")


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The data order of one epoch: a function of (seed, epoch) only, so a resumed run sees it again."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch))


def rng_states() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])


def read_last(path: Path) -> dict:
    """last.pt, or a CheckpointError naming it (truncated by a kill, or not ours)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any failure to read is the file's
        raise CheckpointError(f"{path}: not a readable resume checkpoint ({type(exc).__name__}); fix: delete it "
                              f"to start over, or resume from a complete copy") from None
    need = ("model", "optimizer", "temperature", "epoch", "step", "history")
    if not isinstance(state, dict) or any(k not in state for k in need):
        raise CheckpointError(f"{path}: not a resume checkpoint of `madtp-deploy train` (needs {', '.join(need)}); "
                              f"fix: delete it to start over")
    return state


def train(cfg: TrainConfig, log=print, progress=None) -> dict:
    from ..api import load

    cfg.validate()
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    out = Path(cfg.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MadtpError(f"{out}: cannot create the output folder ({exc.strerror}); fix: pass --output DIR") from None
    remove_stale_temps(out, OUTPUTS)  # a killed run's half-written temporaries, never a final file
    state = read_last(out / "last.pt") if cfg.resume and (out / "last.pt").exists() else None
    model = load(cfg.init, mode=cfg.mode)
    tr, va = dataset.load(Path(cfg.data), "train"), dataset.load(Path(cfg.data), "val")
    tok = dataset.tokenizer_for(Path(cfg.data), model.spec, Path(cfg.tokenizer) if cfg.tokenizer else None)
    log(f"train: {len(tr.images)} images / {len(tr.captions)} captions; val: {len(va.images)} images")
    pixels = tr.pixels(model.spec.image_size)
    ids, mask = tr.tokenize(tok)
    img_of = torch.tensor(tr.txt2img)
    n_ctrl = min(128, len(va.images))
    v_pixels = va.pixels(model.spec.image_size, range(n_ctrl))
    v_ids, v_mask = va.tokenize(tok, [va.img2txt[i][0] for i in range(n_ctrl)])

    model.temperature = 0.0
    dense = cur = measure_gflops(model, v_pixels, v_ids, v_mask)
    target = dense * (1 - cfg.reduce)
    model.temperature = 1.0 if cfg.reduce > 0 else 0.0
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, start_batch, step, history = 0, 0, 0, []
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{out / 'last.pt'}: does not fit this run ({str(exc).splitlines()[0][:160]}); "
                                  f"fix: resume with the same --init, or delete it to start over") from None
        model.temperature, step, history = state["temperature"], state["step"], state["history"]
        start_epoch, start_batch = state["epoch"], state.get("batch", 0)
        if start_batch == 0:  # saved at the end of an epoch (older files too): the next one starts
            start_epoch += 1
        if "rng" in state:
            set_rng_states(state["rng"])
        cur = state.get("gflops_current", cur)
        log(f"resumed from {out / 'last.pt'} at epoch {start_epoch}, step {step}")
    elif cfg.reduce > 0:  # the reference's calculate_temperature: search an initial T before training
        model.eval()

        def at(t: float) -> float:
            model.temperature = t
            return measure_gflops(model, v_pixels, v_ids, v_mask)

        model.temperature, cur = control.search_temperature(at, model.temperature, target, dense)
        log(f"initial temperature {model.temperature:.3f}")

    def save_last(epoch: int, batch: int) -> None:
        """batch = 0: epoch complete; else the next batch of `epoch` to run."""
        _save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(), "temperature": model.temperature,
                      "epoch": epoch, "batch": batch, "step": step, "history": history, "rng": rng_states(),
                      "gflops_current": cur, "config": asdict(cfg)}, out / "last.pt")

    steps_per_epoch = math.ceil(len(ids) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    task = progress.add_task("train", total=total, completed=step) if progress else None
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        perm = epoch_order(cfg.seed, epoch, len(ids))
        first = start_batch if epoch == start_epoch else 0
        stopped = False
        for b in range(first, steps_per_epoch):
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
            if not torch.isfinite(loss):
                raise MadtpError(f"{cfg.data}: training loss became {loss.item()} at step {step}; fix: lower --lr "
                                 f"(now {cfg.lr:g}) or check the data")
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
            if cfg.max_steps and step >= cfg.max_steps and b + 1 < steps_per_epoch:
                stopped = True
                break
        model.eval()
        if stopped:  # mid-epoch: the position is saved, the epoch-end control is left to the resumed run
            save_last(epoch, b + 1)
            meta = {"config": asdict(cfg), "gflops_dense": dense, "gflops_target": target, "gflops_current": cur}
            _write_model(model, out, epoch, meta)
            log(f"stopped at step {step} (--max-steps), mid-epoch {epoch}; continue with --resume")
            break
        cur = measure_gflops(model, v_pixels, v_ids, v_mask)
        if cfg.reduce > 0 and not cfg.control_every and epoch + 1 < cfg.epochs:
            model.temperature = control.next_temperature(model.temperature, cur, target, dense)
            cur = measure_gflops(model, v_pixels, v_ids, v_mask)
        meta = {"config": asdict(cfg), "gflops_dense": dense, "gflops_target": target, "gflops_current": cur}
        _write_model(model, out, epoch, meta)
        save_last(epoch, 0)
        log(f"epoch {epoch}: loss {history[-1]['loss']:.4f}, GFLOPs/pair {cur:.4f} (target {target:.4f}, "
            f"dense {dense:.4f}), T {model.temperature:.3f}")
        if cfg.max_steps and step >= cfg.max_steps:
            break
    return {"gflops_dense": dense, "gflops_target": target, "gflops_current": cur, "temperature": model.temperature,
            "history": history}
