"""The avatar as a LiveKit Agents video generator (`livekit.agents.voice.avatar.VideoGenerator`).

    AvatarRunner ─► push_audio(rtc.AudioFrame | AudioSegmentEnd) ─► AvatarVideoGenerator
                 ◄─ async for: rtc.VideoFrame (I420, 48 a second, on the media clock), rtc.AudioFrame (the
                    same sound, 48 kHz mono, paced with the pictures), AudioSegmentEnd (after a segment's
                    last sound)
                 ─► clear_buffer(): the queued sound dropped at once, the mouth closes, the avatar idles

In an avatar worker (the process that joins the room as the avatar's participant):

    options = avatar_options(avatar)                    # 48 fps, 48 kHz mono, the portrait's size
    video_gen = AvatarVideoGenerator(avatar)
    runner = AvatarRunner(room, audio_recv=DataStreamAudioReceiver(room), video_gen=video_gen, options=options)
    await runner.start()

Pictures come the whole time, idle too; sound only while the avatar speaks, as the runner expects (it counts
the playback position from the sound it is given).

    pip install -e . && pip install 'livekit-agents>=1.8,<2' 'protobuf>=5.29,<7'   # README: "Embedding the engine"
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np

try:
    from livekit import rtc
    from livekit.agents.voice.avatar import AudioSegmentEnd, AvatarOptions, VideoGenerator
except ModuleNotFoundError as e:  # the extra is optional: say how to get it
    raise ImportError(f"{e}: the LiveKit avatar needs livekit-agents: pip install 'livekit-agents>=1.8,<2' "
                      "'protobuf>=5.29,<7' (README: Embedding the engine)") from e

from engine.config import EngineConfig
from engine.director import Director
from engine.generator import Generator, PreparedAvatar
from engine.types import FPS, SAMPLE_RATE_HZ
from streaming.agent_stream import AgentAvatarStream, SegmentEnd
from streaming.sinks import PacedAudio, PacedFrame


def avatar_options(avatar: PreparedAvatar) -> AvatarOptions:
    """What AvatarRunner needs to know of the stream: the portrait's size, 48 fps, 48 kHz mono."""
    width, height = avatar.size
    return AvatarOptions(video_width=width, video_height=height, video_fps=FPS, audio_sample_rate=SAMPLE_RATE_HZ,
                         audio_channels=1)


class AvatarVideoGenerator(VideoGenerator):
    """The engine's live stream behind LiveKit's VideoGenerator contract; start() is optional (the first
    iteration starts it), aclose() ends it. Each audio frame's `userdata["start_sample"]` is its first sample
    on the stream's 48 kHz clock (frame k's sound is samples [1000k, 1000k + 1000))."""

    def __init__(self, avatar: PreparedAvatar, config: EngineConfig | None = None, *,
                 generator: Generator | None = None, director: Director | None = None, session_id: str = "livekit",
                 all_audio: bool = False) -> None:
        self.avatar = AgentAvatarStream(avatar, config, session_id=session_id, generator=generator,
                                        director=director, all_audio=all_audio)

    async def start(self) -> None:
        await self.avatar.start()

    async def aclose(self) -> None:
        await self.avatar.aclose()

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        if isinstance(frame, AudioSegmentEnd):
            self.avatar.end_segment()
            return
        self.avatar.push(np.frombuffer(frame.data, np.int16), frame.sample_rate, frame.num_channels)

    def clear_buffer(self) -> None:
        self.avatar.interrupt()

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        await self.avatar.start()
        async for item in self.avatar.items():
            if isinstance(item, PacedFrame):
                yield self.video_frame(item)
            elif isinstance(item, PacedAudio):
                yield self.audio_frame(item)
            elif isinstance(item, SegmentEnd):
                yield AudioSegmentEnd()

    def video_frame(self, frame: PacedFrame) -> rtc.VideoFrame:
        """A paced picture as LiveKit's frame: I420 as rendered (no conversion), RGB24 for the still portrait."""
        picture = np.ascontiguousarray(frame.picture)
        if frame.is_i420:
            return rtc.VideoFrame(picture.shape[1], picture.shape[0] * 2 // 3, rtc.VideoBufferType.I420,
                                  picture.tobytes())
        return rtc.VideoFrame(picture.shape[1], picture.shape[0], rtc.VideoBufferType.RGB24, picture.tobytes())

    def audio_frame(self, chunk: PacedAudio) -> rtc.AudioFrame:
        pcm = (np.clip(chunk.samples, -1.0, 1.0) * 32767.0).astype(np.int16)
        userdata: dict[str, Any] = {"start_sample": chunk.start_sample}
        return rtc.AudioFrame(pcm.tobytes(), SAMPLE_RATE_HZ, 1, len(pcm), userdata=userdata)
