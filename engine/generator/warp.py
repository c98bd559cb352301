"""The warp generator: animates one portrait photo with a dense backward warp of the head region.

`WarpRenderer` is a torch.nn.Module: controls for N frames -> N frames, batched. Only the head's
region of interest is warped; the rest of the picture is the still portrait.
"""

from __future__ import annotations

import math
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.generator.avatar import PreparedAvatar
from engine.generator.eyes import blink_cells, eye_offsets, measure_lids, shade_box, shade_u8, shaded
from engine.generator.rig import RigGeometry, build_rig
from engine.types import N_CONTROLS, Control, FirstFrame, MotionWindow, RenderedWindow
from kernels.warp import warp_composite
from kernels.warp_cv2 import remap_composite, upsample
from kernels.warp_triton import triton_available, warp_composite_triton

# MediaPipe face-mesh points on the lips' red (outer contour) and on the cheeks: the mouth interior is
# coloured from these, so it is lit and white-balanced like the photo instead of one palette for every face.
LIP_POINTS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409)
CHEEK_POINTS = (50, 280, 101, 330, 205, 425)


def mouth_palette(rgb: np.ndarray, landmarks: np.ndarray) -> dict[str, tuple[float, float, float]]:
    """Cavity, tongue and teeth colours (0..1 RGB) from the portrait's own lips and skin.

    The cavity is the lips' hue in deep shade and the tongue a lighter one; the teeth are an off-white
    at the skin's brightness, tinted a quarter of the way toward the skin's colour (the photo's light).
    """
    h, w = rgb.shape[:2]

    def median_at(points: tuple[int, ...]) -> np.ndarray:
        samples = []
        for i in points:
            x, y = round(float(landmarks[i, 0])), round(float(landmarks[i, 1]))
            samples.append(rgb[max(0, y - 1) : min(h, y + 2), max(0, x - 1) : min(w, x + 2)].reshape(-1, 3))
        return np.median(np.concatenate(samples), axis=0).astype(np.float64) / 255.0

    lip, skin = median_at(LIP_POINTS), median_at(CHEEK_POINTS)
    # Lip samples mix in skin at the lip line: push them away from the skin colour to keep the lips' red.
    lip = np.clip(skin + 1.8 * (lip - skin), 0.0, 1.0)
    luma = float(skin @ (0.299, 0.587, 0.114))
    tint = skin / max(float(skin.max()), 1e-3)
    teeth = np.clip(min(0.92, 0.35 + 0.75 * luma) * (0.75 + 0.25 * tint), 0.0, 1.0)
    return {"cavity": tuple(float(v) for v in 0.28 * lip), "tongue": tuple(float(v) for v in 0.8 * lip),
            "teeth": tuple(float(v) for v in teeth)}


def smoothstep(e0: float | torch.Tensor, e1: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    t = torch.clamp((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


class WarpRenderer(nn.Module):
    """(N, N_CONTROLS) controls -> (N, H, W, 3) uint8 frames of the prepared portrait.

    Only the head's box is warped. The backward map (output pixel -> portrait pixel) is built on
    a field grid, coarser than the pixels for large faces (fields are smooth), from a rigid head
    motion over the whole box plus expression fields computed only inside the mouth and eye
    boxes, where they are non-zero.
    """

    def __init__(self, avatar: PreparedAvatar, field_px_per_face: float = 120.0) -> None:
        super().__init__()
        h, w = avatar.rgb.shape[:2]
        rig = measure_lids(build_rig(avatar.landmarks), avatar.rgb, avatar.landmarks)
        self.roi = rig.head_box(w, h)
        x0, y0, x1, y1 = self.roi
        rw, rh = x1 - x0, y1 - y0
        self.g: RigGeometry = rig.shifted(x0, y0)
        self.stride = max(1, round(rig.face_w / field_px_per_face))
        # A field sample stands for a stride x stride cell, at its centre: where cv2.resize and
        # interpolate(align_corners=False) put it when upsampling. The last cells may pass the box.
        s = self.stride
        gx = torch.arange(math.ceil(rw / s), dtype=torch.float32) * s + (s - 1) / 2
        gy = torch.arange(math.ceil(rh / s), dtype=torch.float32) * s + (s - 1) / 2
        self.register_buffer("portrait", torch.from_numpy(avatar.rgb.copy()), persistent=False)
        roi = torch.from_numpy(avatar.rgb[y0:y1, x0:x1].astype(np.float32) / 255.0).permute(2, 0, 1)
        self.register_buffer("roi_src", roi.contiguous(), persistent=False)
        Y, X = torch.meshgrid(gy, gx, indexing="ij")
        self.register_buffer("X", X[None].contiguous(), persistent=False)  # (1, fh, fw) ROI pixel coords
        self.register_buffer("Y", Y[None].contiguous(), persistent=False)
        g = self.g
        d = torch.sqrt(((X - g.face_cx) / g.face_rx) ** 2 + ((Y - g.face_cy) / g.face_ry) ** 2)
        self.register_buffer("head_mask", (1.0 - smoothstep(1.0, 1.4, d))[None], persistent=False)
        # A depth proxy for parallax: 1 at the face centre (about the nose), falling to 0 at its
        # outline, so turning and nodding move the nose more than the cheeks and the chin.
        fd = ((X - g.face_cx) / (0.5 * g.face_w)) ** 2 + ((Y - g.face_cy) / (0.62 * g.face_w)) ** 2
        self.register_buffer("depth", torch.sqrt(torch.clamp(1.0 - fd, min=0.0))[None], persistent=False)
        # Head motion moves the face a few pixels: the expression boxes are padded by that much.
        margin = 0.12 * g.face_w
        self.mouth_slices = self._slices(g.mouth_box(rw, rh, margin))
        ys, xs = self.mouth_slices  # the same box in pixels: the cells of those field samples
        self.mouth_box_px = (xs.start * s, ys.start * s, min(rw, min(xs.stop, len(gx)) * s),
                             min(rh, min(ys.stop, len(gy)) * s))
        self.eye_slices = [self._slices(g.eye_box(e, rw, rh, margin)) for e in g.eyes]
        # The lids' cells in each eye box, padded further: a head turned or nodded past `margin` still blinks
        # whole; and their pixels, where the closed lid is shaded.
        self.lid_cells = [blink_cells(e, g.frame, sl, s, 1.6 * margin, (len(gy), len(gx)))
                          for e, sl in zip(g.eyes, self.eye_slices, strict=True)]
        self.lid_boxes_px = [shade_box((slice(ys.start + cy.start, ys.start + cy.stop),
                                        slice(xs.start + cx.start, xs.start + cx.stop)), s, rw, rh)
                             for (ys, xs), (cy, cx) in zip(self.eye_slices, self.lid_cells, strict=True)]
        self.palette = mouth_palette(avatar.rgb, avatar.landmarks)

    def _slices(self, box: tuple[int, int, int, int]) -> tuple[slice, slice]:
        x0, y0, x1, y1 = box
        s = self.stride
        return slice(y0 // s, -(-y1 // s) + 1), slice(x0 // s, -(-x1 // s) + 1)

    def fields(self, controls: torch.Tensor, lid_shade: list[torch.Tensor | None] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The backward map and the mouth overlay on the field grid: sx, sy (N, fh, fw) in ROI pixels;
        overlay (N, 3, mh, mw) and alpha (N, 1, mh, mw) over the mouth cells (`mouth_box_px`).
        lid_shade: if given, each eye's closed-lid gain (N, lh, lw) over its lid cells (`lid_boxes_px`), or None
        where no frame blinks that eye, is appended to it."""
        c = controls.to(self.X.dtype)[:, :, None, None]  # (N, C, 1, 1)
        qx, qy = self._head_pose(c)  # (N, fh, fw): where each output pixel is in the still portrait
        sx, sy = qx.clone(), qy.clone()
        jaw_amp = c[:, Control.JAW_OPEN] * 0.85 * self.g.mouth_half_w
        # The mouth and eye fields are drawn in the face's own upright frame (rig.FaceFrame): their grid
        # points are turned into it, and their offsets turned back, so a tilted face opens along its tilt.
        frame = self.g.frame
        ys, xs = self.mouth_slices
        mqx, mqy = frame.to_face(qx[:, ys, xs], qy[:, ys, xs])
        ox, oy = frame.vector_to_image(*self._mouth(c, mqx, mqy, jaw_amp))
        sx[:, ys, xs] += ox
        sy[:, ys, xs] += oy
        overlay, alpha = self._cavity(c, mqx, mqy, jaw_amp)
        for eye, blink, (ys, xs), cells in zip(self.g.eyes, (Control.BLINK_LEFT, Control.BLINK_RIGHT),
                                               self.eye_slices, self.lid_cells, strict=True):
            eqx, eqy = frame.to_face(qx[:, ys, xs], qy[:, ys, xs])
            ox, oy, gain = eye_offsets(eye, c, c[:, blink], eqx, eqy, cells)
            ox, oy = frame.vector_to_image(ox, oy)
            sx[:, ys, xs] += ox
            sy[:, ys, xs] += oy
            if lid_shade is not None:
                lid_shade.append(gain)
        return sx, sy, overlay, alpha

    def forward(self, controls: torch.Tensor) -> torch.Tensor:
        lid_shade: list[torch.Tensor | None] = []
        sx, sy, overlay, alpha = self.fields(controls, lid_shade)
        n = controls.shape[0]
        rh, rw = self.roi_src.shape[1:]
        # (N, fh, fw, 2) viewed as channels-last (N, 2, fh, fw): upsampling keeps that layout, so the
        # grid reaches grid_sample as (N, h, w, 2) without another copy.
        grid = torch.stack([sx * (2.0 / (rw - 1)) - 1, sy * (2.0 / (rh - 1)) - 1], dim=-1).permute(0, 3, 1, 2)
        box = self.mouth_box_px
        if self.stride > 1:  # fields are smooth: interpolate them up to the pixels
            grid = self._upsample(grid)[:, :, :rh, :rw]
            overlay = self._upsample(overlay)[:, :, : box[3] - box[1], : box[2] - box[0]]
            alpha = self._upsample(alpha)[:, :, : box[3] - box[1], : box[2] - box[0]]
        composite = warp_composite_triton if self.roi_src.is_cuda and triton_available() else warp_composite
        roi = composite(self.roi_src, grid.permute(0, 2, 3, 1), overlay, alpha, box)  # (N, 3, rh, rw)
        for gain, (ex0, ey0, ex1, ey1) in zip(lid_shade, self.lid_boxes_px, strict=True):
            if gain is None:
                continue
            if self.stride > 1:
                gain = self._upsample(gain[:, None])[:, 0]
            roi[:, :, ey0:ey1, ex0:ex1] *= gain[:, None, : ey1 - ey0, : ex1 - ex0]
        frames = self.portrait.unsqueeze(0).repeat(n, 1, 1, 1)
        x0, y0, x1, y1 = self.roi
        # Round to bytes while still planar (in place), then one strided byte copy into the frames.
        roi_u8 = roi.mul_(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8)
        frames[:, y0:y1, x0:x1] = roi_u8.permute(0, 2, 3, 1)
        return frames

    def _upsample(self, field: torch.Tensor) -> torch.Tensor:
        return F.interpolate(field, scale_factor=self.stride, mode="bilinear", align_corners=False)

    def _head_pose(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output pixel -> portrait pixel for a small head motion, feathered into the body: a rigid
        shift and roll, plus depth parallax so that yaw and pitch read as turns, not slides."""
        g = self.g
        yaw, pitch, roll = c[:, Control.HEAD_YAW], c[:, Control.HEAD_PITCH], c[:, Control.HEAD_ROLL]
        parallax = 0.5 * g.face_w * (math.pi / 180.0) * self.depth  # px per degree at each point
        tx = yaw * 0.012 * g.face_rx + yaw * parallax
        ty = pitch * 0.01 * g.face_ry + pitch * parallax - c[:, Control.BREATH] * 0.012 * g.face_ry
        px, py = g.face_cx, g.chin_y + 0.3 * g.face_ry  # pivot near the top of the neck
        th = roll * (math.pi / 180.0)
        dx, dy = self.X - tx - px, self.Y - ty - py
        cos, sin = torch.cos(th), torch.sin(th)
        rx, ry = cos * dx + sin * dy + px, -sin * dx + cos * dy + py
        return self.X + self.head_mask * (rx - self.X), self.Y + self.head_mask * (ry - self.Y)

    def _mouth(self, c: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor,
               jaw_amp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Source offsets of the jaw, lips and mouth corners (zero outside the mouth box)."""
        g = self.g
        mw = g.mouth_half_w
        dx, dy = qx - g.mouth_x, qy - g.mouth_y
        # Jaw: everything from the lip line down to the chin drops; the neck below stretches.
        # Between the lips the ramp is short (the cavity covers the fold it makes); beside the
        # mouth it widens into the cheeks so the skin stretches instead of tearing.
        lens = torch.clamp(1 - (dx / (1.1 * mw)) ** 2, 0.0, 1.0)
        spread = 1.3 * mw * (1.0 - lens)
        ramp_end = g.mouth_y + 0.6 * (g.lower_lip_y - g.mouth_y) + 1.0
        below = smoothstep(g.mouth_y - spread, ramp_end + spread, qy)
        neck = 1.0 - smoothstep(g.chin_y, g.chin_y + 0.9 * (g.chin_y - g.mouth_y), qy)
        across = torch.exp(-0.5 * (dx / (1.7 * mw)) ** 4)
        oy = -jaw_amp * below * neck * across
        # Width and rounding: stretch or draw in the lips around the mouth centre.
        around = torch.exp(-(dx / (1.4 * mw)) ** 2 - (dy / (0.9 * mw)) ** 2)
        ox = (0.3 * c[:, Control.MOUTH_ROUND] - 0.2 * c[:, Control.MOUTH_WIDTH]) * dx * around
        # Press: both lips move toward the lip line.
        lips = torch.exp(-(dx / (1.2 * mw)) ** 2 - (dy / (0.8 * mw)) ** 2)
        oy = oy + c[:, Control.LIP_PRESS] * 0.35 * dy * lips
        # Smile: corners up and out.
        corner = torch.exp(-((dx.abs() - mw) ** 2 + (qy - g.corner_y) ** 2) / (0.6 * mw) ** 2)
        smile = c[:, Control.SMILE]
        return ox - smile * 0.1 * dx * corner, oy + smile * 0.18 * mw * corner

    def _cavity(self, c: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor,
                jaw_amp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mouth interior where the lips part: dark cavity, upper teeth, tongue, soft edges."""
        g = self.g
        half_w = 0.9 * g.mouth_half_w * (1.0 + 0.2 * c[:, Control.MOUTH_WIDTH] - 0.3 * c[:, Control.MOUTH_ROUND])
        u = (qx - g.mouth_x) / half_w
        lens = torch.clamp(1 - u * u, 0.0, 1.0)
        top = g.corner_y + (g.mouth_y - g.corner_y) * lens
        opening = jaw_amp * lens * (1.0 - c[:, Control.LIP_PRESS])  # lip gap in pixels at this column
        bottom = top + opening
        soft = 0.7
        a = torch.sigmoid((qy - top) / soft) * torch.sigmoid((bottom - qy) / soft)
        a = a * torch.clamp(opening / 2.0, 0.0, 1.0) * (1.0 - smoothstep(0.8, 1.0, u.abs()))
        depth = qy - top
        teeth = torch.sigmoid((torch.clamp(0.3 * opening, max=0.32 * g.mouth_half_w) - depth) / soft)
        tongue = torch.sigmoid((qy - (bottom - 0.3 * opening)) / soft) * lens
        shade = 0.55 + 0.45 * lens
        rgb = []
        for k in range(3):
            cavity, tongue_k, teeth_k = (self.palette[part][k] for part in ("cavity", "tongue", "teeth"))
            v = cavity + (tongue_k - cavity) * tongue
            v = v + (teeth_k * (0.75 + 0.25 * lens) - v) * teeth
            rgb.append(v * shade)
        return torch.stack(rgb, dim=1), a.unsqueeze(1)


class WarpGenerator:
    """The generator protocol over WarpRenderer: a window of controls -> a RenderedWindow."""

    name = "warp"

    def __init__(self, avatar: PreparedAvatar, threads: int = 1, max_seam_step: float = 0.35) -> None:
        self.avatar = avatar
        self.threads = threads
        self.max_seam_step = max_seam_step  # largest control change allowed across a window seam
        self.renderer = WarpRenderer(avatar).eval()
        # Process-wide in torch: the server keeps cores for encoding and other sessions.
        torch.set_num_threads(threads)
        x0, y0, x1, y1 = self.renderer.roi
        self._roi_u8 = np.ascontiguousarray(avatar.rgb[y0:y1, x0:x1])

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
        frames = self._frames(controls)
        # Encoders want YUV 4:2:0: converting here, in the render thread, keeps it off the event loop.
        i420 = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2YUV_I420) for f in frames])
        rendered = RenderedWindow(window.start_frame, frames, window.audio,
                                  (time.perf_counter() - t0) * 1000.0, window.created_t_s, i420)
        last = FirstFrame(rendered.end_frame - 1, frames[-1], controls[-1])
        return rendered, last

    def _frames(self, controls: np.ndarray) -> np.ndarray:
        """Fields from the torch module; pixels by OpenCV's byte remap (kernels.warp_cv2), which
        matches the module's own float path within 1/255 at about a third of the cost."""
        r = self.renderer
        lid_shade: list[torch.Tensor | None] = []
        with torch.inference_mode():
            sx, sy, overlay, alpha = (t.numpy() for t in r.fields(torch.from_numpy(controls), lid_shade))
        blinks = controls[:, [Control.BLINK_LEFT, Control.BLINK_RIGHT]]
        frames = np.repeat(self.avatar.rgb[None], len(controls), axis=0)
        x0, y0, x1, y1 = r.roi
        rh, rw = y1 - y0, x1 - x0
        box = r.mouth_box_px
        bh, bw = box[3] - box[1], box[2] - box[0]
        overlay = np.ascontiguousarray(overlay.transpose(0, 2, 3, 1))
        for i in range(len(controls)):
            remap_composite(self._roi_u8, upsample(sx[i], r.stride, rh, rw), upsample(sy[i], r.stride, rh, rw),
                            upsample(overlay[i], r.stride, bh, bw), upsample(alpha[i, 0], r.stride, bh, bw),
                            box, frames[i, y0:y1, x0:x1])
            for k, (gain, eye_box) in enumerate(zip(lid_shade, r.lid_boxes_px, strict=True)):
                if gain is not None and shaded(float(blinks[i, k])):
                    shade_u8(frames[i, y0:y1, x0:x1], gain[i].numpy(), r.stride, eye_box)
        return frames
