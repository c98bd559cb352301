"""The mouth: jaw and lip fields, and a layered interior drawn between the lips of each portrait.

The opening follows the mesh's own inner-lip contour (fitted per portrait), so it sits between the lips
on every face instead of a generic lens. What shows in it is built in layers, back to front, as 2D rigs
do: a cavity darker toward the throat and in the corners, the tongue and lower teeth moving with the
jaw, the upper teeth fixed to the head and partly hidden by the upper lip (the photo's own teeth where
it shows them: `PreparedAvatar.rest`, down to where they end; else drawn, with a hint of each tooth), all
shaded under the upper lip and lit across as the lips are. Colours come from the portrait's lips, skin
and eye whites (`mouth_palette`): cream teeth in the photo's light, greyer and brighter than the lips, a pink
mouth inside at its brightness but in the lips' shade, never brighter than the lips around it (on darker skin,
glossy or back-lit lips too), its hue held to a mouth's pink red (`mucosa_hue`) whatever the lip samples: in a
beard, pale, or in a coloured light. The photo's own teeth are used only where they are enamel
(`own_teeth`). On a turned face the opening and teeth are measured from the lips' midline, so the far side is
the narrower one, as it is foreshortened.
Lips part a little after the jaw (they are pressed together at rest), and a slit too thin to see into
shows the lips' dark seam; a narrow opening is in the lips' shade, so the teeth brighten as it widens.
The interior is drawn at pixel resolution over a small box around the opening,
only where some frame opens it; the warp fields stay on the coarse field grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from engine.generator.capture import capturing_graph
from engine.generator.rig import FaceFrame, _fit_lid
from engine.types import Control

# MediaPipe face-mesh points on the lips' red (outer contour) and on the cheeks: the mouth interior is
# coloured from these, so it is lit and white-balanced like the photo instead of one palette for every face.
LIP_POINTS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409)
CHEEK_POINTS = (50, 280, 101, 330, 205, 425)
LIP_LEFT, LIP_RIGHT = (61, 146, 91, 185, 40, 39), (291, 375, 321, 409, 270, 269)  # each side's outer lip
# The inner-lip contour: its corners and the points between them on each lip (image left to right).
INNER_CORNERS = (78, 308)
INNER_UPPER = (191, 80, 81, 82, 13, 312, 311, 310, 415)
INNER_LOWER = (95, 88, 178, 87, 14, 317, 402, 318, 324)
OUTER_CORNERS = (61, 291)
NOSE_BASE, CHIN, LOWER_LIP_BOTTOM = 2, 152, 17
LUMA = np.array([0.299, 0.587, 0.114])

JAW_REACH = 0.85  # the chin drops this many mouth half-widths at JAW_OPEN = 1
UPPER_SHARE = 0.15  # of the lip gap, the part the upper lip lifts by (the lower lip and jaw drop the rest)
EDGE_PX = 0.7  # the interior's edge under the lips: a sigmoid this wide (output pixels)
TEETH_SHOW = 0.14  # the upper incisors reach this many mouth half-widths below the rest lip line
GUM = 0.3  # ... and their gum this many above it (shown only by an upper lip lifted that far)
# Teeth across the arch as seen from the front, in inner-mouth half-widths: the central incisor this wide and
# each tooth further out narrower by this ratio (the arch turns away); the lower incisors are narrower.
INCISOR_W, TOOTH_RATIO = 0.34, 0.72
LOWER_INCISOR_W, LOWER_RATIO = 0.24, 0.85
# Lips part a little after the jaw does (they are soft and pressed together at rest): the gap between them
# lags the jaw's by up to this many mouth half-widths, twice that in a smile (stretched lips press harder).
SEAL = 0.06
# A smile moves the mouth's corners up by this many mouth half-widths and out by this share of their distance from
# the mouth's middle (the cheeks rise with them: `cheeks`).
SMILE_UP, SMILE_OUT = 0.26, 0.15
# Photo corners above the lips' middle by more than SMILE_UP_FULL of the mouth's width (a smile: henner_glasses 0.135,
# pedersen_tilted 0.113; neutral mouths under 0.05) are lifted less: SMILE_UP x (1 - excess / SMILE_UP_FALL), at
# least half of it.
SMILE_UP_FULL, SMILE_UP_FALL = 0.05, 0.2
# The jaw values over which the soft field under the lips gives way to the jaw's one piece (`MouthRig.offsets`).
ONE_PIECE = (0.2, 0.4)
# The inside of an opening this many mouth half-widths high is as lit as a wide one; a slit NARROW_DIM as much.
NARROW_LIT, NARROW_DIM = 0.2, 0.5
# The mouth's inside in the lips' shade: the tongue's colour (the inside's lightest) at most this much brighter
# than the lips' own darker samples; drawn, its front lit at most 0.85 of it and the rest far less, the inside is
# darker than the lips around it. (1.35: the lighter-skinned portraits' insides as they were; on a small face a
# darker one reads as lips apart in silence.)
TONGUE_OVER_LIPS = 1.35
TONGUE_IN_LIGHT = 0.5  # ... or, beside dark lips, this share of the cheeks' brightness (the light on the face)
# Drawn teeth at most this share of the lips' saturation, and at least this much brighter than them (enamel).
TEETH_GREYER, TEETH_OVER_LIPS = 0.5, 1.5
MUCOSA = (1.0, 0.55, 0.57)  # the inside of a mouth's hue (largest channel 1): a pink red, never olive or grey


def _median_at(rgb: np.ndarray, landmarks: np.ndarray, points: list[np.ndarray]) -> np.ndarray:
    """The median colour (0..1) of the 3x3 pixels around each point."""
    h, w = rgb.shape[:2]
    samples = []
    for x, y in ((round(float(p[0])), round(float(p[1]))) for p in points):
        samples.append(rgb[max(0, y - 1) : min(h, y + 2), max(0, x - 1) : min(w, x + 2)].reshape(-1, 3))
    return np.median(np.concatenate(samples), axis=0).astype(np.float64) / 255.0


def _saturation(colour: np.ndarray) -> float:
    return float((colour.max() - colour.min()) / max(float(colour.max()), 1e-3))


def eye_white(rgb: np.ndarray, landmarks: np.ndarray, skin: np.ndarray) -> np.ndarray | None:
    """The whites of the eyes (0..1 RGB): the photo's own white, lit and white-balanced as it was, or None
    where no sclera shows (sunglasses, narrowed or cast-down eyes: the samples are then skin or lashes)."""
    lm = np.asarray(landmarks, np.float64)[:, :2]
    if len(lm) < 478:
        return None
    points = []
    for iris, corners in ((468, (33, 133)), (473, (362, 263))):
        centre = lm[iris]
        radius = float(np.mean(np.linalg.norm(lm[iris + 1 : iris + 5] - centre, axis=1)))
        for k in corners:
            d = lm[k] - centre
            length = float(np.linalg.norm(d))
            if length > radius + 2:  # between the iris and the corner: the white, if the lids show it
                points += [centre + d / length * (radius + f * (length - radius)) for f in (0.3, 0.5)]
    if not points:
        return None
    h, w = rgb.shape[:2]
    px = np.concatenate([rgb[max(0, round(y) - 1) : min(h, round(y) + 2), max(0, round(x) - 1) : min(w, round(x) + 2)]
                         .reshape(-1, 3) for x, y in points]).astype(np.float64) / 255.0
    luma = px @ LUMA
    white = np.median(px[luma >= np.quantile(luma, 0.6)], axis=0)
    # Sclera is greyer than skin in any light, and about as bright as lit skin (the lids shade it).
    bright_enough = float(white @ LUMA) > 0.75 * float(skin @ LUMA)
    return white if bright_enough and _saturation(white) < min(0.3, 0.7 * _saturation(skin)) else None


def own_teeth(teeth: np.ndarray | None, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
    """`teeth` (the bright of the photo's gap between the mesh's inner lips, 0..1 RGB) where it is enamel, else
    None. Teeth are brighter and greyer than the lips around them in any light and on any skin; pale or glossy
    lips that the mesh parts by a pixel or two (a sheen, lit from behind) are neither, and pasting them as
    teeth fills the opening with lip."""
    if teeth is None:
        return None
    lm = np.asarray(landmarks, np.float64)[:, :2]
    lip = _median_at(rgb, lm, [lm[i] for i in LIP_POINTS])
    colour = np.asarray(teeth, np.float64)
    whiter = float(colour @ LUMA) >= 1.15 * float(lip @ LUMA) and _saturation(colour) <= 0.85 * _saturation(lip)
    return colour if whiter else None


def mucosa_hue(lip: np.ndarray) -> np.ndarray:
    """The inside of the mouth's hue (0..1 RGB, its largest channel 1) from the lips' colour: their hue, kept
    within what a mouth's inside shows in any light. Lip samples in a beard, pale lips or a coloured light give
    a pure red, a skin-beige or a grey-olive; the inside is a pink red (red first, green about as low as blue,
    about half as strong as red), so they are held to it: saturation within 0.4..0.55, and half of that hue is
    MUCOSA's own."""
    colour = np.asarray(lip, np.float64) / max(float(np.max(lip)), 1e-3)
    sat = 1.0 - float(colour.min())
    if int(np.argmax(colour)) != 0 or sat < 0.05:  # not a red at all (a green or blue cast): nothing to keep
        return np.array(MUCOSA)
    colour = 1.0 - (1.0 - colour) * (float(np.clip(sat, 0.4, 0.55)) / sat)
    return 0.5 * (colour + np.array(MUCOSA))


def _lip_shade(rgb: np.ndarray, landmarks: np.ndarray) -> float:
    """The lips' own brightness (luma, 0..1) out of their sheen: a low quantile of the pixels around their
    outer contour's points (a glossy or back-lit lip is mostly highlight at its median)."""
    h, w = rgb.shape[:2]
    px = np.concatenate([rgb[max(0, round(y) - 1) : min(h, round(y) + 2), max(0, round(x) - 1) : min(w, round(x) + 2)]
                         .reshape(-1, 3) for x, y in (landmarks[i] for i in LIP_POINTS)]).astype(np.float64) / 255.0
    return float(np.quantile(px @ LUMA, 0.3))


def _whiter_than(teeth: np.ndarray, lip: np.ndarray) -> np.ndarray:
    """Drawn teeth made enamel beside these lips: greyer than them and brighter, as teeth are in any light. A
    cream tinted by brown skin, or eye whites in shade, read as more lip beside pale or glossy lips."""
    teeth = np.asarray(teeth, np.float64)
    top = float(teeth.max())
    sat = _saturation(teeth)
    most = TEETH_GREYER * _saturation(lip)
    if sat > most:  # toward the grey of its brightest channel, keeping its hue
        teeth = top - (top - teeth) * (most / sat)
    gain = TEETH_OVER_LIPS * float(lip @ LUMA) / max(float(teeth @ LUMA), 1e-3)
    return np.clip(teeth * float(np.clip(gain, 1.0, 0.95 / max(float(teeth.max()), 1e-3))), 0.0, 1.0)


def mouth_palette(rgb: np.ndarray, landmarks: np.ndarray,
                  teeth_rgb: np.ndarray | None = None) -> dict[str, tuple[float, float, float]]:
    """Lip, inner mouth, cavity, tongue and teeth colours (0..1 RGB) from the portrait's own lips and skin, and
    "light": the light's gain at the mouth's image-left corner, its middle and its right corner.

    The cavity is the inner mouth's hue in deep shade ("throat": its darkest, redder still) and the tongue a
    lighter one. The teeth are the photo's own where it shows them (`teeth_rgb`, 0..1), else its eye whites a
    little darker and yellower (enamel is never as white as sclera), else a cream at the skin's brightness
    tinted toward the skin's colour (the photo's light); drawn teeth are then made greyer and brighter than the
    lips. The inside is held in the lips' shade: its tongue no brighter than the lips' own darker samples.
    """
    lm = np.asarray(landmarks, np.float64)[:, :2]
    raw_lip, skin = (_median_at(rgb, lm, [lm[i] for i in pts]) for pts in (LIP_POINTS, CHEEK_POINTS))
    # Lip samples mix in skin at the lip line: push them away from the skin colour to keep the lips' red.
    lip = np.clip(skin + 1.8 * (raw_lip - skin), 0.0, 1.0)
    luma = float(skin @ LUMA)
    tint = skin / max(float(skin.max()), 1e-3)
    # Teeth are never paper white: a little yellow (less blue) reads as enamel in any light.
    teeth = np.clip(min(0.9, 0.42 + 0.72 * luma) * (0.4 + 0.6 * tint) * (1.0, 0.97, 0.88), 0.0, 1.0)
    white = eye_white(rgb, lm, skin)
    if teeth_rgb is not None:
        teeth = np.clip(np.asarray(teeth_rgb, np.float64), 0.0, 1.0)
    else:
        if white is not None:
            teeth = np.clip(0.92 * white * (1.0, 0.97, 0.88), 0.0, 1.0)
        teeth = _whiter_than(teeth, raw_lip)
    # Inside, the mouth is redder than its lips (mucosa, and light that passed through it): the lips' hue,
    # deepened, at the brightness of the light on the face (dark or pale lips still have a pink mouth inside);
    # the tongue between the two.
    mucosa = mucosa_hue(lip) * min(1.0, 0.35 + 0.8 * luma)
    inner = mucosa * np.sqrt(mucosa / max(float(mucosa.max()), 1e-3))
    tongue = 0.5 * (mucosa + inner)
    # ... but in the lips' shade: the inside of a mouth is darker than the lips around it in any light, on any
    # skin. The cheeks (lit by a light from behind) and a sheen on the lips are no measure of that: the lips' own
    # darker samples are.
    # (Dark, pigmented lips on a lit face still have a pink inside, lit by what gets past them: not a black hole.)
    most = max(TONGUE_OVER_LIPS * _lip_shade(rgb, lm), TONGUE_IN_LIGHT * luma)
    shade = min(1.0, most / max(float(tongue @ LUMA), 1e-3))
    mucosa, inner, tongue = mucosa * shade, inner * shade, tongue * shade
    # The light across the mouth: lips brighter on one side (a key light from that side) light the inside so too.
    left, right = (float(_median_at(rgb, lm, [lm[i] for i in side]) @ LUMA) for side in (LIP_LEFT, LIP_RIGHT))
    slope = float(np.clip((right - left) / max(right + left, 1e-3), -0.2, 0.2))
    return {name: tuple(float(v) for v in colour) for name, colour in
            (("lip", lip), ("inner", inner), ("cavity", 0.3 * inner), ("tongue", tongue), ("teeth", teeth),
             ("throat", inner * inner / max(float(inner.max()), 1e-3)),
             ("light", np.array([1.0 - slope, 1.0, 1.0 + slope])))}


def smoothstep(e0: float | torch.Tensor, e1: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    t = torch.clamp((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


@dataclass(frozen=True)
class LipLine:
    """One inner-lip contour as y(u), u = (x - cx) / half_w in [-1, 1] between the inner corners:
    the chord between the corners plus (1 - u^2)(k0 + k1 u + k2 u^2), fitted to the mesh's points."""

    x0: float
    x1: float
    y0: float
    y1: float
    k: tuple[float, float, float]

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def half_w(self) -> float:
        return max((self.x1 - self.x0) / 2, 1e-3)

    def y(self, u: torch.Tensor) -> torch.Tensor:
        uc = torch.clamp(u, -1.0, 1.0)
        k0, k1, k2 = self.k
        return self.y0 + (self.y1 - self.y0) * 0.5 * (uc + 1) + (1 - uc * uc) * (k0 + uc * (k1 + uc * k2))

    def y_np(self, u: np.ndarray) -> np.ndarray:
        return self.y(torch.from_numpy(np.asarray(u, np.float64))).numpy()


def inner_lips(landmarks: np.ndarray, dx: float = 0.0, dy: float = 0.0) -> tuple[LipLine, LipLine]:
    """The upper and lower inner-lip contours (their origin moved to (dx, dy))."""
    lm = np.asarray(landmarks, np.float64)[:, :2] - (dx, dy)
    (xa, ya), (xb, yb) = sorted((tuple(lm[INNER_CORNERS[0]]), tuple(lm[INNER_CORNERS[1]])))
    cx, half_w = (xa + xb) / 2, max((xb - xa) / 2, 1e-3)
    return tuple(LipLine(float(xa), float(xb), float(ya), float(yb), _fit_lid(lm[list(points)], cx, half_w, ya, yb))
                 for points in (INNER_UPPER, INNER_LOWER))  # type: ignore[return-value]


def lip_gap(landmarks: np.ndarray) -> float:
    """The inner lips' largest gap over the mouth's width (0: closed), from the mesh's contour points."""
    lm = np.asarray(landmarks, np.float64)[:, :2]
    gap = (lm[list(INNER_LOWER), 1] - lm[list(INNER_UPPER), 1]).max()
    return float(max(gap, 0.0) / max(np.linalg.norm(lm[OUTER_CORNERS[1]] - lm[OUTER_CORNERS[0]]), 1e-3))


@dataclass(frozen=True)
class Opening:
    """Where the lips are in the output at each column, for a batch of controls."""

    u: torch.Tensor  # position across the inner mouth, -1..1 between the corners (head-fixed)
    ue: torch.Tensor  # across the opening now from its midline (narrower when rounded), -1..1 corner to corner
    um: torch.Tensor  # across the mouth from its midline, -1..1 corner to corner (head-fixed)
    side_hw: torch.Tensor  # the half-width (pixels) of this column's side of the midline
    upper: torch.Tensor  # the rest inner lips at this column
    lower: torch.Tensor
    top: torch.Tensor  # the output's upper and lower inner lips: the opening lies between
    bottom: torch.Tensor
    lift: torch.Tensor  # how far the upper lip rose, and the lower lip dropped
    drop: torch.Tensor
    jaw: torch.Tensor  # how far the chin drops (pixels)


def _upright(landmarks: np.ndarray, frame: FaceFrame | None) -> np.ndarray:
    """The mesh's (x, y) in the face's upright frame (the portrait's own without one)."""
    lm = np.asarray(landmarks, np.float64)[:, :2]
    if frame is None or frame.upright:
        return lm
    return np.stack(frame.to_face(lm[:, 0], lm[:, 1]), axis=1)


class MouthRig:
    """The mouth's fields (`offsets`, on the field grid) and its interior (`interior`, finer on small faces).

    Coordinates are those of the renderer's region (head-pose mapped: `qx`, `qy`)."""

    def __init__(self, landmarks: np.ndarray, origin: tuple[float, float], palette: dict[str, tuple[float, ...]],
                 teeth: tuple[np.ndarray, np.ndarray] | None = None, frame: FaceFrame | None = None) -> None:
        """landmarks: the rest pose's mesh (portrait pixels); origin: the region's corner in them.
        teeth: (photo rgb, its landmarks) where the photo shows its own teeth (see rest_pose).
        frame: the face's upright frame (portrait pixels): the mouth is measured, and its fields are asked for,
        in it (qx, qy turned upright), so a tilted face opens along its own axis."""
        self.frame = None if frame is None else frame.shifted(*origin)  # in region pixels
        lm = _upright(landmarks, frame) - origin
        self.upper, self.lower = inner_lips(lm)
        self.cx, self.hw = self.upper.cx, self.upper.half_w
        self.mouth_x = float((lm[13, 0] + lm[14, 0]) / 2)
        # A turned face's mouth is foreshortened on its far side: the midline (the lips' middle points) lies
        # off the corners' middle, and the opening and teeth are measured from it, narrower on that side.
        self.mid = float(np.clip(self.mouth_x, self.cx - 0.6 * self.hw, self.cx + 0.6 * self.hw))
        self.hw_left, self.hw_right = self.mid - self.upper.x0, self.upper.x1 - self.mid
        self.mw = float(np.linalg.norm(lm[OUTER_CORNERS[1]] - lm[OUTER_CORNERS[0]]) / 2)
        self.corner_y = float((lm[OUTER_CORNERS[0], 1] + lm[OUTER_CORNERS[1], 1]) / 2)
        self.mouth_y = float((lm[13, 1] + lm[14, 1]) / 2)
        # Corners that already rise above the lips' middle (a smile in the photo) rise less again: SMILE_UP on top of
        # henner_glasses' closed smile bent his lips into a wave.
        photo_lift = (self.mouth_y - self.corner_y) / (2.0 * self.mw)
        self.smile_up = SMILE_UP * float(np.clip(1.0 - (photo_lift - SMILE_UP_FULL) / SMILE_UP_FALL, 0.5, 1.0))
        self.nose_y = float(min(lm[NOSE_BASE, 1], self.mouth_y - 0.3 * self.mw))
        self.chin_y = float(max(lm[CHIN, 1], self.mouth_y + 0.5 * self.mw))
        self.lower_top = float(self.lower.y_np(np.linspace(-1.0, 1.0, 21)).min())  # the lower inner lip's highest
        # The lower lip's thickness at its middle (the mesh's inner to outer lip): it moves down whole, as a lip does.
        self.lip_thick = float(np.clip(lm[LOWER_LIP_BOTTOM, 1] - lm[14, 1], 0.1 * self.mw, 0.7 * self.mw))
        # The neck under the chin takes up the jaw's drop: over at least twice that drop, so that it is compressed by
        # at most about a half, never folded over (the warp would smear it into streaks).
        drop_most = (1.0 - UPPER_SHARE) * JAW_REACH * self.mw
        self.neck = max(0.9 * (self.chin_y - self.mouth_y), 2.2 * drop_most)
        self.palette = {k: torch.tensor(v, dtype=torch.float32)[None, :, None, None] for k, v in palette.items()}
        self.light_slope = float(palette["light"][2]) - 1.0 if "light" in palette else 0.0
        self.photo: torch.Tensor | None = None
        if teeth is not None:
            rgb, photo_lm = teeth
            self.photo_lines = inner_lips(_upright(photo_lm, frame), *origin)
            # Only the photo's mouth is kept, as a float texture sampled where the opening shows it.
            pl = np.asarray(photo_lm, np.float64)[:, :2]
            x0, y0 = (int(max(0, np.floor(v))) for v in pl[list(INNER_CORNERS)].min(axis=0) - self.mw)
            x1, y1 = (int(np.ceil(v)) for v in pl[list(INNER_CORNERS)].max(axis=0) + self.mw)
            crop = rgb[y0:y1, x0:x1]
            self.photo = torch.from_numpy(crop.astype(np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()
            self.photo_origin = (origin[0] - x0, origin[1] - y0)  # region pixels -> crop pixels
            self.teeth_split = teeth_split(rgb, photo_lm)

    # ---- where the lips are -------------------------------------------------------------------------
    def opening(self, c: torch.Tensor, qx: torch.Tensor) -> Opening:
        """c (N, C, 1, 1) controls; qx (N, h, w) columns."""
        u = (qx - self.cx) / self.hw
        # Rounding draws the corners in (and width pulls them out) as the `offsets` field moves them.
        k = (0.3 * c[:, Control.MOUTH_ROUND] - 0.2 * c[:, Control.MOUTH_WIDTH]) * 0.72
        side_hw = self.hw_left + (self.hw_right - self.hw_left) * (qx >= self.mid).to(qx.dtype)
        um = (qx - self.mid) / side_hw
        ue = um * (1.0 + k)
        t = torch.clamp(1.0 - ue * ue, min=0.0)
        shape = torch.sqrt(t * torch.sqrt(t))  # t ** 0.75, at a third of the cost of pow
        # Bounded: the interior is drawn over the box a fully open jaw reaches (a plugin may send more).
        jaw = torch.clamp(c[:, Control.JAW_OPEN], 0.0, 1.0) * JAW_REACH * self.mw
        gap = jaw * torch.clamp(1.0 - c[:, Control.LIP_PRESS], 0.0, 1.0) * shape
        seal = SEAL * self.mw * (1.0 + torch.clamp(c[:, Control.SMILE], 0.0, 1.0))
        gap = gap - seal * (1.0 - torch.exp(-gap / seal))  # ~gap^2 / (2 seal) while small, gap - seal when wide
        lift, drop = UPPER_SHARE * gap, (1.0 - UPPER_SHARE) * gap
        upper, lower = self.upper.y(u), self.lower.y(u)
        corner = torch.exp(-torch.square(((qx - self.mouth_x).abs() - self.mw) / (0.6 * self.mw)))
        smile = c[:, Control.SMILE] * self.smile_up * self.mw * corner
        return Opening(u, ue, um, side_hw, upper, lower, upper - lift - smile, lower + drop - smile, lift, drop, jaw)

    # ---- the fields ---------------------------------------------------------------------------------
    def offsets(self, c: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Source offsets (output pixel -> where its colour is) of the jaw, lips and corners."""
        o = self.opening(c, qx)
        mw = self.mw
        dx = qx - self.mouth_x
        # Above the opening: the upper lip rises, the skin up to the nose base taking up the stretch.
        above = o.lift * smoothstep(self.nose_y, o.upper, qy + o.lift)
        # Below it, two fields blended by the jaw: near jaw 0 (silence, the sealed lips of anticipation) the soft one
        # (`_soft`), open the jaw's one piece (`_below`), which carries the lip and beard down unstretched. Per frame,
        # both maps are monotone down each column, so their blend is too: no fold at the crossover.
        # Both are solved only where they move anything: from the first row that can be under the opening (a smile
        # lifts the lower lip by at most SMILE_UP mw), over the columns the jaw's drop reaches (`across` is under 0.002
        # past 3.2 mw, and the lips' drop is nothing past their corners).
        one = smoothstep(ONE_PIECE[0], ONE_PIECE[1], torch.clamp(c[:, Control.JAW_OPEN], 0.0, 1.0))  # (N, 1, 1)
        if capturing_graph():
            # An exported graph (ONNX, TensorRT) keeps only the branches its example took (a still pose, jaw 0), and
            # torch.compile would break its graph and recompile on each new count of frames or rows: both solve the
            # two fields everywhere, for every frame.
            src = torch.lerp(self._soft(o, qx, qy, dx), self._below(o, qx, qy, dx), one)
        else:
            src = qy
            rows = torch.nonzero(qy.amax(dim=(0, 2)) > self.lower_top - 0.3 * mw)
            cols = torch.nonzero(dx.abs().amin(dim=(0, 1)) < 3.2 * mw)
            if len(rows) and len(cols):
                part = (slice(None), slice(int(rows[0]), None), slice(int(cols[0]), int(cols[-1]) + 1))
                cut = Opening(*(t if t.shape[-1] == 1 and t.shape[-2] == 1 else t[part]
                                for t in (getattr(o, f.name) for f in fields(o))))
                # Each frame solves only the fields it shows (speech is mostly open wide or shut), both in the blend.
                args = (cut, qx[part], qy[part], dx[part])
                soft, piece = _for_frames(one < 1.0, self._soft, *args), _for_frames(one > 0.0, self._below, *args)
                src = qy.clone()
                src[part] = torch.lerp(soft, piece, one)
        # Between the lips: the inner lip lines, stretched (the interior covers them).
        t = torch.clamp((qy - o.top) / torch.clamp(o.bottom - o.top, min=1e-3), 0.0, 1.0)
        # (Less the smile's lift, added to every row below: so the slit shows the lips' own seam, continuous with
        # the lips either side of it, not rows the smile skips over, which alias into dots along a slanted line.)
        between = o.upper + t * (o.lower - o.upper) - (o.upper - o.lift - o.top)
        sy = torch.where(qy < o.top, qy + above, torch.where(qy > o.bottom, src, between))
        oy = sy - qy
        # Width and rounding: stretch or draw in the lips around the mouth centre.
        dy = qy - self.mouth_y
        around = torch.exp(-torch.square(dx / (1.4 * mw)) - torch.square(dy / (0.9 * mw)))
        ox = (0.3 * c[:, Control.MOUTH_ROUND] - 0.2 * c[:, Control.MOUTH_WIDTH]) * dx * around
        # Press: both lips move toward the lip line.
        lips = torch.exp(-torch.square(dx / (1.2 * mw)) - torch.square(dy / (0.8 * mw)))
        oy = oy + c[:, Control.LIP_PRESS] * 0.35 * dy * lips
        # Smile: corners up and out.
        corner = torch.exp(-(torch.square(dx.abs() - mw) + torch.square(qy - self.corner_y)) / (0.6 * mw) ** 2)
        smile = c[:, Control.SMILE]
        return ox - smile * SMILE_OUT * dx * corner, oy + smile * self.smile_up * mw * corner

    def _soft(self, o: Opening, qx: torch.Tensor, qy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """Where the output rows under the opening come from, near jaw 0: the lower lip drops with the jaw; the chin
        drops by the whole jaw, the skin beside and under the lip stretching between; the neck below the chin takes
        the rest."""
        mw = self.mw
        across = torch.exp(-0.5 * torch.square(torch.square(dx / (1.7 * mw))))
        neck_end = self.chin_y + 0.9 * (self.chin_y - self.mouth_y)
        # While the lips are still sealed (a jaw barely open) the chin follows them more than the jaw: the soft
        # tissue takes the first of the jaw's motion.
        chin = o.drop + (o.jaw - o.drop) * smoothstep(0.0, 2.0 * SEAL * mw, o.jaw)

        def fall(y: torch.Tensor) -> torch.Tensor:
            d = o.drop + (chin * across - o.drop) * smoothstep(o.lower, self.chin_y, y)
            return d * (1.0 - smoothstep(self.chin_y, neck_end, y))

        return qy - fall(qy - o.drop)  # one fixed-point step of the backward map: the drop varies slowly

    def _below(self, o: Opening, qx: torch.Tensor, qy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """Where the output rows under the opening come from. The lower face moves as the jaw does, one piece:
        the lower lip drops whole (its thickness, sheen and lines kept) and the chin under it by as much, so the
        skin and beard between them are not stretched; beside the mouth, where the lips' corners hold, the skin
        stretches over the height from the corner to the chin, and the neck under the chin is compressed."""
        across = torch.exp(-0.5 * torch.square(torch.square(dx / (1.7 * self.mw))))
        # The chin drops as the lower lip does at the mouth's middle (the jaw's share of the opening); while the lips
        # are still sealed (a jaw barely open) it follows them more than the jaw: the soft tissue takes the first
        # of the jaw's motion.
        jaw = (1.0 - UPPER_SHARE) * o.jaw
        chin = (o.drop + (jaw - o.drop) * smoothstep(0.0, 2.0 * SEAL * self.mw, o.jaw)) * across
        band = o.lower + self.lip_thick * torch.sqrt(torch.clamp(1.0 - torch.square(o.u), min=0.0))
        span = torch.clamp(self.chin_y - band, min=0.3 * self.mw)
        neck_top = band + span  # the chin (lower, where the lip is close above it)
        # Source rows: the lip band, down to `band`, drops by o.drop; the skin from it to the chin eases from that to
        # the chin's drop, and the neck under the chin from that to nothing, each along a smoothstep. The map back
        # from output rows is solved on each piece (monotone: the neck is long enough), from where a straight
        # line would put the row: a few Newton steps.
        lip_rows = qy - o.drop
        skin = qy <= neck_top + chin
        top = torch.where(skin, band, neck_top)
        rows = _solve_ease(qy - torch.where(skin, o.drop, chin) - top, torch.where(skin, span, self.neck),
                           torch.where(skin, chin - o.drop, -chin)) + top
        return torch.where(lip_rows <= band, lip_rows, rows)

    # ---- the interior ---------------------------------------------------------------------------------
    def interior(self, c: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor,
                 edge: float = EDGE_PX) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, h, w) colour and (N, 1, h, w) alpha of the mouth's inside at these points; `edge`: how
        soft its edges are (pixels). Back to front: cavity, tongue, lower teeth, upper teeth, then the lips'
        shade over all; a slit too thin to see into shows the lips' own dark seam."""
        o = self.opening(c, qx)
        # Coverage of each pixel by the opening, smoothed by `edge`: a slit thinner than a pixel keeps its area
        # in every column instead of breaking into dots along a slanted lip line.
        alpha = torch.sigmoid((qy - o.top) / edge) - torch.sigmoid((qy - o.bottom) / edge)
        alpha = torch.clamp(alpha, min=0.0) * torch.clamp(o.jaw / 1.5, 0.0, 1.0)
        # The box is sized for a jaw open to the full: the layers are drawn only over the rows and columns
        # that some frame of the batch opens (speech is mostly small openings; silence none).
        # Under torch.compile the crop would break the graph and recompile it per size; an export's trace keeps it
        # (its ONNX graph has always held the crop), hence is_compiling alone, not capturing_graph().
        if torch.compiler.is_compiling():
            return self._layers(o, qx, qy, edge), alpha[:, None]
        seen = alpha > 1.0 / 1024
        rows, cols = torch.nonzero(seen.any(dim=2).any(dim=0)), torch.nonzero(seen.any(dim=1).any(dim=0))
        rgb = torch.zeros((qx.shape[0], 3, *qx.shape[1:]), dtype=qx.dtype)
        if len(rows) == 0:
            return rgb, alpha[:, None]
        window = (..., slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))

        def crop(t: torch.Tensor) -> torch.Tensor:
            return t if t.shape[-1] == 1 and t.shape[-2] == 1 else t[window]

        o = Opening(*(crop(getattr(o, f.name)) for f in fields(Opening)))
        rgb[window] = self._layers(o, crop(qx), crop(qy), edge)
        return rgb, alpha[:, None]

    def _layers(self, o: Opening, qx: torch.Tensor, qy: torch.Tensor, edge: float) -> torch.Tensor:
        """The interior's colour (N, 3, h, w) where the opening `o` is, layer by layer."""
        mw, hw, p = self.mw, o.side_hw, self.palette
        gap = torch.clamp(o.bottom - o.top, min=0.0)
        aue = o.ue.abs()
        corner = torch.clamp(1.0 - o.ue * o.ue, min=0.0)
        below_top, above_bottom = qy - o.top, o.bottom - qy
        # Cavity: the inner mouth's red, lit near the lips, dark only deep in, toward the throat.
        depth = torch.minimum(torch.minimum(below_top, above_bottom), (1.0 - aue) * hw * 0.6)
        deep = torch.exp(-torch.clamp(depth, min=0.0) / (0.12 * mw))
        # (The throat's dark stays red, deeper than the inner mouth's: a dark grey there reads olive beside pink lips.)
        rgb = p["inner"] * (0.4 * deep)[:, None] + p["throat"] * 0.15
        # Teeth in shade take the mouth's warm dark, not grey: light inside has passed through red.
        dark = p["inner"] * 0.3
        # Tongue: a hump on the mouth's floor behind the lower teeth, rising with the opening; lit at its front
        # (low), receding into the dark at its top, a faint groove down its middle.
        height = 0.32 * gap * torch.sqrt(torch.clamp(1.0 - torch.square(o.ue / 0.85), min=0.0))
        top = o.bottom - height
        on = torch.sigmoid((qy - top) / max(edge, 0.015 * mw))[:, None]
        down = torch.clamp((qy - top) / torch.clamp(height, min=1.0), 0.0, 1.0)
        groove = 1.0 - 0.07 * torch.exp(-torch.square(o.ue * (hw / (0.1 * mw))))
        # (Its light grows over its whole height: a rounded back, not a lit band with an edge across the mouth.)
        tone = (0.25 + 0.6 * down * (2.0 - down)) * (0.6 + 0.4 * corner) * groove
        rgb = rgb + (p["tongue"] * tone[:, None] - rgb) * on
        # Lower incisors: behind the lower lip, moving with the jaw, shown more as it opens.
        show = torch.clamp(o.jaw / (0.45 * mw) - 0.15, 0.0, 1.0)
        height = 0.1 * mw * show * torch.clamp(1.0 - torch.square(o.ue / 0.6), min=0.0)
        frac, width = tooth_pattern(aue, hw, LOWER_INCISOR_W, LOWER_RATIO)
        notch, seam, convex = tooth_marks(frac, width, edge)
        lower = (torch.sigmoid((qy - (o.bottom - height + 0.06 * width * notch)) / (0.6 * edge))
                 * smoothstep(1.5, 3.5, height))  # a sliver of a pixel or two reads as an outline
        tone = 0.9 * (1.0 - 0.35 * smoothstep(0.1, 0.55, aue)) * convex * (1.0 - 0.2 * seam)
        rgb = rgb + (dark + (p["teeth"] - dark) * tone[:, None] - rgb) * lower[:, None]
        # Upper teeth: fixed to the head, from the gum (under the upper lip) to their edge a little below the
        # rest lip line; each tooth a little rounded (brighter mid-tooth, its corners notched at the edge,
        # a faint gap to its neighbour, clearer toward the edge); the arch darker as it turns away.
        on_teeth = torch.zeros_like(qy)
        if self.photo is None:
            u2 = o.um * o.um
            frac, width = tooth_pattern(o.um.abs(), hw, INCISOR_W, TOOTH_RATIO)
            notch, seam, convex = tooth_marks(frac, width, edge)
            incisal = o.upper + TEETH_SHOW * mw * (1.0 - 0.45 * u2) - 0.07 * width * notch
            on_teeth = torch.sigmoid((incisal - qy) / (0.6 * edge)) * (1.0 - smoothstep(0.8, 1.0, o.um.abs()))
            near_edge = smoothstep(incisal - 0.08 * mw, incisal, qy)
            tone = ((1.0 - 0.5 * smoothstep(0.2, 0.85, o.um.abs())) * convex * (1.0 - (0.08 + 0.25 * near_edge) * seam)
                    * (1.0 - 0.1 * smoothstep(incisal - 0.04 * mw, incisal, qy)))
            colour = dark + (p["teeth"] - dark) * tone[:, None]
            gum = torch.sigmoid((o.upper - GUM * mw * (1.0 - 0.3 * u2) - qy) / edge)[:, None]
            colour = colour + (p["inner"] * 0.7 - colour) * gum
            rgb = rgb + (colour - rgb) * on_teeth[:, None]
        # The upper lip's shadow (less on the teeth, which stand forward), the lower lip's rim, the corners.
        lip_shadow = 1.0 - (0.4 - 0.2 * on_teeth) * (1.0 - smoothstep(0.0, 0.04 * mw + edge, below_top))
        rim = 0.85 + 0.15 * smoothstep(0.0, 0.03 * mw + edge, above_bottom)
        side = 1.0 + self.light_slope * torch.clamp(o.u, -1.0, 1.0)
        rgb = rgb * (lip_shadow * rim * side * (0.4 + 0.6 * torch.sqrt(corner)))[:, None]
        # A slit too thin to see into: the lips' own dark seam.
        opened = smoothstep(0.04 * mw, 0.12 * mw, gap)[:, None]
        if self.photo is not None:  # lit as the photo was; only the lip's shadow over a narrow opening is new
            rgb = self._photo_teeth(qx, qy, rgb, edge, o, opened)
        # Little light gets into a narrow opening: teeth and all are in the lips' shade until the mouth opens
        # wider, so the inside brightens with the gap instead of a lit band of teeth appearing at once.
        # (Warmer as it dims: what light gets in has passed through the lips and the mouth's red; a grey dim
        # reads as olive teeth.)
        lit = (NARROW_DIM + (1.0 - NARROW_DIM) * smoothstep(0.04 * mw, NARROW_LIT * mw, gap))[:, None]
        warm = 0.5 * (1.0 + p["inner"] / torch.clamp(p["inner"].amax(dim=1, keepdim=True), min=1e-3))
        rgb = rgb * lit * (1.0 + (1.0 - lit) * (warm - 1.0))
        seam_rgb = p["lip"] * 0.42
        return torch.clamp(seam_rgb + (rgb - seam_rgb) * opened, 0.0, 1.0)

    def _photo_teeth(self, qx: torch.Tensor, qy: torch.Tensor, rgb: torch.Tensor, edge: float, o: Opening,
                     opened: torch.Tensor) -> torch.Tensor:
        """Where the photo showed upper teeth, its own pixels, at their place on the head: uncovered, not
        stretched. Above the photo's lip line (a lip lifted further) its top row goes on up, into the gum's
        shade; below its upper teeth (`teeth_split`) the drawn interior moves with the jaw."""
        assert self.photo is not None
        up, lo = self.photo_lines
        u = (qx - up.cx) / up.half_w
        top, bottom = up.y(u), lo.y(u)
        split = top + self.teeth_split * (bottom - top)
        w = (torch.sigmoid((split - qy) / edge) * (1.0 - smoothstep(0.85, 1.0, u.abs())))[:, None] * opened
        above = torch.clamp((top + 1.0 - qy) / (0.08 * self.mw), 0.0, 1.0)[:, None]
        shade = (1.0 - 0.25 * (1.0 - smoothstep(0.0, 0.04 * self.mw + edge, qy - o.top)))[:, None]
        sy = torch.maximum(qy, top + 1.0)
        h, wd = self.photo.shape[2:]
        x0, y0 = self.photo_origin
        ix, iy = (qx, sy) if self.frame is None else self.frame.to_image(qx, sy)  # the photo is not turned upright
        gx = (ix + x0) * (2.0 / (wd - 1)) - 1.0
        gy = (iy + y0) * (2.0 / (h - 1)) - 1.0
        n = qx.shape[0]
        own = F.grid_sample(self.photo.expand(n, -1, -1, -1), torch.stack([gx, gy], dim=-1), mode="bilinear",
                            padding_mode="border", align_corners=True)
        own = own + (self.palette["inner"] * 0.7 - own) * above  # the gum, under a lip lifted past the photo's
        return rgb + (own * shade - rgb) * w


def _for_frames(keep: torch.Tensor, solve: Callable[..., torch.Tensor], o: Opening, qx: torch.Tensor,
                qy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """solve(o, qx, qy, dx) on the frames where keep (N, 1, 1) holds; the others keep their rows, qy."""
    frames = torch.nonzero(keep.flatten())[:, 0]
    if len(frames) == len(keep):
        return solve(o, qx, qy, dx)
    rows = qy.clone()
    if len(frames):
        cut = Opening(*(t if t.shape[0] == 1 else t[frames] for t in (getattr(o, f.name) for f in fields(o))))
        rows[frames] = solve(cut, qx[frames], qy[frames], dx[frames])
    return rows


def _solve_ease(r: torch.Tensor, length: torch.Tensor, rise: torch.Tensor, steps: int = 2) -> torch.Tensor:
    """The y where y + rise * smoothstep(y / length) = r: before the ease (r <= 0) y = r, past it y = r - rise. The
    left side rises all the way (length + 1.5 rise > 0), so Newton's steps from the straight line's answer
    converge."""
    t = torch.clamp(r / (length + rise), 0.0, 1.0)
    for _ in range(steps):
        g = length * t + rise * (t * t * (3.0 - 2.0 * t)) - r
        t = torch.clamp(t - g / (length + rise * (6.0 * t * (1.0 - t))), 0.0, 1.0)
    return torch.where(r <= 0.0, r, torch.where(r >= length + rise, r - rise, t * length))


def tooth_pattern(au: torch.Tensor, hw: float | torch.Tensor, first: float,
                  ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """For columns at |u| across the arch: where each is along its tooth (0..1, gap to gap) and that tooth's
    width in pixels; the first tooth `first` inner-mouth half-widths wide, each next one `ratio` as wide."""
    x = torch.clamp(au * ((1.0 - ratio) / first), max=0.999)
    s = torch.log1p(-x) * (1.0 / math.log(ratio))
    k = torch.floor(s)
    return s - k, (first * hw) * torch.exp(k * math.log(ratio))


def tooth_marks(frac: torch.Tensor, width: torch.Tensor,
                edge: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(notch, seam, convex) of each tooth: how near its rounded corner (0..1), the faint gap to its
    neighbour (0..1, as soft as the interior's edges: drawn every few pixels, a thinner one would be missed
    by some samples) and its brightness across (mid-tooth brighter); all fade out on teeth a few pixels
    wide, where they would only alias."""
    centred = 2.0 * frac - 1.0
    to_gap = (1.0 - centred.abs()) * 0.5 * width  # pixels
    detail = smoothstep(2.5, 6.0, width)
    notch = detail * torch.exp(-torch.square(to_gap / (0.22 * width)))
    seam = detail * torch.exp(-torch.square(to_gap / max(0.6, 0.85 * edge)))
    return notch, seam, 1.0 - 0.1 * detail * centred * centred


def teeth_split(rgb: np.ndarray, landmarks: np.ndarray) -> float:
    """Where the photo's upper teeth end, as a share of its lips' gap (0 at the upper lip, 1 at the lower): the
    first drop, past the brightest rows, halfway to the dark between the teeth; near the lower lip where the
    teeth fill the gap (a tight smile, or teeth together)."""
    up, lo = inner_lips(landmarks)
    h, w = rgb.shape[:2]
    ts, us = np.linspace(0.0, 1.0, 21), np.linspace(-0.5, 0.5, 15)
    ys = up.y_np(us)[None, :] * (1.0 - ts[:, None]) + lo.y_np(us)[None, :] * ts[:, None]
    xs = np.broadcast_to(up.cx + us * up.half_w, ys.shape)
    px = rgb[np.clip(np.round(ys).astype(int), 0, h - 1), np.clip(np.round(xs).astype(int), 0, w - 1)]
    profile = (px.astype(np.float64) @ LUMA).mean(axis=1) / 255.0
    brightest = int(np.argmax(profile[:12]))
    after = profile[brightest:20]
    high, low = profile[brightest], float(after.min())
    if high - low < 0.2 * high:
        return 0.85
    below = np.flatnonzero(after < 0.5 * (high + low))
    return float(np.clip(ts[brightest + below[0]] - 0.05, 0.3, 0.85))
