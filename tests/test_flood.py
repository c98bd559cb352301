"""One client floods the real server (default settings) with 200 garbage offers/s and 1,000 control messages/s
for 10 s: a live stream on it keeps its frame rate and skips no more windows than the machine does without a
flood, and a new client from another address connects within 2 s meanwhile.

The flood itself is cheap for the server (measured: 0.3 ms of CPU an offer refused with 429, 6% of a core
at 200/s; the control flood is cut to 20 messages/s and a handful of sockets by its limits), so a window
skipped during it comes from the machine, not the flood: a busy machine skips windows with no flood at all.
The test watches the stream for CONTROL_S before the flood and allows the flood that rate, plus a couple
of frames for the newcomer's own session, which renders on the same cores while it connects (a CI run
skipped 1 frame then, 0 in the control span).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections import Counter
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from harness.background_stream import BackgroundStream
from streaming.webrtc import NO_ICE_SERVERS
from tests.conftest import start_server, stop_server

pytestmark = pytest.mark.webrtc
JSON = {"Content-Type": "application/json"}
FLOOD_S = 10.0
CONTROL_S = 5.0
NEWCOMER_SKIPS = 2


async def sleep_until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.monotonic()))


async def flood_offers(url: str, per_s: float, until: float) -> Counter[int]:
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession() as http:

        async def one() -> None:
            async with http.post(url + "/offer", data=b"garbage", headers=JSON) as r:
                statuses[r.status] += 1
                await r.read()

        tasks, t0 = [], time.monotonic()
        for i in range(int(per_s * (until - t0))):
            tasks.append(asyncio.create_task(one()))
            await sleep_until(t0 + (i + 1) / per_s)
        await asyncio.gather(*tasks)
    return statuses


async def flood_control(url: str, session_id: str, per_s: float, until: float) -> Counter[str]:
    """Messages at per_s on one socket; when the server closes it, a new one at once."""
    seen: Counter[str] = Counter()
    message = json.dumps({"type": "instruction", "text": "smile"})
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < until:
            try:
                async with http.ws_connect(f"{url}/sessions/{session_id}/control") as ws:
                    seen["sockets"] += 1

                    async def read(ws: aiohttp.ClientWebSocketResponse = ws) -> None:
                        async for msg in ws:
                            seen["ok" if json.loads(msg.data)["ok"] else "refused"] += 1

                    reader = asyncio.create_task(read())
                    t0, i = time.monotonic(), 0
                    while not ws.closed and time.monotonic() < until:
                        for _ in range(10):
                            await ws.send_str(message)
                            seen["sent"] += 1
                        i += 10
                        await sleep_until(t0 + i / per_s)
                    if not ws.closed:  # the flood is over, not the socket
                        await ws.close()
                    await asyncio.wait_for(reader, 10)
                    seen[f"close {ws.close_code}"] += 1
            except (aiohttp.ClientError, ConnectionError) as e:
                seen[type(e).__name__] += 1
                await asyncio.sleep(0.05)
    return seen


async def connect_from(url: str, address: str) -> float:
    """A new viewer whose HTTP comes from `address`: seconds from its offer to a connected peer."""
    pc = RTCPeerConnection(NO_ICE_SERVERS)  # as the server: no STUN server off the machine
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def changed() -> None:
        if pc.connectionState == "connected":
            connected.set()

    pc.addTransceiver("audio", direction="sendrecv")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    t0 = time.monotonic()
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        body = json.dumps({"sdp": pc.localDescription.sdp, "type": "offer"})
        async with http.post(url + "/offer", data=body, headers=JSON) as r:
            answer = await r.json()
            assert r.status == 200, answer
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
            await asyncio.wait_for(connected.wait(), 10)
            return time.monotonic() - t0
        finally:
            async with http.post(f"{url}/sessions/{answer['session_id']}/close") as r:
                assert r.status == 200
            await pc.close()


def session_counters(url: str, session_id: str) -> dict:
    with urllib.request.urlopen(url + "/api/sessions", timeout=10) as r:
        return next(s for s in json.loads(r.read())["sessions"] if s["id"] == session_id)


def test_a_flooding_client_does_not_reach_a_live_stream(tmp_path: Path, speech_wav: Path) -> None:
    server = start_server(tmp_path)
    try:
        live = BackgroundStream(server.url, speech_wav)
        session_id = live.started()
        control_from = session_counters(server.url, session_id)
        time.sleep(CONTROL_S)  # the observation span of the control, not a wait for something to happen
        before = session_counters(server.url, session_id)

        async def flood() -> tuple[Counter[int], Counter[str], float]:
            until = time.monotonic() + FLOOD_S

            async def newcomer() -> float:
                await asyncio.sleep(FLOOD_S / 2)
                return await connect_from(server.url, "127.0.0.2")

            return await asyncio.gather(flood_offers(server.url, 200, until),
                                        flood_control(server.url, session_id, 1000, until), newcomer())

        t0 = time.monotonic()
        offers, control, newcomer_s = asyncio.run(flood())
        t1 = time.monotonic()
        after = session_counters(server.url, session_id)
        received = np.array(live.stop())
    finally:
        stop_server(server)
    fps = float(((received >= t0) & (received <= t1)).sum() / (t1 - t0))
    skipped = after["frames_skipped"] - before["frames_skipped"]
    control_skipped = before["frames_skipped"] - control_from["frames_skipped"]
    print(f"\noffers {dict(offers)}; control {dict(control)}; newcomer connected in {newcomer_s:.2f} s; "
          f"live stream {fps:.1f} fps, frames repeated +{after['frames_repeated'] - before['frames_repeated']}, "
          f"skipped +{skipped} (+{control_skipped} in the {CONTROL_S:g} s before the flood)")
    assert set(offers) <= {400, 429} and offers[429] > 0.9 * sum(offers.values()), offers
    assert control["refused"] > 0 and control["close 1008"] > 0, control
    assert "Traceback" not in server.log()
    assert newcomer_s < 2.0, f"a new client took {newcomer_s:.2f} s to connect during the flood"
    # The newcomer's own session prepares and renders on the same cores for a second or two: real work the test
    # adds on purpose, not the flood's. A flood that reached the stream skips tens of frames, not two.
    allowed = round(control_skipped * FLOOD_S / CONTROL_S) + NEWCOMER_SKIPS
    assert skipped <= allowed, (f"{skipped} frames skipped (windows never rendered) during the flood, "
                                f"{control_skipped} in the {CONTROL_S:g} s before it")
    assert fps >= 47.5, f"the live stream got {fps:.1f} fps during the flood"
