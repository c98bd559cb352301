"""The CPU fast path of warp + composite: OpenCV's remap on bytes, fields upsampled with resize.

Same result as kernels.warp.warp_composite (its oracle) within OpenCV's 1/32-pixel interpolation
steps and byte rounding, at about a third of the cost: no float copy of the image, no byte
conversion of the output.
"""

from __future__ import annotations

import cv2
import numpy as np


def upsample(field: np.ndarray, stride: int, height: int, width: int, offset: int = 0) -> np.ndarray:
    """A field sampled at pixel centres every `stride` pixels -> every pixel (bilinear), cropped to h x w
    from (offset, offset) (a field padded with samples outside the box starts there).

    Coarse sample i sits at pixel i * stride + (stride - 1) / 2: exactly where cv2.resize (and
    torch's interpolate with align_corners=False) puts the centre of source pixel i.
    """
    if stride == 1:
        return field[offset : offset + height, offset : offset + width]
    fh, fw = field.shape[:2]
    up = cv2.resize(field, (fw * stride, fh * stride), interpolation=cv2.INTER_LINEAR)
    return up[offset : offset + height, offset : offset + width]


def remap_composite(src: np.ndarray, map_x: np.ndarray, map_y: np.ndarray | None, overlay: np.ndarray,
                    alpha: np.ndarray, box: tuple[int, int, int, int], out: np.ndarray,
                    plate: np.ndarray | None = None, interpolation: int = cv2.INTER_LINEAR,
                    overlay_stride: int = 1, rects: list[Rect] | None = None) -> None:
    """One frame. src (sh, sw, 3) uint8, or with a plate (sh, sw, 4): a premultiplied layer (colour x alpha,
    alpha) laid over plate (h, w, 3) uint8 after warping; map_x, map_y (h, w) float32 source pixel
    coordinates, or map_x (h, w, 2) of both and map_y None (cv2.remap's two forms); overlay (bh, bw, 3)
    float32 in [0, 1] and alpha (bh, bw) over box = (x0, y0, x1, y1), given every `overlay_stride` pixels
    (`over`); out (h, w, 3) uint8, written in place. interpolation: cv2.INTER_LINEAR, or INTER_CUBIC (the
    oracle's "bicubic"). rects: with a plate, where the layer may land (`layer_rects`): the plate is copied
    elsewhere, the same bytes as a layer of alpha 0 over it."""
    if plate is None:
        out[:] = cv2.remap(src, map_x, map_y, interpolation=interpolation, borderMode=cv2.BORDER_REPLICATE)
    else:
        if rects is None:
            rects = [(0, out.shape[0], 0, out.shape[1])]
        else:
            out[:] = plate
        for r0, r1, c0, c1 in rects:
            warped = cv2.remap(src, map_x[r0:r1, c0:c1], None if map_y is None else map_y[r0:r1, c0:c1],
                               interpolation=interpolation, borderMode=cv2.BORDER_REPLICATE)
            # layer + (255 - alpha) / 255 x plate, all in saturating byte arithmetic (one pass each).
            uncovered = cv2.cvtColor(cv2.bitwise_not(cv2.extractChannel(warped, 3)), cv2.COLOR_GRAY2RGB)
            cv2.add(cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB),
                    cv2.multiply(plate[r0:r1, c0:c1], uncovered, scale=1.0 / 255.0), dst=out[r0:r1, c0:c1])
    x0, y0, x1, y1 = box
    over(out[y0:y1, x0:x1], overlay, alpha, overlay_stride)


# Rows r0:r1, columns c0:c1 of the warped box.
Rect = tuple[int, int, int, int]
# `layer_rects` judges the box in tiles of this many field cells a side (33 px at a stride of 3): one remap per band of
# tiles, over the band's columns from the first tile the layer may reach to the last.
TILE_CELLS = 11


def layer_rects(q: np.ndarray, covered: np.ndarray, stride: int, offset: int, height: int, width: int,
                tile: int = TILE_CELLS) -> list[Rect]:
    """Where in a warped box of height x width the layer may land, as one rectangle per band of tiles; elsewhere every
    pixel its map reads has alpha 0, and the frame there is the plate. q (2, fh, fw): the coarse map (source x, y, as
    remap reads them) that `upsample(q, stride, height, width, offset)` spreads over the box; covered: the source's
    alpha > 0 as an integral image (cv2.integral: (sh + 1, sw + 1)).

    Each pixel's map is a bilinear blend of two coarse samples each way (cv2.resize), so it lies within their
    range; the source read about it is taken three pixels wider (bicubic reads two beyond, OpenCV rounds the map to
    1/32 pixel), clamped as remap's replicated border is."""
    fh, fw = q.shape[1:]
    sh, sw = covered.shape[0] - 1, covered.shape[1] - 1
    nr, nc = -(-fh // tile), -(-fw // tile)
    # Tile (i, j) holds the pixels whose first coarse sample is in rows i*tile.. and columns j*tile..; they read
    # the next one too: windows of tile + 1 samples, a tile apart.
    padded = np.pad(q, ((0, 0), (0, nr * tile + 1 - fh), (0, nc * tile + 1 - fw)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (tile + 1, tile + 1), axis=(1, 2))[:, ::tile, ::tile]
    lo = np.floor(windows.min(axis=(-2, -1))).astype(np.int64) - 3
    hi = np.floor(windows.max(axis=(-2, -1))).astype(np.int64) + 3
    x0, x1 = np.clip(lo[0], 0, sw - 1), np.clip(hi[0], 0, sw - 1) + 1
    y0, y1 = np.clip(lo[1], 0, sh - 1), np.clip(hi[1], 0, sh - 1) + 1
    hits = (covered[y1, x1] - covered[y0, x1] - covered[y1, x0] + covered[y0, x0]) > 0  # (nr, nc)

    def first_pixel(cell: int, size: int) -> int:
        # The first pixel whose coarse coordinate ((p + offset + 0.5) / stride - 0.5) reaches `cell`.
        return min(size, max(0, cell * stride - offset + stride // 2))

    rects = []
    for i in np.flatnonzero(hits.any(axis=1)):
        cols = np.flatnonzero(hits[i])
        r0, r1 = first_pixel(i * tile, height), first_pixel((i + 1) * tile, height)
        c0, c1 = first_pixel(cols[0] * tile, width), first_pixel((cols[-1] + 1) * tile, width)
        if i == 0:
            r0 = 0
        if i == nr - 1:
            r1 = height
        if cols[0] == 0:
            c0 = 0
        if cols[-1] == nc - 1:
            c1 = width
        if r1 > r0 and c1 > c0:
            rects.append((r0, r1, c0, c1))
    return rects


def over(region: np.ndarray, overlay: np.ndarray, alpha: np.ndarray, stride: int = 1) -> None:
    """overlay (3 channels, 0..1) with its alpha laid over region (h, w, 3) uint8 in place; both given every `stride`
    pixels (`upsample`d to the region). Only over the samples where alpha is not 0, and the one beyond on each side
    (bilinear reads it): the mouth's box is sized for a jaw open to the full, its opening mostly a few rows of it."""
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if not len(rows):
        return
    r0, r1 = max(0, int(rows[0]) - 1), int(rows[-1]) + 2
    c0, c1 = max(0, int(cols[0]) - 1), int(cols[-1]) + 2
    h, w = region.shape[:2]
    # The part's first sample sits where the whole's r0-th does: its pixels from r0 x stride on are the whole's.
    y0, x0 = r0 * stride, c0 * stride
    y1, x1 = min(h, r1 * stride), min(w, c1 * stride)
    part = region[y0:y1, x0:x1]
    a = upsample(np.ascontiguousarray(alpha[r0:r1, c0:c1]), stride, y1 - y0, x1 - x0)[..., None]
    colour = upsample(np.ascontiguousarray(overlay[r0:r1, c0:c1]), stride, y1 - y0, x1 - x0)
    below = part.astype(np.float32)
    part[:] = (below + (colour * 255.0 - below) * a + 0.5).astype(np.uint8)


def i420_in_box(frames: np.ndarray, still_i420: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """frames (N, H, W, 3) RGB that differ from the still picture only inside box (x0, y0, x1, y1) -> (N, H * 3 // 2, W)
    I420: the still's own conversion with the box converted anew, widened to even sides so that each 2 x 2 block of
    chroma is whole: the same bytes as converting every frame whole (H and W are even), for the box's share of the
    cost."""
    n, h, w = frames.shape[:3]
    x0, y0, x1, y1 = box
    x0, y0, x1, y1 = x0 & ~1, y0 & ~1, min(w, (x1 + 1) & ~1), min(h, (y1 + 1) & ~1)
    out = np.repeat(still_i420[None], n, axis=0)
    bw, bh = x1 - x0, y1 - y0
    for frame, i420 in zip(frames, out, strict=True):
        part = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2YUV_I420).reshape(-1)
        flat = i420.reshape(-1)
        # Y, then U and V at half size each way, planar in both buffers.
        for (start, width, height), (p_start, scale) in zip(
                ((0, w, h), (w * h, w // 2, h // 2), (w * h + (w // 2) * (h // 2), w // 2, h // 2)),
                ((0, 1), (bw * bh, 2), (bw * bh + (bw // 2) * (bh // 2), 2)), strict=True):
            plane = flat[start : start + width * height].reshape(height, width)
            pw, ph = bw // scale, bh // scale
            plane[y0 // scale : y0 // scale + ph, x0 // scale : x0 // scale + pw] = \
                part[p_start : p_start + pw * ph].reshape(ph, pw)
    return out
