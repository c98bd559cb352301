"""Sources: what feeds a session's audio (a WebRTC microphone, pushed PCM from a TTS, a file), until it ends.

A source is anything with a name and `async run(session)` that pushes audio into the session and
returns when it has no more. The stream runs each in its own task; when every source of an offline
stream has ended, the stream ends the session's input.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Protocol

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from engine.audio.ingest import AudioIngest
from engine.session import AvatarSession
from engine.types import SAMPLE_RATE_HZ


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


class PushedAudio:
    """PCM pushed by the application (a TTS, say): a thin adapter over session.push_audio."""

    name = "pushed"

    def __init__(self) -> None:
        self._session: AvatarSession | None = None
        self._early: list[tuple[np.ndarray, int, int]] = []  # pushed before the stream ran this source
        self._ended = asyncio.Event()

    def push(self, pcm: np.ndarray, sample_rate_hz: int, channels: int = 1) -> None:
        """int16 or float32 PCM, interleaved or shaped (n, channels); may come faster than real time."""
        if self._session is None:
            self._early.append((pcm, sample_rate_hz, channels))
        else:
            self._session.push_audio(pcm, sample_rate_hz, channels)

    def end(self) -> None:
        """No more audio from this source."""
        self._ended.set()

    async def run(self, session: AvatarSession) -> None:
        self._session = session
        for pcm, rate_hz, channels in self._early:
            session.push_audio(pcm, rate_hz, channels)
        self._early.clear()
        await self._ended.wait()


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
