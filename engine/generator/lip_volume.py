"""The closed rest's lips, given back their red and their volume (used by rest_pose at prepare time).

A photo that smiles with its teeth shows its lips stretched thin, and closing them (rest_pose) cuts each lip
to its own edge: what is left is a pale line in skin colour, a face without lips. A closed mouth shows both
lips: the upper lip with a cupid's bow and a darker underside where it turns in toward the mouth, the lower
lip fuller, lit on its upper half and casting a shadow on the chin below it. So each lip is repainted as a
band from where they meet out to its own outer edge, at least as thick as a closed lip is (THICK_UP,
THICK_LO, in the mouth's half-widths: closed-lipped portraits measure 0.13-0.23 and 0.21-0.42), in the
colour of the photo's own lip pixels (each lip's reddest half, taken where the photo shows it), lit across
as the skin beside the mouth is, with the closed image's own fine texture kept on it. All of it once, at
prepare; nothing per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Each lip at its middle, closed, in mouth half-widths (a smiling mouth stretches them a little thinner than
# the neutral portraits' medians, 0.16 and 0.30).
THICK_UP, THICK_LO = 0.15, 0.25
# The upper lip's edge dips this much at the philtrum and rises this much on either side (the cupid's bow).
BOW_DIP, BOW_PEAK = 0.3, 0.12
# How much of each lip is the painted colour (the rest stays the photo's pixels under it).
STRENGTH = 0.8
# The closed image's own texture kept on the paint: its luma detail finer than this (pixels), clipped.
DETAIL_PX, DETAIL_MAX = 1.0, 0.08
# The shading, as gains on the lip's colour: the upper lip's underside, the lower lip's highlight and the
# shadow it casts on the skin below it.
UNDERSIDE, HIGHLIGHT, CAST = 0.12, 0.1, 0.1
# On a face this small (mouth half-width, pixels) the underside's shade merges with the seam into a dark band a
# few pixels high, which reads as lips apart (to a viewer, and to the face mesh once a codec has halved the
# chroma): it fades in between these widths. So does the lips' own brightness: the paint takes the closed image's
# brightness by LUMA_SHARE's first share on the small face, its second on a larger one (anne_helene, a mouth 19 px
# half-wide, read as lips apart in 2-91% of silent frames with the lips' own darker red at full strength).
UNDERSIDE_MW = (18.0, 30.0)
LUMA_SHARE = (0.5, 0.9)
RIDGE = 0.05  # the skin's lit rim along the upper lip's edge (the "white roll" that draws the cupid's bow)
# Where each lip's colour is sampled: this share of the way from its outer edge to the mesh's inner contour.
SAMPLE = (0.2, 0.6)
# Lips this much less red ((R - G) / (R + G + B)) than the skin around them are painted: natural lips are 0.01
# (shenk) to 0.11 (maher) redder than it on the test portraits, face_paint_blue_lips' upper lip 0.34 less red.
PAINTED_REDNESS_DROP = 0.1
UPPER_SHADE = 0.85  # the upper lip faces down, away from the light: at least this bright beside the lower one
LUMA = np.array([0.299, 0.587, 0.114])


def _smoothstep(e0: float | np.ndarray, e1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / np.maximum(np.asarray(e1 - e0, np.float64), 1e-6), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30.0, 30.0)))


@dataclass(frozen=True)
class LipColours:
    """Each lip's own colour (0..255 RGB) and the light across the mouth, from the photo."""

    upper: np.ndarray
    lower: np.ndarray
    light_x: np.ndarray  # columns (face frame) ...
    light: np.ndarray  # ... and the light's gain there (1 at the mouth's middle)


def _hue(rgb: np.ndarray) -> np.ndarray:
    """Chromaticity (r, g, b over their sum) of rgb (..., 3)."""
    return rgb / np.maximum(rgb.sum(axis=-1, keepdims=True), 1.0)


def _redness(rgb: np.ndarray) -> np.ndarray:
    """(R - G) / (R + G + B) of rgb (3, ...)."""
    return (rgb[0] - rgb[1]) / np.maximum(rgb.sum(axis=0), 1.0)


def lip_colours(upright: np.ndarray, cols: np.ndarray, inner_up: np.ndarray, inner_lo: np.ndarray,
                outer_up: np.ndarray, outer_lo: np.ndarray, mid: float, hw: float, mw: float) -> LipColours | None:
    """The photo's lip colours, sampled on the photo turned upright: for each lip, the pixels of the outer part
    of its band (SAMPLE: the part toward the mouth may be the dark rim or the teeth), the reddest 60% of them
    (skin at the edge is not the lip's colour; on painted lips the most paint-like), and of the upper lip's the
    lit half (a lip painted in the shade of the rim over the teeth reads as a dark band: lips apart); None where
    neither lip shows a pixel."""
    h, w = upright.shape[:2]
    img = upright.astype(np.float64)
    central = np.abs(cols - mid) <= 0.6 * hw
    xs = np.clip(np.round(cols).astype(int), 0, w - 1)
    skin_px = [img[np.clip(np.round(edge + step * 0.2 * mw).astype(int), 0, h - 1), xs]
               for edge, step in ((outer_up, -1.0), (outer_lo, 1.0))]
    skin_rgb = np.median(np.concatenate([p[central] for p in skin_px]), axis=0)
    bands = []
    for outer, inner in ((outer_up, inner_up), (outer_lo, inner_lo)):
        px = []
        for x, yo, yi in zip(cols[central], outer[central], inner[central], strict=True):
            a, b = sorted((yo + SAMPLE[0] * (yi - yo), yo + SAMPLE[1] * (yi - yo)))
            ys = np.arange(int(np.ceil(a)), int(np.floor(b)) + 1)
            ys = ys[(ys >= 0) & (ys < h)]
            if 0 <= x < w and len(ys):
                px.append(img[ys, round(float(x))])
        bands.append(np.concatenate(px) if px else np.zeros((0, 3)))
    shown = [b for b in bands if len(b) >= 6]
    # Painted lips (blue face paint) are far less red than the skin around them: their most paint-like pixels
    # stand for them instead, the furthest in hue (lightness left out: a lower band may hold the shadow under
    # the lip) from the skin the way the least red lip's median hue lies.
    least_red = min(shown, key=lambda b: float(np.median(_redness(b.T))), default=None)
    painted = least_red is not None and \
        float(np.median(_redness(least_red.T))) < _redness(skin_rgb) - PAINTED_REDNESS_DROP
    if painted:
        direction = np.median(_hue(least_red), axis=0) - _hue(skin_rgb)
        direction /= max(float(np.linalg.norm(direction)), 1e-6)
    picked = []
    for px_all in bands:
        if len(px_all) < 6:
            picked.append(None)
            continue
        likeness = (_hue(px_all) - _hue(skin_rgb)) @ direction if painted else _redness(px_all.T)
        red = px_all[likeness >= np.quantile(likeness, 0.4)]
        if not picked:  # the upper lip: the lit half of those (the rest is the rim's shade over the teeth)
            red = red[red @ LUMA >= np.median(red @ LUMA)]
        picked.append(np.median(red, axis=0))
    if picked[0] is None and picked[1] is None:
        return None
    upper = picked[0] if picked[0] is not None else picked[1] * UPPER_SHADE
    lower = picked[1] if picked[1] is not None else picked[0] / UPPER_SHADE
    # A stretched upper lip's samples still hold some of the rim's shadow: it is never darker than that.
    upper = upper * max(1.0, UPPER_SHADE * float(lower @ LUMA) / max(float(upper @ LUMA), 1.0))
    # The light across the mouth, from the skin just above the upper lip and below the lower one.
    luma = np.mean([p @ LUMA for p in skin_px], axis=0)
    k = max(2, int(0.15 * mw))
    luma = np.array([np.median(luma[max(0, i - k) : i + k + 1]) for i in range(len(luma))])
    at_mid = float(np.interp(mid, cols, luma))
    light = np.clip(luma / max(at_mid, 1.0), 0.8, 1.2)
    return LipColours(np.asarray(upper, np.float64), np.asarray(lower, np.float64), cols, light)


def bow(u: np.ndarray) -> np.ndarray:
    """The upper lip's thickness across the mouth (u: -1..1 corner to corner, 0 at the philtrum), 1 at most."""
    taper = np.clip(1.0 - u * u, 0.0, 1.0) ** 0.6
    peaks = np.exp(-np.square((np.abs(u) - 0.3) / 0.15))
    return taper * (1.0 - BOW_DIP * np.exp(-np.square(u / 0.1)) + BOW_PEAK * peaks)


def fullness(u: np.ndarray) -> np.ndarray:
    """The lower lip's thickness across the mouth, 1 at the middle: rounder than the upper one."""
    return np.clip(1.0 - u * u, 0.0, 1.0) ** 0.5


def paint(region: np.ndarray, U: np.ndarray, V: np.ndarray, meet: np.ndarray, top: np.ndarray, bottom: np.ndarray,
          u: np.ndarray, colours: LipColours, mw: float) -> np.ndarray:
    """The lips painted over `region` (float RGB, 0..255) at face-frame columns U and rows V: the upper lip from
    `top` down to `meet`, the lower from `meet` to `bottom` (per pixel, already at least a closed lip's
    thickness), u across the mouth (-1..1 corner to corner)."""
    soft = max(0.5, 0.022 * mw)
    t_up, t_lo = np.maximum(meet - top, 1e-3), np.maximum(bottom - meet, 1e-3)
    in_up = _sigmoid((V - top) / soft) * _sigmoid((meet - V) / (0.5 * soft))
    in_lo = _sigmoid((bottom - V) / soft) * _sigmoid((V - meet) / (0.5 * soft))
    v_up = np.clip((meet - V) / t_up, 0.0, 1.0)  # 0 where the lips meet, 1 at the lip's outer edge
    v_lo = np.clip((V - meet) / t_lo, 0.0, 1.0)
    centre = np.exp(-np.square(u / 0.5))
    # Nothing past the mouth's corners (its lines there are the contours' flat extensions).
    inside = (1.0 - _smoothstep(0.92, 1.04, np.abs(u)))
    in_up, in_lo = in_up * inside, in_lo * inside
    # The upper lip turns in toward the mouth, away from the light: darker over the half nearest the lower lip.
    size = float(_smoothstep(*UNDERSIDE_MW, np.array(mw)))
    underside = UNDERSIDE * size
    shade_up = 1.0 - underside * (1.0 - _smoothstep(0.0, 0.45, v_up))
    # The lower lip's upper half faces the light (its highlight, at the middle), its lowest part turns under.
    shade_lo = ((1.0 - 0.25 * underside * (1.0 - _smoothstep(0.0, 0.2, v_lo)))
                * (1.0 + HIGHLIGHT * (0.5 + 0.5 * size) * centre * np.exp(-np.square((v_lo - 0.55) / 0.25)))
                * (1.0 - 0.06 * _smoothstep(0.7, 1.0, v_lo)))
    # The corners, where the lips fold in, darker.
    corner = 1.0 - 0.15 * _smoothstep(0.6, 1.0, np.abs(u))
    light = np.interp(U, colours.light_x, colours.light)[..., None]
    luma = region @ LUMA
    detail = np.clip(luma / np.maximum(_blur(luma, DETAIL_PX), 1.0) - 1.0, -DETAIL_MAX, DETAIL_MAX)
    texture = (1.0 + detail)[..., None]
    share = LUMA_SHARE[0] + (LUMA_SHARE[1] - LUMA_SHARE[0]) * size
    upper, lower = (_keep_luma(colour * (shade * corner)[..., None] * light * texture, region, shade * corner, share)
                    for colour, shade in ((colours.upper, shade_up), (colours.lower, shade_lo)))
    a_up, a_lo = (STRENGTH * in_up)[..., None], (STRENGTH * in_lo)[..., None]
    out = region + (upper - region) * a_up
    out = out + (lower - out) * a_lo
    # The lower lip's shadow on the skin below it, strongest under its middle; the lit rim above the upper lip.
    below, above = V - bottom, top - V
    cast = CAST * centre * np.exp(-np.square((below - 0.05 * mw) / (0.07 * mw))) * _smoothstep(-soft, soft, below)
    ridge = RIDGE * inside * np.exp(-np.square((above - soft) / soft)) * (1.0 - np.abs(np.clip(u, -1.0, 1.0)))
    return out * ((1.0 - cast) * (1.0 + ridge))[..., None]


def _keep_luma(paint: np.ndarray, region: np.ndarray, shade: np.ndarray, share: float) -> np.ndarray:
    """The paint's colour at a brightness between the closed image's, shaded (0) and its own (1)."""
    own, under = paint @ LUMA, (region @ LUMA) * shade
    target = under + share * (own - under)
    return paint * (target / np.maximum(own, 1.0))[..., None]


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(a.astype(np.float32), (0, 0), sigma).astype(np.float64)
