"""Where head motion acts: the head, hair and ears move as one; below the jaw only the neck follows,
fading out before the collar, so the shoulders stay. The background is never moved by this weight:
the renderer lays the moving person over a still plate (engine.generator.matte).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from engine.generator.exemplar import low_pass
from engine.generator.matte import ROUGH_MAX, halo_reach, plate_hole, premultiplied_layer
from engine.generator.rig import Box, RigGeometry, build_rig

MAX_HEAD_DEG = 10.0  # the largest yaw, pitch or roll the layer's box is sized for (the blueprint uses <= 8)


def _smoothstep(e0: float, e1: float, x: torch.Tensor) -> torch.Tensor:
    t = torch.clamp((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


JAW_ANGLES = (172, 397)  # face-mesh points at the jaw's corners, under the ears


def jaw_line(landmarks: np.ndarray, dx: float = 0.0, dy: float = 0.0) -> tuple[float, float, float]:
    """(x of the left jaw corner, x of the right one, their mean y), origin moved to (dx, dy)."""
    (xl, yl), (xr, yr) = landmarks[list(JAW_ANGLES)].astype(np.float64)
    return float(min(xl, xr) - dx), float(max(xl, xr) - dx), float((yl + yr) / 2 - dy)


def jaw_cut(g: RigGeometry, X: torch.Tensor, jaw: tuple[float, float, float] | None) -> torch.Tensor | float:
    """The y of the jaw line at X: through the chin and the jaw's corners, level beyond them."""
    if jaw is None:
        return g.chin_y
    xl, xr, y_corner = jaw
    u = torch.clamp((X - (xl + xr) / 2) / max((xr - xl) / 2, 1.0), -1.0, 1.0)
    return g.chin_y + (y_corner - g.chin_y) * u * u


def head_radii(g: RigGeometry, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """How far each point is from the head's centre in radii of its ellipse (face_rx, face_ry): 1 on the ellipse."""
    return torch.sqrt(((X - g.face_cx) / g.face_rx) ** 2 + ((Y - g.face_cy) / g.face_ry) ** 2)


def head_weight(g: RigGeometry, X: torch.Tensor, Y: torch.Tensor,
                jaw: tuple[float, float, float] | None = None, hair: torch.Tensor | None = None) -> torch.Tensor:
    """How much of the head's motion each point takes, 0..1, at pixel coordinates X, Y (g's origin).

    Rigid over the head ellipse grown to hold hair and a hat (1.2 radii), fading out by 1.45, and over
    `hair` (`hair_reach` sampled at X, Y: the hair or hat the segmenter joins to the head, however far it
    reaches past that ellipse). Below the jaw line (a curve through the chin and the jaw's corners, level
    beyond them: `jaw_line`), where a collar or a suit's ring may rise beside the neck, only a neck column
    about a jaw wide follows, fading out over 0.4 face heights."""
    d = head_radii(g, X, Y)
    head = 1.0 - _smoothstep(1.2, 1.45, d)
    if hair is not None:
        head = torch.maximum(head, hair)
    face_h = g.face_ry / 0.68
    cut = jaw_cut(g, X, jaw)
    below = torch.clamp((Y - cut + 0.05 * face_h) / (0.15 * face_h), 0.0, 1.0)
    below = below * below * (3 - 2 * below)
    neck = ((1.0 - _smoothstep(0.3 * g.face_w, 0.5 * g.face_w, (X - g.face_cx).abs()))
            * (1.0 - _smoothstep(g.chin_y, g.chin_y + 0.4 * face_h, Y)))
    return head * (1.0 - below + below * neck)


def max_travel(g: RigGeometry, x: np.ndarray, y: np.ndarray) -> float:
    """The farthest any of the points (x, y) moves at MAX_HEAD_DEG of turn, nod and roll at once (px)."""
    px, py = pivot(g)
    rad = MAX_HEAD_DEG * math.pi / 180.0
    shift = ((MAX_HEAD_DEG * 0.012 * max(g.face_rx, g.face_ry) + 0.5 * g.face_w * rad) * math.sqrt(2.0)
             + 0.012 * g.face_ry)
    return float(shift + rad * np.sqrt((x - px) ** 2 + (y - py) ** 2).max(initial=0.0))


def hair_reach(g: RigGeometry, matte: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: 1 wherever the head's hair, hat or ears can be at MAX_HEAD_DEG, fading out beyond.

    The person above the jaw line that the segmenter joins to the face (spiky hair, a tall hat, a bun) may reach
    far past the head ellipse of `head_weight`: there it would stay on the wall while the face under it moves,
    and the moved head would pull a stretched copy of it along. So it all moves rigidly, and so does the wall
    around it as far as it can travel (the layer is transparent there: moving the wall's place shows the plate,
    the wall's own pixels). Below the jaw the neck column of `head_weight` takes over."""
    h, w = matte.shape
    person = (matte >= 128).astype(np.uint8)
    ys = np.arange(h, dtype=np.float32)[:, None]
    cut = jaw_cut(g, torch.from_numpy(np.arange(w, dtype=np.float32)), jaw_line(landmarks))
    cut_row = cut.numpy()[None, :] if isinstance(cut, torch.Tensor) else np.full((1, w), cut, np.float32)
    person[ys > cut_row] = 0
    _, labels = cv2.connectedComponents(person, connectivity=8)
    face = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(face, cv2.convexHull(np.round(landmarks[:, :2]).astype(np.int32)), 1)
    touching = np.unique(labels[(face > 0) & (person > 0)])
    head = np.isin(labels, touching[touching > 0])
    if not head.any():
        return np.zeros((h, w), np.float32)
    yy, xx = np.nonzero(head)
    travel = max_travel(g, xx.astype(np.float64), yy.astype(np.float64))
    dist = cv2.distanceTransform((~head).astype(np.uint8), cv2.DIST_L2, 5)
    fade = max(2.0, 0.5 * travel)
    t = np.clip((dist - travel) / fade, 0.0, 1.0)
    return (1.0 - t * t * (3 - 2 * t)).astype(np.float32)


# The head's own part of the matte: what the segmenter is sure of (>= SURE of 255), opened over OPEN_REACH face widths
# (a thin bridge of hair to a poster's figure or a hand does not join them to the head), then grown back through the
# person's soft edge and the plate's hole by up to GROW_REACH face widths.
SURE = 200
OPEN_REACH = 0.03
GROW_REACH = 0.03
# ... and on through the soft edge alone by up to SOFT_REACH face widths (`_with_its_soft_edge`).
SOFT_REACH = 0.1
# A piece of the person the opening cut off the head's edge, touching it and no larger than TIP_SIZE face widths
# squared, is the head's own: a curl's tip, a lock of hair. A poster's figure or a hand is larger.
TIP_SIZE = 0.08


def head_part(matte: np.ndarray, hole: np.ndarray, weight: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(H, W) bool: the person the head belongs to: the face, the hair, hat and ears joined to it, the neck and the
    body below it (which `head_weight` leaves still or stretches with the neck); their soft edge and the plate's
    hole around them included.

    Everything else stays still as the photo shows it, even where the head's weight reaches it: a poster's figure
    or a hand the segmenter joins to the head only by a thin or unsure bridge. The head moves in front of them.
    weight: `head_weight` over the image; where it is 0 nothing moves, so nothing needs to be split off there."""
    h, w = matte.shape
    moving = weight > 1e-3
    sure = (matte >= SURE).astype(np.uint8)
    fw = float(np.ptp(landmarks[:, 0]))
    r = max(1, round(OPEN_REACH * fw))
    sure = cv2.morphologyEx(sure, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
    face = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(face, cv2.convexHull(np.round(landmarks[:, :2]).astype(np.int32)), 1)
    _, labels = cv2.connectedComponents(sure, connectivity=8)
    touching = np.unique(labels[(face > 0) & (sure > 0)])
    part = (np.isin(labels, touching[touching > 0]) | (face > 0)).astype(np.uint8)
    room = ((matte > 0) | (hole > 0)).astype(np.uint8)
    part = (part | (_growth_steps(part, room, max(2, round(GROW_REACH * fw))) > 0)).astype(np.uint8)
    part = _with_its_tips(part, matte, fw)
    part = _with_its_soft_edge(part, matte, fw)
    # The halo's rim past the matte (matte 1: matte._unmix_the_halo) moves with the edge it belongs to: left still, the
    # photo's own halo would show there, a dotted ring round the old outline.
    reach = 2 * halo_reach(matte.shape) + 1
    near = cv2.dilate(part, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1,) * 2)) > 0
    # Out of the head's reach everything stays anyway: the photo as it is.
    return (part > 0) | (near & (matte == 1)) | ((matte > 0) & ~moving)


def _growth_steps(part: np.ndarray, room: np.ndarray, steps: int) -> np.ndarray:
    """(H, W) int32: the step (1..steps) at which part (uint8 0/1), grown a pixel a step within room (uint8 0/1),
    reached each pixel; 0 on part and where it did not reach."""
    cross = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    step = np.zeros(part.shape, np.int32)
    grown = part.copy()
    for k in range(1, steps + 1):
        nxt = (cv2.dilate(grown, cross) & room) | grown
        new = nxt > grown
        if not new.any():
            break
        step[new] = k
        grown = nxt
    return step


def _with_its_soft_edge(part: np.ndarray, matte: np.ndarray, fw: float) -> np.ndarray:
    """part (H, W) uint8 0/1 grown on through the person's soft edge alone (the segmenter unsure: 1 < matte < SURE) by
    up to SOFT_REACH face widths, where that edge ends within twice as far: hair's wisps and blur past the part.

    Left out, they stayed on the wall as the photo shows them while the head moved: a pale arc of strands along the
    old outline over the sky (anne_helene_sunglasses_small). A soft region that goes on further is something else
    the segmenter is unsure of (a poster's figure beside pedersen_young_teeth's hair, held at 0.3-0.7): taking a strip
    of it tore the figure on a turn, so nothing is taken within that distance of where it goes on."""
    reach = max(1, round(SOFT_REACH * fw))
    step = _growth_steps(part, ((matte > 1) & (matte < SURE)).astype(np.uint8), 2 * reach + 1)
    take = (step > 0) & (step <= reach)
    goes_on = (step > 2 * reach).astype(np.uint8)
    if goes_on.any():
        take &= cv2.dilate(goes_on, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (4 * reach + 3,) * 2)) == 0
    return (part | take).astype(np.uint8)


def _with_its_tips(part: np.ndarray, matte: np.ndarray, fw: float) -> np.ndarray:
    """part (H, W) uint8 0/1 with the small pieces of the person touching it added (TIP_SIZE).

    Curly hair's outer curls are thinner than the opening's disk and lie further out than the growth back reaches:
    left out of the head's part, they stayed on the wall as the photo shows them while the hair moved, a ragged ghost
    of curls along the old outline (darker_skin_frontal)."""
    # Matte 1 (the halo's rim past the person, matte._unmix_the_halo) is left out: it joins every piece into one ring.
    rest = ((matte > 1) & (part == 0)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(rest, connectivity=8)
    if n <= 1:
        return part
    touching = np.unique(labels[(cv2.dilate(part, np.ones((3, 3), np.uint8)) > 0) & (rest > 0)])
    small = stats[:, cv2.CC_STAT_AREA] <= (TIP_SIZE * fw) ** 2
    keep = np.zeros(n, bool)
    keep[touching] = True
    keep &= small
    keep[0] = False
    return (part | keep[labels]).astype(np.uint8)


def sample(field: np.ndarray, X: torch.Tensor, Y: torch.Tensor, dx: float = 0.0, dy: float = 0.0) -> torch.Tensor:
    """A full-image field (H, W) read at pixel coordinates X + dx, Y + dy (bilinear; 0 outside)."""
    mx = (X + dx).numpy().astype(np.float32)
    my = (Y + dy).numpy().astype(np.float32)
    out = cv2.remap(field.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return torch.from_numpy(out)


def depth_proxy(g: RigGeometry, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """A depth for parallax: 1 at the face centre (about the nose), falling to 0 at its outline, so
    turning and nodding move the nose more than the cheeks and the chin."""
    fd = ((X - g.face_cx) / (0.5 * g.face_w)) ** 2 + ((Y - g.face_cy) / (0.62 * g.face_w)) ** 2
    return torch.sqrt(torch.clamp(1.0 - fd, min=0.0))


# The share of a turn's or nod's shift (WarpRenderer's yaw_px, pitch_px) that the head's outline takes. A head turns
# about the neck, which stands close under its centre: its outline hardly moves while the face slides across it
# (LivePortrait's and every 3D head's look). Shifted whole, the outline swept the wall beside it by as much as half
# the nose's motion: a turn of 8 degrees uncovered 960-10235 px of plate beside the head (astronaut to henner_glasses).
OUTLINE_SHARE = 1.0 / 3.0
# The face moves as one out to FACE_WHOLE head radii. A share falling across the face itself (a paraboloid from its
# centre, or from 0.7 radii) left the mouth's pixels as they were but changed the cheeks and jaw around them, and the
# face mesh read anne_helene_sunglasses_small's 82 px face with lips apart in silence half as often again: 93% closed
# (mean of 5 idle seeds; 97.5% before, 97.0% at this reach).
FACE_WHOLE = 0.95
OUTLINE_AT = 1.3


def turn_share(g: RigGeometry, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """How much of a turn's or nod's shift each point takes: all of it over the face and what frames it (cheeks, jaw,
    ears: out to FACE_WHOLE of the head ellipse's radii), falling smoothly over the hair to OUTLINE_SHARE at
    OUTLINE_AT radii and beyond (`head_weight` fades from 1.2 to 1.45)."""
    d = head_radii(g, X, Y)
    return OUTLINE_SHARE + (1.0 - OUTLINE_SHARE) * (1.0 - _smoothstep(FACE_WHOLE, OUTLINE_AT, d))


def pivot(g: RigGeometry) -> tuple[float, float]:
    """The point head roll turns about: the top of the neck."""
    return g.face_cx, g.chin_y + 0.3 * g.face_ry


def layer_box(rig: RigGeometry, matte: np.ndarray, landmarks: np.ndarray, width: int, height: int,
              step: int = 4, hair: np.ndarray | None = None) -> Box:
    """The box the renderer warps and composites: every person pixel the head motion moves, grown by
    the farthest any of them can travel at MAX_HEAD_DEG, and the mouth's box (the jaw drops below the chin).
    Outside it every pixel is the photo's own, so nothing there is computed per frame."""
    ys = torch.arange(0, height, step, dtype=torch.float32)
    xs = torch.arange(0, width, step, dtype=torch.float32)
    Y, X = torch.meshgrid(ys, xs, indexing="ij")
    weight = head_weight(rig, X, Y, jaw_line(landmarks), None if hair is None else sample(hair, X, Y))
    # matte 1: the fringe's wisps (engine.generator.matte.head_fringe) lie within the travel margin anyway; counting
    # them would grow the box, and the per-frame cost, for a few pixels of hair.
    moving = (weight > 2e-3) & torch.from_numpy(matte[::step, ::step][: len(ys), : len(xs)] > 1)
    if not bool(moving.any()):
        return rig.head_box(width, height)
    px, py = pivot(rig)
    rad = MAX_HEAD_DEG * math.pi / 180.0
    # How far each moving point can travel: turning and nodding shift it (less toward the head's outline, more with
    # depth, as WarpRenderer._head_map does), breathing lifts it, roll swings it about the pivot.
    shift = MAX_HEAD_DEG * (0.012 * max(rig.face_rx, rig.face_ry) * turn_share(rig, X, Y) + 0.5 * rig.face_w * rad
                            / MAX_HEAD_DEG * depth_proxy(rig, X, Y)) * math.sqrt(2.0) + 0.012 * rig.face_ry
    reach = (weight * (shift + rad * torch.sqrt((X - px) ** 2 + (Y - py) ** 2)) + step)[moving]
    xm, ym = X[moving], Y[moving]
    mx0, my0, mx1, my1 = rig.mouth_box(width, height, 0.12 * rig.face_w)
    x0 = min(float((xm - reach).min()), mx0)
    y0 = min(float((ym - reach).min()), my0)
    x1 = max(float((xm + reach).max()) + step, mx1)
    y1 = max(float((ym + reach).max()) + step, my1)
    return (int(max(0, math.floor(x0))), int(max(0, math.floor(y0))), int(min(width, math.ceil(x1))),
            int(min(height, math.ceil(y1))))


# Beyond the box, the renderer's field grid reads `hair` this far (a padding cell of its stride, at most 8 px for a
# face 1000 px wide: WarpRenderer's field_px_per_face 120): the crop keeps that much more.
HAIR_MARGIN_PX = 24


@dataclass(frozen=True)
class HeadSplit:
    """What moves and what stays: the renderer's geometry, which keyed outputs must match pixel for pixel. Cropped to
    the box the renderer warps: outside it every pixel is the photo's own and stays (a few MB at 720x1280, not the
    full frame's masks; about 8 MB at 720x1280). Made at prepare time and kept with the avatar (PreparedAvatar.head),
    so that a stream's renderer and keying start without making it (0.4-0.8 s at 720x1280)."""

    roi: Box  # the box the renderer warps (layer_box), in the image
    part: np.ndarray  # (roi h, roi w) bool: the head's own part of the person (head_part), the part that moves
    backdrop: np.ndarray  # (roi h, roi w, 3) uint8: what the head moves over: the plate where `part` was, else photo
    # (roi h, roi w, 4) uint8: the moving part as the renderer's premultiplied layer over `backdrop` (matte's
    # premultiplied_layer of the head's part of the matte)
    layer: np.ndarray
    hair: np.ndarray  # (h, w) float32: hair_reach over the roi grown by HAIR_MARGIN_PX (clipped), from hair_origin
    hair_origin: tuple[int, int]  # (x, y) of hair's first pixel in the image
    # What it was made from (the avatar's own arrays, not copies): it stands for another avatar only if the same.
    made_of: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # landmarks, rgb, matte, plate

    def made_from(self, *arrays: np.ndarray) -> bool:
        """Made from these landmarks, rgb, matte and plate (the same arrays, or equal ones: about 1 ms at 720x1280)."""
        return all(a is b or np.array_equal(a, b) for a, b in zip(self.made_of, arrays, strict=True))


def head_split(rig: RigGeometry, rgb: np.ndarray, matte: np.ndarray, plate: np.ndarray,
               landmarks: np.ndarray) -> HeadSplit:
    """Only the head's own part of the person moves (head_part); the rest of the photo, shoulders included, is the
    still background it moves over: the plate behind the head, the photo elsewhere."""
    h, w = matte.shape
    hair = hair_reach(rig, matte, landmarks)
    ys, xs = torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32)
    Yf, Xf = torch.meshgrid(ys, xs, indexing="ij")
    full_weight = head_weight(rig, Xf, Yf, jaw_line(landmarks), torch.from_numpy(hair)).numpy()
    part = head_part(matte, plate_hole(matte), full_weight, landmarks)
    roi = layer_box(rig, np.where(part, np.maximum(matte, 2), 0).astype(np.uint8), landmarks, w, h, hair=hair)
    x0, y0, x1, y1 = roi
    part = np.ascontiguousarray(part[y0:y1, x0:x1])
    backdrop = np.where(part[..., None], plate[y0:y1, x0:x1], rgb[y0:y1, x0:x1])
    backdrop = _still_goes_on_behind(backdrop, part, matte[y0:y1, x0:x1], float(np.ptp(landmarks[:, 0])))
    layer = premultiplied_layer(rgb[y0:y1, x0:x1], np.where(part, matte[y0:y1, x0:x1], 0).astype(np.uint8), backdrop)
    m = HAIR_MARGIN_PX
    hx0, hy0 = max(0, x0 - m), max(0, y0 - m)
    hair = np.ascontiguousarray(hair[hy0 : min(h, y1 + m), hx0 : min(w, x1 + m)])
    return HeadSplit(roi, part, backdrop, layer, hair, (hx0, hy0), (landmarks, rgb, matte, plate))


# Behind the head, the still person beside it (a figure the head part leaves out) goes on this far, in face widths.
STILL_BEHIND = 0.12
# ... from where it is at least this share of that reach from its own edge.
STILL_THICK = 0.25
SEED_NEAR = 0.05  # the seeds' share of the spread's weight from which it goes on whole: see _still_goes_on_behind


def _still_goes_on_behind(backdrop: np.ndarray, part: np.ndarray, matte: np.ndarray, fw: float) -> np.ndarray:
    """backdrop (h, w, 3) uint8 with the person that stays still beside the head's part (matte, not part) continued
    into the part's plate over STILL_BEHIND face widths, as much as it is nearer than the wall.

    The plate is filled from the wall alone, seeded past the whole person's soft edge: where the head part meets a
    figure that stays (beard_smile_darker_skin's blurred neighbour at the jaw), a turn showed the pale wall's fill
    between the still figure and the moved head, a gap with jagged white pieces. The figure's rim on the head (its
    blur) seeds nothing; the still pixels themselves are not changed (the still frame is the photo). It goes on only
    where enough of the figure is near (SEED_NEAR of the spread's weight): a wisp of hair the head part left still,
    far from the thick figure that seeds, took that figure's colour along its length (a dark arc along
    anne_helene_sunglasses_small's hair against the sky, a blob beside maher_teeth's)."""
    still = ((matte > 1) & ~part).astype(np.uint8)
    if not still.any() or not part.any():
        return backdrop
    reach = max(3.0, STILL_BEHIND * fw)
    to_still = cv2.distanceTransform(1 - still, cv2.DIST_L2, 3)
    to_wall = cv2.distanceTransform((matte != 0).astype(np.uint8), cv2.DIST_L2, 3)
    to_part = cv2.distanceTransform((~part).astype(np.uint8), cv2.DIST_L2, 3)
    # The figure's colours spread out from it (a normalised blur), from past its rim on the head and from where it is
    # thick: a curl or a wisp the head part left still is not spread into a smudge.
    thick = cv2.distanceTransform(still, cv2.DIST_L2, 3) > STILL_THICK * reach
    seed = (thick & (to_part > halo_reach(matte.shape) + 1)).astype(np.float32)
    if not seed.any():
        return backdrop
    # Only where the figure is near enough to say (SEED_NEAR of the blur's weight): the ratio of two blurs that are
    # both nearly nothing is noise, and it drew black and white arcs along a head's edge (anne_helene's hair).
    near = low_pass(seed, 0.5 * reach)
    fill = np.clip(low_pass(backdrop * seed[..., None], 0.5 * reach) / np.maximum(near, 1e-4)[..., None], 0.0, 255.0)
    # Whole over half the reach, fading out over the rest; where the wall is as near, half of it.
    u = np.clip((reach - to_still) / (0.5 * reach), 0.0, 1.0)
    share = np.clip(2.0 * to_wall / np.maximum(to_wall + to_still, 1e-3) - 0.5, 0.0, 1.0)
    # Only a blurred figure goes on as a blur: a sharp one (pedersen_young_teeth's poster) spread so is a smudge.
    grey = cv2.cvtColor(backdrop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    detail = np.abs(grey - cv2.GaussianBlur(grey, (0, 0), 2.0)) * seed
    rough = low_pass(detail, 0.5 * reach) / np.maximum(near, 1e-4)
    plain = np.clip((ROUGH_MAX - rough) / (0.5 * ROUGH_MAX), 0.0, 1.0)
    sure = np.clip(near / SEED_NEAR, 0.0, 1.0)
    w = (u * u * (3 - 2 * u) * share * plain * sure * part)[..., None]
    return (w * fill + (1.0 - w) * backdrop + 0.5).astype(np.uint8)


def head_split_for(landmarks: np.ndarray, rgb: np.ndarray, matte: np.ndarray, plate: np.ndarray,
                   prepared: HeadSplit | None = None) -> HeadSplit:
    """`prepared` (PreparedAvatar.head) where it was made from these arrays, else head_split now."""
    if prepared is not None and prepared.made_from(landmarks, rgb, matte, plate):
        return prepared
    # The head's geometry only: the lids' measures (lid_fill.measure_lids) do not enter.
    return head_split(build_rig(landmarks), rgb, matte, plate, landmarks)
