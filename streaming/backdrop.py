"""A background picture at the canvas' own detail around a person composited at the portrait's size.

Image mode (streaming/keying.py) swaps the plate for the picture where the portrait has its pixels, before the
resize to the canvas (a few times fewer pixels than after it), so the picture there is the canvas' picture shrunk
to the portrait's size and grown back: soft. Outside the person it is put back sharp: most of the frame is
background, and only there does its detail show; in the few pixels the person's soft edge shares with it, a softer
background reads as a lens' depth of field.

Outside the person is found per pair of source rows (a chroma row's two), from the leftmost to the rightmost pixel
with any alpha (one span per pair: a gap between an arm and the body counts as person), widened by the resize's
reach and by the pairs above and below, and drawn on the canvas' chroma plane as one polygon (cv2.fillPoly: a
memset per row), again only where the spans changed since the last frame. Then one masked copy per plane, Y's two
pixels to an element with each chroma row of the mask twice: a chroma pixel's 2x2 Y pixels take the picture
together. The chroma polygon holds the person's Y pixels too (a chroma pixel reaches twice as far on the canvas as a Y
pixel): the picture stays soft a pixel or two further out in Y than a polygon of its own would keep it, and there is
one polygon to draw, not two. No per-pixel arithmetic at the canvas' size.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

Spans = tuple[int, np.ndarray, np.ndarray]  # the first row, and each row's first and last column, from there on


def person_spans(alpha: np.ndarray, reach: int = 1,
                 scratch: tuple[np.ndarray, np.ndarray] | None = None) -> Spans | None:
    """Per row, from `reach` rows above the person's first to `reach` below its last, the first and last column with
    alpha > 0 in it or in the `reach` rows above and below (the resize reads those too); None when alpha is all 0.
    scratch: two arrays of alpha's shape and type to work in (kept between frames: fresh ones cost page faults)."""
    left, right = _row_spans(alpha, scratch)
    if not (right >= 0).any():
        return None
    return _widened(left, right, alpha.shape[1], reach)


def _row_spans(alpha: np.ndarray,
               scratch: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's first and last column with alpha > 0 (w and -1 in a row without)."""
    h, w = alpha.shape
    hit, flipped = scratch if scratch is not None else (np.empty_like(alpha), np.empty_like(alpha))
    cv2.compare(alpha, 0, cv2.CMP_GT, dst=hit)
    left = hit.view(bool).argmax(axis=1)  # argmax stops at the first True: a few microseconds a frame
    right = w - 1 - cv2.flip(hit, 1, dst=flipped).view(bool).argmax(axis=1)
    seen = hit[np.arange(h), left] > 0
    return np.where(seen, left, w), np.where(seen, right, -1)


def _widened(left: np.ndarray, right: np.ndarray, w: int, reach: int) -> Spans:
    """Spans (left > right: none) widened by the `reach` rows above and below, from `reach` rows above the first with
    a span to `reach` below the last."""
    lo, hi = left.copy(), right.copy()
    for k in range(1, reach + 1):
        np.minimum(lo[k:], left[:-k], out=lo[k:])
        np.minimum(lo[:-k], left[k:], out=lo[:-k])
        np.maximum(hi[k:], right[:-k], out=hi[k:])
        np.maximum(hi[:-k], right[k:], out=hi[:-k])
    rows = np.flatnonzero(hi >= lo)
    first, last = int(rows[0]), int(rows[-1])
    lo, hi = lo[first:last + 1], hi[first:last + 1]
    empty = hi < lo  # a row with nothing between two with the person: a sliver keeps the polygon in one piece
    lo[empty] = hi[empty] = w // 2
    return first, lo, hi


def person_polygon(spans: Spans, scale: tuple[float, float]) -> np.ndarray:
    """The pixels of a plane, the source plane grown by `scale`, that the person's source pixels reach
    through a linear resize (or an area one shrinking), as one y-monotone polygon (N, 2) int32 through the rows'
    centres."""
    first, left, right = spans
    sx, sy = scale
    # Growing, a canvas pixel reads the two source pixels about its centre: source column c reaches the canvas from
    # (c - 0.5) x sx - 0.5 to (c + 1.5) x sx - 0.5; shrinking, it is averaged into those from c x sx - 1 to
    # (c + 1) x sx. The rows between two vertices are the rows' centres'; the first and last reach the canvas' edge.
    last = first + left.size - 1
    n = left.size
    poly = np.empty((2 * n, 2), np.int32)  # truncating to int is flooring here: below 0 is off the plane anyway
    poly[:n, 0] = left * sx + min(-0.5 * sx - 0.5, -1.0)
    poly[n:, 0] = np.ceil(right[::-1] * sx + max(1.5 * sx - 0.5, sx))
    y = np.arange(first, last + 1) * sy + (0.5 * sy - 0.5)
    y[0], y[-1] = _end_rows(first, last, sy)
    poly[:n, 1] = y
    poly[n:, 1] = y[::-1]
    return poly


def _end_rows(first: int, last: int, sy: float) -> tuple[int, int]:
    """The polygon's first and last vertex rows: the canvas rows its first and last source rows reach."""
    return math.floor(min((first - 0.5) * sy - 0.5, first * sy - 1)), math.ceil(max((last + 1.5) * sy - 0.5,
                                                                                      (last + 1) * sy))


class Backdrop:
    """backdrop(alpha, targets): the picture's own planes copied into targets (the portrait's rectangle of the canvas,
    Y, U, V) wherever the person's alpha (at the source crop's size) cannot reach through the resize."""

    def __init__(self, picture: list[np.ndarray], src_size: tuple[int, int]) -> None:
        """picture: the background's Y, U, V over the rectangle; src_size: the source crop's (w, h)."""
        self.picture = [np.ascontiguousarray(p) for p in picture]
        # 255: the picture; the chroma planes' mask, and Y's: each of its rows twice, for Y with two pixels to an
        # element (a chroma pixel's 2x2 Y pixels). One masked copy per plane, of a mask of its own layout
        hc, wc = self.picture[1].shape
        self.mask = np.empty((hc, wc), np.uint8)
        self._mask_y = np.empty((2 * hc, wc), np.uint8)
        self._picture_y = self.picture[0].view(np.uint16)
        self.src_w, self.src_h = src_size
        h, w = self.picture[0].shape
        self.scale = (w / self.src_w, h / self.src_h)
        # Spans are found per pair of source rows (a chroma row's two): half the rows to scan and to draw. Pairs (chroma
        # rows) a canvas chroma row reads: two growing, 1 / scale and the neighbours' shrinking (Y rows need fewer).
        self.reach = 1 if self.scale[1] >= 1 else math.ceil(1 / self.scale[1]) + 1
        # Each pair of rows' max and its mirror image (kept between frames: fresh ones cost page faults), and each
        # pair's own span (w, -1: none)
        self._pairs, self._flipped = np.empty((0, 0), np.uint8), np.empty((0, 0), np.uint8)
        self._left_padded, self._right_padded = np.empty(0, np.int64), np.empty(0, np.int64)
        self._left, self._right = self._left_padded, self._right_padded
        self._drawn = False  # the mask holds the polygon of the last spans
        self._vertices: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # made by prepare
        self._tops: tuple[int, int] | None = None  # the prepared frame's first rows with the person (Y, chroma)
        # The prepared frame's source rectangle (x0, y0, x1, y1, even) whose pixels the canvas shows through the
        # resize: outside it the picture is put back, whatever the resize made of the source there
        self.box = 0, 0, *src_size
        self._prepared = False

    def __call__(self, alpha: np.ndarray, targets: list[np.ndarray]) -> None:
        self.prepare(alpha)
        self.apply(targets)

    def prepare(self, alpha: np.ndarray, rows: tuple[int, int] | None = None) -> tuple[int, int] | None:
        """The mask for this frame's alpha; returns the first row of Y and of chroma the person reaches (above them
        the planes are all picture: the caller need not resize there), None when it reaches none. rows: (first, end)
        bounding the rows where alpha differs from the last call's (None: not known); the rows' spans are found
        again there only."""
        self._prepared = True
        h, w = alpha.shape
        n = (h + 1) // 2
        if self._pairs.shape != (n, w + 1):
            # Column w of both: a sentinel, so that argmax finds w (no first column) and -1 (no last) in a row
            # without the person, with no pass over the rows to tell them apart
            self._pairs = np.full((n, w + 1), 255, np.uint8)
            self._flipped = np.full((n, w + 1), 255, np.uint8)
            # Each pair's own span, with `reach` pairs of none (w, -1) on either side: a pair's widened span is the
            # min (max) over a window that needs no clipping at the ends
            r = self.reach
            self._left_padded, self._right_padded = np.full(n + 2 * r, w), np.full(n + 2 * r, -1)
            self._left, self._right = self._left_padded[r:r + n], self._right_padded[r:r + n]
            self._drawn = False
            rows = None
            sx, sy = self.scale
            # The polygon's vertices by table: a pair's vertex row, and the columns of a span's first and last source
            # (Y) column, made once
            chroma_cols = np.arange(w + 1) // 2
            self._vertices = ((np.arange(n) * sy + (0.5 * sy - 0.5)).astype(np.int32),
                              (chroma_cols * sx + min(-0.5 * sx - 0.5, -1.0)).astype(np.int32),
                              np.ceil(chroma_cols * sx + max(1.5 * sx - 0.5, sx)).astype(np.int32))
        p0, p1 = (0, n) if rows is None else (rows[0] // 2, min(n, (rows[1] + 1) // 2))
        moved: tuple[int, int] | None = None  # the first and last pair whose own span changed
        if p1 > p0:
            a0, a1 = 2 * p0, min(h, 2 * p1)
            k = (a1 - a0) // 2
            pairs, flipped = self._pairs[p0:p1], self._flipped[p0:p1]
            # Any alpha in the pair is what counts: argmax on the bytes as bool stops at the first that is not 0
            cv2.max(alpha[a0:a0 + 2 * k:2], alpha[a0 + 1:a0 + 2 * k:2], dst=pairs[:k, :w])
            if k < p1 - p0:  # an odd last row: a pair of its own
                pairs[k, :w] = alpha[a1 - 1]
            left = pairs.view(bool).argmax(axis=1)
            cv2.flip(pairs[:, :w], 1, dst=flipped[:, :w])
            right = (w - 1) - flipped.view(bool).argmax(axis=1)
            differ = np.flatnonzero((left != self._left[p0:p1]) | (right != self._right[p0:p1]))
            if differ.size:
                moved = p0 + int(differ[0]), p0 + int(differ[-1])
                self._left[p0:p1], self._right[p0:p1] = left, right
        found = np.flatnonzero(self._right >= 0)
        if not found.size:
            self._drawn = False
            self._tops = None
            self.box = 0, 0, 0, 0
            return None
        # Widened by the pairs within reach, from reach above the first pair with the person to reach below the last
        # (what person_spans() finds in the pairs' max, from the pairs' own spans kept between frames)
        first, size = max(0, int(found[0]) - self.reach), min(n, int(found[-1]) + self.reach + 1)
        size -= first
        lp, rp = self._left_padded, self._right_padded
        left, right = np.minimum(lp[first:first + size], lp[first + 1:first + 1 + size]), \
            np.maximum(rp[first:first + size], rp[first + 1:first + 1 + size])
        for k in range(2, 2 * self.reach + 1):
            np.minimum(left, lp[first + k:first + k + size], out=left)
            np.maximum(right, rp[first + k:first + k + size], out=right)
        empty = right < left  # a pair with nothing between two with the person: a sliver keeps the polygon in one piece
        left[empty] = right[empty] = w // 2
        sx, sy = self.scale
        # The mask is kept between frames and drawn again only over the canvas rows whose spans changed: a person
        # whose body is still and whose head moves changes the head's rows, and a still one none (the polygon's
        # scan conversion was a third of this call's cost). A pair's widened span changes only where its own or one
        # within reach did: the vertices from there are drawn again (more than changed, at times: the same bytes).
        if not self._drawn:
            changed: tuple[int, int] | None = 0, size - 1
        elif moved is None:
            changed = None
        else:
            # (clamped: a part of the person that is gone above or below the polygon clears the mask to its edge)
            a = min(max(0, moved[0] - self.reach - first), size - 1)
            b = min(max(0, moved[1] + self.reach - first), size - 1)
            changed = a if a >= _MARGIN else 0, b if b < size - _MARGIN else size - 1
        self._drawn = True
        assert self._vertices is not None
        ends = _end_rows(first, first + size - 1, sy)
        top = max(0, ends[0] if size > 1 else ends[1])
        if changed is not None:
            rows = _redraw(self.mask, *self._vertices, ends, (first, left, right), *changed)
            self._mask_y[2 * rows.start:2 * rows.stop:2] = self._mask_y[2 * rows.start + 1:2 * rows.stop:2] = \
                self.mask[rows]
        self._tops = 2 * top, top
        # The source pixels the canvas reads inside the polygon: the spans', and the chroma polygon's reach beyond
        # them in Y (its margins, a pixel of rasterising, two Y pixels to a chroma one) and the resize's taps there
        m = 3 + math.ceil(6 / min(1.0, sx, sy))
        x0, x1 = max(0, int(left.min()) - m) // 2 * 2, min(w, int(right.max()) + 1 + m + 1) // 2 * 2
        y0, y1 = max(0, 2 * first - m) // 2 * 2, min(h, 2 * (first + size) + m + 1) // 2 * 2
        self.box = x0, y0, x1, y1
        return self._tops

    @property
    def prepared(self) -> bool:
        """prepare() has been called: tops and the mask are some alpha's."""
        return self._prepared

    @property
    def tops(self) -> tuple[int, int] | None:
        """What the last prepare() returned."""
        return self._tops

    def apply(self, targets: list[np.ndarray]) -> None:
        """The picture copied into targets where the prepared frame's person does not reach."""
        if self._tops is None:
            for picture, target in zip(self.picture, targets, strict=True):
                target[:] = picture
            return
        y, u, v = targets
        cv2.copyTo(self._picture_y, self._mask_y, y.view(np.uint16))
        cv2.copyTo(self.picture[1], self.mask, u)
        cv2.copyTo(self.picture[2], self.mask, v)


_MARGIN = 3  # vertices kept around the changed ones: the rows from one but last to the last are drawn as before


def _redraw(mask: np.ndarray, ys: np.ndarray, lefts: np.ndarray, rights: np.ndarray, ends: tuple[int, int],
            spans: Spans, a: int, b: int) -> slice:
    """The mask's rows that vertices a..b of the spans' polygon (person_polygon's, from the tables of a pair's vertex
    row and of a span's first and last column's vertex column, and the polygon's end rows) shape, drawn again (a = 0:
    from the mask's top; b = the last: to its bottom). Those rows are cleared and the part of the polygon from a vertex
    above them to one below drawn into the mask as it is: not clipped to the rows (clipped, cv2.fillPoly steps its
    edges from elsewhere and may land a pixel off), and in the rows beyond them the part lies within the polygon drawn
    there before (the same edges), so it paints nothing new there. Only the part's vertices are made. Returns the
    rows drawn again."""
    first, left, right = spans
    n = left.size
    y = ys[first:first + n].copy()
    y[0], y[-1] = ends
    # The part reaches a vertex above (below) the rows to redraw: on a shrinking plane vertices share rows
    ka = max(0, a - 2)
    while ka > 0 and y[ka] >= y[a - 1]:
        ka -= 1
    kb = min(n - 1, b + 2)
    while kb < n - 1 and y[kb] <= y[b + 1]:
        kb += 1
    y0 = 0 if ka == 0 else max(0, int(y[a - 1]))
    y1 = mask.shape[0] if kb == n - 1 else min(mask.shape[0], int(y[b + 1]) + 1)
    if y1 <= y0:  # all off the plane
        return slice(0, 0)
    mask[y0:y1] = 255
    m = kb - ka + 1
    part = np.empty((2 * m, 2), np.int32)  # person_polygon's vertices ka..kb down its left side and back up its right
    part[:m, 0] = lefts[left[ka:kb + 1]]
    part[m:, 0] = rights[right[kb:ka - 1 if ka else None:-1]]
    part[:m, 1] = y[ka:kb + 1]
    part[m:, 1] = part[m - 1::-1, 1]
    cv2.fillPoly(mask, [part], 0)
    return slice(y0, y1)
