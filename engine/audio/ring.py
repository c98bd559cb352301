"""Audio ring buffer on the session's media clock (absolute 48 kHz sample indices)."""

from __future__ import annotations

import asyncio
import time
from collections import deque

import numpy as np


class AudioRing:
    """Mono float32 samples indexed by absolute media-clock sample.

    Writers append at the write cursor. A live writer whose audio arrives after the reader already
    took silence in its place continues at the read cursor: the gap stays silence and nothing
    afterwards shifts. Readers take [start, start + n), zero-filled where nothing was written.
    """

    def __init__(self, max_backlog_samples: int) -> None:
        self.max_backlog_samples = max_backlog_samples
        self._buf = np.zeros(1 << 16, np.float32)
        self._base = 0  # absolute index of self._buf[0]
        self.write_cursor = 0
        self.read_cursor = 0
        self.dropped_samples = 0
        self.ended = False
        self.last_write_s = 0.0  # monotonic time of the last write: is the input flowing?
        self._arrived = asyncio.Event()
        self._consumed = asyncio.Event()
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=512)  # (write end sample, monotonic time)

    @property
    def backlog_samples(self) -> int:
        return max(0, self.write_cursor - self.read_cursor)

    def write(self, samples: np.ndarray, at: int | None = None, tolerance_samples: int = 240,
              max_backlog_samples: int | None = None) -> int:
        """Append samples; returns how many were dropped (overlap or backlog bound).

        at: for a live source, where on the media clock its first sample belongs (engine.audio.anchor).
        When the write cursor is more than tolerance_samples away from it, writing moves there: ahead
        leaves silence in between (a late start, lost packets), behind drops the overlapping head (audio
        that arrived too late for its place, or a backlog the anchor has since caught up with). The
        tolerance absorbs the few samples a resampler adds or keeps per frame.
        max_backlog_samples: overrides the ring's bound for this write (pushed audio may run ahead).
        """
        self.write_cursor = max(self.write_cursor, self.read_cursor)
        dropped = 0
        if at is not None:
            if at - self.write_cursor > tolerance_samples:
                self.skip(at - self.write_cursor)
            elif self.write_cursor - at > tolerance_samples:
                dropped = min(len(samples), self.write_cursor - at)
                samples = samples[dropped:]
        limit = self.max_backlog_samples if max_backlog_samples is None else max_backlog_samples
        room = limit - self.backlog_samples
        over = max(0, len(samples) - room)
        if over:
            samples = samples[: len(samples) - over]
        dropped += over
        self.dropped_samples += dropped
        end = self.write_cursor + len(samples)
        self._ensure_capacity(end)
        lo = self.write_cursor - self._base
        self._buf[lo : lo + len(samples)] = samples
        self.write_cursor = end
        self.last_write_s = time.monotonic()
        self._arrivals.append((end, self.last_write_s))
        self._arrived.set()
        return dropped

    def skip(self, n: int) -> None:
        """Advance the write cursor by n samples of silence (lost packets, a late start)."""
        self.write_cursor = max(self.write_cursor, self.read_cursor)
        self._ensure_capacity(self.write_cursor + n)
        lo = self.write_cursor - self._base
        self._buf[lo : lo + n] = 0.0
        self.write_cursor += n

    def arrival_time(self, sample: int) -> float | None:
        """When the write holding `sample` arrived (monotonic s); None if not remembered or never written."""
        for end, t in self._arrivals:
            if end > sample:
                return t
        return None

    def end(self) -> None:
        self.ended = True
        self._arrived.set()

    def has(self, end_sample: int) -> bool:
        return self.write_cursor >= end_sample

    async def wait_for(self, end_sample: int, timeout_s: float | None) -> bool:
        """Wait until samples up to end_sample are written, input ended, or the timeout passes."""
        deadline = None if timeout_s is None else asyncio.get_running_loop().time() + timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                while not self.has(end_sample) and not self.ended:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            pass
        return self.has(end_sample)

    async def wait_below(self, backlog_samples: int) -> None:
        """For producers that run ahead of real time (files, TTS): wait until the reader catches up."""
        while self.backlog_samples > backlog_samples:
            self._consumed.clear()
            await self._consumed.wait()

    def read(self, start: int, n: int) -> tuple[np.ndarray, int]:
        """Samples [start, start + n) and how many of them were missing (silence stands in)."""
        out = np.zeros(n, np.float32)
        lo, hi = max(start, self._base), min(start + n, self.write_cursor)
        if hi > lo:
            out[lo - start : hi - start] = self._buf[lo - self._base : hi - self._base]
        missing = n - max(0, hi - lo)
        self.read_cursor = max(self.read_cursor, start + n)
        self._consumed.set()
        self._compact()
        return out, missing

    def clear(self) -> None:
        """Barge-in: forget unread audio."""
        self.write_cursor = self.read_cursor

    def _ensure_capacity(self, end: int) -> None:
        need = end - self._base
        if need > len(self._buf):
            grown = np.zeros(max(need, 2 * len(self._buf)), np.float32)
            grown[: len(self._buf)] = self._buf
            self._buf = grown

    def _compact(self) -> None:
        # Drop what was read once it is more than half the buffer, so memory stays bounded.
        consumed = self.read_cursor - self._base
        if consumed > len(self._buf) // 2:
            keep = max(0, self.write_cursor - self.read_cursor)
            self._buf[:keep] = self._buf[consumed : consumed + keep]
            self._base = self.read_cursor
