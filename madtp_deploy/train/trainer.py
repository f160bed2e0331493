"""The former CLIP trainer, kept while the CLI still calls it: `train(cfg)` is the one loop
(train/loop.py) with CLIP's hooks (train/clip.py). New code: `loop.train(cfg, clip.HOOKS)`."""

from __future__ import annotations

import torch  # noqa: F401 - tests patch trainer.torch.save

from . import loop
from .clip import HOOKS, itc_loss, measure_gflops  # noqa: F401 - the former names
from .loop import TrainConfig, epoch_order, read_last, rng_states, set_rng_states  # noqa: F401

OUTPUTS = (*HOOKS.outputs, loop.LAST)


def train(cfg: TrainConfig, log=print, progress=None) -> dict:
    return loop.train(cfg, HOOKS, log=log, progress=progress)
