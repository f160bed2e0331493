"""The former BLIP NLVR2 trainer, kept while the CLI still calls it: `train(cfg)` is the one loop
(train/loop.py) with BLIP NLVR2's hooks (train/blip_nlvr.py). New code: `loop.train(cfg, blip_nlvr.HOOKS)`."""

from __future__ import annotations

from dataclasses import dataclass

from . import loop
from .blip_nlvr import HOOKS, evaluate, run_nlvr, tokenizer_for, write_checkpoint  # noqa: F401 - the former names
from .loop import TrainConfig, cosine_lr  # noqa: F401


@dataclass
class BlipTrainConfig(TrainConfig):
    """TrainConfig with BLIP NLVR2's former defaults."""
    init: str = "blip-nlvr-tiny"
    epochs: int = 10
    batch_size: int = 32
    weight_decay: float = 0.05
    mode: str = "invariant"


def train(cfg: TrainConfig, log=print, progress=None) -> dict:
    return loop.train(cfg, HOOKS, log=log, progress=progress)
