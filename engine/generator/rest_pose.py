"""A closed rest pose for a portrait whose lips are apart (a smile showing teeth, a parted mouth).

The rig animates offsets from the portrait as it is, so a photo with its lips apart never closes them:
it talks with the photo's gap and stretches the photo's teeth. So at prepare, once, a backward warp
brings the lips together and is baked into the image and its landmarks, as LivePortrait normalises an
open source lip before animating it: the upper lip comes down over up to half the gap (the skin up to
the nose taking the stretch, so no one band of lip thickens), and the whole lower face, chin included,
rises with the lower lip by the rest (Expression Flow, Yang et al. 2011: moving the lip alone leaves the
mouth-to-chin distance wrong; and a closing mouth is mostly the jaw rising). A faint shadow marks where
the lips meet. The photo as it was is kept: the mouth interior shows its own teeth, uncovered at their
place on the head as the jaw opens.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engine.generator.mouth import (
    CHIN,
    INNER_CORNERS,
    INNER_LOWER,
    INNER_UPPER,
    NOSE_BASE,
    OUTER_CORNERS,
    inner_lips,
    lip_gap,
)

# Lips whose gap is under this share of the mouth's width count as closed (LivePortrait closes a source lip
# from a lip-open ratio of 0.03).
CLOSED_GAP = 0.03
# Beyond this the closing stretches each lip over more than its own height: the rest pose still closes
# them, but prepare says that a photo with the mouth closed or less open animates better.
WIDE_GAP = 0.25


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


def _smoothstep(e0: np.ndarray | float, e1: np.ndarray | float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / np.maximum(np.asarray(e1 - e0, np.float64), 1e-6), 0.0, 1.0)
    return t * t * (3 - 2 * t)


class _Closing:
    """The closing's displacement (source point -> where it goes), by columns of the mouth."""

    def __init__(self, landmarks: np.ndarray) -> None:
        lm = np.asarray(landmarks, np.float64)[:, :2]
        self.up, self.lo = inner_lips(lm)
        self.mw = float(np.linalg.norm(lm[OUTER_CORNERS[1]] - lm[OUTER_CORNERS[0]]) / 2)
        self.mouth_x, self.mouth_y = float((lm[13, 0] + lm[14, 0]) / 2), float((lm[13, 1] + lm[14, 1]) / 2)
        self.nose_y = float(min(lm[NOSE_BASE, 1], self.mouth_y - 0.3 * self.mw))
        self.chin_y = float(max(lm[CHIN, 1], self.mouth_y + 0.5 * self.mw))
        self.neck_end = self.chin_y + 0.9 * (self.chin_y - self.mouth_y)
        _, lower, _, meet = self.lines(np.array([self.mouth_x]))
        self.centre_rise = float(lower[0] - meet[0])

    def lines(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(upper edge, lower edge, gap between them, where they meet) at columns x. The edges are cut a
        little into each lip, so that no sliver of the photo's teeth stays between the closed lips. The
        upper lip comes down by half the gap, but at most a fifth of its distance from the nose (more reads
        as a stretched lip); the jaw, lower lip and chin rise by the rest, as a closing mouth does."""
        u = (x - self.up.cx) / self.up.half_w
        upper, lower = self.up.y_np(u), self.lo.y_np(u)
        g = np.maximum(lower - upper, 0.0)
        cut = 0.5 * np.minimum(g, 1.0) + 0.1 * g
        upper, lower, g = upper - cut, lower + cut, g + 2 * cut
        down = np.minimum(0.5 * g, 0.2 * np.maximum(upper - self.nose_y, 0.0))
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


def close_lips(rgb: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, RestPose] | None:
    """(image, landmarks, what was replaced) with the lips closed, or None where they are closed already."""
    gap = lip_gap(landmarks)
    if gap < CLOSED_GAP:
        return None
    closing = _Closing(landmarks)
    h, w = rgb.shape[:2]
    mw = closing.mw
    x0, x1 = int(max(0, closing.mouth_x - 3.6 * mw)), int(min(w, closing.mouth_x + 3.6 * mw + 1))
    y0, y1 = int(max(0, closing.nose_y - 0.2 * mw)), int(min(h, closing.neck_end + 0.1 * mw + 1))
    X, Y = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
    region = cv2.remap(rgb, X.astype(np.float32), closing.backward(X[:1], Y).astype(np.float32), cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    # The warp jumps across the line where the lips meet: there it is built at twice the resolution and
    # averaged down, so that a slanted line has smooth edges instead of stair steps.
    ss = 2
    Xf, Yf = np.meshgrid(x0 + (np.arange((x1 - x0) * ss) + 0.5) / ss - 0.5,
                         y0 + (np.arange((y1 - y0) * ss) + 0.5) / ss - 0.5)
    fine = cv2.remap(rgb, Xf.astype(np.float32), closing.backward(Xf[:1], Yf).astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
    fine = cv2.resize(fine.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    _, _, g, meet = closing.lines(X[:1])  # by column (x does not move): one row, broadcast
    near = (np.exp(-(((Y - meet) / 1.5) ** 2)) * np.minimum(g, 1.0))[..., None]
    region += (fine - region) * near
    # Where the lips meet: a soft line of shadow, as between closed lips, fading toward the corners.
    u = (X - closing.up.cx) / closing.up.half_w
    line = 0.3 * np.exp(-(((Y - meet) / 0.9) ** 2)) * np.sqrt(np.clip(1 - u * u, 0.0, 1.0)) * np.minimum(g, 1.0)
    region *= 1.0 - line[..., None]
    closed = rgb.copy()
    closed[y0:y1, x0:x1] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
    lm = np.asarray(landmarks, np.float32).copy()
    lx, ly = lm[:, 0].astype(np.float64), lm[:, 1].astype(np.float64)
    moved = closing.forward(lx, ly)
    inner = list(INNER_CORNERS + INNER_UPPER + INNER_LOWER)
    moved[inner] = closing.lines(lx[inner])[3]  # the inner contour: on the line where the lips now meet
    lm[:, 1] = moved
    return closed, lm, RestPose(rgb, np.asarray(landmarks, np.float32).copy(), gap)
