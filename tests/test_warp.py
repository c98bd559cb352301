"""The warp generator's CPU fast path (OpenCV byte remap) agrees with its torch module."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.generator import prepare_avatar
from engine.generator.warp import WarpGenerator
from engine.types import N_CONTROLS, Control, MotionWindow
from tests.conftest import REPO

LOWRES = REPO / "tests/data/portraits/hopper_lowres_160.jpg"

@pytest.mark.parametrize("portrait", [None, REPO / "tests/data/portraits/hopper.jpg", LOWRES],
                         ids=["stride1", "stride2", "bicubic"])
def test_fast_path_matches_the_torch_module(portrait) -> None:
    gen = WarpGenerator(prepare_avatar(portrait))
    assert gen.renderer.bicubic == (portrait == LOWRES)  # a 61 px face; the astronaut's is 92 px
    n = 6
    c = np.zeros((n, N_CONTROLS), np.float32)
    c[:, Control.JAW_OPEN] = np.linspace(0, 1, n)
    c[:, Control.BLINK_LEFT] = np.linspace(1, 0, n)
    c[:, Control.HEAD_ROLL] = 3.0
    c[:, Control.SMILE] = 0.5
    c[:, Control.GAZE_X] = -0.5
    fast = gen._frames(c).astype(np.int16)
    with torch.inference_mode():
        reference = gen.renderer(torch.from_numpy(c)).numpy().astype(np.int16)
    assert fast.shape == reference.shape
    assert np.abs(fast - reference).mean() < 0.25  # in 0..255 levels
    assert np.abs(fast - reference).max() <= 8


def test_a_small_face_keeps_its_lip_seam_at_a_half_pixel_shift(monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle head moves by fractions of a pixel: on a small face the closed lips' seam keeps its contrast when the
    head is lifted by half a pixel (bilinear resampling would average it with the lips beside it)."""
    import engine.generator.warp as warp

    avatar = prepare_avatar(LOWRES)
    lm = avatar.landmarks
    x, y = (round(float(v)) for v in (lm[13, :2] + lm[14, :2]) / 2)

    def seam_contrast(gen: WarpGenerator) -> np.ndarray:
        c = np.zeros((2, N_CONTROLS), np.float32)
        c[1, Control.BREATH] = 0.5 / (0.012 * gen.renderer.g.face_ry)  # breath lifts the head by 0.012 face_ry
        luma = gen._frames(c).astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        rows = luma[:, y - 3 : y + 4, x - 3 : x + 4].mean(axis=2)  # across the seam, 7 columns averaged
        return rows.max(axis=1) - rows.min(axis=1)

    sharp = seam_contrast(WarpGenerator(avatar))
    assert sharp[1] >= 0.95 * sharp[0], sharp
    monkeypatch.setattr(warp, "SHARP_FACE_W", 0.0)  # bilinear, as larger faces are drawn
    soft = seam_contrast(WarpGenerator(avatar))
    assert soft[1] < 0.9 * soft[0], soft


def test_render_returns_the_next_condition_and_keeps_the_seam_smooth() -> None:
    gen = WarpGenerator(prepare_avatar())
    first = np.zeros((4, N_CONTROLS), np.float32)
    first[:, Control.JAW_OPEN] = [0.0, 0.1, 0.2, 0.3]
    window, condition = gen.render(MotionWindow(0, first, np.zeros(4000, np.float32)), gen.first_frame())
    assert condition.frame_index == 3
    np.testing.assert_array_equal(condition.rgb, window.frames_rgb[-1])
    jump = np.zeros((4, N_CONTROLS), np.float32)
    jump[:, Control.JAW_OPEN] = 1.0  # the plan jumps: the window's first frame may not
    window2, _ = gen.render(MotionWindow(4, jump, np.zeros(4000, np.float32)), condition)
    seam = np.abs(window2.frames_rgb[0].astype(int) - condition.rgb.astype(int)).mean()
    inside = np.abs(window2.frames_rgb[1].astype(int) - window2.frames_rgb[0].astype(int)).mean()
    assert seam <= inside * 1.5 + 0.05


def test_windows_carry_yuv420_for_the_encoder() -> None:
    import cv2

    gen = WarpGenerator(prepare_avatar())
    c = np.zeros((3, N_CONTROLS), np.float32)
    c[:, Control.JAW_OPEN] = [0.2, 0.5, 0.8]
    window, _ = gen.render(MotionWindow(0, c, np.zeros(3000, np.float32)), gen.first_frame())
    h, w = window.frames_rgb.shape[1:3]
    assert window.frames_i420 is not None and window.frames_i420.shape == (3, h * 3 // 2, w)
    for rgb, yuv in zip(window.frames_rgb, window.frames_i420, strict=True):
        np.testing.assert_array_equal(yuv, cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420))


def test_the_mouth_interior_takes_its_colours_from_the_portrait() -> None:
    """The cavity is a deep shade of the photo's own lips, and the teeth follow its light: the same
    portrait darkened gives darker teeth, tinted toward a red cast gives a redder cavity."""
    from engine.generator.warp import mouth_palette

    avatar = prepare_avatar()
    base = mouth_palette(avatar.rgb, avatar.landmarks)
    dim = mouth_palette((avatar.rgb * 0.6).astype(np.uint8), avatar.landmarks)
    warm = mouth_palette(np.clip(avatar.rgb * (1.0, 0.8, 0.7), 0, 255).astype(np.uint8), avatar.landmarks)
    r, g, b = base["cavity"]
    assert r > g and r > b and max(base["cavity"]) < 0.35, base  # dark, in the lips' red
    assert sum(dim["teeth"]) < 0.9 * sum(base["teeth"]), (dim, base)
    assert warm["cavity"][0] / max(warm["cavity"][2], 1e-3) > base["cavity"][0] / max(base["cavity"][2], 1e-3)


def test_the_head_split_is_made_at_prepare_and_stands_only_for_its_own_avatar(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from engine.generator import head_motion, person_alpha

    avatar = prepare_avatar()
    assert avatar.head is not None and avatar.head.made_from(avatar.landmarks, avatar.rgb, avatar.matte, avatar.plate)
    x0, y0, x1, y1 = avatar.head.roi
    assert avatar.head.part.shape == (y1 - y0, x1 - x0)  # cropped to the box: no full-frame masks kept
    made: list[int] = []
    head_split = head_motion.head_split
    monkeypatch.setattr(head_motion, "head_split", lambda *a: made.append(1) or head_split(*a))
    WarpGenerator(avatar)
    person_alpha._keying_layer(avatar)
    assert made == [], "a stream's start made the head split again"
    moved = dataclasses.replace(avatar, landmarks=avatar.landmarks + np.float32(2.0))  # the split no longer fits
    assert WarpGenerator(moved).renderer.roi != avatar.head.roi and made == [1]


@pytest.mark.parametrize("portrait", ["astronaut", "guido_grey_beard_glasses", "pedersen_tilted"])
def test_the_mouths_field_solved_on_every_other_sample_draws_the_same_mouth(portrait, monkeypatch) -> None:
    """The mouth's offsets are solved on every other field sample and interpolated between (`warp.MOUTH_STEP`: a
    quarter of the mouth's cost, a quarter of a frame's at 512x512 in windows of 8). Speaking poses (jaw, smile,
    rounding, a turned head) both ways: the offsets within 0.2 px at the 99th percentile over the mouth's box
    (measured 0.06-0.13 px at field strides 1, 2 and 4; interpolated half a sample off, 0.26-0.77), and the frames'
    mouth box within 1 level on average (0.11-0.34; the most on guido_grey_beard_glasses's beard, whose hairs move by
    a fraction of a pixel: enlarged, the two look the same); a still mouth is unchanged."""
    import engine.generator.warp as warp

    avatar = prepare_avatar(None if portrait == "astronaut" else REPO / f"tests/data/portraits/{portrait}.jpg")
    gen = WarpGenerator(avatar)
    r = gen.renderer
    c = np.zeros((4, N_CONTROLS), np.float32)
    for i, (jaw, smile, rounded, yaw) in enumerate(((0.3, 0, 0, 3), (0.6, 0.5, 0, -4), (1, 0, 0.8, 0), (0, 0, 0, 0))):
        c[i, [Control.JAW_OPEN, Control.SMILE, Control.MOUTH_ROUND, Control.HEAD_YAW]] = jaw, smile, rounded, yaw
    with torch.inference_mode():
        cc = torch.from_numpy(c)[:, :, None, None]
        qx, qy = r._head_map(cc).unbind(1)
        ys, xs = r.mouth_slices
        fields, frames = [], []
        for step in (1, 2):
            monkeypatch.setattr(warp, "MOUTH_STEP", step)
            fields.append(r._mouth_offsets(cc, qx[:, ys, xs], qy[:, ys, xs]))
            frames.append(gen._frames(c).astype(np.int16))
    (ax, ay), (bx, by) = fields
    off = torch.quantile(torch.hypot(ax - bx, ay - by).flatten(), 0.99).item()
    x0, y0 = r.roi[:2]
    mx0, my0, mx1, my1 = r.mouth_box_px
    d = np.abs(frames[0] - frames[1])[:, y0 + my0 : y0 + my1, x0 + mx0 : x0 + mx1].max(axis=-1)
    print(f"{portrait}: offsets p99 {off:.3f} px; frames mean {d.mean():.3f}, max {d.max()}")
    assert off < 0.2
    assert d.mean() < 1.0
    assert np.abs(frames[0][3] - frames[1][3]).max() <= 1, "the still mouth changed"


@pytest.mark.parametrize("name, side, spares", [("hopper_tall_exif6", 1280, 0.1), ("pedersen_tilted", 720, 0.0)])
def test_the_byte_path_by_bands_draws_the_same_bytes(name: str, side: int, spares: float) -> None:
    """kernels.warp_bands: a large box is remapped and composited only where its window's map can change anything
    (the plate beside the head, the solid face without a plate under it); the frames are the bytes of the whole box
    remapped. Both boxes meet the picture's edges (the layer read mirrored past them); pedersen_tilted's face fills
    its picture, and its bands spare little of the remap."""
    gen = WarpGenerator(prepare_avatar(REPO / f"tests/data/portraits/{name}.jpg", max_side_px=side))
    r = gen.renderer
    assert r.reach is not None, "a box this large is drawn by bands"
    assert any(r.at_edge[0] + r.at_edge[1]), "both boxes meet the picture's edges"
    n = 6
    c = np.zeros((n, N_CONTROLS), np.float32)
    c[:, Control.JAW_OPEN] = np.linspace(0, 1, n)
    c[:, Control.HEAD_YAW] = np.linspace(-6, 6, n)
    c[:, Control.HEAD_PITCH] = np.linspace(4, -4, n)
    c[:, Control.HEAD_ROLL] = np.linspace(-5, 5, n)
    c[:, Control.BLINK_RIGHT] = np.linspace(1, 0, n)
    c[:, Control.SMILE] = 0.5
    banded = gen._frames(c)
    x0, y0, x1, y1 = r.roi
    bands = r.reach.bands(gen._moved_px(r.maps(torch.from_numpy(c))[0].detach().numpy()))
    spared = sum((b.y1 - b.y0) * ((x1 - x0) - (b.x3 - b.x0)) for b in bands)
    assert spared >= spares * (x1 - x0) * (y1 - y0), "the bands spare the plate beside the head"
    r.reach = None
    assert np.array_equal(banded, gen._frames(c))
