"""The eyes: blink, gaze and brow offsets of one eye, the closed lid's paint, and where the lid's skin ends.

A blink as a viewer reads it (Live2D practice, Trutoiu et al. 2011): the upper lid's skin comes down over
the eye; it is not the eye squeezed. Per column of the eye, in the face's upright frame (rig.FaceFrame):
- the lashes and the skin just above them (the lid's margin) translate down, unchanged, to the closed line;
- the skin between them and the lid's fold stretches to follow: it unfolds, as the hidden part of a real
  lid does. That stretch stops where the picture darkens again above the lashes, or at a strong edge
  (`lid_reach`), measured on the photo once: the fold, an eyebrow or a glasses' rim stays where it is, so
  a rim above the lid stays straight (one lying across the lid itself is drawn back over it: `rim_layer`);
- nothing of the eye itself (iris, sclera) is sampled under the lid; the lower lid rises a little;
- the closed lid is painted (`paint_roi` / `paint_u8`, after the warp): the few pixels of skin an open lid
  shows are often its reddened margin, a lash's shadow or a sliver between lashes and a rim, and spread
  over the whole eye they read as a swollen lid or a smear. `_lids` gives smooth fields on the warp's grid
  (where each point lies on the lid, the lash line's width, the photo's light across the lid, colours);
  `paint_lid` draws the lid's sharp parts from them at pixel resolution: the skin, filled in once over the
  open eye from the clean skin above, beside and below it (`lid_fill`: the crease, the upper outline and the
  corners' lashes go, so no almond outline is left above the closed lid, which meets the skin above it in
  tone), its body part `lid_colour`'s skin, turning a little away toward the lashes, with the grain of the
  clean skin around the eye where it is made up (`lid_texture`); a lash line in the lashes' colour,
  thicker over the middle and outer third, with a fringe under it; and a glasses' rim that lies across
  the lid drawn back in front of it (`rim_layer`), so it stays straight.
What the paint takes from the photo (the filled skin, the lashes' colour, the rim) is measured once at prepare time
(`lid_fill.measure_lids`); this module is what runs per frame, and the lid's band (`lid_reach`, `band_top`).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from engine.generator.capture import capturing_graph
from engine.generator.rig import Eye, FaceFrame, lid_curve
from engine.types import Control

REACH_COLUMNS = np.linspace(-0.95, 0.95, 17)  # u of the columns where the lid's skin is measured
# A luminance step (0..255 per pixel, after a 0.8 px blur) this steep ends the lid's skin: a glasses' rim or
# dark hair (45-60 measured on hopper's rim); a lid's fold (20-30 on the astronaut and luispedro) does not,
# so the fold unfolds with the skin rather than leave a few pixels to stretch over the whole eye.
EDGE_LUMA_PER_PX = 35.0
# Lower bounds on the skin band (in opening heights and pixels) so a blink can always close; and the
# part of the brow-to-lid distance it may never pass.
MIN_REACH_H, MIN_REACH_PX, MAX_REACH_BROW = 0.35, 1.5, 0.6
# The brows' lower contours (mediapipe mesh), eyes in rig.EYES order; the lid's skin stops this share of
# the way from the lid to them.
BROW_LOWER, BROW_GAP = ((46, 53, 52, 65, 55), (285, 295, 282, 283, 276)), 0.5
LID_TONE = 0.96  # the closed lid against the skin (1.06 read as a pale patch, 0.94 as a bruise; 0.96 with the shading)
FOLD_DROP = 24.0  # luma levels below the skin's brightest past the lashes: the lid's fold, a rim, the brow
ARCH_KEEP = 0.5  # of the closing lid's arch: see _lids
TRANSLATED, STRETCH_SLOPE = 0.55, 3.0  # of the lid's skin above the margin: the share that translates whole


def smoothstep(e0: float | torch.Tensor, e1: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    t = torch.clamp((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def lid_reach(rgb: np.ndarray, eye: Eye, frame: FaceFrame, brow_lower: np.ndarray | None = None
              ) -> tuple[float, float, float]:
    """How far above the upper lid's margin its skin goes, per column, as (k0, k1, k2) of k0 + k1 u + k2 u^2
    pixels: up to the first strong luminance edge past the lashes (a glasses' rim, dark hair), and short
    of the brow (brow_lower: the brow's lower contour, (k, 2) points in the face frame: a dark brow on dim
    skin need not show a strong edge); never more than any column measured (a rim that dips at one side
    stops the band there too)."""
    gray = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 0.8)
    xs = eye.cx + REACH_COLUMNS * eye.half_w
    top = lid_curve(eye, REACH_COLUMNS, eye.upper)
    bottom = np.maximum(lid_curve(eye, REACH_COLUMNS, eye.lower), top)
    h = bottom - top
    ceiling = np.full(len(xs), MAX_REACH_BROW * max(float(np.median(top)) - eye.y_brow, 1.0))
    if brow_lower is not None:
        order = np.argsort(brow_lower[:, 0])
        brow_y = np.interp(xs, brow_lower[order, 0], brow_lower[order, 1])
        ceiling = np.minimum(ceiling, np.maximum(BROW_GAP * (top - brow_y), MIN_REACH_PX))
    step = 0.5
    t = np.arange(0.0, float(ceiling.max()) + step, step)
    fx, fy = np.broadcast_arrays(xs[:, None], top[:, None] - t[None, :])
    ix, iy = frame.to_image(fx, fy)
    luma = cv2.remap(gray, ix.astype(np.float32), iy.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
    reach = np.array([_column_reach(row, t, hi, top_i) for row, hi, top_i in zip(luma, h, ceiling, strict=True)])
    # The corner columns' lashes thicken and meet: their measure is the least sure, and a quadratic that kept
    # under them would starve the middle of the lid.
    sure = np.abs(REACH_COLUMNS) <= 0.8
    k = np.polyfit(REACH_COLUMNS, reach, 2)[::-1]
    k[0] -= max(0.0, float((np.polyval(k[::-1], REACH_COLUMNS) - reach)[sure].max()))  # stay under every column
    return float(k[0]), float(k[1]), float(k[2])


def _column_reach(luma: np.ndarray, t: np.ndarray, h: float, ceiling: float) -> float:
    """One column of `lid_reach`: luma at t pixels above the upper lid's margin. The lashes are the darkest
    part just above the margin; past them the lid's skin brightens, and it ends where the picture darkens
    again going up (the lid's fold, a glasses' rim, the brow: all in shadow or darker than the skin) or at a
    strong edge. The skin kept is what lies past the lashes' darkest point and before that darkening."""
    lash_zone = t <= 0.3 * h + 2.0
    start = int(np.argmin(np.where(lash_zone, luma, np.inf)))
    peak = luma[start]
    grad = np.abs(np.gradient(luma, t[1] - t[0]))
    end = ceiling
    for i in range(start + 1, len(t)):
        peak = max(peak, luma[i])
        if t[i] > ceiling or luma[i] < peak - FOLD_DROP or (grad[i] > EDGE_LUMA_PER_PX and luma[i] < peak - 8.0):
            end = t[i] - 2.0  # the edge itself is blurred over a pixel or two: keep off it
            break
    return float(min(max(end, MIN_REACH_H * h, MIN_REACH_PX), ceiling))


def eye_offsets(eye: Eye, c: torch.Tensor, blink: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor,
                cells: tuple[slice, slice] = (slice(None), slice(None))
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Source offsets (face frame) of blink, gaze and brow at output points (qx, qy) (face frame, the eye's
    box), and the closed lid's paint fields over `cells` ((N, CHANNELS, ...); `paint_roi`; None where no frame
    of the window blinks). cells: the part of the box where the lids and the eye can move (`blink_cells`): the
    brow's field covers the box, theirs only that part."""
    brow_w = torch.exp(-((qx - eye.cx) / (1.2 * eye.half_w)) ** 2 - ((qy - eye.y_brow) / (0.8 * eye.half_w)) ** 2)
    brow = c[:, Control.BROW_RAISE] * 0.25 * eye.half_w * brow_w
    h, w = qx.shape[1:]
    ys, xs = cells
    y0, y1, _ = ys.indices(h)
    x0, x1, _ = xs.indices(w)
    ox, oy, gain = _lids(eye, c, blink, qx[:, y0:y1, x0:x1], qy[:, y0:y1, x0:x1])
    pad = (x0, w - x1, y0, h - y1)  # back to the whole box (F.pad: no in-place writes, so exports trace it)
    return F.pad(ox, pad), brow + F.pad(oy, pad), gain


def blink_cells(eye: Eye, frame: FaceFrame, box: tuple[slice, slice], stride: int, margin: float,
                grid: tuple[int, int]) -> tuple[slice, slice]:
    """The field cells of an eye's box (`box`: its slices of the field grid, whose size is `grid`), relative
    to the box, where gaze and blink can move anything or shade: the lids' band (the skin's reach above to
    0.3 half-widths below), 1.35 half-widths either side (FILL_OUTER + 0.05 on the outer one), padded by `margin`
    pixels for the head's motion."""
    us = np.linspace(-1.0, 1.0, 41)
    top = lid_curve(eye, us, eye.upper)
    bottom = np.maximum(lid_curve(eye, us, eye.lower), top)
    r = eye.reach
    reach = np.maximum(r[0] + us * (r[1] + us * r[2]), np.maximum(0.3 * (bottom - top), 0.75) + 1.0)
    # the outer side further: the closed lid's skin covers the open eye's outer lashes there (`lid_fill`)
    left, right = (FILL_OUTER + 0.05, 1.35) if eye.look is not None and eye.look.outer < 0 else (
        (1.35, FILL_OUTER + 0.05) if eye.look is not None else (1.35, 1.35))
    bx0, by0, bx1, by1 = frame.box_to_image((eye.cx - left * eye.half_w - margin, float((top - reach).min()) - margin,
                                             eye.cx + right * eye.half_w + margin,
                                             float(bottom.max()) + 0.3 * eye.half_w + margin))
    ys, xs = box
    h, w = min(ys.stop, grid[0]) - ys.start, min(xs.stop, grid[1]) - xs.start
    y0, x0 = max(0, math.floor(by0 / stride) - 1 - ys.start), max(0, math.floor(bx0 / stride) - 1 - xs.start)
    return (slice(min(y0, h), max(min(y0, h), min(h, math.ceil(by1 / stride) + 2 - ys.start))),
            slice(min(x0, w), max(min(x0, w), min(w, math.ceil(bx1 / stride) + 2 - xs.start))))


def _lids(eye: Eye, c: torch.Tensor, blink: torch.Tensor, qx: torch.Tensor,
          qy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """eye_offsets' gaze and blink, over the cells where they act."""
    u = (qx - eye.cx) / eye.half_w
    uc = torch.clamp(u, -1.0, 1.0)
    lens = 1 - uc * uc
    chord = eye.y_c0 + (eye.y_c1 - eye.y_c0) * 0.5 * (uc + 1)
    k, m, r = eye.upper, eye.lower, eye.reach
    top = chord + lens * (k[0] + uc * (k[1] + uc * k[2]))  # the lid contours at this column (rig.lid_curve)
    bottom = torch.maximum(chord + lens * (m[0] + uc * (m[1] + uc * m[2])), top)
    h = bottom - top
    # Gaze: shift what is inside the opening; the lids stay where they are.
    inside_opening = (smoothstep(top, top + 1.5, qy) * (1.0 - smoothstep(bottom - 1.5, bottom, qy))
                      * (1.0 - smoothstep(0.55, 0.95, u.abs())))
    ox = -c[:, Control.GAZE_X] * 0.3 * eye.half_w * inside_opening
    gy = -c[:, Control.GAZE_Y] * 0.2 * (eye.y_bottom - eye.y_top) * inside_opening
    # Most windows hold no blink: skip its two dozen passes (not while tracing an export, which must keep
    # the blink whatever its example's controls, nor under torch.compile, whose graph would break on the test).
    if not capturing_graph() and not bool((blink > 0).any()):
        return ox, gy, None
    # Blink: a piecewise-linear map per column (output y -> source y), the identity when open.
    margin = torch.clamp(0.3 * h, min=0.75)  # lashes + the lid's margin: translated whole
    reach = torch.maximum(r[0] + uc * (r[1] + uc * r[2]), margin + 1.0)  # the lid's skin above its margin
    stop = top - reach  # above this nothing moves
    closed = bottom - 0.12 * h  # where the lids meet
    # How far the lid's margin has come down: a real upper lid slides down over the eye keeping some of its arch
    # (its corners meet the lower lid early), rather than each column closing in step with the middle,
    # which drew a straight edge across the iris halfway: ARCH_KEEP of the middle's travel is shared by all.
    gap = closed - top
    mid_gap = 0.88 * max(m[0] - k[0], 0.0)
    d = gap * torch.clamp(blink * ((1.0 - ARCH_KEEP) + ARCH_KEEP * mid_gap / torch.clamp(gap, min=1e-3)), max=1.0)
    edge = top + d
    lower_edge = bottom + blink * (closed - bottom)
    src_bottom = bottom + blink * 0.25 * h  # the lower lid's skin, below its lashes
    low_end = bottom + 0.3 * eye.half_w
    # Above the margin the lid's skin comes down too: its lower part (TRANSLATED of it) translates whole,
    # keeping its texture; the part just under the fold (or the rim) stretches to let it, as a real lid's
    # hidden skin comes out of its fold. The stretch is a cubic with slope 1 px/px at both ends (no kink
    # where it meets the still skin above or the translated skin below), at most STRETCH_SLOPE (3: 0 px/px
    # at its middle) in its own units.
    shift_from = stop + (1.0 - TRANSLATED) * (reach - margin)  # source: from here down, the skin translates
    src_len = shift_from - stop
    slope = torch.clamp((src_len + d) / torch.clamp(src_len, min=1e-3), max=STRETCH_SLOPE)
    t = torch.clamp((qy - stop) / torch.clamp(src_len + d, min=1e-3), 0.0, 1.0)
    unfolded = stop + src_len * (t + (slope - 1.0) * t * (1.0 - t) * (1.0 - 2.0 * t))
    src = torch.where(qy < shift_from + d, unfolded,
                      torch.where(qy < edge, qy - d,
                                  torch.where(qy < lower_edge, qy,
                                              src_bottom + (qy - lower_edge) * (low_end - src_bottom)
                                              / torch.clamp(low_end - lower_edge, min=1e-3))))
    in_band = (qy >= stop) & (qy <= low_end)
    fade = 1.0 - smoothstep(1.0, 1.35, u.abs())
    oy = torch.where(in_band, (src - qy) * fade, torch.zeros_like(qy)) + gy * (1.0 - blink)
    # The closed lid's paint, as smooth fields (the field grid is coarser than a lash line): where each point
    # lies on the lid (u; pixels below the lid's edge and below its crease; the closed lid's length), the blink,
    # the lash line's width and strength along the lid, the photo's light across it, the skin's and the lashes'
    # colours. paint_roi draws the lid's sharp parts from them at pixel resolution.
    look = eye.look or LidLook()
    f0, f1, f2, f_most = look.fold_along
    fold = torch.clamp(f0 + uc * (f1 + uc * f2), max=max(f_most, look.fold_px)).clamp(min=look.fold_px)
    side = uc * look.outer  # -1 at the inner corner, +1 at the outer
    lash_profile = torch.exp(-(((side - LASH_PEAK) / LASH_SPREAD) ** 2))
    # As thick as the photo's own lash line shows (a liner: the margin it lines closes with the lid), or the usual
    # closed lid's line where that is thicker
    lash_base = max(LASH_W * eye.half_w, min(LASH_OF_PHOTO * look.lash_px, LASH_W_MAX * eye.half_w))
    lash_w = torch.clamp(lash_base * (LASH_THIN + (1.0 - LASH_THIN) * lash_profile), min=LASH_MIN_PX)
    # fading out before the corners, where the lower lid's curve turns up: a lash line drawn on into them read
    # as the outline of an eye drawn shut
    lash_a = LASH_OPACITY * (0.55 + 0.45 * lash_profile) * (1.0 - smoothstep(0.75, 1.05, u.abs()))
    light = (torch.clamp(look.light[0] + u * (look.light[1] + u * look.light[2]), LIGHT_MIN, LIGHT_MAX)
             if look.fill is None else torch.ones_like(u))  # the filled skin keeps the photo's light across it
    if look.fill is None:  # (the filled skin has the photo's own shade toward the corners)
        light = light * (1.0 - CORNER_DARK * uc.abs() ** 3)
    skin = eye.lid_rgb if eye.lid_rgb is not None else (-1.0, -1.0, -1.0)  # < 0: no skin to paint
    n = qy.shape[0]
    strand_k = math.pi / STRAND_PX if STRAND_PX * eye.half_w >= 3.0 else 0.0  # sin^2 has period pi
    # The lid's skin grain: the skin under the eye, mirrored about the eye (as far below the lower lid's moving
    # band as the point is above the lid's edge, so it comes down with the lid), as an offset in the picture.
    tex = low_end + 1.0 + edge - 2.0 * qy
    tex_dx, tex_dy = math.sin(look.roll) * tex, math.cos(look.roll) * tex  # FaceFrame.vector_to_image of (0, tex)
    planes = [u, qy - edge, qy - stop, (closed - stop).expand_as(qy), blink.expand_as(qy), lash_w, lash_a, light,
              fade, torch.full_like(qy, strand_k), fold, tex_dx, tex_dy, margin.expand_as(qy)]
    consts = torch.tensor([*skin, *look.lash_rgb], dtype=qy.dtype, device=qy.device)
    consts = consts.view(1, 6, 1, 1).expand(n, 6, *qy.shape[1:])
    lid_paint = torch.cat([torch.stack([p.expand(n, *qy.shape[1:]) for p in planes], dim=1), consts], dim=1)
    return ox_spread(ox, blink, eye, qy, qx, stop, shift_from, d, t, src_len, fade), oy, lid_paint


def ox_spread(ox: torch.Tensor, blink: torch.Tensor, eye: Eye, qy: torch.Tensor, qx: torch.Tensor,
              stop: torch.Tensor, shift_from: torch.Tensor, d: torch.Tensor, t: torch.Tensor, src_len: torch.Tensor,
              fade: torch.Tensor) -> torch.Tensor:
    """The blink's sideways offsets: gaze fades out as the lid closes, and the spread skin zigzags."""
    # Where one source row is spread over several output rows, its column-to-column changes would draw
    # vertical streaks: each output row there takes its row from a little to the side (a fixed zigzag
    # attached to the lid), so the spread skin keeps a skin-like grain instead.
    spread = (qy >= stop) & (qy < shift_from + d)
    # (its period ~0.3 eye half-widths, at least 2.6 px: over 2 field cells on a coarse grid, so not aliased)
    period = max(2.6, 0.3 * eye.half_w)
    zig = torch.sin(t * (src_len + d) * (6.2832 / period)) * (4.0 * t * (1.0 - t)) ** 2 * max(0.08 * eye.half_w, 0.7)
    return ox * (1.0 - blink) + torch.where(spread, zig * fade * torch.clamp(d / 2.0, 0.0, 1.0), torch.zeros_like(qx))


def shade_box(slices: tuple[slice, slice], stride: int, width: int, height: int) -> tuple[int, int, int, int]:
    """The pixels (x0, y0, x1, y1) of the field cells in `slices`, clipped to the ROI."""
    ys, xs = slices
    return (xs.start * stride, ys.start * stride, min(width, xs.stop * stride), min(height, ys.stop * stride))


# The closed lid's grain, taken from the skin under the eye (`skin_grain`): its luma over its GRAIN_PX square's,
# kept where within GRAIN_MIN..GRAIN_MAX (skin: wrinkles, pores), to the power GRAIN.
GRAIN_PX, GRAIN_MIN, GRAIN_MAX, GRAIN = 7, 0.72, 1.25, 0.9
LID_BRIGHTEST = 1.05  # the painted lid's brightest against its skin colour (the brighter skin above the eye)
# The closed lid's shape as light falls on it, down the lid from its crease (v = 0) to its lash line (v = 1):
# a real closed upper lid is a skin over the round eyeball: lit on its upper middle (BULGE at v = BULGE_AT),
# turning away from the light toward the lashes (LOWER_DARK) and under the crease; CREASE: the fold's shadow.
BULGE, BULGE_AT, BULGE_W, LID_BASE, LOWER_DARK, CREASE = 0.07, 0.38, 0.32, 0.95, 0.1, 0.12
# Over the filled skin (`lid_fill`) the crease is only a hint: deeper, it drew the open eye's outline again.
CREASE_FILLED, FILLED_SHADE = 0.0, 0.6
# The blink over which the filled skin comes in over the open eye's crease (see paint_lid): over 0.15-0.85 the crease
# and upper outline (darker_skin_frontal's liner) still showed at half strength above the half-closed lid, a second lid.
CREASE_FADE = (0.05, 0.3)
# The blink over which the lid's paint comes in over its own margin (the photo's lashes, brought down whole).
MARGIN_FADE = (0.4, 0.8)
# Over the filled skin: the sulcus's shadow (SULCUS deep at SULCUS_AT of the closed lid's length below its skin band's
# top, SULCUS_W wide in the same units, none at the corners: a box's corners) and the light on the lid's middle
# (BULGE_FILLED).
SULCUS, SULCUS_AT, SULCUS_W, BULGE_FILLED = 0.03, 0.05, 0.5, 0.02
SHADE_SIDE = (0.8, 1.2)  # half-widths from the eye's middle: the filled lid's shading fades out between these
CORNER_FILL = 0.3  # of the closed lid's length: how much further up the skin blends in at the eye's corners
SKIN_ABOVE = 0.5  # pixels above the fold's shadow (or the lid's band) where the painted skin blends in
# The lash line of a closed lid: LASH_W eye half-widths thick where the lashes are longest (LASH_PEAK, in
# -1 inner .. 1 outer corner, spread LASH_SPREAD), LASH_THIN of that at the inner corner; its darkness there.
LASH_W, LASH_THIN, LASH_PEAK, LASH_SPREAD, LASH_MIN_PX, LASH_OPACITY = 0.045, 0.35, 0.5, 0.75, 1.3, 0.92
# Or LASH_OF_PHOTO of the open eye's lash line (its base, soft edge and fringe draw about twice its width), up to
# LASH_W_MAX half-widths.
LASH_OF_PHOTO, LASH_W_MAX = 0.45, 0.12
# Its top edge soft over 0.5 px and LASH_EDGE of its width; the fringe FRINGE_LEN times its width long, its strands
# leaning LASH_SLANT pixels out toward the outer corner per pixel down.
LASH_EDGE, FRINGE_LEN, LASH_SLANT = 0.5, 1.3, 0.6
# Under the margin the lashes' fringe (its opacity against the margin's), drawn in strands STRAND_PX apart
# (where that is at least 3 pixels: finer ones would alias), each lighter between by STRAND_DEPTH.
FRINGE, STRAND_PX, STRAND_DEPTH = 0.55, 0.035, 0.6
LIGHT_MIN, LIGHT_MAX, CORNER_DARK = 0.8, 1.15, 0.14
CHANNELS = 20  # of the lid paint (see _lids)
# On the outer side the fill reaches further: the open eye's outer lashes (a flick past the corner) left outside it
# drew a small dark mark at the closed eye's corner.
FILL_OUTER = 1.55

@dataclasses.dataclass(frozen=True)
class LidLook:
    """What the closed lid takes from the photo besides its skin's colour (`measure_lids`): the lashes' colour
    (RGB 0..1), the photo's light across the lid as c0 + c1 u + c2 u^2 (1: the skin's mean), and the side of
    the eye's outer corner in u (-1 or 1)."""

    lash_rgb: tuple[float, float, float] = (0.12, 0.09, 0.08)
    light: tuple[float, float, float] = (1.0, 0.0, 0.0)
    outer: float = 1.0
    fold_px: float = 0.0  # how far above the lid's skin band its crease's shadow reaches, the eye's middle
    roll: float = 0.0  # the face frame's (rig.FaceFrame.roll): the paint is drawn in the picture's axes
    rim: RimLayer | None = None  # a glasses' rim lying across the lid's moving skin (`rim_layer`)
    # The crease's shadow's height along the lid: k0 + k1 u + k2 u^2 pixels, within fold_px..the last (`fold_above`)
    fold_along: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    fill: RimLayer | None = None  # the closed lid's skin over the lid coordinates (`lid_fill`)
    lash_slant: float = 0.0  # u per pixel down the lashes' fringe: they point down and out (LASH_SLANT)
    lash_px: float = 0.0  # the open eye's upper lash line's thickness in the photo, pixels (`lid_fill.lash_thickness`)


@dataclasses.dataclass(frozen=True, eq=False)
class RimLayer:
    """A picture over the eye's lid coordinates, u from u0 to u1 (eye half-widths across) by s from s0 to s1
    (pixels below the lid's skin band's top, as `_lids` measures them), RGB and alpha (1, 4, H, W, 0..1): a
    glasses' rim in front of the lid, kept as the photo shows it (premultiplied: `rim_layer`), or the closed
    lid's skin and where it covers (`lid_fill`)."""

    rgba: torch.Tensor
    u0: float
    u1: float
    s0: float
    s1: float

    @functools.cached_property
    def support(self) -> tuple[float, float, float, float]:
        """The lid coordinates (u0, u1, s0, s1) outside which the layer samples to zero (`_layer_at`: bilinear,
        zeros past its edge): its texels of any alpha, a texel further on each side."""
        alpha = self.rgba[0, 3].numpy()
        rows, cols = np.nonzero(alpha.any(axis=1))[0], np.nonzero(alpha.any(axis=0))[0]
        if len(rows) == 0:
            return 1.0, -1.0, 1.0, -1.0  # (nothing: an empty range)
        h, w = alpha.shape
        du, ds = (self.u1 - self.u0) / max(w - 1, 1), (self.s1 - self.s0) / max(h - 1, 1)
        return (self.u0 + (cols[0] - 1) * du, self.u0 + (cols[-1] + 1) * du,
                self.s0 + (rows[0] - 1) * ds, self.s0 + (rows[-1] + 1) * ds)


def _layer_at(layer: RimLayer, u: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """A layer's RGBA (N, 4, H, W) at lid coordinates (u, s) (N, H, W); zero outside it."""
    grid = torch.stack([(u - layer.u0) * (2.0 / (layer.u1 - layer.u0)) - 1.0,
                        (s - layer.s0) * (2.0 / (layer.s1 - layer.s0)) - 1.0], dim=-1)
    return F.grid_sample(layer.rgba.to(u.device).expand(len(grid), -1, -1, -1), grid, mode="bilinear",
                         padding_mode="zeros", align_corners=True)


def paint_lid(region: torch.Tensor, lid: torch.Tensor, stride: int, rim: RimLayer | None = None,
              fill: RimLayer | None = None, slant: float = 0.0) -> None:
    """The closed lid over region (N, 3, H, W, 0..1, in place) from its paint fields at pixel resolution
    (N, CHANNELS, H, W; `_lids`): the skin, shaded as a lid over a round eye, over the warped lid (keeping its
    rows' fine detail), the crease's shadow above it, and the lash line along its edge."""
    u, a, s, closed_len, b, lash_w, lash_a, light, fade, strand_k, fold, tex_dx, tex_dy, margin = lid[:, :14].unbind(1)
    skin, lash_rgb = lid[:, 14:17], lid[:, 17:20]
    closed_len = closed_len.clamp(min=1.0)
    # Skin: over the lid from its crease down to its edge, blending into the skin that stays from above the
    # crease: the open eye's fold (its shadow `fold` pixels high) fills as the lid unfolds, the rest stays;
    # toward the corners further (the corners' shadows above the narrow band would close it in an outline).
    below_edge = 1.0 - smoothstep(-0.5, 0.5 + 0.5 * (stride - 1), a)
    v = (1.0 + a / closed_len).clamp(0.0, 1.0)  # down the closed lid: its lower part comes down first
    if fill is None:  # one skin colour, blending in above the open eye's fold
        shape = (LID_BASE + BULGE * torch.exp(-(((v - BULGE_AT) / BULGE_W) ** 2))
                 - LOWER_DARK * smoothstep(0.6, 1.0, v))
        lid_len = (s - a).clamp(min=1e-3)  # crease to the lid's edge, in pixels (as far as it has come down)
        above = (fold + SKIN_ABOVE + CORNER_FILL * closed_len * smoothstep(0.5, 1.0, u.abs())) * b
        top_in = smoothstep(-above - 0.5, -0.7 * above + torch.minimum(0.2 * closed_len, 0.4 * lid_len) + 0.5, s)
        cover = top_in * below_edge * fade
        colour = skin.clamp(min=0.0)
    else:  # the filled skin (`lid_fill`), which meets the skin above it in tone: shaded relative to it
        layer = _layer_at(fill, u, s)
        # the open eye's crease (above the band) fills as the lid comes down, its lower part first
        crease_in = 1.0 - (1.0 - smoothstep(*CREASE_FADE, b)) * (1.0 - smoothstep(-1.0, 0.0, s))
        cover = layer[:, 3] * crease_in * below_edge
        colour = layer[:, :3]
        # Relative to the skin above it (1 at the lid's top; the filled skin has the photo's light): a closed lid
        # is a skin over the round eyeball under the brow bone: a soft shadow where it meets the socket (the
        # sulcus, about where the open eye's crease was: fixed to the face, as the fill is), a little light on its
        # middle, and turning away from the light down to the lashes. Each broad (a steeper shadow drew the open
        # eye's outline again), and all of it fading out toward the corners, inside the fill's own edge (shaded
        # out to that edge, the lid was a darker box on pale skin).
        t = s / closed_len
        shape = (1.0 - (1.0 - LID_TONE) * smoothstep(0.0, 0.4, v)
                 - SULCUS * torch.exp(-(((t - SULCUS_AT) / SULCUS_W) ** 2)) * (1.0 - u.clamp(-1.0, 1.0) ** 2)
                 + BULGE_FILLED * torch.exp(-(((v - BULGE_AT) / BULGE_W) ** 2))
                 - FILLED_SHADE * LOWER_DARK * smoothstep(0.6, 1.0, v))
        shape = 1.0 + (shape - 1.0) * (1.0 - smoothstep(SHADE_SIDE[0], SHADE_SIDE[1], u.abs()))
    # Until the lid is nearly shut, its margin is the photo's own (the lashes, a liner: `_lids` brings it down whole):
    # painted over from the start, a made-up eye lost its lash line at the blink's first frame.
    # (not at the corners, where the fill takes the open eye's outline away: a sliver of it read as a mark there)
    own_margin = (smoothstep(-margin - 0.5, -margin + 0.5, a) * (1.0 - smoothstep(*MARGIN_FADE, b))
                  * (1.0 - smoothstep(0.85, 1.0, u.abs())))
    cover = cover * smoothstep(0.05, 0.45, b) * (skin[:, 0] >= 0.0) * (1.0 - own_margin)
    # the filled skin has its grain made in (`lid_fill`); a painted one takes the skin's under the eye
    # (x 1.0 is exact: the filled skin's tone skips it)
    tone = shape * light if fill is not None else skin_grain(region, tex_dx, tex_dy) * shape * light
    c = cover[:, None]
    tone = tone.clamp(max=LID_BRIGHTEST)  # no glint: the skin's own light is its brightest
    region.mul_(1.0 - c).add_(c * colour * tone[:, None])
    # The crease: the lid meets the skin that stays, a soft shadow deepest just under it, less to the corners.
    crease_depth = CREASE if fill is None else CREASE_FILLED
    if crease_depth > 0.0:  # (none: x 1.0 everywhere)
        crease_w = 0.12 * closed_len + 0.6
        crease_at = 0.06 * closed_len - 0.5 * fold * b
        crease = (crease_depth * smoothstep(0.05, 0.6, b)
                  * torch.exp(-(((s - crease_at) / crease_w) ** 2)) * (1.0 - 0.6 * u.clamp(-1.0, 1.0) ** 2) * fade)
        region.mul_(1.0 - crease[:, None])
    # The lash line: the lid's margin, dark, lash_w thick above its edge; under it the lashes hang, a fringe as
    # long again, lighter, in strands where the eye is large enough to show them; on a coarse field grid the
    # fringe reaches a little further, over the warp's jump across the closed eye.
    # Its top edge is soft, the more so the thicker it is: closed lashes are a soft dark band, not a pencil line.
    soft = 0.5 + LASH_EDGE * lash_w
    at_edge = smoothstep(-0.5, 0.5, a)
    base = smoothstep(-lash_w - soft, -lash_w + soft, a) * (1.0 - at_edge)
    fringe_len = FRINGE_LEN * lash_w + 0.6 * (stride - 1)
    # the strands point down and out toward the outer corner (slant: u per pixel down)
    su = u - slant * a.clamp(min=0.0)  # the root of the strand through this pixel
    strands = 1.0 - STRAND_DEPTH * torch.sin(su * strand_k + 2.0 * torch.sin(su * 0.37 * strand_k)) ** 2
    fringe = (at_edge * (1.0 - smoothstep(0.0, fringe_len + 0.5, a)) * FRINGE * strands)
    alpha = (torch.maximum(base, fringe) * lash_a * smoothstep(0.05, 0.4, b) * fade)[:, None]
    region.mul_(1.0 - alpha).add_(alpha * lash_rgb)
    if rim is not None:  # the rim is in front of the lid: over all of it, where the head has moved it
        layer = _layer_at(rim, u, s)
        region.mul_(1.0 - layer[:, 3:4]).add_(layer[:, :3])


def skin_grain(region: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """The fine light and shade of the skin at (dx, dy) pixels from each pixel of region (N, 3, H, W): its luma
    over its GRAIN_PX neighbourhood's, within GRAIN_MIN..GRAIN_MAX; what passes them (a rim, a lash, a hair,
    a glint) is no skin's grain and reads 1. (N, H, W)."""
    h, w = region.shape[2:]
    luma = (0.299 * region[:, 0:1] + 0.587 * region[:, 1:2] + 0.114 * region[:, 2:3]).clamp(min=1e-3)
    ratio = luma / F.avg_pool2d(luma, GRAIN_PX, stride=1, padding=GRAIN_PX // 2, count_include_pad=False)
    ratio = torch.where((ratio < GRAIN_MIN) | (ratio > GRAIN_MAX), torch.ones_like(ratio), ratio)
    ys = torch.arange(h, dtype=region.dtype, device=region.device).view(1, h, 1)
    xs = torch.arange(w, dtype=region.dtype, device=region.device).view(1, 1, w)
    grid = torch.stack([(xs + dx) * (2.0 / max(w - 1, 1)) - 1.0, (ys + dy) * (2.0 / max(h - 1, 1)) - 1.0], dim=-1)
    grain = F.grid_sample(ratio, grid, mode="bilinear", padding_mode="border", align_corners=True)[:, 0]
    return grain ** GRAIN


def paint_roi(roi: torch.Tensor, lid: torch.Tensor, stride: int, box: tuple[int, int, int, int],
              look: LidLook | None = None) -> None:
    """The closed lid over roi (N, 3, H, W, 0..1, in place): lid (N, CHANNELS, lh, lw) from eye_offsets on the
    field grid over box's cells, drawn at pixel resolution (`paint_lid`)."""
    x0, y0, x1, y1 = box
    crop = paint_extent(lid, stride, x1 - x0, y1 - y0, look)
    if crop is None:
        return
    px0, py0, px1, py1 = crop
    _paint_cells(roi[:, :, y0 + py0 : y0 + py1, x0 + px0 : x0 + px1], lid, stride, crop, look)


def _paint_cells(region: torch.Tensor, lid: torch.Tensor, stride: int, crop: tuple[int, int, int, int],
                 look: LidLook | None) -> None:
    """paint_lid over region: the pixels crop (x0, y0, x1, y1) of the lid's box, whose fields lid holds on the
    field grid (upsampled here from only the cells those pixels read)."""
    px0, py0, px1, py1 = crop
    if stride > 1:
        # Bilinear (align_corners=False) pixel p reads cells floor((p + 0.5) / stride - 0.5) and the next: the
        # cells from k0 on give those pixels the same values as the whole box's upsampling does.
        ky0, kx0 = max(0, py0 // stride - 1), max(0, px0 // stride - 1)
        ky1, kx1 = min(lid.shape[2], (py1 - 1) // stride + 2), min(lid.shape[3], (px1 - 1) // stride + 2)
        lid = F.interpolate(lid[:, :, ky0:ky1, kx0:kx1], scale_factor=stride, mode="bilinear", align_corners=False)
        py0, py1, px0, px1 = py0 - ky0 * stride, py1 - ky0 * stride, px0 - kx0 * stride, px1 - kx0 * stride
    lid = lid[:, :, py0:py1, px0:px1]
    paint_lid(region, lid, stride, look.rim if look else None, look.fill if look else None,
              look.lash_slant if look else 0.0)


def paint_extent(lid: torch.Tensor, stride: int, width: int, height: int, look: LidLook | None
                 ) -> tuple[int, int, int, int] | None:
    """The pixels (x0, y0, x1, y1) of a lid's box (width x height) that its paint (lid: N, CHANNELS, lh, lw on
    the field grid) may change in any of its frames; None where none. Most of the box is padding for the head's
    motion: the lid of one frame covers a part of it, and painting only that part spares most of the per-pixel
    work. Each condition a painted pixel meets on one field (below the lash line's fringe, inside the fill's or
    the rim's layer, the fade) is met by one of the cells its bilinear upsampling reads (a convex combination
    of them), so the box of those cells, a cell wider on each side, holds every painted pixel. The whole box
    while tracing or compiling (a data-dependent crop would change the graph) or without a filled lid (the
    painted one's crease and grain reach further)."""
    whole = (0, 0, width, height)
    if (look is None or look.fill is None or CREASE_FILLED != 0.0 or capturing_graph()
            or lid.device.type != "cpu" or lid.requires_grad):
        return whole
    # (in numpy, on each field's least and most per row and per column: a few dozen small tensor ops took longer
    # than the pixels they spared on a small face)
    fields = lid.numpy()
    u, a, s = (_Extremes(fields[:, i]) for i in range(3))
    u_abs = _Extremes(np.abs(fields[:, 0]))
    eps = 1e-3  # the upsampling's rounding
    lash_w = float(fields[:, 5].max())
    # The lash line: from lash_w and its soft edge above the lid's edge down to the fringe's end, inside the fade.
    a_lo = -lash_w * (1.0 + LASH_EDGE) - 0.5 - eps
    a_hi = FRINGE_LEN * lash_w + 0.6 * (stride - 1) + 0.5 + eps
    parts = [_meet(u_abs.below(1.35 + eps), a.above(a_lo), a.below(a_hi))]
    # The filled skin: inside its layer's alpha, down to the lid's edge; the rim: inside its layer's alpha.
    for layer, edge in ((look.fill, 0.5 + 0.5 * (stride - 1) + eps), (look.rim, None)):
        if layer is not None:
            u0, u1, s0, s1 = layer.support
            part = _meet(u.above(u0 - eps), u.below(u1 + eps), s.above(s0 - eps), s.below(s1 + eps))
            parts.append(part if edge is None else _meet(part, a.below(edge)))
    cells = _join(*parts)
    if cells is None:
        return None
    (cy0, cx0, cy1, cx1), k = cells, stride  # the cells' box, grown by a cell: the pixels that read them
    box = (max(0, (cx0 - 1) * k), max(0, (cy0 - 1) * k), min(width, (cx1 + 2) * k), min(height, (cy1 + 2) * k))
    return box if box[0] < box[2] and box[1] < box[3] else None


class _Extremes:
    """One lid field (N, h, w) by its least and most value in each row and column over all frames: the box
    (y0, x0, y1, x1, inclusive) of the cells where it is above or below a value, or None where none."""

    def __init__(self, x: np.ndarray) -> None:
        self.rows = x.min(axis=(0, 2)), x.max(axis=(0, 2))
        self.cols = x.min(axis=(0, 1)), x.max(axis=(0, 1))

    def above(self, t: float) -> tuple[int, int, int, int] | None:
        return _box(self.rows[1] > t, self.cols[1] > t)

    def below(self, t: float) -> tuple[int, int, int, int] | None:
        return _box(self.rows[0] < t, self.cols[0] < t)


def _box(rows: np.ndarray, cols: np.ndarray) -> tuple[int, int, int, int] | None:
    r, c = np.flatnonzero(rows), np.flatnonzero(cols)
    return None if len(r) == 0 else (int(r[0]), int(c[0]), int(r[-1]), int(c[-1]))


def _meet(*boxes: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
    """The intersection of cell boxes, each first grown by a cell (the pixels next to a cell read it)."""
    if any(b is None for b in boxes):
        return None
    y0, x0 = max(b[0] - 1 for b in boxes) + 1, max(b[1] - 1 for b in boxes) + 1  # type: ignore[index]
    y1, x1 = min(b[2] + 1 for b in boxes) - 1, min(b[3] + 1 for b in boxes) - 1  # type: ignore[index]
    return (y0, x0, y1, x1) if y0 - 1 <= y1 + 1 and x0 - 1 <= x1 + 1 else None


def _join(*boxes: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
    """The box around cell boxes."""
    some = [b for b in boxes if b is not None]
    if not some:
        return None
    return min(b[0] for b in some), min(b[1] for b in some), max(b[2] for b in some), max(b[3] for b in some)


def paint_u8(out: np.ndarray, lid: np.ndarray, stride: int, box: tuple[int, int, int, int],
             look: LidLook | None = None) -> None:
    """paint_roi on uint8 (N, H, W, 3) pictures (in place; N frames at once: a window's blinking frames share
    each step), lid (N, CHANNELS, lh, lw), box in out's pixels."""
    x0, y0, x1, y1 = box
    fields = torch.from_numpy(np.ascontiguousarray(lid))
    crop = paint_extent(fields, stride, x1 - x0, y1 - y0, look)
    if crop is None:
        return
    px0, py0, px1, py1 = crop
    region = out[:, y0 + py0 : y0 + py1, x0 + px0 : x0 + px1]
    pic = torch.from_numpy(region.astype(np.float32)).permute(0, 3, 1, 2).mul_(1.0 / 255.0)
    _paint_cells(pic, fields, stride, crop, look)
    region[:] = pic.permute(0, 2, 3, 1).mul_(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8).numpy()


def shaded(blink: float) -> bool:
    """Whether a frame's lid paint changes any pixel (its every part starts past a blink of 0.05)."""
    return blink > 0.05


def band_top(eye: Eye, us: np.ndarray) -> np.ndarray:
    """The top of the lid's moving skin at u (face frame y), as `_lids` draws it: eye.reach, but never less than
    the lid's margin and a pixel."""
    uc = np.clip(us, -1.0, 1.0)
    top = lid_curve(eye, us, eye.upper)
    h = np.maximum(lid_curve(eye, us, eye.lower), top) - top
    r = eye.reach
    return top - np.maximum(r[0] + uc * (r[1] + uc * r[2]), np.maximum(0.3 * h, 0.75) + 1.0)
