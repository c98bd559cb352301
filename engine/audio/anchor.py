"""Where a live input's audio belongs on the session's media clock: the anchor of a jitter buffer.

A live microphone's frames arrive late by a varying amount (network jitter, a busy event loop,
packets queued while the session started). Placing each frame where it arrives would bake the
largest of those delays into the stream for good. Instead each frame is placed by its own
timestamp (pts: RTP timestamps for WebRTC) plus one offset to the clock, and that offset is the
smallest arrival delay seen lately: the least delayed frames show the path's own delay, the others
keep their place and use up some of the pipeline delay's slack (or come too late and are counted).
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction

from engine.types import SAMPLE_RATE_HZ


class LiveAnchor:
    """Maps a live input's timestamps to media-clock sample indices.

    window_samples: how long the smallest offset is remembered. A path that became slower for
    good (or a sender clock running slow) is followed after this long; one that became faster is
    followed at once.
    """

    def __init__(self, window_samples: int = 2 * SAMPLE_RATE_HZ) -> None:
        self.window_samples = window_samples
        self._mins: deque[tuple[int, int]] = deque()  # (arrival sample, offset), offsets increasing
        self._last_pts: int | None = None
        self._unwrapped = 0  # pts with 32-bit RTP wrap-arounds undone
        self._counted = 0  # stands in for pts when frames carry none: the samples received so far

    def place(self, n_samples: int, arrived_end_sample: int, pts: int | None = None,
              time_base: Fraction | None = None) -> int:
        """Media-clock index of the first of n_samples (48 kHz) whose last one arrived at arrived_end_sample."""
        start = self._timestamp(pts, time_base)
        self._counted += n_samples
        offset = arrived_end_sample - (start + n_samples)
        while self._mins and self._mins[-1][1] >= offset:
            self._mins.pop()
        self._mins.append((arrived_end_sample, offset))
        while arrived_end_sample - self._mins[0][0] > self.window_samples:
            self._mins.popleft()
        return start + self._mins[0][1]

    @property
    def offset_samples(self) -> int | None:
        """The current input -> clock offset (its minimum arrival delay), once a frame was placed."""
        return self._mins[0][1] if self._mins else None

    def _timestamp(self, pts: int | None, time_base: Fraction | None) -> int:
        """The frame's start in 48 kHz samples on the sender's timeline."""
        if pts is None or time_base is None:
            return self._counted
        if self._last_pts is not None:
            step = pts - self._last_pts
            if step < -(1 << 31):  # RTP timestamps are 32 bits and wrap (every 24.8 h at 48 kHz)
                step += 1 << 32
            self._unwrapped += step
        self._last_pts = pts
        return int(self._unwrapped * time_base * SAMPLE_RATE_HZ)
