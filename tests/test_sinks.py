"""File sinks and shared encoders: sinks that ask for the same codec settings share one encode per codec."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import av
import numpy as np

from engine.config import EngineConfig
from engine.generator import prepare_avatar
from engine.session import AvatarSession
from streaming.egress_file import Mp4Sink, render_to_file
from streaming.encoding import (
    FILE_CHROMA_QP,
    FILE_CRF,
    FILE_CRF_FULL_FACE_W,
    FILE_CRF_MIN,
    AudioSpec,
    CodecEncoder,
    EncodingSpec,
    face_file_crf,
    file_chroma_offset,
    file_crf,
    live_video,
)
from streaming.sources import FileSource, PushedAudio
from streaming.stream import AvatarStream
from tests.conftest import write_wav
from tests.test_session import avatar, speechlike


def read_back(path: Path) -> tuple[list[bytes], int, float, float, bool]:
    """(video packets, decoded frames, video seconds, audio seconds, first video packet is a keyframe)."""
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        packets = [p for p in c.demux(v) if p.size]
        video_s, audio_s = float(v.duration * v.time_base), float(a.duration * a.time_base)
    with av.open(str(path)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    return [bytes(p) for p in packets], frames, video_s, audio_s, packets[0].is_keyframe


def test_two_mp4_sinks_with_the_same_settings_share_one_encode(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "in.wav", speechlike(2.0))

    async def render() -> tuple[AvatarStream, list[CodecEncoder]]:
        stream = AvatarStream(AvatarSession(avatar(), EngineConfig(), live=False, session_id="files"))
        for name, crf in (("a", 20), ("b", 20), ("c", 30)):
            stream.add_sink(Mp4Sink(tmp_path / f"{name}.mp4", crf=crf))
        encoders = stream.pacer.encoders  # the stream lets them go when it ends
        await stream.start()
        stream.add_source(FileSource(wav))
        await asyncio.wait_for(stream.wait(), 120)
        await stream.close()
        return stream, encoders

    stream, encoders = asyncio.run(render())
    video = [e for e in encoders if e.kind == "video"]
    [audio] = [e for e in encoders if e.kind == "audio"]  # the three ask for the same AAC: one encode of the sound
    assert len(video) == 2, "one video encoder per distinct setting"
    assert sorted((e.metrics.subscribers, e.metrics.frames_encoded) for e in video) == [(1, 96), (2, 96)], (
        "the two sinks with the same settings did not share one encode of each frame")
    assert audio.metrics.subscribers == 3 and audio.metrics.audio_samples_encoded == 2 * 48000
    a, b, c = (read_back(tmp_path / f"{n}.mp4") for n in "abc")
    assert a[0] == b[0], "shared packets, yet the files differ"
    assert a[0] != c[0], "different settings, yet the same packets"
    for packets, frames, video_s, audio_s, key_first in (a, c):
        assert frames == len(packets) == 96 and key_first
        assert abs(video_s - 2.0) <= 1 / 48 and abs(video_s - audio_s) <= 1 / 48
    metrics = stream.pacer.sinks.sink_metrics()
    assert metrics["mp4"]["packets"] == metrics["mp4_2"]["packets"] > 96 and metrics["mp4"]["dropped"] == 0


def x264_setting(path: Path, name: str) -> float:
    """A setting x264 encoded the file with, from the settings it writes into its first keyframe (an SEI)."""
    with av.open(str(path)) as c:
        first = bytes(next(p for p in c.demux(video=0) if p.size))
    found = re.search(rb" " + name.encode() + rb"=(-?[0-9.]+)", first)
    assert found, f"no x264 {name} in the first packet"
    return float(found.group(1))


def x264_crf(path: Path) -> float:
    return x264_setting(path, "crf")


def test_a_files_crf_drops_below_512x512_pixels_and_stays_within_its_bounds() -> None:
    assert file_crf(512, 512) == file_crf(1280, 720) == file_crf(720, 1280) == FILE_CRF
    sizes = [(64, 64), (160, 188), (256, 256), (300, 377), (400, 600), (512, 512)]
    crfs = [file_crf(w, h) for w, h in sizes]
    assert crfs == sorted(crfs) and FILE_CRF_MIN <= crfs[0] < crfs[1] < FILE_CRF, crfs
    assert file_crf(160, 188) <= 14, "hopper_lowres_160's render at its own size: visibly soft at crf 16 and up"


def test_a_small_face_makes_a_files_crf_lower_than_its_pictures(tmp_path: Path) -> None:
    """A face under FILE_CRF_FULL_FACE_W px wide: its lips' closed seam is a pixel or two, which x264 smears at crf 20
    (the face mesh then reads the lips apart). The astronaut's 92 px face renders at 18, anne_helene's 82 px at 17."""
    assert face_file_crf(512, 512, FILE_CRF_FULL_FACE_W) == face_file_crf(512, 512, 400.0) == FILE_CRF
    assert face_file_crf(512, 512, 92.0) == 18 and face_file_crf(400, 600, 82.0) == 17
    assert face_file_crf(160, 188, 61.0) == file_crf(160, 188), "the picture's own crf is lower still"
    assert face_file_crf(1280, 720, 8.0) == FILE_CRF_MIN
    small = avatar()  # the astronaut at 512x512
    face_w = float(np.ptp(small.landmarks[:, 0]))
    assert face_w < FILE_CRF_FULL_FACE_W
    out = tmp_path / "render.mp4"
    asyncio.run(render_to_file(small, write_wav(tmp_path / "in.wav", speechlike(0.3)), out, EngineConfig()))
    assert x264_crf(out) == face_file_crf(*small.size, face_w) < file_crf(*small.size), x264_crf(out)
    assert x264_setting(out, "chroma_qp_offset") == file_chroma_offset(face_file_crf(*small.size, face_w))


def test_a_small_files_default_crf_is_its_sizes_and_a_given_crf_is_kept(tmp_path: Path) -> None:
    small = prepare_avatar(Path(__file__).parent / "data" / "portraits" / "hopper_lowres_160.jpg")  # 160x188
    wav = write_wav(tmp_path / "in.wav", speechlike(0.5))

    async def render() -> None:
        stream = AvatarStream(AvatarSession(small, EngineConfig(), live=False, session_id="small"))
        stream.add_sink(Mp4Sink(tmp_path / "default.mp4"))
        stream.add_sink(Mp4Sink(tmp_path / "given.mp4", crf=FILE_CRF))
        await stream.start()
        stream.add_source(FileSource(wav))
        await asyncio.wait_for(stream.wait(), 120)
        await stream.close()

    asyncio.run(render())
    with av.open(str(tmp_path / "default.mp4")) as c:
        size = (c.streams.video[0].width, c.streams.video[0].height)
    assert size == small.size and file_crf(*size) < FILE_CRF
    assert x264_crf(tmp_path / "default.mp4") == file_crf(*size)
    assert x264_crf(tmp_path / "given.mp4") == FILE_CRF
    # Both keep their chroma at FILE_CHROMA_QP or finer (the lips' colour at a closed seam), whatever their crf.
    for name, crf in (("default.mp4", file_crf(*size)), ("given.mp4", FILE_CRF)):
        assert x264_setting(tmp_path / name, "chroma_qp_offset") == file_chroma_offset(crf)
    assert file_chroma_offset(FILE_CRF) == FILE_CHROMA_QP - FILE_CRF < 0 and file_chroma_offset(FILE_CHROMA_QP) == 0


def test_an_mp4_sink_joining_a_live_stream_starts_at_a_forced_keyframe(tmp_path: Path) -> None:
    out = tmp_path / "joined.mp4"

    async def record() -> tuple[int, int]:
        stream = AvatarStream(AvatarSession(avatar(), EngineConfig(), live=True, session_id="rec"))
        first = Mp4Sink(tmp_path / "first.mp4")  # encoding from the start: the joiner shares its encoder
        stream.add_sink(first)
        await stream.start()
        pushed = PushedAudio()
        stream.add_source(pushed)
        pushed.push(speechlike(4.0), 48000)
        await asyncio.sleep(1.0)
        joiner = Mp4Sink(out)
        stream.add_sink(joiner)
        await asyncio.sleep(2.0)
        await stream.remove_sink(joiner)  # finishes its file; the other sink goes on
        [encoder] = [e for e in stream.pacer.encoders if e.kind == "video"]
        forced, subscribers = encoder.metrics.keyframes_forced, encoder.metrics.subscribers
        await stream.close()
        return forced, subscribers

    forced, subscribers = asyncio.run(record())
    assert forced >= 1 and subscribers == 1
    packets, frames, video_s, audio_s, key_first = read_back(out)
    assert key_first, "the joiner's file does not start at a keyframe"
    assert frames == len(packets) and abs(frames - 96) <= 12, f"{frames} frames for ~2 s"
    assert abs(video_s - frames / 48) <= 2 / 48, "not 48 fps"
    assert abs(audio_s - video_s) <= 2 / 48, f"audio {audio_s:.3f} s vs video {video_s:.3f} s: they do not end together"
    with av.open(str(out)) as c:
        sound = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    assert np.sqrt(np.mean(sound**2)) > 0.03, "the recording has no sound"


def test_a_sink_joining_with_another_sound_codec_shares_the_picture_and_gets_its_sound_from_its_first_frame(
        tmp_path: Path) -> None:
    """A live stream's WebRTC-style sink (H.264 + Opus) and a recording joining later (the same H.264 + AAC, as an
    RTMP push or a recording added to a watched stream): one H.264 encode, and a new AAC encode whose sound starts
    with the recording's first frame."""
    video = live_video(1_500_000)
    opus = Mp4Sink(tmp_path / "opus.mp4", encoding=EncodingSpec.of(video, AudioSpec("libopus", 64_000)))
    out = tmp_path / "aac.mp4"

    async def record() -> list[tuple[str, str, int, int]]:
        stream = AvatarStream(AvatarSession(avatar(), EngineConfig(), live=True, session_id="two_sounds"))
        stream.add_sink(opus)
        await stream.start()
        pushed = PushedAudio()
        stream.add_source(pushed)
        pushed.push(speechlike(4.0), 48000)
        await asyncio.sleep(1.0)
        joiner = Mp4Sink(out, encoding=EncodingSpec.of(video, AudioSpec("aac", 128_000)))
        stream.add_sink(joiner)
        await asyncio.sleep(2.0)
        codecs = [(e.kind, e.spec.codec, e.metrics.subscribers, e.metrics.keyframes_forced)
                  for e in stream.pacer.encoders]
        await stream.remove_sink(joiner)
        await stream.close()
        return codecs

    codecs = asyncio.run(record())
    assert sorted(codecs) == [("audio", "aac", 1, 0), ("audio", "libopus", 1, 0), ("video", "libx264", 2, 1)], codecs
    packets, frames, video_s, audio_s, key_first = read_back(out)
    assert key_first and frames == len(packets) and abs(frames - 96) <= 12, f"{frames} frames for ~2 s"
    assert abs(audio_s - video_s) <= 2 / 48, f"audio {audio_s:.3f} s vs video {video_s:.3f} s"
    with av.open(str(out)) as c:
        first_audio = next(f for f in c.decode(audio=0))
        start_s = float(first_audio.pts * first_audio.time_base)
        sound = np.concatenate([first_audio.to_ndarray().reshape(-1), *(f.to_ndarray().reshape(-1)
                                                                        for f in c.decode(audio=0))])
    assert abs(start_s) <= 1 / 48, f"its sound starts {start_s:+.3f} s from its first frame"
    assert np.sqrt(np.mean(sound**2)) > 0.03, "the recording has no sound"
