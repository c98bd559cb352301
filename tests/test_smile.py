"""A smile that reaches the eyes: the mouth's corners rise, and the cheeks with them narrow the eyes from below
(engine/generator/cheeks.py), as mediapipe's face mesh reads the rendered frames; glasses stay straight."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from benchmarks.face_frame import ear, rim_motion_px
from benchmarks.mouth_closeup import mouth_box
from benchmarks.quality import EMBEDDED, PORTRAIT_DIR, controls, load, render
from engine.generator import PreparedAvatar
from engine.generator.cheeks import wears_glasses
from engine.generator.faces import face_mesh
from engine.generator.mouth import SMILE_UP, lip_gap
from engine.generator.rest_pose import CLOSED_GAP
from engine.generator.warp import WarpGenerator, WarpRenderer
from engine.types import Control, MotionWindow

SMILE = controls(1, SMILE=1.0)
UPPER_LIDS, LOWER_LIDS, CORNERS = (159, 386), (145, 374), (61, 291)


@cache
def portrait(name: str) -> tuple[PreparedAvatar, WarpRenderer]:
    avatar = load(EMBEDDED if name == "astronaut" else str(PORTRAIT_DIR / f"{name}.jpg"), 720)
    return avatar, WarpRenderer(avatar).eval()


@pytest.mark.parametrize("name", ["hand_chin_darker_skin", "giunchedi_beard", "darker_skin_frontal"])
def test_a_smile_lifts_the_corners_and_narrows_the_eyes_from_below(name: str) -> None:
    """Read by the face mesh on rest and smile frames: the corners rise by over 2% of the face's height (4.0-4.4%
    measured), the eyes narrow (aspect ratio 0.88-0.91 of rest; with the corners alone 0.96-1.03) as the lower lids
    rise (0.7-1.0% of the face's height against under 0.4% for the upper lids). Photos with closed lips: a photo that
    smiled with its teeth smiles as it did (below)."""
    _, r = portrait(name)
    assert r.cheeks, "no glasses: the cheeks rise"
    assert not r.smile_jaw, "closed lips in the photo: the rig's own smile"
    rest, smile = (face_mesh(f)[:, :2] for f in render(r, np.concatenate([controls(1), SMILE])))
    face_h = float(np.linalg.norm(rest[10] - rest[152]))

    def rise(points: tuple[int, int]) -> float:
        return float(np.mean(rest[list(points), 1] - smile[list(points), 1])) / face_h

    assert rise(CORNERS) > 0.02, rise(CORNERS)
    assert rise(LOWER_LIDS) > 0.005 and rise(LOWER_LIDS) > rise(UPPER_LIDS) + 0.003, (rise(LOWER_LIDS),
                                                                                     rise(UPPER_LIDS))
    assert np.mean(ear(smile)) < 0.95 * np.mean(ear(rest)), (ear(smile), ear(rest))


@pytest.mark.parametrize("name", ["henner_glasses", "hopper", "guido_grey_beard_glasses"])
def test_glasses_stay_straight_in_a_smile(name: str) -> None:
    """A lens's lower rim lies on the cheek: lifted with it, it bulged up into the lens (henner_glasses, guido:
    hopper and guido: 5.7-9.4 px at 720 px). The strong edges around the eyes do not move in a smile."""
    avatar, r = portrait(name)
    assert rim_motion_px(avatar, r, SMILE) < 0.5


@pytest.mark.parametrize("name, glasses", [
    ("henner_glasses", True), ("hopper", True), ("guido_grey_beard_glasses", True),
    ("anne_helene_sunglasses_small", True), ("hopper_lowres_160", True),
    ("astronaut", False), ("meeting_darker_skin", False), ("woman_eyes_down", False), ("luispedro", False)])
def test_glasses_are_found_by_their_bridge(name: str, glasses: bool) -> None:
    """Thin metal, thick frames, sunglasses on a small face and a 160 px photo; and no glasses on faces whose nose
    a strand of hair or a turn's shadow crosses. At the size the server prepares (720) and a smaller one."""
    for size in (720, 512):
        avatar = load(EMBEDDED if name == "astronaut" else str(PORTRAIT_DIR / f"{name}.jpg"), size)
        assert wears_glasses(avatar.rgb, avatar.landmarks) == glasses, size


@pytest.mark.parametrize("name", ["henner_glasses", "darker_skin_frontal", "luispedro"])
def test_a_smile_shades_its_nasolabial_folds(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folds (engine/generator/folds.py) through the production byte path, against the same frames with them
    switched off: nothing changes at rest; at SMILE = 1 a crease darkens by over 12% beside each side of the mouth
    (18% at its line, with the bulge's shade) and no more than a few percent of the face, warmer (red darkens less
    than blue) as shadows on skin are; every pixel away from the folds' boxes stays as it was."""
    avatar, _ = portrait(name)
    generator = WarpGenerator(avatar)
    ctl = np.concatenate([controls(1), controls(1, SMILE=1.0, JAW_OPEN=0.15)])
    folded = generator._frames(ctl).astype(np.float32)
    monkeypatch.setattr(WarpRenderer, "shade_folds", lambda *_: None)
    plain = generator._frames(ctl).astype(np.float32)
    assert np.array_equal(folded[0], plain[0]), "a face at rest has no fold shading"
    ratio = (folded[1] + 1.0) / (plain[1] + 1.0)  # per channel
    luma = ratio @ np.array([0.299, 0.587, 0.114], np.float32)
    r = generator.renderer
    x0, y0 = r.roi[:2]
    mouth_x = float(avatar.landmarks[[61, 291], 0].mean())
    for side in (luma[:, : int(mouth_x)], luma[:, int(mouth_x) :]):
        assert side.min() < 0.88, side.min()
    face = avatar.landmarks[:, :2]
    (fx0, fy0), (fx1, fy1) = face.min(axis=0).astype(int), face.max(axis=0).astype(int)
    darker = luma[fy0:fy1, fx0:fx1] < 0.97
    assert 0.005 < darker.mean() < 0.1, darker.mean()
    dark_px = ratio[luma < 0.95]
    assert dark_px[:, 0].mean() > dark_px[:, 2].mean() + 0.01, dark_px.mean(axis=0)
    # Nothing outside the boxes the byte path shades (each a photo box moved by the frame's map, within the head's
    # motion: the float path's padded boxes).
    outside = np.ones(luma.shape, bool)
    for bx0, by0, bx1, by1 in r.fold_boxes_px:
        outside[y0 + by0 : y0 + by1, x0 + bx0 : x0 + bx1] = False
    assert np.array_equal(folded[1][outside], plain[1][outside])


@pytest.mark.parametrize("name", ["astronaut", "maher_teeth", "pedersen_young_teeth"])
def test_a_photo_that_smiled_with_its_teeth_smiles_as_it_did(name: str) -> None:
    """Its rest closes the lips (rest_pose), its corners and cheeks still where the photo's smile put them; the rig's
    own smile on top of that read as a grimace (lips pursed into a wave, gap 0 to the face mesh). Its smile parts
    the lips over its teeth as the photo did (`WarpRenderer.expressed`): the face mesh reads a gap of 0.14-0.16 of
    the mouth's width against the photo's 0.16-0.20, and the mouth is nearer the photo's (mean difference 7-15 grey
    levels against the rest's 14-23)."""
    avatar, r = portrait(name)
    assert avatar.rest is not None and r.smile_jaw > 0.0
    rest, smile = render(r, np.concatenate([controls(1), SMILE]))
    photo = avatar.rest.photo
    gap_photo, gap_rest, gap_smile = (lip_gap(face_mesh(f)[:, :2]) for f in (photo, rest, smile))
    assert gap_rest < CLOSED_GAP and gap_smile > 0.6 * gap_photo, (gap_rest, gap_smile, gap_photo)
    x0, y0, x1, y1 = mouth_box(avatar.landmarks, *avatar.size)

    def off(frame: np.ndarray) -> float:
        return float(np.abs(frame[y0:y1, x0:x1].astype(np.float32) - photo[y0:y1, x0:x1]).mean())

    assert off(smile) < 0.75 * off(rest), (off(smile), off(rest))


@pytest.mark.parametrize("name, smiled", [
    ("astronaut", True), ("maher_teeth", True), ("pedersen_young_teeth", True), ("beard_smile_darker_skin", True),
    ("shenk", True), ("anne_helene_sunglasses_small", True), ("pedersen_open_mouth", False),
    ("meeting_darker_skin", False), ("henner_glasses", False), ("giunchedi_beard", False)])
def test_which_photos_smiled_with_their_lips_apart(name: str, smiled: bool) -> None:
    """Lips apart across a wide mouth (a smile stretches it to 0.93-1.14 of the distance between the irises): the
    six teeth smiles. Not a mouth merely open (pedersen_open_mouth, 0.71) or parted by a sheen (meeting_darker_skin),
    nor a closed-lip smile (henner_glasses: its rest is the photo)."""
    _, r = portrait(name)
    assert (r.smile_jaw > 0.0) == smiled, r.smile_jaw


@pytest.mark.parametrize("name, lifted", [("henner_glasses", True), ("pedersen_tilted", True), ("hopper", False),
                                          ("giunchedi_beard", False), ("darker_skin_frontal", False)])
def test_corners_that_already_smile_are_lifted_less(name: str, lifted: bool) -> None:
    """A photo's closed-lip smile has its corners up already: the full lift on top of it bent henner_glasses' lips into
    a wave at SMILE 0.8-1 (the mouth sheets). Its corners are lifted 0.62 of the full (pedersen_tilted 0.70); a neutral
    mouth's by all of it."""
    _, r = portrait(name)
    share = r.mouth.smile_up / SMILE_UP
    assert (share < 0.8) if lifted else share == 1.0, share


def test_a_photo_smile_leaves_the_jaw_to_the_voice_while_the_host_talks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Held open by the smile, the lips could not close between syllables: the real voice's lip sync under a standing
    smile fell from r 0.90 to 0.61 on the astronaut (0.78 -> 0.79 over the speech's own frames with the hold below).
    While the jaw moved within the last few hundred ms (`warp.talking_hold`, carried window to window by the
    condition) the voice alone moves it; 1 s after the voice stops, the lips part into the photo's smile again. The same
    in one-frame windows (a live session's first) as in one window."""
    avatar, _ = portrait("astronaut")
    generator = WarpGenerator(avatar)
    seen: list[np.ndarray] = []
    real = generator._frames

    def spy(controls: np.ndarray, alphas: np.ndarray | None = None) -> np.ndarray:
        seen.append(controls[:, Control.JAW_OPEN].copy())
        return real(controls, alphas)

    monkeypatch.setattr(generator, "_frames", spy)
    t = np.arange(96 + 48) / 48.0
    jaw = np.where(t < 2.0, 0.3 + 0.3 * np.sin(2 * np.pi * 4.0 * t), 0.0)  # 2 s of syllables at 4 Hz, then silence
    ctl = controls(len(t), SMILE=0.8)
    ctl[:, Control.JAW_OPEN] = np.clip(jaw, 0.0, None)
    held = {}
    for size in (len(t), 1):
        seen.clear()
        condition = generator.first_frame()
        for i in range(0, len(t), size):
            _, condition = generator.render(MotionWindow(i, ctl[i : i + size], np.zeros(size * 1000, np.float32)),
                                            condition)
        held[size] = np.concatenate(seen)
    np.testing.assert_allclose(held[1], held[len(t)], atol=1e-6)
    shown, floor = held[1], 0.8 * generator.renderer.smile_jaw
    speaking = (t > 0.5) & (t < 2.0)
    assert shown[speaking].min() < 0.05, "the syllables' dips close the lips"
    np.testing.assert_allclose(shown[t > 2.0 + 1.0], floor, atol=1e-6)
