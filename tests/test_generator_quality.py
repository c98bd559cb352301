"""Generator quality, the cheap and robust parts of `python -m benchmarks.quality`.

The test portraits (tests/data/portraits, see SOURCES.md there) must stay usable, and the rendered
astronaut must move its lips as commanded, as mediapipe's face mesh sees it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

from benchmarks.quality import (
    EMBEDDED,
    EYE_LEFT,
    EYE_RIGHT,
    PORTRAIT_DIR,
    STABLE_INDEX,
    closed_aperture,
    controls,
    default_portraits,
    eye_aperture,
    eyes_inpainted,
    inter_ocular,
    jaw_sweep,
    lip_gap,
    pearson,
    render,
    seam_ratio,
    stable_flow_px,
    track,
)
from engine.generator import PreparedAvatar, prepare_avatar
from engine.generator.warp import WarpRenderer

PORTRAITS = sorted(PORTRAIT_DIR.glob("*.jpg"))


@cache
def astronaut() -> tuple[PreparedAvatar, WarpRenderer]:
    avatar = prepare_avatar()
    return avatar, WarpRenderer(avatar).eval()


def test_there_are_three_real_portraits_with_their_sources() -> None:
    sources = (PORTRAIT_DIR / "SOURCES.md").read_text()
    assert len(default_portraits()) >= 4 and default_portraits()[0] == EMBEDDED
    for p in PORTRAITS:
        assert p.name in sources, f"{p.name} is not described in SOURCES.md"
        assert p.stat().st_size < 300_000


@pytest.mark.parametrize("path", PORTRAITS, ids=[p.name for p in PORTRAITS])
def test_the_engine_finds_a_face_in_each_test_portrait(path: Path) -> None:
    avatar = prepare_avatar(path, max_side_px=1280)
    w, h = avatar.size
    lm = avatar.landmarks
    assert lm.shape == (478, 2)
    # The parts the rig moves (eyes, brows, nose, mouth) lie inside the picture; the forehead may not
    # (pedersen_tilted: a close-up whose frame cuts the top of the head).
    parts = lm[[33, 133, 263, 362, 105, 334, 1, 13, 14, 61, 291, 152, 468, 473]]
    assert (parts >= 0).all() and (parts[:, 0] < w).all() and (parts[:, 1] < h).all()
    assert ((lm >= 0).all(axis=1) & (lm[:, 0] < w) & (lm[:, 1] < h)).mean() > 0.9
    assert inter_ocular(lm) > 20
    if "exif6" in path.name:  # stored landscape, EXIF says turn it: a 720x1280 portrait, face right of centre
        assert (w, h) == (720, 1280)
        assert lm[:, 0].mean() / w > 0.55


def test_commanded_jaw_opens_the_lips_as_the_face_mesh_sees_it() -> None:
    avatar, renderer = astronaut()
    jaw = jaw_sweep(24)
    t = track(avatar.rgb, render(renderer, controls(len(jaw), JAW_OPEN=jaw)))
    assert t.found.all()
    gap = lip_gap(t.frames) / inter_ocular(t.reference)
    assert pearson(jaw, gap) >= 0.9
    assert gap[jaw == 1].min() > gap[jaw == 0].max() + 0.15  # open by more than 15% of the eye distance


def test_commanded_blink_narrows_both_eyes() -> None:
    avatar, renderer = astronaut()
    blink = np.array([0, 0, 0, 0.5, 1, 1, 1, 1], np.float32)
    t = track(avatar.rgb, render(renderer, controls(len(blink), BLINK_LEFT=blink, BLINK_RIGHT=blink)))
    for eye in (EYE_LEFT, EYE_RIGHT):
        closed = eye_aperture(t.frames[blink == 1], eye).mean() / eye_aperture(t.reference, eye)
        assert closed < 0.85  # the target is < 0.3; the benchmark reports the real figure


def test_the_blink_control_closes_only_the_eyes_and_the_mesh_sees_it() -> None:
    avatar, _ = astronaut()
    painted = eyes_inpainted(avatar)
    changed = np.argwhere((painted != avatar.rgb).any(axis=-1))
    lm = avatar.landmarks[[33, 133, 362, 263, 159, 145, 386, 374]]
    assert len(changed) > 100
    assert (changed[:, 1] >= lm[:, 0].min() - 3).all() and (changed[:, 1] <= lm[:, 0].max() + 3).all()
    assert (changed[:, 0] >= lm[:, 1].min() - 3).all() and (changed[:, 0] <= lm[:, 1].max() + 3).all()
    # On the astronaut the mesh can read a closed eye: the control is one (the benchmark's floor row).
    ratios = closed_aperture(track(avatar.rgb, [painted] * 4), np.ones(4, bool))
    assert max(ratios.values()) < 0.5


def test_the_jaw_leaves_the_upper_face_pixels_where_they_are() -> None:
    avatar, renderer = astronaut()
    frames = render(renderer, controls(4, JAW_OPEN=np.array([0.0, 0.3, 0.7, 1.0])))
    flow = stable_flow_px(avatar, frames)
    assert np.isfinite(flow).all() and flow.max() <= 1.0
    # ... and the flow measurement does see a 2 px shift of the picture
    shifted = np.roll(frames[:1], 2, axis=2)
    moved = stable_flow_px(avatar, shifted)
    assert np.nanmedian(moved) == pytest.approx(2.0, abs=0.3)
    assert len(STABLE_INDEX) >= 20


def test_seam_ratio_sees_jumps_at_window_boundaries() -> None:
    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.normal(0, 1, (17, 8, 8, 3)), axis=0).clip(-100, 100) + 128
    ratio_smooth = seam_ratio(smooth.astype(np.uint8), 4)[2]
    jumpy = smooth.copy()
    for start in range(4, 17, 4):
        jumpy[start:] += 10  # every window starts with a step
    ratio_jumpy = seam_ratio(jumpy.clip(0, 255).astype(np.uint8), 4)[2]
    assert 0.6 < ratio_smooth < 1.6
    assert ratio_jumpy > 2.5
