"""The motion rig: measurements read from mediapipe's 478-point face mesh, and what each control moves.

Controls (engine.types.Control) and the landmarks they move:
- JAW_OPEN: lower lip, chin and jaw line drop by up to 0.85 mouth half-widths; the neck stretches;
  the mouth interior (cavity, upper teeth, tongue) shows between the lips.
- MOUTH_WIDTH / MOUTH_ROUND: the lips stretch sideways / draw in toward the mouth centre.
- LIP_PRESS: both lips move toward the lip line and thin.
- SMILE: the mouth corners (61, 291) move up and out; the cheeks rise and lift the lower lids (engine.generator.cheeks);
  the nasolabial folds darken into creases (engine.generator.folds).
- BROW_RAISE: the brows (105, 334) and the skin between brow and lid move up (or down when < 0).
- BLINK_LEFT / BLINK_RIGHT: the upper lid's skin comes down over the whole eye opening (the lid contours
  of the mesh, fitted per eye) to a closed line just above the lower lid, which rises to meet it; the
  lashes translate, the skin above unfolds up to the first strong edge (engine.generator.eyes).
- GAZE_X / GAZE_Y: the irises (468 / 473) move inside the eye opening; the lids stay.
- HEAD_YAW / PITCH / ROLL, BREATH: the head region moves rigidly, feathered into the still body.

The face's own frame (`FaceFrame`): a tilted (rolled) face must open its mouth along its own vertical and
close its lids along its own lid lines. So, as LivePortrait's crop does, the face's vertical axis runs
from the eye centre to the mouth centre, and every mouth and eye measurement is taken on the landmarks
turned upright about the face centre (pixels, no scaling: the fields are already sized by the mouth and
eye widths, and their few pixel-sized constants are meant in pixels). The renderer maps its grid into that
frame before the mouth and eye fields and turns their offsets back. The head's region (face_cx, face_cy,
face_w, face_rx, face_ry) stays in portrait axes: the head moves on the body, which stands upright.

All geometry is in pixels; `shifted` gives it in the coordinates of a sub-image.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    from engine.generator.eyes import LidLook

UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
MOUTH_LEFT, MOUTH_RIGHT = 61, 291  # outer corners (image left, image right)
CHIN = 152
# eye on the image's left, then right: (outer corner, inner corner, upper lid, lower lid, brow, iris)
EYES = ((33, 133, 159, 145, 105, 468), (362, 263, 386, 374, 334, 473))
# the lid contours of those eyes, corner to corner without the corners: (upper lid, lower lid)
LID_CONTOURS = (((246, 161, 160, 159, 158, 157, 173), (7, 163, 144, 145, 153, 154, 155)),
                ((398, 384, 385, 386, 387, 388, 466), (382, 381, 380, 374, 373, 390, 249)))

# the face's vertical axis: from the eye centre (the four eye corners) to the mouth centre (inner lips, corners)
EYE_CORNERS, MOUTH_POINTS = (33, 133, 362, 263), (13, 14, 61, 291)

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
T = TypeVar("T")  # numpy arrays, torch tensors or floats: the frame's maps are plain arithmetic


@dataclass(frozen=True)
class FaceFrame:
    """The face turned upright: face coordinates = portrait coordinates rotated by -roll about the pivot.

    roll: radians, the angle of the face's vertical axis (eyes -> mouth) from the image's, positive when
    the mouth lies right of straight below the eyes (the head tilted toward the image's left shoulder).
    eye_to_mouth: the length of that axis in pixels, the face's unit of size.
    """

    px: float
    py: float
    roll: float = 0.0
    eye_to_mouth: float = 1.0

    @property
    def cos(self) -> float:
        return math.cos(self.roll)

    @property
    def sin(self) -> float:
        return math.sin(self.roll)

    @property
    def upright(self) -> bool:
        """No turn worth the arithmetic (under 0.05 degrees: 0.1 px over a 120 px face)."""
        return abs(self.roll) < 1e-3

    def to_face(self, x: T, y: T) -> tuple[T, T]:
        dx, dy = x - self.px, y - self.py  # type: ignore[operator]
        c, s = self.cos, self.sin
        return c * dx - s * dy + self.px, s * dx + c * dy + self.py  # type: ignore[return-value]

    def to_image(self, x: T, y: T) -> tuple[T, T]:
        dx, dy = self.vector_to_image(x - self.px, y - self.py)  # type: ignore[operator]
        return dx + self.px, dy + self.py  # type: ignore[return-value,operator]

    def vector_to_image(self, dx: T, dy: T) -> tuple[T, T]:
        """An offset measured in the face's axes, in the portrait's."""
        c, s = self.cos, self.sin
        return c * dx + s * dy, -s * dx + c * dy  # type: ignore[return-value,operator]

    def box_to_image(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """The portrait-axis bounds of a box drawn in the face's axes."""
        x0, y0, x1, y1 = box
        xs, ys = self.to_image(np.array([x0, x1, x0, x1]), np.array([y0, y0, y1, y1]))
        return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())

    def shifted(self, dx: float, dy: float) -> FaceFrame:
        return dataclasses.replace(self, px=self.px - dx, py=self.py - dy)


def face_frame(landmarks: np.ndarray) -> FaceFrame:
    """The face's frame from its mesh: pivot at the centre of the mesh's bounds, vertical axis eyes -> mouth."""
    lm = np.asarray(landmarks, np.float64)[:, :2]
    eyes, mouth = lm[list(EYE_CORNERS)].mean(axis=0), lm[list(MOUTH_POINTS)].mean(axis=0)
    v = mouth - eyes
    (x_min, y_min), (x_max, y_max) = lm.min(axis=0), lm.max(axis=0)
    return FaceFrame(float((x_min + x_max) / 2), float((y_min + y_max) / 2), float(math.atan2(v[0], v[1])),
                     float(np.hypot(*v)))


@dataclass(frozen=True)
class Eye:
    x0: float  # corners, x0 < x1
    x1: float
    y_corner: float
    y_top: float  # upper lid at the centre
    y_bottom: float  # lower lid at the centre
    y_brow: float
    iris_x: float
    iris_y: float
    # Lid contours as y(u), u = (x - cx) / half_w in [-1, 1]: the chord between the corners (y_c0 at x0,
    # y_c1 at x1) plus (1 - u^2) (k0 + k1 u + k2 u^2); fitted to the mesh's lid points (`lid_curve`).
    y_c0: float = 0.0
    y_c1: float = 0.0
    upper: tuple[float, float, float] = (0.0, 0.0, 0.0)
    lower: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # How far the upper lid's skin goes above its margin, k0 + k1 u + k2 u^2 pixels (eyes.lid_reach measures
    # it on the photo; build_rig's guess: half the way to the brow).
    reach: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # The closed lid's skin colour, RGB 0..1 (lid_fill.lid_colour measures it on the photo; None: not measured).
    lid_rgb: tuple[float, float, float] | None = None
    # The rest of the closed lid's look: its lashes' colour, the photo's light across it (eyes.LidLook).
    look: LidLook | None = None

    @property
    def half_w(self) -> float:
        return (self.x1 - self.x0) / 2

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2


@dataclass(frozen=True)
class RigGeometry:
    mouth_x: float
    mouth_y: float  # lip line (between the inner lips)
    mouth_half_w: float
    upper_lip_y: float
    lower_lip_y: float
    corner_y: float
    chin_y: float
    face_cx: float
    face_cy: float
    face_w: float
    face_rx: float  # head ellipse radii (hair and jaw included)
    face_ry: float
    eyes: tuple[Eye, Eye]
    frame: FaceFrame = FaceFrame(0.0, 0.0)  # mouth and eye fields above are in this frame's axes

    def shifted(self, dx: float, dy: float) -> RigGeometry:
        """The same geometry with the origin moved to (dx, dy)."""
        eyes = tuple(dataclasses.replace(e, x0=e.x0 - dx, x1=e.x1 - dx, y_corner=e.y_corner - dy, y_top=e.y_top - dy,
                                         y_bottom=e.y_bottom - dy, y_brow=e.y_brow - dy, iris_x=e.iris_x - dx,
                                         iris_y=e.iris_y - dy, y_c0=e.y_c0 - dy, y_c1=e.y_c1 - dy)
                     for e in self.eyes)
        return dataclasses.replace(
            self, mouth_x=self.mouth_x - dx, mouth_y=self.mouth_y - dy, upper_lip_y=self.upper_lip_y - dy,
            lower_lip_y=self.lower_lip_y - dy, corner_y=self.corner_y - dy, chin_y=self.chin_y - dy,
            face_cx=self.face_cx - dx, face_cy=self.face_cy - dy, eyes=eyes,  # type: ignore[arg-type]
            frame=self.frame.shifted(dx, dy))

    def head_box(self, width: int, height: int) -> Box:
        """Where the head motion is non-zero (the feathered ellipse), clipped to the image."""
        reach = 1.42
        return _clip((self.face_cx - reach * self.face_rx, self.face_cy - reach * self.face_ry,
                      self.face_cx + reach * self.face_rx, self.face_cy + reach * self.face_ry), width, height)

    def mouth_box(self, width: int, height: int, margin: float) -> Box:
        """Where the mouth controls and the jaw move anything (their fields vanish outside), in portrait axes."""
        mw = self.mouth_half_w
        return _clip(self.frame.box_to_image((
            self.mouth_x - 3.6 * mw - margin, self.mouth_y - 1.6 * mw - margin,
            self.mouth_x + 3.6 * mw + margin, self.chin_y + 0.95 * (self.chin_y - self.mouth_y) + margin)),
            width, height)

    def eye_box(self, eye: Eye, width: int, height: int, margin: float) -> Box:
        return _clip(self.frame.box_to_image((
            eye.x0 - 1.2 * eye.half_w - margin, eye.y_brow - 2.0 * eye.half_w - margin,
            eye.x1 + 1.2 * eye.half_w + margin, eye.y_bottom + 0.3 * eye.half_w + margin)), width, height)


def _clip(box: tuple[float, float, float, float], width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    return (int(max(0, np.floor(x0))), int(max(0, np.floor(y0))),
            int(min(width, np.ceil(x1))), int(min(height, np.ceil(y1))))


def _fit_lid(points: np.ndarray, cx: float, half_w: float, y0: float, y1: float) -> tuple[float, float, float]:
    """Least-squares (k0, k1, k2) of y(u) = chord(u) + (1 - u^2)(k0 + k1 u + k2 u^2) through the lid points."""
    u = np.clip((points[:, 0] - cx) / half_w, -0.98, 0.98)
    d = points[:, 1] - (y0 + (y1 - y0) * (u + 1) / 2)
    lens = 1 - u * u
    k = np.linalg.lstsq(np.stack([lens, lens * u, lens * u * u], axis=1), d, rcond=None)[0]
    return float(k[0]), float(k[1]), float(k[2])


def lid_curve(eye: Eye, u: np.ndarray, coef: tuple[float, float, float]) -> np.ndarray:
    """y of a lid contour (eye.upper or eye.lower) at u (numpy; the renderer has its torch twin)."""
    uc = np.clip(u, -1.0, 1.0)
    chord = eye.y_c0 + (eye.y_c1 - eye.y_c0) * (uc + 1) / 2
    return chord + (1 - uc * uc) * (coef[0] + coef[1] * uc + coef[2] * uc * uc)


def build_rig(landmarks: np.ndarray) -> RigGeometry:
    """The rig of a face: the head region in portrait axes, the mouth and eyes measured upright (`FaceFrame`)."""
    image = np.asarray(landmarks, np.float64)[:, :2]
    frame = face_frame(image)
    x_min, y_min = image.min(axis=0)
    x_max, y_max = image.max(axis=0)
    face_w, face_h = x_max - x_min, y_max - y_min
    lm = np.stack(frame.to_face(image[:, 0], image[:, 1]), axis=1)
    up, lo = lm[UPPER_INNER_LIP], lm[LOWER_INNER_LIP]
    ml, mr = lm[MOUTH_LEFT], lm[MOUTH_RIGHT]
    eyes = []
    for (outer, inner, top, bottom, brow, iris), (upper, lower) in zip(EYES, LID_CONTOURS, strict=True):
        (xa, ya), (xb, yb) = sorted((tuple(lm[outer]), tuple(lm[inner])))
        cx, half_w = (xa + xb) / 2, (xb - xa) / 2
        eyes.append(Eye(float(xa), float(xb), float((ya + yb) / 2), float(lm[top, 1]), float(lm[bottom, 1]),
                        float(lm[brow, 1]), float(lm[iris, 0]), float(lm[iris, 1]), float(ya), float(yb),
                        _fit_lid(lm[list(upper)], cx, half_w, ya, yb), _fit_lid(lm[list(lower)], cx, half_w, ya, yb),
                        (float(0.5 * (lm[top, 1] - lm[brow, 1])), 0.0, 0.0)))
    return RigGeometry(
        mouth_x=float((up[0] + lo[0]) / 2), mouth_y=float((up[1] + lo[1]) / 2),
        mouth_half_w=float(abs(mr[0] - ml[0]) / 2), upper_lip_y=float(up[1]), lower_lip_y=float(lo[1]),
        corner_y=float((ml[1] + mr[1]) / 2), chin_y=float(lm[CHIN, 1]), face_cx=float((x_min + x_max) / 2),
        face_cy=float((y_min + y_max) / 2), face_w=float(face_w), face_rx=float(0.72 * face_w),
        face_ry=float(0.68 * face_h), eyes=(eyes[0], eyes[1]), frame=frame,
    )
