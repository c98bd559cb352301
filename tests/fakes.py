"""One scripted fake per engine interface, for driving a session (or one of its parts) without the
real backends: FakeGenerator (engine.generator.base.Generator) and FakeDirector (engine.director.base.Director).

    session = AvatarSession(avatar, config, live=True, generator=FakeGenerator(render_delay_s=0.03),
                            director=FakeDirector([lambda c: beat_over(c, emotion="happy", intensity=1.0),
                                                   RuntimeError("the model is down")]))
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from engine.director.base import DirectorContext
from engine.types import N_CONTROLS, Control, FirstFrame, MotionWindow, RenderedWindow, StoryBeat, Storyline


class FakeGenerator:
    """Solid frames of one colour or, with patterned=True, frames that show what they were rendered
    from: red = frame_index % 256, green = jaw opening * 255 (see frame_index_of)."""

    name = "fake"

    def __init__(self, size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (40, 120, 200), *,
                 patterned: bool = False, render_delay_s: float | Callable[[MotionWindow], float] = 0.0,
                 fail_every: int = 0) -> None:
        self.width, self.height = size  # even, as I420 needs
        self.colour = colour
        self.patterned = patterned
        self.render_delay_s = render_delay_s  # a number, or per window: a generator that cannot keep up
        self.fail_every = fail_every  # every n-th render() call raises (1: all of them; 0: none)
        self.failures = 0
        self.windows: list[MotionWindow] = []  # every window rendered, warm-up included
        self.conditions: list[FirstFrame] = []  # ... and the condition each one started from

    @property
    def calls(self) -> int:
        return len(self.windows)

    def first_frame(self) -> FirstFrame:
        return FirstFrame(-1, self._picture(-1, 0.0), np.zeros(N_CONTROLS, np.float32))

    def render(self, window: MotionWindow, condition: FirstFrame) -> tuple[RenderedWindow, FirstFrame]:
        t0 = time.perf_counter()
        self.windows.append(window)
        self.conditions.append(condition)
        if self.fail_every and len(self.windows) % self.fail_every == 0:
            self.failures += 1
            raise RuntimeError(f"scripted generator failure {self.failures}")
        delay = self.render_delay_s(window) if callable(self.render_delay_s) else self.render_delay_s
        if delay:
            time.sleep(delay)  # render() runs on the session's render thread, as a real generator does
        rgb = np.stack([self._picture(window.start_frame + i, float(c[Control.JAW_OPEN]))
                        for i, c in enumerate(window.controls)])
        i420 = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2YUV_I420) for f in rgb])
        rendered = RenderedWindow(window.start_frame, rgb, window.audio, (time.perf_counter() - t0) * 1000.0,
                                  window.created_t_s, i420)
        last = window.start_frame + window.n_frames - 1
        return rendered, FirstFrame(last, rgb[-1], window.controls[-1].copy())

    def _picture(self, frame_index: int, jaw: float) -> np.ndarray:
        rgb = np.empty((self.height, self.width, 3), np.uint8)
        rgb[:] = self.colour
        if self.patterned:
            rgb[..., 0] = frame_index % 256
            rgb[..., 1] = int(np.clip(jaw, 0.0, 1.0) * 255)
        return rgb


def frame_index_of(rgb: np.ndarray) -> int:
    """The frame index (mod 256) a patterned FakeGenerator drew into this RGB picture."""
    return int(rgb[..., 0].mean().round())


class FakeDirector:
    """Plays a script, one step per plan() call: a Storyline, a function of the context that returns
    one, or an exception to raise. After the script (or for a None step) it plans a plain neutral beat
    over the whole context. Every context is recorded; `called` is set on each call.

    delay_s: how long each call takes (a number, or one per call; beyond the list, the last one).
    """

    name = "fake"

    def __init__(self, script: Sequence[Storyline | Callable[[DirectorContext], Storyline] | BaseException | None] = (),
                 *, delay_s: float | Sequence[float] = 0.0) -> None:
        self.script = list(script)
        self.delay_s = delay_s
        self.contexts: list[DirectorContext] = []
        self.called = asyncio.Event()
        self.closed = False

    @property
    def calls(self) -> int:
        return len(self.contexts)

    async def plan(self, context: DirectorContext) -> Storyline:
        i = len(self.contexts)
        self.contexts.append(context)
        self.called.set()
        delays = [self.delay_s] if isinstance(self.delay_s, int | float) else list(self.delay_s)
        delay = delays[min(i, len(delays) - 1)] if delays else 0.0
        if delay:
            await asyncio.sleep(delay)
        step = self.script[i] if i < len(self.script) else None
        if isinstance(step, BaseException):
            raise step
        if step is None:
            return beat_over(context)
        return step(context) if callable(step) else step

    async def aclose(self) -> None:
        self.closed = True


def beat_over(context: DirectorContext, **beat: object) -> Storyline:
    """A storyline of one beat over the whole context (StoryBeat fields as keywords), source "fake"."""
    return Storyline(context.from_frame, context.to_frame,
                     [StoryBeat(context.from_frame, context.to_frame, **beat)],  # type: ignore[arg-type]
                     source="fake")
