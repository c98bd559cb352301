"""Fuzzing the routes of streams without a browser beside a live stream: POST /streams bodies, WHEP and WHIP
offers (the SDP mutator of harness/fuzz.py, seeded with the vendored corpus), the TTS WebSocket's messages and
POST /tokens. Every answer is a 2xx or a 4xx with a reason, every socket closes with a WebSocket code that
names a client's fault (never 1011 or an abnormal close), and the live stream beside them keeps streaming.

The mutations come from a seeded random.Random through harness.fuzz's mutator (the same one hypothesis
drives in tests/test_fuzz.py): a failure names its example's index, and the run is the same every time.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import aiohttp
import numpy as np

from engine.generator import PreparedAvatar
from harness.fuzz import RandomChoices, deep, json_value, mutate_sdp
from tests.test_streams_api import avatar, config, create, pcm16, serving  # noqa: F401  (avatar: a fixture)

REPO = Path(__file__).resolve().parent.parent
STREAM_BODIES, SDP_BODIES, SOCKETS, TOKEN_BODIES = 600, 600, 200, 300
CLIENT_FAULT_CLOSES = {1000, 1001, 1007, 1008, 1009}
OPERATOR_TOKEN = "fuzz-operator-token-0123456789abcdef"


def corpus() -> list[str]:
    return [p.read_text(errors="replace") for p in sorted((REPO / "tests/data/sdp").glob("*.sdp"))] or [""]


def stream_body(c: RandomChoices) -> bytes:
    kind = c.integer(0, 5)
    if kind == 0:
        return json.dumps(json_value(c)).encode()
    if kind == 1:
        return c.blob(300)
    if kind == 2:
        return deep(c.pick([50, 2000, 20000]), '{"persona": 1}').encode()
    fields = ("persona", "instructions", "outputs", "audio_file", "loop", "avatar", c.text(6))
    body: dict[str, object] = {c.pick(fields): json_value(c) for _ in range(c.integer(0, 4))}
    if kind >= 4:
        keys = ("rtmp", "record_dir", "size", "fit", "background", c.text(6))
        body["outputs"] = {c.pick(keys): c.pick([json_value(c), c.text(30), "../../etc", "720x1280", ["rtmp://"]])
                           for _ in range(c.integer(0, 3))}
    return json.dumps(body).encode()


STATUSES: dict[str, dict[int, int]] = {}


async def check_answer(r: aiohttp.ClientResponse, what: str) -> None:
    counts = STATUSES.setdefault(what.split(" #")[0], {})
    counts[r.status] = counts.get(r.status, 0) + 1
    assert r.status < 500, f"{what}: {r.status} {await r.text()}"
    if r.status >= 400:
        text = await r.text()
        reason = json.loads(text).get("error") if r.content_type == "application/json" else text
        assert reason, f"{what}: {r.status} without a reason"


async def frames_sent(http: aiohttp.ClientSession, base: str, sid: str) -> int:
    async with http.get(f"{base}/streams") as r:
        streams = {s["id"]: s for s in (await r.json())["streams"]}
    return int(streams[sid]["frames_sent"])


async def test_fuzzed_stream_routes_beside_a_live_stream(avatar: PreparedAvatar) -> None:  # noqa: F811
    c = RandomChoices(random.Random(2026))
    seeds = corpus()
    # With access control on (the operator's token on every request), so that POST /tokens mints.
    cfg = config(max_sessions=3, offer_rate_per_s=1000.0, offer_burst=1000, token=OPERATOR_TOKEN)
    bearer = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    async with serving(cfg, avatar) as (base, _), aiohttp.ClientSession(headers=bearer) as http:
        live = str((await create(http, base))["id"])  # the stream that must keep streaming throughout
        for _ in range(200):  # until its clock has started (10 s at most)
            if (before := await frames_sent(http, base, live)) > 0:
                break
            await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()

        for i in range(STREAM_BODIES):
            body = stream_body(c)
            ctype = c.pick(["application/json"] * 4 + ["text/plain", "application/sdp"])
            async with http.post(f"{base}/streams", data=body, headers={"Content-Type": ctype}) as r:
                await check_answer(r, f"POST /streams #{i} {body[:120]!r}")
                if r.status == 201:
                    async with http.delete(f"{base}/streams/{(await r.json())['id']}") as d:
                        assert d.status == 200

        for i in range(SDP_BODIES):
            route = c.pick(["whep", "whip"])
            sdp = mutate_sdp(c, c.pick(seeds))
            ctype = c.pick(["application/sdp"] * 5 + ["application/json"])
            async with http.post(f"{base}/streams/{live}/{route}", data=sdp.encode(errors="replace"),
                                 headers={"Content-Type": ctype}) as r:
                await check_answer(r, f"POST {route} #{i}")
                if r.status == 201:  # an offer that happens to be answerable: let its resource go again
                    async with http.delete(f"{base}{r.headers['Location']}") as d:
                        assert d.status < 500

        for i in range(SOCKETS):
            timeout = aiohttp.ClientWSTimeout(ws_close=5)
            async with http.ws_connect(f"{base}/streams/{live}/audio", timeout=timeout) as ws:
                for _ in range(c.integer(1, 4)):
                    kind = c.integer(0, 4)
                    if kind == 0:
                        await ws.send_str(json.dumps(json_value(c)))
                    elif kind == 1:
                        header = {"type": "start", "format": c.pick(["pcm_s16le", "opus", c.text(5)]),
                                  "sample_rate_hz": c.pick([16000, 0, -1, 10**9, json_value(c)]),
                                  "channels": c.pick([1, 2, 0, 9, json_value(c)])}
                        await ws.send_str(json.dumps(header))
                    elif kind == 2:
                        await ws.send_bytes(c.blob(2001))
                    elif kind == 3:
                        await ws.send_str(c.pick(['{"type": "interrupt"}', '{"type": "flush"}', deep(3000),
                                                  c.text(40)]))
                    else:
                        await ws.send_bytes(pcm16(np.zeros(c.integer(0, 4800), np.float32)))
                    if ws.closed:
                        break
                if not ws.closed:
                    await ws.send_str('{"type": "flush"}')
                await ws.close()
            code = ws.close_code
            assert code in CLIENT_FAULT_CLOSES, f"audio socket #{i} closed with {code}"

        for i in range(TOKEN_BODIES):
            body = json.dumps(json_value(c) if c.integer(0, 1) else
                              {"stream": c.pick([live, "*", c.text(10), json_value(c)]),
                               "role": c.pick(["view", "publish", "control", "operator", json_value(c)]),
                               "ttl_s": c.pick([60, 0, -5, 10**12, json_value(c)])}).encode()
            async with http.post(f"{base}/tokens", data=body, headers={"Content-Type": "application/json"}) as r:
                await check_answer(r, f"POST /tokens #{i} {body[:120]!r}")

        # The live stream kept streaming through all of it: 48 fps on its clock, less a margin for a loaded machine.
        elapsed = asyncio.get_running_loop().time() - started
        sent = await frames_sent(http, base, live) - before
        print("answers:", STATUSES)
        print(f"live stream: {sent} frames in {elapsed:.1f} s of fuzzing ({sent / elapsed:.1f} fps)")
        assert sent >= 0.85 * 48 * elapsed, f"the live stream sent {sent} frames in {elapsed:.1f} s of fuzzing"
