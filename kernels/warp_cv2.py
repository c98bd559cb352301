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
                    plate: np.ndarray | None = None, interpolation: int = cv2.INTER_LINEAR) -> None:
    """One frame. src (sh, sw, 3) uint8, or with a plate (sh, sw, 4): a premultiplied layer (colour x alpha,
    alpha) laid over plate (h, w, 3) uint8 after warping; map_x, map_y (h, w) float32 source pixel
    coordinates, or map_x (h, w, 2) of both and map_y None (cv2.remap's two forms); overlay (bh, bw, 3)
    float32 in [0, 1] and alpha (bh, bw) over box = (x0, y0, x1, y1); out (h, w, 3) uint8, written in
    place. interpolation: cv2.INTER_LINEAR, or INTER_CUBIC (the oracle's "bicubic")."""
    warped = cv2.remap(src, map_x, map_y, interpolation=interpolation, borderMode=cv2.BORDER_REPLICATE)
    if plate is None:
        out[:] = warped
    else:
        # layer + (255 - alpha) / 255 x plate, all in saturating byte arithmetic (one pass each).
        uncovered = cv2.cvtColor(cv2.bitwise_not(cv2.extractChannel(warped, 3)), cv2.COLOR_GRAY2RGB)
        cv2.add(cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB), cv2.multiply(plate, uncovered, scale=1.0 / 255.0), dst=out)
    x0, y0, x1, y1 = box
    a = alpha[..., None]
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = (region + (overlay * 255.0 - region) * a + 0.5).astype(np.uint8)
