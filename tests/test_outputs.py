"""Going-live outputs: RTMP pushes to a real nginx-rtmp, a recording that survives SIGKILL, the output canvas.

The picture does not matter here, so sessions render with the FakeGenerator (patterned: each frame's
red channel is its frame index mod 256, which survives H.264 well enough to read back).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import av
import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from engine.backends import GeneratorCapabilities, register_generator
from engine.config import EngineConfig
from engine.session import AvatarSession
from harness import REPO
from harness.nginx_rtmp import NginxRtmp, TlsFront, available, tls_available
from harness.server import running
from harness.whep_client import WhepViewer
from streaming.app import REGISTRY, build_app
from streaming.canvas import Canvas, parse_size
from streaming.config import ServerConfig
from streaming.egress_file import Mp4Sink
from streaming.egress_rtmp import RtmpSink, redact, scrub
from streaming.outputs import OutputsSpec, attach_outputs, describe_outputs
from streaming.patches import use_ice_addresses
from streaming.sinks import PacedAudio, PacedFrame, Sink
from streaming.sources import FileSource, PushedAudio
from streaming.stream import AvatarStream
from tests.conftest import espeak, write_wav
from tests.fakes import FakeGenerator
from tests.test_session import avatar, speechlike

register_generator("patterned", lambda avatar, threads: FakeGenerator((64, 48), patterned=True),
                   GeneratorCapabilities(description="tests.fakes.FakeGenerator, patterned (a test stand-in)"))
needs_nginx = pytest.mark.skipif(available() is not None, reason=f"RTMP server: {available()}")
# What the notes found PyAV needs to see both streams of an FLV relayed by nginx.
RTMP_READ = {"analyzeduration": "5000000", "probesize": "5000000", "rw_timeout": "15000000"}


class FrameTimes(Sink):
    """Another sink of the same stream: when each frame reached it (the engine's clock, seen from outside RTMP)."""

    name = "frame_times"
    queue_size = 64

    def __init__(self) -> None:
        self.arrived: list[float] = []

    async def on_video(self, frame: PacedFrame) -> None:
        self.arrived.append(time.monotonic())


class Onset(Sink):
    """The stream sample where its sound first gets loud, as the pacer hands it to every sink."""

    name = "onset"

    def __init__(self) -> None:
        self.sample: int | None = None

    async def on_audio(self, chunk: PacedAudio) -> None:
        loud = np.flatnonzero(np.abs(chunk.samples) > 0.1)
        if self.sample is None and len(loud):
            self.sample = chunk.start_sample + int(loud[0])


def live_stream(sid: str, size: tuple[int, int] = (64, 48)) -> AvatarStream:
    generator = FakeGenerator(size, patterned=True)
    return AvatarStream(AvatarSession(avatar(), EngineConfig(), live=True, session_id=sid, generator=generator))


async def until(condition: object, timeout_s: float, step_s: float = 0.05) -> float:
    """Poll condition() until true; returns when (time.monotonic), raises TimeoutError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(step_s)
    return time.monotonic()


def flv_timeline(path: Path) -> tuple[list[float], int, list[float], np.ndarray, np.ndarray, float]:
    """(video packet times, audio packets, decoded frame times, their (red, green) means, audio samples, first audio
    time) of an FLV."""
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.audio[0].codec_context.name == "aac"
        assert c.streams.audio[0].rate == 48000
        packets = [p for p in c.demux() if p.dts is not None]
        video_t = [float(p.pts * p.time_base) for p in packets if p.stream.type == "video"]
        audio_packets = sum(p.stream.type == "audio" for p in packets)
    colours, frame_t = [], []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            frame_t.append(float(f.pts * f.time_base))
            colours.append(f.to_ndarray(format="rgb24")[..., :2].reshape(-1, 2).mean(0))
    with av.open(str(path)) as c:
        frames = list(c.decode(audio=0))
        sound = np.concatenate([f.to_ndarray()[0] for f in frames])
        audio_start = float(frames[0].pts * frames[0].time_base)
    return video_t, audio_packets, frame_t, np.array(colours), sound, audio_start


# ---- RTMP ------------------------------------------------------------------------------------
@needs_nginx
def test_an_rtmp_push_reaches_nginx_whole_at_48_fps_with_sound_and_mouth_in_step(tmp_path: Path) -> None:
    # A WAV: a tone 1 s in (where the FLV has it says where the sound is), then speech (the mouth follows it).
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(int(0.3 * 48000)) / 48000)
    speech = espeak("Hello everyone, welcome to the show. Today we look at a camera.")
    wav = write_wav(tmp_path / "show.wav", np.concatenate([np.zeros(48000), tone, np.zeros(24000), speech]))
    speech_from_s = 1.8
    seconds = speech_from_s + len(speech) / 48000

    async def push(ingest: NginxRtmp) -> tuple[dict, dict, int | None, dict, Path]:
        stream = live_stream("rtmp_whole")
        onset = Onset()
        stream.add_sink(onset)
        sink, recording = attach_outputs(stream, OutputsSpec(rtmp=[ingest.url("whole")], record_dir=tmp_path / "rec",
                                                             size="320x240"))
        await stream.start()
        stream.add_source(FileSource(wav))
        assert isinstance(sink, RtmpSink) and isinstance(recording, Mp4Sink)
        assert sorted((e.kind, e.metrics.subscribers) for e in stream.pacer.encoders) == [("audio", 2), ("video", 2)], (
            "the push and the recording: one encode per codec")
        await until(lambda: sink.metrics.state == "live", 15)
        relayed = await asyncio.to_thread(read_relay, ingest.url("whole"))  # a viewer of nginx's live relay
        await until(lambda: onset.sample is not None, 5)
        assert onset.sample is not None
        end_frame = onset.sample // 1000 + round((seconds - 1.0) * 48) + 12
        await until(lambda: stream.pacer.metrics.frames_sent > end_frame, seconds + 15)
        await stream.close()
        return stream.info()["sinks"], sink.info(), onset.sample, relayed, recording.path

    with NginxRtmp(tmp_path / "nginx") as ingest:
        sinks, rtmp, onset_sample, relayed, mp4 = asyncio.run(push(ingest))
        [recording] = ingest.recordings("whole")
    assert relayed["video"] == "h264" and relayed["audio"] == "aac", relayed
    assert abs(relayed["fps"] - 48) < 0.5, relayed
    assert rtmp["connects"] == 1 and rtmp["packets_dropped"] == 0 and rtmp["last_error"] is None, rtmp

    video_t, audio_packets, frame_t, colours, sound, audio_start = flv_timeline(recording)
    # Whole: every packet the encoder handed the push is in nginx's recording (less the AAC priming before the first
    # keyframe), frames 1/48 s apart (unless the encoder itself lost some on a loaded machine: it counts them).
    handed = sinks["rtmp"]["packets"]
    assert handed - 2 <= len(video_t) + audio_packets <= handed, (len(video_t), audio_packets, sinks["rtmp"])
    steps, encoder_dropped = np.diff(video_t), sinks["encoder"]["dropped"]
    fps = (len(video_t) - 1) / (video_t[-1] - video_t[0])
    assert (steps.max() <= 0.0215 and abs(fps - 48) < 0.05) or encoder_dropped, (
        f"frames missing from the push: longest step {steps.max():.4f} s, {fps:.2f} fps")
    assert len(frame_t) == len(video_t), "frames that did not decode"
    with av.open(str(mp4)) as c:  # the recording of the same encode: the same frames, and it plays
        assert abs(sum(1 for _ in c.decode(video=0)) - len(video_t)) <= 2
    # The FLV starts at the encoder's first frame k0: the frame at time t is k0 + 48 t (its red channel says so) ...
    assert onset_sample is not None
    k0 = sinks["encoder"]["first_frame_index"]
    patterned = [(round(k0 + 48 * t), red) for t, red in zip(frame_t, colours[:, 0], strict=True) if t > 0.5]
    # (The red channel reads back within +-1 of what was drawn; a frame not rendered in time repeats the previous
    # picture, so some (a loaded machine: runs of several) show an earlier index.)
    behind = [(k - round(red) + 128) % 256 - 128 for k, red in patterned]
    assert min(behind) >= -2 and max(behind) <= 12 and np.median(np.abs(behind)) <= 1, (
        f"frames whose picture is not the frame their timestamp says (frames behind: {behind})")
    # ... and the sound at time t is the stream's samples at (k0 + 48 t) * 1000: the tone is where the frames say.
    heard_s = audio_start + np.argmax(np.abs(sound) > 0.1) / 48000
    expected_s = (onset_sample / 1000 - k0) / 48
    assert abs(heard_s - expected_s) <= 1 / 48, f"tone at {heard_s:.3f} s, its frames at {expected_s:.3f} s"
    # The mouth (the green channel: the jaw opening each frame was rendered with) follows the speech's loudness
    # as both come out of the FLV: best correlated at a lag of at most one frame.
    first = round((heard_s + speech_from_s - 1.0) * 48)
    n = round(len(speech) / 48000 * 48) - 6
    start = round(first * 1000 - audio_start * 48000)  # where frame `first` starts in the decoded sound
    blocks = sound[start:start + n * 1000]
    loudness = np.sqrt((blocks[:len(blocks) // 1000 * 1000].reshape(-1, 1000) ** 2).mean(1))
    jaw = colours[first:first + len(loudness), 1]
    lags = range(-3, 4)  # the jaw at frame k against the loudness at frame k - lag
    r = [np.corrcoef(jaw[3 + lag:len(jaw) - 3 + lag], loudness[3:len(loudness) - 3])[0, 1] for lag in lags]
    best = list(lags)[int(np.argmax(r))]
    assert max(r) > 0.5 and abs(best) <= 1, f"mouth vs loudness: r {np.round(r, 2)} at lags {list(lags)}"


def read_relay(url: str, seconds: float = 1.0) -> dict:
    """What a player of the live stream gets: codecs and frame rate (from the packets' timestamps)."""
    with av.open(url, options=RTMP_READ, timeout=15) as c:
        video, audio = c.streams.video[0], c.streams.audio[0]
        times: list[float] = []
        for packet in c.demux(video):
            if packet.pts is not None:
                times.append(float(packet.pts * packet.time_base))
            if len(times) > 2 and times[-1] - times[0] >= seconds:
                break
        return {"video": video.codec_context.name, "audio": audio.codec_context.name,
                "fps": (len(times) - 1) / (times[-1] - times[0])}


@needs_nginx
@pytest.mark.webrtc
async def test_a_whep_viewer_and_an_rtmp_push_of_one_stream_share_one_h264_encode(tmp_path: Path) -> None:
    """One stream over the real app (POST /streams with an RTMP output, then a WHEP viewer): one H.264 encode feeds
    both (constrained baseline, 2 s keyframes), the sound is encoded once as Opus (WebRTC) and once as AAC (FLV);
    the viewer and a player of nginx's relay both get 48 fps H.264."""
    use_ice_addresses(["127.0.0.1"])
    media = tmp_path / "media"
    media.mkdir()
    write_wav(media / "show.wav", speechlike(6.0))
    cfg = ServerConfig(engine=EngineConfig(generator="patterned"), media_dir=str(media))
    app = build_app(cfg, avatar())
    with NginxRtmp(tmp_path / "nginx") as ingest:
        async with running(app) as base, aiohttp.ClientSession() as http:
            body = {"outputs": {"rtmp": [ingest.url("shared")], "size": "320x240"}, "audio_file": "show.wav",
                    "loop": True}
            async with http.post(f"{base}/streams", json=body) as r:
                assert r.status == 201, await r.text()
                sid = (await r.json())["id"]
            stream: AvatarStream = app[REGISTRY].active[sid]
            viewer = WhepViewer(video_codec="video/H264")  # it offers H.264 only: its answer is H.264 or nothing
            await viewer.start(f"{base}/streams/{sid}/whep")
            await until(lambda: describe_outputs(stream)["rtmp"][0]["state"] == "live" and viewer.got.video_pts, 15)
            t0 = time.monotonic()
            relayed = await asyncio.to_thread(read_relay, ingest.url("shared"), 2.0)  # a player of nginx's relay
            t1 = time.monotonic()
            info = stream.info()
            codecs = {(e.kind, e.spec.codec): e.metrics.subscribers for e in stream.pacer.encoders}
            [h264] = [e for e in stream.pacer.encoders if e.kind == "video"]
            options = dict(h264.spec.options)  # type: ignore[union-attr]
            annex_b = bytes(h264.stream.codec_context.extradata or b"")  # type: ignore[union-attr]
            await viewer.stop()
            async with http.delete(f"{base}/streams/{sid}") as r:
                assert r.status == 200, await r.text()
        [flv] = ingest.recordings("shared")
    assert codecs == {("video", "libx264"): 2, ("audio", "libopus"): 1, ("audio", "aac"): 1}, (
        f"not one H.264 encode for both, one audio encode per codec: {codecs}")
    assert info["encoders"] == 3 and info["sinks"]["encoder"]["video_encoders"] == 1, info["sinks"]
    assert options["profile"] == "baseline" and options["tune"] == "zerolatency" and options["g"] == "96", options
    # One encode of each frame: the H.264 encoder took each frame slot once (not once per output).
    assert info["sinks"]["encoder_libx264"]["frames_encoded"] <= info["frames_sent"], info["sinks"]
    assert relayed["video"] == "h264" and relayed["audio"] == "aac" and abs(relayed["fps"] - 48) < 0.5, relayed
    # The viewer: frames 1/48 s apart in RTP time (1875 ticks of 90 kHz), decoded at ~48 fps while the relay played.
    pts, wall = np.array(viewer.got.video_pts), np.array(viewer.got.video_wall_s)
    during = (wall >= t0) & (wall <= t1)
    rate = (during.sum() - 1) / (wall[during][-1] - wall[during][0])
    steps = np.diff(pts[during])
    assert viewer.got.video_size == (320, 240) and viewer.keyframes >= 1
    assert np.median(steps) == 1875 and rate >= 44.0, f"the WHEP viewer: {rate:.1f} fps, steps {set(steps)}"
    # The push has a keyframe at least every 2 s (what ingests ask for): the WHEP viewer's joining keyframe and
    # the regular GOP together.
    with av.open(str(flv)) as c:
        avcc = bytes(c.streams.video[0].codec_context.extradata or b"")
        keys = [float(p.pts * p.time_base) for p in c.demux(video=0) if p.dts is not None and p.is_keyframe]
    # The encoder's headers are Annex B (start codes: what WebRTC takes, SPS/PPS put in band before keyframes);
    # FFmpeg's FLV muxer wrote them as an avcC record (version 1, then constrained baseline: profile 66).
    assert annex_b.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")), annex_b[:8]
    assert avcc[:2] == b"\x01\x42", avcc[:8]
    assert len(keys) >= 2 and max(np.diff(keys)) <= 2.0 + 1 / 48, keys
    print(f"\nencoders {codecs}; relay {relayed}; WHEP viewer {rate:.2f} fps; FLV keyframes at {np.round(keys, 2)}")


@needs_nginx
@pytest.mark.skipif(tls_available() is not None, reason=f"TLS front: {tls_available()}")
def test_an_rtmps_push_goes_through_tls(tmp_path: Path) -> None:
    async def push(url: str) -> dict:
        stream = live_stream("rtmps")
        [sink] = attach_outputs(stream, OutputsSpec(rtmp=[url]))
        await stream.start()
        source = PushedAudio()
        stream.add_source(source)
        source.push(speechlike(10.0), 48000)
        await until(lambda: sink.info()["packets_sent"] > 100, 15)  # type: ignore[operator]
        await stream.close()
        return sink.info()

    with NginxRtmp(tmp_path / "nginx") as ingest, TlsFront(tmp_path / "tls", ingest.port) as tls:
        rtmp = asyncio.run(push(tls.url("secure")))
        [recording] = ingest.recordings("secure")
    assert rtmp["url"].startswith("rtmps://") and rtmp["connects"] == 1 and rtmp["last_error"] is None, rtmp
    with av.open(str(recording)) as c:
        assert sum(1 for _ in c.decode(video=0)) >= 40


@needs_nginx
def test_an_rtmp_push_resumes_after_the_ingest_restarts_and_the_clock_never_stalls(tmp_path: Path) -> None:
    async def run(ingest: NginxRtmp) -> tuple[float, float, dict, list[float], float]:
        stream = live_stream("rtmp_restart")
        times = FrameTimes()
        stream.add_sink(times)
        [sink] = attach_outputs(stream, OutputsSpec(rtmp=[ingest.url("restart")]))
        await stream.start()
        source = PushedAudio()
        stream.add_source(source)
        source.push(speechlike(20.0), 48000)
        await until(lambda: sink.metrics.state == "live" and sink.metrics.packets_sent > 100, 15)
        t0 = time.monotonic()
        await asyncio.to_thread(ingest.stop)
        await until(lambda: sink.metrics.drops == 1, 5)
        await asyncio.sleep(max(0.0, t0 + 3.0 - time.monotonic()))  # the ingest is away for 3 s
        await asyncio.to_thread(ingest.start)
        restarted = time.monotonic()
        resumed = await until(lambda: sink.metrics.connects == 2 and sink.metrics.packets_sent > 0, 10)
        sent_before = sink.metrics.packets_sent
        await until(lambda: sink.metrics.packets_sent > sent_before, 5)
        frames = len(times.arrived)
        await stream.close()
        return restarted, resumed, sink.info(), times.arrived, frames / (times.arrived[-1] - times.arrived[0])

    with NginxRtmp(tmp_path / "nginx") as ingest:
        restarted, resumed, rtmp, arrived, fps = asyncio.run(run(ingest))
        recordings = ingest.recordings("restart")
    assert resumed - restarted <= 5.0, f"the push resumed {resumed - restarted:.1f} s after the ingest came back"
    assert rtmp["reconnects"] == 1 and rtmp["drops"] == 1, rtmp
    assert np.diff(arrived).max() < 0.5 and fps > 44, (
        f"the other sink's frames stalled (longest gap {np.diff(arrived).max():.2f} s, {fps:.1f} fps)")
    assert len(recordings) == 2, recordings
    with av.open(str(recordings[1])) as c:
        first = next(p for p in c.demux(video=0) if p.dts is not None)
        assert first.is_keyframe and first.pts == 0, "the new connection did not start at a keyframe, at 0"
    with av.open(str(recordings[1])) as c:
        assert sum(1 for _ in c.decode(video=0)) > 10


def test_an_rtmp_url_that_refuses_is_an_error_state_and_the_stream_goes_on(tmp_path: Path) -> None:
    from harness.nginx_rtmp import free_port

    url = f"rtmp://127.0.0.1:{free_port()}/live/secret-key"

    async def run() -> tuple[dict, dict, float]:
        stream = live_stream("rtmp_refused")
        times = FrameTimes()
        stream.add_sink(times)
        attach_outputs(stream, OutputsSpec(rtmp=[url]))
        await stream.start()
        [sink] = [s for s in describe_outputs(stream)["rtmp"]]
        assert sink["state"] in ("idle", "connecting")
        await until(lambda: describe_outputs(stream)["rtmp"][0]["connect_failures"] >= 1, 10)
        described = describe_outputs(stream)
        t0, n0 = time.monotonic(), len(times.arrived)
        await asyncio.sleep(1.0)
        fps = (len(times.arrived) - n0) / (time.monotonic() - t0)
        await stream.close()
        return described, stream.info(), fps

    described, info, fps = asyncio.run(run())
    [rtmp] = described["rtmp"]
    assert rtmp["state"] in ("retrying", "connecting") and rtmp["connects"] == 0, rtmp
    assert "refused" in rtmp["last_error"].lower(), rtmp
    assert "secret-key" not in str(described) and "secret-key" not in str(info), "the stream key leaked"
    assert fps > 40, f"the other sink got {fps:.1f} fps while the push was refused"


def test_an_ingest_that_accepts_and_then_stays_silent_is_cut_off_without_stalling_the_stream() -> None:
    # FFmpeg's RTMP handshake blocks with the GIL held: in-process, this ingest would freeze every thread.
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(silent.accept()[0]), daemon=True).start()
    url = f"rtmp://127.0.0.1:{silent.getsockname()[1]}/live/key"

    async def run() -> tuple[dict, list[float]]:
        stream = live_stream("rtmp_silent")
        times = FrameTimes()
        stream.add_sink(times)
        sink = RtmpSink(url, connect_timeout_s=2.0)
        stream.add_sink(sink)
        await stream.start()
        await until(lambda: sink.metrics.connect_failures >= 1, 15)
        info = sink.info()
        await stream.close()
        return info, times.arrived

    try:
        info, arrived = asyncio.run(run())
    finally:
        silent.close()
        for s in held:
            s.close()
    assert held, "the push never reached the silent ingest"
    assert info["connects"] == 0 and info["last_error"] == "no connection for 2 s", info
    gaps = np.diff(arrived)
    assert gaps.max() < 0.5 and len(arrived) / (arrived[-1] - arrived[0]) > 40, (
        f"the stream stalled while the push hung (longest gap {gaps.max():.2f} s)")


def test_outputs_spec_refuses_bad_values_clearly(tmp_path: Path) -> None:
    for bad in ({"rtmp": ["http://example.com/live/x"]}, {"size": "721x1280"}, {"size": "big"},
                {"fit": "stretch"}, {"background": str(tmp_path / "none.png")}, {"rmtp": []}):
        with pytest.raises(ValidationError):
            OutputsSpec.model_validate(bad)
    spec = OutputsSpec.model_validate({"rtmp": ["rtmps://live.example.com:443/app/KEY"], "size": " 720X1280 "})
    assert spec.size == "720x1280"
    # Stream keys and credentials never show: YouTube/Twitch style, a push code with a signed query, no app, a user.
    assert redact("rtmp://a.rtmp.youtube.com/live2/KEY") == "rtmp://a.rtmp.youtube.com/live2/****"
    assert redact("rtmp://push.example.com/stage/stream-1?expire=1&sign=KEY") == "rtmp://push.example.com/stage/****"
    assert redact("rtmp://127.0.0.1:1935/KEY") == "rtmp://127.0.0.1:1935/****"
    assert redact("rtmps://user:KEY@host/app/x") == "rtmps://host/app/****"
    assert "KEY" not in scrub("Broken pipe: 'rtmp://host/app/KEY?x=KEY' and rtmp://h/KEY")


# ---- recording -------------------------------------------------------------------------------
RECORDER = """
import asyncio, sys, time
from pathlib import Path
from engine.config import EngineConfig
from engine.session import AvatarSession
from streaming.outputs import OutputsSpec, attach_outputs
from streaming.sources import FileSource, PushedAudio
from streaming.stream import AvatarStream
from tests.conftest import espeak, write_wav
from tests.fakes import FakeGenerator
from tests.test_session import avatar, speechlike

async def main():
    session = AvatarSession(avatar(), EngineConfig(), live=True, session_id="killed",
                            generator=FakeGenerator((64, 48), patterned=True))
    stream = AvatarStream(session)
    [mp4] = attach_outputs(stream, OutputsSpec(record_dir=Path(sys.argv[1]), size="320x240"))
    await stream.start()
    source = PushedAudio()
    stream.add_source(source)
    source.push(speechlike(60.0), 48000)
    while not stream.pacer.metrics.frames_sent:
        await asyncio.sleep(0.01)
    print("recording", mp4.path, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_a_recording_cut_short_by_sigkill_plays_to_within_2_s_of_the_kill(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", RECORDER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(child.stdout.readline()), daemon=True)  # type: ignore
        reader.start()
        reader.join(60)
        assert lines and lines[0].startswith("recording "), f"the recorder did not start: {lines}"
        started = time.monotonic()
        path = Path(lines[0].split(" ", 1)[1].strip())
        time.sleep(4.0)  # a real recording length, not a wait for something
        os.kill(child.pid, signal.SIGKILL)
        recorded_s = time.monotonic() - started
    finally:
        child.kill()
        child.wait()
    assert path.parent == tmp_path and path.name.startswith("killed-") and path.suffix == ".mp4"
    with av.open(str(path)) as c:
        assert c.streams.video[0].width == 320 and c.streams.video[0].height == 240
        video = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        audio = [float(f.pts * f.time_base + f.samples / f.sample_rate) for f in c.decode(audio=0)]
    assert video and audio, "nothing playable in the killed recording"
    played_s = video[-1] + 1 / 48
    assert played_s >= recorded_s - 2.0, f"plays {played_s:.2f} s of {recorded_s:.2f} s recorded before the kill"
    assert abs(audio[-1] - played_s) <= 1.1, "picture and sound end far apart"
    # (The muxer moves frames after the first one AAC priming frame (21 ms) later, so the first step is longer.)
    assert np.diff(video)[1:].max() < 1.5 / 48 and len(video) >= round(video[-1] * 48), "frames missing in the file"


# ---- canvas ----------------------------------------------------------------------------------
def portrait() -> np.ndarray:
    """512x512: a blue left half, a yellow right half, a white centre square."""
    rgb = np.zeros((512, 512, 3), np.uint8)
    rgb[:, :256] = (30, 60, 200)
    rgb[:, 256:] = (230, 210, 40)
    rgb[192:320, 192:320] = 255
    return rgb


def back_to_rgb(i420: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420).astype(int)


def close(a: np.ndarray, colour: tuple[int, int, int], tol: int = 12) -> bool:
    return bool(np.abs(a.reshape(-1, 3).mean(0) - np.array(colour)).max() <= tol)


def test_the_canvas_fits_or_fills_a_square_portrait_into_a_vertical_frame_over_a_background(tmp_path: Path) -> None:
    assert parse_size("720x1280") == (720, 1280)
    background = np.zeros((400, 300, 3), np.uint8)
    background[:200] = (200, 30, 30)  # red top half, green bottom half (cover-scaled to 720x1280)
    background[200:] = (30, 160, 60)
    bg_path = tmp_path / "bg.png"
    cv2.imwrite(str(bg_path), cv2.cvtColor(background, cv2.COLOR_RGB2BGR))

    fitted = back_to_rgb(Canvas(720, 1280, "fit", bg_path)(portrait()))
    assert fitted.shape == (1280, 720, 3)
    # Fitted: the whole portrait, 720x720 in the middle (rows 280-1000), the background above and below it.
    assert close(fitted[300:980, 10:250], (30, 60, 200)) and close(fitted[300:980, 470:710], (230, 210, 40))
    assert close(fitted[600:680, 320:400], (255, 255, 255))
    assert close(fitted[10:270], (200, 30, 30)) and close(fitted[1010:1270], (30, 160, 60))

    filled = back_to_rgb(Canvas(720, 1280, "fill", bg_path)(portrait()))
    # Filled: the portrait covers the frame, its sides cropped (the centre 288 columns, scaled 2.5x): the white
    # square is 320 px wide in the middle, blue and yellow only 200 px each beside it, no background anywhere.
    assert close(filled[:, 10:190], (30, 60, 200)) and close(filled[:, 530:710], (230, 210, 40))
    assert close(filled[490:790, 210:510], (255, 255, 255))
    assert not close(filled[:100], (200, 30, 30), tol=60)

    same = Canvas(512, 512)  # already the canvas' size: handed on untouched
    i420 = cv2.cvtColor(portrait(), cv2.COLOR_RGB2YUV_I420)
    assert same(i420) is i420


def test_an_offline_stream_at_an_output_size_writes_every_frame_at_that_size(tmp_path: Path) -> None:
    out = tmp_path / "sized.mp4"

    async def render() -> None:
        session = AvatarSession(avatar(), EngineConfig(), live=False, session_id="sized",
                                generator=FakeGenerator((64, 48), colour=(200, 40, 40)))
        stream = AvatarStream(session)
        stream.pacer.set_canvas(Canvas(720, 1280, "fit"))
        stream.add_sink(Mp4Sink(out))
        await stream.start()
        source = PushedAudio()
        stream.add_source(source)
        source.push(speechlike(1.0), 48000)
        source.end()
        await asyncio.wait_for(stream.wait(), 60)
        await stream.close()

    asyncio.run(render())
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 48 and frames[0].shape == (1280, 720, 3)
    last = frames[-1].astype(int)  # 64x48 fitted to 720 wide: 720x540 in the middle, black above and below
    assert close(last[400:880, 20:700], (200, 40, 40), tol=16) and close(last[:350], (0, 0, 0), tol=16)


def test_render_puts_the_video_on_the_canvas_given_by_size_and_refuses_a_bad_one(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "a.wav", speechlike(0.5))
    out = tmp_path / "vertical.mp4"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(REPO / "server.py"), "render", "--audio", str(wav), *args],
                              capture_output=True, text=True, timeout=300, cwd=REPO)

    bad = cli("--out", str(tmp_path / "bad.mp4"), "--size", "721x1280")
    assert bad.returncode == 2 and "721x1280" in bad.stderr and "even" in bad.stderr
    good = cli("--out", str(out), "--size", "360x640", "--fit", "fill")
    assert good.returncode == 0, good.stderr
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape == (640, 360, 3) and frame[:20].mean() > 40, "filled: no black bars at the top"
