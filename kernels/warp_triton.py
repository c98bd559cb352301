"""Warp + composite as one Triton kernel (CUDA), with kernels.warp.warp_composite as its oracle.

Each program handles BLOCK output pixels of one frame: it reads the backward map, samples the
source bilinearly (border clamp, align_corners=True, as grid_sample does), lays a premultiplied
layer (colour x alpha, alpha) over the still plate when there is one, blends the mouth overlay where
the pixel lies in its box, and writes the three channels. Importing this module
needs no Triton; calling it does (with an install hint when it is missing).
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the torch reference is the path there
    triton = None  # type: ignore[assignment]


def triton_available() -> bool:
    return triton is not None


def _missing() -> RuntimeError:
    return RuntimeError("the Triton kernel needs triton: pip install -e '.[gpu]' (CUDA), or use kernels.warp")


if triton is not None:

    @triton.jit
    def _warp_composite_kernel(src_ptr, grid_ptr, ov_ptr, alpha_ptr, plate_ptr, out_ptr, h, w, bx0, by0, bw, bh,
                               LAYER: tl.constexpr, BLOCK: tl.constexpr):
        frame = tl.program_id(1)
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        inside = offs < h * w
        y = offs // w
        x = offs % w
        g = grid_ptr + frame * h * w * 2 + offs * 2
        # Normalised [-1, 1] -> source pixels (align_corners=True), clamped to the border.
        sx = tl.minimum(tl.maximum((tl.load(g, mask=inside, other=0.0) + 1.0) * 0.5 * (w - 1), 0.0), w - 1.0)
        sy = tl.minimum(tl.maximum((tl.load(g + 1, mask=inside, other=0.0) + 1.0) * 0.5 * (h - 1), 0.0), h - 1.0)
        x0 = tl.minimum(sx.to(tl.int32), w - 1)
        y0 = tl.minimum(sy.to(tl.int32), h - 1)
        x1 = tl.minimum(x0 + 1, w - 1)
        y1 = tl.minimum(y0 + 1, h - 1)
        fx = sx - x0.to(tl.float32)
        fy = sy - y0.to(tl.float32)
        in_box = inside & (x >= bx0) & (x < bx0 + bw) & (y >= by0) & (y < by0 + bh)
        box_i = (y - by0) * bw + (x - bx0)
        a = tl.load(alpha_ptr + frame * bh * bw + box_i, mask=in_box, other=0.0)
        if LAYER:  # the layer's alpha, sampled like its colour: what it leaves uncovered is the plate
            plane = src_ptr + 3 * h * w
            v00 = tl.load(plane + y0 * w + x0, mask=inside, other=0.0)
            v01 = tl.load(plane + y0 * w + x1, mask=inside, other=0.0)
            v10 = tl.load(plane + y1 * w + x0, mask=inside, other=0.0)
            v11 = tl.load(plane + y1 * w + x1, mask=inside, other=0.0)
            uncovered = 1.0 - ((v00 * (1 - fx) + v01 * fx) * (1 - fy) + (v10 * (1 - fx) + v11 * fx) * fy)
        for c in tl.static_range(3):
            plane = src_ptr + c * h * w
            v00 = tl.load(plane + y0 * w + x0, mask=inside, other=0.0)
            v01 = tl.load(plane + y0 * w + x1, mask=inside, other=0.0)
            v10 = tl.load(plane + y1 * w + x0, mask=inside, other=0.0)
            v11 = tl.load(plane + y1 * w + x1, mask=inside, other=0.0)
            v = (v00 * (1 - fx) + v01 * fx) * (1 - fy) + (v10 * (1 - fx) + v11 * fx) * fy
            if LAYER:
                v = v + uncovered * tl.load(plate_ptr + c * h * w + offs, mask=inside, other=0.0)
            o = tl.load(ov_ptr + (frame * 3 + c) * bh * bw + box_i, mask=in_box, other=0.0)
            tl.store(out_ptr + (frame * 3 + c) * h * w + offs, v + (o - v) * a, mask=inside)


def warp_composite_triton(src: torch.Tensor, grid: torch.Tensor, overlay: torch.Tensor, alpha: torch.Tensor,
                          box: tuple[int, int, int, int], plate: torch.Tensor | None = None,
                          block: int = 256) -> torch.Tensor:
    """Same contract as kernels.warp.warp_composite: src (3, h, w), or (4, h, w) premultiplied over plate
    (3, h, w); grid (N, h, w, 2); overlay (N, 3, bh, bw); alpha (N, 1, bh, bw); box (x0, y0, x1, y1)
    -> (N, 3, h, w) float32."""
    if triton is None:
        raise _missing()
    n, h, w = grid.shape[0], src.shape[1], src.shape[2]
    x0, y0, x1, y1 = box
    out = torch.empty((n, 3, h, w), dtype=torch.float32, device=src.device)
    launch = (triton.cdiv(h * w, block), n)
    layer = plate is not None
    plate_arg = plate.contiguous().float() if layer else out  # not read without a layer
    _warp_composite_kernel[launch](src.contiguous().float(), grid.contiguous().float(), overlay.contiguous().float(),
                                   alpha.contiguous().float(), plate_arg, out, h, w, x0, y0, x1 - x0, y1 - y0,
                                   LAYER=layer, BLOCK=block)
    return out
