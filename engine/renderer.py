"""The generator stage's step: render a motion window off the event loop, or skip it when it is too late."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from engine.delay_control import DelayController
from engine.generator.base import Generator
from engine.metrics import SessionMetrics
from engine.types import N_CONTROLS, SAMPLES_PER_FRAME, FirstFrame, MotionWindow, RenderedWindow
from engine.window_policy import WindowPolicy


class Renderer:
    """Runs a Generator on its own thread (heavy numeric work stays off the event loop), one window at
    a time, each from the previous window's last frame.

    policy: says when a window is too late (skip) and keeps the render-time estimate; delay: hears of
    late and on-time windows; last_filled_frame(): the input's newest frame whose audio was missing.
    """

    def __init__(self, generator: Generator, policy: WindowPolicy, delay: DelayController, metrics: SessionMetrics,
                 last_filled_frame: Callable[[], int], *, session_id: str = "") -> None:
        self.generator = generator
        self.policy = policy
        self.delay = delay
        self.metrics = metrics
        self.last_filled_frame = last_filled_frame
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"render-{session_id}")
        self._condition: FirstFrame | None = None

    async def warm_up(self, n_frames: int) -> None:
        """Render two throw-away windows: the first call allocates; the second says how long one takes."""
        idle = MotionWindow(0, np.zeros((n_frames, N_CONTROLS), np.float32),
                            np.zeros(n_frames * SAMPLES_PER_FRAME, np.float32))
        loop = asyncio.get_running_loop()
        for _ in range(2):
            t0 = time.monotonic()
            await loop.run_in_executor(self._executor, self.generator.render, idle, self.generator.first_frame())
            self.policy.render_s_avg = time.monotonic() - t0

    async def render(self, window: MotionWindow) -> RenderedWindow | None:
        """The window rendered, or None when it was too late to be shown (skipped, counted)."""
        if self.policy.too_late(window):
            self.delay.window_late(window.start_frame, self.last_filled_frame())
            return None
        condition = self._condition if self._condition is not None else self.generator.first_frame()
        t0 = time.monotonic()
        rendered, self._condition = await asyncio.get_running_loop().run_in_executor(
            self._executor, self.generator.render, window, condition)
        slack = self.policy.rendered(window, time.monotonic() - t0)
        self.metrics.note_rendered(rendered, time.monotonic() - window.created_t_s, slack)
        if slack is not None and slack < 0:
            self.delay.window_late(window.start_frame, self.last_filled_frame())
        elif slack is not None:
            self.delay.window_on_time(slack)
        return rendered

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
