"""The trivial peer: the dense model at a lower input resolution, its positional embeddings
interpolated (bicubic, as ViTs are fine-tuned at another size: Dosovitskiy et al., ICLR 2021, §3.2).

The graph takes the model's usual input size and resizes inside (bilinear with antialiasing), so
that every variant of a bench is fed the same pixels. The knob: the patch grid (rows, cols); a grid
a row or a column off square gives finer GFLOPs steps than square grids alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import PeerCLIP


def interpolate_positions(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[1 + g*g, C] positional embeddings of a g x g grid -> [1 + rows*cols, C] (CLS's kept as is)."""
    g = int(round((pos.shape[0] - 1) ** 0.5))
    patches = pos[1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
    return torch.cat([pos[:1], patches.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)], 0)


class LowResCLIP(PeerCLIP):
    method = "lowres"
    code = ("lowres.py",)

    def __init__(self, model, grid):
        super().__init__(model)
        g = self.spec.image_size // self.spec.patch_size
        grid = (int(grid), int(grid)) if isinstance(grid, int) else tuple(int(v) for v in grid)
        if len(grid) != 2 or not all(1 <= v <= g for v in grid):
            raise ValueError(f"low-resolution grid {grid!r}: need (rows, cols) within 1..{g}")
        self.grid = grid
        with torch.no_grad():
            pos = interpolate_positions(model.visual.positional_embedding.detach().float(), grid)
        self.register_buffer("pos", pos.to(model.visual.positional_embedding.dtype), persistent=False)

    @property
    def knob(self) -> str:
        p = self.spec.patch_size
        return f"{self.grid[0] * p}x{self.grid[1] * p}px"

    def schedule(self):
        n = self.grid[0] * self.grid[1] + 1
        return [(n, n)] * self.spec.vision_layers

    def positional_embedding(self):
        return self.pos

    def tokens(self, pixels):
        p = self.spec.patch_size
        small = F.interpolate(pixels, size=(self.grid[0] * p, self.grid[1] * p), mode="bilinear",
                              align_corners=False, antialias=True)
        return super().tokens(small)

    def reduce(self, i, x, size, qkv, attn):
        return x, size

    def reduction_macs(self, i, n_in):
        return 0.0
