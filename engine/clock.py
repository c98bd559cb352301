"""The session's media clock: maps frame indices to the wall time they are due for output."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from engine.types import FPS, SAMPLE_RATE_HZ


@dataclass
class MediaClock:
    """Frame k is due at start_s + delay_s + k / 48 (time.monotonic seconds).

    Live sessions start it when the session starts; offline rendering has no clock at all.
    """

    delay_s: float
    start_s: float = field(default_factory=time.monotonic)

    def frame_due_s(self, frame_index: int) -> float:
        return self.start_s + self.delay_s + frame_index / FPS

    def sample_due_s(self, sample_index: int) -> float:
        return self.start_s + self.delay_s + sample_index / SAMPLE_RATE_HZ

    def frame_now(self) -> int:
        """Index of the frame that is due now (may be negative before the first is due)."""
        return int((time.monotonic() - self.start_s - self.delay_s) * FPS)

    def live_sample_now(self) -> int:
        """Sample index that a live input is delivering now (no delay applied)."""
        return int((time.monotonic() - self.start_s) * SAMPLE_RATE_HZ)
