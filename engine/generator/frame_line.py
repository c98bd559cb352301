"""A photo's own frame line: a row or a column along its edge that is no part of the picture (a scan's or an
export's border: pedersen_young_teeth's pale top row and right column, pedersen_tilted's dark right column).

Where the head's box reaches the picture's edge, the warp reads the layer mirrored back past it (`warp.fold`): a
head nodding down by d pixels reads the photo's top row at row d, and a frame line there slid into the hair as a
pale line. The renderer moves the layer with the line replaced by the row inside it, and puts the photo's own line
back at the edge of every frame: the line stays where the photo has it, still, like the plate.
"""

from __future__ import annotations

import numpy as np

# An edge row (column) is a frame line when it lies on one side of the picture inside it (darker, or lighter) along
# nearly all of the edge (ONE_SIDE of it, within SIDE_SLACK levels) ...
ONE_SIDE = 0.9
SIDE_SLACK = 2.0
# ... and, where the picture inside can show it (not already as dark as a dark line, or as light as a light one),
# departs from it by this much (median, 8-bit luma) over at least SHOWN of the edge: a step so large and so even along
# a whole side is no edge of the picture's own. A dark line over a black sweater does not show; over a hand it does.
FRAME_LEVELS = 40.0
SHOWN = 0.05
# The picture inside "shows" a dark line where it is lighter than this, a light line where it is darker than 255 - it.
SHOW_LEVELS = 60.0
# At most this many rows (columns) deep.
FRAME_DEPTH_MAX = 2
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _is_line(edge: np.ndarray, inside: np.ndarray) -> bool:
    d = edge - inside
    for sign, shows in ((-1.0, inside > SHOW_LEVELS), (1.0, inside < 255.0 - SHOW_LEVELS)):
        if float((sign * d >= -SIDE_SLACK).mean()) < ONE_SIDE or float(shows.mean()) < SHOWN:
            continue
        if float(np.median(sign * d[shows])) > FRAME_LEVELS:
            return True
    return False


def _depth(lines: np.ndarray) -> int:
    """lines: (FRAME_DEPTH_MAX + 1, n) luma, the edge's first, the first one past the frame's reach last."""
    depth = 0
    for k in range(FRAME_DEPTH_MAX):
        if not _is_line(lines[k], lines[-1]):
            break
        depth = k + 1
    return depth


# The row (column) just inside a frame line goes with it: a JPEG's ringing round a dark line is a pale one there, which
# the mirrored layer doubled into a pale stripe.
RINGING = 1


def frame_lines(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom): how many columns or rows of the photo's frame line lie along each side, with the
    one just inside it (RINGING) where there is one."""
    h, w = rgb.shape[:2]
    n = FRAME_DEPTH_MAX + 1
    if min(h, w) <= 4 * n:
        return 0, 0, 0, 0
    g = rgb.astype(np.float32) @ LUMA
    depths = (_depth(g[:, :n].T), _depth(g[:n]), _depth(g[:, ::-1][:, :n].T), _depth(g[::-1][:n]))
    return tuple(d + RINGING if d else 0 for d in depths)  # type: ignore[return-value]


def without_frame_lines(img: np.ndarray, lines: tuple[int, int, int, int]) -> np.ndarray:
    """img (a box whose sides lie on the picture's edges where `lines` is non-zero) with each frame line replaced by
    the row or column just inside it."""
    left, top, right, bottom = lines
    if not any(lines):
        return img
    out = img.copy()
    if top:
        out[:top] = out[top]
    if bottom:
        out[-bottom:] = out[-bottom - 1]
    if left:
        out[:, :left] = out[:, left : left + 1]
    if right:
        out[:, -right:] = out[:, -right - 1 : -right]
    return out


def line_slices(lines: tuple[int, int, int, int], roi: tuple[int, int, int, int], size: tuple[int, int]
                ) -> list[tuple[slice, slice]]:
    """(rows, columns) of a frame of `size` (width, height) where the photo's frame line is put back over a box `roi`
    (x0, y0, x1, y1) that the warp writes: `lines`, those along the box's sides that are the picture's edges."""
    left, top, right, bottom = lines
    x0, y0, x1, y1 = roi
    w, h = size
    out = []
    if top:
        out.append((slice(0, top), slice(x0, x1)))
    if bottom:
        out.append((slice(h - bottom, h), slice(x0, x1)))
    if left:
        out.append((slice(y0, y1), slice(0, left)))
    if right:
        out.append((slice(y0, y1), slice(w - right, w)))
    return out
