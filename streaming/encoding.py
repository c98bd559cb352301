"""Encode once, fan the packets out: one encoder per distinct EncodingSpec, shared by the sinks that ask for it.

An Encoder is itself a sink of the pacer (pictures and sound in, its own queue and task); its
subscribers are sinks with `encoding` set, each behind its own packet queue. A subscriber starts at a
keyframe (one is forced when it joins a running encoder) and its timestamps count from there. One
that falls behind loses what was queued for it and resumes at the next (forced) keyframe, because a
decoder cannot use packets after a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import av
import numpy as np
from av.codec.context import Flags
from av.video.frame import PictureType

from engine.types import FPS, SAMPLE_RATE_HZ
from streaming.fanout import FanOut, Outlet
from streaming.sinks import PacedAudio, PacedFrame, Sink, to_video_frame

log = logging.getLogger(__name__)

LEAVE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class EncodingSpec:
    """Codecs and their settings; sinks with equal specs share one encoder (the picture size is the stream's)."""

    video_codec: str = "libx264"
    video_options: tuple[tuple[str, str], ...] = (("crf", "20"), ("preset", "veryfast"))
    audio_codec: str = "aac"
    audio_bit_rate: int = 128_000


@dataclass(frozen=True)
class EncodedStreams:
    """The encoder's streams, opened: a muxer copies their codec parameters (add_stream_from_template)."""

    video: av.VideoStream
    audio: av.AudioStream


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    kind: str  # "video" or "audio"
    data: bytes
    pts: int | None  # in time_base, counted from the subscriber's first keyframe
    dts: int | None
    duration: int
    time_base: fractions.Fraction
    is_keyframe: bool
    streams: EncodedStreams

    def to_av(self, stream: av.stream.Stream) -> av.Packet:
        """A fresh av.Packet for one muxer stream (muxing consumes a packet, so sinks never share one)."""
        packet = av.Packet(self.data)
        packet.pts, packet.dts, packet.duration = self.pts, self.dts, self.duration
        packet.time_base = self.time_base
        packet.is_keyframe = self.is_keyframe
        packet.stream = stream
        return packet

    def __str__(self) -> str:
        return f"EncodedPacket[{self.kind} pts={self.pts}{' key' if self.is_keyframe else ''}]"


@dataclass
class _Subscriber:
    """Where a subscriber's stream starts: at the encoder's first frame (founding), or at a keyframe forced for it."""

    founding: bool  # there from the encoder's first frame: every packet is for it (AAC priming included)
    origin_s: fractions.Fraction | None = None  # media time of its first frame: its timestamps count from here
    video_from_s: fractions.Fraction | None = None  # its video starts at a keyframe at or after this
    waiting_for_keyframe: bool = True
    frames_before: int = 0  # frames the encoder had taken before its first
    video_packets: int = 0  # delivered to it
    # Leaving: the frames given to the encoder until then are still in its delay; it gets those and no more.
    last_frame: int | None = None
    owed_frames: int = 0
    left: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Raw:
    """An encoder output, before it is addressed to a subscriber."""

    kind: str
    data: bytes
    pts: int | None
    dts: int | None
    duration: int
    time_base: fractions.Fraction
    is_keyframe: bool


@dataclass
class EncoderMetrics:
    frames_encoded: int = 0
    audio_samples_encoded: int = 0
    audio_samples_filled: int = 0  # silence put where chunks were dropped before the encoder
    keyframes_forced: int = 0
    keyframes_requested: int = 0  # by subscribers whose decoder lost its place (a WebRTC viewer's PLI/FIR)
    packets: int = 0
    subscribers: int = 0


class Encoder(Sink):
    """One encode of the stream for every subscriber that asks for this spec."""

    queue_size = 48  # ~0.5 s of pictures and sound

    def __init__(self, spec: EncodingSpec, subscribers: FanOut, on_idle: Callable[[Encoder], None]) -> None:
        self.spec = spec
        self.name = f"encoder_{spec.video_codec}_{spec.audio_codec}"
        self.live = subscribers.live
        self.metrics = EncoderMetrics()
        self.subscribers = subscribers  # the sinks that take its packets
        self._subs: dict[Outlet, _Subscriber] = {}
        self._on_idle = on_idle
        self._container: av.container.OutputContainer | None = None
        self._streams: EncodedStreams | None = None
        self._force_keyframe = False
        self._frames_taken = 0
        self._last_frame_taken: int | None = None
        self._next_sample: int | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")  # codecs are not thread-safe

    def info(self) -> dict[str, int | float | str | None]:
        return asdict(self.metrics)

    def subscribe(self, sink: Sink) -> None:
        outlet = self.subscribers.attach(sink, on_failed=self._subscriber_failed)
        self._subs[outlet] = _Subscriber(founding=self._streams is None)
        self._force_keyframe = self._streams is not None  # a joiner of a running encode starts at once
        self.metrics.subscribers = len(self._subs)

    def request_keyframe(self) -> None:
        """The next frame is a keyframe (a subscriber's decoder lost its place: a WebRTC viewer's PLI or FIR).
        Callers rate-limit it: every request is a keyframe for all subscribers."""
        self.metrics.keyframes_requested += 1
        self._force_keyframe = True

    async def unsubscribe(self, sink: Sink) -> bool:
        """Its file ends with the last frame encoded before now, so picture and sound end together: the frames
        still in the encoder's delay (lookahead, B-frames) come out first (within LEAVE_TIMEOUT_S)."""
        outlet = next((o for o in self._subs if o.sink is sink), None)
        if outlet is None:
            return False
        sub = self._subs[outlet]
        if sub.origin_s is not None and self._last_frame_taken is not None:
            sub.last_frame = self._last_frame_taken
            sub.owed_frames = self._frames_taken - sub.frames_before
            self._check_left(sub)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.left.wait(), LEAVE_TIMEOUT_S)
        self._subs.pop(outlet, None)
        self.metrics.subscribers = len(self._subs)
        await self.subscribers.remove(sink, drain=True)
        if not self._subs:
            self._on_idle(self)
        return True

    @staticmethod
    def _check_left(sub: _Subscriber) -> None:
        if sub.last_frame is not None and sub.video_packets >= sub.owed_frames:
            sub.left.set()

    def _subscriber_failed(self, outlet: Outlet) -> None:
        self._subs.pop(outlet, None)
        self.metrics.subscribers = len(self._subs)
        if not self._subs:
            self._on_idle(self)

    # ---- encoding (in this encoder's own thread) ---------------------------------------------
    def _open(self, width: int, height: int) -> EncodedStreams:
        # The null muxer writes nothing; its streams give the opened codecs and their parameters.
        container = av.open("-", mode="w", format="null")
        video = container.add_stream(self.spec.video_codec, rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = dict(self.spec.video_options)
        video.codec_context.time_base = fractions.Fraction(1, FPS)
        audio = container.add_stream(self.spec.audio_codec, rate=SAMPLE_RATE_HZ)
        audio.layout = "mono"
        audio.bit_rate = self.spec.audio_bit_rate
        for stream in (video, audio):  # codec headers out of band, as MP4 and FLV want them
            stream.codec_context.flags |= Flags.global_header
        container.start_encoding()
        self._container = container
        return EncodedStreams(video, audio)

    def _encode_video(self, frame: PacedFrame, keyframe: bool) -> list[_Raw]:
        self.metrics.keyframes_forced += int(keyframe)
        if self._streams is None:
            height = frame.picture.shape[0] * 2 // 3 if frame.is_i420 else frame.picture.shape[0]
            self._streams = self._open(frame.picture.shape[1], height)
        vf = to_video_frame(frame.picture)
        vf.pts = frame.frame_index
        vf.time_base = fractions.Fraction(1, FPS)
        if keyframe:
            vf.pict_type = PictureType.I
        self.metrics.frames_encoded += 1
        return self._raw("video", self._streams.video.encode(vf))

    def _encode_audio(self, chunks: list[PacedAudio]) -> list[_Raw]:
        if self._streams is None:  # nobody can start before the first picture (a keyframe)
            return []
        samples = np.concatenate([c.samples for c in chunks])
        start = chunks[0].start_sample
        if self._next_sample is not None and start != self._next_sample:
            # The AAC encoder needs contiguous timestamps: a dropped chunk becomes silence, an overlap is cut.
            gap = start - self._next_sample
            if gap > 0:
                samples = np.concatenate([np.zeros(gap, np.float32), samples])
                self.metrics.audio_samples_filled += gap
            else:
                samples = samples[-gap:]
            start = self._next_sample
        if not len(samples):
            return []
        af = av.AudioFrame.from_ndarray(samples.astype(np.float32).reshape(1, -1), format="flt", layout="mono")
        af.sample_rate = SAMPLE_RATE_HZ
        af.pts = start
        af.time_base = fractions.Fraction(1, SAMPLE_RATE_HZ)
        self._next_sample = start + len(samples)
        self.metrics.audio_samples_encoded += len(samples)
        return self._raw("audio", self._streams.audio.encode(af))

    def _flush(self) -> list[_Raw]:
        if self._streams is None:
            return []
        video, audio = self._streams.video.encode(None), self._streams.audio.encode(None)
        out = self._raw("video", video) + self._raw("audio", audio)
        assert self._container is not None
        self._container.close()
        return out

    @staticmethod
    def _raw(kind: str, packets: list[av.Packet]) -> list[_Raw]:
        return [_Raw(kind, bytes(p), p.pts, p.dts, int(p.duration or 0), p.time_base, p.is_keyframe) for p in packets]

    # ---- as a sink ---------------------------------------------------------------------------
    async def on_batch(self, items: Sequence[PacedFrame | PacedAudio | EncodedPacket]) -> None:
        if not self._subs:
            return
        first = next((item.frame_index for item in items if isinstance(item, PacedFrame)), None)
        keyframe = self._force_keyframe and first is not None
        if first is not None:  # subscribers not started yet start with this frame (a keyframe)
            self._force_keyframe = False
            for sub in self._subs.values():
                if sub.origin_s is None:
                    sub.origin_s = sub.video_from_s = fractions.Fraction(first, FPS)
                    sub.frames_before = self._frames_taken
            frames = [item.frame_index for item in items if isinstance(item, PacedFrame)]
            self._frames_taken += len(frames)
            self._last_frame_taken = frames[-1]
        loop = asyncio.get_running_loop()
        await self._fan_out(await loop.run_in_executor(self._executor, self._encode, items, keyframe))

    def _encode(self, items: Sequence[PacedFrame | PacedAudio | EncodedPacket], keyframe: bool) -> list[_Raw]:
        out: list[_Raw] = []
        audio: list[PacedAudio] = []  # consecutive chunks: one call to the audio encoder
        for item in [*items, None]:
            if isinstance(item, PacedAudio) and (not audio or item.start_sample == audio[-1].start_sample + len(
                    audio[-1].samples)):
                audio.append(item)
                continue
            if audio:
                out += self._encode_audio(audio)
                audio = []
            if isinstance(item, PacedFrame):
                out += self._encode_video(item, keyframe)
                keyframe = False
            elif isinstance(item, PacedAudio):  # after a gap
                audio = [item]
        return out

    async def close(self) -> None:
        try:
            await self._fan_out(await asyncio.get_running_loop().run_in_executor(self._executor, self._flush))
        finally:
            await self.subscribers.aclose(drain=True)
            self._executor.shutdown(wait=False)

    async def _fan_out(self, raws: list[_Raw]) -> None:
        assert self._streams is not None or not raws
        for raw in raws:
            self.metrics.packets += 1
            t_s = raw.pts * raw.time_base if raw.pts is not None else None
            for outlet, sub in list(self._subs.items()):
                if sub.origin_s is None:
                    continue
                if raw.kind == "video" and sub.waiting_for_keyframe:
                    # The encoder's delay may bring packets of frames from before it joined, a keyframe even.
                    early = sub.video_from_s is not None and (t_s is None or t_s < sub.video_from_s)
                    if not raw.is_keyframe or early:
                        continue
                    sub.waiting_for_keyframe = False
                if raw.kind == "audio" and not sub.founding and (t_s is None or t_s < sub.origin_s):
                    continue
                if sub.last_frame is not None and (t_s is None or t_s >= fractions.Fraction(sub.last_frame + 1, FPS)):
                    continue  # leaving: nothing after its last frame
                assert self._streams is not None
                shift = round(sub.origin_s / raw.time_base)
                packet = EncodedPacket(raw.kind, raw.data, None if raw.pts is None else raw.pts - shift,
                                       None if raw.dts is None else raw.dts - shift, raw.duration, raw.time_base,
                                       raw.is_keyframe, self._streams)
                if raw.kind == "video":
                    sub.video_packets += 1
                    self._check_left(sub)
                if not self.live:
                    await outlet.put(packet)
                elif outlet.offer(packet):
                    outlet.clear()  # packets after a gap cannot be decoded: resume at the next keyframe, forced
                    sub.waiting_for_keyframe, sub.video_from_s = True, None
                    self._force_keyframe = True
