"""One client floods the real server with 200 garbage offers/s and 1,000 control messages/s for 10 s: the
flood is refused (400/429, control sockets closed 1008), a live stream on it keeps its frame rate and renders
most of its windows, and a new client from another address connects within 2 s meanwhile.

The flood itself is cheap for the server (measured: 0.3 ms of CPU an offer refused with 429, 6% of a core
at 200/s; the control flood is cut to 20 messages/s and a handful of sockets by its limits). How many
windows it costs the live stream depends on the machine, so the test prints it and bounds only the gross
case (a flood that reached the stream, with sessions or re-plans, would starve it): one session holds most
of the server's interpreter lock on a machine half as fast as ours (measured 2026-12-01: 10 windows skipped
a second at 1-frame windows with no flood at all), and then every request served takes frames from it.
Two precautions keep the test's own load out of the count:
- The flooding client runs at the lowest CPU priority (`run_as_remote`): an attacker's CPU is not the server's.
- The server renders windows of 4 frames (`HEADROOM`): the same pictures for about half the Python time.
The newcomer's own session renders beside the live one while it connects: the live stream's skips over its
life are printed apart.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from harness.background_stream import BackgroundStream
from harness.webrtc_client import MIN_RECEIVED_FPS, frames_held
from streaming.webrtc import NO_ICE_SERVERS
from tests.conftest import start_server, stop_server

pytestmark = pytest.mark.webrtc
JSON = {"Content-Type": "application/json"}
FLOOD_S = 10.0
CONTROL_S = 5.0
MOST_SKIPPED = 0.5  # of the live stream's frames during the flood (measured 5-27% on a slow machine)
HEADROOM = "[engine]\nwindow_frames = 4\npipeline_delay_s = 0.15\n"
T = TypeVar("T")


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


def run_as_remote(flood: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs the flood in a thread at the lowest CPU priority (Linux's nice, per thread): on a network the
    attacker's CPU is not the server's; here both share two cores."""

    def run() -> T:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        return asyncio.run(flood())

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def session_counters(url: str, session_id: str) -> dict:
    with urllib.request.urlopen(url + "/api/sessions", timeout=10) as r:
        return next(s for s in json.loads(r.read())["sessions"] if s["id"] == session_id)


def test_a_flooding_client_does_not_reach_a_live_stream(tmp_path: Path, speech_wav: Path) -> None:
    config = tmp_path / "headroom.toml"
    config.write_text(HEADROOM)
    server = start_server(tmp_path, "--config", str(config))
    try:
        live = BackgroundStream(server.url, speech_wav)
        session_id = live.started()
        control_from = session_counters(server.url, session_id)
        tc0 = time.monotonic()
        time.sleep(CONTROL_S)  # the observation span of the control, not a wait for something to happen
        tc1 = time.monotonic()
        before = session_counters(server.url, session_id)

        async def flood() -> tuple[Counter[int], Counter[str], tuple[float, int]]:
            until = time.monotonic() + FLOOD_S

            async def newcomer() -> tuple[float, int]:
                """Seconds to connect, and the live stream's frames skipped while the newcomer's session lived."""
                await asyncio.sleep(FLOOD_S / 2)
                loop = asyncio.get_running_loop()
                skipped_before = (await loop.run_in_executor(None, session_counters, server.url, session_id))
                connect_s = await connect_from(server.url, "127.0.0.2")  # closed when it returns
                skipped_after = (await loop.run_in_executor(None, session_counters, server.url, session_id))
                return connect_s, skipped_after["frames_skipped"] - skipped_before["frames_skipped"]

            return await asyncio.gather(flood_offers(server.url, 200, until),
                                        flood_control(server.url, session_id, 1000, until), newcomer())

        t0 = time.monotonic()
        offers, control, (newcomer_s, newcomer_skipped) = run_as_remote(flood)
        t1 = time.monotonic()
        after = session_counters(server.url, session_id)
        received = np.array(live.stop())
    finally:
        stop_server(server)
    # A frame of pipeline delay added (counted) holds the picture a frame: a busy machine's latency, not lost rate.
    held = frames_held(after) - frames_held(before)
    fps = float((((received >= t0) & (received <= t1)).sum() + held) / (t1 - t0))
    # The same stream just before the flood: on a shared host short of CPU both are below 48, and the flood must
    # not take the live stream below what that host gave it without one.
    control_fps = float((((received >= tc0) & (received <= tc1)).sum() + frames_held(before)
                         - frames_held(control_from)) / (tc1 - tc0))
    skipped = after["frames_skipped"] - before["frames_skipped"]
    control_skipped = before["frames_skipped"] - control_from["frames_skipped"]
    print(f"\noffers {dict(offers)}; control {dict(control)}; newcomer connected in {newcomer_s:.2f} s "
          f"(live stream skipped {newcomer_skipped} frames meanwhile); live stream {fps:.1f} fps ({held} frames held; "
          f"{control_fps:.1f} fps before the flood), "
          f"frames repeated +{after['frames_repeated'] - before['frames_repeated']}, "
          f"skipped +{skipped} (+{control_skipped} in the {CONTROL_S:g} s before the flood)")
    assert set(offers) <= {400, 429} and offers[429] > 0.9 * sum(offers.values()), offers
    assert control["refused"] > 0 and control["close 1008"] > 0, control
    assert "Traceback" not in server.log()
    # (A connect the flood held up would wait for the flood's end, 10 s; 2.85 s measured with a busy loop taking one
    # of the two cores, 2.08 s without it.)
    assert newcomer_s < 4.0, f"a new client took {newcomer_s:.2f} s to connect during the flood"
    assert skipped <= MOST_SKIPPED * 48 * (t1 - t0), (f"{skipped} frames skipped (windows never rendered) during "
                                                      f"the flood, {control_skipped} in the {CONTROL_S:g} s before it")
    assert fps >= min(47.5, control_fps - 1.0) and fps >= MIN_RECEIVED_FPS, (
        f"the live stream got {fps:.1f} fps during the flood, {control_fps:.1f} before it")
