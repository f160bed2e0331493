"""Where a tower's kept tokens live between layers: one decision, three answers.

Tokens are always addressable as a padded tensor [B, L, C] with a `valid` mask [B, L] (that is
what attention and the DTP scores need: tokens of one instance meeting each other). What differs
is how the per-token work (LayerNorms, QKV and output projections, MAG's q_map, the MLP) sees them:

- `Padded`: on every slot, padding included (the batch pays for its largest keep count).
- `Packed`: on the valid rows only, gathered into [total_tokens, C] (each instance pays for its
  own tokens); results are scattered back to the padded form only where attention or pruning
  needs it. In an exported graph `total_tokens` is a data-dependent size (NonZero).
- A fixed per-layer capacity (static shapes for engines) is `Padded` storage whose slot count
  the pruning step fixes in advance (see `pruning.prune_step(capacity=...)`).

The tower is written once against this interface; a layout is chosen per call.
"""

from __future__ import annotations

import torch


class Padded:
    """Per-token work runs on the padded tensor itself: rows() and unrows() are the identity."""

    def __init__(self, valid: torch.Tensor):  # Packed's constructor; padding needs nothing precomputed
        pass

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def unrows(self, rows: torch.Tensor) -> torch.Tensor:
        return rows

    def mag_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The rows MAG's q_map runs on: the non-CLS tokens."""
        return rows[:, 1:]

    def mag_tokens(self, q: torch.Tensor) -> torch.Tensor:
        """q_map's output as [B, L-1, D] over the non-CLS slots."""
        return q


class Packed:
    """Per-token work runs on the batch's valid rows, packed into [total_tokens, C]."""

    def __init__(self, valid: torch.Tensor):
        self.shape = valid.shape
        flat = valid.reshape(-1)
        self.index = flat.nonzero().squeeze(1)  # packed row -> flat slot
        # flat slot -> packed row, or the zero row appended after the last one (padding): unpacking
        # is then one gather (cheaper than a scatter, and a handful of ONNX nodes instead of ~17)
        rank = torch.cumsum(flat.to(torch.int64), 0) - 1
        self.slot_row = torch.where(flat, rank, self.index.shape[0])

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, x.shape[-1]).index_select(0, self.index)

    def unrows(self, rows: torch.Tensor) -> torch.Tensor:
        b, n = self.shape
        padded = torch.cat([rows, rows.new_zeros(1, rows.shape[-1])]).index_select(0, self.slot_row)
        return padded.view(b, n, rows.shape[-1])

    def mag_rows(self, rows: torch.Tensor) -> torch.Tensor:
        # CLS rows ride along (B extra rows of a small projection) rather than a second gather
        return rows

    def mag_tokens(self, q: torch.Tensor) -> torch.Tensor:
        return self.unrows(q)[:, 1:]

