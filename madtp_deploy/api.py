"""The public entry point: `madtp_deploy.load(source, mode=..., temperature=...)`."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import CheckpointError
from .models.clip import MODES, MadtpCLIP
from .specs import get_spec, spec_names

SHIPPED = Path(__file__).parent / "assets" / "madtp-clip-tiny.pt"


def load(source: str | Path, *, mode: str = "reference", temperature: float | None = None) -> MadtpCLIP:
    """Build a MADTP CLIP from a spec name (seeded random init), a checkpoint file or an HF directory.

    temperature=None keeps the checkpoint's own (0, no pruning, for dense checkpoints and specs).
    """
    if mode not in MODES:
        raise CheckpointError(f"mode: {mode!r} is not one of {', '.join(MODES)}; fix: pick one")
    from .models import checkpoint, hf

    if str(source) == "shipped":
        source = SHIPPED
    if isinstance(source, str) and source in spec_names():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return MadtpCLIP(get_spec(source), mode=mode, temperature=temperature or 0.0).eval()
    path = Path(source)
    if path.is_dir():
        return hf.load_hf_directory(path, mode, temperature)
    if path.is_file():
        if path.suffix == ".safetensors":
            return checkpoint.load_safetensors_file(path, mode, temperature)
        return checkpoint.load_torch_file(path, mode, temperature)
    if isinstance(source, str) and "/" not in source and "." not in source:
        get_spec(source)  # raises the "unknown spec" error listing the registry
    raise CheckpointError(f"{path}: no such file or directory; fix: pass a spec name "
                          f"({', '.join(spec_names())}), a checkpoint file or an HF directory")
