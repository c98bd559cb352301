"""The delay controller alone, on a fake time source: when a live session's pipeline delay moves."""

from __future__ import annotations

import pytest

from engine.clock import MediaClock
from engine.config import EngineConfig
from engine.delay_control import DelayController
from engine.metrics import SessionMetrics

FRAME_S = 1 / 48


class FakeTime:
    def __init__(self, t_s: float = 1000.0) -> None:
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s


def controller(**cfg: object) -> tuple[DelayController, MediaClock, FakeTime]:
    now = FakeTime()
    delay = DelayController(EngineConfig(**cfg), SessionMetrics(), now=now)  # type: ignore[arg-type]
    delay.clock = MediaClock(delay_s=delay.config.pipeline_delay_s, start_s=0.0)
    return delay, delay.clock, now


def test_a_late_window_whose_audio_was_in_time_adds_a_frame() -> None:
    delay, clock, _ = controller()
    delay.window_late(window_start_frame=100, last_filled_frame=99)
    assert delay.metrics.pipeline_delay_raises == 1
    assert clock.delay_s == pytest.approx(0.08 + FRAME_S)


def test_a_late_window_whose_audio_was_missing_adds_nothing() -> None:
    """Its audio was awaited until the last moment whatever the delay: a quiet microphone must not
    ratchet the delay up."""
    delay, clock, _ = controller()
    delay.window_late(window_start_frame=100, last_filled_frame=100)
    delay.window_late(window_start_frame=100, last_filled_frame=103)
    assert delay.metrics.pipeline_delay_raises == 0 and clock.delay_s == 0.08


def test_the_delay_rises_at_most_a_frame_a_second_up_to_its_cap() -> None:
    delay, clock, now = controller(max_pipeline_delay_s=0.08 + 3 * FRAME_S)
    delay.fell_behind()
    delay.fell_behind()
    now.t_s += 0.99
    delay.fell_behind()
    assert delay.metrics.pipeline_delay_raises == 1
    for _ in range(5):
        now.t_s += 1.0
        delay.fell_behind()
    assert delay.metrics.pipeline_delay_raises == 3
    assert clock.delay_s == pytest.approx(0.08 + 3 * FRAME_S)


def test_a_cap_at_the_default_keeps_the_delay_fixed() -> None:
    delay, clock, _ = controller(max_pipeline_delay_s=0.08)
    delay.fell_behind()
    assert delay.metrics.pipeline_delay_raises == 0 and clock.delay_s == 0.08


def test_offline_there_is_no_delay_to_raise() -> None:
    delay = DelayController(EngineConfig(), SessionMetrics(), now=FakeTime())
    delay.fell_behind()
    delay.window_late(10, -1)
    assert delay.metrics.pipeline_delay_raises == 0


def on_time_for(delay: DelayController, now: FakeTime, seconds: float, slack_s: float) -> None:
    """A window every frame for `seconds`, each ready slack_s before it was due."""
    for _ in range(int(seconds * 48)):
        now.t_s += FRAME_S
        delay.window_on_time(slack_s)


def test_a_raised_delay_comes_back_after_relax_s_on_time_with_a_frame_to_spare() -> None:
    delay, clock, now = controller(delay_relax_s=2.0)
    delay.fell_behind()
    on_time_for(delay, now, 1.9, slack_s=0.04)
    assert delay.metrics.pipeline_delay_lowers == 0, "relaxed before delay_relax_s"
    on_time_for(delay, now, 0.2, slack_s=0.04)
    assert delay.metrics.pipeline_delay_lowers == 1 and clock.delay_s == pytest.approx(0.08)
    on_time_for(delay, now, 5.0, slack_s=0.04)
    assert delay.metrics.pipeline_delay_lowers == 1, "went below pipeline_delay_s"


def test_tight_windows_or_a_late_one_keep_the_delay_raised() -> None:
    delay, clock, now = controller(delay_relax_s=2.0)
    delay.fell_behind()
    # On time, but a frame earlier even the tightest window would have been late.
    on_time_for(delay, now, 1.0, slack_s=0.04)
    delay.window_on_time(FRAME_S + 0.005)
    on_time_for(delay, now, 2.0, slack_s=0.04)
    assert delay.metrics.pipeline_delay_lowers == 0
    # Running late again restarts the count, even when the raise itself was refused (at most one a second).
    now.t_s += 1.5
    delay.fell_behind()
    now.t_s += 0.5
    delay.fell_behind()
    assert delay.metrics.pipeline_delay_raises == 2
    on_time_for(delay, now, 1.9, slack_s=0.04)
    assert delay.metrics.pipeline_delay_lowers == 0
    on_time_for(delay, now, 0.2, slack_s=0.04)
    assert delay.metrics.pipeline_delay_lowers == 1
    assert clock.delay_s == pytest.approx(0.08 + FRAME_S)


def test_a_longer_window_gets_its_delay_a_frame_a_second() -> None:
    delay, clock, now = controller()
    assert delay.make_room(0.07) and clock.delay_s == 0.08, "already enough"
    assert not delay.make_room(0.13) and clock.delay_s == pytest.approx(0.08 + FRAME_S)
    assert not delay.make_room(0.13) and delay.metrics.pipeline_delay_raises == 1, "at most a frame a second"
    for _ in range(2):
        now.t_s += 1.0
        assert not delay.make_room(0.13)
    now.t_s += 1.0
    assert delay.make_room(0.13) and clock.delay_s == pytest.approx(0.08 + 3 * FRAME_S)
    for _ in range(20):
        now.t_s += 1.0
        assert not delay.make_room(1.0)
    assert clock.delay_s <= 0.25 and clock.delay_s + FRAME_S > 0.25, "max_pipeline_delay_s holds"
