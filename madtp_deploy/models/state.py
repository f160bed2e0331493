"""What every checkpoint loader shares (CLIP: models/checkpoint.py and hf.py; BLIP: blip_checkpoint.py).

The loaders import from here and never from each other's lower pieces: checkpoint.py (file formats,
CLIP, the dispatch to BLIP) -> blip_checkpoint.py -> state.py.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import torch

from ..errors import CheckpointError
from .inputs import check_temperature

MAG_SEED = 0x4D414454  # "MADT": fresh MAG parameters for a dense checkpoint, identical on every load
TRAINING_ONLY = re.compile(r"^([A-Za-z0-9_]+_m(\.|$)|(image|text|idx|ptr)_queue$)")  # momentum copies, queues


def fmt_keys(keys, limit: int = 6) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def stored_temperature(value, where: str) -> float:
    """A temperature read from a file: finite and >= 0, else a CheckpointError naming the file."""
    return check_temperature(value, f"{where}: field 'temperature'", error=CheckpointError)


def check_finite(sd: dict, path: Path, limit: int = 3) -> None:
    """Refuse weights holding NaN or Inf (a diverged training run, a corrupted file): served, they
    would give NaN answers. One torch.isfinite pass per floating tensor; names the first bad ones."""
    bad = [k for k, v in sd.items()
           if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex()) and not torch.isfinite(v).all()]
    if bad:
        shown = "; ".join(f"{k} ({int(sd[k].isnan().sum())} NaN, {int(sd[k].isinf().sum())} Inf "
                          f"of {sd[k].numel()})" for k in bad[:limit])
        more = f" (+{len(bad) - limit} more tensor(s))" if len(bad) > limit else ""
        raise CheckpointError(f"{path}: weights hold NaN or Inf: {shown}{more}; fix: re-export the checkpoint "
                              f"from a healthy copy, or re-train it (its training diverged)")


def load_strict(model, sd: dict, path: Path, fresh: set[str], what: str):
    """Load `sd` into `model`: every key but those in `fresh` (MAG parameters a dense checkpoint lacks,
    which keep their seeded initial values) must be there with the model's shape, none besides, and
    every weight finite."""
    expected = model.state_dict()
    missing, unexpected = (expected.keys() - fresh) - sd.keys(), sd.keys() - expected.keys()
    if missing or unexpected:
        parts = ([f"missing key(s) {fmt_keys(missing)}"] if missing else []) + \
                ([f"unexpected key(s) {fmt_keys(unexpected)}"] if unexpected else [])
        raise CheckpointError(f"{path}: does not fit {what}: {'; '.join(parts)}; "
                              f"fix: pass a checkpoint of this architecture")
    bad = [f"{k} {tuple(sd[k].shape)} != {tuple(expected[k].shape)}" for k in sorted(sd)
           if tuple(sd[k].shape) != tuple(expected[k].shape)]
    if bad:
        raise CheckpointError(f"{path}: mis-shaped key(s) {'; '.join(bad[:4])}; fix: pass a consistent checkpoint")
    check_finite(sd, path)
    model.load_state_dict(sd, strict=False)  # strictness checked above; `fresh` keys may be absent
    return model.eval()


def read_torch(path: Path):
    """A torch.save file (weights only), or the TorchScript archive OpenAI released; else one CheckpointError."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read is the user's file
        if zipfile.is_zipfile(path):
            try:  # OpenAI's released files are TorchScript archives
                return torch.jit.load(str(path), map_location="cpu").state_dict()
            except Exception:  # noqa: BLE001
                pass
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}); "
                              f"fix: pass a file written by torch.save or a .safetensors file") from exc
