"""The smile's nasolabial folds: the crease from the nose's wing to beside the mouth's corner deepens in a smile.

A smile raises the mouth's corners (`MouthRig.offsets`) and the cheeks (`cheeks`), but a warp moves skin without
changing how it is lit: on a face without deep folds in the photo, the corners rose over smooth skin and the smile
read as pasted on. In a real smile the cheek bulges over the fold and the fold turns into a crease in its shadow.
Here each fold is a shading (a ratio image, as in Liu, Shan and Zhang, "Expressive expression mapping with ratio
images", SIGGRAPH 2001): the photo's own pixels times a gain near 1, darker in the crease and on the bulge's
lower side, so the skin keeps its grain and colour and only its shading changes. The crease follows the skin: the
gain is a function of the point of the photo each output pixel shows (the warp's map), so a nod, a turn or the
smile's own lift carries it.

The fold's line is the face mesh's (points from the nose's wing down past the mouth's corner), fitted in the face's
upright frame (rig.FaceFrame) by a parabola x(y); its widths are in mouth half-widths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from engine.generator.rig import Box, FaceFrame
from engine.generator.rig import _clip as clip_box

T = TypeVar("T", np.ndarray, torch.Tensor)

# The mesh's points along each fold, from the nose's wing down (image left, then image right).
FOLD_POINTS = ((129, 203, 206, 216, 212), (358, 423, 426, 436, 432))
MOUTH_CORNERS = (61, 291)
# At SMILE = 1: the crease this much darker at its line (a share of the pixel's value), CREASE_W mouth half-widths
# wide (a Gaussian's width, at least CREASE_MIN_PX); the bulge's lower side, outward of it, SHADE darker over
# SHADE_W, centred SHADE_AT out. Both are cut REACH widths out (under 1% of them left).
CREASE, CREASE_W, CREASE_MIN_PX = 0.18, 0.08, 1.2
SHADE, SHADE_AT, SHADE_W = 0.1, 0.12, 0.15
REACH = 2.2
# Skin's shadows are warmer than its light (light scattered under the skin comes out red): the darkening per channel
# (R, G, B) in these shares of the shade's.
TINT = (0.8, 1.0, 1.1)
# Along the fold (0 at the nose's wing, 1 at its last point): it comes in below the wing and fades out past the
# mouth's corner.
ALONG_IN, ALONG_OUT = (-0.05, 0.2), (0.6, 1.0)


@dataclass(frozen=True)
class Fold:
    """One fold in the face frame's pixels: x = a + b y + c y^2 from y0 (the nose's wing) to y1 (its end); `side`
    -1 where outward (the cheek) is toward smaller x, +1 toward larger; mw: the mouth's half-width."""

    a: float
    b: float
    c: float
    y0: float
    y1: float
    side: float
    mw: float


def folds(landmarks: np.ndarray, frame: FaceFrame, origin: tuple[float, float] = (0.0, 0.0)) -> tuple[Fold, Fold]:
    """Both folds of a face (image left, then right), in the coordinates of a region whose first pixel is `origin` in
    the portrait (the frame given in the region's coordinates too)."""
    lm = np.asarray(landmarks, np.float64)[:, :2] - origin
    x, y = frame.to_face(lm[:, 0], lm[:, 1])
    mw = float(np.hypot(x[MOUTH_CORNERS[1]] - x[MOUTH_CORNERS[0]], y[MOUTH_CORNERS[1]] - y[MOUTH_CORNERS[0]]) / 2)
    out = []
    for points, side in zip(FOLD_POINTS, (-1.0, 1.0), strict=True):
        px, py = x[list(points)], y[list(points)]
        c, b, a = np.polyfit(py, px, 2)
        out.append(Fold(float(a), float(b), float(c), float(py[0]), float(py[-1]), side, max(mw, 1.0)))
    return out[0], out[1]


def fold_box(fold: Fold, frame: FaceFrame, width: int, height: int, margin: float = 0.0) -> Box:
    """The region's pixels (portrait axes) whose photo points the fold's shading darkens, padded by `margin`."""
    ys = np.linspace(fold.y0, fold.y1, 9)
    xs = fold.a + fold.b * ys + fold.c * ys * ys
    crease = REACH * max(CREASE_W * fold.mw, CREASE_MIN_PX)
    out = max(crease, (SHADE_AT + REACH * SHADE_W) * fold.mw)  # (the crease's reach on the inner side)
    left, right = (out, crease) if fold.side < 0 else (crease, out)
    length = fold.y1 - fold.y0
    box = (float(xs.min()) - left - margin, fold.y0 + ALONG_IN[0] * length - margin,
           float(xs.max()) + right + margin, fold.y0 + ALONG_OUT[1] * length + margin)
    return clip_box(frame.box_to_image(box), width, height)


@dataclass(frozen=True)
class FoldTable:
    """A fold's darkening at SMILE 1 (`fold_shade`; per channel, `TINT` times it) at each pixel of its box, with a
    pixel of zeros around it: table (h, w) float32, whose first pixel is at (x0, y0) in the region."""

    table: np.ndarray
    x0: int
    y0: int


def fold_table(fold: Fold, frame: FaceFrame, width: int, height: int) -> FoldTable:
    """The fold's shading tabulated over the region's pixels it darkens (`fold_box`): the byte path reads it through
    each frame's map as it reads the photo's colour, one remap where solving `fold_shade` per frame took a few
    dozen array operations. (Sampled at whole pixels: the crease is a Gaussian at least 1.2 px wide.)"""
    x0, y0, x1, y1 = fold_box(fold, frame, width, height)
    x0, y0 = x0 - 1, y0 - 1
    ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1].astype(np.float32)
    table = fold_shade(fold, 1.0, *frame.to_face(xs, ys))
    table[[0, -1]], table[:, [0, -1]] = 0.0, 0.0
    return FoldTable(np.ascontiguousarray(table, np.float32), x0, y0)


def fold_shade(fold: Fold, smile: T | float, x: T, y: T) -> T:
    """How much darker (a share of the pixel's value; per channel `TINT` times it) the fold makes the photo's points
    (x, y) (N, h, w, or h, w; the face frame's axes) that the output pixels show, for smile (N, 1, 1, or a number).
    numpy arrays or torch tensors alike. A frown (SMILE < 0) folds nothing."""
    xp: Any = torch if isinstance(x, torch.Tensor) else np
    slope = fold.b + 2.0 * fold.c * y
    across = x - (fold.a + fold.b * y + fold.c * y * y)  # (no multiply by the side: onnxruntime drops a Mul by +-1)
    d = (across if fold.side > 0 else -across) / xp.sqrt(1.0 + slope * slope)
    t = _clip((y - fold.y0) * (1.0 / max(fold.y1 - fold.y0, 1.0)), ALONG_IN[0], ALONG_OUT[1])
    along = _smoothstep(*ALONG_IN, t) * (1.0 - _smoothstep(*ALONG_OUT, t))
    crease = CREASE * xp.exp(-xp.square(d * (1.0 / max(CREASE_W * fold.mw, CREASE_MIN_PX))))
    shade = SHADE * xp.exp(-xp.square((d - SHADE_AT * fold.mw) * (1.0 / (SHADE_W * fold.mw))))
    return _clip(smile, 0.0, 1.0) * along * (crease + shade)


def _clip(x: Any, lo: float, hi: float) -> Any:
    if isinstance(x, torch.Tensor):
        return torch.clamp(x, lo, hi)
    return np.minimum(np.maximum(x, lo), hi)  # (np.clip's dispatch costs several times these two ufuncs)


def _smoothstep(e0: float, e1: float, x: T) -> T:
    t = _clip((x - e0) * (1.0 / (e1 - e0)), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
