"""Hugging Face CLIPModel directories (config.json + safetensors or bin), converted to OpenAI names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..files import read_json
from .checkpoint import _read_safetensors, build_from_state_dict, spec_from_state_dict
from .state import read_torch

_BLOCK = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
          "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
_TOP = {
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
    "vision_model.post_layernorm.weight": "visual.ln_post.weight",
    "vision_model.post_layernorm.bias": "visual.ln_post.bias",
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "logit_scale": "logit_scale",
}
_IGNORED = ("vision_model.embeddings.position_ids", "text_model.embeddings.position_ids")


def _read_weights(directory: Path) -> dict:
    files = sorted(directory.glob("*.safetensors")) or sorted(directory.glob("pytorch_model*.bin"))
    if not files:
        raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin; "
                              f"fix: save the model with save_pretrained")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        sd.update(_read_safetensors(f) if f.suffix == ".safetensors" else read_torch(f))
    return sd


def convert_hf_state_dict(hf: dict, path: Path) -> dict:
    out, used = {}, set()
    for src, dst in _TOP.items():
        if src in hf:
            out[dst] = hf[src]
            used.add(src)
    for proj, dst in (("visual_projection.weight", "visual.proj"), ("text_projection.weight", "text_projection")):
        if proj in hf:
            out[dst] = hf[proj].t().contiguous()
            used.add(proj)
    for tower, prefix in (("vision_model", "visual.transformer.resblocks"), ("text_model", "transformer.resblocks")):
        i = 0
        while f"{tower}.encoder.layers.{i}.self_attn.q_proj.weight" in hf:
            src = f"{tower}.encoder.layers.{i}."
            for kind in ("weight", "bias"):
                names = [f"{src}self_attn.{p}_proj.{kind}" for p in "qkv"]
                missing = [n for n in names if n not in hf]
                if missing:
                    raise CheckpointError(f"{path}: missing key(s) {', '.join(missing)}; fix: re-save the model")
                out[f"{prefix}.{i}.attn.in_proj_{kind}"] = torch.cat([hf[n] for n in names])
                used.update(names)
            for a, b in _BLOCK.items():
                for kind in ("weight", "bias"):
                    if f"{src}{a}.{kind}" in hf:
                        out[f"{prefix}.{i}.{b}.{kind}"] = hf[f"{src}{a}.{kind}"]
                        used.add(f"{src}{a}.{kind}")
            i += 1
    unexpected = set(hf) - used - set(_IGNORED)
    if unexpected:
        raise CheckpointError(f"{path}: unexpected key(s) for CLIPModel: {', '.join(sorted(unexpected)[:6])}; "
                              f"fix: pass a CLIPModel directory (not a CLIPVisionModel or another architecture)")
    return out


def load_hf_directory(directory: Path, mode: str, temperature: float | None):
    cfg_path = directory / "config.json"
    cfg = read_json(cfg_path, CheckpointError, "no config.json", "pass a CLIPModel directory written by save_pretrained")
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cfg_path}: top level is a JSON {type(cfg).__name__}, expected an object; "
                              f"fix: pass a CLIPModel directory written by save_pretrained")
    if cfg.get("model_type") != "clip":
        raise CheckpointError(f"{cfg_path}: field 'model_type' is {cfg.get('model_type')!r}, expected 'clip'; "
                              f"fix: pass a Hugging Face CLIPModel directory")
    from transformers import CLIPConfig  # the config's defaults are transformers' own
    for tower in ("vision_config", "text_config"):
        if cfg.get(tower) is not None and not isinstance(cfg[tower], dict):
            raise CheckpointError(f"{cfg_path}: field '{tower}' is a {type(cfg[tower]).__name__}, expected an "
                                  f"object; fix: re-save with save_pretrained")
    try:
        config = CLIPConfig.from_dict(cfg)
    except Exception as exc:  # noqa: BLE001 - transformers' own errors on malformed configs
        raise CheckpointError(f"{cfg_path}: not a valid CLIPConfig ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); fix: re-save with save_pretrained") from exc
    sd = convert_hf_state_dict(_read_weights(directory), directory)
    v: Any = config.vision_config  # CLIPVisionConfig once from_dict has run
    t: Any = config.text_config
    if v.hidden_act != t.hidden_act or v.layer_norm_eps != t.layer_norm_eps:
        raise CheckpointError(f"{cfg_path}: vision and text towers differ in hidden_act/layer_norm_eps; "
                              f"fix: use a CLIPModel whose towers share them (unsupported otherwise)")
    eot = t.eos_token_id if isinstance(t.eos_token_id, int) else None
    spec = spec_from_state_dict(sd, directory, name=directory.name, vision_heads=v.num_attention_heads,
                                text_heads=t.num_attention_heads, act=v.hidden_act, ln_eps=v.layer_norm_eps,
                                eot_token_id=None if eot == 2 else eot)
    return build_from_state_dict(sd, directory, spec, mode, 0.0 if temperature is None else float(temperature))
