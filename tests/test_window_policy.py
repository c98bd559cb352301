"""The window policy alone: when a plan reaches the blueprint (commit), and when a window is too late
to render (skip), on a fake time source and a clock that starts at 0."""

from __future__ import annotations

import numpy as np
import pytest

from engine.blueprint import Blueprint
from engine.clock import MediaClock
from engine.config import EngineConfig
from engine.director.scheduler import PendingPlan
from engine.metrics import SessionMetrics
from engine.types import N_CONTROLS, Control, FeatureFrame, MotionWindow, StoryBeat, Storyline
from engine.window_policy import WindowPolicy


class FakeTime:
    def __init__(self, t_s: float = 0.0) -> None:
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s


def plan(from_frame: int, to_frame: int, **beat: object) -> Storyline:
    return Storyline(from_frame, to_frame, [StoryBeat(from_frame, to_frame, **beat)])  # type: ignore[arg-type]


def policy(window_frames: int = 4, lookahead_frames: int = 0, **cfg: object) -> WindowPolicy:
    blueprint = Blueprint(lookahead_frames=lookahead_frames)
    blueprint.update(plan(0, 192))
    return WindowPolicy(EngineConfig(**cfg), SessionMetrics(), blueprint,  # type: ignore[arg-type]
                        window_frames=window_frames, lookahead_frames=lookahead_frames, now=FakeTime())


def no_fallback(start_frame: int) -> Storyline:
    raise AssertionError(f"fallback asked for at {start_frame}")


def smile(p: WindowPolicy, start: int, n: int) -> np.ndarray:
    """The rig's smile over frames [start, start + n) of silence, planned one frame at a time."""
    out = []
    for k in range(start, start + n):
        p.commit(k, 1, None, no_fallback)
        silence = FeatureFrame(k, 0.0, -100.0, 0.0, np.zeros(1000, np.float32))
        out.append(p.blueprint.window([silence]).controls[0, Control.SMILE])
    return np.array(out)


def test_a_new_plan_waits_commit_s_and_a_host_commands_plan_does_not() -> None:
    p = policy(commit_s=0.5)
    assert not smile(p, 0, 100).any()
    p.commit(100, 1, PendingPlan(plan(100, 292, emotion="happy", intensity=1.0)), no_fallback)
    kept = smile(p, 100, 24)
    assert not kept.any(), "the committed half second changed"
    assert smile(p, 124, 24)[-1] > 0.3

    p = policy(commit_s=0.5)
    smile(p, 0, 100)
    p.commit(100, 1, PendingPlan(plan(100, 292, emotion="happy", intensity=1.0), immediate=True), no_fallback)
    assert smile(p, 100, 24)[0] > 0, "a host command's plan waited"


def test_a_window_no_plan_covers_gets_the_fallback_and_it_is_counted() -> None:
    p = policy()
    asked: list[int] = []

    def fallback(start_frame: int) -> Storyline:
        asked.append(start_frame)
        return plan(start_frame, start_frame + 192)

    p.commit(188, 4, None, fallback)  # [188, 192): covered by the first plan
    p.commit(190, 4, None, fallback)  # [190, 194): runs past it
    assert asked == [190] and p.metrics.director_fallbacks == 1
    assert p.blueprint.covers(190, 192)


def live(p: WindowPolicy) -> tuple[MediaClock, FakeTime]:
    p.clock = MediaClock(delay_s=0.08, start_s=0.0)  # frame k is due at 0.08 + k / 48
    assert isinstance(p.now, FakeTime)
    return p.clock, p.now


def test_lead_time_follows_the_render_estimate_above_the_reserve() -> None:
    p = policy(render_reserve_s=0.02)
    assert p.lead_s() == 0.02
    p.render_s_avg = 0.04
    assert p.lead_s() == pytest.approx(0.05)
    p.rendered(MotionWindow(0, np.zeros((4, N_CONTROLS), np.float32), np.zeros(4000, np.float32)), render_s=0.14)
    assert p.render_s_avg == pytest.approx(0.04 + 0.3 * 0.1)


def test_the_audio_deadline_is_the_start_of_the_window_that_needs_it_less_the_lead() -> None:
    p = policy(window_frames=4, lookahead_frames=1, render_reserve_s=0.02)
    assert p.audio_deadline_s(5) is None, "offline: no deadline"
    clock, _ = live(p)
    assert p.audio_deadline_s(0) == pytest.approx(clock.frame_due_s(0) - 0.02)
    assert p.audio_deadline_s(4) == pytest.approx(clock.frame_due_s(0) - 0.02)  # the lookahead of window 0
    assert p.audio_deadline_s(5) == pytest.approx(clock.frame_due_s(4) - 0.02)


def test_a_window_that_cannot_be_ready_when_due_is_skipped_and_counted() -> None:
    p = policy()
    window = MotionWindow(48, np.zeros((4, N_CONTROLS), np.float32), np.zeros(4000, np.float32))
    p.render_s_avg = 0.03
    assert not p.too_late(window), "offline windows are never skipped"
    clock, now = live(p)
    now.t_s = clock.frame_due_s(48) - 0.031
    assert not p.too_late(window)
    now.t_s = clock.frame_due_s(48) - 0.029
    assert p.too_late(window) and p.metrics.frames_skipped == 4


def test_slack_is_the_margin_before_the_first_frame_is_due() -> None:
    p = policy()
    window = MotionWindow(48, np.zeros((4, N_CONTROLS), np.float32), np.zeros(4000, np.float32))
    assert p.rendered(window, 0.01) is None, "offline: no slack"
    clock, now = live(p)
    now.t_s = clock.frame_due_s(48) - 0.015
    assert p.rendered(window, 0.01) == pytest.approx(0.015)
    now.t_s = clock.frame_due_s(48) + 0.005
    assert p.rendered(window, 0.01) == pytest.approx(-0.005)
