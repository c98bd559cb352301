"""The avatar as a pipecat service: TTS audio in, the avatar's pictures at 48 fps and their sound out.

    ... ─► TTS ─► AvatarVideoService ─► transport.output()
                  TTSAudioRawFrame   ─► OutputImageRawFrame (RGB, 48 a second, on the media clock)
                  TTSStoppedFrame    ─► TTSAudioRawFrame (the same sound, paced with the pictures), then
                                        the TTSStoppedFrame once that sound has gone out
                  InterruptionFrame  ─► the queued sound dropped, the mouth closes, the avatar idles

Like pipecat's own video avatar services (Simli, Tavus, HeyGen) it takes the TTS audio out of the pipeline and
puts back the sound the avatar speaks, paced with its pictures; every other frame passes through. Pictures
come the whole time, idle too; sound only while the avatar speaks (all_audio=True: silence as well).

    pip install -e . && pip install 'pipecat-ai>=1.14,<2' 'protobuf>=5.29,<7'   # README: "Embedding the engine"
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import cv2
import numpy as np

try:
    from pipecat.frames.frames import (
        CancelFrame,
        EndFrame,
        Frame,
        InterruptionFrame,
        OutputImageRawFrame,
        StartFrame,
        TTSAudioRawFrame,
        TTSStoppedFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
except ModuleNotFoundError as e:  # the extra is optional: say how to get it
    raise ImportError(f"{e}: the pipecat service needs pipecat-ai: pip install 'pipecat-ai>=1.14,<2' "
                      "'protobuf>=5.29,<7' (README: Embedding the engine)") from e

from engine.config import EngineConfig
from engine.director import Director
from engine.generator import Generator, PreparedAvatar
from engine.types import SAMPLE_RATE_HZ
from streaming.agent_stream import AgentAvatarStream, SegmentEnd
from streaming.sinks import PacedAudio, PacedFrame

END_GRACE_S = 2.0  # an EndFrame waits for the queued sound to play out, plus this, before the stream closes


class AvatarVideoService(FrameProcessor):
    """A FrameProcessor that lip-syncs the portrait to the TTS audio it is given.

    Each picture's frame index on the stream's clock is in `frame.metadata["frame_index"]`, each sound chunk's
    first 48 kHz sample in `metadata["start_sample"]` (frame k's sound is samples [1000k, 1000k + 1000)).
    """

    def __init__(self, avatar: PreparedAvatar, config: EngineConfig | None = None, *,
                 generator: Generator | None = None, director: Director | None = None, session_id: str = "pipecat",
                 all_audio: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.avatar = AgentAvatarStream(avatar, config, session_id=session_id, generator=generator,
                                        director=director, all_audio=all_audio)
        self._out_task: asyncio.Task[None] | None = None
        self._end_played: asyncio.Event | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)  # downstream starts before the first picture reaches it
            await self.avatar.start()
            self._out_task = self.create_task(self._hand_out(), name=f"{self}::pictures")
        elif isinstance(frame, TTSAudioRawFrame) and direction == FrameDirection.DOWNSTREAM:
            self.avatar.push(np.frombuffer(frame.audio, np.int16), frame.sample_rate, frame.num_channels)
        elif isinstance(frame, TTSStoppedFrame) and direction == FrameDirection.DOWNSTREAM:
            self.avatar.end_segment(frame)  # passed on after its sound (_hand_out), as the output expects it
        elif isinstance(frame, InterruptionFrame):
            self.avatar.interrupt()
            await self.push_frame(frame, direction)
        elif isinstance(frame, EndFrame):
            await self._finish()
            await self.push_frame(frame, direction)
        elif isinstance(frame, CancelFrame):
            await self._stop()
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._stop()

    async def _finish(self) -> None:
        """End of the pipeline: what was said plays out first (bounded by its length), then the stream closes."""
        if self.avatar.closed or not self.avatar.stream.state == "streaming":
            await self._stop()
            return
        self._end_played = asyncio.Event()
        backlog_s = self.avatar.pushed.backlog_samples / SAMPLE_RATE_HZ
        self.avatar.end_segment(self._end_played)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._end_played.wait(), backlog_s + self.avatar.session.config.pipeline_delay_s
                                   + END_GRACE_S)
        await self._stop()

    async def _stop(self) -> None:
        if self._out_task is not None:
            await self.cancel_task(self._out_task)
            self._out_task = None
        await self.avatar.aclose()

    async def _hand_out(self) -> None:
        async for item in self.avatar.items():
            if isinstance(item, PacedFrame):
                await self.push_frame(picture_frame(item))
            elif isinstance(item, PacedAudio):
                await self.push_frame(sound_frame(item))
            elif isinstance(item, SegmentEnd):
                if isinstance(item.tag, asyncio.Event):
                    item.tag.set()
                elif isinstance(item.tag, TTSStoppedFrame):
                    await self.push_frame(item.tag)


def picture_frame(frame: PacedFrame) -> OutputImageRawFrame:
    rgb = cv2.cvtColor(frame.picture, cv2.COLOR_YUV2RGB_I420) if frame.is_i420 else frame.picture
    out = OutputImageRawFrame(image=np.ascontiguousarray(rgb).tobytes(), size=(rgb.shape[1], rgb.shape[0]),
                              format="RGB")
    out.metadata["frame_index"] = frame.frame_index
    return out


def sound_frame(chunk: PacedAudio) -> TTSAudioRawFrame:
    pcm = (np.clip(chunk.samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    out = TTSAudioRawFrame(audio=pcm.tobytes(), sample_rate=SAMPLE_RATE_HZ, num_channels=1)
    out.metadata["start_sample"] = chunk.start_sample
    return out
