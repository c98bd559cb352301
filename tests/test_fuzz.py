"""Fuzzing the signaling endpoints (hypothesis): mutated offers through the offer check in process (10,000),
through a real server beside a live stream, and control WebSocket messages. Every malformed offer gets a
4xx with a reason, nothing gets a 5xx, and the live stream keeps its frame rate."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect as ws_connect

from harness.background_stream import BackgroundStream
from harness.fuzz import CHROME_OFFER, FIREFOX_OFFER, aiortc_offer, control_messages, corpus_offers, offer_bodies
from streaming.offers import OfferError, parse_offer
from tests.conftest import start_server, stop_server

# Measured here (2 cores): 10,000 mutated offers through the offer check in ~25 s, hypothesis included.
IN_PROCESS_EXAMPLES = 10_000
HTTP_EXAMPLES = 300
WS_EXAMPLES = 300
T = TypeVar("T")
FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def seeds() -> list[str]:
    return [asyncio.run(aiortc_offer()), CHROME_OFFER, FIREFOX_OFFER]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    offers = corpus_offers()
    assert len(offers) >= 50, "tests/data/sdp/ lost its corpus"
    return offers


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


def test_10000_mutated_offers_are_admitted_or_refused_with_a_reason(seeds: list[str], corpus: list[str]) -> None:
    outcomes: Counter[str] = Counter()

    @settings(FUZZ, max_examples=IN_PROCESS_EXAMPLES)
    @given(offer_bodies(seeds, corpus))
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


def test_offers_the_check_admits_are_answered_by_aiortc(seeds: list[str], corpus: list[str]) -> None:
    """No admitted offer may fail later, in aiortc, after a session was built for it."""
    admitted = [0]

    @settings(FUZZ, max_examples=300)
    @given(offer_bodies(seeds, corpus))
    def check(body: bytes) -> None:
        try:
            desc = parse_offer(body)
        except OfferError:
            return
        admitted[0] += 1
        asyncio.run(answer_like_the_server(desc))

    check()
    assert admitted[0] >= 10, f"only {admitted[0]} of 300 mutated offers were admitted: the check is too strict?"


def post(port: int, path: str, body: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def fps_between(times: list[float], t0: float, t1: float) -> float:
    t = np.array(times)
    return float(((t >= t0) & (t <= t1)).sum() / (t1 - t0))


def generated(strategy: st.SearchStrategy[T], n: int) -> list[T]:
    """n examples of a strategy, made before the clock starts: hypothesis is slower than the server."""
    out: list[T] = []

    @settings(FUZZ, max_examples=n)
    @given(strategy)
    def collect(example: T) -> None:
        out.append(example)

    collect()
    return out


@pytest.mark.webrtc
def test_fuzzed_offers_and_control_messages_beside_a_live_stream(tmp_path: Path, speech_wav: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 seeds: list[str], corpus: list[str]) -> None:
    # The fuzzer is one client sending as fast as it can: its rate limits are raised here so that every
    # input reaches the parsers (the limits have tests of their own).
    for name, value in (("OFFER_BURST", "100000"), ("OFFER_RATE_PER_S", "100000"),
                        ("CONTROL_BURST", "100000"), ("CONTROL_RATE_PER_S", "100000")):
        monkeypatch.setenv(f"AVATAR_ENGINE_{name}", value)
    bodies = generated(offer_bodies(seeds, corpus), HTTP_EXAMPLES)
    messages = generated(control_messages(), WS_EXAMPLES)
    server = start_server(tmp_path)
    port = int(server.url.rsplit(":", 1)[1])
    statuses: Counter[int] = Counter()
    replies: Counter[str] = Counter()
    try:
        live = BackgroundStream(server.url, speech_wav)
        session_id = live.started()
        t0 = time.monotonic()
        for body in bodies:
            status, answer = post(port, "/offer", body)
            statuses[status] += 1
            assert status in (200, 400, 413, 422, 429), (status, answer, body[:300])
            if status == 200:
                assert post(port, f"/sessions/{answer['session_id']}/close", b"{}")[0] == 200
            else:
                assert isinstance(answer.get("error"), str) and answer["error"], (status, answer)
        t_offers = time.monotonic()
        with ws_connect(f"ws://127.0.0.1:{port}/sessions/{session_id}/control", open_timeout=10) as ws:
            for message in messages:
                ws.send(message)
                reply = json.loads(ws.recv(timeout=10))
                assert isinstance(reply.get("ok"), bool), (message[:200], reply)
                assert reply["ok"] or (isinstance(reply.get("error"), str) and reply["error"]), (message[:200], reply)
                replies["ok" if reply["ok"] else reply["error"].split(":")[0][:30]] += 1
        t1 = time.monotonic()
        with urllib.request.urlopen(server.url + "/api/sessions", timeout=10) as r:
            counters = json.loads(r.read())["sessions"]
        received = live.stop()
        with urllib.request.urlopen(server.url + "/api/sessions", timeout=10) as r:
            left = json.loads(r.read())["sessions"]
    finally:
        stop_server(server)
    fps = fps_between(received, t0, t1)
    print(f"\n{fps:.1f} fps received; {len(bodies)} offers {dict(statuses)} in {t_offers - t0:.1f} s, {len(messages)} "
          f"control messages in "
          f"{t1 - t_offers:.1f} s: {replies.most_common(6)}")
    assert "Traceback" not in server.log(), "a traceback in the server log"
    assert statuses[200] > 0 and statuses[400] > 0
    assert replies["ok"] > 0 and sum(replies.values()) > replies["ok"]
    live_counters = next(c for c in counters if c["id"] == session_id)
    assert fps >= 45.0, (f"the live stream got {fps:.1f} fps while the fuzzers ran ({t1 - t0:.1f} s); server: "
                         f"{ {k: live_counters[k] for k in ('frames_sent', 'frames_repeated', 'frames_skipped')} }")
    assert left == [], "sessions were left behind"
