"""The generator stage's step: render a motion window off the event loop, or skip it when it is too late.

Renders run on one thread pool shared by every session of the process (render_pool), bounded by
EngineConfig.render_pool_size: a thread per session made the thread count follow the number of sessions
ever opened until each was collected. A session has at most one render in flight (each window is
conditioned on the previous one), so sharing keeps its windows in order.

A generator that raises does not end the session: the window is shown as its condition frame held
(fallback frames, counted as generator_failures) and the next window tries again from the same
condition. After DEGRADED_AFTER failures in a row the session reports itself degraded (`error` in
/api/sessions) and keeps streaming; one good window clears it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from engine.delay_control import DelayController
from engine.generator.base import Generator
from engine.metrics import SessionMetrics
from engine.types import N_CONTROLS, SAMPLES_PER_FRAME, FirstFrame, MotionWindow, RenderedWindow
from engine.window_policy import WindowPolicy

log = logging.getLogger(__name__)

DEGRADED_AFTER = 48  # failed windows in a row (1 s at the live one-frame window) before the session says so
LOG_EVERY_S = 10.0  # after the first failure (logged with its traceback), one summary line at most this often


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def pool_size(size: int) -> int:
    """render_pool_size as set, or for 0 one per CPU core, at least 4 (render threads and render processes alike)."""
    return size if size > 0 else max(4, os.cpu_count() or 1)


def render_pool(size: int = 0) -> ThreadPoolExecutor:
    """The process's render pool, made on first use with `size` workers (0: one per CPU core, at least 4);
    later calls get the same pool whatever they ask for."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=pool_size(size), thread_name_prefix="render")
        elif size > 0 and size != _pool._max_workers:
            log.warning("the render pool already has %d threads; %d asked for", _pool._max_workers, size)
        return _pool


class Renderer:
    """Runs a Generator on its own thread (heavy numeric work stays off the event loop), one window at
    a time, each from the previous window's last frame.

    policy: says when a window is too late (skip) and keeps the render-time estimate; delay: hears of
    late and on-time windows; last_filled_frame(): the input's newest frame whose audio was missing.
    """

    def __init__(self, generator: Generator, policy: WindowPolicy, delay: DelayController, metrics: SessionMetrics,
                 last_filled_frame: Callable[[], int], *, session_id: str = "", pool_size: int = 0) -> None:
        self.generator = generator
        self.policy = policy
        self.delay = delay
        self.metrics = metrics
        self.last_filled_frame = last_filled_frame
        self.session_id = session_id
        self._executor = render_pool(pool_size)
        self._condition: FirstFrame | None = None
        self._i420 = False  # the generator hands out I420 too: fallback frames match it
        self.failures_in_a_row = 0
        self.degraded: str | None = None  # why the session is degraded, while it is
        self._last_log_s = 0.0
        self._unlogged = 0

    async def warm_up(self, n_frames: int) -> None:
        """Render two throw-away windows: the first call allocates; the second says how long one takes."""
        idle = MotionWindow(0, np.zeros((n_frames, N_CONTROLS), np.float32),
                            np.zeros(n_frames * SAMPLES_PER_FRAME, np.float32))
        loop = asyncio.get_running_loop()
        for _ in range(2):
            try:
                # first_frame() too runs off the loop: a render process's first answer waits for it to start.
                first = await loop.run_in_executor(self._executor, self.generator.first_frame)
                t0 = time.monotonic()
                await loop.run_in_executor(self._executor, self.generator.render, idle, first)
            except Exception as e:  # the session still starts: its windows fall back until the generator recovers
                self._failed(e)
                continue
            self.policy.render_s_avg = time.monotonic() - t0

    async def render(self, window: MotionWindow) -> RenderedWindow | None:
        """The window rendered (or its fallback, when the generator raised), or None when it was too late to be
        shown (skipped, counted) or the generator cannot even give a first frame."""
        if self.policy.too_late(window):
            self.delay.window_late(window.start_frame, self.last_filled_frame())
            return None
        condition = self._condition
        t0 = time.monotonic()
        try:
            if condition is None:
                condition = await asyncio.get_running_loop().run_in_executor(self._executor,
                                                                             self.generator.first_frame)
            rendered, self._condition = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.generator.render, window, condition)
        except Exception as e:
            self._failed(e)
            # Without even a first frame there is nothing to hold: the pacer repeats its last picture.
            return None if condition is None else self._fallback(window, condition)
        self._recovered()
        self._i420 = rendered.frames_i420 is not None
        slack = self.policy.rendered(window, time.monotonic() - t0)
        self.metrics.note_rendered(rendered, time.monotonic() - window.created_t_s, slack)
        if slack is not None and slack < 0:
            self.delay.window_late(window.start_frame, self.last_filled_frame())
        elif slack is not None:
            self.delay.window_on_time(slack)
        return rendered

    def _fallback(self, window: MotionWindow, condition: FirstFrame) -> RenderedWindow:
        """The condition's picture held for the window: the stream goes on, still, with its sound."""
        self.metrics.frames_fallback += window.n_frames
        rgb = np.broadcast_to(condition.rgb, (window.n_frames, *condition.rgb.shape))
        i420 = None
        if self._i420:
            one = cv2.cvtColor(np.ascontiguousarray(condition.rgb), cv2.COLOR_RGB2YUV_I420)
            i420 = np.broadcast_to(one, (window.n_frames, *one.shape))
        return RenderedWindow(window.start_frame, rgb, window.audio, 0.0, window.created_t_s, i420)

    def _failed(self, e: Exception) -> None:
        self.metrics.generator_failures += 1
        self.failures_in_a_row += 1
        now = time.monotonic()
        if self.metrics.generator_failures == 1:
            log.error("session %s: generator %s failed; holding the last frame and retrying each window",
                      self.session_id, getattr(self.generator, "name", "?"), exc_info=e)
            self._last_log_s = now
        elif now - self._last_log_s >= LOG_EVERY_S:
            log.warning("session %s: generator failed %d more times (%d in a row): %s: %s", self.session_id,
                        self._unlogged + 1, self.failures_in_a_row, type(e).__name__, e)
            self._last_log_s, self._unlogged = now, 0
        else:
            self._unlogged += 1
        if self.failures_in_a_row >= DEGRADED_AFTER and self.degraded is None:
            self.degraded = f"generator failing ({self.failures_in_a_row} windows in a row): {type(e).__name__}: {e}"
            log.error("session %s: degraded: %s", self.session_id, self.degraded)

    def _recovered(self) -> None:
        if self.degraded is not None:
            log.warning("session %s: generator recovered after %d failed windows", self.session_id,
                        self.failures_in_a_row)
        self.failures_in_a_row, self.degraded = 0, None

    def close(self) -> None:
        """Nothing to release: the pool is shared, and a render still in flight ends on its own."""
