"""WHEP egress and WHIP ingest over real sockets: aiortc viewers and publishers against the app on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from aiortc import RTCPeerConnection

from engine.generator import PreparedAvatar, prepare_avatar
from harness.faces import mouth_box
from harness.server import running
from harness.webrtc_client import delivery, stream_session
from harness.whep_client import SDP, SdpRefused, WhepViewer, WhipPublisher, post_sdp
from streaming.app import REGISTRY, build_app
from streaming.config import ServerConfig
from streaming.patches import use_fixed_bitrate, use_ice_addresses
from streaming.whep import KeyframeGate
from tests.conftest import ServerProcess

pytestmark = pytest.mark.webrtc


@pytest.fixture(scope="module")
def avatar() -> PreparedAvatar:
    return prepare_avatar()


@contextlib.asynccontextmanager
async def serving(avatar: PreparedAvatar,
                  config: ServerConfig | None = None) -> AsyncIterator[tuple[str, web.Application]]:
    config = config or ServerConfig()
    use_ice_addresses(["127.0.0.1"])
    use_fixed_bitrate(config.video_bitrate_bps)
    app = build_app(config, avatar)
    async with running(app) as base:
        yield base, app


def session_info(server: ServerProcess, sid: str) -> dict:
    with urllib.request.urlopen(server.url + "/api/sessions", timeout=10) as r:
        return next(s for s in json.loads(r.read())["sessions"] if s["id"] == sid)


async def test_viewers_share_one_encode_and_one_leaves(server: ServerProcess, speech_wav: Path) -> None:
    """Two H.264 viewers and a VP8 one of a POST /offer stream: ~48 fps each, a keyframe soon after joining,
    one encoder per codec (the sound's Opus encode shared by all three); DELETE ends one viewer while the others
    stream on."""
    results: dict = {}
    loop = asyncio.get_running_loop()

    async def watch(sid: str) -> None:
        url = f"{server.url}/streams/{sid}/whep"
        await asyncio.sleep(1.0)
        a, b, c = WhepViewer(), WhepViewer(), WhepViewer(video_codec="video/VP8")
        await asyncio.gather(a.start(url), c.start(url))
        await asyncio.sleep(1.0)
        await b.start(url)  # joins a running encode: a keyframe is forced for it
        await asyncio.sleep(2.5)
        results["info_three"] = await loop.run_in_executor(None, session_info, server, sid)
        keyframes_before = a.keyframes
        await a.send_pli()  # its decoder lost its place: the shared encoder makes a keyframe for everyone
        await asyncio.sleep(1.0)
        results["pli"] = (keyframes_before, a.keyframes, b.keyframes)
        results["info_pli"] = await loop.run_in_executor(None, session_info, server, sid)
        results["delete"] = await c.stop()
        results["t_left"] = time.monotonic()
        await asyncio.sleep(2.5)
        results["info_two"] = await loop.run_in_executor(None, session_info, server, sid)
        for v in (a, b):
            await v.stop()
        results["viewers"] = (a, b, c)

    host, _ = await stream_session(server.url, speech_wav, duration_s=8.5, during=watch)
    a, b, c = results["viewers"]
    three, two = results["info_three"], results["info_two"]
    for name, v in (("a", a), ("b", b), ("c", c)):
        first = v.first_frame_after_s()
        assert first is not None and first < 2.0, f"viewer {name}: first picture {first} s after connecting"
        d = delivery(v.got)
        print(f"viewer {name}: first picture {first:.2f} s after connecting (answer -> connected "
              f"{v.connected_s - v.answered_s:.2f} s), {d}, {len(v.got.audio_rms)} audio frames, "
              f"{v.keyframes} keyframes")
        d.assert_live(f"viewer {name} ({three['sinks']})")
        assert d.span_s > 1.5
        assert v.got.video_size == (512, 512)
        assert len(v.got.audio_rms) > 40, f"viewer {name}: {len(v.got.audio_rms)} audio frames"
    assert a.keyframes >= 1 and b.keyframes >= 1, "H.264 viewers decode from a keyframe"
    assert three["encoders"] == 3, "one encoder for the H.264 viewers, one for the VP8 one, one Opus for all"
    whep = {name: s for name, s in three["sinks"].items() if name.startswith("whep")}
    assert len(whep) == 3
    encoders = {name: s for name, s in three["sinks"].items() if name.startswith("encoder_")}
    assert {n: s["subscribers"] for n, s in encoders.items()} == {"encoder_libx264": 2, "encoder_libvpx": 1,
                                                                  "encoder_libopus": 3}, encoders
    assert encoders["encoder_libx264"]["keyframes_forced"] >= 1, "the late joiner's keyframe"
    print({name: {k: s[k] for k in ("frames_encoded", "keyframes_forced", "keyframes_requested", "packets")}
           for name, s in encoders.items()}, "dropped before the encoders:", three["sinks"]["encoder"]["dropped"])
    requested = [s["keyframes_requested"] for n, s in results["info_pli"]["sinks"].items() if n.startswith("encoder_")
                 and "264" in n]
    before, after, _ = results["pli"]
    assert requested == [1] and after > before, f"a PLI reached the encoder {requested} times; keyframes {before}->" \
                                                f"{after}"
    assert results["delete"] == 200
    assert two["encoders"] == 2, "the VP8 encoder goes with its last viewer (H.264 and Opus stay)"
    for v in (a, b):  # the others went on after the third left
        d = delivery(v.got, skip_s=results["t_left"] + 0.2 - v.got.video_wall_s[0])
        d.assert_live("after a viewer left")
        assert d.span_s > 1.5
    assert len(host.video_wall_s) > 48 * 4, "the host's own view went on"


async def offer_sdp(*kinds_directions: tuple[str, str]) -> str:
    pc = RTCPeerConnection()
    for kind, direction in kinds_directions:
        pc.addTransceiver(kind, direction=direction)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def test_bad_requests_get_a_status_and_a_reason(avatar: PreparedAvatar, speech_wav: Path) -> None:
    viewer_sdp = await offer_sdp(("video", "recvonly"), ("audio", "recvonly"))
    config = ServerConfig(offer_burst=30)  # a burst of bad offers from one client, all answered
    async with serving(avatar, config) as (base, app), aiohttp.ClientSession() as http:
        async with http.post(f"{base}/streams", json={}) as r:
            assert r.status == 201
            sid = (await r.json())["id"]
        cases = [
            ("whep", f"{base}/streams/{'0' * 32}/whep", viewer_sdp, SDP, 404, "no live stream"),
            ("whip", f"{base}/streams/{'0' * 32}/whip", viewer_sdp, SDP, 404, "no live stream"),
            ("whep", f"{base}/streams/{sid}/whep", viewer_sdp, "application/json", 415, "application/sdp"),
            ("whep", f"{base}/streams/{sid}/whep", "hello", SDP, 400, "not a session description"),
            ("whep", f"{base}/streams/{sid}/whep", "v=0\r\nm=video 9 nonsense\r\n", SDP, 400, "invalid SDP"),
            ("whep", f"{base}/streams/{sid}/whep", await offer_sdp(("audio", "recvonly")), SDP, 400,
             "needs a video m-line"),
            ("whep", f"{base}/streams/{sid}/whep", await offer_sdp(("video", "sendonly")), SDP, 400,
             "a viewer receives"),
            ("whip", f"{base}/streams/{sid}/whip", await offer_sdp(("video", "sendonly")), SDP, 400,
             "exactly one audio m-line"),
            ("whip", f"{base}/streams/{sid}/whip", await offer_sdp(("audio", "recvonly")), SDP, 400,
             "a publisher sends"),
        ]
        for what, url, body, content_type, status, reason in cases:
            async with http.post(url, data=body.encode(), headers={"Content-Type": content_type}) as r:
                message = (await r.json())["error"]
                assert r.status == status and reason in message, (what, body[:40], r.status, message)
        async with http.delete(f"{base}/streams/{sid}/whep/{'1' * 32}") as r:
            assert r.status == 404
        assert app[REGISTRY].active[sid].state == "streaming", "bad requests leave the stream alone"

        async def publish_to_the_hosts_stream(host_sid: str) -> None:
            await asyncio.sleep(1.0)
            with pytest.raises(SdpRefused) as refused:
                await post_sdp(f"{base}/streams/{host_sid}/whip", await offer_sdp(("audio", "sendonly")))
            assert refused.value.status == 409 and "microphone" in refused.value.message

        await stream_session(base, speech_wav, duration_s=2.0, during=publish_to_the_hosts_stream)


def mean_between(t: np.ndarray, values: np.ndarray, lo: float, hi: float) -> float:
    sel = (t > lo) & (t < hi)
    assert sel.sum() > 20, f"too few samples in ({lo:.1f}, {hi:.1f})"
    return float(values[sel].mean())


async def test_whip_voice_drives_the_mouth_and_one_publisher_at_a_time(avatar: PreparedAvatar,
                                                                      speech_wav: Path) -> None:
    """An aiortc publisher's speech (2 s silence, 4 s speech, 4 s silence) moves the mouth a WHEP viewer sees,
    as the microphone does; a second publisher meanwhile gets 409; after DELETE a new one is taken."""
    async with serving(avatar) as (base, app):
        async with aiohttp.ClientSession() as http, http.post(f"{base}/streams", json={}) as r:
            assert r.status == 201, await r.text()
            stream = app[REGISTRY].active[(await r.json())["id"]]  # a stream without a browser (POST /streams)
        viewer = WhepViewer(crop_box=mouth_box())
        await viewer.start(f"{base}/streams/{stream.id}/whep")
        await asyncio.sleep(1.0)
        whip = f"{base}/streams/{stream.id}/whip"
        publisher = WhipPublisher(speech_wav)
        await publisher.start(whip)
        t0 = time.monotonic()
        second = WhipPublisher(speech_wav)
        with pytest.raises(SdpRefused) as refused:
            await second.start(whip)
        await asyncio.sleep(1.0)
        audio_in_1s = stream.info()["audio_samples_in"]
        await asyncio.sleep(9.0)
        info = stream.info()
        assert await publisher.stop() == 200
        third = WhipPublisher(speech_wav)
        await third.start(whip)  # the voice is free again
        await third.stop()
        await viewer.stop()
        await stream.close()
    assert refused.value.status == 409 and "already has a WHIP publisher" in refused.value.message
    assert info["audio_samples_in"] > audio_in_1s > 0, "the published audio reaches the session's input"
    # 10 s were published; a shared host short of CPU delays the publisher's and the server's loops (6.1 s arrived
    # on one CI run): at least half of it arriving is what this asserts.
    assert info["audio_samples_in"] >= 5 * 48_000, info["audio_samples_in"]
    # Where the viewer hears the speech, not where the wav has it: on a busy machine the publisher's first packets
    # and the pipeline delay shift it by a second or more (CI 2026-12-02: a fixed 2.8-5.6 s window caught mostly
    # silence, 0.85 grey levels against 2.65 on a quiet machine).
    rms, at = np.array(viewer.got.audio_rms), np.array(viewer.got.audio_wall_s) - t0
    assert len(rms) > 0 and rms.max() > 1e-3, "the viewer heard nothing of the published speech"
    heard = at[rms > 0.2 * rms.max()]
    start_s, end_s = float(heard[0]), float(heard[-1])
    print(f"speech heard from {start_s:.2f} s to {end_s:.2f} s after the publisher was answered")
    assert start_s > 1.5, "the wav's first 2 s are silence"
    # (Most of it: audio late on a host short of CPU is silence, counted; 2.77 s heard with a busy loop taking one of
    # the two cores, 3.96 s without it.)
    assert 2.5 < end_s - start_s < 4.5, f"4 s of speech sent, {end_s - start_s:.2f} s heard"
    loud, hush = mean_between(at, rms, start_s, end_s), mean_between(at, rms, end_s + 0.5, 9.8)
    assert loud > 10 * max(hush, 1e-4), f"the viewer hears {loud:.4f} RMS in speech, {hush:.4f} in silence"
    crops, wall = viewer.got.crops, np.array(viewer.got.video_wall_s)
    motion = np.abs(np.diff(np.stack(crops), axis=0)).mean(axis=(1, 2))
    t = wall[1:] - t0
    speaking = mean_between(t, motion, start_s + 0.3, end_s - 0.3)
    quiet = max(mean_between(t, motion, 0.3, start_s - 0.5), mean_between(t, motion, end_s + 0.5, 9.8))
    print(f"mouth motion {speaking:.2f} while the viewer hears speech, {quiet:.2f} in its silences")
    # 3x, as test_live_webrtc: a host short of CPU holds pictures (skipped windows), which lowers both (2.64 vs 0.30
    # here in a quiet hour; 0.70 vs 0.33 on a CI run with a third of the cores taken by the hypervisor).
    assert speaking > 3 * quiet, f"mouth motion {speaking:.2f} while speaking vs {quiet:.2f} in silence"


async def test_keyframe_requests_are_gated() -> None:
    """Many viewers' PLIs within the interval make one keyframe now and one at the interval's end, not one each."""
    fired: list[float] = []
    gate = KeyframeGate(lambda: fired.append(time.monotonic()), interval_s=0.2)
    t0 = time.monotonic()
    for _ in range(10):
        gate.request()
    await asyncio.sleep(0.1)
    for _ in range(10):
        gate.request()
    await asyncio.sleep(0.6)
    assert gate.requests == 20 and len(fired) == 2, fired
    assert fired[0] - t0 < 0.05 and 0.18 <= fired[1] - fired[0] < 0.5
