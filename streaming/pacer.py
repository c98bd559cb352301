"""The pacer: one clock, many sinks.

Live, it runs two loops on the session's 48 fps MediaClock. At frame k's due time the video loop
hands out frame k if it was rendered (waiting up to video_grace_s for one that is just late), else
the previous picture again (counted); a rendered frame that comes after its slot is dropped, so the
stream slows down for nobody. The audio loop hands out 20 ms of the session's input audio_lead_s
before it is due, silence (counted) where the input has not delivered it within audio_grace_s:
straight from the input, not from the windows, so the sound plays on through late windows. Every
item goes to every sink through the sink's own small queue and task (streaming/fanout.py): a slow
or failing sink cannot hold up the clock or the other sinks.

Offline (a session without a clock) it hands out each rendered frame and its audio as soon as the
session renders them, and waits for every sink: nothing is dropped (the file render).
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
from engine.types import FPS, SAMPLES_PER_FRAME, RenderedWindow
from streaming.disclosure import DisclosureLabel
from streaming.encoding import Encoder
from streaming.fanout import FanOut
from streaming.sinks import PacedAudio, PacedFrame, Sink

AUDIO_CHUNK_SAMPLES = 960  # 20 ms, Opus' usual packet


@dataclass
class PacerMetrics:
    frames_sent: int = 0
    frames_repeated: int = 0  # due, not rendered yet: previous picture sent again
    frames_resynced: int = 0  # the pacer itself fell behind the clock (a stalled event loop) and jumped ahead
    audio_samples_sent: int = 0
    audio_samples_silent: int = 0  # due, not rendered yet: silence sent
    labelled: int = 0  # 1 while a disclosure label is drawn into its pictures (streaming/disclosure.py)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Pacer:
    def __init__(self, session: AvatarSession, *, max_ahead_frames: int = 24, audio_grace_s: float = 0.02,
                 max_behind_frames: int = 12, audio_lead_s: float = 0.0, video_grace_s: float = 0.01) -> None:
        self.session = session
        self.live = session.live
        self.max_ahead_frames = max_ahead_frames  # bounds the store; backpressure reaches the engine
        self.audio_grace_s = audio_grace_s
        self.max_behind_frames = max_behind_frames
        self.audio_lead_s = audio_lead_s  # audio is handed out this much before its picture is due
        # A frame this late is still sent, a little late, rather than the previous picture again: a
        # window that finished a hair before its due time may still be on its way through the loop.
        self.video_grace_s = video_grace_s
        self.metrics = PacerMetrics()
        self.sinks = FanOut(self.live)
        self._video: dict[int, np.ndarray] = {}
        self._audio: dict[int, np.ndarray] = {}
        self._last_picture: np.ndarray = session.avatar.rgb
        self._canvas: Callable[..., np.ndarray] | None = None
        self._label: DisclosureLabel | None = None
        # The pictures stored before the first frame went out, as rendered (with the person's alpha where a canvas
        # wants it): a canvas or label set meanwhile frames them again (the store fills before any sink comes).
        self._raw: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        self._audio_arrived = asyncio.Event()
        self._video_arrived = asyncio.Event()
        self._taken = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._has_sink = asyncio.Event()
        self._stopped = False
        if self.live:
            session.on_audio(self._take_audio)

    # ---- sinks -------------------------------------------------------------------------------
    def add_sink(self, sink: Sink) -> None:
        """Feed this sink from the next item on (before or while running)."""
        self.sinks.add(sink)
        self._has_sink.set()

    async def remove_sink(self, sink: Sink) -> None:
        await self.sinks.remove(sink)

    def set_canvas(self, canvas: Callable[..., np.ndarray]) -> None:
        """Every picture goes through canvas(picture) before any sink sees it (streaming/canvas.py: an output size).
        Before the first frame only: an encoder cannot change its picture size midway. A canvas with `needs_alpha`
        (a keyed background) is called as canvas(picture, alpha) with each frame's person alpha."""
        if self.metrics.frames_sent:
            raise RuntimeError("the output canvas must be set before the stream's first frame")
        self._canvas = canvas
        if getattr(canvas, "needs_alpha", False):
            self.session.request_alpha()
        self._reframe()

    def set_label(self, label: DisclosureLabel | None) -> None:
        """Every picture gets label(picture, k) drawn in after the canvas, once per frame, before any sink or encoder
        sees it (streaming/disclosure.py); None: none. Set it before the first frame: the pictures stored meanwhile
        are labelled too."""
        self._label = label
        self.metrics.labelled = int(label is not None)
        self._reframe()

    def _reframe(self) -> None:
        if self.metrics.frames_sent:
            return
        self._last_picture = self._framed(self.session.avatar.rgb, k=0)
        self._video = {k: self._framed(*self._raw[k], k=k) if k in self._raw else picture  # rendered before any sink
                       for k, picture in self._video.items()}

    def _framed(self, picture: np.ndarray, alpha: np.ndarray | None = None, *, k: int) -> np.ndarray:
        framed = picture
        if self._canvas is not None:
            framed = self._canvas(picture) if alpha is None else self._canvas(picture, alpha)
        if self._label is None:
            return framed
        # A picture the canvas made is the pacer's own: the label may draw into it rather than into a copy.
        return self._label(framed, k, in_place=not np.may_share_memory(framed, picture))

    def _hear(self, window: RenderedWindow, i: int) -> None:
        if self._label is not None and not self._label.always:  # eu: speech after a pause shows the icon again
            self._label.hear(window.start_frame + i, window.audio[i * SAMPLES_PER_FRAME:(i + 1) * SAMPLES_PER_FRAME])

    @property
    def encoders(self) -> list[Encoder]:
        """One per distinct video and one per distinct audio spec among the encoding sinks (one encode per codec)."""
        return list(self.sinks.encoders.values())

    @property
    def first_sent_frame(self) -> int | None:
        """The first frame the first sink attached received: a peer maps RTP timestamps to frame indices with it."""
        return self.sinks.first_frame_index()

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """After the session started (a live one has its clock then)."""
        sid = self.session.id
        if not self.live:
            self._tasks.append(asyncio.create_task(self._run_offline(), name=f"{sid}:pacer"))
            return
        self._tasks += [asyncio.create_task(self._run_store(), name=f"{sid}:pacer-store"),
                        asyncio.create_task(self._run_live(), name=f"{sid}:pacer")]

    async def wait(self) -> None:
        """Offline: until every frame went to every sink and the sinks are closed; raises if the session failed."""
        assert not self.live and self._tasks, "wait() is for a started offline pacer"
        await asyncio.shield(self._tasks[0])

    async def stop(self) -> None:
        # The loops also check this: on Python 3.11 a cancel landing as an asyncio.wait_for times out is
        # swallowed (fixed in 3.12), and a loop that missed it would never end.
        self._stopped = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.sinks.aclose(drain=False)

    @property
    def clock(self) -> MediaClock:
        assert self.session.clock is not None, "a live session has its clock once started"
        return self.session.clock

    # ---- offline -----------------------------------------------------------------------------
    async def _run_offline(self) -> None:
        pending, sample = np.zeros(0, np.float32), 0
        async for window in self.session.windows():
            pictures = window.frames_i420 if window.frames_i420 is not None else window.frames_rgb
            for i in range(window.n_frames):
                self._hear(window, i)
                k = window.start_frame + i
                alpha = None if window.alpha_frames is None else window.alpha_frames[i]
                await self.sinks.deliver(PacedFrame(k, self._framed(pictures[i], alpha, k=k), None))
                self.metrics.frames_sent += 1
            pending = np.concatenate([pending, window.audio])
            while len(pending) >= AUDIO_CHUNK_SAMPLES:
                await self._deliver_audio(sample, pending[:AUDIO_CHUNK_SAMPLES])
                sample, pending = sample + AUDIO_CHUNK_SAMPLES, pending[AUDIO_CHUNK_SAMPLES:]
        if len(pending):
            await self._deliver_audio(sample, pending)
        await self.sinks.aclose(drain=True)

    async def _deliver_audio(self, start_sample: int, samples: np.ndarray) -> None:
        await self.sinks.deliver(PacedAudio(start_sample, samples, None))
        self.metrics.audio_samples_sent += len(samples)

    # ---- live --------------------------------------------------------------------------------
    async def _run_store(self) -> None:
        async for window in self.session.windows():
            while len(self._video) >= self.max_ahead_frames:
                self._taken.clear()
                await self._taken.wait()
            now = self.clock.frame_now()
            pictures = window.frames_i420 if window.frames_i420 is not None else window.frames_rgb
            for i in range(window.n_frames):
                k = window.start_frame + i
                self._hear(window, i)
                if k >= now:  # frames already due were repeated in their slot: drop them
                    alpha = None if window.alpha_frames is None else window.alpha_frames[i]
                    self._video[k] = self._framed(pictures[i], alpha, k=k)
                    if not self.metrics.frames_sent:
                        self._raw[k] = (pictures[i], alpha)
            self._video_arrived.set()

    def _take_audio(self, k: int, samples: np.ndarray) -> None:
        # Straight from the session's input, not from rendered windows: the sound keeps playing
        # when a window is late or skipped (and may be sent ahead of its picture, audio_lead_s).
        self._audio[k] = samples
        for old in [i for i in self._audio if i < k - 2 * FPS]:  # 2 s back is plenty
            del self._audio[old]
        self._audio_arrived.set()

    async def _run_live(self) -> None:
        # The clock's loops start with the first sink (a WebRTC peer: once connected). Until then the
        # store fills and its back-pressure pauses the renderer, so a session whose client never
        # connects costs a few windows of rendering, not a core until the connect timeout.
        await self._has_sink.wait()
        first = max(0, self.clock.frame_now())
        await asyncio.gather(self._run_video(first), self._run_audio(first * SAMPLES_PER_FRAME))

    async def _run_video(self, k: int) -> None:
        clock = self.clock
        while not self._stopped:
            now = clock.frame_now()
            if now - k > self.max_behind_frames:
                self.metrics.frames_resynced += now - k
                k = now
            due = clock.frame_due_s(k)
            await _sleep_until(due)
            await _wait_until(lambda k=k: k in self._video, self._video_arrived, due + self.video_grace_s)
            for old in [i for i in self._video if i < k]:
                del self._video[old]
            picture = self._video.pop(k, None)
            self._raw.clear()
            self._taken.set()
            if picture is None:
                self.metrics.frames_repeated += 1
            else:
                self._last_picture = picture
            self.metrics.frames_sent += 1
            self.sinks.send(PacedFrame(k, self._last_picture, due, repeated=picture is None))
            k += 1

    async def _run_audio(self, start_sample: int) -> None:
        n = AUDIO_CHUNK_SAMPLES
        while not self._stopped:
            due = self.clock.sample_due_s(start_sample)
            self.sinks.send(PacedAudio(start_sample, await self._audio_at(start_sample, n, due), due))
            start_sample += n

    async def _audio_at(self, start_sample: int, n: int, due_s: float) -> np.ndarray:
        """Samples [start_sample, start_sample + n) at their due time less audio_lead_s; silence where the input
        has not delivered them by then (plus audio_grace_s)."""
        send_s = due_s - self.audio_lead_s
        await _sleep_until(send_s)
        first, last = start_sample // SAMPLES_PER_FRAME, (start_sample + n - 1) // SAMPLES_PER_FRAME
        await _wait_until(lambda: all(k in self._audio for k in range(first, last + 1)), self._audio_arrived,
                          send_s + self.audio_grace_s)
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


async def _sleep_until(t_s: float) -> None:
    delay = t_s - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def _wait_until(ready: Callable[[], bool], arrived: asyncio.Event, deadline_s: float) -> None:
    """Until ready() holds or the deadline passes, waking whenever `arrived` is set."""
    while not ready() and time.monotonic() < deadline_s:
        arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived.wait(), timeout=max(0.0, deadline_s - time.monotonic()))
