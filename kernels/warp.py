"""Warp + composite: sample a source image through a backward map, then blend an overlay over a box.

This is the renderer's per-pixel hot loop. The torch version here runs on CPU and CUDA and is the
oracle for faster kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def warp_composite(src: torch.Tensor, grid: torch.Tensor, overlay: torch.Tensor, alpha: torch.Tensor,
                   box: tuple[int, int, int, int], plate: torch.Tensor | None = None,
                   mode: str = "bilinear") -> torch.Tensor:
    """src (3, h, w) float in [0, 1], or with a plate (4, h, w): a premultiplied layer (colour x alpha,
    alpha) that is laid over plate (3, h, w) after warping; grid (N, h, w, 2): source (x, y) in [-1, 1]
    (align_corners=True); overlay (N, 3, bh, bw) and alpha (N, 1, bh, bw) in [0, 1], covering
    box = (x0, y0, x1, y1) of the output  ->  (N, 3, h, w). mode: grid_sample's, "bilinear" or "bicubic"."""
    n = grid.shape[0]
    out = F.grid_sample(src.unsqueeze(0).expand(n, -1, -1, -1), grid, mode=mode,
                        padding_mode="border", align_corners=True)
    if mode == "bicubic":  # it overshoots at edges: held to [0, 1], as the byte path's remap saturates
        out = out.clamp(0.0, 1.0)
    if plate is not None:  # premultiplied over: what the layer does not cover is the still plate
        out = torch.addcmul(out[:, :3], 1.0 - out[:, 3:4], plate.unsqueeze(0))
    x0, y0, x1, y1 = box
    out[:, :, y0:y1, x0:x1] = torch.lerp(out[:, :, y0:y1, x0:x1], overlay, alpha)
    return out
