"""The mouth on real portraits, as mediapipe's face mesh sees the rendered frames: lips that close at rest
(a photo that smiles with its teeth included), an opening that grows with the jaw, an interior shaded like
one (no hard edge under the lips, darker deep in), and the photo's own teeth uncovered, not stretched."""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np
import pytest
import torch

from engine.generator import prepare_avatar
from engine.generator.avatar import load_portrait
from engine.generator.faces import face_mesh
from engine.generator.mouth import inner_lips, lip_gap
from engine.generator.rest_pose import CLOSED_GAP
from engine.generator.warp import WarpGenerator
from engine.types import N_CONTROLS, Control
from tests.conftest import REPO

PORTRAITS = {"astronaut": None, **{p: REPO / f"tests/data/portraits/{p}.jpg"
                                   for p in ("hopper", "hopper_tall_exif6", "luispedro")}}
LUMA = np.array([0.299, 0.587, 0.114])


@cache
def generator(name: str) -> WarpGenerator:
    return WarpGenerator(prepare_avatar(PORTRAITS[name]))


def frames(gen: WarpGenerator, **values: list[float]) -> np.ndarray:
    n = len(next(iter(values.values())))
    c = np.zeros((n, N_CONTROLS), np.float32)
    for control, v in values.items():
        c[:, Control[control]] = v
    return gen._frames(c)


def measured_gap(frame: np.ndarray) -> float:
    landmarks = face_mesh(frame)
    assert landmarks is not None, "the face mesh lost the face"
    return lip_gap(landmarks)


@pytest.mark.parametrize("name", list(PORTRAITS))
def test_lips_close_at_rest_and_part_further_as_the_jaw_opens(name: str) -> None:
    gen = generator(name)
    gaps = [measured_gap(f) for f in frames(gen, JAW_OPEN=[0.0, 0.3, 0.6, 1.0])]
    assert gaps[0] < CLOSED_GAP, (name, gaps)  # the astronaut's photo: 0.16
    assert all(b > a + 0.02 for a, b in itertools.pairwise(gaps)), (name, gaps)
    assert gaps[-1] > 0.15, (name, gaps)


def test_a_smile_showing_teeth_is_closed_for_the_rest_pose_unless_asked_to_keep_it() -> None:
    _, photo, _ = load_portrait(None, 720)
    closed = prepare_avatar()
    kept = prepare_avatar(keep_expression=True)
    assert closed.rest is not None and closed.rest.gap > 0.1 and lip_gap(closed.landmarks) < CLOSED_GAP
    np.testing.assert_array_equal(closed.rest.photo, photo)
    assert kept.rest is None
    np.testing.assert_array_equal(kept.rgb, photo)
    assert measured_gap(kept.rgb) > 0.1
    # The closing moves the lower face only: nothing above the nose's base changes.
    nose = int(closed.rest.landmarks[2, 1])
    np.testing.assert_array_equal(closed.rgb[:nose], photo[:nose])
    assert prepare_avatar(PORTRAITS["hopper"]).rest is None  # closed lips are left as they are


def _centre_column(gen: WarpGenerator, jaw: float) -> tuple[np.ndarray, np.ndarray, int]:
    """The luminance (0..255) down the mouth's centre column of a rendered frame, the interior's alpha
    there, and the row of the column's top in the frame."""
    r = gen.renderer
    c = np.zeros((1, N_CONTROLS), np.float32)
    c[0, Control.JAW_OPEN] = jaw
    frame = gen._frames(c)[0]
    with torch.inference_mode():
        _, _, _, alpha = r.fields(torch.from_numpy(c))
    alpha = alpha[0, 0].numpy()
    x0, y0, _, _ = r.mouth_box_px
    s = r.overlay_stride
    col = round(r.mouth.mouth_x - x0) // s
    rows = np.arange(alpha.shape[0]) * s + (s - 1) / 2  # sample centres, in ROI pixels
    column = frame[r.roi[1] + y0 : r.roi[1] + y0 + len(rows) * s, r.roi[0] + x0 + col * s + s // 2] @ LUMA
    return column, np.interp(np.arange(len(column)), rows, alpha[:, col]), r.roi[1] + y0


@pytest.mark.parametrize("name", ["astronaut", "hopper"])
def test_the_interior_meets_the_lips_without_a_hard_edge_and_is_darker_deep_in(name: str) -> None:
    column, alpha, _ = _centre_column(generator(name), 1.0)
    inside = np.flatnonzero(alpha > 0.5)
    top, bottom = inside[0], inside[-1]
    assert bottom - top > 6, (top, bottom)
    # Across each lip's edge the change is spread over pixels, not one step (a pasted shape's edge).
    for edge in (top, bottom):
        window = column[max(0, edge - 4) : edge + 5]
        contrast = window.max() - window.min()
        assert contrast > 20, (edge, window)
        assert np.abs(np.diff(window)).max() < 0.75 * contrast, (edge, window)
    # Deep in (the middle of the opening) darker than where light reaches, at the lips and on the teeth.
    span = bottom - top
    middle = column[top + span // 3 : bottom - span // 4]
    assert middle.min() < 0.5 * column[top : top + span // 4].max(), column[top : bottom + 1]
    assert middle.min() < 0.8 * column[bottom - 2 : bottom + 1].mean(), column[top : bottom + 1]
    # Not a flat fill: teeth, cavity and tongue differ.
    assert column[top : bottom + 1].std() > 15, column[top : bottom + 1]


@pytest.mark.parametrize("keep_expression", [False, True], ids=["closed-rest", "kept-expression"])
def test_the_photos_own_teeth_are_uncovered_where_they_were_not_stretched(keep_expression: bool) -> None:
    gen = WarpGenerator(prepare_avatar(keep_expression=keep_expression)) if keep_expression else generator("astronaut")
    _, photo, _ = load_portrait(None, 720)
    photo_landmarks = gen.avatar.landmarks if keep_expression else gen.avatar.rest.landmarks
    up, lo = inner_lips(photo_landmarks)
    xs = np.arange(int(up.cx - 0.4 * up.half_w), int(up.cx + 0.4 * up.half_w))
    u = (xs - up.cx) / up.half_w
    top, bottom = up.y_np(u), lo.y_np(u)
    # The upper half of the photo's teeth, where the opening at jaw 1 shows them.
    patch = [(int(np.ceil(t + 1.5)), int(np.floor(t + 0.5 * (b - t))), x)
             for t, b, x in zip(top, bottom, xs, strict=True)]
    rest, opened = frames(gen, JAW_OPEN=[0.0, 1.0])

    def diff(frame: np.ndarray) -> float:
        d = [np.abs(frame[y0 : y1 + 1, x].astype(int) - photo[y0 : y1 + 1, x].astype(int)).mean()
             for y0, y1, x in patch if y1 >= y0]
        return float(np.mean(d))

    assert diff(opened) < 12.0, diff(opened)  # the photo's teeth, at their place
    if keep_expression:
        assert diff(rest) < 1.0, diff(rest)  # the photo as it is
    else:
        assert diff(rest) > 30.0, diff(rest)  # ... which the closed lips cover at rest


def test_a_mouth_wide_open_in_the_photo_is_closed_and_prepare_says_it_is_a_limit(tmp_path) -> None:
    from PIL import Image

    wide = frames(WarpGenerator(prepare_avatar(keep_expression=True)), JAW_OPEN=[0.9])[0]
    path = tmp_path / "wide_open.png"
    Image.fromarray(wide).save(path)
    avatar = prepare_avatar(path, cache_dir=None)
    assert avatar.rest is not None and avatar.rest.gap > 0.25, avatar.rest
    assert any("wide open" in note for note in avatar.notes), avatar.notes
    # Lip skin covers the opening: of its dark inside at most a one-pixel seam is left at rest. (Counted in
    # pixels, not by the face mesh: on this rendered photo mediapipe puts the lower inner lip on the tongue,
    # then reads the lips closed there as a few percent of opening, by a margin that follows the tongue's shade.)
    up, lo = inner_lips(avatar.rest.landmarks)
    x0, x1 = int(up.cx - up.half_w), int(up.cx + up.half_w)
    y0, y1 = int(up.y_np(np.array([0.0]))[0]) - 2, int(lo.y_np(np.array([0.0]))[0]) + 2
    rest = frames(WarpGenerator(avatar), JAW_OPEN=[0.0])[0]
    dark = [int((f[y0:y1, x0:x1] @ LUMA < 60).sum(axis=0).max()) for f in (wide, rest)]  # in any one column
    assert dark[0] >= 5 and dark[1] <= 1, dark


def _interior(gen: WarpGenerator, **values: float) -> tuple[np.ndarray, np.ndarray]:
    """The interior the renderer draws for one frame: colour (h, w, 3, 0..1) and alpha (h, w), on its own
    grid over `mouth_box_px` (every `overlay_stride` pixels)."""
    c = np.zeros((1, N_CONTROLS), np.float32)
    for control, v in values.items():
        c[0, Control[control]] = v
    with torch.inference_mode():
        _, _, overlay, alpha = gen.renderer.fields(torch.from_numpy(c))
    return overlay[0].permute(1, 2, 0).numpy(), alpha[0, 0].numpy()


def test_a_teeth_photo_shows_its_own_upper_teeth_at_every_opening() -> None:
    gen = generator("astronaut")
    rest = gen.avatar.rest
    teeth = rest.teeth_colour()
    assert teeth is not None
    up, lo = inner_lips(rest.landmarks)
    x0, x1 = int(up.cx - up.half_w), int(up.cx + up.half_w)
    y0, y1 = int(up.y_np(np.array([0.0]))[0] - 0.5 * up.half_w), int(lo.y_np(np.array([0.0]))[0] + 0.3 * up.half_w)

    def teeth_pixels(frame: np.ndarray) -> int:  # in the upper part of the mouth, fixed to the head
        return int((np.linalg.norm(frame[y0:y1, x0:x1] / 255.0 - teeth, axis=-1) < 0.12).sum())

    own = teeth_pixels(rest.photo)
    assert own > 50, own
    shown = [teeth_pixels(f) for f in frames(gen, JAW_OPEN=[0.3, 0.6, 1.0])]
    # A slightly open mouth shows their edges under the relaxed upper lip; a wide one most of what the photo did.
    assert shown[0] > 0.15 * own and min(shown[1:]) > 0.4 * own, (shown, own)


def test_drawn_teeth_are_cream_like_the_photos_light_with_a_hint_of_each_tooth() -> None:
    gen = generator("hopper")
    assert gen.avatar.rest is None and gen.renderer.mouth.photo is None  # closed lips: the teeth are drawn
    rgb, alpha = _interior(gen, JAW_OPEN=0.6)
    luma = rgb @ LUMA
    inside = alpha > 0.9
    teeth = inside & (luma >= np.quantile(luma[inside], 0.85))
    colour = rgb[teeth].mean(axis=0)
    palette = np.array(gen.renderer.palette["teeth"])
    assert np.linalg.norm(colour - palette) < 0.15, (colour, palette)
    r, g, b = colour
    assert r > g > b and (r - b) / r > 0.08, colour  # cream, not a grey band
    # Across the front teeth, just above their edge: brightness varies tooth to tooth, without hard lines.
    y = int(np.argmax(teeth.sum(axis=1)))  # the row across the most teeth
    cols = np.flatnonzero(teeth[y])
    front = luma[y, cols[len(cols) // 4] : cols[3 * len(cols) // 4]]
    assert len(front) > 8, cols
    assert front.std() > 0.01, front
    assert np.abs(np.diff(front)).max() < 0.12, front


@pytest.mark.parametrize("name", ["hopper", "luispedro"])
def test_a_closed_smile_shows_the_lips_meeting_at_a_thin_dark_seam(name: str) -> None:
    gen = generator(name)
    rgb, alpha = _interior(gen, SMILE=1.0, JAW_OPEN=0.15)
    s = gen.renderer.overlay_stride
    assert (alpha.sum(axis=0) * s).max() < 2.0, (alpha.sum(axis=0) * s).max()  # a seam, not a gap
    seen = alpha > 0.05
    assert seen.any()
    seam = np.array(gen.renderer.palette["lip"]) * 0.42  # the lips' own dark colour, not teeth or grey
    dist = np.linalg.norm(rgb[seen] - seam, axis=1)
    assert np.average(dist, weights=alpha[seen]) < 0.08, dist.max()


def test_on_a_tilted_face_the_opening_lies_along_the_lips() -> None:
    gen = WarpGenerator(prepare_avatar(REPO / "tests/data/portraits/pedersen_tilted.jpg"))
    _, alpha = _interior(gen, JAW_OPEN=0.6)
    ys, xs = np.mgrid[: alpha.shape[0], : alpha.shape[1]]
    w = alpha / alpha.sum()
    mx, my = (w * xs).sum(), (w * ys).sum()
    cxx, cyy, cxy = (w * (xs - mx) ** 2).sum(), (w * (ys - my) ** 2).sum(), (w * (xs - mx) * (ys - my)).sum()
    opening = np.degrees(0.5 * np.arctan2(2 * cxy, cxx - cyy))
    (xa, ya), (xb, yb) = gen.avatar.landmarks[[78, 308], :2]
    lips = np.degrees(np.arctan2(yb - ya, xb - xa))
    assert abs(lips) > 10, lips  # the portrait is tilted
    assert abs(opening - lips) < 6, (opening, lips)


def test_the_inside_is_lit_from_the_side_the_lips_are_lit_from() -> None:
    from engine.generator.mouth import mouth_palette

    avatar = prepare_avatar()
    rgb = avatar.rgb.copy()
    cx = int(avatar.landmarks[13, 0])
    rgb[:, cx:] = (rgb[:, cx:] * 0.6).astype(np.uint8)  # the image's right half in shade
    left, _, right = mouth_palette(rgb, avatar.landmarks)["light"]
    assert right < 0.95 < 1.05 < left, (left, right)


@pytest.mark.parametrize("name", ["henner_glasses", "guido_grey_beard_glasses", "giunchedi_beard"])
def test_the_inside_is_a_dark_pink_red_whatever_the_lips_and_background(name: str) -> None:
    """Pale lips (guido), a green backdrop (henner) or lip samples in a beard (giunchedi) still give a mouth's
    inside: its dark toward red (not grey, olive or green), not a pure red either; teeth no brighter than the
    photo's skin or eye whites."""
    gen = WarpGenerator(prepare_avatar(REPO / f"tests/data/portraits/{name}.jpg"))
    rgb, alpha = _interior(gen, JAW_OPEN=0.8)
    luma = rgb @ LUMA
    inside = alpha > 0.9
    cavity = rgb[inside & (luma <= np.quantile(luma[inside], 0.3))].mean(axis=0)
    r, g, b = cavity
    assert r > 1.8 * g and r > 1.8 * b, cavity  # red first: a grey or olive dark has r ~ g
    assert g > 0.2 * r and abs(g - b) < 0.3 * r, cavity  # pink red, not a pure (painted) red
    photo = gen.avatar.rgb.reshape(-1, 3) @ LUMA / 255.0
    assert luma[inside].max() <= np.quantile(photo, 0.995) + 0.02, (luma[inside].max(), np.quantile(photo, 0.995))


def test_a_turned_mouth_opens_widest_at_its_midline_and_is_narrower_on_the_far_side() -> None:
    """guido (head turned ~39 degrees): the lips' middle lies off the corners' middle, toward the far side;
    the opening is deepest there and its far half (teeth included) is the narrower one."""
    gen = WarpGenerator(prepare_avatar(REPO / "tests/data/portraits/guido_grey_beard_glasses.jpg"))
    m = gen.renderer.mouth
    assert abs(m.mid - m.cx) > 0.15 * m.hw, (m.mid, m.cx, m.hw)  # the portrait is turned
    c = torch.zeros((1, N_CONTROLS, 1, 1))
    c[0, Control.JAW_OPEN] = 0.8
    qx = torch.linspace(m.cx - m.hw, m.cx + m.hw, 201)[None, None, :]
    o = m.opening(c, qx)
    gap = (o.bottom - o.top)[0, 0]
    peak = float(qx[0, 0, int(torch.argmax(gap))])
    assert abs(peak - m.mid) < 0.1 * m.hw < abs(peak - m.cx), (peak, m.mid, m.cx)
    far, near = sorted((m.hw_left, m.hw_right))
    assert far < 0.8 * near, (m.hw_left, m.hw_right)


@pytest.mark.parametrize("name", ["hopper", "astronaut"])
def test_a_narrow_opening_is_in_the_lips_shade_and_brightens_as_it_widens(name: str) -> None:
    # The teeth are lit only as the lips part: at jaw 0.2 the brightest tenth of the inside was already 98% (hopper,
    # drawn teeth) and 102% (astronaut, the photo's) of a wide opening's, a tooth row appearing at once as the jaw
    # crossed 0.2; now 65% and 69%, rising over 0.15-0.3.
    gen = generator(name)
    bright = []
    for jaw in (0.15, 0.2, 0.25, 0.6):
        rgb, alpha = _interior(gen, JAW_OPEN=jaw)
        inside = alpha > 0.5
        assert inside.sum() > 3, jaw
        bright.append(float(np.quantile((rgb @ LUMA)[inside], 0.9)))
    assert bright[0] < bright[1] < bright[2], bright
    assert bright[1] < 0.8 * bright[3], bright


def test_the_silent_frame_before_an_onset_reads_as_closed_lips_as_the_silence_before_it() -> None:
    """benchmarks.realism counts a frame silent when it and the 4 before it are quiet: the one just before a loud
    onset is, and the face mesh must read its lips as closed as those of the silence before it. The blueprint's
    mouth for that frame, on the smallest face (hopper_lowres_160, 27 px between the eyes) under idle poses (breath
    lifting the head by 0-0.5 px, roll), read as realism reads (mediapipe in video mode, lips apart from 1 px):
    round 8's anticipation (jaw 0.08 there) read a median 0.4 px wider than rest, apart in 14 of 27 poses vs 1."""
    from benchmarks.quality import FaceTracker, inter_ocular, track
    from benchmarks.realism import CLOSED_GAP_FLOOR_PX, CLOSED_GAP_MAX, lip_gap_iod
    from engine.blueprint import Blueprint
    from engine.types import FeatureFrame, Storyline

    def feature(k: int, db: float) -> FeatureFrame:
        voiced = db > -50
        return FeatureFrame(k, 10 ** (db / 20), db, float(voiced), np.zeros(1000, np.float32),
                            visemes=np.array([1, 0, 0, 0, 0], np.float32))  # an open vowel: the most anticipated

    blueprint = Blueprint(lookahead_frames=1)
    blueprint.update(Storyline(0, 16, []))
    mouth = [Control.JAW_OPEN, Control.MOUTH_WIDTH, Control.MOUTH_ROUND, Control.LIP_PRESS]
    before_onset = blueprint.window([feature(k, -90.0) for k in range(8)], [feature(8, -14.0)]).controls[-1, mouth]

    avatar = prepare_avatar(REPO / "tests/data/portraits/hopper_lowres_160.jpg")
    gen = WarpGenerator(avatar)
    breath, rolls = np.linspace(0.0, 1.0, 9), (-0.7, 0.0, 0.7)
    poses = np.zeros((len(breath) * len(rolls), N_CONTROLS), np.float32)
    poses[:, Control.BREATH] = np.tile(breath, len(rolls))
    poses[:, Control.HEAD_ROLL] = np.repeat(rolls, len(breath))
    anticipating = poses.copy()
    anticipating[:, mouth] = before_onset
    iod = inter_ocular(track(avatar.rgb, [avatar.rgb]).reference)
    closed_below = max(CLOSED_GAP_MAX, CLOSED_GAP_FLOOR_PX / iod)

    def read(controls: np.ndarray) -> np.ndarray:
        with FaceTracker() as tracker:
            for _ in range(10):  # settled on the photo, as realism's track() does
                tracker.landmarks(avatar.rgb)
            found = [tracker.landmarks(f) for f in gen._frames(controls)]
        assert all(lm is not None for lm in found), "the face mesh lost the face"
        return lip_gap_iod(np.stack(found), iod)

    rest, before = read(poses), read(anticipating)
    assert np.median(before) * iod < np.median(rest) * iod + 0.15, (np.median(before) * iod, np.median(rest) * iod)
    assert (before >= closed_below).sum() <= (rest >= closed_below).sum() + 2, (before * iod, rest * iod)
