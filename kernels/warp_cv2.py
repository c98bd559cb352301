"""The CPU fast path of warp + composite: OpenCV's remap on bytes, fields upsampled with resize.

Same result as kernels.warp.warp_composite (its oracle) within OpenCV's 1/32-pixel interpolation
steps and byte rounding, at about a third of the cost: no float copy of the image, no byte
conversion of the output.
"""

from __future__ import annotations

from collections.abc import Sequence

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


# (y0, y1, x0, x1, o0, o1): rows y0..y1-1, columns x0..x1-1 of a box; of those, o0..o1-1 covered whole (o0 == o1: none)
Span = tuple[int, int, int, int, int, int]


def remap_composite(src: np.ndarray, map_x: np.ndarray, map_y: np.ndarray | None, overlay: np.ndarray,
                    alpha: np.ndarray, box: tuple[int, int, int, int], out: np.ndarray,
                    plate: np.ndarray | None = None, interpolation: int = cv2.INTER_LINEAR,
                    overlay_stride: int = 1, spans: Sequence[Span] | None = None,
                    colour: np.ndarray | None = None) -> None:
    """One frame. src (sh, sw, 3) uint8, or with a plate (sh, sw, 4): a premultiplied layer (colour x alpha,
    alpha) laid over plate (h, w, 3) uint8 after warping; map_x, map_y (h, w) float32 source pixel
    coordinates, or map_x (h, w, 2) of both and map_y None (cv2.remap's two forms); overlay (bh, bw, 3)
    float32 in [0, 1] and alpha (bh, bw) over box = (x0, y0, x1, y1), given every `overlay_stride` pixels
    (`over`); out (h, w, 3) uint8, written in place. interpolation: cv2.INTER_LINEAR, or INTER_CUBIC (the
    oracle's "bicubic"). spans (with a plate): the only parts of out that the warped layer can cover
    (`LayerReach.spans`), the rest being the plate; colour: the layer's first three channels (sh, sw, 3), remapped
    alone where a span says the layer covers the plate whole."""
    if plate is None:
        out[:] = cv2.remap(src, map_x, map_y, interpolation=interpolation, borderMode=cv2.BORDER_REPLICATE)
    elif spans is None:
        _composite(src, map_x, map_y, plate, out, interpolation)
    else:
        out[:] = plate
        assert map_y is None and colour is not None, "spans take the map of two channels and the layer's colour"
        for y0, y1, x0, x1, o0, o1 in spans:
            for a, b in ((x0, o0), (o1, x1)) if o1 > o0 else ((x0, x1),):
                if b > a:
                    _composite(src, map_x[y0:y1, a:b], None, plate[y0:y1, a:b], out[y0:y1, a:b], interpolation)
            if o1 > o0:  # alpha 255 there: the composite would be the colour, byte for byte
                cv2.remap(colour, map_x[y0:y1, o0:o1], None, interpolation=interpolation,
                          borderMode=cv2.BORDER_REPLICATE, dst=out[y0:y1, o0:o1])
    x0, y0, x1, y1 = box
    over(out[y0:y1, x0:x1], overlay, alpha, overlay_stride)


def _composite(src: np.ndarray, map_x: np.ndarray, map_y: np.ndarray | None, plate: np.ndarray, out: np.ndarray,
               interpolation: int) -> None:
    warped = cv2.remap(src, map_x, map_y, interpolation=interpolation, borderMode=cv2.BORDER_REPLICATE)
    # layer + (255 - alpha) / 255 x plate, all in saturating byte arithmetic (one pass each).
    uncovered = cv2.cvtColor(cv2.bitwise_not(cv2.extractChannel(warped, 3)), cv2.COLOR_GRAY2RGB)
    cv2.add(cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB), cv2.multiply(plate, uncovered, scale=1.0 / 255.0), dst=out)


MIN_COVERED_PX = 32  # a run covered whole shorter than this is composited with the rest of its span


class LayerReach:
    """Where in a box a premultiplied layer, moved by a map given on a field grid, can cover anything: the spans
    (`Span`) of each band of field cells that `remap_composite` warps; the rest of the box is the plate.

    A large head's box is wall for a third of it and more (hopper_tall at 720x1280, box 685x889: the head and the
    room it may move into); at that size skipping the wall saved 15% of the byte path. No byte changes: a cell is
    left out only when every pixel in it reads the layer farther from its nearest covered pixel than the
    interpolation reaches. The map between samples is a convex combination of the four around it, so no pixel moves
    farther than the largest of their displacements; the layer's distance transform, read at the cell's centre and
    less the distance from there to the cell's corners and the bicubic footprint, must exceed it.
    """

    def __init__(self, layer_alpha: np.ndarray, grid_x: np.ndarray, grid_y: np.ndarray, stride: int,
                 band_cells: int = 16) -> None:
        """layer_alpha (h, w) uint8 of the layer as the box holds it (unmoved, no mirrored margins); grid_x, grid_y
        (fh, fw) the field samples' pixel coordinates in the box (rows of equal y, columns of equal x)."""
        h, w = layer_alpha.shape
        far = cv2.distanceTransform((layer_alpha == 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        inside = cv2.distanceTransform((layer_alpha == 255).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        xs, ys = grid_x[0].astype(np.float64), grid_y[:, 0].astype(np.float64)
        cx = np.clip(np.rint((xs[:-1] + xs[1:]) / 2), 0, w - 1).astype(int)
        cy = np.clip(np.rint((ys[:-1] + ys[1:]) / 2), 0, h - 1).astype(int)
        # From a (clamped) centre to any pixel of its cell in the box: 1.414 strides + 0.71; the bicubic footprint
        # 2.83 px; remap's 1/32 px rounding.
        margin = 1.5 * stride + 4.0
        self.threshold = np.full(grid_x.shape, np.inf, np.float32)  # the last row and column are no cell's corner
        self.threshold[:-1, :-1] = far[cy[:, None], cx[None, :]] - margin
        self.whole = np.full(grid_x.shape, -np.inf, np.float32)  # below this reach a cell is covered whole
        self.whole[:-1, :-1] = inside[cy[:, None], cx[None, :]] - margin
        self.grid_x = np.ascontiguousarray(grid_x, np.float32)
        self.grid_y = np.ascontiguousarray(grid_y, np.float32)
        self.band = band_cells
        self.rows = -(-len(grid_x) // band_cells) * band_cells  # the grid's rows padded to whole bands
        # Each cell's pixels, [start, stop) in the box: those from its first sample's row (column) to before the next
        # one's; the last cell's run to the box's edge.
        self.cell_x, self.cell_y = _cells(xs, w), _cells(ys, h)
        self._corners = np.ones((2, 2), np.uint8)

    def spans(self, map_x: np.ndarray, map_y: np.ndarray) -> list[Span]:
        """The spans of one frame's map (fh, fw each, float32: where each sample reads the layer, in box pixels)."""
        moved = cv2.magnitude(cv2.subtract(map_x, self.grid_x), cv2.subtract(map_y, self.grid_y))
        # Each cell's largest displacement: the max over its four corners (the 2x2 kernel anchored at its top left).
        reach = cv2.dilate(moved, self._corners, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
        need = np.zeros((self.rows, reach.shape[1]), np.uint8)
        need[: len(reach)] = cv2.compare(reach, self.threshold, cv2.CMP_GE)
        bands = need.reshape(-1, self.band, need.shape[1]).max(axis=1)
        whole = np.full((self.rows, reach.shape[1]), 255, np.uint8)
        whole[: len(reach)] = cv2.compare(reach, self.whole, cv2.CMP_LT)
        covered = whole.reshape(-1, self.band, whole.shape[1]).min(axis=1)
        # Per band: its first and last cell that the layer can reach, and its longest run of cells covered whole
        # (the length of the run that ends at each cell: its column less the last uncovered one's before it).
        cols = np.arange(bands.shape[1])
        first, last = bands.argmax(axis=1), bands.shape[1] - 1 - bands[:, ::-1].argmax(axis=1)
        run = cols - np.maximum.accumulate(np.where(covered > 0, -1, cols), axis=1)
        run_end = run.argmax(axis=1)
        run_len = run[np.arange(len(run)), run_end]
        (ys0, ys1), (xs0, xs1) = self.cell_y, self.cell_x
        out = []
        for b in np.flatnonzero(bands.any(axis=1)).tolist():
            j1 = min((b + 1) * self.band, len(ys0)) - 1
            y0, y1 = int(ys0[b * self.band]), int(ys1[j1])
            x0, x1 = int(xs0[first[b]]), int(xs1[last[b]])
            o0, o1 = int(xs0[run_end[b] - run_len[b] + 1]), int(xs1[run_end[b]])
            if o1 - o0 < MIN_COVERED_PX or run_len[b] == 0:
                o0 = o1 = 0
            if y1 > y0 and x1 > x0:
                out.append((y0, y1, x0, x1, o0, o1))
        return out


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


def _cells(samples: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    starts = np.clip(np.ceil(samples[:-1]), 0, n).astype(int)
    stops = np.clip(np.ceil(samples[1:]), 0, n).astype(int)
    stops[-1] = n
    return starts, stops
