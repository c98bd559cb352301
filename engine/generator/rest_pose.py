"""A closed rest pose for a portrait whose lips are apart (a smile showing teeth, a parted mouth).

The rig animates offsets from the portrait as it is, so a photo with its lips apart never closes them:
it talks with the photo's gap and stretches the photo's teeth. So at prepare, once, a backward warp
brings the lips together and is baked into the image and its landmarks, as LivePortrait normalises an
open source lip before animating it. It works in the face's own frame (rig.FaceFrame), so a tilted face
closes along its own vertical. The upper lip comes down over up to a third of the gap (the skin up to the
nose taking the stretch), and the whole lower face, chin included, rises with the lower lip by the rest
(Expression Flow, Yang et al. 2011: moving the lip alone leaves the mouth-to-chin distance wrong; and a
closing mouth is mostly the jaw rising). Each lip is cut to its own edge, found by colour: the mesh's
inner contour often lies a pixel or more inside the lips, on the teeth, and what it leaves of the dark
rim around the teeth or of an open smile's dark corners would read, to a viewer and to the face mesh, as
lips still apart. A lower lip pulled down to show its wet inside has that part rolled in. Where the lips
meet, a faint line in their own colour. What is left of a smile's stretched lips is then repainted as two
closed lips with their colour and volume (lip_volume). The photo as it was is kept: the mouth interior shows its own
teeth, uncovered at their place on the head as the jaw opens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from engine.generator.lip_volume import THICK_LO, THICK_UP, bow, fullness, lip_colours, paint
from engine.generator.mouth import (
    CHIN,
    INNER_CORNERS,
    INNER_LOWER,
    INNER_UPPER,
    JAW_REACH,
    NOSE_BASE,
    OUTER_CORNERS,
    SEAL,
    inner_lips,
    lip_gap,
)
from engine.generator.rig import face_frame

# Lips whose gap is under this share of the mouth's width count as closed (LivePortrait closes a source lip
# from a lip-open ratio of 0.03).
CLOSED_GAP = 0.03
# Lips under this share of the mouth's width apart are all but closed: the mesh parts a sheen or a pixel or two
# (meeting_darker_skin's pale glossy back-lit lips, 0.077), and the photo's own lips are already a closed mouth's.
# They are closed along their seam but not repainted (lip_volume): painted, such lips read apart to the face mesh
# in a quarter of silent frames and her lip sync fell from r 0.68 to 0.28. The teeth smiles are 0.12-0.28.
PAINT_GAP = 0.1
# Beyond this the closing stretches each lip over more than its own height: the rest pose still closes
# them, but prepare says that a photo with the mouth closed or less open animates better.
WIDE_GAP = 0.25
# The outer lip contours (image left to right), which bound how far a cut may reach into each lip.
OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
# Where a lip's own colour is sampled, as a share of the way from its outer edge to the mesh's inner one.
LIP_SAMPLE = 0.35
# A cut reaches at most this share of a lip's own thickness into it, and this share of the mouth's
# half-width: the rest of a dark rim is the lip's own shading.
CUT_OF_LIP, CUT_OF_MOUTH = 0.6, 0.12
CORNER_PX = 2.0  # the reach's floor between the inner and outer corners (fading to 0 at the outer ones)
CUT_SMOOTH = 0.08  # of the mouth half-width, the cut smoothed across columns (a ragged lip edge reads as a cut)
# A lower lip shows at most this many times the upper lip's thickness once closed (see _cut_to_the_lips).
ROLL_IN = 1.3
# The upper lip comes down by this share of the gap (the jaw and lower lip rise by the rest, as a closing
# mouth mostly does), but at most this share of its distance from the nose (more reads as a stretched lip).
DOWN_SHARE, DOWN_CAP = 0.3, 0.2
# Where the lips meet, a shade of their own colour this much darker, this many pixels wide (a darker line
# reads, to a viewer and to the face mesh, as lips apart).
SEAM, SEAM_PX = 0.06, 0.7


@dataclass(frozen=True)
class RestPose:
    """What the closed rest replaced: the photo's own pixels and mesh, for the teeth it showed."""

    photo: np.ndarray  # (H, W, 3) uint8, the portrait before its lips were closed
    landmarks: np.ndarray  # (478, 2) float32, its mesh
    gap: float  # its lips' gap over the mouth's width

    def teeth_colour(self) -> np.ndarray | None:
        """The photo's teeth colour (0..1 RGB), or None where the gap shows no teeth (a dark mouth)."""
        up, lo = inner_lips(self.landmarks)
        h, w = self.photo.shape[:2]
        xs = np.arange(int(up.cx - 0.6 * up.half_w), int(up.cx + 0.6 * up.half_w) + 1)
        samples = []
        for x in xs[(xs >= 0) & (xs < w)]:
            u = (x - up.cx) / up.half_w
            y0, y1 = float(up.y_np(np.array([u]))[0]), float(lo.y_np(np.array([u]))[0])
            ys = np.arange(int(np.ceil(y0 + 1)), int(np.floor(y1 - 1)) + 1)
            samples.append(self.photo[ys[(ys >= 0) & (ys < h)], x])
        if not samples or sum(len(s) for s in samples) < 8:
            return None
        px = np.concatenate(samples).astype(np.float64) / 255.0
        luma = px @ (0.299, 0.587, 0.114)
        bright = px[luma >= np.quantile(luma, 0.7)]
        colour = np.median(bright, axis=0)
        saturation = (colour.max() - colour.min()) / max(colour.max(), 1e-3)
        return colour if colour @ (0.299, 0.587, 0.114) > 0.4 and saturation < 0.45 else None


# A photo whose lips are apart across a mouth this many times the distance between the irises, or
# wider, smiles: a smile stretches the lips (0.93-1.14 on the six teeth smiles of tests/data/portraits, 0.70-0.89 on
# closed or merely parted mouths; henner_glasses' closed-lip smile 0.98).
SMILE_WIDTH_IOD = 0.92
# The most such a smile opens the jaw (beard_smile_darker_skin's photo is open wider than a smile needs).
PHOTO_SMILE_JAW_MAX = 0.6
# What such a photo keeps of the rig's own smile (corners, cheeks): a little, so that its eyes still smile along.
PHOTO_SMILE_SHARE = 0.3


def photo_smile_jaw(rest: RestPose | None) -> float:
    """The jaw opening (Control.JAW_OPEN) at which the rig parts the lips as far as the photo's own smile did, where
    the photo smiled with its lips apart and the rest pose closed them; 0 elsewhere (WarpRenderer.expressed).

    Such a photo's rest is already a closed-lip smile: its corners and cheeks are where the photo's smile put them,
    so the rig's smile on top of them (corners up and out, cheeks up) read as a grimace, lips pursed into a wave.
    Its own smile is in the photo: the lips parted over its teeth, which the interior shows where they are (or its
    own teeth, drawn, where the photo's are too dim or thin a line to take: shenk)."""
    if rest is None:
        return 0.0
    lm = np.asarray(rest.landmarks, np.float64)[:, :2]
    if len(lm) < 478 or np.linalg.norm(lm[291] - lm[61]) < SMILE_WIDTH_IOD * np.linalg.norm(lm[468] - lm[473]):
        return 0.0
    # The rig's gap at the mouth's middle is the jaw's JAW_REACH mouth half-widths, less about SEAL once wide
    # (mouth.MouthRig.opening); the photo's gap is a share of the whole width.
    return float(min(PHOTO_SMILE_JAW_MAX, (2.0 * rest.gap + SEAL) / JAW_REACH))


def _smoothstep(e0: np.ndarray | float, e1: np.ndarray | float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / np.maximum(np.asarray(e1 - e0, np.float64), 1e-6), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _inside_colours(rgb: np.ndarray, closing: _Closing) -> np.ndarray | None:
    """(2, 3) float: the photo's mouth inside between the mesh's inner lips, its dark (the shadow around
    the teeth, the throat) and its light (teeth); None where the gap shows too few pixels to tell."""
    h, w = rgb.shape[:2]
    cols = closing.cols[(closing.cols > closing.up.x0) & (closing.cols < closing.up.x1)]
    upper, lower = closing.contours(cols)
    samples = [rgb[int(np.ceil(y0 + 0.5)) : int(np.floor(y1 - 0.5)) + 1, int(x)]
               for x, y0, y1 in zip(cols, upper, lower, strict=True) if 0 <= x < w and 0 <= y0 and y1 < h]
    px = np.concatenate(samples).astype(np.float64) if samples else np.zeros((0, 3))
    if len(px) < 8:
        return None
    luma = px @ (0.299, 0.587, 0.114)
    return np.stack([np.median(px[luma <= np.quantile(luma, 0.3)], axis=0),
                     np.median(px[luma >= np.quantile(luma, 0.7)], axis=0)])


class _Closing:
    """The closing's displacement (source point -> where it goes), by columns of the mouth."""

    def __init__(self, landmarks: np.ndarray, rgb: np.ndarray | None = None) -> None:
        lm = np.asarray(landmarks, np.float64)[:, :2]
        self.up, self.lo = inner_lips(lm)
        self.mw = float(np.linalg.norm(lm[OUTER_CORNERS[1]] - lm[OUTER_CORNERS[0]]) / 2)
        self.mouth_x, self.mouth_y = float((lm[13, 0] + lm[14, 0]) / 2), float((lm[13, 1] + lm[14, 1]) / 2)
        self.nose_y = float(min(lm[NOSE_BASE, 1], self.mouth_y - 0.3 * self.mw))
        self.chin_y = float(max(lm[CHIN, 1], self.mouth_y + 0.5 * self.mw))
        self.neck_end = self.chin_y + 0.9 * (self.chin_y - self.mouth_y)
        # Between each inner corner and its outer corner the lips meet on a line; the photo's mouth may
        # still show dark there (an open smile's corners reach past the mesh's inner corners).
        (ox0, oy0), (ox1, oy1) = sorted((tuple(lm[OUTER_CORNERS[0]]), tuple(lm[OUTER_CORNERS[1]])))
        self.corner_x = np.array([ox0, self.up.x0, self.up.x1, ox1])
        self.corner_y = np.array([oy0, self.up.y0, self.up.y1, oy1])
        self.cols = np.arange(int(np.floor(ox0)), int(np.ceil(ox1)) + 1, dtype=np.float64)
        self.cut_up = np.zeros_like(self.cols)
        self.cut_lo = np.zeros_like(self.cols)
        if rgb is not None:
            self._cut_to_the_lips(rgb, lm)
        _, lower, _, meet = self.lines(np.array([self.mouth_x]))
        self.centre_rise = float(lower[0] - meet[0])

    def contours(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The mesh's upper and lower inner lips at columns x; past the inner corners, the line on which the
        lips meet, out to the outer corners."""
        u = (x - self.up.cx) / self.up.half_w
        inside = np.abs(u) <= 1
        line = np.interp(x, self.corner_x, self.corner_y)
        return np.where(inside, self.up.y_np(u), line), np.where(inside, self.lo.y_np(u), line)

    def _cut_to_the_lips(self, rgb: np.ndarray, lm: np.ndarray) -> None:
        """How far past the mesh's contour each lip's edge lies, by column: the mesh's inner lips often sit
        a pixel or more inside the lips' own edge, on the teeth, so the dark rim between lip and teeth (and
        an open smile's dark corners) would stay between the closed lips as a dark band. From the contour,
        each column is followed outward while it shows the mouth's inside (dark or teeth-coloured against
        the lips' own colour), at most part of the lip's thickness."""
        h, w = rgb.shape[:2]
        inside = _inside_colours(rgb, self)
        if inside is None:
            return
        upper, lower = self.contours(self.cols)
        outer_up = np.interp(self.cols, *_by_x(lm[list(OUTER_UPPER)]))
        outer_lo = np.interp(self.cols, *_by_x(lm[list(OUTER_LOWER)]))
        # Toward the outer corners the lips thin to nothing, but an open smile's dark corners are still
        # a pixel or two high there: a floor on the reach, fading out at the outer corners.
        corner = np.interp(self.cols, self.corner_x, [0.0, 1.0, 1.0, 0.0]) * CORNER_PX
        most = CUT_OF_MOUTH * self.mw
        reach_up = np.minimum(np.maximum(CUT_OF_LIP * np.maximum(upper - outer_up, 0.0), corner), most)
        reach_lo = np.minimum(np.maximum(CUT_OF_LIP * np.maximum(outer_lo - lower, 0.0), corner), most)
        xs = np.clip(np.round(self.cols).astype(int), 0, w - 1)
        img = rgb.astype(np.float64)
        for edge, outer, reach, step, out in ((upper, outer_up, reach_up, -1, self.cut_up),
                                              (lower, outer_lo, reach_lo, 1, self.cut_lo)):
            # each column's lip colour, a median over its neighbours (a highlight or a pore is not the lip)
            ref_y = np.clip(np.round(outer + LIP_SAMPLE * (edge - outer)).astype(int), 0, h - 1)
            ref = img[ref_y, xs]
            ref = np.stack([np.median(ref[max(0, i - 2) : i + 3], axis=0) for i in range(len(xs))])
            for i, x in enumerate(xs):
                start = int(np.floor(edge[i])) if step < 0 else int(np.ceil(edge[i]))
                ys = start + step * np.arange(int(np.ceil(reach[i])) + 1)
                ys = ys[(ys >= 0) & (ys < h)]
                px = img[ys, x]
                # the mouth's inside: nearer its dark or its light than this column's lip
                is_inside = (np.linalg.norm(px[:, None] - inside[None], axis=-1).min(axis=1)
                             < np.linalg.norm(px - ref[i], axis=-1))
                n = int(np.argmin(is_inside)) if not is_inside.all() else len(ys)  # its run from the contour
                if n:
                    # the last inside pixel's far side, and half a pixel more for its blend into the lip
                    out[i] = min(abs(ys[n - 1] + 0.5 * step - edge[i]) + 0.5, reach[i])
        # A lower lip pulled down shows its wet inside, which a closing mouth rolls in: more than
        # ROLL_IN times the upper lip's thickness of it is cut away (a closed mouth that keeps it reads open).
        over = (outer_lo - lower - self.cut_lo) - ROLL_IN * np.maximum(upper - self.cut_up - outer_up, 0.0)
        self.cut_lo[:] = np.maximum(self.cut_lo, np.minimum(over, CUT_OF_LIP * np.maximum(outer_lo - lower, 0.0)))
        # A cut that changes from column to column would show as a ragged lip edge.
        for cut in (self.cut_up, self.cut_lo):
            cut[:] = cv2.GaussianBlur(cv2.dilate(cut[None], np.ones((1, 5))),
                                      (0, 0), max(1.0, CUT_SMOOTH * self.mw), borderType=cv2.BORDER_REPLICATE)[0]

    def lines(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(upper edge, lower edge, gap between them, where they meet) at columns x. The edges are cut
        into each lip past any of the mouth's inside the photo shows beside the mesh's contour, and a little
        more, so that no sliver of the photo's teeth or of their shadow stays between the closed lips. The
        upper lip comes down by DOWN_SHARE of the gap, but at most DOWN_CAP of its distance from the nose
        (more reads as a stretched lip); the jaw, lower lip and chin rise by the rest, as a closing mouth does."""
        upper, lower = self.contours(x)
        g = np.maximum(lower - upper, 0.0)
        cut = 0.5 * np.minimum(g, 1.0) + 0.1 * g
        cut_up = np.maximum(cut, np.interp(x, self.cols, self.cut_up, left=0.0, right=0.0))
        cut_lo = np.maximum(cut, np.interp(x, self.cols, self.cut_lo, left=0.0, right=0.0))
        upper, lower, g = upper - cut_up, lower + cut_lo, g + cut_up + cut_lo
        down = np.minimum(DOWN_SHARE * g, DOWN_CAP * np.maximum(upper - self.nose_y, 0.0))
        return upper, lower, g, upper + down

    def down(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The upper lip's displacement (down, > 0), fading to nothing below the nose."""
        upper, _, _, meet = self.lines(x)
        # The skin just under the nose stays (stretching it drags the nostrils' shadow down).
        return (meet - upper) * _smoothstep(self.nose_y + 0.3 * (upper - self.nose_y), upper, y)

    def up_(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The lower face's displacement (up, < 0): the lower lip up to where the lips meet, the chin as
        far as the centre's lower lip, fading beside the jaw and into the neck."""
        _, lower, _, meet = self.lines(x)
        rise = lower - meet
        across = np.exp(-0.5 * ((x - self.mouth_x) / (1.7 * self.mw)) ** 4)
        lift = rise + (self.centre_rise * across - rise) * _smoothstep(lower, self.chin_y, y)
        return -lift * (1.0 - _smoothstep(self.chin_y, self.neck_end, y))

    def backward(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Output (x, y) -> the source y it shows (x does not move): a few fixed-point steps of y = s + f(s).
        x may be one row of columns, broadcast over y's rows."""
        *_, meet = self.lines(x)
        upper = y <= meet
        s = y.copy()
        for _ in range(5):
            s = np.where(upper, y - self.down(x, s), y - self.up_(x, s))
        return s

    def forward(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        *_, meet = self.lines(x)
        return np.where(y <= meet, y + self.down(x, y), y + self.up_(x, y))


def _by_x(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(points[:, 0], kind="stable")
    return points[order, 0], points[order, 1]


def _lips(region: np.ndarray, U: np.ndarray, V: np.ndarray, meet: np.ndarray, closing: _Closing,
          upright: np.ndarray, lm: np.ndarray,
          moved: np.ndarray) -> tuple[np.ndarray, tuple[Callable, Callable] | None]:
    """The closed lips painted with their colour and volume (lip_volume), and where their outer edges now
    lie: (region, (top(x), bottom(x)) in the face's frame, or None where the photo shows no lip to paint)."""
    mw, cols = closing.mw, closing.cols
    upper, lower = closing.contours(cols)
    outer_up = np.interp(cols, *_by_x(lm[list(OUTER_UPPER)]))
    outer_lo = np.interp(cols, *_by_x(lm[list(OUTER_LOWER)]))
    left, right = closing.corner_x[0], closing.corner_x[-1]
    mid = float(np.clip(closing.mouth_x, left + 0.3 * (right - left), right - 0.3 * (right - left)))

    def across(x: np.ndarray) -> np.ndarray:
        return np.where(x < mid, (x - mid) / max(mid - left, 1e-3), (x - mid) / max(right - mid, 1e-3))

    def top_y(x: np.ndarray) -> np.ndarray:
        meet_x = closing.lines(x)[3]
        now = np.interp(x, *_by_x(np.stack([lm[list(OUTER_UPPER), 0], moved[list(OUTER_UPPER)]], axis=1)))
        return np.minimum(now, meet_x - THICK_UP * mw * bow(across(x)))

    def bottom_y(x: np.ndarray) -> np.ndarray:
        meet_x = closing.lines(x)[3]
        now = np.interp(x, *_by_x(np.stack([lm[list(OUTER_LOWER), 0], moved[list(OUTER_LOWER)]], axis=1)))
        return np.maximum(now, meet_x + THICK_LO * mw * fullness(across(x)))

    colours = lip_colours(upright, cols, upper, lower, outer_up, outer_lo, mid, 0.5 * (right - left), mw)
    if colours is None:
        return region, None
    return paint(region, U, V, meet, top_y(U), bottom_y(U), across(U), colours, mw), (top_y, bottom_y)


def close_lips(rgb: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, RestPose] | None:
    """(image, landmarks, what was replaced) with the lips closed, or None where they are closed already."""
    gap = lip_gap(landmarks)
    if gap < CLOSED_GAP:
        return None
    # The closing is built in the face's own frame (rig.FaceFrame): a tilted face closes its lips along
    # its own vertical, not the photo's.
    frame = face_frame(landmarks)
    lm = np.asarray(landmarks, np.float64)[:, :2]
    ux, uy = frame.to_face(lm[:, 0], lm[:, 1])
    h, w = rgb.shape[:2]
    to_face = np.array([[frame.cos, -frame.sin, 0.0], [frame.sin, frame.cos, 0.0]])
    to_face[:, 2] = (frame.px, frame.py) - to_face[:, :2] @ (frame.px, frame.py)
    upright = rgb if frame.upright else cv2.warpAffine(rgb, to_face, (w, h), flags=cv2.INTER_LINEAR,
                                                       borderMode=cv2.BORDER_REPLICATE)
    closing = _Closing(np.stack([ux, uy], axis=1), upright)  # its colours read on the face turned upright
    mw = closing.mw
    bx0, by0, bx1, by1 = frame.box_to_image((closing.mouth_x - 3.6 * mw, closing.nose_y - 0.2 * mw,
                                             closing.mouth_x + 3.6 * mw, closing.neck_end + 0.1 * mw))
    x0, x1 = int(max(0, bx0)), int(min(w, bx1 + 1))
    y0, y1 = int(max(0, by0)), int(min(h, by1 + 1))

    def source(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Output pixels -> (the photo's x, y they show; their face-frame column and row)."""
        U, V = frame.to_face(X, Y)
        sx, sy = frame.to_image(U, closing.backward(U, V))
        return sx.astype(np.float32), sy.astype(np.float32), U, V

    X, Y = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
    sx, sy, U, V = source(X, Y)
    region = cv2.remap(rgb, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    # The warp jumps across the line where the lips meet: there it is built at twice the resolution and
    # averaged down, so that a slanted line has smooth edges instead of stair steps.
    ss = 2
    Xf, Yf = np.meshgrid(x0 + (np.arange((x1 - x0) * ss) + 0.5) / ss - 0.5,
                         y0 + (np.arange((y1 - y0) * ss) + 0.5) / ss - 0.5)
    fine = cv2.remap(rgb, *source(Xf, Yf)[:2], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fine = cv2.resize(fine.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    _, _, g, meet = closing.lines(U)
    near = (np.exp(-(((V - meet) / 1.5) ** 2)) * np.minimum(g, 1.0))[..., None]
    region += (fine - region) * near
    # Where the lips meet: a soft line of their own colour, darker, fading toward the corners.
    u = (U - closing.up.cx) / closing.up.half_w
    line = SEAM * np.exp(-(((V - meet) / SEAM_PX) ** 2)) * np.sqrt(np.clip(1 - u * u, 0.0, 1.0)) * np.minimum(g, 1.0)
    region *= 1.0 - line[..., None]
    moved = closing.forward(ux, uy)
    region, edges = (_lips(region, U, V, meet, closing, upright, np.stack([ux, uy], axis=1), moved)
                     if gap >= PAINT_GAP else (region, None))
    closed = rgb.copy()
    closed[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
    inner = list(INNER_CORNERS + INNER_UPPER + INNER_LOWER)
    moved[inner] = closing.lines(ux[inner])[3]  # the inner contour: on the line where the lips now meet
    if edges is not None:  # the outer contour: on the painted lips' edges
        up_pts, lo_pts = list(OUTER_UPPER[1:-1]), list(OUTER_LOWER[1:-1])
        moved[up_pts] = np.minimum(moved[up_pts], edges[0](ux[up_pts]))
        moved[lo_pts] = np.maximum(moved[lo_pts], edges[1](ux[lo_pts]))
    out = np.asarray(landmarks, np.float32).copy()
    out[:, 0], out[:, 1] = frame.to_image(ux, moved)
    return closed, out, RestPose(rgb, np.asarray(landmarks, np.float32).copy(), gap)
