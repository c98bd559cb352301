"""Access control on the real server process (`--token`): an authorised aiortc peer streams and is directed
with a control token, the web page works from /?token=..., and no token ever reaches the server's log."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from harness.browser import chromium_page
from harness.webrtc_client import delivery, post_json, stream_session
from tests.conftest import ServerProcess, speech_then_silence, start_server, stop_server, write_wav

SECRET = secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # -v: the access log is on, so the test below sees what it would write.
    srv = start_server(tmp_path_factory.mktemp("secured"), f"--token={SECRET}", "-v")
    yield srv
    stop_server(srv)


def mint(srv: ServerProcess, stream: str, role: str, ttl_s: int = 600) -> str:
    status, body = post_json(srv.url + "/tokens", {"stream": stream, "role": role, "ttl_s": ttl_s}, token=SECRET)
    assert status == 200, body
    return body["token"]


def get(url: str, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def sessions_left(srv: ServerProcess, within_s: float) -> list[dict]:
    deadline = time.monotonic() + within_s
    while (left := get(srv.url + "/api/sessions", SECRET)[1]["sessions"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.mark.webrtc
def test_an_authorised_peer_streams_and_is_directed_with_a_control_token(secured: ServerProcess, speech_wav) -> None:
    publish = mint(secured, "*", "publish")
    assert get(secured.url + "/api/sessions", publish)[0] == 403  # a publisher may not list the streams
    outcomes: dict[str, object] = {}

    async def direct(sid: str) -> None:
        loop = asyncio.get_running_loop()
        control = await loop.run_in_executor(None, mint, secured, sid, "control")
        other = await loop.run_in_executor(None, mint, secured, "f" * 32, "control")
        view = await loop.run_in_executor(None, mint, secured, sid, "view")
        url = f"{secured.url}/sessions/{sid}/control"
        await asyncio.sleep(1.0)
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url, params={"token": control}) as ws:  # as the browser sends it
                await ws.send_json({"type": "instruction", "text": "smile and nod"})
                outcomes["query"] = await asyncio.wait_for(ws.receive_json(), 5)
            async with http.ws_connect(url, headers={"Authorization": f"Bearer {control}"}) as ws:
                await ws.send_json({"type": "persona", "text": "a calm narrator"})
                outcomes["header"] = await asyncio.wait_for(ws.receive_json(), 5)
            for name, token in (("other stream", other), ("view role", view), ("publish *", publish), ("none", None)):
                try:
                    async with http.ws_connect(url, params={"token": token} if token else None):
                        outcomes[name] = 101
                except aiohttp.WSServerHandshakeError as e:
                    outcomes[name] = e.status
            async with http.get(secured.url + "/api/sessions", headers={"Authorization": f"Bearer {SECRET}"}) as r:
                outcomes["listed"] = [s["id"] for s in (await r.json())["sessions"]]

    got, sid = asyncio.run(stream_session(secured.url, speech_wav, duration_s=5.0, during=direct, token=publish))
    assert re.fullmatch(r"[0-9a-f]{32}", sid)
    assert outcomes["query"] == {"ok": True, "type": "instruction"}
    assert outcomes["header"] == {"ok": True, "type": "persona"}
    assert (outcomes["other stream"], outcomes["view role"], outcomes["publish *"], outcomes["none"]) == (
        403, 403, 403, 401)
    assert outcomes["listed"] == [sid]
    d = delivery(got)
    d.assert_live("the authorised peer")
    assert d.span_s >= 3.0, d
    # stream_session closed it with the session token the answer handed back (publish "*" may not).
    assert sessions_left(secured, 5.0) == []


@pytest.mark.browser
def test_the_page_works_with_a_token_in_its_url(secured: ServerProcess, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "mic.wav", speech_then_silence(0.5, 4.0, 0.5))
    publish = mint(secured, "*", "publish")
    errors: list[str] = []
    closes_before = closes_logged(secured)
    with chromium_page(tmp_path / "profile", wav) as page:
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{secured.url}/?token={publish}", timeout=15_000)
        assert "token" not in page.url, "the token stays out of the address bar"
        page.click("#start")
        page.wait_for_function("() => window.avatarStats.state === 'streaming'", timeout=30_000)
        page.wait_for_function("() => document.getElementById('control-state').textContent === 'ready'",
                               timeout=10_000)
        page.click("button[data-say='smile']")
        page.wait_for_function(
            "() => document.getElementById('control-state').textContent === 'sent (instruction)'", timeout=10_000)
        page.click("#stop")
        page.wait_for_function("() => window.avatarStats.state === 'closed'", timeout=10_000)
        assert sessions_left(secured, 5.0) == [], "Stop closed the session with its token"
        # Leaving the page: the keepalive fetch carries the token and frees the session at once.
        page.reload()
        page.click("#start")
        page.wait_for_function("() => window.avatarStats.state === 'streaming'", timeout=30_000)
        assert len(get(secured.url + "/api/sessions", SECRET)[1]["sessions"]) == 1
        page.goto("about:blank", timeout=15_000)
        assert sessions_left(secured, 5.0) == [], "leaving the page freed the session"
    # Both closes were the page's own authorised requests (Stop, then the keepalive fetch on pagehide). The page's
    # peer connection ends as it leaves too, and on a loaded machine the server may notice that first: the fetch then
    # finds the session gone (404), still past the access control, which would have answered 401 or 403 first.
    deadline = time.monotonic() + 5.0
    while closes_logged(secured) < closes_before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert closes_logged(secured) == closes_before + 2, secured.log()[-3000:]
    assert errors == [], f"errors in the page: {errors}"


def closes_logged(srv: ServerProcess) -> int:
    """POST /sessions/{id}/close in the access log (on with -v) that the access control let through: answered 200,
    or 404 where the session had already ended."""
    return len(re.findall(r"POST /sessions/[0-9a-f]{32}/close (?:200|404)", srv.log()))


def test_no_token_reaches_the_log(secured: ServerProcess) -> None:
    """After requests that carry the secret and scoped tokens every way the API takes them."""
    control = mint(secured, "0" * 32, "control")
    assert get(secured.url + "/api/sessions", SECRET)[0] == 200
    assert get(secured.url + "/metrics?token=" + SECRET)[0] == 401  # a query token counts only on the upgrade
    for token in (SECRET, control):
        req = urllib.request.Request(f"{secured.url}/?token={token}", headers={"Referer": f"/?token={token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200

    async def upgrade() -> int:
        async with aiohttp.ClientSession() as http:
            try:
                async with http.ws_connect(f"{secured.url}/sessions/{'0' * 32}/control", params={"token": control}):
                    return 101
            except aiohttp.WSServerHandshakeError as e:
                return e.status

    assert asyncio.run(upgrade()) == 404  # authorised; no such session
    marker = f"/health-{secrets.token_hex(4)}"  # the last request: its access line shows the log caught up
    assert get_status(secured.url + marker) == 404
    deadline = time.monotonic() + 10.0
    while marker not in secured.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = secured.log()
    assert marker in log, "the access log is on with -v"
    assert re.search(r"GET /api/sessions 200", log), "access lines name method, path and status"
    assert re.search(r"GET /sessions/0{32}/control 404", log)
    for token in (SECRET, control, SECRET[:16]):
        assert token not in log, "a token reached the server's log"
    assert "token=" not in log


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
