"""The warp generator: animates one portrait photo with a dense backward warp of the head region.

`WarpRenderer` is a torch.nn.Module: controls for N frames -> N frames, batched. Only the head's
region of interest is warped: there the person, as a layer with its matte, moves over a background
plate made once at prepare (engine.generator.matte), so the background never moves; the rest of the
picture is the still portrait.
"""

from __future__ import annotations

import math
import time
from typing import TypeVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.generator.avatar import PreparedAvatar
from engine.generator.capture import capturing_graph
from engine.generator.cheeks import Cheek, cheek_box, cheek_offsets, cheeks, wears_glasses
from engine.generator.eyes import blink_cells, eye_offsets, paint_roi, paint_u8, shade_box, shaded
from engine.generator.folds import TINT, Fold, fold_box, fold_shade, fold_table, folds
from engine.generator.frame_line import frame_lines, line_slices, without_frame_lines
from engine.generator.head_motion import depth_proxy, head_split_for, head_weight, jaw_line, pivot, sample, turn_share
from engine.generator.lid_fill import measure_lids
from engine.generator.matte import person_layer
from engine.generator.mouth import JAW_REACH, UPPER_SHARE, MouthRig, lip_gap, mouth_palette, own_teeth
from engine.generator.person_alpha import picture_alpha, still_alpha
from engine.generator.rest_pose import CLOSED_GAP, PHOTO_SMILE_SHARE, RestPose, photo_smile_jaw
from engine.generator.rig import RigGeometry, build_rig
from engine.types import N_CONTROLS, Control, FirstFrame, MotionWindow, RenderedWindow
from kernels.warp import warp_composite
from kernels.warp_bands import MIN_BOX_PX, LayerReach
from kernels.warp_cv2 import remap_composite, upsample
from kernels.warp_triton import triton_available, warp_composite_triton

__all__ = ["WarpGenerator", "WarpRenderer", "fold", "mouth_palette", "smoothstep"]

T = TypeVar("T", np.ndarray, torch.Tensor)


# Faces narrower than this (px) are resampled bicubic, not bilinear. An idle head moves by fractions of a pixel, and
# bilinear at a half-pixel phase averages two rows: on hopper_lowres_160 (61 px) the closed lips' seam drops from 81 to
# 63 grey levels deep, the face softens and sharpens as the head sways, and the face mesh reads lips apart in silence
# (38 of 895 silent frames over idle seeds 0-4, against 10 bicubic). Larger faces keep bilinear: their features span
# more pixels, and a bicubic remap costs 1.5-2.5x (the 512x512 astronaut, 92 px, stays under the cost target).
SHARP_FACE_W = 90.0
MOUTH_STEP = 2  # field samples between the points the mouth's offsets are solved on: see WarpRenderer._mouth_offsets
# A fold's shade under this share changes no byte (255 x it < 0.5): the byte path leaves those pixels alone.
FOLD_NONE = 0.0015


# Talking, for a smile that parts the lips (`WarpRenderer.expressed`): a hold of the jaw that halves every
# TALK_HALF_LIFE frames outlasts the dips between syllables (2-6 frames) and lets the smile's lips part again about
# 0.6 s after the voice stops; it counts as talking from TALK_JAW[0] to TALK_JAW[1] (jaw units).
TALK_HALF_LIFE = 8.0
TALK_JAW = (0.05, 0.3)


def talking_hold(jaw: np.ndarray, start: float) -> tuple[np.ndarray, float]:
    """(talking (N,) 0..1 per frame, the hold after the last frame) for the jaw (N,), from the previous window's
    hold `start`."""
    decay = 0.5 ** (1.0 / TALK_HALF_LIFE)
    hold, held = np.empty(len(jaw), np.float32), float(start)
    for i, j in enumerate(jaw):
        held = max(float(j), held * decay)
        hold[i] = held
    t = np.clip((hold - TALK_JAW[0]) / (TALK_JAW[1] - TALK_JAW[0]), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t), held


def _odd(sl: slice, n: int) -> slice:
    """sl (a slice of range(n), from 0 up) one longer where it has an even length and range(n) has room."""
    start, stop = sl.start, min(sl.stop, n)
    if (stop - start) % 2 == 1:
        return slice(start, stop)
    if stop < n:
        return slice(start, stop + 1)
    return slice(start - 1, stop) if start > 0 else slice(start, stop)


def mirrored(img: np.ndarray, at_edge: tuple[tuple[bool, bool], tuple[bool, bool]], reach: int
             ) -> tuple[np.ndarray, tuple[int, int]]:
    """img with `reach` pixels of its own mirror image (`fold`) beyond the sides that are the picture's edges
    (`WarpRenderer.at_edge`), and its first pixel's place in it (x, y). A map shifted by that place reads it as the
    map folded back at those sides reads img (OpenCV's remap, on the other sides, repeats the last pixel: "border"), up
    to `reach` pixels past them, without a pass over the map to fold it."""
    (left, right), (top, bottom) = at_edge
    reach = min(reach, *img.shape[:2]) - 1
    top_px, bottom_px, left_px, right_px = (reach * side for side in (top, bottom, left, right))
    return cv2.copyMakeBorder(img, top_px, bottom_px, left_px, right_px, cv2.BORDER_REFLECT_101), (left_px, top_px)


def smoothstep(e0: float | torch.Tensor, e1: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    t = torch.clamp((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def fold(v: T, lo: float | None, hi: float | None) -> T:
    """Source coordinates v (a map's x or y) mirrored back at lo and at hi (None: that side is left as it is).

    Where the head's box ends at the picture's edge, a head moving away from it reads the layer past the edge. Clamped
    there, the last row or column repeats as streaks as long as the motion (30 px at pedersen_tilted's brow); mirrored,
    the hair or skin beside the edge goes on as hair or skin."""
    if lo is not None:
        v = lo + abs(v - lo)
    if hi is not None:
        v = hi - abs(hi - v)
    return v


class WarpRenderer(nn.Module):
    """(N, N_CONTROLS) controls -> (N, H, W, 3) uint8 frames of the prepared portrait.

    Only the head's box is warped. The backward map (output pixel -> portrait pixel) is built on
    a field grid, coarser than the pixels for large faces (fields are smooth), from a rigid head
    motion over the whole box plus expression fields computed only inside the mouth and eye
    boxes, where they are non-zero.
    """

    def __init__(self, avatar: PreparedAvatar, field_px_per_face: float = 120.0) -> None:
        super().__init__()
        rig = measure_lids(build_rig(avatar.landmarks), avatar.rgb, avatar.landmarks)
        matte, plate = avatar.matte, avatar.plate
        if matte is None or plate is None:  # an avatar made without prepare_avatar: make its layer now
            matte, plate = person_layer(avatar.rgb, avatar.landmarks)
        split = head_split_for(avatar.landmarks, avatar.rgb, matte, plate, avatar.head)  # made at prepare
        part, backdrop, hair, self.roi = split.part, split.backdrop, split.hair, split.roi  # cropped to the roi
        x0, y0, x1, y1 = self.roi
        rw, rh = x1 - x0, y1 - y0
        h, w = avatar.rgb.shape[:2]
        # Which of the box's sides (left, right; top, bottom) are the picture's edges: there the map is folded back.
        self.at_edge = ((x0 == 0, x1 == w), (y0 == 0, y1 == h))
        self.g: RigGeometry = rig.shifted(x0, y0)
        self.stride = max(1, round(rig.face_w / field_px_per_face))
        self.bicubic = rig.face_w < SHARP_FACE_W
        # A field sample stands for a stride x stride cell, at its centre: where cv2.resize and
        # interpolate(align_corners=False) put it when upsampling. The last cells may pass the box. With
        # a stride, one more sample on every side, so that the box's edge pixels are interpolated, not
        # clamped half a cell off: the still frame is then the photo up to the box's very edge.
        s = self.stride
        self.pad = pad = 1 if s > 1 else 0
        gx = (torch.arange(math.ceil(rw / s) + 2 * pad, dtype=torch.float32) - pad) * s + (s - 1) / 2
        gy = (torch.arange(math.ceil(rh / s) + 2 * pad, dtype=torch.float32) - pad) * s + (s - 1) / 2
        self.register_buffer("portrait", torch.from_numpy(avatar.rgb.copy()), persistent=False)
        # The person as a premultiplied layer (colour x alpha, alpha) over a still background plate: the
        # head moves its layer, and wherever it uncovers the background the plate shows, not dragged wall.
        # A frame line along the picture's edge (a scan's border) stays at the edge: the layer moves without it, and
        # each frame gets the photo's own line back (`frame_line`).
        (left, right), (top, bottom) = self.at_edge
        lines = frame_lines(avatar.rgb)
        at = (lines[0] * left, lines[1] * top, lines[2] * right, lines[3] * bottom)  # those along the box's sides
        self.frame_line_px = line_slices(at, self.roi, (w, h))
        self.layer_u8 = without_frame_lines(split.layer, at)
        # The layer as OpenCV's remap reads it (WarpGenerator._frames): mirrored past the picture's edges, as far as
        # half a face (a head turned or nodded reads 0.2 of one past them; the jaw less).
        self.mirror_reach = math.ceil(0.5 * rig.face_w)
        self.layer_mirrored, self.mirror_at = mirrored(self.layer_u8, self.at_edge, self.mirror_reach)
        # ... and where it is clear or solid (kernels.warp_bands: the byte path remaps a large box by bands).
        self.reach = LayerReach(self.layer_u8[..., 3]) if rw * rh >= MIN_BOX_PX else None
        self.plate_u8 = np.ascontiguousarray(backdrop)
        # What of the person stays still in the box (shoulders, a second figure): keyed outputs need it under the
        # moved head (WarpGenerator._alpha_frames).
        self.still_part = ~part
        layer = torch.from_numpy(self.layer_u8.astype(np.float32) / 255.0).permute(2, 0, 1)
        self.register_buffer("roi_src", layer.contiguous(), persistent=False)
        plate_t = torch.from_numpy(self.plate_u8.astype(np.float32) / 255.0).permute(2, 0, 1)
        self.register_buffer("plate", plate_t.contiguous(), persistent=False)
        Y, X = torch.meshgrid(gy, gx, indexing="ij")
        self.register_buffer("X", X[None].contiguous(), persistent=False)  # (1, fh, fw) ROI pixel coords
        self.register_buffer("Y", Y[None].contiguous(), persistent=False)
        g = self.g
        hx, hy = split.hair_origin
        weight = head_weight(g, X, Y, jaw_line(avatar.landmarks, x0, y0), sample(hair, X, Y, x0 - hx, y0 - hy))
        self.register_buffer("head_mask", weight[None], persistent=False)
        # Pixels per degree of yaw and of pitch at each point: a shift that the head's outline takes a third of
        # (`turn_share`), plus depth parallax (more at the nose).
        parallax = 0.5 * g.face_w * (math.pi / 180.0) * depth_proxy(g, X, Y)[None]
        share = turn_share(g, X, Y)[None]
        self.register_buffer("yaw_px", 0.012 * g.face_rx * share + parallax, persistent=False)
        self.register_buffer("pitch_px", 0.01 * g.face_ry * share + parallax, persistent=False)
        px, py = pivot(g)  # field coordinates relative to the roll's pivot
        self.register_buffer("Xp", self.X - px, persistent=False)
        self.register_buffer("Yp", self.Y - py, persistent=False)
        # The head's map is a sum of these still fields, each weighted per frame (`_pose_weights`): one matrix product
        # draws it for a whole window. Drawn term by term, its ~20 passes over (N, fh, fw) tensors were 40% of a frame's
        # cost at 512x512 in windows of 8 (tensors of a window outgrow the cache).
        moved = [self.head_mask * f for f in (self.Xp, self.Yp, self.yaw_px, self.pitch_px, torch.ones_like(self.X))]
        basis = torch.cat([*moved, self.X, self.Y])  # (7, fh, fw)
        self.register_buffer("pose_basis", basis.flatten(1).contiguous(), persistent=False)
        # t (`_pose_weights`) from (yaw, pitch, breath): a turn moves the face along its own left-right axis and a nod
        # along its own up-down one (on a tilted face those are not the photo's: rig.FaceFrame); breathing lifts the
        # head straight up. Rows: yaw, pitch, breath; columns: t's x then y, each on yaw_px, pitch_px and 1.
        cf, sf = (1.0, 0.0) if g.frame.upright else (g.frame.cos, g.frame.sin)
        turn = [[-cf, 0.0, 0.0, sf, 0.0, 0.0], [0.0, -sf, 0.0, 0.0, -cf, 0.0],
                [0.0, 0.0, 0.0, 0.0, 0.0, 0.012 * g.face_ry]]
        self.register_buffer("pose_turn", torch.tensor(turn, dtype=torch.float32), persistent=False)
        self.register_buffer("pose_eye", torch.eye(2), persistent=False)
        # Head motion moves the face a few pixels: the expression boxes are padded by that much.
        margin = 0.12 * g.face_w
        self.mouth_slices = self._slices(g.mouth_box(rw, rh, margin))
        self.eye_slices = [self._slices(g.eye_box(e, rw, rh, margin)) for e in g.eyes]
        self.cheeks: tuple[Cheek, ...] = () if wears_glasses(avatar.rgb, avatar.landmarks) else cheeks(g)
        self.cheek_slices = [tuple(_odd(sl, n) for sl, n in zip(self._slices(cheek_box(g, c, rw, rh, margin)),
                                                                self.X.shape[1:], strict=True))
                             for c in self.cheeks]
        # A smile's nasolabial folds (`shade_folds`): the pixels that can show them, padded by the head's motion.
        self.folds: tuple[Fold, ...] = folds(avatar.landmarks, self.g.frame, (x0, y0))
        self.fold_boxes_px = [fold_box(f, self.g.frame, rw, rh, margin) for f in self.folds]
        # The byte path reads each fold's shading from a table over the photo (`folds.fold_table`) through the map,
        # every k-th pixel on a large face (at the centres of k x k cells, k odd), and upsamples: the shading is
        # smooth (its crease 0.08 mouth half-widths wide), and a 400 px face's padded boxes cost ~5 ms a frame at
        # every pixel.
        self.fold_tables = [fold_table(f, self.g.frame, rw, rh) for f in self.folds]
        self.fold_step = s if s % 2 else s - 1
        rest = avatar.rest
        gap = lip_gap(avatar.landmarks)
        if rest is None and gap >= CLOSED_GAP:  # the photo's expression kept: its own teeth, where they are
            rest = RestPose(avatar.rgb, avatar.landmarks, gap)
        teeth = None if rest is None else own_teeth(rest.teeth_colour(), rest.photo, rest.landmarks)
        self.palette = mouth_palette(avatar.rgb, avatar.landmarks, teeth)
        # A photo that smiled with its lips apart smiles as it did (`expressed`); not one kept as it was (its rest is
        # that smile already).
        self.smile_jaw = photo_smile_jaw(avatar.rest)
        # The mouth is drawn in the face's upright frame (rig.FaceFrame), as the eyes are.
        self.mouth = MouthRig(avatar.landmarks, (x0, y0), self.palette,
                              None if rest is None or teeth is None else (rest.photo, rest.landmarks), frame=rig.frame)
        # The mouth's interior is drawn over the box the opening can reach, padded by the head's motion
        # (`mouth_box_px`, in ROI pixels).
        m = self.mouth
        # The neck under a dropped jaw takes it up over `m.neck`: the jaw's box reaches that far down.
        below = m.chin_y + m.neck - (g.chin_y + 0.95 * (g.chin_y - g.mouth_y))
        if below > 0:
            bx0, by0, bx1, by1 = g.mouth_box(rw, rh, margin)
            self.mouth_slices = self._slices((bx0, by0, bx1, min(rh, by1 + math.ceil(below))))
        # An odd number of samples each way (a sample more where the grid has it): `_mouth_offsets` solves every
        # MOUTH_STEP-th one, from the first to the last.
        self.mouth_slices = tuple(_odd(sl, n) for sl, n in zip(self.mouth_slices, self.X.shape[1:], strict=True))
        u = torch.linspace(-1.0, 1.0, 21)
        top, bottom = float(m.upper.y(u).min()), float(m.lower.y(u).max())
        reach = 1.2 * m.hw + margin  # a mouth widened to the full: its corners pulled out by ~17%
        bx0, by0, bx1, by1 = g.frame.box_to_image((m.cx - reach, top - 0.25 * m.mw - margin, m.cx + reach + 1,
                                                   bottom + (JAW_REACH * (1 - UPPER_SHARE) + 0.12) * m.mw + margin + 1))
        self.cavity_slices = self._slices((max(0, int(bx0)), max(0, int(by0)), min(rw, int(bx1) + 1),
                                           min(rh, int(by1) + 1)))
        ys, xs = self.cavity_slices  # the same box in pixels: the cells of those field samples
        self.mouth_box_px = ((xs.start - pad) * s, (ys.start - pad) * s, min(rw, (min(xs.stop, len(gx)) - pad) * s),
                             min(rh, (min(ys.stop, len(gy)) - pad) * s))
        # Faces drawn at an even stride (small ones) get their interior at half of it: a field cell there
        # is a large share of a tooth.
        self.overlay_stride = s // 2 if s % 2 == 0 else s
        # The lids' cells in each eye box, padded further: a head turned or nodded past `margin` still blinks
        # whole; and their pixels, where the closed lid is shaded. (Cells counted without the grid's padding.)
        unpadded = [(slice(ys.start - pad, ys.stop - pad), slice(xs.start - pad, xs.stop - pad))
                    for ys, xs in self.eye_slices]
        self.lid_cells = [blink_cells(e, g.frame, sl, s, 1.6 * margin, (len(gy) - pad, len(gx) - pad))
                          for e, sl in zip(g.eyes, unpadded, strict=True)]
        self.lid_boxes_px = [shade_box((slice(ys.start + cy.start, ys.start + cy.stop),
                                        slice(xs.start + cx.start, xs.start + cx.stop)), s, rw, rh)
                             for (ys, xs), (cy, cx) in zip(unpadded, self.lid_cells, strict=True)]

    def shade_folds(self, roi: np.ndarray, xy: np.ndarray, smile: float) -> None:
        """The smile's folds (`folds`) over one frame's roi (rh, rw, 3 uint8, in place), whose byte-path map is xy
        (rh, rw, 2, in the mirrored layer: `mirror_at`): each fold's table read through the map over its box, as the
        float path's `fold_shade` reads the map's points."""
        k = self.fold_step
        mx, my = self.mirror_at
        gain = np.float32([[-smile * tint, 1.0] for tint in TINT])  # per channel: 1 - smile TINT dark
        for t, (bx0, by0, bx1, by1) in zip(self.fold_tables, self.fold_boxes_px, strict=True):
            # (cv2's subtract: numpy's, over a view whose last axis is 2 long, took 5-10x as long)
            at = cv2.subtract(xy[by0 + k // 2 : by1 : k, bx0 + k // 2 : bx1 : k], (mx + t.x0, my + t.y0, 0.0, 0.0))
            dark = cv2.remap(t.table, at, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            # Only over the samples that change a byte (the box is padded for the head's motion; the crease and its
            # shade cover a fraction of it), and the one beyond on each side (upsampling reads it).
            shaded = dark > FOLD_NONE / smile
            rows, cols = np.flatnonzero(shaded.any(axis=1)), np.flatnonzero(shaded.any(axis=0))
            if not len(rows):
                continue
            r0, r1 = max(0, int(rows[0]) - 1), int(rows[-1]) + 2
            c0, c1 = max(0, int(cols[0]) - 1), int(cols[-1]) + 2
            dark = dark[r0:r1, c0:c1]
            if k > 1:  # (sample j's centre is the box's pixel k j + k // 2, where cv2.resize puts it)
                dark = cv2.resize(dark, (dark.shape[1] * k, dark.shape[0] * k), interpolation=cv2.INTER_LINEAR)
            part = roi[by0 + r0 * k : by1, bx0 + c0 * k : bx1][: dark.shape[0], : dark.shape[1]]
            dark = np.ascontiguousarray(dark[: part.shape[0], : part.shape[1]])
            cv2.multiply(part, cv2.transform(dark, gain), dst=part, dtype=cv2.CV_8U)  # (rounded, saturated)

    def _slices(self, box: tuple[int, int, int, int]) -> tuple[slice, slice]:
        x0, y0, x1, y1 = box
        s = self.stride
        p = self.pad
        return slice(y0 // s + p, -(-y1 // s) + 1 + p), slice(x0 // s + p, -(-x1 // s) + 1 + p)

    def fields(self, controls: torch.Tensor, lid_shade: list[torch.Tensor | None] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The backward map on the field grid: sx, sy (N, fh, fw) in ROI pixels; the mouth's interior every
        `overlay_stride` pixels over `mouth_box_px`: overlay (N, 3, mh, mw) and alpha (N, 1, mh, mw).
        lid_shade: if given, each eye's closed-lid paint (N, eyes.CHANNELS, lh, lw; eyes.paint_roi) over its lid cells
        (`lid_boxes_px`), or None where no frame blinks that eye, is appended to it."""
        q, overlay, alpha = self.maps(controls, lid_shade)
        return q[:, 0], q[:, 1], overlay, alpha

    def maps(self, controls: torch.Tensor, lid_shade: list[torch.Tensor | None] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`fields` with the map's two coordinates in one tensor: (N, 2, fh, fw), x then y."""
        c = controls.to(self.X.dtype)[:, :, None, None]  # (N, C, 1, 1)
        q = self._head_map(c)  # where each output pixel is in the still portrait
        qx, qy = q[:, 0], q[:, 1]
        # The mouth and eye fields are drawn in the face's own upright frame (rig.FaceFrame): their grid
        # points are turned into it, and their offsets turned back, so a tilted face opens along its tilt.
        # All of them read the head's map before any is added to it.
        frame = self.g.frame
        ys, xs = self.mouth_slices
        ox, oy = self._mouth_offsets(c, qx[:, ys, xs], qy[:, ys, xs])
        # The jaw moves the head and the neck under it, as the head's motion does (`head_mask`): not a collar, the
        # wall or another figure beside the jaw, whose edges against the still plate it would tear into streaks.
        keep = self.head_mask[:, ys, xs]
        offsets: list[tuple[tuple[slice, slice], torch.Tensor | None, torch.Tensor]] = [
            ((ys, xs), ox * keep, oy * keep)]
        overlay, alpha = self._interior(c, qx, qy)
        for eye, blink, (ys, xs), cells in zip(self.g.eyes, (Control.BLINK_LEFT, Control.BLINK_RIGHT),
                                               self.eye_slices, self.lid_cells, strict=True):
            eqx, eqy = frame.to_face(qx[:, ys, xs], qy[:, ys, xs])
            ox, oy, gain = eye_offsets(eye, c, c[:, blink], eqx, eqy, cells)
            offsets.append(((ys, xs), *frame.vector_to_image(ox, oy)))
            if lid_shade is not None:
                lid_shade.append(gain)
        smile = c[:, Control.SMILE]
        if capturing_graph() or bool((smile > 0).any()):
            for cheek, (ys, xs) in zip(self.cheeks, self.cheek_slices, strict=True):  # a smile lifts them (`cheeks`)
                offsets.append(((ys, xs), *self._cheek_lift(cheek, smile, qx[:, ys, xs], qy[:, ys, xs],
                                                            self.head_mask[:, ys, xs])))
        for (ys, xs), ox, oy in offsets:  # (indexed on q itself: an exported graph drops writes through a view's view)
            if ox is not None:
                q[:, 0, ys, xs] += ox
            q[:, 1, ys, xs] += oy
        return q, overlay, alpha

    def _mouth_offsets(self, c: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mouth's offsets (`MouthRig.offsets`, turned back from the face's frame) at the points (qx, qy) (N, h, w)
        of the field grid: solved on every MOUTH_STEP-th of them and interpolated between (bilinear), as the field
        itself is between its samples. The mouth's field is most of a frame's cost (half of it at 512x512), and it is
        smooth where the interior does not cover it: the opening's edges lie under the interior's own soft edge, which
        is drawn at full resolution (`_interior`)."""
        frame = self.g.frame
        h, w = qx.shape[-2:]
        k = MOUTH_STEP
        if k == 1 or (h - 1) % k or (w - 1) % k:  # (a grid too small to give the mouth's box odd sides)
            return frame.vector_to_image(*self.mouth.offsets(c, *frame.to_face(qx, qy)))
        ox, oy = frame.vector_to_image(*self.mouth.offsets(c, *frame.to_face(qx[:, ::k, ::k], qy[:, ::k, ::k])))
        o = F.interpolate(torch.stack([ox, oy], dim=1), size=(h, w), mode="bilinear", align_corners=True)
        return o[:, 0], o[:, 1]

    def _cheek_lift(self, cheek: Cheek, smile: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor, keep: torch.Tensor
                    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """A cheek's offsets (`cheeks.cheek_offsets`, only up the face: x is None on an upright face) at the points
        (qx, qy) (N, h, w) of its box, where the head moves (keep), solved on every MOUTH_STEP-th point as the
        mouth's (`_mouth_offsets`): the lift is broad and smooth, and its few dozen small tensor operations per frame
        were a tenth of a frame's cost at 512x512 solved on every point."""
        frame = self.g.frame
        h, w = qx.shape[-2:]
        k = MOUTH_STEP
        if k > 1 and (h - 1) % k == 0 and (w - 1) % k == 0:
            qx, qy, keep = qx[:, ::k, ::k], qy[:, ::k, ::k], keep[:, ::k, ::k]
        lift = cheek_offsets(cheek, smile, *frame.to_face(qx, qy)) * keep
        if lift.shape[-2:] != (h, w):
            lift = F.interpolate(lift[:, None], size=(h, w), mode="bilinear", align_corners=True)[:, 0]
        if frame.upright:
            return None, lift
        return frame.vector_to_image(torch.zeros_like(lift), lift)

    def expressed(self, controls: np.ndarray, talking: np.ndarray | None = None) -> np.ndarray:
        """The controls (N, N_CONTROLS) as this portrait shows them: what `WarpGenerator.render` hands its paths, and
        what a caller of `forward` or `WarpGenerator._frames` with a pose of its own passes them. On a photo that
        smiled with its lips apart (`rest_pose.photo_smile_jaw`), a smile parts them as the photo did, the jaw opened
        to at least smile x `smile_jaw`, and PHOTO_SMILE_SHARE is kept of the rig's own smile. While the host talks
        (talking: (N,) 0..1, `talking_hold`) the speech alone moves the jaw: held open by the smile, the lips could no
        longer close between syllables (the real voice's lip sync under a standing smile fell from r 0.90 to 0.61)."""
        if not self.smile_jaw:
            return controls
        out = controls.copy()
        jaw, smile = controls[:, Control.JAW_OPEN], np.clip(controls[:, Control.SMILE], 0.0, 1.0)
        floor = smile * self.smile_jaw * (1.0 if talking is None else 1.0 - talking)
        out[:, Control.JAW_OPEN] = np.maximum(jaw, floor)
        out[:, Control.SMILE] = controls[:, Control.SMILE] * PHOTO_SMILE_SHARE
        return out

    def forward(self, controls: torch.Tensor) -> torch.Tensor:
        lid_shade: list[torch.Tensor | None] = []
        q, overlay, alpha = self.maps(controls, lid_shade)
        n = controls.shape[0]
        rh, rw = self.roi_src.shape[1:]
        # Upsampled as (N, 2, fh, fw), then viewed as grid_sample's (N, h, w, 2).
        grid = q * q.new_tensor([2.0 / (rw - 1), 2.0 / (rh - 1)])[:, None, None] - 1
        box = self.mouth_box_px
        if self.stride > 1:  # fields are smooth: interpolate them up to the pixels
            o = self.pad * self.stride
            grid = self._upsample(grid)[:, :, o : o + rh, o : o + rw]
        if any(self.at_edge[0] + self.at_edge[1]):  # (a box clear of the edges: no copy of the grid)
            grid = torch.stack(self.folded(grid[:, 0], grid[:, 1]), dim=1)
        if self.overlay_stride > 1:
            up = dict(scale_factor=self.overlay_stride, mode="bilinear", align_corners=False)
            overlay, alpha = F.interpolate(overlay, **up), F.interpolate(alpha, **up)
        # Cropped at any stride: where the mouth's box ends at the head's box (a small face near the picture's bottom),
        # the interior drawn at half the field's stride passes it by a pixel or two, upsampled or not.
        bh, bw = box[3] - box[1], box[2] - box[0]
        overlay, alpha = overlay[:, :, :bh, :bw], alpha[:, :, :bh, :bw]
        grid = grid.permute(0, 2, 3, 1)
        if self.roi_src.is_cuda and triton_available() and not self.bicubic:  # the Triton kernel samples bilinear
            roi = warp_composite_triton(self.roi_src, grid, overlay, alpha, box, self.plate)  # (N, 3, rh, rw)
        else:
            roi = warp_composite(self.roi_src, grid, overlay, alpha, box, self.plate,
                                 "bicubic" if self.bicubic else "bilinear")
        smile = controls[:, Control.SMILE].to(roi.dtype)
        if capturing_graph() or bool((smile > 0).any()):
            tint = roi.new_tensor(TINT)[None, :, None, None]
            for fold, (bx0, by0, bx1, by1) in zip(self.folds, self.fold_boxes_px, strict=True):
                g = grid[:, by0:by1, bx0:bx1]  # the photo's points these pixels show, in ROI pixels
                dark = fold_shade(fold, smile[:, None, None], *self.g.frame.to_face((g[..., 0] + 1) * (0.5 * (rw - 1)),
                                                                                    (g[..., 1] + 1) * (0.5 * (rh - 1))))
                # (out of place, padded to the ROI: an exported graph loses writes into a slice of this tensor)
                roi = roi * F.pad(1.0 - dark[:, None] * tint, (bx0, rw - bx1, by0, rh - by1), value=1.0)
        for lid, eye_box, eye in zip(lid_shade, self.lid_boxes_px, self.g.eyes, strict=True):
            if lid is not None:
                paint_roi(roi, lid, self.stride, eye_box, eye.look)
        frames = self.portrait.unsqueeze(0).repeat(n, 1, 1, 1)
        x0, y0, x1, y1 = self.roi
        # Round to bytes while still planar (in place), then one strided byte copy into the frames.
        roi_u8 = roi.mul_(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8)
        frames[:, y0:y1, x0:x1] = roi_u8.permute(0, 2, 3, 1)
        for rows, cols in self.frame_line_px:
            frames[:, rows, cols] = self.portrait[rows, cols]
        return frames

    def folded(self, gx: torch.Tensor, gy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A grid (gx, gy in grid_sample's [-1, 1]) folded back at the sides of the box that are the picture's edges
        (`fold`). Folded after upsampling: folding the coarse field would bend the map between its samples. (The byte
        path reads a layer mirrored at prepare instead: `mirrored`.)"""
        (left, right), (top, bottom) = self.at_edge
        gx = fold(gx, -1.0 if left else None, 1.0 if right else None)
        return gx, fold(gy, -1.0 if top else None, 1.0 if bottom else None)

    def _upsample(self, field: torch.Tensor) -> torch.Tensor:
        return F.interpolate(field, scale_factor=self.stride, mode="bilinear", align_corners=False)

    def _head_map(self, c: torch.Tensor) -> torch.Tensor:
        """Output pixel -> portrait pixel (N, 2, fh, fw; x, y) for a small head motion of the person layer (head,
        hair and neck; head_motion.head_weight): a rigid shift and roll, plus depth parallax so that yaw and pitch
        read as turns, not slides. The background is a still plate under this layer."""
        fh, fw = self.X.shape[1:]
        return torch.mm(self._pose_weights(c).flatten(0, 1), self.pose_basis).view(-1, 2, fh, fw)

    def _pose_weights(self, c: torch.Tensor) -> torch.Tensor:
        """The weights (N, 2, 7) of `pose_basis`'s fields in the head's map, x and y.

        A point at p = (Xp, Yp) from the roll's pivot is moved by t (yaw and pitch: -yaw x yaw_px, -pitch x
        pitch_px; breathing's lift, b), then rolled by R (the angle th); its offset from where it was, scaled by the
        head's weight, is the map's: R (p + t) - p = (R - I) p + R t. t is a sum of the fields yaw_px, pitch_px and 1
        (`pose_turn`'s weights); so is R t."""
        moves = c[:, [Control.HEAD_YAW, Control.HEAD_PITCH, Control.BREATH], 0, 0]  # (N, 3)
        t = torch.mm(moves, self.pose_turn).view(-1, 2, 3)  # t's x and y, on yaw_px, pitch_px and 1
        th = c[:, Control.HEAD_ROLL, 0, 0] * (math.pi / 180.0)
        cos, sin = torch.cos(th), torch.sin(th)
        rot = torch.stack([cos, sin, -sin, cos], dim=1).view(-1, 2, 2)
        eye = self.pose_eye.expand(rot.shape)
        return torch.cat([rot - eye, torch.bmm(rot, t), eye], dim=2)

    def _interior(self, c: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mouth's interior over `mouth_box_px`, every `overlay_stride` pixels: the head-pose map is
        upsampled there as the warp's own fields are, so the interior's edge lies where the warped lips are."""
        ys, xs = self.cavity_slices
        k = self.stride // self.overlay_stride
        if k == 1:
            qx, qy = qx[:, ys, xs], qy[:, ys, xs]
        else:  # with a cell more on each side: bilinear upsampling reads them at its edges
            y0, x0 = max(0, ys.start - 1), max(0, xs.start - 1)
            q = torch.stack([qx[:, y0 : ys.stop + 1, x0 : xs.stop + 1], qy[:, y0 : ys.stop + 1, x0 : xs.stop + 1]], 1)
            q = F.interpolate(q, scale_factor=k, mode="bilinear", align_corners=False)
            rows, cols = (min(ys.stop, self.X.shape[1]) - ys.start) * k, (min(xs.stop, self.X.shape[2]) - xs.start) * k
            q = q[:, :, (ys.start - y0) * k :, (xs.start - x0) * k :][:, :, :rows, :cols]
            qx, qy = q[:, 0], q[:, 1]
        qx, qy = self.g.frame.to_face(qx, qy)
        return self.mouth.interior(c, qx, qy, edge=max(0.7, 0.5 * self.overlay_stride))



class WarpGenerator:
    """The generator protocol over WarpRenderer: a window of controls -> a RenderedWindow."""

    name = "warp"

    def __init__(self, avatar: PreparedAvatar, threads: int = 1, max_seam_step: float = 0.35) -> None:
        self.avatar = avatar
        self.threads = threads
        self.max_seam_step = max_seam_step  # largest control change allowed across a window seam
        self.renderer = WarpRenderer(avatar).eval()
        # Set (AvatarSession.request_alpha) when a keyed background needs the person's alpha of each frame:
        # RenderedWindow.alpha_frames. Off, nothing of it is computed.
        self.emit_alpha = False
        self._still_alpha: np.ndarray | None = None
        self._alpha_keyed = True
        # Process-wide in torch and OpenCV: the server keeps cores for encoding and other sessions, and a render
        # process is one per core. (OpenCV's own pool, left alone, splits a remap over every core, and waits for
        # the busiest: beside a busy core, 8.6-10.1 ms/frame at 512x512 against 8.4-9.1 on one thread.)
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)

    def first_frame(self) -> FirstFrame:
        return FirstFrame(-1, self.avatar.rgb, np.zeros(N_CONTROLS, np.float32))

    def render(self, window: MotionWindow, condition: FirstFrame) -> tuple[RenderedWindow, FirstFrame]:
        """Render a window starting from `condition` (the previous window's last frame).

        The first frame may move at most `max_seam_step` from the condition's controls, so a
        window never starts with a jump; the frame it returns last is the next window's condition.
        """
        t0 = time.perf_counter()
        controls = window.controls.copy()
        step = np.clip(controls[0] - condition.controls, -self.max_seam_step, self.max_seam_step)
        controls[0] = condition.controls + step
        alphas = self._alpha_frames(len(controls)) if self.emit_alpha else None
        talking, hold = talking_hold(controls[:, Control.JAW_OPEN], condition.talking)
        frames = self._frames(self.renderer.expressed(controls, talking), alphas)
        # Encoders want YUV 4:2:0: converting here, in the render thread, keeps it off the event loop.
        i420 = np.empty((len(frames), frames.shape[1] * 3 // 2, frames.shape[2]), np.uint8)
        for frame, planes in zip(frames, i420, strict=True):  # (in place: a stack of them copied 0.3 ms at 720x1280)
            cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420, dst=planes)
        rendered = RenderedWindow(window.start_frame, frames, window.audio,
                                  (time.perf_counter() - t0) * 1000.0, window.created_t_s, i420, alphas)
        last = FirstFrame(rendered.end_frame - 1, frames[-1], controls[-1], hold)
        return rendered, last

    def _alpha_frames(self, n: int, keyed: bool = True) -> np.ndarray:
        """(n, H, W) uint8 of the still portrait's person alpha; _frames writes the moving box of each. keyed: keying's
        alpha (person_alpha.keying_layer: sky the matte took in at the hair's edge cut out); False: the picture's own
        coverage, as the renderer draws it (what tests of the rendered pixels compare with)."""
        if self._still_alpha is None or self._alpha_keyed != keyed:
            self._still_alpha = still_alpha(self.avatar) if keyed else picture_alpha(self.avatar)
            self._alpha_keyed = keyed
            x0, y0, x1, y1 = self.renderer.roi
            box = self._still_alpha[y0:y1, x0:x1]
            # The head that moves: the layer's alpha, less what keying cut out at the hair's edge.
            r = self.renderer
            self._layer_alpha = mirrored(np.minimum(r.layer_u8[..., 3], box), r.at_edge, r.mirror_reach)[0]
            # The person that stays still in the box (shoulders), as a fraction, under the moved head.
            self._still_box = np.where(self.renderer.still_part, box, 0).astype(np.float32)
            self._still_box /= 255.0
        return np.repeat(self._still_alpha[None], n, axis=0)

    def _moved_px(self, q: np.ndarray) -> np.ndarray:
        """How far (pixels) the map q (N, 2, fh, fw; ROI pixels) moves any pixel of each of the box's rows in any
        frame: the most of the field samples a row's pixels are interpolated from (and a sample beyond, each way)."""
        r = self.renderer
        dx, dy = q[:, 0] - r.X[0].numpy(), q[:, 1] - r.Y[0].numpy()
        moved = np.sqrt((dx * dx + dy * dy).max(axis=(0, 2)))  # per field row (np.hypot: 4x the time)
        near = np.maximum(moved, np.maximum(np.append(moved[1:], 0.0), np.insert(moved[:-1], 0, 0.0)))
        rows = (np.arange(r.roi[3] - r.roi[1]) + r.pad * r.stride) // r.stride
        return near[np.minimum(rows, len(near) - 1)]

    def _frames(self, controls: np.ndarray, alphas: np.ndarray | None = None) -> np.ndarray:
        """Fields from the torch module; pixels by OpenCV's byte remap (kernels.warp_cv2), which
        matches the module's own float path within 1/255 at about a third of the cost. alphas: if given,
        each frame's person alpha is written into it (the layer's alpha through the same map)."""
        r = self.renderer
        lid_shade: list[torch.Tensor | None] = []
        with torch.inference_mode():
            q, overlay, alpha = (t.numpy() for t in r.maps(torch.from_numpy(controls), lid_shade))
        bands = None if r.reach is None else r.reach.bands(self._moved_px(q))
        q[:, 0] += r.mirror_at[0]  # read in the mirrored layer
        q[:, 1] += r.mirror_at[1]
        blinks = controls[:, [Control.BLINK_LEFT, Control.BLINK_RIGHT]]
        x0, y0, x1, y1 = r.roi
        # The photo around the warped box; the box itself is written whole by remap_composite.
        rgb = self.avatar.rgb
        frames = np.empty((len(controls), *rgb.shape), np.uint8)
        frames[:, :y0], frames[:, y1:] = rgb[:y0], rgb[y1:]
        frames[:, y0:y1, :x0], frames[:, y0:y1, x1:] = rgb[y0:y1, :x0], rgb[y0:y1, x1:]
        rh, rw = y1 - y0, x1 - x0
        box = r.mouth_box_px
        overlay = overlay.transpose(0, 2, 3, 1)
        o = r.pad * r.stride
        interpolation = cv2.INTER_CUBIC if r.bicubic else cv2.INTER_LINEAR  # the module's grid_sample mode
        smiles = np.minimum(controls[:, Control.SMILE], 1.0)
        for i in range(len(controls)):
            xy = upsample(cv2.merge((q[i, 0], q[i, 1])), r.stride, rh, rw, o)  # (rh, rw, 2): remap's map of 2 channels
            remap_composite(r.layer_mirrored, xy, None, overlay[i], alpha[i, 0], box, frames[i, y0:y1, x0:x1],
                            r.plate_u8, interpolation, r.overlay_stride, bands)
            if smiles[i] > 0.0:
                r.shade_folds(frames[i, y0:y1, x0:x1], xy, float(smiles[i]))
            if alphas is not None:  # the head's alpha through the same map over the still person: "over"
                moved = cv2.remap(self._layer_alpha, xy, None, interpolation, borderMode=cv2.BORDER_REPLICATE)
                alphas[i, y0:y1, x0:x1] = np.clip(moved + (255.0 - moved) * self._still_box + 0.5, 0, 255)
        for rows, cols in r.frame_line_px:
            frames[:, rows, cols] = rgb[rows, cols]
        # The closed lids, painted over all the window's blinking frames at once.
        for k, (gain, (bx0, by0, bx1, by1)) in enumerate(zip(lid_shade, r.lid_boxes_px, strict=True)):
            which = [i for i in range(len(controls)) if gain is not None and shaded(float(blinks[i, k]))]
            if which:
                eye_px = (which, slice(y0 + by0, y0 + by1), slice(x0 + bx0, x0 + bx1))
                lids = frames[eye_px]
                paint_u8(lids, gain[which].numpy(), r.stride, (0, 0, bx1 - bx0, by1 - by0), r.g.eyes[k].look)
                frames[eye_px] = lids
        return frames
