"""aiortc media tracks fed by the pacer: 48 fps video (90 kHz pts) and 48 kHz audio in 20 ms frames."""

from __future__ import annotations

import fractions

import av
import cv2
import numpy as np
from aiortc import MediaStreamTrack

from engine.types import SAMPLE_RATE_HZ
from streaming.pacer import Pacer

VIDEO_CLOCK_HZ = 90_000
TICKS_PER_FRAME = VIDEO_CLOCK_HZ // 48  # 1875
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_HZ)
AUDIO_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE_HZ)
AUDIO_FRAME_SAMPLES = 960  # 20 ms, Opus' usual packet


class AvatarVideoTrack(MediaStreamTrack):
    """aiortc's VideoStreamTrack paces at 30 fps; this one follows the session's 48 fps clock."""

    kind = "video"

    def __init__(self, pacer: Pacer) -> None:
        super().__init__()
        self.pacer = pacer
        self._k: int | None = None

    async def recv(self) -> av.VideoFrame:
        if self._k is None:
            self._k = self.pacer.first_frame_index()
        k, picture = await self.pacer.video_frame(self._k)
        self._k = k + 1
        if picture.ndim == 3:  # RGB (the still portrait before the first window): cv2 beats swscale ~4x
            picture = cv2.cvtColor(picture, cv2.COLOR_RGB2YUV_I420)
        frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
        frame.pts = k * TICKS_PER_FRAME
        frame.time_base = VIDEO_TIME_BASE
        return frame


class AvatarAudioTrack(MediaStreamTrack):
    """The host's own audio, delayed to match the video: both read the same pacer clock."""

    kind = "audio"

    def __init__(self, pacer: Pacer) -> None:
        super().__init__()
        self.pacer = pacer
        self._sample: int | None = None

    async def recv(self) -> av.AudioFrame:
        if self._sample is None:
            self._sample = self.pacer.first_frame_index() * 1000
        mono = await self.pacer.audio(self._sample, AUDIO_FRAME_SAMPLES)
        pcm = (np.clip(mono, -1.0, 1.0) * 32767.0).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE_HZ
        frame.pts = self._sample
        frame.time_base = AUDIO_TIME_BASE
        self._sample += AUDIO_FRAME_SAMPLES
        return frame
