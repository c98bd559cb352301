"""Idle motion (engine/idle.py): alive without audio, never a visible loop, and speech starts from it without a jump."""

from __future__ import annotations

import numpy as np

from engine.blueprint import Blueprint
from engine.idle import IdleMotion
from engine.types import FPS, Control, FeatureFrame, Storyline

MOVING = [Control.HEAD_YAW, Control.HEAD_PITCH, Control.HEAD_ROLL, Control.GAZE_X, Control.GAZE_Y, Control.BREATH]


def closest_repeat(x: np.ndarray, stretch: int, min_lag: int) -> float:
    """The smallest distance between any stretch of `stretch` frames and any other at least min_lag later, in units
    of the signal's own spread (each column scaled by its standard deviation): 0 is an exact repeat."""
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    n = len(z)
    windows = np.lib.stride_tricks.sliding_window_view(z, stretch, axis=0)[::4]  # (m, cols, stretch), every 4th
    flat = windows.reshape(len(windows), -1)
    best = np.inf
    for i in range(len(flat)):
        j0 = i + -(-min_lag // 4)
        if j0 >= len(flat):
            break
        d = np.sqrt(np.mean((flat[j0:] - flat[i]) ** 2, axis=1))
        best = min(best, float(d.min()))
    assert n > stretch + min_lag
    return best


def test_idle_is_alive_and_never_repeats_a_two_second_stretch_in_a_minute() -> None:
    c = IdleMotion(seed=3).controls(np.arange(60 * FPS))[:, MOVING]
    spread = c.max(axis=0) - c.min(axis=0)
    assert spread[0] > 1.5 and spread[1] > 0.8 and spread[2] > 0.8, "the head hardly moves"
    assert spread[3] > 0.2 and spread[5] > 0.5, "the eyes or the breath stand still"
    gaze_moves = np.count_nonzero(np.abs(np.diff(c[:, 3])) > 0.02)
    assert 10 <= gaze_moves, "the eyes never shift"
    score = closest_repeat(c, 2 * FPS, 2 * FPS)
    # A looped idle of 4 s (the same controls over and over) scores 0; this one stays far from any repeat.
    looped = np.tile(c[: 4 * FPS], (15, 1))
    assert closest_repeat(looped, 2 * FPS, 2 * FPS) < 1e-6
    assert score > 0.25, f"a 2 s stretch comes back almost the same (distance {score:.3f})"


def test_idle_is_the_same_for_the_same_frames_and_differs_between_seeds() -> None:
    frames = np.arange(10 * FPS, 14 * FPS)
    a = IdleMotion(seed=1).controls(frames)
    assert np.array_equal(a, IdleMotion(seed=1).controls(frames)), "a re-plan would change what is shown"
    assert np.array_equal(a[FPS:], IdleMotion(seed=1).controls(frames[FPS:])), "depends on where a plan starts"
    assert np.abs(a - IdleMotion(seed=2).controls(frames)).max() > 0.1
    late = IdleMotion(seed=1).controls(np.arange(48 * 3600 * 5, 48 * 3600 * 5 + 48))  # five hours in: still fine
    assert np.isfinite(late).all() and np.abs(late[:, MOVING]).max() < 5


def feature(k: int, db: float, voiced: bool) -> FeatureFrame:
    visemes = np.array([1.0, 0, 0, 0, 0], np.float32) if voiced else np.full(5, 0.2, np.float32)
    return FeatureFrame(k, 10 ** (db / 20), db, 1.0 if voiced else 0.0, np.zeros(1000, np.float32),
                        filled=not voiced, visemes=visemes)


def test_speech_starts_and_stops_from_idle_without_a_jump() -> None:
    bp = Blueprint(lookahead_frames=0)
    bp.update(Storyline(0, 20 * FPS, []))
    # 6 s idle (no audio at all), 4 s of loud syllables, 6 s idle again: one frame a window, as live.
    loud = [6 * FPS <= k < 10 * FPS and (k // 8) % 2 == 0 for k in range(16 * FPS)]
    frames = [feature(k, -15.0 if loud[k] else -100.0, loud[k]) for k in range(16 * FPS)]
    c = np.concatenate([bp.window([f]).controls for f in frames])
    step = np.abs(np.diff(c, axis=0))
    head = [Control.HEAD_YAW, Control.HEAD_PITCH, Control.HEAD_ROLL]
    assert c[6 * FPS : 10 * FPS, Control.JAW_OPEN].max() > 0.5, "speech did not open the mouth"
    assert step[:, head].max() < 0.6, "the head jumps (degrees per frame)"
    assert step[:, [Control.SMILE, Control.BROW_RAISE, Control.MOUTH_ROUND, Control.BREATH]].max() < 0.1
    assert step[:, [Control.GAZE_X, Control.GAZE_Y]].max() < 0.4, "more than a saccade"
    assert step[:, Control.JAW_OPEN].max() <= 0.75, "the jaw moves faster than its attack"
    # Across the start of speech the idle layer goes on as it was: only the jaw and the mouth's shape change.
    idle = IdleMotion().controls(np.arange(16 * FPS))
    around = slice(6 * FPS - 24, 6 * FPS + 24)
    np.testing.assert_allclose(c[around][:, [Control.GAZE_X, Control.BREATH]],
                               idle[around][:, [Control.GAZE_X, Control.BREATH]], atol=1e-6)
    # When the audio stops altogether the mouth shuts within two frames.
    end = 10 * FPS
    last_open = max(k for k in range(end - 16, end) if loud[k])
    assert c[last_open + 2 :, Control.JAW_OPEN].max() <= 0.0625 * c[last_open, Control.JAW_OPEN] + 1e-6


def test_a_stream_starts_from_the_photos_pose() -> None:
    """The renderer's first frame comes from the photo (all controls 0): the idle layer fades in from there
    instead of starting at its pose of frame 0, which the renderer's seam clamp would turn into a jump at frame 1."""
    c = IdleMotion(seed=5).controls(np.arange(3 * FPS))
    head = [Control.HEAD_YAW, Control.HEAD_PITCH, Control.HEAD_ROLL]
    assert np.abs(c[0, [*head, Control.BREATH]]).max() == 0.0
    assert np.abs(np.diff(c[: FPS + 2, head], axis=0)).max() < 0.1, "degrees per frame"
    assert np.abs(c[2 * FPS :, MOVING]).max() > 0.1, "the idle layer never comes in"
