"""Strict loading of BLIP checkpoints: the reference's MADTP files and Salesforce BLIP files.

Both are `torch.save({'model': state_dict, ...})`; MADTP's add 'temperature' and `space_dict`,
Salesforce's add 'optimizer' / 'config' / 'epoch'. The task is read from the keys (`cls_head`:
NLVR2, `itm_head` + `vision_proj`: retrieval) and the geometry from the shapes (heads from a head
width of 64, as BLIP's configs have). Training-only extras (momentum encoders, queues) and the saved
`position_ids` buffer are skipped by name; anything else missing, unexpected or mis-shaped is an
error that lists the keys.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import torch

from ..errors import CheckpointError, SpecError
from ..specs import BlipSpec
from .blip import build
from .state import MAG_SEED, TRAINING_ONLY, fmt_keys, load_strict, read_torch, stored_temperature

SKIPPED = {"text_encoder.embeddings.position_ids"}  # a buffer BLIP's BertEmbeddings saves; we rebuild it
HEAD_DIM = 64


def is_blip(sd: dict) -> bool:
    return any(k.startswith("visual_encoder.") for k in sd) and any(k.startswith("text_encoder.") for k in sd)


def _count(sd: dict, pattern: str) -> int:
    pat = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := pat.match(k))})


def _shape(sd: dict, key: str, path: Path, what: str):
    if key not in sd:
        raise CheckpointError(f"{path}: not {what}: missing key {key}; fix: pass a BLIP NLVR2 or retrieval "
                              f"checkpoint (Salesforce BLIP or MADTP)")
    return sd[key].shape


def spec_from_state_dict(sd: dict, path: Path, name: str | None = None, **overrides) -> BlipSpec:
    """Infer a BlipSpec from BLIP-named weights."""
    if "cls_head.0.weight" in sd:
        task = "nlvr"
    elif "itm_head.weight" in sd:
        task = "retrieval"
    else:
        raise CheckpointError(f"{path}: a BLIP checkpoint without cls_head (NLVR2) or itm_head (retrieval); "
                              f"fix: pass a BLIP NLVR2 or retrieval checkpoint (pretrain, caption and VQA "
                              f"files are not supported)")
    what = f"a BLIP {task} checkpoint"
    vw = _shape(sd, "visual_encoder.cls_token", path, what)[-1]
    patch = _shape(sd, "visual_encoder.patch_embed.proj.weight", path, what)[-1]
    grid = round((_shape(sd, "visual_encoder.pos_embed", path, what)[1] - 1) ** 0.5)
    vocab, tw = _shape(sd, "text_encoder.embeddings.word_embeddings.weight", path, what)
    vl = _count(sd, r"visual_encoder\.blocks\.(\d+)\.attn\.qkv\.weight$")
    tl = _count(sd, r"text_encoder\.encoder\.layer\.(\d+)\.attention\.self\.query\.weight$")
    if vl == 0 or tl == 0:
        raise CheckpointError(f"{path}: no transformer layers found (vision: {vl}, text: {tl}); "
                              f"fix: pass a complete BLIP checkpoint")
    merges = [int(m.group(1)) for k in sd
              if (m := re.match(r"text_encoder\.encoder\.layer\.(\d+)\.crossattention\.output\.merge_layer\.weight$", k))]
    fields = dict(
        name=name or path.stem, task=task, image_size=patch * grid, patch_size=patch,
        vision_width=vw, vision_layers=vl, vision_heads=max(vw // HEAD_DIM, 1),
        vision_mlp=_shape(sd, "visual_encoder.blocks.0.mlp.fc1.weight", path, what)[0],
        vocab_size=vocab, text_width=tw, text_layers=tl, text_heads=max(tw // HEAD_DIM, 1),
        text_mlp=_shape(sd, "text_encoder.encoder.layer.0.intermediate.dense.weight", path, what)[0],
        max_positions=_shape(sd, "text_encoder.embeddings.position_embeddings.weight", path, what)[0],
        sd_num=100, sd_dim=tw,
    )
    if task == "retrieval":
        fields["embed_dim"] = _shape(sd, "vision_proj.weight", path, what)[0]
    else:
        fields["merge_from"] = min(merges) if merges else tl
    if "space_dict" in sd:
        fields["sd_num"], fields["sd_dim"] = sd["space_dict"].shape
    fields.update(overrides)
    return BlipSpec(**fields).validate()


def build_from_state_dict(sd: dict, path: Path, spec: BlipSpec, mode, temperature: float):
    """Load `sd` into a fresh model, strictly. A dense checkpoint gets a seeded fresh `space_dict`."""
    sd = {k: v for k, v in sd.items() if k not in SKIPPED and not TRAINING_ONLY.match(k)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(MAG_SEED)
        model = build(spec, mode=mode, temperature=temperature)
    return load_strict(model, sd, path, fresh={"space_dict"} - sd.keys(), what=f"{spec.name} ({spec.task})")


def is_blip_object(obj: dict) -> bool:
    """A loaded checkpoint (`{'model': sd, ...}` or a bare state dict) with BLIP's keys."""
    sd = obj.get("model", obj)
    return isinstance(sd, dict) and is_blip(sd)


def _spec_overrides(d, path: Path) -> dict:
    """Our own files store the spec; anything there must be a BlipSpec field."""
    if not isinstance(d, dict):
        raise CheckpointError(f"{path}: field 'spec' is a {type(d).__name__}, expected a dict; "
                              f"fix: remove the 'spec' field to infer it from the weights")
    known = {f.name for f in dataclasses.fields(BlipSpec)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise CheckpointError(f"{path}: field 'spec' has unknown key(s) {', '.join(map(str, unknown))}; "
                              f"fix: remove them (known: {', '.join(sorted(known))})")
    return dict(d)


def load_object(obj: dict, path: Path, mode, temperature: float | None):
    """Build the model from a read checkpoint; `temperature` None keeps the file's (0 for Salesforce's)."""
    sd = obj.get("model", obj)
    if not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: field 'model' is not a state dict of tensors; fix: pass a BLIP checkpoint")
    stored = obj.get("temperature", 0.0) if "model" in obj else 0.0
    t = stored_temperature(stored, str(path)) if temperature is None else float(temperature)
    overrides = _spec_overrides(obj.get("spec") or {}, path) if "model" in obj else {}
    try:
        spec = spec_from_state_dict(sd, path, **overrides)
    except SpecError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    return build_from_state_dict(sd, path, spec, mode, t)


# -- NLVR2 fine-tuning from a pre-trained BLIP ----------------------------------------------------------

# What an NLVR2 model has that a pre-trained (or retrieval) BLIP lacks: BLIP trains these from scratch.
NLVR_NEW = re.compile(r"cls_head\.|text_encoder\.encoder\.layer\.\d+\.crossattention\.output\.merge_layer\.")


def nlvr_from_pretrained(sd: dict) -> dict:
    """A pre-trained BLIP state dict renamed for NLVR2 as BLIP's NLVR2 fine-tuning loads it (BLIP's
    blip_nlvr.load_checkpoint): each text layer's one cross-attention (query, key, value and its output
    dense) is copied into the twin attention of both images (self0 / self1, dense0 / dense1). The rest
    keeps its name; what NLVR2 does not use (ITC projections, ITM head, decoder) stays for the caller
    to drop."""
    out = {}
    for k, v in sd.items():
        for old, new in ((".crossattention.self.", ".crossattention.self{}."),
                         (".crossattention.output.dense.", ".crossattention.output.dense{}.")):
            if old in k:
                out.update({k.replace(old, new.format(i)): v.clone() for i in (0, 1)})
                break
        else:
            out[k] = v
    return out


def init_nlvr_from_pretrained(model, path: Path) -> dict:
    """Load a pre-trained BLIP checkpoint (ours or Salesforce's, retrieval or pre-training) into the NLVR2
    `model` in place: every tensor the NLVR2 model shares with it, shapes checked; the merge layers and
    cls_head keep their fresh values, as in BLIP; the MAG alignment tokens are taken when the file has
    them. Returns {'loaded', 'new', 'ignored'} key counts."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--pretrained {path}: file not found; fix: pass a BLIP retrieval or pre-training "
                              f"checkpoint (madtp.pt of `train --init blip-retrieval-*`)")
    obj = read_torch(path)
    sd = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not is_blip(sd):
        raise CheckpointError(f"--pretrained {path}: not a BLIP checkpoint (no visual_encoder.* and text_encoder.* "
                              f"keys); fix: pass a BLIP retrieval or pre-training checkpoint")
    sd = nlvr_from_pretrained({k: v for k, v in sd.items() if k not in SKIPPED and not TRAINING_ONLY.match(k)})
    expected = model.state_dict()
    take = {k: v for k, v in sd.items() if k in expected}
    new = expected.keys() - take.keys()
    lacking = sorted(k for k in new if not NLVR_NEW.match(k) and k != "space_dict")
    if lacking:
        raise CheckpointError(f"--pretrained {path}: does not cover {model.spec.name}: missing key(s) "
                              f"{fmt_keys(lacking)}; fix: pre-train the same geometry (e.g. blip-retrieval-deep for "
                              f"blip-nlvr-deep)")
    load_strict(model, take, path, fresh=new, what=f"{model.spec.name} (--pretrained)")  # shapes, finite, load
    return {"loaded": len(take), "new": len(new), "ignored": len(sd.keys() - expected.keys())}
