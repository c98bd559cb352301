"""The rig in the face's own frame (issue 13): a tilted or small face animates like an upright one.

The strict check is on pixels: the rotated portrait's render against the upright portrait's render turned
the same way. mediapipe's inner-lip gap (in face units) is checked beside it where the mesh reads the
mouth reliably (benchmarks/face_frame.py prints the whole table)."""

from __future__ import annotations

import dataclasses
import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.face_frame import downscaled, face_axes, lip_vector, prepared, rotated, upright_face
from benchmarks.quality import EMBEDDED, PORTRAIT_DIR, controls, load, render
from benchmarks.realism import face_centre, rotated_copy, turned
from engine.generator import AvatarError, PreparedAvatar, prepare_avatar
from engine.generator.mouth import ONE_PIECE
from engine.generator.rig import build_rig
from engine.generator.warp import WarpRenderer
from kernels.warp_cv2 import upsample

JAW = (0.3, 0.6, 1.0)
TURN_DEG = 15.0


@cache
def twins(kind: str) -> tuple[PreparedAvatar, PreparedAvatar]:
    """(upright, turned by TURN_DEG) portraits: the astronaut, or hopper with its face ~90 px wide."""
    upright = load(EMBEDDED, 720)
    if kind == "small":
        hopper = load(str(PORTRAIT_DIR / "hopper.jpg"), 720)
        upright = prepared("hopper small", downscaled(hopper.rgb, hopper.landmarks, 90.0))
    # The turned twin is made from the closed rest, which shows no teeth of its own: the upright one is drawn
    # with the rig's teeth too (not the photo's), so that only the geometry is compared.
    upright = dataclasses.replace(upright, rest=None)
    return upright, prepared(f"{kind} turned", rotated(upright.rgb, upright.landmarks, TURN_DEG))


def jaw_frames(avatar: PreparedAvatar) -> np.ndarray:
    return render(WarpRenderer(avatar).eval(), np.concatenate([controls(1, JAW_OPEN=j) for j in (0.0, *JAW)]))


def test_the_rig_measures_a_turned_face_as_the_upright_one() -> None:
    """The same mesh turned by any roll gives the same mouth and eye geometry, and the roll itself."""
    lm = load(EMBEDDED, 720).landmarks.astype(np.float64)
    up = build_rig(lm)
    for deg in (15.0, -15.0, 40.0):
        th = math.radians(deg)
        rot = np.array([[math.cos(th), math.sin(th)], [-math.sin(th), math.cos(th)]])  # turns the mouth to the right
        turned = build_rig((lm - 250.0) @ rot.T + 300.0)
        assert math.degrees(turned.frame.roll - up.frame.roll) == pytest.approx(deg, abs=0.01)
        for a, b in ((up.mouth_half_w, turned.mouth_half_w), (up.chin_y - up.mouth_y, turned.chin_y - turned.mouth_y),
                     (up.lower_lip_y - up.upper_lip_y, turned.lower_lip_y - turned.upper_lip_y)):
            assert b == pytest.approx(a, rel=1e-6)
        for e, f in zip(up.eyes, turned.eyes, strict=True):
            assert (f.half_w, f.y_bottom - f.y_top, f.y_c1 - f.y_c0) == pytest.approx(
                (e.half_w, e.y_bottom - e.y_top, e.y_c1 - e.y_c0), rel=1e-6, abs=1e-6)
            assert f.upper == pytest.approx(e.upper, abs=1e-6) and f.lower == pytest.approx(e.lower, abs=1e-6)


@pytest.mark.parametrize("kind", ["astronaut", "small"])
def test_a_face_turned_15_degrees_opens_its_mouth_like_the_upright_one(kind: str) -> None:
    upright, turned = twins(kind)
    up_frames, turned_frames = jaw_frames(upright), jaw_frames(turned)
    lm = turned.landmarks
    mouth = lm[[61, 291, 13, 14, 152]]
    (x0, y0), (x1, y1) = mouth.min(axis=0).astype(int) - 6, mouth.max(axis=0).astype(int) + 6
    for j, u, t in zip(JAW, up_frames[1:], turned_frames[1:], strict=True):
        same = rotated(u, upright.landmarks, TURN_DEG)[y0:y1, x0:x1].astype(np.int16)
        diff = float(np.abs(same - t[y0:y1, x0:x1]).mean())
        # Measured on the astronaut 1.9 / 3.0 / 4.5 levels at jaw 0.3 / 0.6 / 1.0 (the interior's teeth edges and
        # tongue, resampled at another angle); before the face frame 10-20.
        assert diff < 5.0, f"jaw {j}: the turned face's mouth differs from the upright one's by {diff:.1f} levels"
    # Before the face frame: 12-38 % less opening at jaw 0.6-1.0 on the astronaut, and 10-20 levels above.
    e2m = [lip_vector(upright_face(f[0], a.landmarks, d))[1]
           for f, a, d in ((up_frames, upright, 0.0), (turned_frames, turned, TURN_DEG))]
    axis = face_axes(lip_vector_landmarks(turned_frames[0]))[0]
    for k, j in enumerate(JAW):
        gap_up = np.linalg.norm(lip_vector(upright_face(up_frames[k + 1], upright.landmarks, 0.0))[0]) / e2m[0]
        gap = np.linalg.norm(lip_vector(upright_face(turned_frames[k + 1], turned.landmarks, TURN_DEG))[0]) / e2m[1]
        if kind == "astronaut" or j < 1.0:  # hopper ~90 px wide, mouth wide open: the mesh itself wanders by 20 %
            assert gap == pytest.approx(gap_up, rel=0.1), (j, gap, gap_up)
        v = lip_vector(turned_frames[k + 1])[0]
        angle = math.degrees(math.atan2(axis[0] * v[1] - axis[1] * v[0], float(v @ axis)))
        limit = 5.0 if kind == "astronaut" else 10.0  # the small face's mesh wanders that much upright too
        assert abs(angle) < limit, f"jaw {j}: the opening is {angle:.1f} degrees off the face's own vertical"


def lip_vector_landmarks(frame: np.ndarray) -> np.ndarray:
    from engine.generator.faces import face_mesh

    lm = face_mesh(frame)
    assert lm is not None
    return lm[:, :2]


def landed(renderer: WarpRenderer, ctl: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, P, 2): where each portrait point lands in each frame's output (portrait pixels), by inverting the
    generator's backward map: its nearest pixel, then Newton steps on the map's bilinear pixels (sub-pixel)."""
    with torch.inference_mode():
        sx, sy, *_ = renderer.fields(torch.from_numpy(ctl))
    x0, y0, x1, y1 = renderer.roi
    s = renderer.stride
    out = np.empty((len(ctl), len(points), 2))
    for i in range(len(ctl)):
        mx, my = (upsample(m[i].numpy(), s, y1 - y0, x1 - x0, renderer.pad * s) for m in (sx, sy))
        for k, target in enumerate(np.asarray(points, np.float64) - (x0, y0)):
            yy, xx = np.unravel_index(int(np.argmin(np.square(mx - target[0]) + np.square(my - target[1]))), mx.shape)
            p = np.array([xx, yy], np.float64)
            for _ in range(3):
                xi, yi = round(p[0]), round(p[1])
                jac = 0.5 * np.array([[mx[yi, xi + 1] - mx[yi, xi - 1], mx[yi + 1, xi] - mx[yi - 1, xi]],
                                      [my[yi, xi + 1] - my[yi, xi - 1], my[yi + 1, xi] - my[yi - 1, xi]]])
                at = np.array([mx[yi, xi], my[yi, xi]]) + jac @ (p - (xi, yi))
                p = p + np.linalg.solve(jac, target - at)
            out[i, k] = p + np.array([x0, y0])
    return out


def test_a_prepared_portrait_turned_15_degrees_drops_its_jaw_like_the_upright_one(tmp_path: Path) -> None:
    """benchmarks/realism.py's rotated case (hopper as prepared, its photo turned by 15 degrees and prepared
    again), through the generator directly, over the blend of the soft field into the jaw's one piece and wide
    open: the lips part as far as upright's (the middle of each lip's red, where the warp carries it; no mesh,
    which reads a tilted open mouth smaller), the lower lip drops along the face's own vertical, and the mouth
    and chin are the upright render turned alike."""
    upright = load(str(PORTRAIT_DIR / "hopper.jpg"), 720)
    rotated = prepare_avatar(rotated_copy(upright, TURN_DEG, tmp_path / "hopper_turned.png"), max_side_px=720,
                             cache_dir=None)
    levels = (ONE_PIECE[0], round(0.5 * (ONE_PIECE[0] + ONE_PIECE[1]), 3), ONE_PIECE[1], 0.7, 1.0)
    ctl = np.concatenate([controls(1, JAW_OPEN=j) for j in levels])
    gaps, drops, rolls, frames = [], [], [], []
    for avatar in (upright, rotated):
        renderer = WarpRenderer(avatar).eval()
        lm = avatar.landmarks[:, :2].astype(np.float64)
        lips = np.stack([(lm[13] + lm[0]) / 2, (lm[14] + lm[17]) / 2])  # mid upper lip, mid lower lip
        at = landed(renderer, ctl, lips)
        gaps.append(np.linalg.norm(at[:, 1] - at[:, 0], axis=1) - np.linalg.norm(lips[1] - lips[0]))
        drops.append(at[:, 1] - lips[1])
        rolls.append(renderer.g.frame.roll)
        frames.append(render(renderer, ctl))
    # Measured 0.986-0.987 at every level (4.0 .. 27.6 px of opening upright); the mesh read the same renders tilted
    # at 0.91 (benchmarks/realism.py).
    ratio = gaps[1] / gaps[0]
    assert np.all(gaps[0] > 2.0) and np.all(np.abs(ratio - 1.0) <= 0.1), (levels, gaps, ratio)
    for avatar, drop, roll in zip((upright, rotated), drops, rolls, strict=True):
        for j, (dx, dy) in zip(levels, drop, strict=True):
            off = math.degrees(math.atan2(dx, dy) - roll)
            assert abs(off) < 3.0, f"{avatar.name} jaw {j}: the lower lip drops {off:.1f} deg off the face's vertical"
    lm = rotated.landmarks
    mouth = lm[[61, 291, 13, 14, 152]]
    (x0, y0), (x1, y1) = mouth.min(axis=0).astype(int) - 6, mouth.max(axis=0).astype(int) + 6
    for j, u, t in zip(levels, *frames, strict=True):
        same = turned(u, face_centre(upright), TURN_DEG)[y0:y1, x0:x1].astype(np.int16)
        diff = float(np.abs(same - t[y0:y1, x0:x1]).mean())
        # Measured 1.4 / 1.8 / 2.1 / 2.8 / 3.5 levels (resampled at another angle, each prepared on its own photo).
        assert diff < 5.0, f"jaw {j}: the turned hopper's mouth differs from the upright one's by {diff:.1f} levels"


def test_prepare_says_when_a_head_is_tilted_and_refuses_past_the_limit(tmp_path: Path) -> None:
    """Mouth, eyes and head turns follow any tilt; the neck and the jaw line do not (they are drawn along the
    photo's axes): a tilt past NOTE_ROLL_DEG is accepted with a note, one past MAX_ROLL_DEG refused with the
    reason."""
    upright = load(EMBEDDED, 720)
    for deg in (30.0, 60.0):
        Image.fromarray(rotated(upright.rgb, upright.landmarks, deg)).save(tmp_path / f"tilted{deg:.0f}.png")
    avatar = prepare_avatar(tmp_path / "tilted30.png", cache_dir=None)
    assert any("head tilted about" in note and "image's left" in note for note in avatar.notes), avatar.notes
    with pytest.raises(AvatarError, match=r"head too tilted: about (\d+) degrees toward the image's left; at most 45"):
        prepare_avatar(tmp_path / "tilted60.png", cache_dir=None)
