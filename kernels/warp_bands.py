"""Which parts of the head's box a window's map can change, band by band: the byte path's remap and plate composite
skip the rest (kernels.warp_cv2.remap_composite).

The person moves as a premultiplied layer over a still plate. An output pixel whose map reads the layer only where
it is clear (alpha 0) shows the plate; one that reads it only where it is solid (alpha 255) shows the layer's own
colour, with no plate under it. Both are known before the remap from the distance of each pixel to the layer's
nearest non-clear and non-solid pixel: a map that moves no pixel of a band further than D reads, at a pixel more
than D (plus the interpolation's reach) from any of them, only clear or only solid layer. On a 720x1280 portrait
the background beside the head and the inside of the face are most of the box: a band's remap then covers its
middle (77% of the box on hopper_tall_exif6) and the composite only the runs either side of its solid middle (30%).
Exact: the same bytes as the whole box remapped and composited.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

BAND_ROWS = 32  # rows per band: more bands fit the head's outline closer, each costs ~10 OpenCV calls a frame
# The interpolation reads this far past a sample's point (bicubic: 2 pixels; bilinear 1).
FOOTPRINT_PX = 2.0
# Boxes smaller than this are remapped whole: a band's calls cost more than the pixels they spare
# (the 512x512 astronaut's 229x213 box read 0.82 ms/frame banded against 0.69 whole).
MIN_BOX_PX = 150_000


class Band(NamedTuple):
    """Rows y0:y1 of the box: the plate shows over columns :x0 and x3:, the layer is remapped over x0:x3, and over
    x1:x2 of that it is solid (no plate under it)."""

    y0: int
    y1: int
    x0: int
    x1: int
    x2: int
    x3: int


class LayerReach:
    """The distances of a layer's pixels (alpha: (h, w) uint8) to its nearest non-clear and non-solid pixels, kept as
    each band's least per column: a band's test "any of its pixels in this column within reach" is then one row."""

    def __init__(self, alpha: np.ndarray) -> None:
        to_layer = cv2.distanceTransform((alpha == 0).astype(np.uint8), cv2.DIST_L2, 3)
        to_edge = cv2.distanceTransform((alpha == 255).astype(np.uint8), cv2.DIST_L2, 3)
        h = alpha.shape[0]
        self.rows = [(y0, min(h, y0 + BAND_ROWS)) for y0 in range(0, h, BAND_ROWS)]
        self.to_layer = np.stack([to_layer[y0:y1].min(axis=0) for y0, y1 in self.rows])  # (bands, w)
        self.to_edge = np.stack([to_edge[y0:y1].min(axis=0) for y0, y1 in self.rows])

    def bands(self, moved_px: np.ndarray) -> list[Band]:
        """The bands for a map that moves no pixel of row y further than moved_px[y] (pixels, (h,))."""
        out = []
        for k, (y0, y1) in enumerate(self.rows):
            reach = float(moved_px[y0:y1].max()) + FOOTPRINT_PX
            touched = np.flatnonzero(self.to_layer[k] <= reach)
            if not len(touched):
                out.append(Band(y0, y1, 0, 0, 0, 0))
                continue
            x0, x3 = int(touched[0]), int(touched[-1]) + 1
            x1, x2 = _longest_run(self.to_edge[k, x0:x3] > reach)
            out.append(Band(y0, y1, x0, x0 + x1, x0 + x2, x3))
        return out


def _longest_run(flags: np.ndarray) -> tuple[int, int]:
    """The longest run of True in flags: (start, stop); (0, 0) where there is none."""
    padded = np.concatenate([[False], flags, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    if not len(edges):
        return 0, 0
    starts, stops = edges[::2], edges[1::2]
    k = int(np.argmax(stops - starts))
    return int(starts[k]), int(stops[k])
