"""A session's input: audio in any format, placed on the media clock, read back one frame at a time.

Pushed audio (TTS, files) is buffered and played on the clock; a live source's frames are placed by
their timestamps (engine/audio/anchor.py) with a bounded backlog. The reader takes each frame's
1000 samples when they are in or, live, when its deadline passes (silence stands in, counted).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np

from engine.audio.anchor import LiveAnchor
from engine.audio.ingest import AudioIngest
from engine.audio.ring import AudioRing
from engine.clock import MediaClock
from engine.config import EngineConfig
from engine.metrics import SessionMetrics
from engine.types import SAMPLE_RATE_HZ, SAMPLES_PER_FRAME


@dataclass(slots=True)
class FrameAudio:
    """One video frame's input audio (input -> features)."""

    frame_index: int
    samples: np.ndarray  # (1000,) float32
    missing_samples: int  # silence stood in for these
    late: bool  # live: the input was flowing, just not in time for this frame (more delay would have saved it)
    arrived_t_s: float | None  # monotonic time its last sample arrived; None where silence stood in

    def __str__(self) -> str:
        return f"FrameAudio#{self.frame_index} missing={self.missing_samples}{' late' if self.late else ''}"


class SessionInput:
    def __init__(self, config: EngineConfig, metrics: SessionMetrics, *, live: bool) -> None:
        self.live = live
        self.metrics = metrics
        self.clock: MediaClock | None = None  # set when a live session starts: input is placed on it
        self.ring = AudioRing(int(config.max_live_backlog_s * SAMPLE_RATE_HZ))
        self.last_filled_frame = -1  # the newest frame whose input audio was missing (silence stood in)
        self._pushed_backlog = int(config.max_pushed_backlog_s * SAMPLE_RATE_HZ)
        self._ingest = AudioIngest()
        self._anchor = LiveAnchor()
        self._listeners: list[Callable[[int, np.ndarray], None]] = []

    @property
    def offset_samples(self) -> int | None:
        """Live input: media-clock index minus the input's own timestamp (48 kHz), once audio came."""
        return self._anchor.offset_samples

    def push_audio_frame(self, frame: av.AudioFrame) -> None:
        """A live source's audio (a transport's microphone), any format PyAV knows.

        Live sessions place it on the clock by its timestamps and its least delayed arrivals
        (engine/audio/anchor.py), so jitter and packets queued at start-up add no lasting delay, and
        bound its backlog (a sender whose clock runs fast loses the excess, counted); gaps in its pts
        (lost packets) become silence, so later audio is not shifted earlier.
        """
        gap = self._ingest.gap_samples(frame)
        self.metrics.audio_samples_lost += gap
        mono = self._ingest.convert_frame(frame)
        if self.clock is None:  # offline: contiguous, with lost packets as silence
            if gap:
                self.ring.skip(min(gap, self.ring.max_backlog_samples))
            self._write(mono, None, None if self.live else self._pushed_backlog)
            return
        at = self._anchor.place(len(mono), self.clock.live_sample_now(), frame.pts, frame.time_base)
        self._write(mono, at, None)

    def push_audio(self, pcm: np.ndarray, sample_rate_hz: int, channels: int = 1) -> None:
        """Pushed audio (TTS, files): int16 or float32 PCM, interleaved or shaped (n, channels).

        It may come faster than real time: it is buffered and played on the clock, never dropped
        (up to max_pushed_backlog_s).
        """
        self._write(self._ingest.convert_pcm(pcm, sample_rate_hz, channels), None, self._pushed_backlog)

    def end_input(self) -> None:
        """No more audio (offline): the last frame is padded with silence and the stream ends."""
        self._write(self._ingest.flush(), None, self._pushed_backlog)
        self.ring.end()

    def clear_buffer(self) -> None:
        """Barge-in: drop audio not yet read."""
        self.ring.clear()

    async def wait_backlog_below(self, samples: int) -> None:
        """For producers that run ahead of real time (files, TTS): until the reader catches up."""
        await self.ring.wait_below(samples)

    def on_audio(self, listener: Callable[[int, np.ndarray], None]) -> None:
        """listener(frame_index, samples) gets each frame's audio (1000 samples) as soon as it is read
        from the input, before its window is rendered: a live transport plays it from there, so the
        sound neither waits for nor drops out with the picture."""
        self._listeners.append(listener)

    def _write(self, mono: np.ndarray, at: int | None, max_backlog: int | None) -> None:
        if len(mono):
            self.metrics.note_audio_written(len(mono), self.ring.write(mono, at, max_backlog_samples=max_backlog))

    async def read_frame(self, k: int, deadline_s: float | None) -> FrameAudio | None:
        """Frame k's audio once it is all in, or once deadline_s (monotonic; None: no deadline) passes;
        None once the input has ended before it."""
        end_sample = (k + 1) * SAMPLES_PER_FRAME
        timeout = None if deadline_s is None else max(0.0, deadline_s - time.monotonic())
        await self.ring.wait_for(end_sample, timeout)
        if self.ring.ended and self.ring.write_cursor <= k * SAMPLES_PER_FRAME:
            return None
        samples, missing = self.ring.read(k * SAMPLES_PER_FRAME, SAMPLES_PER_FRAME)
        if not self.ring.ended:  # the silence padding the very last frame is not a loss
            self.metrics.audio_samples_filled += missing
        if missing:
            self.last_filled_frame = k
        late = bool(missing) and self.clock is not None and time.monotonic() - self.ring.last_write_s < 0.1
        if late:
            self.metrics.audio_frames_late += 1
        arrived = self.ring.arrival_time(end_sample - 1) if not missing else None
        for listener in self._listeners:
            listener(k, samples)
        return FrameAudio(k, samples, missing, late, arrived)
