"""The rig in the face's own frame, and the blink, measured with mediapipe on rendered frames.

    python -m benchmarks.face_frame [--sheet out.png] [--closeup docs/blink_closeup.png] [--json out.json]

- roll: the astronaut upright and rotated by +-ROLL_DEG (about its face centre, padded so nothing is cut),
  hopper downscaled so that the face is about SMALL_FACE_PX wide, upright and rotated. For each: the
  inner-lip gap (mesh points 13-14, static mode) at jaw 0.3 / 0.6 / 1.0 in face units (the rest frame's
  eye-to-mouth distance), relative to the upright twin's (target: within 10 %), and the angle of the
  opening's axis (13 -> 14) from the face's own vertical axis (eye centre -> mouth centre; target: a few
  degrees). The gap of a rotated case is read on its frames turned back upright: mediapipe itself reads a
  wide-open mouth differently when tilted (an upright render turned by 15 degrees reads up to 45 % less at
  jaw 1 than the same render upright), and that is the mesh, not the rig. Beside it, `pixels`: the rotated
  portrait's render against the upright portrait's render turned the same way, mean absolute difference
  over the face in 0..255 levels (the strict check that the rig turned with the face).
- blink: eye aspect ratio (|159-145| / |33-133| and its right-eye twin, the worse eye) at full blink
  over the open eye's, on every portrait; and on hopper (glasses) how far the pixels of the glasses'
  rim move during the blink: the backward map's displacement at the strong edges around the eyes but
  outside the eye openings (target < 1 px).
- a contact sheet (rest, blink 0.5, blink 1, jaw 1) of every case, and an eye close-up (docs/blink_closeup.png).
  One more case: eyes already half closed in the photo (the astronaut rendered with its lids half down).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

from benchmarks.quality import EMBEDDED, EYE_LEFT, EYE_RIGHT, PORTRAIT_DIR, controls, load, render
from engine.generator import PreparedAvatar
from engine.generator.avatar import detect_landmarks
from engine.generator.faces import face_mesh
from engine.generator.rig import EYES, LID_CONTOURS
from engine.generator.warp import WarpRenderer
from kernels.warp_cv2 import upsample

ROLL_DEG = 15.0
SMALL_FACE_PX = 90.0
JAW_LEVELS = (0.3, 0.6, 1.0)
EYE_CENTRE = (33, 133, 362, 263)
MOUTH_CENTRE = (13, 14, 61, 291)
MESH_PX = 384


def rotated(rgb: np.ndarray, landmarks: np.ndarray, deg: float) -> np.ndarray:
    """The photo turned by deg (counter-clockwise on screen) about its face centre, on a canvas large
    enough that no corner is cut (borders replicated, as a photo's surroundings would continue)."""
    h, w = rgb.shape[:2]
    cx, cy = landmarks[:, :2].mean(axis=0)
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), deg, 1.0)
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ m.T
    x0, y0 = corners.min(axis=0)
    x1, y1 = corners.max(axis=0)
    m[:, 2] -= (x0, y0)
    size = (math.ceil(x1 - x0) // 2 * 2, math.ceil(y1 - y0) // 2 * 2)
    return cv2.warpAffine(rgb, m, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def downscaled(rgb: np.ndarray, landmarks: np.ndarray, face_px: float) -> np.ndarray:
    scale = face_px / float(np.ptp(landmarks[:, 0]))
    w, h = round(rgb.shape[1] * scale) // 2 * 2, round(rgb.shape[0] * scale) // 2 * 2
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)


def prepared(name: str, rgb: np.ndarray) -> PreparedAvatar:
    landmarks, notes = detect_landmarks(rgb, name)
    return PreparedAvatar(name, np.ascontiguousarray(rgb), landmarks, notes)


def cases() -> list[tuple[PreparedAvatar, int, float]]:
    """(portrait, index of its upright twin in the list, degrees it is turned from that twin) for every case."""
    upright = load(EMBEDDED, 720)
    upright.name = "astronaut"
    turned = prepared(f"astronaut {ROLL_DEG:+.0f} deg", rotated(upright.rgb, upright.landmarks, ROLL_DEG))
    turned_cw = prepared(f"astronaut {-ROLL_DEG:+.0f} deg", rotated(upright.rgb, upright.landmarks, -ROLL_DEG))
    hopper = load(str(PORTRAIT_DIR / "hopper.jpg"), 720)
    small = prepared("hopper small", downscaled(hopper.rgb, hopper.landmarks, SMALL_FACE_PX))
    small_turned = prepared(f"hopper small {ROLL_DEG:+.0f} deg", rotated(small.rgb, small.landmarks, ROLL_DEG))
    # eyes already part closed in the photo: the astronaut with its lids lowered by the rig, as a new photo
    half = prepared("astronaut lids half down", render(WarpRenderer(upright).eval(),
                                                       controls(1, BLINK_LEFT=0.6, BLINK_RIGHT=0.6))[0])
    return [(upright, 0, 0.0), (turned, 0, ROLL_DEG), (turned_cw, 0, -ROLL_DEG), (small, 3, 0.0),
            (small_turned, 3, ROLL_DEG), (hopper, 5, 0.0), (load(str(PORTRAIT_DIR / "luispedro.jpg"), 720), 6, 0.0),
            (half, 7, 0.0)]


def face_axes(lm: np.ndarray) -> tuple[np.ndarray, float]:
    """(unit vertical axis of the face, eye-to-mouth distance) from landmarks."""
    eyes, mouth = lm[list(EYE_CENTRE)].mean(axis=0), lm[list(MOUTH_CENTRE)].mean(axis=0)
    v = mouth - eyes
    return v / np.linalg.norm(v), float(np.linalg.norm(v))


def ear(lm: np.ndarray) -> tuple[float, float]:
    """Eye aspect ratio of each eye (image left, image right)."""
    return tuple(float(np.linalg.norm(lm[a] - lm[b]) / np.linalg.norm(lm[c] - lm[d]))  # type: ignore[return-value]
                 for a, b, c, d in (EYE_LEFT, EYE_RIGHT))


@dataclass
class Case:
    name: str
    face_px: float
    roll_deg: float
    jaw_gap: list[float]  # inner-lip gap / eye-to-mouth at JAW_LEVELS
    jaw_axis_deg: list[float]  # the opening's axis from the face's vertical, degrees
    blink_ear: float  # worse eye: EAR at full blink / open
    rim_px: float | None = None
    pixels: list[float] | None = None  # vs the upright twin's render turned alike, mean |diff| per jaw level


def pose_frames(avatar: PreparedAvatar) -> tuple[WarpRenderer, np.ndarray, np.ndarray]:
    r = WarpRenderer(avatar).eval()
    c = np.concatenate([controls(1), controls(1, BLINK_LEFT=0.5, BLINK_RIGHT=0.5),
                        controls(1, BLINK_LEFT=1.0, BLINK_RIGHT=1.0),
                        *(controls(1, JAW_OPEN=j) for j in JAW_LEVELS)])
    return r, c, render(r, c)


def rim_motion_px(avatar: PreparedAvatar, r: WarpRenderer, pose: np.ndarray | None = None) -> float:
    """Largest displacement of the backward map at the strong edges near the eyes, outside the openings
    (on glasses: the rim), at full blink or at `pose` (controls, (1, N_CONTROLS)). In output pixels."""
    pose = controls(1, BLINK_LEFT=1.0, BLINK_RIGHT=1.0) if pose is None else pose
    with torch.inference_mode():
        sx, sy, *_ = r.fields(torch.from_numpy(pose))
    x0, y0, x1, y1 = r.roi
    s = r.stride
    o = r.pad * s  # the field grid's padding sample on every side when strided
    dx = upsample((sx[0] - r.X[0]).numpy(), s, y1 - y0, x1 - x0, o)
    dy = upsample((sy[0] - r.Y[0]).numpy(), s, y1 - y0, x1 - x0, o)
    gray = cv2.cvtColor(avatar.rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32)
    edge = np.hypot(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
    lm = avatar.landmarks - (x0, y0)
    near = np.zeros(gray.shape, np.uint8)
    opening = np.zeros(gray.shape, np.uint8)
    for (outer, inner, *_), (upper, lower) in zip(EYES, LID_CONTOURS, strict=True):
        poly = lm[[outer, *upper, inner, *reversed(lower)]]
        c = poly.mean(axis=0)
        w = float(np.linalg.norm(lm[outer] - lm[inner]))
        cv2.ellipse(near, (int(c[0]), int(c[1])), (int(1.3 * w), int(0.9 * w)), 0, 0, 360, 1, -1)
        grown = c + (poly - c) * 1.6  # the opening and its lashes
        cv2.fillPoly(opening, [np.round(grown).astype(np.int32)], 1)
    sel = (near > 0) & (opening == 0) & (edge > np.percentile(edge[near > 0], 90))
    return float(np.hypot(dx, dy)[sel].max()) if sel.any() else 0.0


def lip_vector(frame: np.ndarray) -> tuple[np.ndarray, float]:
    """(the inner-lip 13 -> 14 vector, eye-to-mouth distance) as the static mesh reads them; NaN if no face."""
    lm = face_mesh(frame)
    if lm is None:
        return np.full(2, np.nan), float("nan")
    return lm[14, :2] - lm[13, :2], face_axes(lm[:, :2])[1]


def upright_face(frame: np.ndarray, landmarks: np.ndarray, deg: float) -> np.ndarray:
    """The face cropped (twice its size), turned back by deg and enlarged to MESH_PX: how every case's lip
    gap is read (face units: the scale cancels)."""
    cx, cy = landmarks.mean(axis=0)
    half = float(np.ptp(landmarks, axis=0).max())
    h, w = frame.shape[:2]
    x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
    crop = np.ascontiguousarray(frame[y0 : int(min(h, cy + half)), x0 : int(min(w, cx + half))])
    m = cv2.getRotationMatrix2D((float(cx - x0), float(cy - y0)), -deg, 1.0)
    upright = cv2.warpAffine(crop, m, crop.shape[1::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    scale = MESH_PX / max(upright.shape[:2])  # the mesh reads a small face poorly: measure it enlarged
    return cv2.resize(upright, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) if scale > 1 else upright


def measure(avatar: PreparedAvatar, turned_deg: float = 0.0) -> tuple[Case, np.ndarray]:
    r, _, frames = pose_frames(avatar)
    rest = face_mesh(frames[0])
    assert rest is not None, avatar.name
    rest = rest[:, :2]
    axis, _ = face_axes(rest)
    roll = math.degrees(math.atan2(-axis[0], axis[1]))
    e2m = lip_vector(upright_face(frames[0], avatar.landmarks, turned_deg))[1]  # face units: the rest frame's
    gaps, angles = [], []
    for f in frames[3:]:
        v = lip_vector(f)[0]
        gaps.append(float(np.linalg.norm(lip_vector(upright_face(f, avatar.landmarks, turned_deg))[0])) / e2m)
        cross = axis[0] * v[1] - axis[1] * v[0]
        angles.append(math.degrees(math.atan2(cross, float(v @ axis))))
    closed = face_mesh(frames[2])
    blink = float("inf") if closed is None else max(c / o for c, o in zip(ear(closed[:, :2]), ear(rest), strict=True))
    case = Case(avatar.name, float(np.ptp(avatar.landmarks[:, 0])), roll, gaps, angles, blink)
    if "hopper" in avatar.name:
        case.rim_px = rim_motion_px(avatar, r)
    return case, frames


def face_crop(avatar: PreparedAvatar, frames: np.ndarray, height: int) -> list[Image.Image]:
    lm = avatar.landmarks
    cx, cy = lm.mean(axis=0)
    half = 0.85 * max(np.ptp(lm[:, 0]), np.ptp(lm[:, 1]))
    box = (int(cx - half), int(cy - half), int(cx + half), int(cy + half))
    return [Image.fromarray(f).crop(box).resize((height, height), Image.Resampling.LANCZOS) for f in frames]


def eye_crop(avatar: PreparedAvatar, frame: np.ndarray, height: int) -> Image.Image:
    lm = avatar.landmarks
    pts = lm[[33, 133, 362, 263, 105, 334, 145, 374]]
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    pad = 0.25 * (x1 - x0)
    box = (int(x0 - pad), int(y0 - pad), int(x1 + pad), int(y1 + pad))
    im = Image.fromarray(frame).crop(box)
    return im.resize((round(im.width * height / im.height), height), Image.Resampling.LANCZOS)


def sheet(rows: list[tuple[str, list[Image.Image]]], labels: list[str]) -> Image.Image:
    tw = max(t.width for _, tiles in rows for t in tiles)
    th = max(t.height for _, tiles in rows for t in tiles)
    out = Image.new("RGB", (150 + len(labels) * (tw + 4), 24 + len(rows) * (th + 4)), (24, 24, 28))
    d = ImageDraw.Draw(out)
    for j, label in enumerate(labels):
        d.text((150 + j * (tw + 4), 6), label, fill=(235, 235, 235))
    for i, (name, tiles) in enumerate(rows):
        d.text((4, 24 + i * (th + 4) + th // 2), name, fill=(235, 235, 235))
        for j, t in enumerate(tiles):
            out.paste(t, (150 + j * (tw + 4), 24 + i * (th + 4)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sheet", type=Path, default=None)
    ap.add_argument("--closeup", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    results, face_rows, eye_rows = [], [], []
    twins, renders = [], []
    for avatar, twin, deg in cases():
        twins.append(twin)
        case, frames = measure(avatar, deg)
        renders.append((avatar, frames))
        if deg:  # the twin's render turned alike, over the face
            up_avatar, up_frames = renders[twin]
            lm = avatar.landmarks
            (x0, y0), (x1, y1) = lm.min(axis=0).astype(int), lm.max(axis=0).astype(int)
            turned = [rotated(u, up_avatar.landmarks, deg)[y0:y1, x0:x1] for u in up_frames[3:]]
            case.pixels = [float(np.abs(t.astype(np.int16) - f[y0:y1, x0:x1]).mean())
                           for t, f in zip(turned, frames[3:], strict=True)]
        results.append(case)
        face_rows.append((avatar.name, face_crop(avatar, frames[[0, 1, 2, 5]], 220)))
        if "small" not in avatar.name and f"{-ROLL_DEG:+.0f}" not in avatar.name:  # the close-up: one of each kind
            eye_rows.append((avatar.name, [eye_crop(avatar, f, 110) for f in frames[:3]]))
    print(f"{'portrait':24} {'face px':>7} {'roll':>6}  jaw gap / e2m (vs upright)  axis deg  "
          "blink EAR  rim px  pixels")
    for c, twin in zip(results, twins, strict=True):
        ref = results[twin]
        rel = " ".join(f"{g:.3f}({g / b - 1:+.0%})" for g, b in zip(c.jaw_gap, ref.jaw_gap, strict=True))
        ang = " ".join(f"{a:+.1f}" for a in c.jaw_axis_deg)
        rim = "" if c.rim_px is None else f"{c.rim_px:.2f}"
        pix = "" if c.pixels is None else " ".join(f"{p:.2f}" for p in c.pixels)
        print(f"{c.name:24} {c.face_px:7.0f} {c.roll_deg:+6.1f}  {rel}  {ang}  {c.blink_ear:8.2f}  {rim:6} {pix}")
    if args.sheet:
        sheet(face_rows, ["rest", "blink 0.5", "blink 1", "jaw 1"]).save(args.sheet)
    if args.closeup:
        sheet(eye_rows, ["rest", "blink 0.5", "blink 1"]).save(args.closeup)
    if args.json:
        args.json.write_text(json.dumps([c.__dict__ for c in results], indent=1))


if __name__ == "__main__":
    main()
