"""CLIP's training hooks: image-text contrastive loss (ITC, targets from image ids) + 0.1 x the MAG
alignment loss while pruning; GFLOPs of one retrieval pair (an image and a caption); checkpoints in
the MADTP format ({'model', 'epoch', 'temperature'} plus our 'spec') and as safetensors + JSON.
The loop (train/loop.py) does the rest."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from .. import flops, pruning
from ..evaluate import encode_all, evaluate  # noqa: F401 - evaluate: CLIP's evaluator, beside its hooks
from ..errors import UsageError
from ..files import atomic, write_text_atomic
from .loop import Step, TrainConfig, TrainHooks, save_atomic


def itc_loss(img, txt, image_ids, logit_scale):
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = logit_scale.exp() * img @ txt.t()
    pos = (image_ids[:, None] == image_ids[None, :]).float()
    targets = pos / pos.sum(1, keepdim=True)
    return (-(F.log_softmax(logits, 1) * targets).sum(1).mean() - (F.log_softmax(logits.t(), 1) * targets).sum(1).mean()) / 2


def distill_loss(img, txt, t_img, t_txt, logit_scale, t_logit_scale):
    """Both directions' KL(teacher || student) of the softmax over the batch's image-text similarities:
    the student matches the teacher's whole ranking of the batch, not only its positives."""
    def logits(i, t, scale):
        return scale.exp() * F.normalize(i, dim=-1) @ F.normalize(t, dim=-1).t()

    s, t = logits(img, txt, logit_scale), logits(t_img, t_txt, t_logit_scale)
    kl = lambda s_, t_: F.kl_div(F.log_softmax(s_, 1), F.log_softmax(t_, 1), log_target=True, reduction="batchmean")  # noqa: E731
    return (kl(s, t) + kl(s.t(), t.t())) / 2


def pair_gflops(model, pixels, ids, mask, batch_size: int = 64) -> torch.Tensor:
    """[images] GFLOPs of each image plus its caption (row i of ids)."""
    _, ikept, _, tkept, tin = encode_all(model, pixels, ids, mask, batch_size)
    on = model.temperature > 0
    return flops.image_flops(model.spec, ikept, on).gflops + flops.text_flops(model.spec, tin, tkept, on).gflops


def measure_gflops(model, pixels, ids, mask, batch_size: int = 64) -> float:
    """Mean per-instance GFLOPs of one image plus one caption (the retrieval 'pair')."""
    return float(pair_gflops(model, pixels, ids, mask, batch_size).mean())


def prepare(cfg: TrainConfig, model, log) -> SimpleNamespace:
    from ..data import dataset

    data = Path(cfg.data)
    tr, va = dataset.load(data, "train"), dataset.load(data, "val")
    tok = dataset.tokenizer_for(data, model.spec, Path(cfg.tokenizer) if cfg.tokenizer else None)
    log(f"train: {len(tr.images)} images / {len(tr.captions)} captions; val: {len(va.images)} images")
    ids, mask = tr.tokenize(tok)
    n_ctrl = min(128, len(va.images))
    v_ids, v_mask = va.tokenize(tok, [va.img2txt[i][0] for i in range(n_ctrl)])
    teacher = None
    if cfg.distill:
        teacher = teacher_embeddings(cfg.distill, cfg, model, tr.pixels(model.spec.image_size), ids, mask, log)
    return SimpleNamespace(n=len(ids), n_ctrl=n_ctrl, pixels=tr.pixels(model.spec.image_size), ids=ids, mask=mask,
                           img_of=torch.tensor(tr.txt2img), v_pixels=va.pixels(model.spec.image_size, range(n_ctrl)),
                           v_ids=v_ids, v_mask=v_mask, teacher=teacher)


def teacher_embeddings(source: str, cfg: TrainConfig, model, pixels, ids, mask, log) -> tuple:
    """(image embeds [images], caption embeds [captions], logit scale) of the frozen --distill teacher, once:
    the training inputs are fixed (no augmentation) and the teacher's decisions per instance, so they are
    what it would compute at every step."""
    from ..api import load

    teacher = load(source, mode=cfg.mode).eval()
    if (getattr(teacher.spec, "image_size", None), getattr(teacher.spec, "context_length", None)) != \
            (model.spec.image_size, model.spec.context_length):
        raise UsageError(f"--distill {source}: its inputs (spec {teacher.spec.name}) differ from --init's "
                         f"({model.spec.image_size} px, {model.spec.context_length} text tokens); fix: a teacher of "
                         f"the same geometry, e.g. the dense model --init was trained from")
    log(f"distilling from {source} (temperature {teacher.temperature:g}), weight {cfg.distill_weight:g}")
    with torch.no_grad():
        img, _, txt, _, _ = encode_all(teacher, pixels, ids, mask)
    return img, txt, teacher.logit_scale.detach().clone()


def loss(model, d, rows: torch.Tensor, cfg: TrainConfig, step: Step) -> dict:
    want_align = model.temperature > 0
    img_of = d.img_of[rows]
    e_img = model.encode_image(d.pixels[img_of], want_align=want_align)
    e_txt = model.encode_text(d.ids[rows], d.mask[rows], want_align=want_align)
    # the contrastive loss over the global batch (all processes' embeddings; one process: its own)
    loss_itc = itc_loss(step.gather(e_img.embeds), step.gather(e_txt.embeds), step.gather(img_of), model.logit_scale)
    loss_sim = step.share(pruning.alignment_loss(e_img.align, e_txt.align), len(rows)) if want_align \
        else torch.zeros(())
    out = {"loss": loss_itc + cfg.align_weight * loss_sim, "itc": loss_itc, "align": loss_sim}
    if d.teacher is not None:
        t_img, t_txt, t_scale = d.teacher
        out["distill"] = distill_loss(step.gather(e_img.embeds), step.gather(e_txt.embeds), step.gather(t_img[img_of]),
                                      step.gather(t_txt[rows]), model.logit_scale, t_scale)
        out["loss"] = out["loss"] + cfg.distill_weight * out["distill"]
    return out


def gflops(model, d, rows: list) -> torch.Tensor:
    return pair_gflops(model, d.v_pixels[rows], d.v_ids[rows], d.v_mask[rows])


def clamp_logit_scale(model) -> None:
    with torch.no_grad():
        model.logit_scale.clamp_(0, 4.6052)


def write_model(model, out: Path, epoch: int, meta: dict) -> None:
    """madtp.pt (the MADTP format), model.safetensors and model.json (spec, temperature, `meta`)."""
    from safetensors.torch import save_file

    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_atomic({"model": sd, "epoch": epoch, "temperature": model.temperature, "spec": model.spec.to_dict()},
                out / "madtp.pt")
    with atomic(out / "model.safetensors") as tmp:
        save_file(sd, str(tmp))
    write_text_atomic(out / "model.json", json.dumps({"spec": model.spec.to_dict(), "temperature": model.temperature,
                                                      "epoch": epoch, **meta}, indent=2))


HOOKS = TrainHooks(title="CLIP", prepare=prepare, loss=loss, gflops=gflops, write_model=write_model,
                   after_step=clamp_logit_scale, distills=True, unit="GFLOPs/pair",
                   outputs=("madtp.pt", "model.safetensors", "model.json"))
