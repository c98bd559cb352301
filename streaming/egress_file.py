"""File egress: an MP4 sink (H.264 + AAC at 48 fps), and the offline render of an audio file into one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np

from engine.config import EngineConfig
from engine.generator import PreparedAvatar
from engine.session import AvatarSession
from engine.types import FPS, SAMPLES_PER_FRAME
from streaming.aigc import KEY
from streaming.disclosure import DisclosureLabel
from streaming.egress_alpha import alpha_file_sink
from streaming.encoding import EncodedPacket, EncodingSpec, face_file_crf, file_video_options
from streaming.sinks import PacedFrame, Sink
from streaming.sources import FileSource, read_audio
from streaming.stream import AvatarStream

__all__ = ["Mp4Sink", "read_audio", "render_to_file"]


# Fragmented MP4: an empty index up front, then a self-contained fragment (moof + mdat) at every keyframe and at
# least every half second, each flushed to the file as it is written, so a killed process leaves a file that plays
# up to its last fragment.
FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": "500000",
              "flush_packets": "1"}
# Custom metadata keys (the AIGC hidden label, streaming/aigc.py) are kept in the MP4's udta only with this flag.
METADATA_FLAG = "use_metadata_tags"


class Mp4Sink(Sink):
    """Writes the stream to an MP4 (or any container PyAV infers from the name), from its first keyframe.

    The packets come from the encoder for its settings, shared with any other sink that asks for the
    same; a live stream's file starts at the keyframe forced when the sink joined. crf None: chosen from the
    picture's size (streaming.encoding.file_crf: 20 from 512x512 up, lower for smaller pictures). fragmented=True
    (recordings of live streams) writes a fragmented MP4 that survives a crash or SIGKILL, minus its
    last half second or so. metadata: container tags (the AIGC hidden label); on_finished(path): called off the
    event loop once the file is complete (C2PA signing, streaming/c2pa_sign.py).
    """

    name = "mp4"
    queue_size = 512  # packets (~5 s): offline they are awaited; live, a stalled disk drops to the next keyframe

    def __init__(self, path: str | Path, crf: int | None = None, preset: str = "veryfast",
                 audio_bit_rate: int = 128_000, *, encoding: EncodingSpec | None = None,
                 fragmented: bool = False, metadata: dict[str, str] | None = None,
                 on_finished: Callable[[Path], None] | None = None) -> None:
        self.path = Path(path)
        self.metadata = dict(metadata or {})
        self.on_finished = on_finished
        self.encoding = encoding or EncodingSpec(video_options=file_video_options(crf, preset),
                                                 audio_bit_rate=audio_bit_rate)
        self.fragmented = fragmented
        self._container: av.container.OutputContainer | None = None
        self._streams: dict[str, av.stream.Stream] = {}

    async def start(self) -> None:
        options = dict(FRAGMENTED) if self.fragmented else {}
        if self.metadata and self.path.suffix.lower() in (".mp4", ".mov", ".m4v"):
            options["movflags"] = "+".join(filter(None, (options.get("movflags"), METADATA_FLAG)))
        if self.fragmented:
            self._container = av.open(str(self.path), mode="w", format="mp4", options=options)
        else:
            self._container = av.open(str(self.path), mode="w", options=options)
        self._container.metadata.update(self.metadata)
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
            if self.on_finished is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.on_finished, self.path)


class _Progress(Sink):
    name = "progress"

    def __init__(self, on_progress: Callable[[int, int], None], total_frames: int) -> None:
        self.on_progress, self.total_frames, self.done = on_progress, total_frames, 0

    async def on_batch(self, items: Sequence[object]) -> None:  # once per batch: a progress bar needs no more
        self.done += sum(isinstance(item, PacedFrame) for item in items)
        self.on_progress(self.done, self.total_frames)


async def render_to_file(avatar: PreparedAvatar, audio_path: str | Path, out_path: str | Path,
                         config: EngineConfig, on_progress: Callable[[int, int], None] | None = None,
                         canvas: Callable[[np.ndarray], np.ndarray] | None = None,
                         label: DisclosureLabel | None = None,
                         provenance: Any = None) -> dict:
    """Render the audio file through an offline session into out_path (on the canvas, if one is given: an output
    size, streaming/canvas.py; with the disclosure label, if one is given: streaming/disclosure.py); the file carries
    the AIGC hidden label, and C2PA credentials where provenance (streaming/provenance.py) has a certificate.
    Returns the session metrics."""
    from streaming.c2pa_sign import sign_mp4
    from streaming.provenance import Provenance

    source = FileSource(audio_path)
    total_frames = -(-source.n_samples // SAMPLES_PER_FRAME)
    stream = AvatarStream(AvatarSession(avatar, config, live=False, session_id="render"))
    if canvas is not None:
        stream.pacer.set_canvas(canvas)
    stream.pacer.set_label(label)
    provenance = provenance or Provenance()
    produce_id = uuid.uuid4().hex
    metadata = provenance.metadata(produce_id)
    stream.pacer.sinks.aigc = metadata[KEY]  # the same label in its H.264 (streaming/sei.py)
    # On a canvas the picture is scaled to the output: its size decides the crf, as for any file.
    crf = None if canvas is not None else face_file_crf(*avatar.size, float(np.ptp(avatar.landmarks[:, 0])))
    mp4 = alpha_file_sink(out_path, canvas) or Mp4Sink(out_path, crf=crf, metadata=metadata)
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
    if provenance.signing is not None:  # a failure is the command's error: the user asked for credentials
        await asyncio.get_running_loop().run_in_executor(None, sign_mp4, Path(out_path), provenance.signing,
                                                         provenance.aigc(produce_id))
    done = stream.pacer.metrics.frames_sent
    return {"frames": done, "duration_s": done / FPS, **stream.session.metrics.as_dict()}
