"""The peers MADTP is measured beside (issue 20), on the same weights, inputs and runtime:
ToMe (peers/tome.py), static top-k pruning EViT-style (peers/topk.py) and the dense model at a
lower resolution (peers/lowres.py). Each is a `PeerCLIP` wrapping a dense CLIP; `match` chooses a
peer's knob so that its per-image GFLOPs equal a target (MADTP's mean own-token GFLOPs) within 2%.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Callable

import torch

from ..errors import UsageError
from .base import PeerCLIP
from .lowres import LowResCLIP
from .tome import ToMeCLIP, even_schedule
from .topk import TopKCLIP, keep_counts

PEERS: dict[str, Callable[..., PeerCLIP]] = {"tome": ToMeCLIP, "topk": TopKCLIP, "lowres": LowResCLIP}
METHODS = ("madtp",) + tuple(PEERS)
TOLERANCE = 0.02


def build(method: str, model, knob) -> PeerCLIP:
    """The peer `method` on `model`'s weights (a MadtpCLIP; its MADTP pruning is not used) at `knob`:
    ToMe: r (total over layers, or one per layer); topk: the keep rate; lowres: the grid (rows, cols)."""
    if method not in PEERS:
        raise UsageError(f"--method {method!r}: not a peer; fix: one of {', '.join(PEERS)}")
    family = getattr(model.spec, "task", None)
    if family is not None:
        raise UsageError(f"{model.spec.name}: the peers are built for CLIP image towers; fix: use a CLIP model")
    try:
        return PEERS[method](model, knob).eval()
    except ValueError as exc:
        raise UsageError(f"--method {method}: knob {knob!r}: {exc}; fix: let --match choose it") from exc


def candidates(method: str, spec) -> list:
    """Every knob of `method` worth trying on `spec` (the ones with distinct GFLOPs)."""
    layers, patches = spec.vision_layers, spec.vision_tokens - 1
    if method == "tome":
        seen = []
        for total in range(layers * patches + 1):
            r = even_schedule(total, layers, spec.vision_tokens)
            if r not in seen:
                seen.append(r)
        return seen
    if method == "topk":
        counts: set[tuple[int, ...]] = set()
        rates = []
        for i in range(1000, 0, -1):
            k = keep_counts(i / 1000, patches, layers)
            if k not in counts:
                counts.add(k)
                rates.append(i / 1000)
        return rates
    if method == "lowres":
        g = spec.image_size // spec.patch_size
        return [(a, b) for a in range(1, g + 1) for b in range(a, min(a + 1, g) + 1)]
    raise UsageError(f"--method {method!r}: not a peer; fix: one of {', '.join(PEERS)}")


@dataclass
class Match:
    method: str
    knob: object
    knob_text: str
    gflops: float           # the peer's per-image GFLOPs at the knob
    target: float
    within: bool            # |gflops / target - 1| <= tolerance

    @property
    def error(self) -> float:
        return self.gflops / self.target - 1.0

    def line(self) -> str:
        return (f"{self.method}: {self.knob_text}, {self.gflops:.5f} GFLOPs/image vs target {self.target:.5f} "
                f"({100 * self.error:+.2f}%{'' if self.within else ', OUTSIDE ±' + format(100 * TOLERANCE, 'g') + '%: the knob is too coarse'})")


def match(method: str, model, target_gflops: float, tolerance: float = TOLERANCE) -> Match:
    """The knob of `method` (on `model`'s weights) whose per-image GFLOPs are nearest `target_gflops`.
    The peers' GFLOPs do not depend on the image, so no images are needed; `within` says whether the
    nearest is inside the tolerance (a knob can be too coarse: lowres steps a patch row at a time)."""
    if target_gflops <= 0:
        raise UsageError(f"--match: target {target_gflops} GFLOPs; fix: match a model with positive GFLOPs")
    best: Match | None = None
    for knob in candidates(method, model.spec):
        peer = build(method, model, knob)
        g = float(peer.image_gflops()[0])
        if best is None or abs(g - target_gflops) < abs(best.gflops - target_gflops):
            best = Match(method, knob, peer.knob, g, target_gflops, False)
    assert best is not None  # every method has at least one knob
    best.within = abs(best.error) <= tolerance
    return best


@torch.no_grad()
def own_image_gflops(model, pixels: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """[N] each image's own-token GFLOPs (invariant mode: its own keep decisions) under `model`:
    a MADTP model (its pruning counted with MAG and DTP), a dense one, or a peer."""
    from .. import flops

    if isinstance(model, PeerCLIP):
        return model.image_gflops(torch.empty(len(pixels), 0))
    saved = model.mode
    model.mode = "invariant"
    try:
        kept = torch.cat([model.encode_image(pixels[i:i + batch_size]).kept for i in range(0, len(pixels), batch_size)])
    finally:
        model.mode = saved
    return flops.image_flops(model.spec, kept, model.temperature > 0).gflops
