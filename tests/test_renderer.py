"""The render step alone: a fake generator, the real window policy and delay controller on fake time."""

from __future__ import annotations

import numpy as np
import pytest

from engine.blueprint import Blueprint
from engine.clock import MediaClock
from engine.config import EngineConfig
from engine.delay_control import DelayController
from engine.metrics import SessionMetrics
from engine.renderer import DEGRADED_AFTER, Renderer
from engine.types import N_CONTROLS, FirstFrame, MotionWindow, StoryBeat, Storyline
from engine.window_policy import WindowPolicy
from tests.fakes import FakeGenerator


class FakeTime:
    def __init__(self, t_s: float = 1000.0) -> None:
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s


def window(start_frame: int, n: int = 4) -> MotionWindow:
    return MotionWindow(start_frame, np.zeros((n, N_CONTROLS), np.float32), np.zeros(n * 1000, np.float32))


def renderer(generator: FakeGenerator, live: bool = True, last_filled_frame: int = -1
             ) -> tuple[Renderer, MediaClock | None, FakeTime]:
    config, metrics, now = EngineConfig(), SessionMetrics(), FakeTime()
    blueprint = Blueprint()
    blueprint.update(Storyline(0, 192, [StoryBeat(0, 192)]))
    policy = WindowPolicy(config, metrics, blueprint, window_frames=4, lookahead_frames=0, now=now)
    delay = DelayController(config, metrics, now=now)
    clock = MediaClock(delay_s=0.08, start_s=now.t_s) if live else None
    policy.clock = delay.clock = clock
    return Renderer(generator, policy, delay, metrics, lambda: last_filled_frame), clock, now


async def test_warm_up_renders_twice_and_measures_the_render_time() -> None:
    generator = FakeGenerator(render_delay_s=0.03)
    r, _, _ = renderer(generator)
    await r.warm_up(4)
    assert generator.calls == 2 and all(w.n_frames == 4 for w in generator.windows)
    assert 0.03 <= r.policy.render_s_avg < 0.5
    r.close()


async def test_each_window_starts_from_the_last_frame_of_the_one_before() -> None:
    generator = FakeGenerator(patterned=True)
    r, _, _ = renderer(generator, live=False)
    rendered = [await r.render(window(k)) for k in (0, 4, 8)]
    assert [w.start_frame for w in rendered if w is not None] == [0, 4, 8]
    assert [c.frame_index for c in generator.conditions] == [-1, 3, 7]
    assert r.metrics.windows_rendered == 3 and r.metrics.frames_rendered == 12
    assert r.metrics.windows_late == 0 and r.metrics.window_slack_ms_total == 0.0, "offline: no clock, no slack"
    r.close()


async def test_a_window_too_late_to_show_is_skipped_and_raises_the_delay() -> None:
    generator = FakeGenerator()
    r, clock, now = renderer(generator)
    assert clock is not None
    r.policy.render_s_avg = 0.02
    now.t_s = clock.frame_due_s(48) - 0.01  # 10 ms left; rendering takes 20
    assert await r.render(window(48)) is None
    assert generator.calls == 0 and r.metrics.frames_skipped == 4
    assert r.metrics.pipeline_delay_raises == 1 and clock.delay_s > 0.08
    r.close()


async def test_a_skipped_window_whose_audio_was_missing_leaves_the_delay() -> None:
    r, clock, now = renderer(FakeGenerator(), last_filled_frame=50)
    assert clock is not None
    now.t_s = clock.frame_due_s(48) + 0.01
    assert await r.render(window(48)) is None
    assert r.metrics.frames_skipped == 4 and r.metrics.pipeline_delay_raises == 0
    r.close()


async def test_a_window_that_finishes_late_is_counted_and_raises_the_delay() -> None:
    def overrun(w: MotionWindow) -> float:  # the render ends 5 ms after the window was due
        assert clock is not None
        now.t_s = clock.frame_due_s(w.start_frame) + 0.005
        return 0.0

    r, clock, now = renderer(FakeGenerator(render_delay_s=overrun))
    assert clock is not None
    now.t_s = clock.frame_due_s(48) - 0.05
    assert await r.render(window(48)) is not None
    assert r.metrics.windows_late == 1 and r.metrics.window_slack_ms_min < 0
    assert r.metrics.pipeline_delay_raises == 1
    r.close()


async def test_a_window_on_time_notes_its_slack() -> None:
    r, clock, now = renderer(FakeGenerator())
    assert clock is not None
    now.t_s = clock.frame_due_s(48) - 0.05
    assert await r.render(window(48)) is not None
    assert r.metrics.windows_late == 0 and r.metrics.window_slack_ms_min == pytest.approx(50.0)
    assert r.metrics.pipeline_delay_raises == 0
    r.close()


async def test_a_failing_render_holds_the_condition_frame_and_the_next_window_retries_from_it() -> None:
    generator = FakeGenerator(patterned=True)
    r, _, _ = renderer(generator, live=False)
    first = await r.render(window(0))
    assert first is not None and first.frames_i420 is not None
    generator.fail_every = 1
    held = await r.render(window(4))
    assert held is not None and held.start_frame == 4 and held.n_frames == 4
    assert (held.frames_rgb == first.frames_rgb[-1]).all(), "the fallback is the last good frame, held"
    assert held.frames_i420 is not None and (held.frames_i420 == first.frames_i420[-1]).all()
    assert r.metrics.generator_failures == 1 and r.metrics.frames_fallback == 4 and r.metrics.windows_rendered == 1
    generator.fail_every = 0
    again = await r.render(window(8))
    assert again is not None and (again.frames_rgb != first.frames_rgb[-1]).any()
    assert [c.frame_index for c in generator.conditions] == [-1, 3, 3], "the retry starts from the kept condition"
    r.close()


async def test_failures_in_a_row_mark_the_renderer_degraded_until_a_window_renders() -> None:
    generator = FakeGenerator(fail_every=1)
    r, _, _ = renderer(generator, live=False)
    for k in range(DEGRADED_AFTER - 1):
        await r.render(window(4 * k))
    assert r.degraded is None
    await r.render(window(4 * DEGRADED_AFTER))
    assert r.degraded is not None and "scripted generator failure" in r.degraded
    assert r.metrics.generator_failures == DEGRADED_AFTER
    generator.fail_every = 0
    await r.render(window(4 * DEGRADED_AFTER + 4))
    assert r.degraded is None and r.failures_in_a_row == 0
    r.close()


async def test_a_generator_without_even_a_first_frame_leaves_the_window_to_the_pacer() -> None:
    class NoFirstFrame(FakeGenerator):
        def first_frame(self) -> FirstFrame:
            raise RuntimeError("no portrait")

    r, _, _ = renderer(NoFirstFrame(), live=False)
    assert await r.render(window(0)) is None
    assert r.metrics.generator_failures == 1 and r.metrics.frames_fallback == 0
    r.close()
