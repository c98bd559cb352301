"""When a plan takes effect (commit) and when a window is too late to render (skip).

Commit: a pending plan from the director replaces the blueprint's plan after commit_s, so a re-plan
never changes what is about to be shown; a host command's plan replaces it at once. A window that no
plan covers gets the director's fallback plan.

Skip (live only): windows start rendering lead_s() before they are due, judged by a moving estimate
of the render time; one that cannot be done before it is due is skipped, so the next is on time.
Each render's time also goes to the session's WindowSizer (engine/window_size.py), which lengthens
the windows while the generator cannot keep up.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.blueprint import Blueprint
from engine.clock import MediaClock
from engine.config import EngineConfig
from engine.director.scheduler import PendingPlan
from engine.metrics import SessionMetrics
from engine.types import FPS, MotionWindow, Storyline
from engine.window_size import WindowSizer


class WindowPolicy:
    """now: the time source (time.monotonic; tests pass a fake one)."""

    def __init__(self, config: EngineConfig, metrics: SessionMetrics, blueprint: Blueprint, *, window_frames: int,
                 lookahead_frames: int, now: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.metrics = metrics
        self.blueprint = blueprint
        self.window_frames = window_frames  # the current length (live, the session changes it as the sizer says)
        self.sizer: WindowSizer | None = None  # live sessions: hears each render's time
        self.lookahead_frames = lookahead_frames
        self.now = now
        self.clock: MediaClock | None = None  # set when a live session starts
        self.render_s_avg = 0.0  # recent render time per window, moving average

    # ---- commit ------------------------------------------------------------------------------
    def commit(self, start_frame: int, n_frames: int, pending: PendingPlan | None,
               fallback: Callable[[int], Storyline]) -> None:
        """Before the window [start_frame, +n_frames) is planned: apply the pending plan, if any; where
        no plan covers the window, fallback(start_frame) plans it (counted)."""
        if pending is not None:
            commit = 0 if pending.immediate else int(self.config.commit_s * FPS)
            self.blueprint.update(pending.storyline, keep_until_frame=start_frame + commit)
        if not self.blueprint.covers(start_frame, n_frames):
            self.metrics.director_fallbacks += 1
            self.blueprint.update(fallback(start_frame))

    # ---- skip --------------------------------------------------------------------------------
    def lead_s(self) -> float:
        """How long before its first frame is due a window must start rendering."""
        return max(self.config.render_reserve_s, 1.25 * self.render_s_avg)

    def audio_deadline_s(self, frame_index: int) -> float | None:
        """Until when (monotonic) the input may wait for frame_index's audio: frame k is needed by the
        window it looks ahead for, which starts rendering lead_s() before it is due. None offline."""
        if self.clock is None:
            return None
        needed_by = max(0, frame_index - self.lookahead_frames)
        window_start = needed_by - needed_by % self.window_frames
        return self.clock.frame_due_s(window_start) - self.lead_s()

    def too_late(self, window: MotionWindow) -> bool:
        """True (and counted) when the window could not be rendered before it is due: skipping it lets
        the next window be on time, so the picture keeps moving when the generator cannot keep up
        (the pacer repeats frames meanwhile)."""
        if self.clock is None or self.now() + self.render_s_avg <= self.clock.frame_due_s(window.start_frame):
            return False
        self.metrics.frames_skipped += window.n_frames
        return True

    def rendered(self, window: MotionWindow, render_s: float) -> float | None:
        """A window took render_s (wall time, not the renderer's own timing: waiting for a busy core
        counts too). Returns its slack, how long before its first frame is due it is ready (< 0:
        late); None offline."""
        self.render_s_avg += 0.3 * (render_s - self.render_s_avg)
        if self.sizer is not None:
            self.sizer.rendered(window.n_frames, render_s)
        return None if self.clock is None else self.clock.frame_due_s(window.start_frame) - self.now()
