"""Batch modes: what a batch computes for each of its instances, and where its kept tokens live.

- ``reference``: the reference code's max-keep. Every instance keeps K = max over the batch, so an
  answer depends on its batch neighbours. Faithful to the paper's numbers.
- ``invariant``: every instance gets exactly its batch-1 answer; the batch is padded to the largest
  keep count and the padding is masked (attention, scores, threshold, package, pooling).
- ``packed``: the invariant answers, computed on the packed kept tokens of the whole batch
  (per-token work on [total_tokens, C]; padding only inside attention).

One deliberate pair of defaults: the library (``load``, ``MadtpCLIP``) reproduces the paper
(``LIBRARY_DEFAULT``); everything that serves or measures a model for deployment (``export``,
``bench``, ``eval``, ``train`` and their configs) uses ``SERVING_DEFAULT``, because a served answer
must not depend on the batch it lands in, and packed computes those answers fastest.
"""

from __future__ import annotations

from enum import Enum

from .errors import UsageError


class Mode(str, Enum):
    reference = "reference"
    invariant = "invariant"
    packed = "packed"

    def __str__(self) -> str:  # typer and f-strings show the plain value
        return self.value

    @property
    def batch_independent(self) -> bool:
        return self is not Mode.reference


MODES = tuple(m.value for m in Mode)
LIBRARY_DEFAULT = Mode.reference
# packed: the invariant answers, and measured fastest (docs/BENCHMARKS.md: ViT-B/16 on onnxruntime,
# batch 32, 1.8x the padded invariant graph; eff / own GFLOPs 1.02 against 1.65)
SERVING_DEFAULT = Mode.packed


def parse_mode(value, where: str = "mode") -> Mode:
    """A Mode from a Mode or its name; anything else is a one-line UsageError."""
    try:
        return Mode(value)
    except ValueError as exc:
        raise UsageError(f"{where} {value!r}: not a batch mode; fix: use one of {', '.join(MODES)}") from exc
