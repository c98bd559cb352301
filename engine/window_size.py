"""How many frames a live window holds: more while the generator cannot keep up with fewer.

A render call has a fixed cost beside its cost per frame (the rig's fields are a few hundred small
tensor ops, whatever the window's length): on one core of a 2-core CPU the warp rig takes about 14 ms
for a window of one frame and about 4 ms a frame in windows of eight. At 48 fps a frame is due every
20.8 ms, so windows of one frame fall behind once the encoder and the network take their share, and
the pacer repeats frames: the mouth moves in steps. Doubling the window halves the fixed cost per frame
for one more frame of pipeline delay, so a live session starts at EngineConfig.window_frames (the least
latency) and doubles it while its renders, timed on the wall clock (a busy core counts), take more than
GROW_AT of a frame's time per frame, up to max_live_window_frames. After delay_relax_s of renders
under SHRINK_AT of a frame's time it halves again. A new length takes effect at a window that starts on
a multiple of it, so every window starts on a multiple of its own length (WindowPolicy's audio
deadlines rely on that); a longer one also waits until the pipeline delay covers it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from engine.config import EngineConfig
from engine.metrics import SessionMetrics
from engine.types import FPS

log = logging.getLogger(__name__)

GROW_AT = 0.8  # of a frame's time (20.8 ms), rendering a frame: the generator is about to fall behind
SHRINK_AT = 0.35  # ... well under: half the window (about twice the cost a frame) would still keep up
SETTLE_S = 1.0  # after a change, the estimate settles on the new length this long before the next
SMOOTHING = 0.2  # weight of the newest window in the moving estimate of render time per frame


class WindowSizer:
    """Live sessions only. longest: the generator's own limit on a window (None: any length).

    now: the time source (time.monotonic; tests pass a fake one).
    """

    def __init__(self, config: EngineConfig, metrics: SessionMetrics, *, lookahead_frames: int,
                 longest: int | None = None, session_id: str = "", now: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.metrics = metrics
        self.lookahead_frames = lookahead_frames
        self.session_id = session_id
        self.now = now
        self.shortest = config.window_frames
        cap = min(config.max_live_window_frames, longest or config.max_live_window_frames)
        self.lengths = [self.shortest]  # the lengths it may use: shortest, doubled up to the cap
        while 2 * self.lengths[-1] <= cap:
            self.lengths.append(2 * self.lengths[-1])
        self.max_delay_s = max(config.max_pipeline_delay_s, config.pipeline_delay_s)
        self.frames = self.shortest  # the length now (the session's metrics.window_frames says it too)
        self.frame_s: float | None = None  # recent render wall time per frame, moving average
        self._target = self.frames
        self._changed_s = now()
        self._fast_since_s: float | None = None

    def delay_needed_s(self, n_frames: int) -> float:
        """The pipeline delay a window of n_frames needs: its audio (and lookahead) all in, then rendered before
        its first frame is due (as EngineConfig.validate_live, the render time estimated from today's cost a frame:
        an upper bound, a longer window's cost a frame being lower)."""
        render_s = max(self.config.render_reserve_s, 1.25 * (self.frame_s or 0.0) * n_frames)
        return (n_frames + self.lookahead_frames) / FPS + render_s

    def room_needed_s(self, n_frames: int) -> float:
        """The pipeline delay to wait for before windows of n_frames start: what they need, at most the cap."""
        return min(self.delay_needed_s(n_frames), self.max_delay_s)

    def rendered(self, n_frames: int, render_s: float) -> None:
        """A window of n_frames took render_s of wall time: grow or shrink the length windows will have."""
        per_frame = render_s / max(1, n_frames)
        self.frame_s = per_frame if self.frame_s is None else self.frame_s + SMOOTHING * (per_frame - self.frame_s)
        now, frame_time = self.now(), 1 / FPS
        if now - self._changed_s < SETTLE_S or self._target != self.frames:
            return
        i = self.lengths.index(self.frames)
        if self.frame_s > GROW_AT * frame_time:
            # To a length whose delay fits under the cap, judged at today's cost a frame (a longer window's is
            # lower). Past that its windows would be late however long the delay, but so are today's once a frame
            # costs more than its time: then the longer window, its fixed cost shared by more frames, is the only
            # way back (a host with a third of its cores taken renders windows of one frame at 96 ms a frame and
            # stayed at them, skipping nearly every window; the delay then waits at its cap: `room_needed_s`).
            behind = self.frame_s > frame_time
            if i + 1 < len(self.lengths) and (behind or self.delay_needed_s(self.lengths[i + 1]) <= self.max_delay_s):
                self._target = self.lengths[i + 1]
        elif self.frame_s < SHRINK_AT * frame_time and i > 0:
            if self._fast_since_s is None:
                self._fast_since_s = now
            elif now - self._fast_since_s >= self.config.delay_relax_s:
                self._target = self.lengths[i - 1]
        else:
            self._fast_since_s = None

    def length_at(self, start_frame: int, room_for: Callable[[int], bool] = lambda n_frames: True) -> int:
        """The length of the window that starts at start_frame. A chosen change waits for a start on its multiple,
        and a longer window for room_for(n_frames): the pipeline delay it needs (the session's DelayController)."""
        grow = self._target > self.frames
        if self._target != self.frames and start_frame % self._target == 0 and (not grow or room_for(self._target)):
            log.info("session %s: renders take %.1f ms a frame; live windows of %d frames now (were %d)",
                     self.session_id, 1000 * (self.frame_s or math.nan), self._target, self.frames)
            self.frames = self.metrics.window_frames = self._target
            self.metrics.window_resizes += 1
            self._changed_s = self.now()
            self._fast_since_s = None
        return self.frames
