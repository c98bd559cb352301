"""Encode once per codec, fan the packets out: one encode of the picture per video setting and one of the sound
per audio setting, shared by every sink that asks for it.

A sink asks for an EncodingSpec: a video part (VideoSpec) and an audio part (AudioSpec). The stream's
Encoder (one pacer sink) runs one CodecEncoder per distinct part, each in its own thread: a WHEP
viewer (H.264 + Opus) and an RTMP push (H.264 + AAC) with the same H.264 settings (live_video) share
one H.264 encode, and the sound is encoded once as Opus and once as AAC. Its subscribers are the
sinks, each behind its own packet queue, getting the packets of its two codecs. A subscriber starts
at a keyframe of its video codec (one is forced when it joins a running encode) and its timestamps
count from there. One that falls behind loses what was queued for it and resumes at the next
(forced) keyframe, because a decoder cannot use packets after a gap.

The packets are what the codecs make with their headers out of band (global header): H.264 in
Annex B with SPS/PPS in the extradata. The FLV and MP4 muxers turn both into avcC form themselves;
a WebRTC sink puts the SPS/PPS in band before each keyframe (streaming/tracks.py). Every H.264 keyframe carries
the hidden AI label as an SEI message (streaming/sei.py), so all of a stream's outputs have it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TypeVar

import av
import numpy as np
from av.codec.context import Flags
from av.video.frame import PictureType

from engine.types import FPS, SAMPLE_RATE_HZ
from streaming.aigc import aigc_fields, aigc_json
from streaming.fanout import FanOut, Outlet
from streaming.sei import SeiLabel
from streaming.sinks import PacedAudio, PacedFrame, Sink, to_video_frame

log = logging.getLogger(__name__)

LEAVE_TIMEOUT_S = 2.0
RECENT_AUDIO_CHUNKS = 16  # ~0.3 s: the sound handed out ahead of its picture, for an audio codec that starts late
LIVE_GOP_FRAMES = 2 * FPS  # a keyframe every 2 s: what RTMP ingests ask for (YouTube, Twitch: at most 2-4 s)
# A file's H.264 quality (crf) chosen from its picture size when the codec opens (file_crf): the size is the first
# frame's, which a canvas may set.
CRF_BY_SIZE = "by-size"
FILE_CRF, FILE_CRF_MIN = 20, 12
FILE_CRF_FULL_PX = 512 * 512  # from this many pixels up, FILE_CRF
FILE_CRF_PER_HALVING = 2.0  # crf steps down per halving of the pixel count below FILE_CRF_FULL_PX
# A file's chroma is quantised no coarser than FILE_CHROMA_QP (x264's chroma_qp_offset, 0 by default, set from the
# crf). The face mesh reads lips by their colour as much as by their light: at crf 20 x264 smeared anne_helene's lips'
# red over their closed seam (her 4:2:0 chroma), so that the mesh read them 1-2 px apart in silence where the render's
# own chroma read 0.1-0.2 px. At chroma QP 14 (offset -6) her closed share over idle seeds 0-4 rose from 94.3% to 98.5%,
# for 8% more bits. A small picture's file already has a low crf, and its chroma keeps x264's default there:
# hopper_lowres_160 (crf 14) read 99.3% at offset 0, 98.6% at -2 and 97.2% at -6 (the mesh's noise on a 61 px face).
CHROMA_BY_CRF = "by-crf"
FILE_CHROMA_QP = 14


def file_crf(width: int, height: int) -> int:
    """The crf of a file's H.264 at this size. A small portrait's video is watched enlarged (a player scales a
    160x188 render up to its window), so each 16x16 block x264 smooths at crf 20 covers a big share of the face: the
    wrinkles, the glasses' rims, the lips' seam go soft and blocky. Its bits are cheap: the 18 s demo voice on
    hopper_lowres_160 (160x188) takes 63 kbit/s at crf 20, 166 at crf 12, against 142 for the 512x512 astronaut at
    crf 20 (README, "Files"). So below FILE_CRF_FULL_PX the crf drops by FILE_CRF_PER_HALVING per halving of the
    pixel count, down to FILE_CRF_MIN (where x264's gain in picture stops paying for the bits)."""
    px = max(1, width * height)
    if px >= FILE_CRF_FULL_PX:
        return FILE_CRF
    return max(FILE_CRF_MIN, round(FILE_CRF + FILE_CRF_PER_HALVING * math.log2(px / FILE_CRF_FULL_PX)))


# A face narrower than this (px) gets a finer file still, by FILE_CRF_PER_HALVING per halving of its pixel count: its
# lips' closed seam is a pixel or two, which x264 smears at crf 20. The face mesh read anne_helene_sunglasses_small's
# closed lips (an 82 px face in a 400x600 picture, crf 20) apart in runs of 20-40 silent frames, from one idle seed
# to the next 67-100% closed, while her lossless render read 100%: a change to the head's outline elsewhere in the
# picture moved x264's choices, and the lips read apart with them: over idle seeds 0-9 92.0% closed on average (worst
# 75.4%; 96.8% and 93.9% before that change). At crf 17 (this rule) 97.9% (worst 91.1%); 18: 97.8 (83.8); 16: 99.0
# (91.6); for 30% more bits (idle seed 0: 104 -> 136 kbit/s).
FILE_CRF_FULL_FACE_W = 128.0


def face_file_crf(width: int, height: int, face_w_px: float) -> int:
    """The crf of a file's H.264 for pictures of this size showing a face face_w_px wide: file_crf, lower for a
    face under FILE_CRF_FULL_FACE_W (the astronaut's 92 px face 18, anne_helene_sunglasses_small's 82 px 17)."""
    crf = file_crf(width, height)
    if face_w_px >= FILE_CRF_FULL_FACE_W:
        return crf
    by_face = FILE_CRF + 2.0 * FILE_CRF_PER_HALVING * math.log2(max(face_w_px, 1.0) / FILE_CRF_FULL_FACE_W)
    return max(FILE_CRF_MIN, min(crf, round(by_face)))


def file_video_options(crf: int | None = None, preset: str = "veryfast") -> tuple[tuple[str, str], ...]:
    """A file's H.264 settings: crf None chosen from the picture's size when the codec opens (file_crf)."""
    return (("crf", CRF_BY_SIZE if crf is None else str(crf)), ("preset", preset), ("chromaoffset", CHROMA_BY_CRF))


def file_chroma_offset(crf: float) -> int:
    """x264's chroma_qp_offset that keeps a file's chroma at FILE_CHROMA_QP or finer (never above its default, 0)."""
    return min(0, round(FILE_CHROMA_QP - crf))


def video_options(options: Sequence[tuple[str, str]], width: int, height: int) -> dict[str, str]:
    """A video spec's codec options for pictures of this size (CRF_BY_SIZE and CHROMA_BY_CRF resolved)."""
    out = dict(options)
    if out.get("crf") == CRF_BY_SIZE:
        out["crf"] = str(file_crf(width, height))
    if out.get("chromaoffset") == CHROMA_BY_CRF:
        out["chromaoffset"] = str(file_chroma_offset(float(out.get("crf", FILE_CRF))))
    return out


@dataclass(frozen=True)
class VideoSpec:
    """One video encode: sinks whose specs have an equal video part share it."""

    codec: str = "libx264"
    options: tuple[tuple[str, str], ...] = field(default_factory=file_video_options)


@dataclass(frozen=True)
class AudioSpec:
    """One audio encode (mono, 48 kHz): sinks whose specs have an equal audio part share it."""

    codec: str = "aac"
    bit_rate: int = 128_000


@dataclass(frozen=True)
class EncodingSpec:
    """What a sink asks for: a video encode and an audio encode (the picture size is the stream's)."""

    video_codec: str = "libx264"
    video_options: tuple[tuple[str, str], ...] = field(default_factory=file_video_options)
    audio_codec: str = "aac"
    audio_bit_rate: int = 128_000

    @classmethod
    def of(cls, video: VideoSpec, audio: AudioSpec) -> EncodingSpec:
        return cls(video.codec, video.options, audio.codec, audio.bit_rate)

    @property
    def video(self) -> VideoSpec:
        return VideoSpec(self.video_codec, self.video_options)

    @property
    def audio(self) -> AudioSpec:
        return AudioSpec(self.audio_codec, self.audio_bit_rate)


def live_video(bit_rate: int, preset: str = "superfast") -> VideoSpec:
    """H.264 that serves every live output of a stream at once, so they share one encode: WebRTC viewers (constrained
    baseline, which every WebRTC H.264 decoder takes; no B-frames or lookahead: zerolatency; keyframes on request),
    RTMP ingests and recordings (a keyframe every 2 s and none at scene cuts, as platforms ask). The bit rate is
    capped with a quarter second of buffer: a keyframe larger than a WebRTC receiver's UDP buffer is lost whole.
    One thread: x264's threads fight the renderer on a small machine (superfast: ~4 ms a 720x1280 frame)."""
    bps = str(bit_rate)
    return VideoSpec("libx264", (("preset", preset), ("tune", "zerolatency"), ("profile", "baseline"),
                                 ("g", str(LIVE_GOP_FRAMES)), ("keyint_min", str(LIVE_GOP_FRAMES)),
                                 ("sc_threshold", "0"), ("b", bps), ("maxrate", bps), ("bufsize", str(bit_rate // 4)),
                                 ("threads", "1")))


@dataclass(frozen=True)
class EncodedStreams:
    """A subscriber's two codecs, opened: a muxer copies their codec parameters (add_stream_from_template)."""

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
class EncoderMetrics:
    frames_encoded: int = 0
    audio_samples_encoded: int = 0
    audio_samples_filled: int = 0  # silence put where chunks were dropped before the encoder
    keyframes_forced: int = 0
    keyframes_requested: int = 0  # by subscribers whose decoder lost its place (a WebRTC viewer's PLI/FIR)
    packets: int = 0
    subscribers: int = 0
    cpu_s: float = 0.0  # the codec's thread's CPU time: what this encode costs, shared by all its subscribers


@dataclass
class _Raw:
    """A codec's output, before it is addressed to a subscriber."""

    codec: CodecEncoder
    data: bytes
    pts: int | None
    dts: int | None
    duration: int
    time_base: fractions.Fraction
    is_keyframe: bool


R = TypeVar("R")


class CodecEncoder:
    """One encode of the stream's picture or sound, in a thread of its own (codecs are not thread-safe; two codecs
    run side by side on two cores)."""

    def __init__(self, kind: str, spec: VideoSpec | AudioSpec, name: str, aigc: str | None = None) -> None:
        self.kind = kind  # "video" or "audio"
        self.aigc = aigc  # the AIGC JSON for an H.264 encode's keyframes (streaming/sei.py); None: none
        self.sei: SeiLabel | None = None  # built when the codec opens (the framing is its extradata's)
        self.spec = spec
        self.name = name
        self.metrics = EncoderMetrics()
        self.stream: av.VideoStream | av.AudioStream | None = None  # opened (video: at its first frame)
        self.force_keyframe = False
        self.started = False  # audio: has taken its first chunk (its first packets are for who was there then)
        self.frames_taken = 0  # video: frames handed to it (a leaving subscriber is owed those still in its delay)
        self.last_frame_taken: int | None = None
        self._container: av.container.OutputContainer | None = None
        self._next_sample: int | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"encode-{spec.codec}")
        self._retired = False

    def __repr__(self) -> str:
        return f"CodecEncoder[{self.name}]"

    def request_keyframe(self) -> None:
        """The next frame is a keyframe (a subscriber's decoder lost its place: a WebRTC viewer's PLI or FIR).
        Callers rate-limit it: every request is a keyframe for all subscribers of this codec."""
        self.metrics.keyframes_requested += 1
        self.force_keyframe = True

    def run(self, job: Callable[..., R], *args: object) -> asyncio.Future[R]:
        """The job in the codec's thread, submitted now (so a codec retired later still finishes it first)."""
        return asyncio.get_running_loop().run_in_executor(self._executor, self._timed, job, *args)

    def _timed(self, job: Callable[..., R], *args: object) -> R:
        started = time.thread_time()
        try:
            return job(*args)
        finally:
            self.metrics.cpu_s += time.thread_time() - started

    def retire(self) -> None:
        """No subscriber is left, or the stream ended: close the codec after whatever it is encoding now (once)."""
        if not self._retired:
            self._retired = True
            self._executor.submit(self._close)
            self._executor.shutdown(wait=False)

    # ---- in its thread -----------------------------------------------------------------------
    def _open(self, width: int = 0, height: int = 0) -> None:
        # The null muxer writes nothing; its stream gives the opened codec and its parameters.
        container = av.open("-", mode="w", format="null")
        if isinstance(self.spec, VideoSpec):
            stream = container.add_stream(self.spec.codec, rate=FPS)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = video_options(self.spec.options, width, height)
            stream.codec_context.time_base = fractions.Fraction(1, FPS)
        else:
            stream = container.add_stream(self.spec.codec, rate=SAMPLE_RATE_HZ)
            stream.layout = "mono"
            stream.bit_rate = self.spec.bit_rate
        stream.codec_context.flags |= Flags.global_header  # codec headers out of band, as MP4 and FLV want them
        container.start_encoding()
        self._container, self.stream = container, stream
        if self.kind == "video" and self.aigc and stream.codec_context.codec.canonical_name == "h264":
            self.sei = SeiLabel(self.aigc, stream.codec_context.extradata)

    def open_audio(self) -> None:
        if self.stream is None:
            self._open()

    def encode_video(self, frames: list[PacedFrame], keyframe: bool) -> list[_Raw]:
        out: list[_Raw] = []
        for frame in frames:
            if self.stream is None:
                height = frame.picture.shape[0] * 2 // 3 if frame.is_i420 else frame.picture.shape[0]
                self._open(frame.picture.shape[1], height)
            vf = to_video_frame(frame.picture)
            vf.pts = frame.frame_index
            vf.time_base = fractions.Fraction(1, FPS)
            if keyframe:
                vf.pict_type = PictureType.I
                self.metrics.keyframes_forced += 1
                keyframe = False
            self.metrics.frames_encoded += 1
            assert self.stream is not None
            out += self._raw(self.stream.encode(vf))
        return out

    def encode_audio(self, chunks: list[PacedAudio]) -> list[_Raw]:
        self.open_audio()
        out: list[_Raw] = []
        run: list[PacedAudio] = []  # consecutive chunks: one call to the codec
        for chunk in [*chunks, None]:
            if chunk is not None and (not run or chunk.start_sample == run[-1].start_sample + len(run[-1].samples)):
                run.append(chunk)
                continue
            if run:
                out += self._encode_run(run)
            run = [chunk] if chunk is not None else []
        return out

    def _encode_run(self, chunks: list[PacedAudio]) -> list[_Raw]:
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
        assert self.stream is not None
        return self._raw(self.stream.encode(af))

    def flush(self) -> list[_Raw]:
        """What the codec still holds (its delay), and closed."""
        out = self._raw(self.stream.encode(None)) if self.stream is not None else []
        self._close()
        return out

    def _close(self) -> None:
        if self._container is not None:
            container, self._container = self._container, None
            with contextlib.suppress(Exception):  # a codec that never took anything has nothing to write
                container.close()

    def _raw(self, packets: list[av.Packet]) -> list[_Raw]:
        sei = self.sei
        return [_Raw(self, sei.insert(bytes(p)) if sei is not None and p.is_keyframe else bytes(p), p.pts, p.dts,
                     int(p.duration or 0), p.time_base, p.is_keyframe)
                for p in packets]


@dataclass
class _Subscriber:
    """A sink of the encoder: its codecs, and where its stream starts (at a keyframe forced for it, or the codec's
    first frame)."""

    video: CodecEncoder
    audio: CodecEncoder
    founding_audio: bool = False  # there when its audio codec took its first chunk: every audio packet is for it
    origin_s: fractions.Fraction | None = None  # media time of its first frame: its timestamps count from here
    video_from_s: fractions.Fraction | None = None  # its video starts at a keyframe at or after this
    waiting_for_keyframe: bool = True
    frames_before: int = 0  # frames its video codec had taken before its first
    video_packets: int = 0  # delivered to it
    streams: EncodedStreams | None = None
    # Leaving: the frames given to the codec until then are still in its delay; it gets those and no more, and
    # its sound up to their end (the audio codec's delay and the sound handed out after the picture).
    last_frame: int | None = None
    owed_frames: int = 0
    sound_done: bool = False
    left: asyncio.Event = field(default_factory=asyncio.Event)


Spec = VideoSpec | AudioSpec


class Encoder(Sink):
    """The stream's encoding: one CodecEncoder per distinct video and audio spec among its subscribers (a pacer sink).

    All codecs take each batch together (each in its own thread): a slow codec holds up the others'
    subscribers too, which on a small machine sharing its cores is so anyway."""

    name = "encoder"
    queue_size = 48  # ~0.5 s of pictures and sound

    def __init__(self, subscribers: FanOut, on_idle: Callable[[Encoder], None]) -> None:
        self.live = subscribers.live
        self.subscribers = subscribers  # the sinks that take its packets
        self.codecs: dict[Spec, CodecEncoder] = {}
        self._subs: dict[Outlet, _Subscriber] = {}
        self._on_idle = on_idle
        self._recent_audio: deque[PacedAudio] = deque(maxlen=RECENT_AUDIO_CHUNKS)
        self._default_aigc = aigc_json(aigc_fields())  # a stream nobody disclosed still carries the hidden label

    @property
    def encoders(self) -> list[CodecEncoder]:
        return list(self.codecs.values())

    def info(self) -> dict[str, int | float | str | None]:
        codecs = self.encoders
        return {"subscribers": len(self._subs), "video_encoders": sum(c.kind == "video" for c in codecs),
                "audio_encoders": sum(c.kind == "audio" for c in codecs)}

    def codec_metrics(self) -> dict[str, dict[str, int | str | None]]:
        """Each codec's counters, by its name (encoder_libx264, encoder_aac, ...), for the stream's sink metrics."""
        return {c.name: {"kind": c.kind, **asdict(c.metrics)} for c in self.encoders}

    def subscribe(self, sink: Sink) -> None:
        assert sink.encoding is not None
        video = self._codec("video", sink.encoding.video)
        audio = self._codec("audio", sink.encoding.audio)
        outlet = self.subscribers.attach(sink, on_failed=self._subscriber_failed)
        self._subs[outlet] = _Subscriber(video, audio)
        video.force_keyframe = video.force_keyframe or video.stream is not None  # a joiner starts at once
        self._count()

    def _codec(self, kind: str, spec: Spec) -> CodecEncoder:
        codec = self.codecs.get(spec)
        if codec is None:
            taken = {c.name for c in self.codecs.values()}
            name, n = f"encoder_{spec.codec}", 1
            while name in taken:
                n += 1
                name = f"encoder_{spec.codec}_{n}"
            codec = self.codecs[spec] = CodecEncoder(kind, spec, name, aigc=self.hidden_label())
        return codec

    def hidden_label(self) -> str:
        """The AIGC JSON in its H.264 keyframes: the stream's (set by streaming/provenance.py), else a default one."""
        stream = self.subscribers.parent
        return (stream.aigc if stream is not None else None) or self._default_aigc

    def _count(self) -> None:
        for codec in self.codecs.values():
            codec.metrics.subscribers = sum(codec in (s.video, s.audio) for s in self._subs.values())

    def _forget(self, outlet: Outlet) -> None:
        """The subscriber is gone: codecs nobody else takes are closed; with no subscribers, the encoder goes."""
        self._subs.pop(outlet, None)
        used = {c for s in self._subs.values() for c in (s.video, s.audio)}
        for spec, codec in list(self.codecs.items()):
            if codec not in used:
                del self.codecs[spec]
                codec.retire()
        self._count()
        if not self._subs:
            self._on_idle(self)

    async def unsubscribe(self, sink: Sink) -> bool:
        """Its file ends with the last frame encoded before now, so picture and sound end together: the frames
        still in the codec's delay (lookahead, B-frames) come out first (within LEAVE_TIMEOUT_S)."""
        outlet = next((o for o in self._subs if o.sink is sink), None)
        if outlet is None:
            return False
        sub = self._subs[outlet]
        if sub.origin_s is not None and sub.video.last_frame_taken is not None:
            sub.last_frame = sub.video.last_frame_taken
            sub.owed_frames = sub.video.frames_taken - sub.frames_before
            self._check_left(sub)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.left.wait(), LEAVE_TIMEOUT_S)
        self._forget(outlet)
        await self.subscribers.remove(sink, drain=True)
        return True

    @staticmethod
    def _check_left(sub: _Subscriber) -> None:
        if sub.last_frame is not None and sub.video_packets >= sub.owed_frames and sub.sound_done:
            sub.left.set()

    def _subscriber_failed(self, outlet: Outlet) -> None:
        self._forget(outlet)

    # ---- as a sink ---------------------------------------------------------------------------
    async def on_batch(self, items: Sequence[PacedFrame | PacedAudio | EncodedPacket]) -> None:
        if not self._subs:
            return
        frames = [item for item in items if isinstance(item, PacedFrame)]
        chunks = [item for item in items if isinstance(item, PacedAudio)]
        if frames:  # subscribers not started yet start with this frame (a keyframe of their video codec)
            first = fractions.Fraction(frames[0].frame_index, FPS)
            for sub in self._subs.values():
                if sub.origin_s is None:
                    sub.origin_s = sub.video_from_s = first
                    sub.frames_before = sub.video.frames_taken
        jobs = []
        for codec in self.encoders:
            if codec.kind == "video":
                if not frames:
                    continue
                keyframe, codec.force_keyframe = codec.force_keyframe, False
                codec.frames_taken += len(frames)
                codec.last_frame_taken = frames[-1].frame_index
                jobs.append(codec.run(codec.encode_video, frames, keyframe))
            else:
                jobs.append(codec.run(codec.encode_audio, self._audio_for(codec, chunks)))
        self._recent_audio.extend(chunks)
        outputs = await asyncio.gather(*jobs)
        await self._fan_out([raw for raws in outputs for raw in raws])

    def _audio_for(self, codec: CodecEncoder, chunks: list[PacedAudio]) -> list[PacedAudio]:
        """An audio codec starts with the chunk that holds its earliest started subscriber's first frame (the sound
        may have been handed out ahead of that picture: it is taken from the recent chunks); who has started by
        then gets all its packets (the AAC encoder's priming included, which a muxer trims)."""
        if codec.started:
            return chunks
        subs = [s for s in self._subs.values() if s.audio is codec and s.origin_s is not None]
        if not subs:
            return []
        origin = min(s.origin_s for s in subs if s.origin_s is not None) * SAMPLE_RATE_HZ
        chunks = [c for c in [*self._recent_audio, *chunks] if c.start_sample + len(c.samples) > origin]
        if chunks:
            codec.started = True
            for sub in subs:
                sub.founding_audio = True
        return chunks

    async def close(self) -> None:
        try:
            outputs = await asyncio.gather(*(codec.run(codec.flush) for codec in self.encoders))
            await self._fan_out([raw for raws in outputs for raw in raws])
        finally:
            await self.subscribers.aclose(drain=True)
            for codec in self.encoders:  # kept for their counters
                codec.retire()

    async def _fan_out(self, raws: list[_Raw]) -> None:
        for raw in raws:
            raw.codec.metrics.packets += 1
            t_s = raw.pts * raw.time_base if raw.pts is not None else None
            video = raw.codec.kind == "video"
            for outlet, sub in list(self._subs.items()):
                if sub.origin_s is None or raw.codec is not (sub.video if video else sub.audio):
                    continue
                if video and sub.waiting_for_keyframe:
                    # The codec's delay may bring packets of frames from before it joined, a keyframe even.
                    early = sub.video_from_s is not None and (t_s is None or t_s < sub.video_from_s)
                    if not raw.is_keyframe or early:
                        continue
                    sub.waiting_for_keyframe = False
                if not video and not sub.founding_audio and (t_s is None or t_s < sub.origin_s):
                    continue
                if sub.last_frame is not None and (t_s is None or t_s >= fractions.Fraction(sub.last_frame + 1, FPS)):
                    if not video:  # leaving: its sound is complete
                        sub.sound_done = True
                        self._check_left(sub)
                    continue  # leaving: nothing after its last frame
                if sub.streams is None:
                    assert sub.video.stream is not None and sub.audio.stream is not None
                    sub.streams = EncodedStreams(sub.video.stream, sub.audio.stream)  # type: ignore[arg-type]
                shift = round(sub.origin_s / raw.time_base)
                packet = EncodedPacket("video" if video else "audio", raw.data,
                                       None if raw.pts is None else raw.pts - shift,
                                       None if raw.dts is None else raw.dts - shift, raw.duration, raw.time_base,
                                       raw.is_keyframe, sub.streams)
                if video:
                    if not sub.video_packets and t_s is not None:  # the stream's frame its pictures start at
                        outlet.metrics.first_frame_index = round(t_s * FPS)
                    sub.video_packets += 1
                    self._check_left(sub)
                if not self.live:
                    await outlet.put(packet)
                elif outlet.offer(packet):
                    outlet.clear()  # packets after a gap cannot be decoded: resume at the next keyframe, forced
                    sub.waiting_for_keyframe, sub.video_from_s = True, None
                    sub.video.force_keyframe = True
