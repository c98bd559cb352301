"""Where head motion acts: the head, hair and ears move as one; below the jaw only the neck follows,
fading out before the collar, so the shoulders stay. The background is never moved by this weight:
the renderer lays the moving person over a still plate (engine.generator.matte).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from engine.generator.rig import Box, RigGeometry

MAX_HEAD_DEG = 10.0  # the largest yaw, pitch or roll the layer's box is sized for (the blueprint uses <= 8)


def _smoothstep(e0: float, e1: float, x: torch.Tensor) -> torch.Tensor:
    t = torch.clamp((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


JAW_ANGLES = (172, 397)  # face-mesh points at the jaw's corners, under the ears


def jaw_line(landmarks: np.ndarray, dx: float = 0.0, dy: float = 0.0) -> tuple[float, float, float]:
    """(x of the left jaw corner, x of the right one, their mean y), origin moved to (dx, dy)."""
    (xl, yl), (xr, yr) = landmarks[list(JAW_ANGLES)].astype(np.float64)
    return float(min(xl, xr) - dx), float(max(xl, xr) - dx), float((yl + yr) / 2 - dy)


def head_weight(g: RigGeometry, X: torch.Tensor, Y: torch.Tensor,
                jaw: tuple[float, float, float] | None = None) -> torch.Tensor:
    """How much of the head's motion each point takes, 0..1, at pixel coordinates X, Y (g's origin).

    Rigid over the head ellipse grown to hold hair and a hat (1.2 radii), fading out by 1.45. Below the
    jaw line (a curve through the chin and the jaw's corners, level beyond them: `jaw_line`), where a
    collar or a suit's ring may rise beside the neck, only a neck column about a jaw wide follows,
    fading out over 0.4 face heights."""
    d = torch.sqrt(((X - g.face_cx) / g.face_rx) ** 2 + ((Y - g.face_cy) / g.face_ry) ** 2)
    head = 1.0 - _smoothstep(1.2, 1.45, d)
    face_h = g.face_ry / 0.68
    if jaw is None:
        cut: torch.Tensor | float = g.chin_y
    else:
        xl, xr, y_corner = jaw
        u = torch.clamp((X - (xl + xr) / 2) / max((xr - xl) / 2, 1.0), -1.0, 1.0)
        cut = g.chin_y + (y_corner - g.chin_y) * u * u
    below = torch.clamp((Y - cut + 0.05 * face_h) / (0.15 * face_h), 0.0, 1.0)
    below = below * below * (3 - 2 * below)
    neck = ((1.0 - _smoothstep(0.3 * g.face_w, 0.5 * g.face_w, (X - g.face_cx).abs()))
            * (1.0 - _smoothstep(g.chin_y, g.chin_y + 0.4 * face_h, Y)))
    return head * (1.0 - below + below * neck)


def depth_proxy(g: RigGeometry, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """A depth for parallax: 1 at the face centre (about the nose), falling to 0 at its outline, so
    turning and nodding move the nose more than the cheeks and the chin."""
    fd = ((X - g.face_cx) / (0.5 * g.face_w)) ** 2 + ((Y - g.face_cy) / (0.62 * g.face_w)) ** 2
    return torch.sqrt(torch.clamp(1.0 - fd, min=0.0))


def pivot(g: RigGeometry) -> tuple[float, float]:
    """The point head roll turns about: the top of the neck."""
    return g.face_cx, g.chin_y + 0.3 * g.face_ry


def layer_box(rig: RigGeometry, matte: np.ndarray, landmarks: np.ndarray, width: int, height: int,
              step: int = 4) -> Box:
    """The box the renderer warps and composites: every person pixel the head motion moves, grown by
    the farthest any of them can travel at MAX_HEAD_DEG, and the mouth's box (the jaw drops below the chin).
    Outside it every pixel is the photo's own, so nothing there is computed per frame."""
    ys = torch.arange(0, height, step, dtype=torch.float32)
    xs = torch.arange(0, width, step, dtype=torch.float32)
    Y, X = torch.meshgrid(ys, xs, indexing="ij")
    weight = head_weight(rig, X, Y, jaw_line(landmarks))
    # matte 1: the fringe's wisps (engine.generator.matte.head_fringe) lie within the travel margin anyway; counting
    # them would grow the box, and the per-frame cost, for a few pixels of hair.
    moving = (weight > 2e-3) & torch.from_numpy(matte[::step, ::step][: len(ys), : len(xs)] > 1)
    if not bool(moving.any()):
        return rig.head_box(width, height)
    px, py = pivot(rig)
    rad = MAX_HEAD_DEG * math.pi / 180.0
    # How far each moving point can travel: turning and nodding shift it (more with depth, as
    # WarpRenderer._head_pose does), breathing lifts it, roll swings it about the pivot.
    shift = MAX_HEAD_DEG * (0.012 * max(rig.face_rx, rig.face_ry) + 0.5 * rig.face_w * rad / MAX_HEAD_DEG
                            * depth_proxy(rig, X, Y)) * math.sqrt(2.0) + 0.012 * rig.face_ry
    reach = (weight * (shift + rad * torch.sqrt((X - px) ** 2 + (Y - py) ** 2)) + step)[moving]
    xm, ym = X[moving], Y[moving]
    mx0, my0, mx1, my1 = rig.mouth_box(width, height, 0.12 * rig.face_w)
    x0 = min(float((xm - reach).min()), mx0)
    y0 = min(float((ym - reach).min()), my0)
    x1 = max(float((xm + reach).max()) + step, mx1)
    y1 = max(float((ym + reach).max()) + step, my1)
    return (int(max(0, math.floor(x0))), int(max(0, math.floor(y0))), int(min(width, math.ceil(x1))),
            int(min(height, math.ceil(y1))))
