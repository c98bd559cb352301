"""File egress: an offline session rendered as fast as it can into an H.264 + AAC MP4 at 48 fps."""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from engine.audio.ingest import AudioIngest
from engine.config import EngineConfig
from engine.generator import PreparedAvatar
from engine.session import AvatarSession
from engine.types import FPS, SAMPLE_RATE_HZ, SAMPLES_PER_FRAME


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Any audio file PyAV reads -> (float32 mono at 48 kHz, number of input samples)."""
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


class Mp4Writer:
    """H.264 (yuv420p) + AAC-LC in MP4; the audio is exactly the samples each frame shows."""

    def __init__(self, path: str | Path, width: int, height: int, crf: int = 20) -> None:
        self.container = av.open(str(path), mode="w")
        self.video = self.container.add_stream("libx264", rate=FPS)
        self.video.width, self.video.height, self.video.pix_fmt = width, height, "yuv420p"
        self.video.options = {"crf": str(crf), "preset": "veryfast"}
        self.video.codec_context.time_base = fractions.Fraction(1, FPS)
        self.audio = self.container.add_stream("aac", rate=SAMPLE_RATE_HZ)
        self.audio.layout = "mono"
        self.audio.bit_rate = 128_000
        self._frame = 0

    def write(self, frames_rgb: np.ndarray, audio: np.ndarray, frames_i420: np.ndarray | None = None) -> None:
        for i, rgb in enumerate(frames_rgb):
            if frames_i420 is not None:  # already what x264 takes: no colour conversion here
                frame = av.VideoFrame.from_ndarray(frames_i420[i], format="yuv420p")
            else:
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = self._frame
            self.container.mux(self.video.encode(frame))
            self._frame += 1
        pcm = audio.astype(np.float32).reshape(1, -1)
        af = av.AudioFrame.from_ndarray(pcm, format="flt", layout="mono")
        af.sample_rate = SAMPLE_RATE_HZ
        af.pts = (self._frame - len(frames_rgb)) * SAMPLES_PER_FRAME
        self.container.mux(self.audio.encode(af))

    def close(self) -> None:
        self.container.mux(self.video.encode(None))
        self.container.mux(self.audio.encode(None))
        self.container.close()


async def render_to_file(avatar: PreparedAvatar, audio_path: str | Path, out_path: str | Path,
                         config: EngineConfig, on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Render the audio file through an offline session into out_path; returns the session metrics."""
    audio, n_samples = read_audio(audio_path)
    total_frames = -(-n_samples // SAMPLES_PER_FRAME)
    session = AvatarSession(avatar, config, live=False, session_id="render")
    await session.start()
    if config.persona:  # standing instructions: the mood, and any command in them, from the first frame
        session.instruct(config.persona)
    width, height = avatar.size
    writer = Mp4Writer(out_path, width, height)

    async def feed() -> None:
        step = SAMPLE_RATE_HZ  # one second at a time keeps the ring's memory small
        for i in range(0, len(audio), step):
            await session.ring.wait_below(4 * step)
            session.push_audio(audio[i : i + step], SAMPLE_RATE_HZ)
        session.end_input()

    feeder = asyncio.create_task(feed())
    loop = asyncio.get_running_loop()
    done = 0
    try:
        async for window in session.windows():
            await loop.run_in_executor(None, writer.write, window.frames_rgb, window.audio, window.frames_i420)
            done += window.n_frames
            if on_progress is not None:
                on_progress(done, total_frames)
        await feeder
    finally:
        feeder.cancel()
        await session.aclose()
        await loop.run_in_executor(None, writer.close)
    return {"frames": done, "duration_s": done / FPS, **session.metrics.as_dict()}
