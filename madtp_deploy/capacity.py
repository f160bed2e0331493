"""Capacity profiles: a fixed slot count per pruned layer, for static-shape graphs (engines).

A layer's *slot demand* for one instance is how many non-CLS tokens it keeps in its own
(invariant) decision: k_eff when it prunes, all its tokens when it skips. With capacity c the
layer always outputs [CLS, c slots, package]; an instance whose demand exceeds c keeps its top-c
tokens by TIS and merges the rest into its package token (it *overflows*). A profile takes a
quantile of each layer's demand over calibration inputs, like an MoE capacity factor: higher
quantiles overflow less and cost more.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .errors import UsageError
from .files import read_json, write_text_atomic

SCHEMA = "madtp-deploy/capacity/1"
# the cheapest quantile whose recall@1 stays within 0.5 point of the exact model on the shipped
# model (scripts/capacity_curve.py, docs/RESULTS.md); 0.99 overflows 4% of instances, not 76%
DEFAULT_QUANTILE = 0.5


def slot_demand(kept: torch.Tensor, tokens_in: torch.Tensor) -> torch.Tensor:
    """Per-layer slot demand [B, layers] from the invariant `kept` [B, layers] (CLS and package
    included) and the tokens entering the first layer [B].

    A layer that prunes drops below its input count (the skip rule needs at least 2 tokens merged),
    so kept = 1 + k + 1 there; a layer that skips keeps all: kept = 1 + n.
    """
    prev = torch.cat([tokens_in[:, None], kept[:, :-1]], 1)
    pruned = kept < prev
    return torch.where(pruned, kept - 2, kept - 1)


def quantile_capacity(demand: torch.Tensor, q: float) -> list[int]:
    """ceil of the q-quantile of each layer's demand (at least 1 slot)."""
    if not 0.0 < q <= 1.0 or math.isnan(q):
        raise UsageError(f"capacity quantile {q}: must be in (0, 1]; fix: e.g. 0.99")
    vals = torch.quantile(demand.double(), q, dim=0)
    return [max(1, math.ceil(v - 1e-9)) for v in vals.tolist()]


def capacity_kept(capacity: list[int], batch: int) -> torch.Tensor:
    """What every instance of a static graph computes: 1 + c + 1 tokens after each layer."""
    return torch.tensor([c + 2 for c in capacity], dtype=torch.long).expand(batch, -1)


@dataclass
class CapacityProfile:
    encoder: str
    quantile: float
    capacity: list[int]
    samples: int
    overflow_rate: float                      # share of calibration instances that overflow some layer
    demand_max: list[int]
    provenance: dict = field(default_factory=dict)  # model source, weights hash, data and its hash
    schema: str = SCHEMA

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "CapacityProfile":
        d = read_json(path, UsageError, "capacity profile missing",
                      "make one with `madtp-deploy export --shapes static` (it writes calibration/*.capacity.json)")
        if d.get("schema") != SCHEMA:
            raise UsageError(f"{path}: field 'schema' is {d.get('schema')!r}, not {SCHEMA!r}; fix: regenerate it")
        try:
            return cls(**d)
        except TypeError as exc:
            raise UsageError(f"{path}: malformed capacity profile ({exc}); fix: regenerate it") from exc


def profile_from_demand(encoder: str, demand: torch.Tensor, quantile: float, provenance: dict) -> CapacityProfile:
    cap = quantile_capacity(demand, quantile)
    over = (demand > torch.tensor(cap)).any(1)
    return CapacityProfile(encoder, quantile, cap, int(demand.shape[0]), float(over.double().mean()),
                           [int(v) for v in demand.amax(0).tolist()], provenance)


def tensor_sha256(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def measure_demand(model, encoder: str, inputs: dict[str, torch.Tensor], batch: int = 32) -> torch.Tensor:
    """Each calibration instance's slot demand [n, layers], from the model's invariant decisions."""
    from .onnx.io import encoder_io

    io = encoder_io(model, encoder)
    n = len(next(iter(inputs.values())))
    saved, model.capacity = model.capacity, None
    out = []
    try:
        with torch.inference_mode():
            for i in range(0, n, batch):
                e = io.encode(model, *(inputs[k][i:i + batch] for k in io.input_names))
                out.append(slot_demand(e.kept, e.tokens_in))
    finally:
        model.capacity = saved
    return torch.cat(out)


def calibration_inputs(model, encoder: str, data: Path | None, n: int, split: str = "val"
                       ) -> tuple[dict[str, torch.Tensor], dict]:
    """n calibration inputs for `encoder` from a dataset folder's `split` (not the one you evaluate
    on), or by default from generated scenes (seed 7, a set no eval or bench uses), and their provenance."""
    from .data import dataset, scenes
    from .files import temp_dir
    from .onnx.io import encoder_io

    with temp_dir("madtp-capacity-") as tmp:
        if data is None:
            scenes.generate(tmp, n_train=0, n_val=n, n_test=0, seed=7)
            root, where, split = tmp, "generated scenes (seed 7)", "val"
        else:
            root, where = Path(data), str(Path(data).resolve())
        loaded = dataset.load(root, split)
        io = encoder_io(model, encoder)
        inputs = io.from_dataset(model.spec, loaded, root, range(min(n, io.pool(loaded))))
    prov = {"data": where, "split": split, "samples": len(next(iter(inputs.values()))),
            "inputs_sha256": tensor_sha256(*inputs.values())}
    return inputs, prov


def fit_profiles(model, encoders, quantile: float, data: Path | None, samples: int,
                 source: str, weights_sha256: str) -> dict[str, CapacityProfile]:
    """One capacity profile per encoder from the model's own decisions on calibration inputs."""
    if samples < 1:
        raise UsageError(f"capacity samples {samples}: must be >= 1; fix: e.g. 256")
    out = {}
    for enc in encoders:
        inputs, prov = calibration_inputs(model, enc, data, samples)
        demand = measure_demand(model, enc, inputs)
        prov |= {"model": source, "weights_sha256": weights_sha256, "temperature": model.temperature}
        out[enc] = profile_from_demand(enc, demand, quantile, prov)
    return out


def apply(model, profiles: dict[str, CapacityProfile]) -> None:
    """Give the model fixed per-layer slots (static shapes, invariant answers where they fit)."""
    if model.mode == "reference":
        raise UsageError("--shapes static: capacities give each instance its own (invariant) answer; "
                         "fix: use --mode invariant or packed, not reference")
    model.capacity = {enc: tuple(p.capacity) for enc, p in profiles.items()}


def make_static(model, source: str, name: str, quantile: float, data: Path | None, samples: int,
                out_dir: Path, log=print) -> dict[str, dict]:
    """Fit one profile per encoder, give the model those capacities, and record each profile as
    <out_dir>/<name>.<encoder>.capacity.json. Returns the profiles as dicts (for the sidecars)."""
    from .files import weights_sha256

    profiles = fit_profiles(model, ("image", "text"), quantile, data, samples, source, weights_sha256(model))
    apply(model, profiles)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for enc, prof in profiles.items():
        path = Path(out_dir) / f"{name}.{enc}.capacity.json"
        prof.save(path)
        log(f"{enc} capacities {prof.capacity} (quantile {prof.quantile:g}: {100 * prof.overflow_rate:.1f}% of "
            f"{prof.samples} calibration inputs overflow some layer) -> {path}")
    return {enc: asdict(p) for enc, p in profiles.items()}
