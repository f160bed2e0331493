"""The public entry point: `madtp_deploy.load(source, mode=..., temperature=...)`."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import CheckpointError, UsageError
from .models.clip import MODES
from .models.inputs import check_temperature
from .modes import LIBRARY_DEFAULT, parse_mode
from . import families
from .specs import get_spec, spec_names

ASSETS = Path(__file__).parent / "assets"
SHIPPED = ASSETS / "madtp-clip-deep.pt"  # the shipped model: `make shipped-model` trains it (issue 21)
# the names `load` resolves to the checkpoints shipped in assets/
SHIPPED_NAMES = {
    "shipped": SHIPPED,
    "shipped-dense": ASSETS / "madtp-clip-deep-dense.pt",  # the dense model it was compressed from (peers)
    "shipped-tiny": ASSETS / "madtp-clip-tiny.pt",          # the previous shipped model (4 layers): tests
    "shipped-tiny-dense": ASSETS / "madtp-clip-tiny-dense.pt",
}


def load(source: str | Path, *, mode: str = LIBRARY_DEFAULT.value, temperature: float | None = None):
    """Build a MADTP model (any registered family) from a spec name (seeded random init), a checkpoint file or an HF directory.

    temperature=None keeps the checkpoint's own (0, no pruning, for dense checkpoints and specs).
    """
    mode = parse_mode(mode).value
    if mode not in MODES:  # a mode the model class does not implement (yet)
        raise UsageError(f"mode {mode!r}: not supported by this model; fix: use one of {', '.join(MODES)}")
    if temperature is not None:
        temperature = check_temperature(temperature)
    from .models import checkpoint, hf

    source = SHIPPED_NAMES.get(str(source), source)
    if isinstance(source, str) and source in spec_names():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            spec = get_spec(source)
            build = families.of(spec).hook("build")
            return build(spec, mode=mode, temperature=temperature or 0.0).eval()
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
