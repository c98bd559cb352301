"""The CPU fast path of warp + composite: OpenCV's remap on bytes, fields upsampled with resize.

Same result as kernels.warp.warp_composite (its oracle) within OpenCV's 1/32-pixel interpolation
steps and byte rounding, at about a third of the cost: no float copy of the image, no byte
conversion of the output.
"""

from __future__ import annotations

import cv2
import numpy as np

from kernels.warp_bands import Band


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
                    overlay_stride: int = 1, bands: list[Band] | None = None) -> None:
    """One frame. src (sh, sw, 3) uint8, or with a plate (sh, sw, 4): a premultiplied layer (colour x alpha,
    alpha) laid over plate (h, w, 3) uint8 after warping; map_x, map_y (h, w) float32 source pixel
    coordinates, or map_x (h, w, 2) of both and map_y None (cv2.remap's two forms); overlay (bh, bw, 3)
    float32 in [0, 1] and alpha (bh, bw) over box = (x0, y0, x1, y1), given every `overlay_stride` pixels
    (`over`); out (h, w, 3) uint8, written in place. interpolation: cv2.INTER_LINEAR, or INTER_CUBIC (the
    oracle's "bicubic"). bands (with a plate; kernels.warp_bands): remap and composite only where the map can
    change anything, the same bytes."""
    if plate is None:
        out[:] = cv2.remap(src, map_x, map_y, interpolation=interpolation, borderMode=cv2.BORDER_REPLICATE)
    else:
        h, w = out.shape[:2]
        for b in bands or [Band(0, h, 0, 0, 0, w)]:  # (without bands: one, remapped and composited whole)
            rows = slice(b.y0, b.y1)
            out[rows, : b.x0] = plate[rows, : b.x0]
            out[rows, b.x3 :] = plate[rows, b.x3 :]
            if b.x3 <= b.x0:
                continue
            part = map_x[rows, b.x0 : b.x3]
            warped = cv2.remap(src, part, None if map_y is None else map_y[rows, b.x0 : b.x3],
                               interpolation=interpolation, borderMode=cv2.BORDER_REPLICATE)
            if b.x2 > b.x1:  # solid: the layer's own colour
                cv2.cvtColor(warped[:, b.x1 - b.x0 : b.x2 - b.x0], cv2.COLOR_RGBA2RGB, dst=out[rows, b.x1 : b.x2])
            for c0, c1 in ((b.x0, b.x1), (b.x2, b.x3)):
                if c1 > c0:
                    _composite(warped[:, c0 - b.x0 : c1 - b.x0], plate[rows, c0:c1], out[rows, c0:c1])
    x0, y0, x1, y1 = box
    over(out[y0:y1, x0:x1], overlay, alpha, overlay_stride)


def _composite(warped: np.ndarray, plate: np.ndarray, out: np.ndarray) -> None:
    """out = warped (premultiplied RGBA) + (255 - alpha) / 255 x plate, in saturating byte arithmetic."""
    uncovered = cv2.cvtColor(cv2.bitwise_not(cv2.extractChannel(warped, 3)), cv2.COLOR_GRAY2RGB)
    cv2.add(cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB), cv2.multiply(plate, uncovered, scale=1.0 / 255.0), dst=out)


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
