"""The closed lid's look, measured once at prepare time: its skin's colour (`lid_colour`), its lashes and the light
across it (`lid_look`), a glasses' rim lying across it (`rim_layer`), and its skin filled in over the open eye
(`lid_fill`). `measure_lids` puts them on the rig; `eyes.paint_lid` draws them each frame."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import torch

from engine.generator.eyes import (
    BROW_LOWER,
    CORNER_DARK,
    EDGE_LUMA_PER_PX,
    FILL_OUTER,
    LASH_SLANT,
    LID_TONE,
    SKIN_ABOVE,
    LidLook,
    RimLayer,
    band_top,
    lid_reach,
)
from engine.generator.lid_texture import NEAREST, clean_tiles, quilt, skin_detail, tile_px
from engine.generator.rig import Eye, FaceFrame, RigGeometry, lid_curve

LIFT_TO_BELOW = 0.35  # at most this share of the way from the skin above the eye to the brighter skin below
# The closed lid's skin at most this light against the skin all around the eye (`_skin_around`)
LID_OF_AROUND = 1.2
LASH_OF_SKIN, LASH_SOFT = 0.45, 0.6  # the lash line at most this light against the lid's skin (see lid_look)
# A glasses' rim (`rim_layer`): chroma below this (0..255), lightness within these shares of the skin's, at
# least this many eye half-widths long; sampled every RIM_STEP pixels.
RIM_CHROMA, RIM_LUMA, RIM_SPAN, RIM_STEP = 25.0, (0.3, 0.85), 0.8, 0.5
FOLD_BACK, FOLD_MIN = 12.0, 0.45  # luma levels / share of the brightest skin above the eye: see fold_above
# The closed lid's filled skin (`lid_fill`): its soft top edge above the crease's shadow and its reach under the
# lower lid (eye half-widths, at least 1.5 px), how far it reaches across (half-widths from the eye's middle:
# past the corners' lashes), and the photo's pixels it keeps (luma against the lid's skin's: skin).
FILL_MARGIN, FILL_SIDE, KNOWN_SKIN = 0.08, 1.3, (0.7, 1.4)
# The closed lid's skin reaches at least FILL_TO_BROW of the way from its band to the brow, fading in over
# FILL_SOFT half-widths from its top (at least 2 px); a lid in a shadowed socket is lifted LIFT_MAX at most; its
# body is LID_MIX lid_colour's skin.
FILL_TO_BROW, FILL_SOFT, LIFT_MAX, LID_MIX = 0.5, 0.2, 1.6, 0.5
# A lid in a socket's shadow (`_SkinRefs.shade`) reaches up to SOCKET_TO_BROW of the way to the brow: lifted into the
# light, it meets the brow's shadow in a penumbra as much taller as its top is raised (`_match_around`'s shadow_px).
SOCKET_TO_BROW = 0.8
EDGE_RUN = 0.15  # half-widths: an edge over the lid narrower than this is no rim's
# Above the band, the fill takes in what is darker by CREASE_DEPTH (and 4 levels) than the brightest skin within
# CREASE_REACH half-widths: a crease or an outline is a thin dark line, a socket's shadow a wide one.
CREASE_DEPTH, CREASE_REACH = 0.08, 0.2
# The filled lid's grain (`lid_texture`): the fine light and shade under GRAIN_SIGMA half-widths (GRAIN_MIN_PX at
# least), copied in tiles GRAIN_TILE half-widths (at least 5 px) square from the clean skin around the eye, within
# GRAIN_AROUND half-widths of the fill's window.
GRAIN_SIGMA, GRAIN_MIN_PX, GRAIN_TILE, GRAIN_AROUND = 0.12, 1.2, 0.4, 0.6
# The lid's own skin is the thinnest of the face, with the finest lines: GRAIN_GAIN times the grain around it.
GRAIN_GAIN = 1.5
GRAIN_SKIN = (0.45, 1.6)  # the skin whose grain is taken: luma against the lid's skin's (wider than KNOWN_SKIN's)
# See lid_fill: a lid in a socket's shadow (darker than SOCKET_DARK below the skin around the eye: all of it) is lifted
# toward the skin under the eye, from BELOW_FROM of the way up its crease to BELOW_AT of the way down the lid.
BELOW_LIFT, BELOW_FROM, BELOW_AT, SOCKET_DARK = 0.35, 0.6, 0.9, 0.1
RING_WIDE, WRINKLED_GREY = 0.3, 0.6  # see _as_saturated_as_around
TEXTURED = 0.91  # see _textured: 0.92-0.95 on hopper (and hopper_tall_exif6), 0.90 at most on the other portraits
SAT_RANGE = (0.75, 1.3)  # see lid_fill: the lid's saturation brought to the skin's under the eye, within this ratio
LOW_SKIP = 0.3  # half-widths under the lower lid that the fill leaves out of the skin it takes
# The fill's broad tone (`_match_around`): the skin's in a ring RING half-widths wide (2 px at least) right around the
# fill, over TONE_SIGMA half-widths (a pixel at least); ring pixels whose luma is off the ring's own by more than
# RING_SKIN are lashes, brow hairs, a rim or a glint. Its sides fade out over SIDE_SOFT half-widths.
TONE_SIGMA, RING, RING_SKIN, SIDE_SOFT = 0.15, 0.12, (0.8, 1.25), 0.25
# The ring carried in ANISO times further down the lid than along it; ring pixels darker than RING_LOW of the brightest
# skin within ENVELOPE half-widths (brow hairs, a lash's flick, a deep crease) and those within CORNER_SKIP half-widths
# of the closed line or beside the eye itself (the corners' shadows, lashes, liner) are left out of it.
ANISO, RING_LOW, ENVELOPE, CORNER_SKIP = 2.0, 0.6, 0.3, 0.5
# The lid's body tone (lid_fill's, blurred over BODY_SMOOTH half-widths) comes in where lighter than the ring, over
# DEPTH half-widths from the outline, or over SHADOW_PX pixels (SHADOW half-widths at least) where it is SHADOW_RATIO
# times lighter or more (a cast shadow's edge); as saturated as the ring, within SAT_MATCH.
DEPTH, SHADOW, SHADOW_PX, SHADOW_RATIO, BODY_SMOOTH = 0.7, 0.25, 5.0, 1.5, 0.25
SAT_MATCH = (0.85, 1.15)
DETAIL_SIGMA, DETAIL_MAX = 0.06, 0.12  # half-widths (0.7 px at least); a share of the lightness: see _match_around
# See _meet_outline: the photo's skin right around the fill, smoothed over OUTLINE_SIGMA half-widths, carried in over
# OUTLINE_FADE half-widths or as many more as keep it under OUTLINE_SLOPE levels per pixel (OUTLINE_MAX at most); what
# is darker than RING_LOW of it closed over HAIR_PX half-widths is a hair or a lash.
OUTLINE_SIGMA, OUTLINE_FADE, OUTLINE_SLOPE, OUTLINE_MAX, HAIR_PX = 0.05, 0.4, 4.0, 1.0, 0.12
LIFTED, OUTLINE_ANISO = 0.15, 5.0  # see _meet_outline
FILL_BLEND = 0.12  # half-widths (at least a pixel): the fill blends into the photo beside the hole over this
# How skin's colour follows its lightness: each channel as luma ** SKIN_SHADE (least squares in logs over the clean skin
# around the eyes of the astronaut and tests/data/portraits' luispedro, hopper, darker_skin_frontal,
# beard_smile_darker_skin and henner_glasses: red 0.53-0.87, green 1.03-1.26, blue 1.17-1.75).
SKIN_SHADE = (0.75, 1.1, 1.5)
LUMA_F32 = np.array([0.299, 0.587, 0.114], np.float32)  # luma's weights (`lid_fill` works in float32)



def lid_colour(rgb: np.ndarray, eye: Eye, frame: FaceFrame) -> tuple[float, float, float]:
    """The closed lid's skin colour (RGB 0..1): the skin between the upper lid and the brow, over the eye's
    middle, leaving out what is darker (lashes, the fold's shadow, a rim, the brow) or brighter (a glint,
    a lens's reflection) than most of it. Where the skin under the eye is lit brighter (a deep socket under
    a brow's shadow, a face turned from the light), a part of the way toward it: a closed lid bulges out of
    the socket over the eyeball, into the light (a lid as dark as the shadowed brow skin reads as a smudge)."""
    us = np.linspace(-0.7, 0.7, 15)
    top = lid_curve(eye, us, eye.upper)
    span = max(float(np.median(top)) - eye.y_brow, 2.0)
    xs = (eye.cx + us * eye.half_w)[None]
    above = _skin_tone(_sample(rgb, frame, *np.broadcast_arrays(xs, top - np.linspace(0.15, 1.0, 18)[:, None] * span)))
    bottom = lid_curve(eye, us, eye.lower)
    below = _skin_tone(_sample(rgb, frame, *np.broadcast_arrays(
        xs, bottom + np.linspace(0.25, 0.6, 10)[:, None] * eye.half_w)))
    luma = np.array([0.299, 0.587, 0.114])
    la, lb = float(above @ luma), float(below @ luma)
    w = LIFT_TO_BELOW * float(np.clip((lb - la) / max(0.25 * lb, 1.0), 0.0, 1.0))
    skin = (1.0 - w) * above + w * below
    around = _skin_around(rgb, eye, frame, top, bottom, span)
    light, cap = float(skin @ luma), LID_OF_AROUND * float(around @ luma)
    if light > cap:  # a brow bone's or a cheek's shine (a back-lit face): the lid takes the skin around it
        mix = float(np.clip((light / cap - 1.0) / 0.2, 0.0, 1.0))
        hue = (1.0 - mix) * skin / max(light, 1.0) + mix * around / max(float(around @ luma), 1.0)
        skin = hue * cap
    return tuple(float(v) for v in np.clip(skin * LID_TONE / 255.0, 0.0, 1.0))  # type: ignore


def _skin_around(rgb: np.ndarray, eye: Eye, frame: FaceFrame, top: np.ndarray, bottom: np.ndarray,
                 span: float) -> np.ndarray:
    """The skin all around the eye (RGB 0..255): between the lid and the brow (its lower part, under the brow
    bone), under the eye and beside its corners, as the median of its middle tones: one shine (the brow
    bone's, a cheek's, a back light's) or one shadow does not set it."""
    us = np.linspace(-0.7, 0.7, 15)
    xs = (eye.cx + us * eye.half_w)[None]
    side_x = eye.cx + np.concatenate([-np.linspace(1.15, 1.5, 6), np.linspace(1.15, 1.5, 6)]) * eye.half_w
    mid_y = 0.5 * (eye.y_c0 + eye.y_c1) + np.linspace(-0.3, 0.3, 7)[:, None] * eye.half_w
    px = np.concatenate([
        _sample(rgb, frame, *np.broadcast_arrays(xs, top - np.linspace(0.15, 0.6, 10)[:, None] * span)).reshape(-1, 3),
        _sample(rgb, frame, *np.broadcast_arrays(xs, bottom + np.linspace(0.25, 0.6, 10)[:, None] * eye.half_w)
                ).reshape(-1, 3),
        _sample(rgb, frame, *np.broadcast_arrays(side_x[None], mid_y)).reshape(-1, 3)])
    luma = px @ np.array([0.299, 0.587, 0.114])
    lo, hi = np.percentile(luma, (30, 70))
    tones = (luma >= lo) & (luma <= hi)
    return np.median(px[tones] / np.maximum(luma[tones, None], 1.0), axis=0) * float(np.median(luma))


def _skin_tone(px: np.ndarray) -> np.ndarray:
    """The colour (RGB 0..255) of the skin in samples px (..., 3): its lightness from the brighter skin (a
    fold's shadow, lashes, a brow or a rim pull a median down; a glint is left out), its hue from all of its
    middle tones (the brightest skin is the least saturated: the light's own colour)."""
    px = px.reshape(-1, 3)
    luma = px @ np.array([0.299, 0.587, 0.114])
    lo, mid, hi = np.percentile(luma, (40, 60, 93))
    light = float(np.median(luma[(luma >= mid) & (luma <= hi)]))
    tones = (luma >= lo) & (luma <= hi)
    return np.median(px[tones] / np.maximum(luma[tones, None], 1.0), axis=0) * light


def lid_look(rgb: np.ndarray, eye: Eye, frame: FaceFrame, outer: float, skin: tuple[float, float, float],
             brow_lower: np.ndarray | None = None) -> LidLook:
    """The closed lid's lashes and light, measured on the photo: the lashes' colour, the darkest tenth of the
    upper lid's margin (lighter ones toward LASH_OF_SKIN of the skin: light or sparse lashes still draw a line);
    the light across the lid: the skin between lid and brow, its brighter part column by column, fitted by
    a quadratic in u over the eye's width and made relative to its middle."""
    us = np.linspace(-0.8, 0.8, 17)
    top = lid_curve(eye, us, eye.upper)
    h = np.maximum(lid_curve(eye, us, eye.lower) - top, 1.0)
    band = np.linspace(-0.25, 0.1, 8)[:, None] * h[None] + np.linspace(-1.0, 0.0, 8)[:, None]
    fx, fy = np.broadcast_arrays((eye.cx + us * eye.half_w)[None], top[None] + band)
    margin = _sample(rgb, frame, fx, fy).reshape(-1, 3)
    luma = margin @ np.array([0.299, 0.587, 0.114])
    lash = margin[luma <= np.percentile(luma, 10)].mean(axis=0) / 255.0
    skin_luma = float(np.dot(skin, (0.299, 0.587, 0.114)))
    lash_luma = float(np.dot(lash, (0.299, 0.587, 0.114)))
    # A soft photo's lashes (blurred, behind hair, cast down: lighter than LASH_OF_SKIN of the skin) draw a line
    # only a part (LASH_SOFT) of the way from their own lightness to it: a sharp black one would be the
    # darkest, hardest line in the picture.
    cap = LASH_OF_SKIN * skin_luma
    target = cap + LASH_SOFT * max(lash_luma - cap, 0.0)
    lash = lash * min(1.0, target / max(lash_luma, 1e-3))
    span = max(float(np.median(top)) - eye.y_brow, 2.0)
    cols = np.linspace(-0.95, 0.95, 13)
    ctop = lid_curve(eye, cols, eye.upper)
    rows = np.linspace(0.2, 0.75, 10)[:, None] * span
    fx, fy = np.broadcast_arrays((eye.cx + cols * eye.half_w)[None], ctop[None] - rows)
    above = _sample(rgb, frame, fx, fy) @ np.array([0.299, 0.587, 0.114])
    bright = np.percentile(above, 70, axis=0)
    k = np.polyfit(cols, bright, 2)
    mid = float(np.mean(np.polyval(k, np.linspace(-0.5, 0.5, 11))))
    c2, c1, c0 = (k / max(mid, 1.0)).tolist()
    # The skin above is lit across as the lid is, but is no eyeball: its corners (a temple's highlight, the
    # nose's shadow) may not make the lid's corners brighter than its middle, nor tilt its light by much.
    c1, c2 = float(np.clip(c1, -0.2, 0.2)), min(c2, 0.0)
    fold, along = fold_above(rgb, eye, frame)
    return LidLook(tuple(float(v) for v in np.clip(lash, 0.0, 1.0)), (c0, c1, c2), outer,  # type: ignore[arg-type]
                   fold, frame.roll, rim_layer(rgb, eye, frame, skin, fold), along,
                   lid_fill(rgb, eye, frame, skin, fold, along, brow_lower, outer),
                   outer * LASH_SLANT / max(eye.half_w, 1.0),
                   lash_thickness(rgb, eye, frame, 0.5 * (lash_luma + skin_luma) * 255.0))


def lash_thickness(rgb: np.ndarray, eye: Eye, frame: FaceFrame, threshold: float) -> float:
    """How thick the open eye's upper lash line is in the photo, in pixels over the eye's middle: per column, the
    rows just above the upper lid's contour (and a little below it: the mesh's contour is often the lashes' lower
    edge) darker than `threshold` (luma 0..255), their median."""
    us = np.linspace(-0.5, 0.5, 11)
    top = lid_curve(eye, us, eye.upper)
    h = max(float(np.median(lid_curve(eye, us, eye.lower) - top)), 1.0)
    step = 0.25
    t = np.arange(-0.6 * h, 0.05 * h, step)
    fx, fy = np.broadcast_arrays((eye.cx + us * eye.half_w)[None], top[None] + t[:, None])
    luma = _sample(rgb, frame, fx, fy) @ np.array([0.299, 0.587, 0.114])
    return float(np.median((luma < threshold).sum(axis=0))) * step


def rim_layer(rgb: np.ndarray, eye: Eye, frame: FaceFrame, skin: tuple[float, float, float],
              fold: float) -> RimLayer | None:
    """A glasses' rim where it lies across what a blink moves or paints (the lid's skin, the eye), to be drawn
    back over the lid (`paint_lid`); None where there is none. A rim there: grey (less chroma than the skin's
    and than RIM_CHROMA), between the lashes' and the skin's lightness, in one piece at least RIM_SPAN
    half-widths long that runs out of the eye's region (lashes, an iris, a shadow stay inside it) and reaches
    down into what the blink changes (a rim above it stays anyway, as does a grey brow). Inside the
    eye's opening only what is of the rim's own lightness is kept (a grey iris it touches is not)."""
    du = RIM_STEP / max(eye.half_w, 1.0)  # a rim is a few pixels thick: sampled finer than them, to stay sharp
    us = np.arange(-1.7, 1.7 + du / 2, du)
    top, bottom = lid_curve(eye, us, eye.upper), lid_curve(eye, us, eye.lower)
    bottom = np.maximum(bottom, top)
    stop = band_top(eye, us)
    s0 = -(fold + SKIN_ABOVE + 12.0)
    s1 = float((bottom + 0.3 * eye.half_w - stop).max()) + 4.0
    ss = np.arange(s0, s1 + RIM_STEP / 2, RIM_STEP)
    fx, fy = np.broadcast_arrays((eye.cx + us * eye.half_w)[None], stop[None] + ss[:, None])
    px = _sample(rgb, frame, fx, fy)
    luma, chroma = px @ np.array([0.299, 0.587, 0.114]), px.max(axis=-1) - px.min(axis=-1)
    skin_rgb = np.asarray(skin) * 255.0
    skin_luma, skin_chroma = float(skin_rgb @ np.array([0.299, 0.587, 0.114])), float(np.ptp(skin_rgb))
    grey = (chroma < min(RIM_CHROMA, 0.7 * skin_chroma)) & (luma > RIM_LUMA[0] * skin_luma) & (
        luma < RIM_LUMA[1] * skin_luma)
    inside = ((ss[:, None] > (top - stop)[None] - 1.0) & (ss[:, None] < (bottom - stop)[None] + 1.0)
              & (np.abs(us) < 1.0)[None])
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grey.astype(np.uint8), connectivity=8)
    mask = np.zeros(grey.shape, bool)
    for i in range(1, count):
        x, y, w, hh, _ = stats[i]
        if (w * du < RIM_SPAN or not (x == 0 or y == 0 or x + w == grey.shape[1])
                or ss[y + hh - 1] < -(fold + SKIN_ABOVE + 2.0)):  # all of it above what the blink changes
            continue
        part = labels == i
        outside = part & ~inside
        if outside.sum() < 0.5 * part.sum():
            continue
        m = float(np.median(luma[outside]))
        mask |= outside | (part & inside & (np.abs(luma - m) < 0.15 * m))
    if not mask.any():
        return None
    alpha = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    rgba = np.concatenate([px.astype(np.float32) / 255.0 * alpha[..., None], alpha[..., None]], axis=-1)
    return RimLayer(torch.from_numpy(rgba).permute(2, 0, 1)[None].contiguous(), float(us[0]), float(us[-1]),
                    float(ss[0]), float(ss[-1]))


def lid_fill(rgb: np.ndarray, eye: Eye, frame: FaceFrame, skin: tuple[float, float, float], fold: float,
             along: tuple[float, float, float, float], brow_lower: np.ndarray | None = None,
             outer: float = 1.0) -> RimLayer:
    """The closed lid's skin, over the lid coordinates (`RimLayer`): the photo with the open eye taken out (from
    above its crease's shadow down to under the lower lid's lashes, and a little past its corners) and filled
    in from the skin around it (`membrane`), so the closed lid takes the tone of the skin right above it and
    beside it, part way toward the skin under the eye, with no edge at its top: a lid painted in one colour
    was a patch (dark where the skin above lies in the brow's shadow), and the open eye's crease or outline
    left above it drew the almond of a squinting eye. Skin too dark or too light against the lid's skin
    (KNOWN_SKIN: lashes, the brow, a rim, a glint; in a socket's shadow, lighter than the skin under the eye) is
    filled in as well. Alpha: where the closed lid covers (the crease's shadow and all below it, fading out just
    above it and past the corners).

    In steps: the grid and the photo on it (`_fill_grid`); what is taken out (`_fill_hole`); the skin's tones to
    judge it by (`_skin_refs`); the hole filled in from the clean skin (`membrane`); the lid's body toned
    (`_body_tone`); the whole toned from the skin ring around it (`_match_around`); shaded toward the corners
    (`_shade_corners`); and given the skin's grain (`_fill_grain`). On skin wrinkled all over (`_textured`: hopper's)
    the clean skin is what is not darker than the skin's mean near it (not its brightest: that left a few pale pixels
    by a lens's glints to fill from and take grain from: a flat grey-beige patch), no grey is skin to tone by, and
    the fill is as saturated as the skin around it (`_as_saturated_as_around`)."""
    refs = _skin_refs(rgb, eye, frame, skin)
    g = _fill_grid(rgb, eye, frame, fold, along, brow_lower, outer,
                   FILL_TO_BROW + (SOCKET_TO_BROW - FILL_TO_BROW) * refs.shade)
    hole, dark = _fill_hole(g, eye)
    textured = _textured(hole, dark) or _no_clean_grain(rgb, eye, frame, g, hole, refs)
    if textured:
        dark = _darker_than_around(g.luma, eye, g.step)
    # The fill is drawn from clean skin only (not hair, a rim, a glint, a line darker than the skin beside it);
    # what is neither that nor to be filled in stays as the photo shows it.
    known = ~hole & ~dark & (g.luma > KNOWN_SKIN[0] * refs.ref) & (g.luma < KNOWN_SKIN[1] * refs.lit)
    # Blended in over a few pixels past the hole: the photo beside it may be no clean skin (a corner's shadow),
    # and a fill that met it in one step drew the hole's outline.
    blend = np.clip(2.0 * cv2.GaussianBlur(hole.astype(np.float32), (0, 0), max(1.0, FILL_BLEND * eye.half_w) / g.step),
                    0.0, 1.0)
    filled = g.px + (membrane(g.px, known) - g.px) * blend[..., None]
    body_tone = _body_tone(filled, g, hole, blend, refs, skin)
    # Where it covers: from just above the crease's shadow down, fading out past the corners; a lid raised into a
    # socket's shadow fades in over as much more (g.raised): over the fill's usual few pixels it met the brow's
    # shadow in a crisp edge.
    across = np.abs(g.us)
    alpha = (_ramp(g.s_top - g.m, g.s_top + g.soft + g.raised, g.ss)
             * (1.0 - _ramp(g.side - SIDE_SOFT, g.side + 0.05, across)))
    # At its outline its broad tone is the skin's right around it, carried in, and the body's (above) only deeper in
    # (`_match_around`): toned as a whole, the fill stepped from the skin beside it at its outline and read as a patch
    # of make-up pasted over the eye (a grey one on the astronaut, a dark one in luispedro's socket).
    # The ring's skin is taken above the closed line and beside the lid's skin band (not beside the eye itself: its
    # corners' shadows, lashes and liner, carried in, drew a dark mark at the closed eye's corners).
    corners = (g.ss > g.s_closed - CORNER_SKIP * eye.half_w) | ((g.ss > 0.0) & (across > 1.0))
    filled = _match_around(filled, g.px, alpha, corners, eye.half_w / g.step, body_tone, g.step, textured,
                           SHADOW_PX + g.raised) / 255.0
    if textured:
        filled = _as_saturated_as_around(filled, g, alpha, corners, eye.half_w / g.step)
    filled = _shade_corners(filled, g)
    # Where the skin is made up it takes the grain of the clean skin around it (a smooth fill over a large lid
    # read as a flat patch); the photo's own skin that the fill keeps has its own.
    grain = _fill_grain(rgb, eye, frame, g.us, g.ss[:, 0], g.step, hole, blend > 0.02, refs.ref, refs.lit, textured)
    filled = skin_shaded(filled, 1.0 + grain * blend)
    # Right at its outline over the eye its broad tone is the skin's beside it there, wherever that lies (its sides
    # beside the corners fade out instead: SIDE_SOFT; the skin there is the corners' shadows).
    over = np.broadcast_to(1.0 - _ramp(0.9, 1.1, across), alpha.shape) * ~corners
    filled = _meet_outline(filled * 255.0, g.px, alpha, over, eye.half_w / g.step, eye.half_w, corners) / 255.0
    rgba = np.concatenate([filled, alpha[..., None]], axis=-1).astype(np.float32)
    return RimLayer(torch.from_numpy(rgba).permute(2, 0, 1)[None].contiguous(), float(g.us[0]), float(g.us[-1]),
                    float(g.ss[0, 0]), float(g.ss[-1, 0]))


def _ramp(e0: np.ndarray | float, e1: np.ndarray | float, x: np.ndarray) -> np.ndarray:
    """0 up to e0, 1 from e1, smooth (a smoothstep) between."""
    t = np.clip((x - e0) / np.maximum(e1 - e0, 1e-3), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@dataclasses.dataclass(frozen=True, eq=False)
class _FillGrid:
    """`lid_fill`'s grid over the lid coordinates and the photo on it. Columns: u (eye half-widths across, `us`);
    rows: s (pixels below the lid's skin band's top, `ss`, a column vector), `step` pixels apart. Per column: the band's
    top (`stop`, face frame y), how far the fill reaches across (`side`), where it starts above the band (`s_top`,
    negative: over the crease's shadow, `crease` pixels high), where the lids meet (`s_closed`), the lower lid's end
    (`s_low`); its edges `m` pixels past all that, its top soft over `soft`. `px`: the photo's RGB, `luma` its luma,
    `region`: what the fill may replace; `raised`: how
    many pixels higher than FILL_TO_BROW of the way to the brow its top is taken (a lid in a socket's shadow)."""

    step: float
    us: np.ndarray
    ss: np.ndarray
    side: np.ndarray
    stop: np.ndarray
    crease: np.ndarray
    s_top: np.ndarray
    s_closed: np.ndarray
    s_low: np.ndarray
    m: float
    soft: float
    px: np.ndarray
    luma: np.ndarray
    region: np.ndarray
    raised: float = 0.0


def _fill_grid(rgb: np.ndarray, eye: Eye, frame: FaceFrame, fold: float, along: tuple[float, float, float, float],
               brow_lower: np.ndarray | None, outer: float, to_brow: float = FILL_TO_BROW) -> _FillGrid:
    """The grid `lid_fill` works on, its lines and the photo sampled on it (`_FillGrid`); the fill reaches at least
    to_brow of the way from the lid's band to the brow."""
    step = float(np.clip(eye.half_w / 40.0, 0.5, 1.0))  # pixels: the fill is smooth, its edges a few pixels soft
    du = step / max(eye.half_w, 1.0)
    reach_out = FILL_OUTER - FILL_SIDE
    us = np.arange(-FILL_SIDE - 0.3 - reach_out * (outer < 0), FILL_SIDE + 0.3 + reach_out * (outer > 0) + du / 2, du)
    side = np.where(us * outer > 0, FILL_OUTER, FILL_SIDE)  # how far the fill reaches on each side
    uc = np.clip(us, -1.0, 1.0)
    stop = band_top(eye, us)
    bottom = np.maximum(lid_curve(eye, us, eye.lower), lid_curve(eye, us, eye.upper))
    f0, f1, f2, most = along
    crease = np.clip(f0 + uc * (f1 + uc * f2), fold, max(most, fold)) + SKIN_ABOVE  # its shadow's top, above stop
    m = max(1.5, FILL_MARGIN * eye.half_w)
    # The crease as measured is often short of the open eye's upper outline (a soft crease on darker skin, one
    # that runs higher toward a corner): the lid takes in a share of the way to the brow anyway, short of a
    # strong edge (a glasses' rim, hair), which stays.
    gap = np.maximum(stop - eye.y_brow, 2.0)
    if brow_lower is not None:
        order = np.argsort(brow_lower[:, 0])
        gap = np.maximum(stop - np.interp(eye.cx + uc * eye.half_w, brow_lower[order, 0], brow_lower[order, 1]), 2.0)
    soft = max(2.0, FILL_SOFT * eye.half_w)
    crease = np.minimum(np.maximum(crease + soft, to_brow * gap), _edge_above(rgb, eye, frame, us, stop, gap) - m)
    raised = float(np.median((to_brow - FILL_TO_BROW) * gap[np.abs(us) <= 0.6]))
    # rounded toward the corners: a tall straight side read as the edge of a patch
    crease = crease * np.sqrt(np.clip(1.0 - (np.abs(us) / (side + 0.1)) ** 8, 0.0, 1.0))
    s_top, s_bot = -crease, bottom - stop + m
    s_closed = bottom - 0.12 * (bottom - lid_curve(eye, us, eye.upper)) - stop  # where the lids meet
    s_low = bottom - stop + LOW_SKIP * eye.half_w
    ss = np.arange(float(s_top.min()) - 3.0 * m, float(s_low.max()) + 3.0 * m + step / 2, step)[:, None]
    fx, fy = np.broadcast_arrays((eye.cx + us * eye.half_w)[None], stop[None] + ss)
    px = _sample(rgb, frame, fx, fy).astype(np.float32)
    region = (ss > s_top - m) & (ss < s_bot) & (np.abs(us) < side)
    return _FillGrid(step, us, ss, side, stop, crease, s_top, s_closed, s_low, m, soft, px, px @ LUMA_F32, region,
                     raised)


def _fill_hole(g: _FillGrid, eye: Eye) -> tuple[np.ndarray, np.ndarray]:
    """What `lid_fill` takes out of the photo (the hole) and what is darker than the skin around it (dark)."""
    # Inside the region the skin above the lid's band stays where it is clean; what is darker than the skin
    # around it (the crease, the upper outline, a corner's lashes or liner: thin dark lines) is filled in, as
    # is all of the band and the eye. The skin's level: the brighter skin within a few pixels (a smooth shadow,
    # a socket under the brow, keeps it).
    r = max(2, round(CREASE_REACH * eye.half_w / g.step))
    level = cv2.GaussianBlur(cv2.dilate(g.luma, np.ones((2 * r + 1, 2 * r + 1), np.uint8)), (0, 0), r / 2.0)
    dark = cv2.dilate((g.luma < level * (1.0 - CREASE_DEPTH) - 4.0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    # Under the eye, the lower lid (its margin, lashes, the shadow or redness just under them) is no skin to
    # take either: the cheek's skin below it is, as far as it is clean.
    hole = (g.region & dark) | ((g.ss > 0.0) & (g.ss < g.s_low) & (np.abs(g.us) < 1.0))
    return hole, dark


def _textured(hole: np.ndarray, dark: np.ndarray) -> bool:
    """Whether the skin around the eye is wrinkled all over (hopper's): TEXTURED of what the fill keeps is darker
    than the brightest skin near it (`_fill_hole`'s dark), so its lines are the skin's own grain, not an outline."""
    keep = ~hole
    return bool(keep.any()) and float((dark & keep).sum()) / float(keep.sum()) > TEXTURED


def _no_clean_grain(rgb: np.ndarray, eye: Eye, frame: FaceFrame, g: _FillGrid, hole: np.ndarray,
                    refs: _SkinRefs) -> bool:
    """Whether the skin around the eye, judged against its brightest near it, leaves the grain fewer than NEAREST clean
    tiles to copy (`lid_texture.quilt`): skin grainy, shaded or lined all over (hand_chin_darker_skin's, dark skin
    under a raking light) is nearly all darker than its brightest, the fill was drawn from a few stray pixels and got no
    grain at all, a smooth flat patch. Such skin is judged as wrinkled skin is (`_textured`): against its mean."""
    detail, source, _, tile = _grain_source(rgb, eye, frame, g.us, g.ss[:, 0], g.step, hole, refs.ref, refs.lit)
    return int(clean_tiles(detail, source, tile_px(tile)).sum()) < NEAREST


def _darker_than_around(luma: np.ndarray, eye: Eye, step: float) -> np.ndarray:
    """On wrinkled skin (`_textured`): what is darker by CREASE_DEPTH (and 4 levels) than the skin's mean within
    CREASE_REACH half-widths, rather than its brightest: its deeper lines, a crease, an outline; the rest of its grain
    is skin."""
    r = max(2, round(CREASE_REACH * eye.half_w / step))
    return luma < cv2.GaussianBlur(luma, (0, 0), r / 2.0) * (1.0 - CREASE_DEPTH) - 4.0


@dataclasses.dataclass(frozen=True, eq=False)
class _SkinRefs:
    """The skin's tones `lid_fill` judges by (luma, 0..255): the lid's own (`ref`: lid_colour's skin, before
    LID_TONE), all around the eye (`around`) and under it (`below`, both after LID_TONE; `under_eye`: its samples),
    how far the lid lies in a socket's shadow (`shade`, 0..1) and the lightest skin's reference (`lit`)."""

    ref: float
    around: float
    below: float
    under_eye: np.ndarray
    shade: float
    lit: float


def _skin_refs(rgb: np.ndarray, eye: Eye, frame: FaceFrame, skin: tuple[float, float, float]) -> _SkinRefs:
    """The skin tones around the eye that `lid_fill` takes and tones by (`_SkinRefs`)."""
    ref = 255.0 / LID_TONE * float(np.dot(skin, LUMA_F32))
    mu = np.linspace(-0.7, 0.7, 15)
    mtop = lid_curve(eye, mu, eye.upper)
    around = LID_TONE * float(_skin_around(rgb, eye, frame, mtop, lid_curve(eye, mu, eye.lower),
                                           max(float(np.median(mtop)) - eye.y_brow, 2.0)) @ LUMA_F32)
    under_eye = _sample(rgb, frame, *np.broadcast_arrays((eye.cx + mu * eye.half_w)[None], lid_curve(eye, mu, eye.lower)
                                                     + np.linspace(0.25, 0.6, 10)[:, None] * eye.half_w))
    below = LID_TONE * float(_skin_tone(under_eye) @ LUMA_F32)
    # A deep-set eye under a low brow (the far eye of a turned face, luispedro's) has no lid skin between lid and
    # brow to measure: lid_colour's skin is the brow's shadow and hairs, darker than all the skin around the eye.
    # Against it the lit skin around the eye (the cheek under it) was no skin to take, and the fill was one flat
    # tone taken from a stray patch: a brown oval. Such a lid (`shade` of it, from SOCKET_DARK below the skin around
    # to twice that) takes skin up to as light as the skin under the eye, and is lit like the skin around it.
    shade = float(np.clip((1.0 - SOCKET_DARK - ref * LID_TONE / max(around, 1.0)) / SOCKET_DARK, 0.0, 1.0))
    lit = ref + shade * max(below / LID_TONE - ref, 0.0)  # the lightest skin's reference
    return _SkinRefs(ref, around, below, under_eye, shade, lit)


def _body_tone(filled: np.ndarray, g: _FillGrid, hole: np.ndarray, blend: np.ndarray, refs: _SkinRefs,
               skin: tuple[float, float, float]) -> np.ndarray:
    """The lid's body tone (`lid_fill`; `_match_around` takes it deeper in where it is lighter than the skin around the
    fill): the fill mixed with the lid's own skin, lifted out of a socket's shadow, as saturated as the skin under
    the eye. w: where the body is, from the band's top down to half way to the closed line, away from the corners."""
    w = _ramp(np.zeros_like(g.s_closed), 0.5 * g.s_closed, g.ss) * (1.0 - _ramp(0.8, 1.1, np.abs(g.us))) * blend
    lid = hole & (g.ss > 0.0) & (g.ss < g.s_closed)
    body_tone = _mix_own_skin(filled, g, hole, w, refs, skin)
    body_tone = _lift_socket(body_tone, g, lid, w, blend, refs)
    return _match_saturation(body_tone, lid, w, refs)


def _mix_own_skin(filled: np.ndarray, g: _FillGrid, hole: np.ndarray, w: np.ndarray, refs: _SkinRefs,
                  skin: tuple[float, float, float]) -> np.ndarray:
    """The lid's body part the fill and part (LID_MIX) the lid's own skin as lid_colour measures it: the fill alone
    takes the skin beside the lid, which may be a cheek much paler than a reddened lid, or a brow's shadow. In ratio
    to the fill's own median over the lid: the fill's shading across the lid stays. In a socket's shadow (`shade`)
    the lid's own skin is the brow's shadow: its hue is kept, as light as the skin around the eye."""
    own = np.asarray(skin, np.float32) * (255.0 / LID_TONE) * (
        1.0 + refs.shade * max(refs.around / LID_TONE / refs.ref - 1.0, 0.0))
    body = hole & (g.ss > 0.0) & (g.ss < g.s_closed) & (np.abs(g.us) < 0.8)
    mid = np.median(filled[body], axis=0) if body.any() else own
    return filled * (1.0 + (own / np.maximum(mid, 1.0) - 1.0) * (LID_MIX * w)[..., None])


def _lift_socket(body_tone: np.ndarray, g: _FillGrid, lid: np.ndarray, w: np.ndarray, blend: np.ndarray,
                 refs: _SkinRefs) -> np.ndarray:
    """A closed lid bulges out of a socket in the brow's shadow into the light: where it is darker than the skin all
    around the eye, it is lifted half way (in ratio) toward it, LIFT_MAX at most; lighter than LID_OF_AROUND of that
    (a back light's shine on the skin above the eye), brought down half way. And a lid in a shadowed socket (the far
    eye of a face lit from the side) is lifted toward the light that falls on the skin under the eye, more and more
    from high in its crease (BELOW_FROM of it) down to BELOW_AT of its length (a shorter ramp drew a seam across the
    lid), BELOW_LIFT of the way (in ratio) toward that skin where it is lighter (as dark as the socket, it read as a
    dark patch). Only a lid darker than the skin all around the eye is in a socket's shadow: a lid already as light
    as that (one darker only than a pale cheek) stays."""
    around, below = refs.around, refs.below
    have = max(float(np.median(body_tone[lid] @ LUMA_F32)), 1.0) if lid.any() else around
    gain = float(np.clip(np.clip(have, around, LID_OF_AROUND * around) / have, 1.0 / LIFT_MAX, LIFT_MAX)) ** 0.5
    socket = float(np.clip((around - have) / (SOCKET_DARK * around), 0.0, 1.0))
    lift = min(1.0 + BELOW_LIFT * socket * max(below / (have * gain) - 1.0, 0.0), LIFT_MAX)
    w_low = (_ramp(-BELOW_FROM * g.crease, BELOW_AT * g.s_closed, g.ss) * (1.0 - _ramp(0.8, 1.1, np.abs(g.us)))
             * blend)
    return body_tone * ((1.0 + (lift - 1.0) * w_low) * (1.0 + (gain - 1.0) * w))[..., None]


def _match_saturation(body_tone: np.ndarray, lid: np.ndarray, w: np.ndarray, refs: _SkinRefs) -> np.ndarray:
    """The lid's body as saturated as the skin under the eye (its colour against its lightness; SAT_RANGE at most):
    a greyer lid read as a patch of eye shadow (a socket's shadow mixed in), a redder one as swollen."""
    if not lid.any():
        return body_tone
    lid_luma = body_tone @ LUMA_F32
    k = float(np.clip(_saturation(refs.under_eye) / max(_saturation(body_tone[lid]), 1e-3), *SAT_RANGE))
    return lid_luma[..., None] + (body_tone - lid_luma[..., None]) * (1.0 + (k - 1.0) * w)[..., None]


def _as_saturated_as_around(filled: np.ndarray, g: _FillGrid, alpha: np.ndarray, leave_out: np.ndarray,
                            hw: float) -> np.ndarray:
    """On wrinkled skin (`_textured`), filled (0..1) where it covers as saturated as the skin in a ring around it
    (RING_WIDE half-widths; not `leave_out`, nor grey: under WRINKLED_GREY of the ring's median saturation, a lens's
    reflection or a rim): the few smooth pixels the fill is toned from are its palest, and it read as grey-beige."""
    inside = alpha >= 0.02
    k = 2 * max(1, round(RING_WIDE * hw)) + 1
    ring = ~inside & ~leave_out & (cv2.dilate(inside.astype(np.uint8), np.ones((k, k), np.uint8)) > 0)
    sat = np.ptp(g.px, axis=-1) / np.maximum(g.luma, 1.0)
    if ring.sum() < 8:
        return filled
    skin = ring & (sat > WRINKLED_GREY * np.median(sat[ring]))
    want = float(np.median(sat[skin]))
    luma = filled @ LUMA_F32
    have = float(np.median(np.ptp(filled, axis=-1)[alpha > 0.5] / np.maximum(luma[alpha > 0.5], 1e-3)))
    gain = 1.0 + (float(np.clip(want / max(have, 1e-3), 1.0, SAT_RANGE[1])) - 1.0) * alpha
    return luma[..., None] + (filled - luma[..., None]) * gain[..., None]


def _shade_corners(filled: np.ndarray, g: _FillGrid) -> np.ndarray:
    """The lid turns away from the light toward its corners, over the round eyeball (CORNER_DARK), less and less out to
    the fill's sides, where it meets the skin beside it in tone."""
    across = np.abs(g.us)
    corner = CORNER_DARK * np.clip(across, 0.0, 1.0) ** 3 * (1.0 - _ramp(g.side - 0.5, g.side - 0.05, across))
    return skin_shaded(filled, 1.0 - corner * (g.ss < g.s_closed + g.m))


def skin_shaded(rgb: np.ndarray, light: np.ndarray) -> np.ndarray:
    """rgb (..., 3) lit `light` (...) times as brightly, as skin darkens: each channel by light ** SKIN_SHADE (its red
    less, its blue more: skin in shade is deeper in colour; darkened in grey, a lid's shading and grain read as grey
    smudges on pale skin)."""
    return rgb * np.maximum(light, 1e-3)[..., None] ** np.asarray(SKIN_SHADE, np.float32)


def _match_around(filled: np.ndarray, px: np.ndarray, alpha: np.ndarray, under: np.ndarray, hw: float,
                  body: np.ndarray, px_per_cell: float, wrinkled: bool = False,
                  shadow_px: float = SHADOW_PX) -> np.ndarray:
    """filled (H, W, 3, 0..255) with its broad tone replaced (hw: grid cells per eye half-width, px_per_cell: pixels
    per cell): at its outline the tone of the photo's skin in a ring just outside alpha (above the closed line, not
    beside the eye itself: `under` marks what is left out), carried in (a seamless clone: no step in lightness or
    colour where the fill meets the skin around it), and deeper in `body` (lid_fill's tone for the lid) where that is
    lighter. Its fine light and shade (finer than DETAIL_SIGMA, DETAIL_MAX at most, in lightness only) stay: the
    photo's skin it keeps has its grain, and the edges of what it made up no outline. The ring's lashes, brow hairs,
    a rim's edge or a glint (luma off the ring's own by RING_SKIN, or under RING_LOW of the skin near them; `wrinkled`:
    under WRINKLED_GREY of its median saturation, a lens's reflection) are no skin's tone."""
    sigma, detail = max(1.0, TONE_SIGMA * hw), max(0.7, DETAIL_SIGMA * hw)
    inside = alpha >= 0.02
    band = _ring_around(inside, hw)
    weights = LUMA_F32
    luma = px @ weights

    level = _masked_mean(luma, band, 2.0 * sigma)
    # (and nothing much darker than the ring's lighter skin: the brow's hairs, a lash's flick, a deep fold)
    r = 2 * max(1, round(ENVELOPE * hw)) + 1
    envelope = cv2.GaussianBlur(cv2.dilate(luma, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (r, r))), (0, 0), r / 4.0)
    dark = luma < RING_LOW * envelope
    skin = band & ~under & ~dark & (luma > RING_SKIN[0] * level) & (luma < RING_SKIN[1] * level)
    if wrinkled and skin.sum() >= 8:  # (and no grey: a lens's reflection or a rim's glint, which took a lid's corner)
        sat = np.ptp(px, axis=-1) / np.maximum(luma, 1.0)
        skin &= sat > WRINKLED_GREY * float(np.median(sat[skin]))
    if skin.sum() < 8:
        return filled
    ring_tone = _carried_in(px, skin, sigma)
    # Deeper in, the lid's body (`lid_fill`'s tone for it, smooth) where that is lighter than the skin around it (a lid
    # under a fold or a brow's shadow bulges out of it into the light; never darker: a lid darker or greyer than the
    # skin around it read as a patch of eye shadow): over DEPTH half-widths from the fill's outline where the two
    # differ a little (the lid's own curvature), over SHADOW_PX pixels (SHADOW half-widths at least) where one is
    # much the lighter (SHADOW_RATIO and more: a cast shadow's edge, on the lid as on the skin above it).
    deep = cv2.GaussianBlur(body.astype(np.float32), (0, 0), max(1.0, BODY_SMOOTH * hw))
    ring_luma = np.maximum(ring_tone @ weights, 1.0)
    deep = np.where((deep @ weights > ring_luma)[..., None], deep, ring_tone)
    # (and as saturated as the ring, within SAT_MATCH: a greyer lid read as a patch of make-up, a redder one as swollen)
    d_luma = np.maximum(deep @ weights, 1.0)[..., None]
    k = np.clip((np.ptp(ring_tone, axis=-1)[..., None] / ring_luma[..., None])
                / np.maximum(np.ptp(deep, axis=-1)[..., None] / d_luma, 1e-3), *SAT_MATCH)
    deep = d_luma + (deep - d_luma) * k
    depth = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 5)
    sharp = np.clip(((deep @ weights) / ring_luma - 1.0) / (SHADOW_RATIO - 1.0), 0.0, 1.0)
    t = (np.clip(depth / max(DEPTH * hw, 1.0), 0.0, 1.0) * (1.0 - sharp)
         + np.clip(depth / max(SHADOW * hw, shadow_px / px_per_cell, 1.0), 0.0, 1.0) * sharp)
    tone = ring_tone + (deep - ring_tone) * t[..., None]
    f_luma = filled @ weights
    fine = np.clip(f_luma / np.maximum(_masked_mean(f_luma, inside, detail), 1.0) - 1.0, -DETAIL_MAX, DETAIL_MAX)
    return np.where(inside[..., None], tone * (1.0 + fine)[..., None], filled).astype(np.float32)


def _ring_around(inside: np.ndarray, hw: float) -> np.ndarray:
    """The band RING half-widths wide (2 cells at least) just outside `inside` (hw: grid cells per half-width)."""
    k = 2 * max(1, round(max(2.0, RING * hw))) + 1
    return ~inside & (cv2.dilate(inside.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) > 0)


def _masked_mean(x: np.ndarray, where: np.ndarray, s: float) -> np.ndarray:
    """x (H, W) or (H, W, C) averaged over a Gaussian of s cells, counting only the cells `where`."""
    w = where.astype(np.float32)
    num = cv2.GaussianBlur(x * (w[..., None] if x.ndim == 3 else w), (0, 0), s)
    den = np.maximum(cv2.GaussianBlur(w, (0, 0), s), 1e-4)
    return num / (den[..., None] if x.ndim == 3 else den)


def _carried_in(px: np.ndarray, known: np.ndarray, sigma: float, aniso: float = ANISO) -> np.ndarray:
    """The tone of px (H, W, 3) on `known` (averaged over sigma cells) carried over the rest by a membrane, more down
    the lid than along it (on a grid shrunk `aniso` times in height): an even one took a lid's top from a brightly lit
    nose or temple beside it."""
    h, w = known.shape
    small = (w, max(2, round(h / aniso)))
    wk = cv2.resize(known.astype(np.float32), small, interpolation=cv2.INTER_AREA)
    vals = cv2.resize(np.where(known[..., None], _masked_mean(px, known, sigma), 0.0).astype(np.float32), small,
                      interpolation=cv2.INTER_AREA) / np.maximum(wk, 1e-6)[..., None]
    return cv2.resize(membrane(vals.astype(np.float32), wk > 0.25), (w, h), interpolation=cv2.INTER_LINEAR)


def _meet_outline(tone: np.ndarray, px: np.ndarray, alpha: np.ndarray, over: np.ndarray, hw: float,
                  px_per_hw: float, cut: np.ndarray) -> np.ndarray:
    """tone (H, W, 3, 0..255) brought to the photo's skin in a ring just outside alpha (RING half-widths wide) by
    position over the fill's soft edge, back to itself over OUTLINE_FADE half-widths into its core (hw: grid cells per
    half-width; further where they differ by more than OUTLINE_SLOPE levels per pixel of it, OUTLINE_MAX half-widths
    at most, and no further than `cut`: the corners and the closed line, where it stops), where `over` (0..1: the ring
    where it is 1). Toned from the ring's skin as a whole, a fill under a brow ridge lit on one side and shadowed on the
    other met both in a step and read as a box (meeting_darker_skin). The ring's hairs and lashes (thin and dark: darker
    than RING_LOW of the ring closed over HAIR_PX half-widths) are no skin's."""
    inside = alpha >= 0.02
    ring = _ring_around(inside, hw) & (over > 0.99)
    luma = px @ LUMA_F32
    r = 2 * max(1, round(HAIR_PX * hw)) + 1
    closed = cv2.morphologyEx(luma, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (r, r)))
    ring = ring & (luma >= RING_LOW * closed)
    if ring.sum() < 8:
        return tone
    near = _carried_in(px, ring, max(0.7, OUTLINE_SIGMA * hw), OUTLINE_ANISO)
    inside_tone = _masked_mean(tone, inside, max(1.0, TONE_SIGMA * hw))  # (its grain stays)
    core = cv2.distanceTransform((alpha >= 0.95).astype(np.uint8), cv2.DIST_L2, 5)
    edge = inside & (core < 1.0) & (over > 0.99)
    if not edge.any():
        return tone
    # Not where even that skin's lightest (a tenth) is darker than the fill by LIFTED and more: a lid lifted out of a
    # socket's or a brow's shadow (`_lift_socket`) meets it in a penumbra (`lid_fill`'s raised; carried in, the brow's
    # hairs drew a dark band over it). Where some of that skin is as light, the fill's lightness is that part's.
    differ = near - inside_tone
    lift = 1.0 - np.percentile(near[edge] @ LUMA_F32, 90) / max(float(np.median(inside_tone[edge] @ LUMA_F32)), 1.0)
    differ = differ * (1.0 - float(_ramp(0.0, LIFTED, np.array(lift))))
    slope = cv2.GaussianBlur(np.abs(differ @ LUMA_F32), (0, 0), max(1.0, OUTLINE_FADE * hw))
    fade = np.clip(slope / OUTLINE_SLOPE * (hw / px_per_hw), OUTLINE_FADE * hw, OUTLINE_MAX * hw)
    # Ended within its room above `cut` (where it stops): a fade reaching past it ended in a hard edge there, a pale lid
    # under a brown brow darkened as a band with a straight bottom (giunchedi_beard, maher_teeth, pedersen_open_mouth).
    room = cv2.distanceTransform((~cut).astype(np.uint8), cv2.DIST_L2, 5)
    fade = np.minimum(fade, core + room)
    w = (1.0 - _ramp(0.0, np.maximum(fade, 1.0), core)) * inside * over
    # in lightness, shaded as skin is (`skin_shaded`): the ring's colour carried in greyed a lid under a brow's hairs
    luma = np.maximum(inside_tone @ LUMA_F32, 1.0)
    return skin_shaded(tone, np.maximum(1.0 + (differ @ LUMA_F32) * w / luma, 0.2)).astype(np.float32)


def _fill_grain(rgb: np.ndarray, eye: Eye, frame: FaceFrame, us: np.ndarray, ss: np.ndarray, step: float,
                hole: np.ndarray, target: np.ndarray, ref: float, lit: float, textured: bool = False) -> np.ndarray:
    """The grain (luma ratio less one) to give the made-up skin at target, on lid_fill's grid (us by ss), copied from
    the clean skin around it (`_grain_source`)."""
    detail, source, ext, tile = _grain_source(rgb, eye, frame, us, ss, step, hole, ref, lit, textured)
    grain = quilt(detail, source, np.pad(target, ext), tile, GRAIN_GAIN)
    return grain[ext : ext + len(ss), ext : ext + len(us)]


def _grain_source(rgb: np.ndarray, eye: Eye, frame: FaceFrame, us: np.ndarray, ss: np.ndarray, step: float,
                  hole: np.ndarray, ref: float, lit: float, textured: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The skin `_fill_grain` copies grain from: its detail (`skin_detail`) and where it is clean skin (luma from
    GRAIN_SKIN[0] of ref to GRAIN_SKIN[1] of lit: `lid_fill`'s references for the skin and the lightest skin; not in the
    hole nor darker than the skin beside it) in a window GRAIN_AROUND half-widths wider on every side (ext cells) than
    the fill's (the fill's own window holds little skin), and the quilt's tile (cells)."""
    ext = round(GRAIN_AROUND * eye.half_w / step)
    du = step / max(eye.half_w, 1.0)
    ub = np.concatenate([us[0] - du * np.arange(ext, 0, -1), us, us[-1] + du * np.arange(1, ext + 1)])
    sb = np.concatenate([ss[0] - step * np.arange(ext, 0, -1), ss, ss[-1] + step * np.arange(1, ext + 1)])
    fx, fy = np.broadcast_arrays((eye.cx + ub * eye.half_w)[None], band_top(eye, ub)[None] + sb[:, None])
    luma = _sample(rgb, frame, fx, fy).astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if textured:
        dark = _darker_than_around(luma, eye, step)
    else:
        r = max(2, round(CREASE_REACH * eye.half_w / step))
        level = cv2.GaussianBlur(cv2.dilate(luma, np.ones((2 * r + 1, 2 * r + 1), np.uint8)), (0, 0), r / 2.0)
        dark = luma < level * (1.0 - CREASE_DEPTH) - 4.0
    inner = np.pad(cv2.dilate(hole.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0, ext)
    clean = ~inner & ~dark & (luma > GRAIN_SKIN[0] * ref) & (luma < GRAIN_SKIN[1] * lit)
    source = cv2.erode(clean.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    detail = skin_detail(luma, source, max(GRAIN_MIN_PX, GRAIN_SIGMA * eye.half_w) / step)
    return detail, source, ext, round(max(GRAIN_TILE * eye.half_w, 5.0) / step)


def _saturation(px: np.ndarray) -> float:
    """The median chroma (max - min channel) against luma of RGB pixels (..., 3)."""
    px = px.reshape(-1, 3)
    return float(np.median(np.ptp(px, axis=1) / np.maximum(px @ np.array([0.299, 0.587, 0.114]), 1.0)))


def _edge_above(rgb: np.ndarray, eye: Eye, frame: FaceFrame, us: np.ndarray, stop: np.ndarray,
                gap: np.ndarray) -> np.ndarray:
    """Per column u, how far above the lid's skin band (stop) the first strong edge into something darker lies
    (EDGE_LUMA_PER_PX: a glasses' rim, hair), or the brow (gap) where there is none."""
    gray = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 0.8)
    t = np.arange(0.0, float(gap.max()) + 0.5, 0.5)
    fx, fy = np.broadcast_arrays((eye.cx + us * eye.half_w)[:, None], stop[:, None] - t[None, :])
    ix, iy = frame.to_image(fx, fy)
    luma = cv2.remap(gray, ix.astype(np.float32), iy.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
    grad = np.abs(np.gradient(luma, 0.5, axis=1))
    peak = np.maximum.accumulate(luma, axis=1)
    edge = (grad > EDGE_LUMA_PER_PX) & (luma < peak - 8.0) & (t[None, :] > 0.0)
    first = np.minimum(np.where(edge.any(axis=1), t[np.argmax(edge, axis=1)] - 1.0, np.inf), gap)
    # A rim or hair runs across many columns; one column's edge is a mole, a pore or a stray hair: a running
    # median over EDGE_RUN half-widths keeps the first and drops the second.
    # A running minimum after it keeps a rim's slope under the fill's top, and a running mean smooths its steps.
    k = max(1, round(EDGE_RUN * len(us) / max(float(us[-1] - us[0]), 1e-3)))

    def run(x: np.ndarray, f: str) -> np.ndarray:
        return getattr(np, f)(np.lib.stride_tricks.sliding_window_view(np.pad(x, k, mode="edge"), 2 * k + 1), axis=1)

    return run(run(run(first, "median"), "min"), "mean")


def membrane(img: np.ndarray, known: np.ndarray, iters: int = 24) -> np.ndarray:
    """img (H, W, C, float32) with its pixels not `known` filled in smoothly from the known ones: a membrane
    (harmonic) fill, by Jacobi sweeps on each level of a pyramid, each started from the coarser level's."""
    h, w = known.shape
    if known.all():
        return img
    if not known.any():
        return np.broadcast_to(img.reshape(-1, img.shape[-1]).mean(axis=0), img.shape).astype(np.float32)
    k = known.astype(np.float32)
    if min(h, w) <= 4:
        out = img.copy()
        out[~known] = (img * k[..., None]).sum(axis=(0, 1)) / k.sum()
        return out
    size = ((w + 1) // 2, (h + 1) // 2)
    wk = cv2.resize(k, size, interpolation=cv2.INTER_AREA)
    coarse = cv2.resize(img * k[..., None], size, interpolation=cv2.INTER_AREA) / np.maximum(wk, 1e-6)[..., None]
    coarse = membrane(coarse.astype(np.float32), wk > 0.0, iters)  # a coarse cell: the mean of its known pixels
    out = np.where(known[..., None], img, cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR))
    cross = np.array([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]], np.float32)
    for _ in range(iters):
        out = np.where(known[..., None], img, cv2.filter2D(out, -1, cross, borderType=cv2.BORDER_REPLICATE))
    return out.astype(np.float32)


def fold_above(rgb: np.ndarray, eye: Eye, frame: FaceFrame) -> tuple[float, tuple[float, float, float, float]]:
    """How far (pixels) above the lid's skin band (eye.reach) the photo's fold keeps the skin in shadow: the open
    eye's crease, which a closed lid unfolds and fills: the median over the eye's middle, and along the lid
    (k0, k1, k2, most): k0 + k1 u + k2 u^2 pixels, no more than its highest column (a crease often runs higher
    over the band's top toward a corner: left uncovered, it drew a second lid line above the closed lid).
    Per column: up to where the skin is back within FOLD_BACK levels of its brightest below the brow; none
    where anything darker than a skin's shadow (FOLD_MIN of that brightest: a rim, the brow, hair) comes
    first: that stays."""
    gray = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 0.8)
    us = np.linspace(-0.9, 0.9, 13)
    stop = band_top(eye, us)
    span = max(float(np.median(stop)) - eye.y_brow, 2.0)
    t = np.arange(0.0, 0.6 * span, 0.5)
    fx, fy = np.broadcast_arrays((eye.cx + us * eye.half_w)[:, None], stop[:, None] - t[None, :])
    ix, iy = frame.to_image(fx, fy)
    luma = cv2.remap(gray, ix.astype(np.float32), iy.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
    heights = []
    for row in luma:
        back = np.nonzero(row >= row.max() - FOLD_BACK)[0]
        end = int(back[0]) if len(back) else 0
        heights.append(float(t[end]) if row[: end + 1].min() >= FOLD_MIN * row.max() else 0.0)
    h = np.array(heights)
    k = np.polyfit(us, h, 2)[::-1]
    return float(np.median(h[np.abs(us) <= 0.6 + 1e-6])), (float(k[0]), float(k[1]), float(k[2]), float(h.max()))


def _sample(rgb: np.ndarray, frame: FaceFrame, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """The photo's RGB (float) at face-frame points (fx, fy), shape (*fx.shape, 3)."""
    ix, iy = frame.to_image(fx, fy)
    return cv2.remap(rgb, ix.astype(np.float32), iy.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE).astype(np.float64)


def measure_lids(rig: RigGeometry, rgb: np.ndarray, landmarks: np.ndarray) -> RigGeometry:
    """The rig with each eye's lid reach, closed lid colour and look measured on the photo and the mesh the rig
    was built on. (rig.EYES: the first eye's outer corner is at the image's left, the second's at its right.)"""
    lm = np.asarray(landmarks, np.float64)[:, :2]
    face = np.stack(rig.frame.to_face(lm[:, 0], lm[:, 1]), axis=1)
    eyes = []
    for e, brow, outer in zip(rig.eyes, BROW_LOWER, (-1.0, 1.0), strict=True):
        skin = lid_colour(rgb, e, rig.frame)
        e = dataclasses.replace(e, reach=lid_reach(rgb, e, rig.frame, face[list(brow)]), lid_rgb=skin)
        eyes.append(dataclasses.replace(e, look=lid_look(rgb, e, rig.frame, outer, skin, face[list(brow)])))
    return dataclasses.replace(rig, eyes=tuple(eyes))  # type: ignore[arg-type]
