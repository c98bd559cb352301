"""Rig geometry: the handful of measurements the warp needs, read from mediapipe's face mesh.

Landmark indices follow mediapipe's canonical 478-point mesh (refined with irises).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
MOUTH_LEFT, MOUTH_RIGHT = 61, 291  # outer corners (image left, image right)
CHIN, FOREHEAD = 152, 10
CHEEK_LEFT, CHEEK_RIGHT = 234, 454
# eye: (outer corner, inner corner, upper lid, lower lid, brow)
EYES = ((33, 133, 159, 145, 105), (362, 263, 386, 374, 334))


@dataclass(frozen=True)
class Eye:
    x0: float  # corners, x0 < x1
    x1: float
    y_corner: float
    y_top: float  # upper lid at the centre
    y_bottom: float  # lower lid at the centre
    y_brow: float


@dataclass(frozen=True)
class RigGeometry:
    """Measurements in portrait pixels, plus the region of interest that the warp touches."""

    mouth_x: float
    mouth_y: float  # lip line (between inner lips)
    mouth_half_w: float
    upper_lip_y: float
    lower_lip_y: float
    corner_y: float
    chin_y: float
    face_cx: float
    face_cy: float
    face_rx: float  # head ellipse radii (hair and jaw included)
    face_ry: float
    eyes: tuple[Eye, Eye]
    roi: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), clipped to the image

    def shifted(self, dx: float, dy: float) -> RigGeometry:
        """The same geometry in ROI coordinates (origin at the ROI's top-left corner)."""
        eyes = tuple(Eye(e.x0 - dx, e.x1 - dx, e.y_corner - dy, e.y_top - dy, e.y_bottom - dy,
                         e.y_brow - dy) for e in self.eyes)
        return RigGeometry(self.mouth_x - dx, self.mouth_y - dy, self.mouth_half_w, self.upper_lip_y - dy,
                           self.lower_lip_y - dy, self.corner_y - dy, self.chin_y - dy, self.face_cx - dx,
                           self.face_cy - dy, self.face_rx, self.face_ry, eyes, self.roi)  # type: ignore[arg-type]


def build_rig(landmarks: np.ndarray, width: int, height: int) -> RigGeometry:
    lm = landmarks.astype(np.float64)
    up, lo = lm[UPPER_INNER_LIP], lm[LOWER_INNER_LIP]
    ml, mr = lm[MOUTH_LEFT], lm[MOUTH_RIGHT]
    x_min, y_min = lm.min(axis=0)
    x_max, y_max = lm.max(axis=0)
    face_w, face_h = x_max - x_min, y_max - y_min
    eyes = []
    for outer, inner, top, bottom, brow in EYES:
        xa, xb = sorted((lm[outer, 0], lm[inner, 0]))
        eyes.append(Eye(float(xa), float(xb), float((lm[outer, 1] + lm[inner, 1]) / 2), float(lm[top, 1]),
                        float(lm[bottom, 1]), float(lm[brow, 1])))
    face_cx, face_cy = (x_min + x_max) / 2, (y_min + y_max) / 2
    # The head ellipse covers hair and jaw; the ROI covers its feathered edge with a margin.
    rx, ry = 0.72 * face_w, 0.68 * face_h
    reach = 1.45
    roi = (int(max(0, np.floor(face_cx - reach * rx))), int(max(0, np.floor(face_cy - reach * ry))),
           int(min(width, np.ceil(face_cx + reach * rx))), int(min(height, np.ceil(face_cy + reach * ry))))
    return RigGeometry(
        mouth_x=float((up[0] + lo[0]) / 2), mouth_y=float((up[1] + lo[1]) / 2),
        mouth_half_w=float(abs(mr[0] - ml[0]) / 2), upper_lip_y=float(up[1]), lower_lip_y=float(lo[1]),
        corner_y=float((ml[1] + mr[1]) / 2), chin_y=float(lm[CHIN, 1]), face_cx=float(face_cx),
        face_cy=float(face_cy), face_rx=float(rx), face_ry=float(ry), eyes=(eyes[0], eyes[1]), roi=roi,
    )
