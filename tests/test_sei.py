"""The hidden AI label in the H.264 itself (streaming/sei.py): a user_data_unregistered SEI with our UUID and the AIGC
JSON in every keyframe of what the shared encoder makes (render output, a live recording, an RTMP push as an ingest
recorded it), read back both by our parser and by FFmpeg's decoder (its side data), and the stream still decodes."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import aiohttp
import av
import numpy as np
import pytest
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from av.sidedata.sidedata import Type

from engine.config import EngineConfig
from engine.generator import PreparedAvatar, prepare_avatar
from harness.nginx_rtmp import NginxRtmp
from harness.nginx_rtmp import available as nginx_missing
from harness.server import running
from harness.whep_client import WhepViewer
from streaming.aigc import read_aigc
from streaming.app import build_app
from streaming.config import ServerConfig
from streaming.egress_file import render_to_file
from streaming.encoding import CodecEncoder, VideoSpec
from streaming.live_stream import live_stream, parse_outputs, start_live_stream
from streaming.patches import use_ice_addresses
from streaming.sei import AIGC_SEI_UUID, START_CODE, insert_before_slice, labels_in, length_size, read_aigc_sei, sei_nal
from streaming.sinks import PacedFrame
from tests.conftest import write_wav


@pytest.fixture(scope="module")
def avatar() -> PreparedAvatar:
    return prepare_avatar(max_side_px=320)


def ffmpeg_user_data(frame: av.VideoFrame, uuid_: uuid.UUID = AIGC_SEI_UUID) -> list[bytes]:
    """What FFmpeg's H.264 decoder found in the frame's user_data_unregistered SEI of uuid_ (after the UUID)."""
    return [bytes(sd)[16:] for sd in frame.side_data
            if sd.type == Type.SEI_UNREGISTERED and bytes(sd)[:16] == uuid_.bytes]


def check_file(path: Path, produce_id: str | None = None) -> tuple[int, dict[str, str]]:
    """Every keyframe of the file's H.264 carries our SEI with the same AIGC JSON, FFmpeg's decoder reads the same,
    every packet decodes to a frame and ffprobe reports no error. Returns (keyframes, the AIGC fields)."""
    labels, keyframes, packets, frames = [], 0, 0, 0
    decoded: list[list[bytes]] = []  # FFmpeg's reading of each key frame (a decoder's delay: not packet by packet)
    with av.open(str(path)) as c:
        video = c.streams.video[0]
        prefix = length_size(video.codec_context.extradata)
        for packet in c.demux(video):
            if packet.size == 0:
                continue
            packets += 1
            label = read_aigc_sei(bytes(packet), prefix)
            if packet.is_keyframe:
                keyframes += 1
                assert label is not None, f"keyframe {keyframes} (pts {packet.pts}) has no AIGC SEI"
                labels.append(label)
            else:
                assert label is None, "only keyframes carry it"
            for frame in packet.decode():
                frames += 1
                if frame.key_frame:
                    decoded.append(ffmpeg_user_data(frame))
        for frame in video.codec_context.decode(None):
            frames += 1
            if frame.key_frame:
                decoded.append(ffmpeg_user_data(frame))
    assert frames == packets, f"{packets - frames} packets did not decode"
    assert all(label == labels[0] for label in labels)
    assert len(decoded) == keyframes
    assert all([json.loads(d) for d in seen] == [labels[0]] for seen in decoded), "FFmpeg's decoder reads the same"
    assert labels[0]["Label"] == "1" and (produce_id is None or labels[0]["ProduceID"] == produce_id)
    if shutil.which("ffprobe"):
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_frames", "-of", "csv", str(path)],
                               capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0 and not probe.stderr.strip(), probe.stderr[-2000:]
    return keyframes, labels[0]


def test_the_encoder_labels_each_keyframe_and_ffmpeg_reads_it() -> None:
    """The shared encoder's packets (Annex B, headers out of band) with a keyframe every 4 frames, decoded by FFmpeg;
    and an SEI whose bytes need emulation prevention (a UUID of zeros, a payload over 255 bytes) reads back whole."""
    text = json.dumps({"Label": "1", "ContentProducer": "示例工作室 " + "x" * 300}, ensure_ascii=False)
    codec = CodecEncoder("video", VideoSpec(options=(("g", "4"), ("preset", "ultrafast"), ("tune", "zerolatency"))),
                         "encoder_test", aigc=text)
    picture = np.zeros((48, 64, 3), np.uint8)
    raws = []
    for k in range(12):
        picture[:, : 4 * k + 4] = 20 * k
        raws += codec.encode_video([PacedFrame(k, picture.copy(), None)], keyframe=False)
    raws += codec.flush()
    assert codec.stream is not None
    extradata = bytes(codec.stream.codec_context.extradata or b"")
    assert length_size(extradata) == 0, "libx264's packets are Annex B"
    assert [r.is_keyframe for r in raws] == [k % 4 == 0 for k in range(12)]
    assert all((read_aigc_sei(r.data) == json.loads(text)) == r.is_keyframe for r in raws)

    zeros = uuid.UUID(int=0)
    escaped = sei_nal("\u00ff" * 200, zeros)  # 0xFF payload bytes and a 0x00 run: both need care
    assert all(escaped.find(bytes([0, 0, b])) == -1 for b in range(3))
    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = extradata
    seen: list[list[bytes]] = []
    for r in raws:
        packet = av.Packet(insert_before_slice(r.data, START_CODE + escaped) if r.is_keyframe else r.data)
        packet.pts, packet.time_base = r.pts, fractions.Fraction(1, 48)
        seen += [ffmpeg_user_data(f, AIGC_SEI_UUID) + ffmpeg_user_data(f, zeros) for f in decoder.decode(packet)]
    seen += [ffmpeg_user_data(f, AIGC_SEI_UUID) + ffmpeg_user_data(f, zeros) for f in decoder.decode(None)]
    assert len(seen) == 12, "every frame decodes"
    for k, found in enumerate(seen):
        expected = [text.encode(), ("\u00ff" * 200).encode()] if k % 4 == 0 else []
        assert found == expected, k


async def test_render_output_carries_the_file_s_label_in_its_h264(avatar: PreparedAvatar, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "tone.wav",
                    (0.2 * np.sin(2 * np.pi * 220 * np.arange(24000) / 48000)).astype(np.float32))
    out = tmp_path / "render.mp4"
    await render_to_file(avatar, wav, out, EngineConfig(max_side_px=320))
    with av.open(str(out)) as c:
        metadata = read_aigc(c.metadata)
    assert metadata is not None
    keyframes, label = check_file(out)
    assert keyframes >= 1 and label == metadata, "the same label as the file's metadata"
    assert labels_in(str(out)) == [(0.0, metadata)] * keyframes  # what `python -m streaming.sei FILE` prints


async def test_a_live_recording_and_rtmp_push_carry_it_in_every_keyframe(avatar: PreparedAvatar,
                                                                         tmp_path: Path) -> None:
    """One live stream (keyframes every 2 s) recorded to a fragmented MP4 and pushed to a real RTMP ingest
    (nginx-rtmp, which records the FLV it got, where installed), for 2 keyframes or more."""
    from engine.session import AvatarSession

    config = ServerConfig(label_producer="Example Studio", engine=EngineConfig(max_side_px=320))
    raw: dict[str, object] = {"record_dir": str(tmp_path / "rec")}
    ingest = NginxRtmp(tmp_path / "nginx") if nginx_missing() is None else None
    if ingest is not None:
        ingest.start()
        raw["rtmp"] = [ingest.url("sei")]
    try:
        session = AvatarSession(avatar, config.engine, live=True, session_id="sei")
        live = live_stream(session, config, None, parse_outputs(raw))
        await start_live_stream(live)
        try:
            for _ in range(400):  # bounded: up to 40 s on a loaded machine
                pushing = ingest is None or any(r["state"] == "live" for r in live.describe()["outputs"]["rtmp"])
                if live.stream.pacer.metrics.frames_sent > 48 * 2 + 24 and pushing:
                    break
                await asyncio.sleep(0.1)
        finally:
            await live.stream.close()
        files = [next((tmp_path / "rec").glob("*.mp4"))]
        if ingest is not None:
            files += ingest.recordings("sei")
    finally:
        if ingest is not None:
            ingest.stop()
    for path in files:
        keyframes, label = check_file(path, produce_id=live.id)
        assert keyframes >= 2, f"{path.name}: {keyframes} keyframe(s)"
        assert label["ContentProducer"] == "Example Studio"
    if ingest is None:
        pytest.skip(f"recording checked; no RTMP ingest here: {nginx_missing()}")


class LabelViewer(WhepViewer):
    """A WHEP viewer (aiortc, H.264) that keeps, per decoded picture, whether it is a keyframe and the AIGC labels
    FFmpeg's decoder found in it."""

    def __init__(self) -> None:
        super().__init__("video/H264")
        self.frames: list[tuple[bool, list[dict[str, str]]]] = []

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self._readers.append(asyncio.create_task(read_labels(track, self.frames)))


async def read_labels(track: MediaStreamTrack, frames: list[tuple[bool, list[dict[str, str]]]]) -> None:
    """Per decoded picture: is it a keyframe, and the AIGC labels FFmpeg's decoder found in it."""
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            frames.append((bool(frame.key_frame), [json.loads(d) for d in ffmpeg_user_data(frame)]))


def check_viewer(frames: list[tuple[bool, list[dict[str, str]]]], produce_id: str) -> None:
    assert len(frames) >= 24, "the viewer decoded too few pictures"
    key = [labels for is_key, labels in frames if is_key]
    assert key and frames[0][0], "it starts at a keyframe"
    assert all(len(labels) == 1 and labels[0]["ProduceID"] == produce_id
               and labels[0]["ContentProducer"] == "Example Studio" for labels in key), key
    assert not any(labels for is_key, labels in frames if not is_key)


async def test_a_whep_viewer_gets_the_label_in_its_keyframes(avatar: PreparedAvatar) -> None:
    """End to end through RTP: aiortc's depacketiser and FFmpeg's decoder on the viewer's side find it."""
    config = ServerConfig(label_producer="Example Studio", engine=EngineConfig(max_side_px=320))
    use_ice_addresses(["127.0.0.1"])
    async with running(build_app(config, avatar)) as base, aiohttp.ClientSession() as http:
        async with http.post(f"{base}/streams", json={}) as r:
            assert r.status == 201, await r.text()
            sid = (await r.json())["id"]
        viewer = LabelViewer()
        await viewer.start(f"{base}/streams/{sid}/whep")
        try:
            for _ in range(300):  # bounded: up to 30 s on a loaded machine
                if len(viewer.frames) >= 24:
                    break
                await asyncio.sleep(0.1)
        finally:
            await viewer.stop()
        async with http.delete(f"{base}/streams/{sid}") as r:
            assert r.status == 200
    check_viewer(viewer.frames, sid)


async def test_an_offer_peer_taking_h264_gets_the_label_from_aiortc_s_encoder(avatar: PreparedAvatar) -> None:
    """An /offer session encodes per peer with aiortc's own H.264 encoder (streaming.patches.label_h264_keyframes)."""
    config = ServerConfig(label_producer="Example Studio", engine=EngineConfig(max_side_px=320))
    use_ice_addresses(["127.0.0.1"])
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(AudioStreamTrack())  # a silent microphone
    video = pc.addTransceiver("video", direction="recvonly")
    video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                               if c.mimeType in ("video/H264", "video/rtx")])
    frames: list[tuple[bool, list[dict[str, str]]]] = []
    readers: list[asyncio.Task[None]] = []
    pc.on("track", lambda track: track.kind == "video" and readers.append(
        asyncio.create_task(read_labels(track, frames))))
    try:
        async with running(build_app(config, avatar)) as base, aiohttp.ClientSession() as http:
            await pc.setLocalDescription(await pc.createOffer())
            async with http.post(f"{base}/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}) as r:
                assert r.status == 200, await r.text()
                answer = await r.json()
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
            assert "H264" in answer["sdp"] and "VP8" not in answer["sdp"]
            for _ in range(300):  # bounded: up to 30 s on a loaded machine
                if len(frames) >= 24:
                    break
                await asyncio.sleep(0.1)
            headers = {"Authorization": f"Bearer {answer['session_token']}"} if answer.get("session_token") else {}
            async with http.post(f"{base}/sessions/{answer['session_id']}/close", json={}, headers=headers) as r:
                assert r.status == 200, await r.text()
    finally:
        for task in readers:
            task.cancel()
        await asyncio.wait_for(pc.close(), 10)
    check_viewer(frames, answer["session_id"])
