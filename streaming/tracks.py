"""The WebRTC sinks: aiortc media tracks fed by the pacer, 48 fps video (90 kHz pts) and 48 kHz audio in 20 ms.

WebRtcSink: aiortc pulls each track (recv) from its sender's task and encodes per peer connection.
The sink puts what the pacer hands it in a small queue per track; recv() takes from it, so it never
blocks the event loop and the pacing stays the pacer's. A track that cannot keep up (a slow encoder)
loses its oldest items, so its delay stays bounded instead of growing (aiortc#1192).

EncodedWebRtcSink: the same for packets encoded once for every viewer (streaming/encoding.py): a
track's recv() returns an av.Packet, which aiortc's sender only packetises (RTCRtpSender
_next_encoded_frame: an av.Packet goes to the codec's pack(), not its encoder).
"""

from __future__ import annotations

import asyncio
import fractions
from collections.abc import Callable
from typing import Generic, TypeVar

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from engine.types import FPS, SAMPLE_RATE_HZ
from streaming.encoding import EncodedPacket, EncodingSpec
from streaming.sei import KeyframeSei
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

    def clear(self) -> None:
        """Drop what waits (not counted: the caller says why)."""
        while not self._queue.empty():
            self._queue.get_nowait()

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
        self.label: KeyframeSei | None = None  # the hidden label for an H.264 encoder (streaming.patches)

    async def recv(self) -> av.VideoFrame:
        paced = await self._queue.get()
        frame = to_video_frame(paced.picture)
        frame.pts = paced.frame_index * TICKS_PER_FRAME
        frame.time_base = VIDEO_TIME_BASE
        if self.label is not None:
            frame.opaque = self.label
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


class EncodedTrack(MediaStreamTrack):
    """A track of packets encoded elsewhere: aiortc's sender packetises each as it comes (no pacing of its own)."""

    def __init__(self, kind: str, queue: _Latest[av.Packet]) -> None:
        super().__init__()
        self.kind = kind
        self._queue = queue

    async def recv(self) -> av.Packet:  # type: ignore[override]
        return await self._queue.get()


class EncodedWebRtcSink(Sink):
    """One WebRTC viewer of the stream's shared encode (WHEP): add `video` and `audio` to its RTCPeerConnection.

    Sinks with the same spec share one encoder, so a hundred viewers cost one encode. A video packet the
    track had no room for breaks the picture until the next keyframe: the track then drops what it holds,
    skips to a keyframe and asks for one (`on_lost`, rate-limited by its caller), as its encoder does for
    its own queue (streaming/encoding.py).
    """

    name = "whep"
    queue_size = 96  # packets, video and audio (~100 a second): a viewer's sender may stall ~1 s before drops

    def __init__(self, spec: EncodingSpec, on_lost: Callable[[], None] = lambda: None,
                 video_queue_packets: int = 24, audio_queue_packets: int = 25) -> None:
        self.encoding = spec
        self._on_lost = on_lost
        self._h264 = "264" in spec.video_codec
        self._video: _Latest[av.Packet] = _Latest(video_queue_packets)
        self._audio: _Latest[av.Packet] = _Latest(audio_queue_packets)
        self.video = EncodedTrack("video", self._video)
        self.audio = EncodedTrack("audio", self._audio)
        self._waiting_for_keyframe = True
        self.keyframes = 0
        self.video_packets_skipped = 0  # after a loss, until a keyframe

    async def on_packet(self, packet: EncodedPacket) -> None:
        if packet.pts is None:
            return
        if packet.kind == "audio":
            self._audio.put(_to_av(packet.data, packet))
            return
        if self._waiting_for_keyframe and not packet.is_keyframe:
            self.video_packets_skipped += 1
            return
        data = packet.data
        if packet.is_keyframe:
            self._waiting_for_keyframe = False
            self.keyframes += 1
            if self._h264 and not _has_sps(data):
                # The shared encoder puts SPS and PPS out of band (its global header, as MP4 and FLV want
                # them); a WebRTC receiver needs them in band, before each keyframe (RFC 6184).
                data = bytes(packet.streams.video.codec_context.extradata or b"") + data
        dropped = self._video.dropped
        self._video.put(_to_av(data, packet))
        if self._video.dropped > dropped:
            self._video.clear()
            self._waiting_for_keyframe = True
            self._on_lost()

    async def close(self) -> None:
        self._video.put(None)
        self._audio.put(None)

    def info(self) -> dict[str, int | float | str | None]:
        return {"track_packets_dropped": self._video.dropped, "track_audio_dropped": self._audio.dropped,
                "keyframes": self.keyframes, "video_packets_skipped": self.video_packets_skipped}


def _to_av(data: bytes, packet: EncodedPacket) -> av.Packet:
    out = av.Packet(data)
    out.pts = out.dts = packet.pts
    out.time_base = packet.time_base
    return out


def _has_sps(annex_b: bytes) -> bool:
    """Whether an H.264 access unit (Annex B: NAL units after 00 00 01 start codes) carries a sequence parameter
    set (NAL type 7)."""
    i = annex_b.find(b"\x00\x00\x01")
    while i != -1 and i + 3 < len(annex_b):
        if annex_b[i + 3] & 0x1F == 7:
            return True
        i = annex_b.find(b"\x00\x00\x01", i + 3)
    return False
