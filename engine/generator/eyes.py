"""The eyes: blink, gaze and brow offsets of one eye, the closed lid's paint, and where the lid's skin ends.

A blink as a viewer reads it (Live2D practice, Trutoiu et al. 2011): the upper lid's skin comes down over
the eye; it is not the eye squeezed. Per column of the eye, in the face's upright frame (rig.FaceFrame):
- the lashes and the skin just above them (the lid's margin) translate down, unchanged, to the closed line;
- the skin between them and the lid's fold stretches to follow: it unfolds, as the hidden part of a real
  lid does. That stretch stops where the picture darkens again above the lashes, or at a strong edge
  (`lid_reach`), measured on the photo once: the fold, an eyebrow or a glasses' rim stays where it is, so
  a rim above the lid stays straight (one lying across the lid itself still bends: not handled);
- nothing of the eye itself (iris, sclera) is sampled under the lid; the lower lid rises a little;
- the closed lid is painted (`paint_roi` / `paint_u8`, after the warp): the few pixels of skin an open lid
  shows are often its reddened margin, a lash's shadow or a sliver between lashes and a rim, and spread
  over the whole eye they read as a swollen lid or a smear; so the closed lid takes the colour of the
  skin around the eye (`lid_colour`, measured once), keeping only the warped lid's row-wise light and
  shade (its creases, not a vertical smear), with a lash line along its edge (at least a field cell wide,
  so it does not alias on a coarse grid), a slight shadow over its lower half and a soft one under the fold.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from engine.generator.rig import Eye, FaceFrame, RigGeometry, lid_curve
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
LID_TONE = 1.0  # the closed lid's skin against the brighter skin above it (1.06 read as a pale patch, 0.94 as a bruise)
FOLD_DROP = 24.0  # luma levels below the skin's brightest past the lashes: the lid's fold, a rim, the brow
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
    box), and the closed lid's paint over `cells` ((N, 5, ...): shading gain, skin cover, skin RGB; `paint_roi`;
    None where no frame of the window blinks). cells: the part of the box where the lids and the eye can move
    (`blink_cells`): the brow's
    field covers the box, theirs only that part."""
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
    0.3 half-widths below), 1.35 half-widths either side, padded by `margin` pixels for the head's motion."""
    us = np.linspace(-1.0, 1.0, 41)
    top = lid_curve(eye, us, eye.upper)
    bottom = np.maximum(lid_curve(eye, us, eye.lower), top)
    r = eye.reach
    reach = np.maximum(r[0] + us * (r[1] + us * r[2]), np.maximum(0.3 * (bottom - top), 0.75) + 1.0)
    bx0, by0, bx1, by1 = frame.box_to_image((eye.cx - 1.35 * eye.half_w - margin, float((top - reach).min()) - margin,
                                             eye.cx + 1.35 * eye.half_w + margin,
                                             float(bottom.max()) + 0.3 * eye.half_w + margin))
    ys, xs = box
    h, w = min(ys.stop, grid[0]) - ys.start, min(xs.stop, grid[1]) - xs.start
    y0, x0 = max(0, math.floor(by0 / stride) - 1 - ys.start), max(0, math.floor(bx0 / stride) - 1 - xs.start)
    return (slice(min(y0, h), max(min(y0, h), min(h, math.ceil(by1 / stride) + 2 - ys.start))),
            slice(min(x0, w), max(min(x0, w), min(w, math.ceil(bx1 / stride) + 2 - xs.start))))


def _lids(eye: Eye, c: torch.Tensor, blink: torch.Tensor, qx: torch.Tensor,
          qy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """eye_offsets' gaze and blink, over the cells where they act."""
    cell = float(torch.hypot(qx[0, 0, 1] - qx[0, 0, 0], qy[0, 0, 1] - qy[0, 0, 0])) if qx.shape[2] > 1 else 1.0
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
    # the blink whatever its example's controls).
    if not torch.jit.is_tracing() and not bool((blink > 0).any()):
        return ox, gy, None
    # Blink: a piecewise-linear map per column (output y -> source y), the identity when open.
    margin = torch.clamp(0.3 * h, min=0.75)  # lashes + the lid's margin: translated whole
    reach = torch.maximum(r[0] + uc * (r[1] + uc * r[2]), margin + 1.0)  # the lid's skin above its margin
    stop = top - reach  # above this nothing moves
    closed = bottom - 0.12 * h  # where the lids meet
    d = blink * (closed - top)  # how far the lid's margin has come down
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
    # Shading: a lash line along the lid's edge, darker as the lashes gather on a closing lid (thinning toward
    # the corners, not stopping short of them), the lid's lower half a little darker (it curves away from the
    # light), and a soft shadow under the fold, where the lid meets the skin that stays.
    line_w = torch.clamp(0.16 * h, min=max(1.0, 1.1 * cell))  # a line thinner than the field's cells would alias
    corner = 1.0 - 0.6 * smoothstep(0.6, 1.0, u.abs())
    lash = torch.exp(-(((qy - (edge - 0.5 * line_w)) / line_w) ** 2)) * corner * fade
    shade_from = stop + 0.4 * (edge - stop)
    lid = (smoothstep(shade_from, torch.maximum(edge - 0.5 * line_w, shade_from + 0.5), qy) * (qy < edge)
           * (qy >= stop) * fade)
    fold_w = torch.clamp(0.2 * (edge - stop), min=0.8)
    fold = torch.exp(-(((qy - stop - 0.5 * fold_w) / fold_w) ** 2)) * fade
    # The lid over the eyeball is rounded: it turns from the light toward the corners.
    round_ = (uc * uc) * (qy >= stop) * (qy < edge) * fade
    gain = 1.0 - blink * blink * (0.7 * lash + 0.06 * lid + 0.1 * fold + 0.12 * round_)
    # The lid's skin: what the warp brought down is the few pixels of skin the open lid shows, often its
    # reddened margin or a lash's shadow, stretched; the closed lid is painted the colour of the skin around
    # it (`lid_colour`), keeping the warped picture's own fine detail (`paint`). Full over the lid, fading
    # into the still skin above its fold; on a coarse field grid a cell more below the lids' meeting line, where
    # the map's jump from above the upper lid to below the lower one samples the lashes in between.
    cover = (smoothstep(stop, stop + torch.clamp(0.3 * (edge - stop), max=2.5) + 0.5, qy)
             * (1.0 - smoothstep(edge - 0.25 * line_w, edge + 0.5 * line_w + 1.2 * (cell - 1.0), qy)) * fade
             * smoothstep(0.05, 0.45, blink) * (0.0 if eye.lid_rgb is None else 1.0))
    rgb = torch.tensor(eye.lid_rgb or (0.0, 0.0, 0.0), dtype=qy.dtype).view(1, 3, 1, 1).expand(qy.shape[0], 3,
                                                                                                *qy.shape[1:])
    lid_paint = torch.cat([gain[:, None], cover[:, None], rgb], dim=1)
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


# How much of the warped lid's own light and shade the painted skin keeps (1: all of it), and of which: its rows'
# (a lid's creases run along it) over their DETAIL_H x DETAIL_W px neighbourhood, not its columns (a lid's skin
# spread from a few rows changes only across: a vertical smear), within DETAIL_MIN..DETAIL_MAX.
PAINT_DETAIL, DETAIL_H, DETAIL_W, DETAIL_MIN, DETAIL_MAX = 0.6, 5, 9, 0.85, 1.15


def paint_roi(roi: torch.Tensor, lid: torch.Tensor, stride: int, box: tuple[int, int, int, int]) -> None:
    """The closed lid over roi (N, 3, H, W, 0..1, in place): lid (N, 5, lh, lw) from eye_offsets on the field
    grid over box's cells: shading gain, skin cover, skin RGB. out = gain * mix(out, skin * detail, cover),
    detail: the warped picture's rows' luma over their local mean (its creases, not its colour nor a smear)."""
    x0, y0, x1, y1 = box
    if stride > 1:
        lid = F.interpolate(lid, scale_factor=stride, mode="bilinear", align_corners=False)
    lid = lid[:, :, : y1 - y0, : x1 - x0]
    region = roi[:, :, y0 : y0 + lid.shape[2], x0 : x0 + lid.shape[3]]
    luma = (0.299 * region[:, 0:1] + 0.587 * region[:, 1:2] + 0.114 * region[:, 2:3]).clamp(min=1e-3)
    rows = F.avg_pool2d(luma, (1, DETAIL_W), stride=1, padding=(0, DETAIL_W // 2), count_include_pad=False)
    local = F.avg_pool2d(luma, (DETAIL_H, DETAIL_W), stride=1, padding=(DETAIL_H // 2, DETAIL_W // 2),
                         count_include_pad=False)
    detail = (rows / local).clamp(DETAIL_MIN, DETAIL_MAX) ** PAINT_DETAIL
    cover = lid[:, 1:2]
    region.mul_(1.0 - cover).add_(cover * lid[:, 2:5] * detail).mul_(lid[:, 0:1])


def paint_u8(out: np.ndarray, lid: np.ndarray, stride: int, box: tuple[int, int, int, int]) -> None:
    """paint_roi on one uint8 H x W x 3 picture (in place): lid (5, lh, lw), box in out's pixels."""
    x0, y0, x1, y1 = box
    planes = [cv2.resize(p, None, fx=stride, fy=stride, interpolation=cv2.INTER_LINEAR) if stride > 1 else p
              for p in lid]
    gain, cover, *rgb = (p[: y1 - y0, : x1 - x0] for p in planes)
    region = out[y0 : y0 + gain.shape[0], x0 : x0 + gain.shape[1]]
    pic = region.astype(np.float32)
    luma = np.maximum(pic @ np.array([0.299, 0.587, 0.114], np.float32), 0.255)
    rows = cv2.blur(luma, (DETAIL_W, 1), borderType=cv2.BORDER_REFLECT)
    local = cv2.blur(luma, (DETAIL_W, DETAIL_H), borderType=cv2.BORDER_REFLECT)
    detail = np.clip(rows / local, DETAIL_MIN, DETAIL_MAX) ** PAINT_DETAIL
    skin = np.stack(rgb, axis=-1) * (255.0 * detail)[..., None]
    c = cover[..., None]
    region[:] = np.clip((pic * (1.0 - c) + c * skin) * gain[..., None] + 0.5, 0, 255).astype(np.uint8)


def shaded(blink: float) -> bool:
    """Whether a frame's lid shading or paint changes any pixel (under half a level at 255 they do not)."""
    return blink * blink * 0.9 * 255 >= 0.5 or blink > 0.05


def lid_colour(rgb: np.ndarray, eye: Eye, frame: FaceFrame) -> tuple[float, float, float]:
    """The closed lid's skin colour (RGB 0..1): the skin between the upper lid and the brow, over the eye's
    middle, leaving out what is darker (lashes, the fold's shadow, a rim, the brow) or brighter (a glint,
    a lens's reflection) than most of it; a little darker than that skin, as a closed lid sits in the orbit."""
    us = np.linspace(-0.7, 0.7, 15)
    top = lid_curve(eye, us, eye.upper)
    span = max(float(np.median(top)) - eye.y_brow, 2.0)
    rows = np.linspace(0.15, 1.0, 18) * span
    fx, fy = np.broadcast_arrays((eye.cx + us * eye.half_w)[None], top[None] - rows[:, None])
    ix, iy = frame.to_image(fx, fy)
    px = cv2.remap(rgb, ix.astype(np.float32), iy.astype(np.float32), cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_REPLICATE).reshape(-1, 3).astype(np.float64)
    luma = px @ np.array([0.299, 0.587, 0.114])
    # Its lightness from the brighter skin (the fold's shadow and the brow pull a median down), its hue from
    # all of the skin's middle tones (the brightest skin is the least saturated: the light's own colour).
    lo, mid, hi = np.percentile(luma, (40, 60, 93))
    light = float(np.median(luma[(luma >= mid) & (luma <= hi)]))
    tones = (luma >= lo) & (luma <= hi)
    hue = np.median(px[tones] / np.maximum(luma[tones, None], 1.0), axis=0)
    return tuple(float(v) for v in np.clip(hue * light * LID_TONE / 255.0, 0.0, 1.0))  # type: ignore


def measure_lids(rig: RigGeometry, rgb: np.ndarray, landmarks: np.ndarray) -> RigGeometry:
    """The rig with each eye's lid reach and closed lid colour measured on the photo and the mesh the rig was
    built on."""
    lm = np.asarray(landmarks, np.float64)[:, :2]
    face = np.stack(rig.frame.to_face(lm[:, 0], lm[:, 1]), axis=1)
    eyes = tuple(dataclasses.replace(e, reach=lid_reach(rgb, e, rig.frame, face[list(brow)]),
                                     lid_rgb=lid_colour(rgb, e, rig.frame))
                 for e, brow in zip(rig.eyes, BROW_LOWER, strict=True))
    return dataclasses.replace(rig, eyes=eyes)  # type: ignore[arg-type]
