"""Warp + composite: sample a source image through a backward map, then blend an overlay over it.

This is the renderer's per-pixel hot loop. The torch version here runs on CPU and CUDA and is the
oracle for faster kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def warp_composite(src: torch.Tensor, grid: torch.Tensor, overlay: torch.Tensor,
                   alpha: torch.Tensor) -> torch.Tensor:
    """src (3, h, w) float; grid (N, h, w, 2) source (x, y) in [-1, 1] (align_corners=True);
    overlay (N, 3, h, w); alpha (N, 1, h, w) in [0, 1]  ->  (N, 3, h, w)."""
    n = grid.shape[0]
    warped = F.grid_sample(src.unsqueeze(0).expand(n, -1, -1, -1), grid, mode="bilinear",
                           padding_mode="border", align_corners=True)
    return torch.lerp(warped, overlay, alpha)
