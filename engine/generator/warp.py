"""The warp generator: animates one portrait photo with a dense backward warp of the head region.

`WarpRenderer` is a torch.nn.Module: controls for N frames -> N frames, batched. Only the head's
region of interest is warped; the rest of the picture is the still portrait.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from engine.generator.avatar import PreparedAvatar
from engine.generator.rig import RigGeometry, build_rig
from engine.types import N_CONTROLS, Control, FirstFrame, MotionWindow, RenderedWindow
from kernels.warp import warp_composite

CAVITY_RGB = (0.24, 0.07, 0.08)
TEETH_RGB = (0.86, 0.83, 0.77)
TONGUE_RGB = (0.62, 0.25, 0.27)


def smoothstep(e0: float | torch.Tensor, e1: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    t = torch.clamp((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


class WarpRenderer(nn.Module):
    """(N, N_CONTROLS) controls -> (N, H, W, 3) uint8 frames of the prepared portrait."""

    def __init__(self, avatar: PreparedAvatar) -> None:
        super().__init__()
        h, w = avatar.rgb.shape[:2]
        rig = build_rig(avatar.landmarks, w, h)
        x0, y0, x1, y1 = rig.roi
        self.roi = rig.roi
        self.g: RigGeometry = rig.shifted(x0, y0)
        self.register_buffer("portrait", torch.from_numpy(avatar.rgb.copy()), persistent=False)
        roi = torch.from_numpy(avatar.rgb[y0:y1, x0:x1].astype(np.float32) / 255.0).permute(2, 0, 1)
        self.register_buffer("roi_src", roi.contiguous(), persistent=False)
        ys, xs = torch.meshgrid(torch.arange(y1 - y0, dtype=torch.float32),
                                torch.arange(x1 - x0, dtype=torch.float32), indexing="ij")
        self.register_buffer("X", xs[None], persistent=False)  # (1, h, w)
        self.register_buffer("Y", ys[None], persistent=False)

    def forward(self, controls: torch.Tensor) -> torch.Tensor:
        g = self.g
        c = controls.to(self.X.dtype)[:, :, None, None]  # (N, C, 1, 1)
        qx, qy = self._head_pose(c)
        sx, sy = qx.clone(), qy.clone()
        jaw_amp = c[:, Control.JAW_OPEN] * 0.85 * g.mouth_half_w
        sx, sy = self._mouth(c, qx, qy, sx, sy, jaw_amp)
        sy = self._eyes_and_brows(c, qx, qy, sy)
        overlay, alpha = self._cavity(qx, qy, jaw_amp)
        h, w = self.X.shape[1:]
        grid = torch.stack([sx / (w - 1) * 2 - 1, sy / (h - 1) * 2 - 1], dim=-1)  # (N, h, w, 2)
        roi = warp_composite(self.roi_src, grid, overlay, alpha)  # (N, 3, h, w)
        frames = self.portrait.unsqueeze(0).repeat(controls.shape[0], 1, 1, 1)
        x0, y0, x1, y1 = self.roi
        frames[:, y0:y1, x0:x1] = (roi.permute(0, 2, 3, 1) * 255.0 + 0.5).clamp(0, 255).to(torch.uint8)
        return frames

    def _head_pose(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output pixel -> portrait pixel for a small rigid head motion, feathered into the body."""
        g = self.g
        yaw, pitch, roll = c[:, Control.HEAD_YAW], c[:, Control.HEAD_PITCH], c[:, Control.HEAD_ROLL]
        tx, ty = yaw * 0.02 * g.face_rx, pitch * 0.018 * g.face_ry
        px, py = g.face_cx, g.chin_y + 0.3 * g.face_ry  # pivot near the top of the neck
        th = roll * (math.pi / 180.0)
        dx, dy = self.X - tx - px, self.Y - ty - py
        cos, sin = torch.cos(th), torch.sin(th)
        rx, ry = cos * dx + sin * dy + px, -sin * dx + cos * dy + py
        d = torch.sqrt(((self.X - g.face_cx) / g.face_rx) ** 2 + ((self.Y - g.face_cy) / g.face_ry) ** 2)
        m = 1.0 - smoothstep(1.0, 1.4, d)
        return self.X + m * (rx - self.X), self.Y + m * (ry - self.Y)

    def _mouth(self, c: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor,
               jaw_amp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.g
        mw = g.mouth_half_w
        # Jaw: everything from the lip line down to the chin drops; the neck below stretches.
        # Between the lips the ramp is short (the cavity covers the fold it makes); beside the
        # mouth it widens into the cheeks so the skin stretches instead of tearing.
        lens = torch.clamp(1 - ((qx - g.mouth_x) / (1.1 * mw)) ** 2, 0.0, 1.0)
        spread = 1.3 * mw * (1.0 - lens)
        ramp_end = g.mouth_y + 0.6 * (g.lower_lip_y - g.mouth_y) + 1.0
        below = smoothstep(g.mouth_y - spread, ramp_end + spread, qy)
        neck = 1.0 - smoothstep(g.chin_y, g.chin_y + 0.9 * (g.chin_y - g.mouth_y), qy)
        across = torch.exp(-0.5 * ((qx - g.mouth_x) / (1.7 * mw)) ** 4)
        sy = sy - jaw_amp * below * neck * across
        # Width (visemes): stretch or pinch around the mouth centre.
        around = torch.exp(-((qx - g.mouth_x) / (1.4 * mw)) ** 2 - ((qy - g.mouth_y) / (0.9 * mw)) ** 2)
        sx = sx - c[:, Control.MOUTH_WIDTH] * 0.2 * (qx - g.mouth_x) * around
        # Smile: corners up and out.
        corner = torch.exp(-(((qx - g.mouth_x).abs() - mw) ** 2 + (qy - g.corner_y) ** 2) / (0.6 * mw) ** 2)
        smile = c[:, Control.SMILE]
        sy = sy + smile * 0.18 * mw * corner
        sx = sx - smile * 0.1 * (qx - g.mouth_x) * corner
        return sx, sy

    def _eyes_and_brows(self, c: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
        """Blinks slide the upper-lid skin down over the eye; brows move up or down."""
        for eye, ctl in zip(self.g.eyes, (Control.BLINK_LEFT, Control.BLINK_RIGHT), strict=True):
            half, ex = (eye.x1 - eye.x0) / 2, (eye.x0 + eye.x1) / 2
            u = (qx - ex) / half
            lens = torch.clamp(1 - u * u, 0.0, 1.0)
            top = eye.y_corner + (eye.y_top - eye.y_corner) * lens
            bottom = eye.y_corner + (eye.y_bottom - eye.y_corner) * lens
            brow = eye.y_brow + 0.35 * (eye.y_top - eye.y_brow)
            lid = top + c[:, ctl] * 0.97 * (bottom - top)  # where the upper lid edge is now
            upper = brow + (qy - brow) * (top - brow) / torch.clamp(lid - brow, min=1e-3)
            lower = top + (qy - lid) * (bottom - top) / torch.clamp(bottom - lid, min=1e-3)
            src = torch.where(qy < lid, upper, lower)
            inside = (qy >= brow) & (qy <= bottom)
            fade = 1.0 - smoothstep(0.9, 1.3, u.abs())
            sy = sy + torch.where(inside, (src - qy) * fade, torch.zeros_like(qy))
            brow_w = torch.exp(-((qx - ex) / (1.2 * half)) ** 2 - ((qy - eye.y_brow) / (0.8 * half)) ** 2)
            sy = sy + c[:, Control.BROW_RAISE] * 0.25 * half * brow_w
        return sy

    def _cavity(self, qx: torch.Tensor, qy: torch.Tensor, jaw_amp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mouth interior where the lips part: dark cavity, upper teeth, tongue, soft edges."""
        g = self.g
        u = (qx - g.mouth_x) / (0.9 * g.mouth_half_w)
        lens = torch.clamp(1 - u * u, 0.0, 1.0)
        top = g.corner_y + (g.mouth_y - g.corner_y) * lens
        opening = jaw_amp * lens  # (N, h, w): lip gap in pixels at this column
        bottom = top + opening
        soft = 0.7
        a = torch.sigmoid((qy - top) / soft) * torch.sigmoid((bottom - qy) / soft)
        a = a * torch.clamp(opening / 2.0, 0.0, 1.0) * smoothstep(1.0, 0.8, u.abs())
        depth = qy - top
        teeth = torch.sigmoid((torch.clamp(0.3 * opening, max=0.32 * g.mouth_half_w) - depth) / soft)
        tongue = torch.sigmoid((qy - (bottom - 0.3 * opening)) / soft) * lens
        shade = 0.55 + 0.45 * lens
        rgb = []
        for k in range(3):
            v = CAVITY_RGB[k] + (TONGUE_RGB[k] - CAVITY_RGB[k]) * tongue
            v = v + (TEETH_RGB[k] * (0.75 + 0.25 * lens) - v) * teeth
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
        with torch.inference_mode():
            frames = self.renderer(torch.from_numpy(controls)).numpy()
        rendered = RenderedWindow(window.start_frame, frames, window.audio,
                                  (time.perf_counter() - t0) * 1000.0, window.created_t_s)
        last = FirstFrame(rendered.end_frame - 1, frames[-1], controls[-1])
        return rendered, last
