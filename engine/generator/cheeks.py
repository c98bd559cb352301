"""The smile's cheeks: a smile that reaches the eyes.

The mouth's corners alone (`MouthRig.offsets`: FACS action unit 12, the lip corner puller) read as a polite or
forced smile: the corners move and nothing else does. A felt smile also raises the cheeks (unit 6, the cheek
raiser, Duchenne's marker): the round of each cheek rises toward the eye, lifting the lower lid, so the eye
narrows from below while the upper lid and the brow stay. Each cheek here is a smooth lift under its eye, largest
at the round of the cheek (below the eye, a little outward of its centre, about 0.45 of the way from the lower lid
to the mouth's corner), falling off across it over the eye's width, down toward the jaw and up to nothing at the
upper lid. Measured in the face's own frame (rig.FaceFrame), so a tilted face's cheeks rise along its own
vertical; a turned face's far cheek, under a foreshortened eye, is narrower with it.

Glasses rest on the nose, not on the cheeks: lifted with the skin under them, a lens's lower rim bulged up into
the lens. A face that wears glasses (a bridge across the nose between the eyes: `wears_glasses`) keeps its cheeks
still, and smiles with its mouth.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from engine.generator.rig import Box, RigGeometry, _clip

# At SMILE = 1 the round of the cheek rises by this share of the eye-to-mouth distance (rig.FaceFrame's unit of
# size); at the lower lid about half of that, a quarter of an open eye's height (1.5 of 6.7 px on the astronaut at
# 512 px), as a broad smile narrows the eye in photographs.
LIFT = 0.09
APPLE_DOWN = 0.45  # the round of the cheek: this share of the way from the lower lid to the mouth's corner
APPLE_OUT = 0.2  # ... and this many eye half-widths outward of the eye's centre
WIDE = 0.95  # the lift falls off across the cheek over this many eye half-widths (a Gaussian's width)
BELOW = 0.4  # ... and below the round over this share of the way from the lower lid to the mouth's corner
# A glasses' bridge: an edge across the nose, between the brows (mesh point 9) and the nose (197), at least this
# steep (luma levels per pixel, after a 0.8 px blur) all across the bridge's middle (BRIDGE_ACROSS of the distance
# between the inner eye corners). Measured at 512, 720 and 1280 px: 10.5-49.7 with glasses (a small face's
# sunglasses, thin metal, thick frames, a 160 px photo), 6.0 at most without (hair across a nose), except a man laughing
# with his eyes squeezed (limits/three_faces: 9.2-9.3, the folds between his brows): taken for glasses, his cheeks stay
# still. Erring that way costs a smile its cheeks; the other way, a rim bends.
BRIDGE_STEP, BRIDGE_ACROSS = 8.5, 0.3


@dataclass(frozen=True)
class Cheek:
    """One cheek's lift, in the face frame's pixels: its round at (x, y); the lift is nothing above `top` (the
    upper lid), full from `full` (between the lower lid and the round) down to `y`, and falls off below it."""

    x: float
    y: float
    wide: float
    top: float
    full: float
    below: float
    lift: float  # pixels at SMILE = 1


def cheeks(g: RigGeometry) -> tuple[Cheek, Cheek]:
    """Both cheeks of a face (image left, then right) from its rig."""
    unit = g.frame.eye_to_mouth
    out = []
    for eye, side in zip(g.eyes, (-1.0, 1.0), strict=True):
        down = max(g.corner_y - eye.y_bottom, 1.0)
        y = eye.y_bottom + APPLE_DOWN * down
        out.append(Cheek(x=eye.cx + side * APPLE_OUT * eye.half_w, y=y, wide=WIDE * eye.half_w, top=eye.y_top,
                         full=eye.y_bottom + 0.5 * (y - eye.y_bottom), below=BELOW * down, lift=LIFT * unit))
    return out[0], out[1]


def wears_glasses(rgb: np.ndarray, landmarks: np.ndarray) -> bool:
    """Whether a glasses' bridge crosses the nose between the eyes: a step in lightness along the nose's line from
    between the brows down, at one place across the bridge's middle (skin there is smooth; a brow's shadow or the
    side of a turned nose is weaker or crosses only part of it)."""
    lm = np.asarray(landmarks, np.float64)[:, :2]
    top, bottom = lm[9], lm[197]
    length = float(np.linalg.norm(bottom - top))
    if length < 2.0:
        return False
    axis = (bottom - top) / length
    across = np.array([-axis[1], axis[0]]) * np.linalg.norm(lm[362] - lm[133])
    n = max(int(2 * length), 4)
    t = np.linspace(0.0, 1.0, n)[:, None, None]
    s = np.linspace(-BRIDGE_ACROSS / 2, BRIDGE_ACROSS / 2, 7)[None, :, None]
    points = top + t * (bottom - top) + s * across  # (n, 7, 2)
    # Only the bridge's pixels are read: blurred over a box around them (wider than the blur reaches).
    h, w = rgb.shape[:2]
    x0, y0 = (max(0, int(v) - 6) for v in points.reshape(-1, 2).min(axis=0))
    x1, y1 = min(w, int(points[..., 0].max()) + 7), min(h, int(points[..., 1].max()) + 7)
    if x1 <= x0 or y1 <= y0:
        return False
    grey = cv2.GaussianBlur(cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32),
                            (0, 0), 0.8)
    local = (points - (x0, y0)).astype(np.float32)
    profile = cv2.remap(grey, local[..., 0], local[..., 1], cv2.INTER_LINEAR)
    step = np.abs(np.diff(profile, axis=0)) * ((n - 1) / length)  # levels per pixel along the nose
    # each column's steepest within a pixel either way (a bridge slants a little), then the weakest column's
    near = cv2.dilate(step, np.ones((5, 1), np.uint8))
    return bool(near.min(axis=1).max() >= BRIDGE_STEP)


def cheek_box(g: RigGeometry, cheek: Cheek, width: int, height: int, margin: float) -> Box:
    """Where a cheek's lift moves anything (under 1% of it past the box), in portrait axes."""
    return _clip(g.frame.box_to_image((cheek.x - 2.2 * cheek.wide - margin, cheek.top - margin,
                                       cheek.x + 2.2 * cheek.wide + margin, cheek.y + 2.2 * cheek.below + margin)),
                 width, height)


def cheek_offsets(c: Cheek, smile: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor) -> torch.Tensor:
    """The source offset down (face frame; the skin moves up) of one cheek at output points (qx, qy) (N, h, w) for
    the smile (N, 1, 1). A frown (SMILE < 0) does not pull the cheeks down."""
    t = torch.clamp((qy - c.top) * (1.0 / (c.full - c.top)), 0.0, 1.0)
    rise = t * t * (3.0 - 2.0 * t)
    spread = torch.square((qx - c.x) * (1.0 / c.wide)) + torch.square(torch.clamp(qy - c.y, min=0.0) * (1.0 / c.below))
    return (torch.clamp(smile, min=0.0) * c.lift) * rise * torch.exp(-spread)
