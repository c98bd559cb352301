"""File egress: an MP4 sink (H.264 + AAC at 48 fps), and the offline render of an audio file into one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import av
import numpy as np

from engine.config import EngineConfig
from engine.generator import PreparedAvatar
from engine.session import AvatarSession
from engine.types import FPS, SAMPLES_PER_FRAME
from streaming.egress_alpha import alpha_file_sink
from streaming.encoding import EncodedPacket, EncodingSpec
from streaming.sinks import PacedFrame, Sink
from streaming.sources import FileSource, read_audio
from streaming.stream import AvatarStream

__all__ = ["Mp4Sink", "read_audio", "render_to_file"]


# Fragmented MP4: an empty index up front, then a self-contained fragment (moof + mdat) at every keyframe and at
# least every half second, each flushed to the file as it is written, so a killed process leaves a file that plays
# up to its last fragment.
FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": "500000",
              "flush_packets": "1"}


class Mp4Sink(Sink):
    """Writes the stream to an MP4 (or any container PyAV infers from the name), from its first keyframe.

    The packets come from the encoder for its settings, shared with any other sink that asks for the
    same; a live stream's file starts at the keyframe forced when the sink joined. fragmented=True
    (recordings of live streams) writes a fragmented MP4 that survives a crash or SIGKILL, minus its
    last half second or so.
    """

    name = "mp4"
    queue_size = 512  # packets (~5 s): offline they are awaited; live, a stalled disk drops to the next keyframe

    def __init__(self, path: str | Path, crf: int = 20, preset: str = "veryfast",
                 audio_bit_rate: int = 128_000, *, encoding: EncodingSpec | None = None,
                 fragmented: bool = False) -> None:
        self.path = Path(path)
        self.encoding = encoding or EncodingSpec(video_options=(("crf", str(crf)), ("preset", preset)),
                                                 audio_bit_rate=audio_bit_rate)
        self.fragmented = fragmented
        self._container: av.container.OutputContainer | None = None
        self._streams: dict[str, av.stream.Stream] = {}

    async def start(self) -> None:
        if self.fragmented:
            self._container = av.open(str(self.path), mode="w", format="mp4", options=FRAGMENTED)
        else:
            self._container = av.open(str(self.path), mode="w")
        self._streams = {}

    def info(self) -> dict[str, int | float | str | None]:
        try:
            size = self.path.stat().st_size
        except OSError:
            size = None
        return {"path": str(self.path), "bytes": size}

    async def on_batch(self, items: Sequence[object]) -> None:
        packets = [p for p in items if isinstance(p, EncodedPacket)]
        await asyncio.get_running_loop().run_in_executor(None, self._mux, packets)  # writes to disk

    def _mux(self, packets: list[EncodedPacket]) -> None:
        assert self._container is not None
        for packet in packets:
            if not self._streams:  # both streams are known from the first packet on
                streams = packet.streams
                self._streams = {"video": self._container.add_stream_from_template(streams.video, opaque=True),
                                 "audio": self._container.add_stream_from_template(streams.audio, opaque=True)}
            self._container.mux(packet.to_av(self._streams[packet.kind]))

    async def close(self) -> None:
        if self._container is not None:
            container, self._container = self._container, None
            await asyncio.get_running_loop().run_in_executor(None, container.close)  # writes the index


class _Progress(Sink):
    name = "progress"

    def __init__(self, on_progress: Callable[[int, int], None], total_frames: int) -> None:
        self.on_progress, self.total_frames, self.done = on_progress, total_frames, 0

    async def on_batch(self, items: Sequence[object]) -> None:  # once per batch: a progress bar needs no more
        self.done += sum(isinstance(item, PacedFrame) for item in items)
        self.on_progress(self.done, self.total_frames)


async def render_to_file(avatar: PreparedAvatar, audio_path: str | Path, out_path: str | Path,
                         config: EngineConfig, on_progress: Callable[[int, int], None] | None = None,
                         canvas: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    """Render the audio file through an offline session into out_path (on the canvas, if one is given: an output
    size, streaming/canvas.py); returns the session metrics."""
    source = FileSource(audio_path)
    total_frames = -(-source.n_samples // SAMPLES_PER_FRAME)
    stream = AvatarStream(AvatarSession(avatar, config, live=False, session_id="render"))
    if canvas is not None:
        stream.pacer.set_canvas(canvas)
    mp4 = alpha_file_sink(out_path, canvas) or Mp4Sink(out_path)
    stream.add_sink(mp4)
    if on_progress is not None:
        stream.add_sink(_Progress(on_progress, total_frames))
    try:
        await stream.start()
        if config.persona:  # standing instructions: the mood, and any command in them, from the first frame
            stream.session.instruct(config.persona)
        stream.add_source(source)
        await stream.wait()
    finally:
        await stream.close()
    written = stream.pacer.sinks.metrics_of(mp4)
    if written is not None and written.error is not None:
        raise RuntimeError(f"{out_path}: writing failed: {written.error}")
    done = stream.pacer.metrics.frames_sent
    return {"frames": done, "duration_s": done / FPS, **stream.session.metrics.as_dict()}
