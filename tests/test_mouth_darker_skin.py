"""The open mouth on darker skin and in back light, as mediapipe's face mesh sees the rendered frames: a dark
opening with teeth, darker than the lips around it, not a band of lip colour that reads as closed lips; and a
beard under the lips that the jaw carries down, not drags into bars."""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np
import pytest
import torch

from engine.generator import prepare_avatar
from engine.generator.faces import face_mesh
from engine.generator.mouth import INNER_LOWER, INNER_UPPER, LIP_POINTS, lip_gap, own_teeth
from engine.generator.warp import WarpGenerator
from engine.types import N_CONTROLS, Control
from tests.conftest import REPO

LUMA = np.array([0.299, 0.587, 0.114])
# Lit from behind, turned ~35 degrees, pale glossy lips, a small face: the mesh read its opening as closed lips.
BACKLIT = "meeting_darker_skin"


@cache
def generator(name: str) -> WarpGenerator:
    return WarpGenerator(prepare_avatar(REPO / f"tests/data/portraits/{name}.jpg"))


def jaw_frames(gen: WarpGenerator, jaws: list[float]) -> np.ndarray:
    c = np.zeros((len(jaws), N_CONTROLS), np.float32)
    c[:, Control.JAW_OPEN] = jaws
    return gen._frames(c)


def test_a_backlit_darker_skinned_mouth_reads_open_at_mid_jaw() -> None:
    meshes = [face_mesh(f) for f in jaw_frames(generator(BACKLIT), [0.0, 0.6, 1.0])]
    assert all(m is not None for m in meshes)
    gaps = [lip_gap(m) for m in meshes]  # type: ignore[arg-type]
    # Before the inside was made darker than the lips (and her pale lips no longer taken for teeth): 0.008 at 0.6.
    assert gaps[0] < 0.03 and gaps[1] > 0.08 and gaps[2] > 0.25, gaps


def test_pale_lips_parted_by_the_mesh_are_not_taken_for_the_photos_teeth() -> None:
    avatar = prepare_avatar(REPO / f"tests/data/portraits/{BACKLIT}.jpg")
    rest = avatar.rest
    assert rest is not None  # the mesh parts her lips by a few pixels: the rest pose closes them
    assert rest.teeth_colour() is not None and own_teeth(rest.teeth_colour(), rest.photo, rest.landmarks) is None
    smile = prepare_avatar(REPO / "tests/data/portraits/beard_smile_darker_skin.jpg").rest
    assert smile is not None and own_teeth(smile.teeth_colour(), smile.photo, smile.landmarks) is not None


@pytest.mark.parametrize("name", [BACKLIT, "hand_chin_darker_skin", "beard_smile_darker_skin", "darker_skin_frontal",
                                  "woman_eyes_down"])
def test_the_opening_is_darker_than_the_lips_around_it_and_its_teeth_brighter(name: str) -> None:
    frame = jaw_frames(generator(name), [1.0])[0]
    mesh = face_mesh(frame)
    assert mesh is not None
    lm = np.round(mesh[:, :2]).astype(np.int32)
    inner = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(inner, [lm[[78, *INNER_LOWER, 308, *INNER_UPPER[::-1]]]], 1)
    outer = np.zeros_like(inner)
    cv2.fillPoly(outer, [lm[[*LIP_POINTS[:11], *LIP_POINTS[11:][::-1]]]], 1)
    luma = frame.astype(np.float64) @ LUMA / 255.0
    opening, lips = luma[inner > 0], luma[(outer > 0) & (cv2.dilate(inner, np.ones((3, 3), np.uint8)) == 0)]
    assert len(opening) > 30 and len(lips) > 30, (len(opening), len(lips))
    # The dark of the opening (its darker half: the teeth aside) under the lips' darker half; the teeth over them.
    dark, teeth = np.median(opening[opening <= np.median(opening)]), np.quantile(opening, 0.95)
    assert dark < 0.6 * np.median(lips[lips <= np.median(lips)]), (dark, np.median(lips))
    assert teeth > np.median(lips), (teeth, np.median(lips))


@pytest.mark.parametrize("name", ["beard_smile_darker_skin", BACKLIT])
def test_the_jaw_carries_the_lip_and_beard_under_it_down_whole_not_stretched(name: str) -> None:
    """Under the opening at jaw 1, down a column, how far apart output rows are for one row of the photo: at the
    mouth's middle the lower lip and the beard to the chin move as one piece (it was 1.9x on the beard); beside
    it, where the corners hold, the skin stretches but is never folded over (it was: the beard dragged into
    bars). Half way through the soft field's blend into the one piece (jaw 0.3, `ONE_PIECE`) nothing folds either."""
    m = generator(name).renderer.mouth
    c = torch.zeros((2, N_CONTROLS, 1, 1))
    c[:, Control.JAW_OPEN, 0, 0] = torch.tensor([1.0, 0.3])
    dx = torch.linspace(-2.2, 2.2, 45) * m.mw
    step = 0.5
    rows = torch.arange(m.mouth_y, m.chin_y + m.neck + 0.3 * m.mw, step)  # past the neck's ease, too
    qy, qx = torch.meshgrid(rows, m.mouth_x + dx, indexing="ij")
    with torch.inference_mode():
        src = qy + m.offsets(c, qx[None].expand(2, -1, -1), qy[None].expand(2, -1, -1))[1]
        under = (qy > m.opening(c, qx[None].expand(2, -1, -1)).bottom + 1.0)[:, 1:]
    rate = (src[:, 1:] - src[:, :-1]) / step  # photo rows per output row: 1/stretch, below 0 where folded
    middle = under[0] & (dx.abs() < 0.5 * m.mw) & (qy[1:] < m.chin_y)
    assert float(rate[under].min()) > 0.35, float(rate[under].min())
    assert float(rate[0][middle].min()) > 0.6, float(rate[0][middle].min())
    with torch.inference_mode():  # and at rest, nothing moves: down to the bottom of the jaw's box
        assert float(m.offsets(torch.zeros_like(c[:1]), qx[None], qy[None])[1].abs().max()) < 1e-3


def test_the_jaw_leaves_what_is_beside_the_head_still() -> None:
    """beard_smile_darker_skin's jaw side meets the wall, a figure behind and the collar: the jaw moves only the head
    (the head's motion weight), not their edges against the still plate, which it tore into a pale streak and a
    dark wedge at jaw 0.6 and 1."""
    r = generator("beard_smile_darker_skin").renderer
    c = torch.zeros((2, N_CONTROLS))
    c[1, Control.JAW_OPEN] = 1.0
    with torch.inference_mode():
        sx, sy, _, _ = r.fields(c)
    moved = torch.hypot(sx[1] - sx[0], sy[1] - sy[0])
    beside = r.head_mask[0] == 0.0
    assert float(moved.max()) > 5.0  # the jaw does move the chin
    assert float(moved[beside].max()) < 1e-4, float(moved[beside].max())
