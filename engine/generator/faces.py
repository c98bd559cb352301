"""Finding the face to animate in a photo, as a person would: every face counted, the largest taken,
a face too small or too turned refused with the reason.

mediapipe's face mesh alone looks for faces with its short-range detector, which misses faces that
are small in the frame (a group photo, a face far from the camera): those read as "no face found".
So faces are found first with the full-range detector, on the whole photo and on tiles of it, and
where the mesh on the whole photo misses the chosen face it runs on a crop around that face,
enlarged when the face is small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

MIN_FACE_WIDTH_PX = 48  # smaller faces (mesh width, output pixels) have too few pixels to animate believably
# Beyond about three-quarter view the nose hides the far eye's inner corner and the far mouth corner,
# which the rig's blink and mouth fields move as if they were visible.
MAX_YAW_DEG = 45.0
# A tilted (rolled) face: the mouth and eyes move in the face's own frame at any roll (rig.FaceFrame), and
# head turns and nods shift the face along it, but the neck and the jaw line that split head from body are
# drawn along the photo's axes, against an upright body: past NOTE_ROLL_DEG the jaw's far side is cut
# visibly askew, past MAX_ROLL_DEG the neck would move as head.
NOTE_ROLL_DEG, MAX_ROLL_DEG = 20.0, 45.0
MESH_FACE_PX = 192.0  # a small face's crop is enlarged to about this face width before the mesh reads it
TILE_FACE_MAX = 0.2  # faces found in tiles count when smaller than this share of the photo's shorter side
CROP_MARGIN = 0.8  # the crop around a face: this many face widths on every side
NOSE_TIP, EYE_OUTER = 1, (33, 263)  # mediapipe face-mesh indices (image left, image right)
# Nose-tip depth in front of the outer eye corners over their half distance, from mediapipe's own depth
# estimates on the frontal portraits (astronaut 0.88, hopper 0.92): the nose moves sideways by
# NOSE_DEPTH * tan(yaw) half eye-distances as the head turns.
NOSE_DEPTH = 0.9
# A feature the mesh places but the photo does not show (an object, a hand, a sticker over it): the mesh
# still returns every point, so what is under them is checked. Inside the outer lip contour a mouth always
# shows its lip line (the 10th to 90th percentile of lightness, OpenCV Lab L 0..255: 68..104 on the test
# portraits, 0 under a flat patch), and lips are never much less red than the cheeks (Lab a* lips - cheeks:
# -1 (pale lips) .. 18 on them; -8 .. -28 under a grey patch). An open eye shows white and iris (5 .. 174 on
# them, 17 behind sunglasses; 0 under a patch).
MOUTH_CONTRAST_MIN, LIP_REDNESS_MIN, EYE_CONTRAST_MIN = 20.0, -5.0, 8.0
# Lips less red than the cheeks are painted, not covered, where their colour stops at the lip contour: what
# covers a mouth (a hand, a mask, a microphone) runs past it, so the skin just around the lips has its
# colour too. Lab (a*, b*) distance, lips to a band 2-6% of the face width outside them: 2..15 on the
# portraits' own lips, 0..5 under a patch (flat or of the forehead's own skin), 28 on blue face paint.
PAINTED_LIP_EDGE_MIN = 15.0
OUTER_LIPS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
CHEEKS = (50, 280, 101, 330, 205, 425)
# each eye's lid contour, upper then lower, corner to corner (image left eye, then right)
EYE_OUTLINES = ((33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7),
                (362, 398, 384, 385, 386, 387, 388, 466, 263, 249, 390, 373, 374, 380, 381, 382))


class FaceProblem(ValueError):
    """The photo has no face this engine can animate; the message says why (no file name)."""


@dataclass(frozen=True)
class FaceBox:
    """A detected face in image pixels."""

    x: float
    y: float
    w: float
    h: float
    score: float

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.w / 2, self.y + self.h / 2

    def holds(self, x: float, y: float) -> bool:
        return self.x <= x < self.x + self.w and self.y <= y < self.y + self.h

    def overlap(self, other: FaceBox) -> float:
        """Shared area over the smaller box's: 1 when one holds the other (a face cut by a tile's edge)."""
        ix = max(0.0, min(self.x + self.w, other.x + other.w) - max(self.x, other.x))
        iy = max(0.0, min(self.y + self.h, other.y + other.h) - max(self.y, other.y))
        return ix * iy / min(self.w * self.h, other.w * other.h)


def _detect(rgb: np.ndarray, detector: object, dx: float = 0.0, dy: float = 0.0) -> list[FaceBox]:
    h, w = rgb.shape[:2]
    result = detector.process(np.ascontiguousarray(rgb))  # type: ignore[attr-defined]
    boxes = []
    for d in result.detections or []:
        b = d.location_data.relative_bounding_box
        boxes.append(FaceBox(dx + b.xmin * w, dy + b.ymin * h, b.width * w, b.height * h, float(d.score[0])))
    return boxes


def _tiles(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Overlapping half-size tiles (3 x 3): a small face is twice as large in one as in the whole photo."""
    tw, th = width // 2, height // 2
    return [(x, y, x + tw, y + th) for y in (0, height // 4, height - th) for x in (0, width // 4, width - tw)]


def find_faces(rgb: np.ndarray, min_score: float = 0.5) -> list[FaceBox]:
    """Every face in the photo, largest first (overlapping detections merged): the whole photo and its
    tiles, so that the small faces of a group are counted too."""
    import mediapipe as mp

    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_score) as det:
        boxes = _detect(rgb, det)
        # Tiles are for the small faces the whole photo hides; a large box in a tile is part of a head
        # seen whole already (an ear and hair read as a face).
        small = TILE_FACE_MAX * min(rgb.shape[:2])
        for x0, y0, x1, y1 in _tiles(rgb.shape[1], rgb.shape[0]):
            boxes += [b for b in _detect(rgb[y0:y1, x0:x1], det, x0, y0) if b.w < small]
    if not boxes:  # the short-range model finds faces that fill most of a close crop better
        with mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=min_score) as det:
            boxes = _detect(rgb, det)
    kept: list[FaceBox] = []
    for box in sorted(boxes, key=lambda b: -b.score):
        if all(box.overlap(k) < 0.5 for k in kept):
            kept.append(box)
    return sorted(kept, key=lambda b: -b.w * b.h)


def face_mesh(rgb: np.ndarray, box: FaceBox | None = None) -> np.ndarray | None:
    """(478, 3) landmarks in rgb's pixels (z: depth in the same units, negative toward the camera), or None.

    box: read the face on a crop around it, enlarged when the face is small; None: the whole image."""
    import mediapipe as mp

    x0, y0, scale = 0, 0, 1.0
    image = rgb
    if box is not None:
        h, w = rgb.shape[:2]
        m = CROP_MARGIN * max(box.w, box.h)
        x0, y0 = int(max(0, box.x - m)), int(max(0, box.y - m))
        x1, y1 = int(min(w, box.x + box.w + m)), int(min(h, box.y + box.h + m))
        image = rgb[y0:y1, x0:x1]
        scale = max(1.0, MESH_FACE_PX / max(box.w, 1.0))
        if scale > 1.0:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                         min_detection_confidence=0.5) as mesh:
        result = mesh.process(np.ascontiguousarray(image))
    if not result.multi_face_landmarks:
        return None
    ih, iw = image.shape[:2]
    pts = np.array([(p.x * iw, p.y * ih, p.z * iw) for p in result.multi_face_landmarks[0].landmark], np.float32)
    pts /= scale
    pts[:, 0] += x0
    pts[:, 1] += y0
    return pts


def estimate_yaw_deg(landmarks: np.ndarray) -> float:
    """How far the face is turned from the camera, from the 2D mesh alone: + toward the image's right.

    The nose tip stands in front of the outer eye corners, so as the head turns it moves sideways off
    their midpoint by NOSE_DEPTH * tan(yaw) half eye-distances (orthographic view); the eye line is
    levelled first, so a tilted (rolled) head reads the same.
    """
    lm = np.asarray(landmarks, np.float64)[:, :2]
    a, b = lm[EYE_OUTER[0]], lm[EYE_OUTER[1]]
    axis = (b - a) / np.linalg.norm(b - a)
    half = np.linalg.norm(b - a) / 2
    along = float((lm[NOSE_TIP] - (a + b) / 2) @ axis) / half
    return math.degrees(math.atan2(along, NOSE_DEPTH))


def mesh_width(landmarks: np.ndarray) -> float:
    return float(landmarks[:, 0].max() - landmarks[:, 0].min())


@dataclass(frozen=True)
class Covered:
    """Which features the photo hides under something else (see MOUTH_CONTRAST_MIN)."""

    mouth: bool
    eyes: tuple[bool, bool]  # image left, image right


def _inside(shape: tuple[int, ...], points: np.ndarray) -> np.ndarray:
    import cv2

    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def _edge_at(lab: np.ndarray, inside: np.ndarray, face_width: float) -> float:
    """How far the colour (Lab a*, b*: lightness left out, shadows and the lip line have their own) inside a
    region is from the colour of a band just outside it."""
    import cv2

    def grown(fraction: float) -> np.ndarray:
        k = 2 * max(1, round(fraction * face_width / 2)) + 1
        return cv2.dilate(inside.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)

    band = grown(0.06) & ~grown(0.02)
    if not band.any():
        return 0.0
    return float(np.linalg.norm(np.median(lab[inside, 1:], axis=0) - np.median(lab[band, 1:], axis=0)))


def covered_features(rgb: np.ndarray, landmarks: np.ndarray) -> Covered:
    """Is the mouth, is each eye, hidden in the photo (an object, a hand, a patch over it)?"""
    import cv2

    lm = np.asarray(landmarks, np.float64)[:, :2]
    lab = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB).astype(np.float64)
    lips = _inside(rgb.shape, lm[list(OUTER_LIPS)])
    h, w = rgb.shape[:2]
    r = max(2, round(0.03 * mesh_width(lm)))
    cheeks = np.zeros((h, w), bool)
    for x, y in np.round(lm[list(CHEEKS)]).astype(int):
        cheeks[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1] = True

    def spread(mask: np.ndarray) -> float:
        values = lab[mask, 0]
        return float(np.percentile(values, 90) - np.percentile(values, 10)) if len(values) >= 4 else 0.0

    mouth = lips.sum() < 4 or spread(lips) < MOUTH_CONTRAST_MIN or (
        cheeks.any() and float(np.median(lab[lips, 1]) - np.median(lab[cheeks, 1])) < LIP_REDNESS_MIN
        and _edge_at(lab, lips, mesh_width(lm)) < PAINTED_LIP_EDGE_MIN)
    eyes = tuple(spread(_inside(rgb.shape, lm[list(outline)])) < EYE_CONTRAST_MIN for outline in EYE_OUTLINES)
    return Covered(bool(mouth), eyes)  # type: ignore[arg-type]
