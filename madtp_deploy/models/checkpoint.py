"""Strict checkpoint loading: OpenAI CLIP, MADTP CLIP, Hugging Face CLIPModel, our safetensors.

Geometry is read from the weights. Training-only extras of MADTP checkpoints (momentum encoders,
queues) are skipped by name; anything else missing, unexpected or mis-shaped is an error that lists
the keys (the reference loads with strict=False and silently ignores mistakes; we do not).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..specs import ClipSpec
from . import blip_checkpoint  # BLIP NLVR2 / retrieval files, detected from their keys
from .clip import MadtpCLIP
from .state import MAG_SEED, TRAINING_ONLY, fmt_keys, load_strict, read_torch, stored_temperature

OPENAI_META = {"input_resolution", "context_length", "vocab_size"}  # ints in OpenAI's state dicts


def _need(sd: dict, path: Path, keys: list[str], what: str) -> None:
    missing = [k for k in keys if k not in sd]
    if missing:
        raise CheckpointError(f"{path}: not {what}: missing key(s) {fmt_keys(missing)}; "
                              f"fix: pass an OpenAI/MADTP CLIP ViT checkpoint or a Hugging Face CLIP directory")


def _count(sd: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.attn\.in_proj_weight$")
    return len({m.group(1) for k in sd if (m := pat.match(k))})


def spec_from_state_dict(sd: dict, path: Path, name: str | None = None, **overrides) -> ClipSpec:
    """Infer a ClipSpec from OpenAI-named weights (heads = width // 64 unless overridden)."""
    _need(sd, path, ["visual.conv1.weight", "visual.positional_embedding", "visual.proj",
                     "positional_embedding", "token_embedding.weight", "ln_final.weight",
                     "text_projection"], "a CLIP ViT checkpoint")
    vw = sd["visual.conv1.weight"].shape[0]
    patch = sd["visual.conv1.weight"].shape[-1]
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    tw = sd["ln_final.weight"].shape[0]
    vl, tl = _count(sd, "visual.transformer.resblocks."), _count(sd, "transformer.resblocks.")
    if vl == 0 or tl == 0:
        raise CheckpointError(f"{path}: no transformer blocks found (visual: {vl}, text: {tl}); "
                              f"fix: pass a CLIP ViT checkpoint (ResNet CLIP is not supported)")
    fields = dict(
        name=name or path.stem, image_size=patch * grid, patch_size=patch, vision_width=vw,
        vision_layers=vl, vision_heads=max(vw // 64, 1),
        vision_mlp=sd.get("visual.transformer.resblocks.0.mlp.c_fc.weight", torch.empty(4 * vw)).shape[0],
        context_length=sd["positional_embedding"].shape[0], vocab_size=sd["token_embedding.weight"].shape[0],
        text_width=tw, text_layers=tl, text_heads=max(tw // 64, 1),
        text_mlp=sd.get("transformer.resblocks.0.mlp.c_fc.weight", torch.empty(4 * tw)).shape[0],
        embed_dim=sd["text_projection"].shape[1],
    )
    if "space_dict" in sd:
        fields["sd_num"], fields["sd_dim"] = sd["space_dict"].shape
    fields.update(overrides)
    return ClipSpec(**fields).validate()


_FIELD_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "int | None": (int, type(None))}


def spec_fields(d, where: str, complete: bool = False) -> dict:
    """Check a stored spec (checkpoint 'spec' field, sidecar/JSON 'spec'): a dict of known fields with
    values of the right type; positive geometry; every field when `complete`. Returns it unchanged."""
    fix = "re-save the checkpoint with madtp-deploy, or remove the 'spec' field to infer it from the weights"
    if not isinstance(d, dict):
        raise CheckpointError(f"{where}: field 'spec' is a {type(d).__name__}, expected a dict; fix: {fix}")
    fields = {f.name: f for f in dataclasses.fields(ClipSpec)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise CheckpointError(f"{where}: field 'spec' has unknown key(s) {', '.join(map(str, unknown))}; "
                              f"fix: remove them (known: {', '.join(fields)})")
    missing = [k for k, f in fields.items() if complete and k not in d and f.default is dataclasses.MISSING]
    if missing:
        raise CheckpointError(f"{where}: field 'spec' lacks {', '.join(missing)}; fix: {fix}")
    for k, v in d.items():
        kind = str(fields[k].type)
        if isinstance(v, bool) or not isinstance(v, _FIELD_TYPES.get(kind, (object,))):
            raise CheckpointError(f"{where}: field 'spec.{k}' is {v!r}, expected {kind}; fix: {fix}")
        num: Any = v  # a JSON number of the field's type (checked above)
        if kind == "int" and num < 1 or k == "eot_token_id" and num is not None and num < 0 or \
                kind == "float" and not (math.isfinite(num) and num > 0):
            raise CheckpointError(f"{where}: field 'spec.{k}' is {v!r}, must be positive; fix: {fix}")
    return d


def _mag_keys(model: MadtpCLIP) -> set[str]:
    return {k for k in model.state_dict() if k == "space_dict" or ".query_model." in k}


def build_from_state_dict(sd: dict, path: Path, spec: ClipSpec, mode: str, temperature: float) -> MadtpCLIP:
    """Load `sd` into a fresh model, strictly. A dense checkpoint gets seeded fresh MAG parameters."""
    sd = {k: v for k, v in sd.items() if k not in OPENAI_META and not TRAINING_ONLY.match(k)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(MAG_SEED)
        model = MadtpCLIP(spec, mode=mode, temperature=temperature)
    mag = _mag_keys(model)
    given_mag = mag & sd.keys()
    if given_mag and given_mag != mag:
        raise CheckpointError(f"{path}: MADTP alignment parameters incomplete: missing {fmt_keys(mag - given_mag)}; "
                              f"fix: pass the full MADTP checkpoint")
    return load_strict(model, sd, path, fresh=mag - given_mag, what=spec.name)


# -- file formats -------------------------------------------------------------------------------

def _read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc}); fix: re-save it") from exc


def load_torch_file(path: Path, mode: str, temperature: float | None) -> MadtpCLIP:
    obj = read_torch(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: top level is {type(obj).__name__}, expected a dict; "
                              f"fix: pass a state dict or {{'model': state_dict, 'temperature': T}}")
    if blip_checkpoint.is_blip_object(obj):
        return blip_checkpoint.load_object(obj, path, mode, temperature)
    overrides = {}
    if "model" in obj:  # MADTP format
        sd = obj["model"]
        stored_t = obj.get("temperature", 0.0)
        if temperature is None:  # an override replaces a bad stored value
            stored_t = stored_temperature(stored_t, str(path))
        overrides = spec_fields(obj.get("spec") or {}, str(path))
    else:
        sd, stored_t = obj, 0.0
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) or k in OPENAI_META for k, v in sd.items()):
        raise CheckpointError(f"{path}: field 'model' is not a state dict of tensors; fix: pass a CLIP checkpoint")
    spec = spec_from_state_dict(sd, path, **overrides)
    return build_from_state_dict(sd, path, spec, mode, float(stored_t if temperature is None else temperature))


def load_safetensors_file(path: Path, mode: str, temperature: float | None) -> MadtpCLIP:
    """Our own format: <name>.safetensors plus <name>.json with {'spec': ..., 'temperature': ...}."""
    sd = _read_safetensors(path)
    meta_path = path.with_suffix(".json")
    meta = {}
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{meta_path}: invalid JSON ({exc.msg}, line {exc.lineno}); fix: re-write it") from exc
        if not isinstance(meta, dict):
            raise CheckpointError(f"{meta_path}: top level is a {type(meta).__name__}, expected an object "
                                  f"{{'spec': ..., 'temperature': ...}}; fix: re-write it or remove it")
    spec = ClipSpec(**spec_fields(meta["spec"], str(meta_path), complete=True)).validate() if "spec" in meta \
        else spec_from_state_dict(sd, path)
    t = stored_temperature(meta.get("temperature", 0.0), str(meta_path)) if temperature is None else temperature
    return build_from_state_dict(sd, path, spec, mode, float(t))
