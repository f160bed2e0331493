"""The peers in `madtp-deploy bench --variants dense,packed,tome,topk,lowres`: each peer's knob matched
to the pruned model's mean own-token GFLOPs on the bench's own images, the peer on the same weights
(dense, the model's `dense` variant)."""

from __future__ import annotations

import torch

from . import build, match, own_image_gflops


def matched_peers(names: list[str], models: dict, images: torch.Tensor, log=print) -> dict:
    """{peer name: peer model} for the bench: `models` holds "dense" (the weights, temperature 0) and
    at least one MADTP variant, whose own-token GFLOPs (capacities set aside) are the target."""
    pruned = next(m for v, m in models.items() if v != "dense" and m.temperature > 0)
    saved, pruned.capacity = pruned.capacity, None
    try:
        with torch.inference_mode():
            target = float(own_image_gflops(pruned, images).mean())
    finally:
        pruned.capacity = saved
    out = {}
    for name in names:
        m = match(name, models["dense"], target)
        log(f"peer {m.line()}")
        out[name] = build(name, models["dense"], m.knob)
    return out
