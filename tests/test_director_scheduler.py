"""The director scheduler alone, with a scripted fake director: when it plans, what it sends, and
what stands in when the director fails."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from engine.config import EngineConfig
from engine.director import RuleDirector
from engine.director.scheduler import DirectorScheduler
from engine.metrics import SessionMetrics
from engine.types import FeatureFrame
from tests.fakes import FakeDirector, beat_over


async def until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the scheduler never got there"
        await asyncio.sleep(0.001)


async def settle() -> None:
    """Let the scheduler's loop take every wake-up already given (it needs a few loop turns)."""
    for _ in range(10):
        await asyncio.sleep(0)


def scheduler(director: object, **cfg: object) -> DirectorScheduler:
    return DirectorScheduler(director, EngineConfig(**cfg), SessionMetrics(), session_id="t")  # type: ignore[arg-type]


@pytest.fixture
async def running() -> AsyncIterator[Callable[[DirectorScheduler], None]]:
    tasks: list[asyncio.Task[None]] = []
    yield lambda s: tasks.append(asyncio.create_task(s.run()))
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def voiced(k: int) -> FeatureFrame:
    tone = (0.3 * np.sin(np.arange(1000) / 48000 * 2 * np.pi * 160)).astype(np.float32)
    return FeatureFrame(k, 0.2, -14.0, 1.0, tone, pitch_hz=160.0)


async def test_the_first_plan_is_the_fallbacks_and_the_director_plans_every_interval(running) -> None:
    director = FakeDirector()
    s = scheduler(director)
    first = s.first_plan()
    assert (first.planned_from_frame, first.planned_to_frame, first.source) == (0, 192, "rules")
    running(s)
    s.progress(24)
    await settle()
    assert director.calls == 0, "asked before replan_interval_s of progress"
    s.progress(48)
    await until(lambda: s.pending is not None)
    pending = s.take_pending()
    assert pending is not None and not pending.immediate and pending.storyline.source == "fake"
    assert (director.contexts[0].from_frame, director.contexts[0].to_frame) == (48, 240)
    assert s.take_pending() is None and s.metrics.director_plans == 1
    s.progress(95)
    await settle()
    assert director.calls == 1
    s.progress(96)
    await until(lambda: director.calls == 2)


async def test_a_host_instruction_replans_at_once_and_its_plan_shows_at_once(running) -> None:
    director = FakeDirector()
    s = scheduler(director)
    s.first_plan()
    running(s)
    s.progress(10)
    s.instruct("nod please")
    await until(lambda: s.pending is not None)
    pending = s.take_pending()
    assert pending is not None and pending.immediate
    assert director.contexts[0].new_instructions == ["nod please"]
    assert director.contexts[0].instructions == ["nod please"]
    s.progress(10 + 48)
    await until(lambda: director.calls == 2)
    assert director.contexts[1].new_instructions == [] and director.contexts[1].instructions == ["nod please"]
    s.set_persona("calm and friendly")
    await until(lambda: director.calls == 3)
    assert director.contexts[2].persona == "calm and friendly"


async def test_a_failing_director_leaves_the_plan_and_the_fallback_takes_a_host_command(running) -> None:
    director = FakeDirector([RuntimeError("the model is down")] * 2)
    s = scheduler(director)
    s.first_plan()
    running(s)
    s.progress(48)
    await until(lambda: s.metrics.director_failures == 1)
    await settle()
    assert s.pending is None and s.metrics.director_fallbacks == 0, "no command: the current plan carries on"
    s.instruct("big smile please")
    await until(lambda: s.pending is not None)
    pending = s.take_pending()
    assert pending is not None and pending.immediate and pending.storyline.source == "rules"
    assert any(b.expression == "smile" for b in pending.storyline.beats)
    assert (s.metrics.director_failures, s.metrics.director_fallbacks) == (2, 1)


async def test_a_call_that_outlasts_the_replan_interval_is_a_failure(running) -> None:
    director = FakeDirector(delay_s=5.0)
    s = scheduler(director, replan_interval_s=0.1)
    s.first_plan()
    running(s)
    s.progress(4)
    s.instruct("look left")
    await until(lambda: s.metrics.director_failures == 1, timeout_s=1.0)
    pending = s.take_pending()
    assert pending is not None and pending.immediate and any(b.gaze == "left" for b in pending.storyline.beats)


async def test_the_context_carries_prosody_and_audio_for_omni_models() -> None:
    s = scheduler(FakeDirector(), director_audio=True, persona="cheerful")
    for k in range(150):
        s.hear(voiced(k))
    context = s.context(150, 342)
    assert context.prosody is not None and context.prosody.speaking
    assert context.prosody.from_frame == 150 - 96, "two seconds of recent frames"
    assert context.persona == "cheerful"
    assert context.audio_wav is not None and context.audio_wav[:4] == b"RIFF"
    assert scheduler(FakeDirector()).context(0, 192).audio_wav is None, "no audio unless asked for"


async def test_a_fallback_plan_takes_the_new_instructions() -> None:
    s = scheduler(FakeDirector())
    s.instruct("shake your head")
    line = s.fallback_plan(100)
    assert (line.planned_from_frame, line.planned_to_frame) == (100, 292)
    assert any(b.head_motion == "shake" for b in line.beats)
    assert s.context(100, 292).new_instructions == []


async def test_an_instant_director_is_its_own_fallback() -> None:
    rules = RuleDirector(seed=1)
    assert scheduler(rules).fallback is rules
    assert isinstance(scheduler(FakeDirector()).fallback, RuleDirector)


async def test_stop_ends_the_loop_and_aclose_closes_the_director() -> None:
    director = FakeDirector([lambda c: beat_over(c, emotion="happy")])
    s = scheduler(director)
    task = asyncio.create_task(s.run())
    await settle()
    await s.aclose()
    await asyncio.wait_for(task, timeout=1.0)
    assert director.closed and director.calls == 0
