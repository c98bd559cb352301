"""Fuzzing the signaling endpoints (hypothesis): mutated offers through the offer check in process (10,000),
through a real server beside a live stream, and control WebSocket messages. Every malformed offer gets a
4xx with a reason, nothing gets a 5xx, and the live stream keeps its frame rate."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from hypothesis import HealthCheck, given, settings
from websockets.sync.client import connect as ws_connect

from harness.fuzz import CHROME_OFFER, FIREFOX_OFFER, aiortc_offer, control_messages, offer_bodies
from harness.webrtc_client import Received, stream_session
from streaming.offers import OfferError, parse_offer
from tests.conftest import start_server, stop_server

# Measured here (2 cores): 10,000 mutated offers through the offer check in ~25 s, hypothesis included.
IN_PROCESS_EXAMPLES = 10_000
HTTP_EXAMPLES = 300
WS_EXAMPLES = 300
FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def seeds() -> list[str]:
    return [asyncio.run(aiortc_offer()), CHROME_OFFER, FIREFOX_OFFER]


async def answer_like_the_server(desc: RTCSessionDescription) -> str:
    """What streaming/webrtc.py does with an admitted offer, without a session: set it, add the two tracks,
    answer; then close."""
    pc = RTCPeerConnection()
    try:
        await pc.setRemoteDescription(desc)
        pc.addTrack(AudioStreamTrack())
        pc.addTrack(VideoStreamTrack())
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp
    finally:
        await asyncio.wait_for(pc.close(), 5)


def body_of(sdp: str) -> bytes:
    return json.dumps({"sdp": sdp, "type": "offer"}).encode()


def test_seed_offers_are_admitted_and_answered(seeds: list[str]) -> None:
    for sdp in seeds:
        answer = asyncio.run(answer_like_the_server(parse_offer(body_of(sdp))))
        assert "m=audio" in answer and "m=video" in answer


def test_10000_mutated_offers_are_admitted_or_refused_with_a_reason(seeds: list[str]) -> None:
    outcomes: Counter[str] = Counter()

    @settings(FUZZ, max_examples=IN_PROCESS_EXAMPLES)
    @given(offer_bodies(seeds))
    def check(body: bytes) -> None:
        try:
            parse_offer(body)
        except OfferError as e:
            assert str(e), "a refusal without a reason"
            outcomes[str(e).split(":")[0][:40]] += 1
        else:
            outcomes["admitted"] += 1

    t0 = time.monotonic()
    check()
    wall_s = time.monotonic() - t0
    print(f"\n{sum(outcomes.values())} offers in {wall_s:.1f} s; top outcomes: {outcomes.most_common(12)}")
    assert sum(outcomes.values()) >= IN_PROCESS_EXAMPLES * 0.95
    assert outcomes["admitted"] > 0 and sum(outcomes.values()) - outcomes["admitted"] > IN_PROCESS_EXAMPLES / 2


def test_offers_the_check_admits_are_answered_by_aiortc(seeds: list[str]) -> None:
    """No admitted offer may fail later, in aiortc, after a session was built for it."""
    admitted = [0]

    @settings(FUZZ, max_examples=150)
    @given(offer_bodies(seeds))
    def check(body: bytes) -> None:
        try:
            desc = parse_offer(body)
        except OfferError:
            return
        admitted[0] += 1
        asyncio.run(answer_like_the_server(desc))

    check()
    assert admitted[0] >= 10, f"only {admitted[0]} of 150 mutated offers were admitted: the check is too strict?"


class LiveStream:
    """A real aiortc peer streaming from the server in a thread of its own, until stop()."""

    def __init__(self, url: str, wav: Path) -> None:
        self.url, self.wav = url, wav
        self.session_id = ""
        self.started = threading.Event()
        self._stop = threading.Event()
        self.got: Received | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        async def during(sid: str) -> None:
            self.session_id = sid
            await asyncio.sleep(2.0)  # connected and streaming by then
            self.started.set()
            await asyncio.get_running_loop().run_in_executor(None, self._stop.wait, 120)

        try:
            self.got, _ = asyncio.run(stream_session(self.url, self.wav, duration_s=3.0, during=during, loop=True))
        except BaseException as e:
            self.error = e
            self.started.set()

    def stop(self) -> Received:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.error is not None:
            raise self.error
        assert self.got is not None
        return self.got


def post(port: int, path: str, body: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def fps_between(got: Received, t0: float, t1: float) -> float:
    t = np.array(got.video_wall_s)
    return float(((t >= t0) & (t <= t1)).sum() / (t1 - t0))


@pytest.mark.webrtc
def test_fuzzed_offers_and_control_messages_beside_a_live_stream(tmp_path: Path, speech_wav: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 seeds: list[str]) -> None:
    # The fuzzer is one client sending as fast as it can: its rate limits are raised here so that every
    # input reaches the parsers (the limits have tests of their own).
    for name, value in (("OFFER_BURST", "100000"), ("OFFER_RATE_PER_S", "100000"),
                        ("CONTROL_BURST", "100000"), ("CONTROL_RATE_PER_S", "100000")):
        monkeypatch.setenv(f"AVATAR_ENGINE_{name}", value)
    server = start_server(tmp_path)
    port = int(server.url.rsplit(":", 1)[1])
    statuses: Counter[int] = Counter()
    replies: Counter[str] = Counter()
    try:
        live = LiveStream(server.url, speech_wav)
        assert live.started.wait(60), "the live stream did not start"
        t0 = time.monotonic()

        @settings(FUZZ, max_examples=HTTP_EXAMPLES)
        @given(offer_bodies(seeds))
        def fuzz_offer(body: bytes) -> None:
            status, answer = post(port, "/offer", body)
            statuses[status] += 1
            assert status in (200, 400, 413, 422, 429), (status, answer, body[:300])
            if status == 200:
                assert post(port, f"/sessions/{answer['session_id']}/close", b"{}")[0] == 200
            else:
                assert isinstance(answer.get("error"), str) and answer["error"], (status, answer)

        fuzz_offer()
        with ws_connect(f"ws://127.0.0.1:{port}/sessions/{live.session_id}/control", open_timeout=10) as ws:

            @settings(FUZZ, max_examples=WS_EXAMPLES)
            @given(control_messages())
            def fuzz_control(message: str) -> None:
                ws.send(message)
                reply = json.loads(ws.recv(timeout=10))
                assert isinstance(reply.get("ok"), bool), (message[:200], reply)
                assert reply["ok"] or (isinstance(reply.get("error"), str) and reply["error"]), (message[:200], reply)
                replies["ok" if reply["ok"] else reply["error"].split(":")[0][:30]] += 1

            fuzz_control()
        t1 = time.monotonic()
        got = live.stop()
        with urllib.request.urlopen(server.url + "/api/sessions", timeout=10) as sessions:
            left = json.loads(sessions.read())["sessions"]
    finally:
        stop_server(server)
    print(f"\noffers: {dict(statuses)} in {t1 - t0:.1f} s; control replies: {replies.most_common(8)}")
    assert "Traceback" not in server.log(), "a traceback in the server log"
    assert statuses[200] > 0 and statuses[400] > 0
    assert replies["ok"] > 0 and sum(replies.values()) > replies["ok"]
    fps = fps_between(got, t0, t1)
    assert fps >= 45.0, f"the live stream got {fps:.1f} fps while the fuzzers ran ({t1 - t0:.1f} s)"
    assert left == [] or all(s["id"] == live.session_id for s in left), "fuzzed sessions were left behind"
