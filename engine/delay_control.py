"""The live pipeline delay: raised a frame at a time when the session runs late, given back when it
has run early for long enough. Offline sessions have no clock and no delay to adapt."""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable

from engine.clock import MediaClock
from engine.config import EngineConfig
from engine.metrics import SessionMetrics
from engine.types import FPS

log = logging.getLogger(__name__)


class DelayController:
    """Moves `clock.delay_s` by whole frames between config.pipeline_delay_s and max_pipeline_delay_s.

    now: the time source (time.monotonic; tests pass a fake one).
    """

    def __init__(self, config: EngineConfig, metrics: SessionMetrics, *, session_id: str = "",
                 now: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.metrics = metrics
        self.session_id = session_id
        self.now = now
        self.clock: MediaClock | None = None  # set when a live session starts
        self._changed_s = -math.inf  # when the delay last changed
        self._late_s = -math.inf  # when the session last ran late
        self._slack_per_s: deque[tuple[int, float]] = deque()  # (second, least window slack in it), recent

    def fell_behind(self) -> None:
        """A late window, or late input audio, adds a frame of pipeline delay (at most one a second, up
        to max_pipeline_delay_s). The clock moves, so every stage follows: the picture holds for a
        frame, the sound gets a 21 ms gap that receivers conceal, and the stream keeps its rate
        instead of repeating frames. window_on_time() takes frames back."""
        if self.clock is None:
            return
        now, frame_s = self.now(), 1 / FPS
        self._late_s = now
        cap = max(self.config.max_pipeline_delay_s, self.config.pipeline_delay_s)
        if self.clock.delay_s + frame_s > cap + 1e-9 or now - self._changed_s < 1.0:
            return
        self.clock.delay_s += frame_s
        self.metrics.pipeline_delay_raises += 1
        self._changed_s = now
        log.info("session %s: running late; pipeline delay now %.0f ms", self.session_id, self.clock.delay_s * 1e3)

    def make_room(self, delay_s: float) -> bool:
        """True when the delay is at least delay_s: what a longer live window needs (its audio in for longer before
        it can render; engine/window_size.py). Else a frame more, as for a late window (at most one a second, up to
        max_pipeline_delay_s), and False: the window waits for the delay to reach it, a frame at a time, so the
        picture never holds for more than a frame at once."""
        if self.clock is None or self.clock.delay_s >= delay_s - 1e-9:
            return True
        self.fell_behind()
        return False

    def window_late(self, window_start_frame: int, last_filled_frame: int) -> None:
        """A late (or skipped) window raises the delay, unless its input audio was missing: then the
        features stage waited for it until the last moment (due - lead_s()), which any delay would
        have done as well, so more delay buys nothing and a quiet microphone would ratchet it up.

        last_filled_frame: the newest frame whose input audio was missing (silence stood in)."""
        if last_filled_frame < window_start_frame:
            self.fell_behind()

    def window_on_time(self, slack_s: float) -> None:
        """A window was on time, slack_s before it was due. After delay_relax_s of that, with every
        window more than a frame (and 10 ms) early, a raised delay gives one frame back: moved earlier
        by a frame, even the tightest of those windows would still have been on time."""
        assert self.clock is not None
        now, frame_s, relax = self.now(), 1 / FPS, self.config.delay_relax_s
        second, recent = int(now), self._slack_per_s
        if recent and recent[-1][0] == second:
            recent[-1] = (second, min(recent[-1][1], slack_s))
        else:
            recent.append((second, slack_s))
        while recent[0][0] < now - relax - 1:
            recent.popleft()
        if (self.clock.delay_s - frame_s >= self.config.pipeline_delay_s - 1e-9
                and now - max(self._changed_s, self._late_s) >= relax
                and min(s for _, s in recent) > frame_s + 0.01):
            self.clock.delay_s -= frame_s
            self.metrics.pipeline_delay_lowers += 1
            self._changed_s = now
            recent.clear()
            log.info("session %s: on time; pipeline delay back to %.0f ms", self.session_id, self.clock.delay_s * 1e3)
