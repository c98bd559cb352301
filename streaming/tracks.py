"""The WebRTC sink: aiortc media tracks fed by the pacer, 48 fps video (90 kHz pts) and 48 kHz audio in 20 ms.

aiortc pulls each track (recv) from its sender's task and encodes per peer connection. The sink
puts what the pacer hands it in a small queue per track; recv() takes from it, so it never blocks
the event loop and the pacing stays the pacer's. A track that cannot keep up (a slow encoder) loses
its oldest items, so its delay stays bounded instead of growing (aiortc#1192).
"""

from __future__ import annotations

import asyncio
import fractions
from typing import Generic, TypeVar

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from engine.types import FPS, SAMPLE_RATE_HZ
from streaming.sinks import PacedAudio, PacedFrame, Sink, to_video_frame

VIDEO_CLOCK_HZ = 90_000
TICKS_PER_FRAME = VIDEO_CLOCK_HZ // FPS  # 1875
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_HZ)
AUDIO_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE_HZ)

T = TypeVar("T")


class _Latest(Generic[T]):
    """A bounded queue that drops its oldest item when full (counted), and can be ended."""

    def __init__(self, maxsize: int) -> None:
        self._queue: asyncio.Queue[T | None] = asyncio.Queue(maxsize)
        self.dropped = 0

    def put(self, item: T | None) -> None:
        while self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(item)

    async def get(self) -> T:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # every later recv() ends too
            raise MediaStreamError
        return item


class AvatarVideoTrack(MediaStreamTrack):
    """aiortc's VideoStreamTrack paces at 30 fps; this one follows the pacer's 48 fps clock."""

    kind = "video"

    def __init__(self, queue: _Latest[PacedFrame]) -> None:
        super().__init__()
        self._queue = queue

    async def recv(self) -> av.VideoFrame:
        paced = await self._queue.get()
        frame = to_video_frame(paced.picture)
        frame.pts = paced.frame_index * TICKS_PER_FRAME
        frame.time_base = VIDEO_TIME_BASE
        return frame


class AvatarAudioTrack(MediaStreamTrack):
    """The host's own audio, delayed to match the video: both come from the same pacer clock."""

    kind = "audio"

    def __init__(self, queue: _Latest[PacedAudio]) -> None:
        super().__init__()
        self._queue = queue

    async def recv(self) -> av.AudioFrame:
        chunk = await self._queue.get()
        pcm = (np.clip(chunk.samples, -1.0, 1.0) * 32767.0).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE_HZ
        frame.pts = chunk.start_sample
        frame.time_base = AUDIO_TIME_BASE
        return frame


class WebRtcSink(Sink):
    """One peer's view of a stream: add `video` and `audio` to its RTCPeerConnection."""

    name = "webrtc"

    def __init__(self, video_queue_frames: int = 8, audio_queue_chunks: int = 16) -> None:
        # The queues hold what aiortc has not pulled yet: normally 0-1 items; more only while its
        # sender is held up, which a real-time viewer would rather skip than see late.
        self._video: _Latest[PacedFrame] = _Latest(video_queue_frames)
        self._audio: _Latest[PacedAudio] = _Latest(audio_queue_chunks)
        self.video = AvatarVideoTrack(self._video)
        self.audio = AvatarAudioTrack(self._audio)

    async def on_video(self, frame: PacedFrame) -> None:
        self._video.put(frame)

    async def on_audio(self, chunk: PacedAudio) -> None:
        self._audio.put(chunk)

    async def close(self) -> None:
        self._video.put(None)
        self._audio.put(None)

    def info(self) -> dict[str, int | float | str | None]:
        return {"track_frames_dropped": self._video.dropped, "track_audio_dropped": self._audio.dropped}
