"""The pacer: hands each frame and its audio out on the session's 48 fps media clock.

Rendered windows land in a small store keyed by frame index. A consumer asks for frame k and
gets it when it is due; if the window is late, the previous picture is repeated (counted) and
the late frame is dropped when it arrives, so video and audio stay on the clock: the stream
slows down for nobody. The audio comes straight from the session's input (it needs no
rendering), so it keeps playing through late windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from engine.clock import MediaClock
from engine.session import AvatarSession
from engine.types import FPS, SAMPLES_PER_FRAME


@dataclass
class PacerMetrics:
    frames_sent: int = 0
    frames_repeated: int = 0  # due, not rendered yet: previous picture sent again
    frames_skipped: int = 0  # the consumer fell behind the clock and resynced
    audio_samples_sent: int = 0
    audio_samples_silent: int = 0  # due, not rendered yet: silence sent

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Pacer:
    def __init__(self, session: AvatarSession, clock: MediaClock, max_ahead_frames: int = 24,
                 audio_grace_s: float = 0.02, max_behind_frames: int = 12, audio_lead_s: float = 0.0,
                 video_grace_s: float = 0.01) -> None:
        self.session = session
        self.clock = clock
        self.max_ahead_frames = max_ahead_frames  # bounds the store; backpressure reaches the engine
        self.audio_grace_s = audio_grace_s
        self.max_behind_frames = max_behind_frames
        self.audio_lead_s = audio_lead_s  # audio is handed out this much before its picture is due
        # A frame this late is still sent, a little late, rather than the previous picture again: a
        # window that finished a hair before its due time may still be on its way through the loop.
        self.video_grace_s = video_grace_s
        self.metrics = PacerMetrics()
        self._video: dict[int, np.ndarray] = {}
        self._audio: dict[int, np.ndarray] = {}
        self._last_rgb: np.ndarray = session.avatar.rgb
        self._audio_arrived = asyncio.Event()
        self._video_arrived = asyncio.Event()
        self._taken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.first_sent_frame: int | None = None
        session.on_audio(self._take_audio)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.session.id}:pacer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        async for window in self.session.windows():
            while len(self._video) >= self.max_ahead_frames:
                self._taken.clear()
                await self._taken.wait()
            now = self.clock.frame_now()
            for i in range(window.n_frames):
                k = window.start_frame + i
                if k >= now:  # frames already due were repeated in their slot: drop them
                    pictures = window.frames_i420 if window.frames_i420 is not None else window.frames_rgb
                    self._video[k] = pictures[i]
            self._video_arrived.set()

    def _take_audio(self, k: int, samples: np.ndarray) -> None:
        # Straight from the session's input, not from rendered windows: the sound keeps playing
        # when a window is late or skipped (and may be sent ahead of its picture, audio_lead_s).
        self._audio[k] = samples
        for old in [i for i in self._audio if i < k - 2 * FPS]:  # 2 s back is plenty
            del self._audio[old]
        self._audio_arrived.set()

    async def _sleep_until(self, t_s: float) -> None:
        delay = t_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    @staticmethod
    async def _wait_until(ready: Callable[[], bool], arrived: asyncio.Event, deadline_s: float) -> None:
        """Until ready() holds or the deadline passes, waking whenever `arrived` is set."""
        while not ready() and time.monotonic() < deadline_s:
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), timeout=max(0.0, deadline_s - time.monotonic()))

    def first_frame_index(self) -> int:
        """Where a track starts: the frame due now. The first answer is kept for measurements
        (a peer maps RTP timestamps to frame indices with it)."""
        k = max(0, self.clock.frame_now())
        if self.first_sent_frame is None:
            self.first_sent_frame = k
        return k

    async def video_frame(self, k: int) -> tuple[int, np.ndarray]:
        """Frame k's picture at its due time: (index, picture), the picture planar YUV 4:2:0 (H*3/2, W)
        when the generator made one, else RGB (H, W, 3). A consumer more than max_behind_frames late
        is moved forward to the frame due now."""
        now = self.clock.frame_now()
        if now - k > self.max_behind_frames:
            self.metrics.frames_skipped += now - k
            for old in [i for i in self._video if i < now]:
                del self._video[old]
            k = now
        due = self.clock.frame_due_s(k)
        await self._sleep_until(due)
        await self._wait_until(lambda: k in self._video, self._video_arrived, due + self.video_grace_s)
        for old in [i for i in self._video if i < k]:
            del self._video[old]
        rgb = self._video.pop(k, None)
        self._taken.set()
        if rgb is None:
            self.metrics.frames_repeated += 1
        else:
            self._last_rgb = rgb
        self.metrics.frames_sent += 1
        return k, self._last_rgb

    async def audio(self, start_sample: int, n: int) -> np.ndarray:
        """Samples [start_sample, start_sample + n) at their due time less audio_lead_s; silence where
        the input has not delivered them by then (plus audio_grace_s)."""
        due = self.clock.sample_due_s(start_sample) - self.audio_lead_s
        await self._sleep_until(due)
        first, last = start_sample // SAMPLES_PER_FRAME, (start_sample + n - 1) // SAMPLES_PER_FRAME
        await self._wait_until(lambda: all(k in self._audio for k in range(first, last + 1)), self._audio_arrived,
                               due + self.audio_grace_s)
        out = np.zeros(n, np.float32)
        for k in range(first, last + 1):
            block = self._audio.get(k)
            base = k * SAMPLES_PER_FRAME
            lo, hi = max(start_sample, base), min(start_sample + n, base + SAMPLES_PER_FRAME)
            if block is None:
                self.metrics.audio_samples_silent += hi - lo
            else:
                out[lo - start_sample : hi - start_sample] = block[lo - base : hi - base]
        self.metrics.audio_samples_sent += n
        return out
