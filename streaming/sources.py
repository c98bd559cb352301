"""Sources: what feeds a session's audio (a WebRTC microphone, pushed PCM from a TTS, a file), until it ends.

A source is anything with a name and `async run(session)` that pushes audio into the session and
returns when it has no more. The stream runs each in its own task; when every source of an offline
stream has ended, the stream ends the session's input.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from engine.audio.ingest import AudioIngest
from engine.session import AvatarSession
from engine.types import SAMPLE_RATE_HZ, SAMPLES_PER_FRAME


class Source(Protocol):
    name: str

    async def run(self, session: AvatarSession) -> None:
        """Push audio into the session; return when there is no more."""
        ...


class TrackSource:
    """A WebRTC microphone (an aiortc track): each received frame, placed on the clock by its timestamps."""

    name = "microphone"

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track

    async def run(self, session: AvatarSession) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                session.push_audio_frame(await self.track.recv())


# Live: pushed audio enters the session this far ahead of the clock's live position. It bounds how late an
# interrupt takes effect (pipeline delay + this) and covers event-loop stalls of a busy machine.
FEED_AHEAD_S = 0.06
# An utterance ends with this much written silence after its last frame: the session counts a frame whose
# audio is missing within 0.1 s of a write as late input (engine/session_input.py), which an utterance's
# end is not. Four frames leave ~60 ms of margin for a busy event loop; the next utterance may start that
# much (84 ms) later, which turn-taking does anyway.
TAIL_FRAMES = 4


@dataclass
class PushedStats:
    samples_in: int = 0  # 48 kHz mono samples pushed (after conversion)
    samples_fed: int = 0  # ... handed to the session on its clock
    samples_dropped: int = 0  # ... dropped by interrupt() before they were played
    samples_padded: int = 0  # silence added to end an utterance on a whole frame
    interrupts: int = 0
    flushes: int = 0
    underruns: int = 0  # the queue ran dry before a flush (a sender slower than real time, or one that never flushes)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class PushedAudio:
    """PCM pushed by the application (a TTS, say): any rate, mono or stereo, faster than real time.

    Live, the audio waits here and is handed to the session on its media clock, feed_ahead_s ahead of
    the live position, as a microphone would deliver it. The session then never reads far ahead of what
    is due, so interrupt() (barge-in: drop what is queued) silences the avatar within the pipeline delay
    instead of after everything already rendered ahead. The end of an utterance (flush(), or the queue
    running dry) is padded with silence to a whole frame, so its last frame is not missing audio.
    Offline (no clock), it goes straight into the session.
    """

    name = "pushed"

    def __init__(self, feed_ahead_s: float = FEED_AHEAD_S) -> None:
        self.feed_ahead_samples = int(feed_ahead_s * SAMPLE_RATE_HZ)
        self.stats = PushedStats()
        self._session: AvatarSession | None = None
        self._ingest = AudioIngest()  # its own, so flush() and interrupt() reset it without touching the session
        self._queue: deque[np.ndarray | None] = deque()  # None: end of an utterance (pad to a frame there)
        self._queued = 0
        self._open = False  # an utterance is being fed (audio written since the last end)
        self._ended = asyncio.Event()
        self._arrived = asyncio.Event()
        self._consumed = asyncio.Event()

    @property
    def backlog_samples(self) -> int:
        """Audio pushed and not yet played (48 kHz): what waits here plus what the session holds unread."""
        held = self._session.ring.backlog_samples if self._session is not None else 0
        return self._queued + held

    def push(self, pcm: np.ndarray, sample_rate_hz: int, channels: int = 1) -> None:
        """int16 or float32 PCM, interleaved or shaped (n, channels); may come faster than real time."""
        self._enqueue(self._ingest.convert_pcm(pcm, sample_rate_hz, channels))

    def flush(self) -> None:
        """End of an utterance: what the resampler holds goes out, and the last frame is completed with silence."""
        self.stats.flushes += 1
        self._enqueue(self._ingest.flush())
        if self._session is None or self._session.live:  # offline, audio goes straight in: nothing to mark
            self._queue.append(None)
            self._arrived.set()

    def interrupt(self) -> None:
        """Barge-in: drop every sample not yet read by the session; the mouth closes with the sound."""
        self.stats.interrupts += 1
        dropped = self._queued + (self._session.ring.backlog_samples if self._session is not None else 0)
        self.stats.samples_dropped += dropped
        self._queue.clear()
        self._queued = 0
        self._open = False  # the session's reader finds nothing more: the mouth closes at once
        self._ingest = AudioIngest()
        if self._session is not None:
            self._session.clear_buffer()
        self._consumed.set()

    def end(self) -> None:
        """No more audio from this source (an offline stream ends after it)."""
        self._ended.set()
        self._arrived.set()

    async def wait_backlog_below(self, samples: int, poll_s: float = 0.05) -> None:
        """Until backlog_samples <= samples (for producers faster than real time)."""
        while self.backlog_samples > samples:
            self._consumed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._consumed.wait(), poll_s)  # the session also drains on its own

    def _enqueue(self, mono: np.ndarray) -> None:
        if not len(mono):
            return
        self.stats.samples_in += len(mono)
        if self._session is not None and not self._session.live:
            self._session.push_audio(mono, SAMPLE_RATE_HZ)
            return
        self._queue.append(mono)
        self._queued += len(mono)
        self._arrived.set()

    async def run(self, session: AvatarSession) -> None:
        self._session = session
        if not session.live:
            for chunk in self._queue:
                if chunk is not None:
                    session.push_audio(chunk, SAMPLE_RATE_HZ)
            self._queue.clear()
            self._queued = 0
            await self._ended.wait()
            tail = self._ingest.flush()
            if len(tail):
                session.push_audio(tail, SAMPLE_RATE_HZ)
            return
        await self._feed(session)

    async def _feed(self, session: AvatarSession) -> None:
        for _ in range(6000):  # added before the stream started: its clock comes with the start (a minute at most)
            if session.clock is not None:
                break
            await asyncio.sleep(0.01)  # the session has no event for its start
        if session.clock is None:
            raise RuntimeError(f"session {session.id}: not started a minute after its pushed audio was added")
        clock, ring = session.clock, session.ring
        while True:
            position = max(ring.write_cursor, ring.read_cursor)  # where the session writes next
            if not self._queue:
                if self._ended.is_set():
                    return
                self._arrived.clear()
                if not self._open:  # the last utterance has ended: nothing to do until more comes
                    await self._arrived.wait()
                    continue
                # Ran dry: wait for more until the frame it stopped in has ended on the clock (a microphone would
                # have delivered it by then), then end the utterance there: still a pipeline delay before the
                # session must read that frame, and long enough before its tail runs out not to look like late input.
                frame_end = position - position % SAMPLES_PER_FRAME + SAMPLES_PER_FRAME
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(),
                                           max(0.0, (frame_end - clock.live_sample_now()) / SAMPLE_RATE_HZ))
                if not self._queue:
                    self.stats.underruns += 1
                    self._pad(session)
                continue
            room = clock.live_sample_now() + self.feed_ahead_samples - position
            if room < SAMPLES_PER_FRAME:  # a frame at a time: ~48 wake-ups a second while speaking
                await asyncio.sleep((SAMPLES_PER_FRAME - room) / SAMPLE_RATE_HZ)
                continue
            self._feed_now(session, room)

    def _feed_now(self, session: AvatarSession, room: int) -> None:
        while room > 0 and self._queue:
            head = self._queue[0]
            if head is None:
                self._queue.popleft()
                if self._open:  # a flush with nothing before it ends nothing
                    self._pad(session)
                continue
            if not self._open:
                room -= self._start_at_live_position(session)
            chunk = head[:room]
            if len(head) > room:
                self._queue[0] = head[room:]
            else:
                self._queue.popleft()
            session.push_audio(chunk, SAMPLE_RATE_HZ)
            self._open = True
            self._queued -= len(chunk)
            self.stats.samples_fed += len(chunk)
            room -= len(chunk)
        self._consumed.set()

    def _start_at_live_position(self, session: AvatarSession) -> int:
        """An utterance starts where a microphone's sound arriving now would: at the live position, a pipeline
        delay before the session reads it. Started where the session reads (it reads behind the live position),
        a first chunk shorter than that delay ran dry before the next one came, and silence was written into
        the first word. Returns the silence written before it (samples)."""
        assert session.clock is not None
        position = max(session.ring.write_cursor, session.ring.read_cursor)
        gap = session.clock.live_sample_now() - position
        if gap <= 0:
            return 0
        session.push_audio(np.zeros(gap, np.float32), SAMPLE_RATE_HZ)
        return gap

    def _pad(self, session: AvatarSession) -> None:
        """End an utterance: silence to the end of its frame and TAIL_FRAMES more."""
        position = max(session.ring.write_cursor, session.ring.read_cursor)
        n = -position % SAMPLES_PER_FRAME + TAIL_FRAMES * SAMPLES_PER_FRAME
        session.push_audio(np.zeros(n, np.float32), SAMPLE_RATE_HZ)
        self.stats.samples_padded += n
        self._open = False


class FileSource:
    """An audio file (any format PyAV reads), decoded up front and pushed with back-pressure.

    Pushed a second at a time while the session holds less than max_backlog_s, so memory stays small
    and a live session plays it in real time; loop=True starts it over at the end, forever.
    """

    name = "file"

    def __init__(self, path: str | Path, *, loop: bool = False, max_backlog_s: float = 4.0) -> None:
        self.path = Path(path)
        self.samples, self.n_samples = read_audio(path)  # raises ValueError on an unreadable file, at once
        self.loop = loop
        self.max_backlog_s = max_backlog_s

    async def run(self, session: AvatarSession) -> None:
        step = SAMPLE_RATE_HZ
        while True:
            for i in range(0, len(self.samples), step):
                await session.wait_backlog_below(int(self.max_backlog_s * step))
                session.push_audio(self.samples[i : i + step], SAMPLE_RATE_HZ)
            if not self.loop or not len(self.samples):
                return


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Any audio file PyAV reads -> (float32 mono at 48 kHz, number of samples)."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise ValueError(f"{path}: cannot read audio ({e})") from e
    with container:
        if not container.streams.audio:
            raise ValueError(f"{path}: has no audio stream")
        ingest = AudioIngest()  # the conversion live input gets: channels averaged, resampled to 48 kHz
        chunks = [ingest.convert_frame(frame) for frame in container.decode(audio=0)]
    audio = np.concatenate([*chunks, ingest.flush()])
    return audio, len(audio)
