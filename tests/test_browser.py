"""The web client in a real headless Chromium: fake microphone in, avatar out, clean stop.

The decoded rate is held to MIN_RECEIVED_FPS, as every live-viewer test (harness.webrtc_client): on a shared
host Chromium, the server and its encoder share two cores; the 48 fps figure comes from benchmarks/.

Sync Playwright in plain test functions: pytest-asyncio (asyncio_mode=auto) runs no event loop
around them, so Playwright's own loop does not clash with it.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from harness.browser import chromium_page
from harness.webrtc_client import MIN_RECEIVED_FPS
from tests.conftest import ServerProcess, speech_then_silence, write_wav

pytestmark = pytest.mark.browser

def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def session_ids(server: ServerProcess) -> set[str]:
    return {s["id"] for s in get_json(server.url + "/api/sessions")["sessions"]}


def stats(page) -> dict:
    return page.evaluate("() => ({...window.avatarStats})")


def wait_for_state(page, server: ServerProcess, condition: str, timeout_s: float) -> None:
    """Wait until `condition` (JS, on `s` = window.avatarStats) holds; on timeout say what the page
    and the server were doing."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(f"() => {{ const s = window.avatarStats; return {condition}; }}",
                               timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        pytest.fail(f"page did not reach `{condition}` in {timeout_s:.0f} s; avatarStats = {stats(page)}\n"
                    f"server log (tail):\n{server.log()[-3000:]}")


def sample_at_update(page, timeout_s: float = 3.0) -> tuple[float, int]:
    """(monotonic time, framesDecoded) taken right after the page's stats poll moves the count.

    The page refreshes avatarStats every 500 ms; sampling on that edge keeps the staleness of
    each sample to a few ms instead of up to half a second.
    """
    before = stats(page)["framesDecoded"]
    page.wait_for_function("n => window.avatarStats.framesDecoded !== n", arg=before,
                           timeout=timeout_s * 1000)
    t = time.monotonic()
    return t, stats(page)["framesDecoded"]


def test_page_streams_and_stops_cleanly(server: ServerProcess, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "mic.wav", speech_then_silence(1.0, 6.0, 1.0))
    errors: list[str] = []
    with chromium_page(tmp_path / "profile", wav) as page:
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.url + "/", timeout=15_000)
        assert page.title().startswith("Avatar engine")
        assert stats(page)["state"] == "idle"
        assert page.text_content("#stat-state") == "idle"

        page.click("#start")
        wait_for_state(page, server, "s.state === 'streaming'", 30)
        assert page.text_content("#stat-state") == "streaming"
        sid = page.text_content("#stat-session")

        # The server sees the same session, streaming.
        listed = {s["id"]: s for s in get_json(server.url + "/api/sessions")["sessions"]}
        assert sid in listed, f"session {sid!r} not in {list(listed)}"
        assert listed[sid]["state"] == "streaming"
        assert page.get_attribute("#watch-link", "href") == f"{server.url}/watch/{sid}", "the audience's link"

        # Warm-up: let the jitter buffer settle and the page's 2 s fps window fill with streaming.
        page.wait_for_timeout(2500)
        t0, f0 = sample_at_update(page)
        audio0 = stats(page)["audioPacketsReceived"]
        page.wait_for_timeout(4500)
        t1, f1 = sample_at_update(page)
        fps, window_s = (f1 - f0) / (t1 - t0), t1 - t0
        final = stats(page)
        page_fps_text = page.text_content("#stat-fps")
        print(f"\nbrowser received {fps:.2f} fps over {window_s:.2f} s (page shows {page_fps_text}); "
              f"{final['width']}x{final['height']}, rtt {final['rttMs']} ms, "
              f"{final['audioPacketsReceived']} audio packets")

        assert window_s >= 4.0
        assert fps >= MIN_RECEIVED_FPS, f"Chromium decoded {fps:.2f} fps over {window_s:.1f} s"
        assert final["fps"] is not None and final["fps"] >= MIN_RECEIVED_FPS, f"page reports {final['fps']} fps"
        assert page_fps_text == f"{final['fps']:.1f}", "the page shows the rate it measured"
        assert final["width"] > 0 and final["height"] > 0
        assert page.text_content("#stat-resolution") == f"{final['width']}x{final['height']}"
        assert final["audioPacketsReceived"] > audio0 > 0, "the avatar's audio is not arriving"

        # Directing the host: a quick button goes over the control WebSocket and is accepted.
        page.wait_for_function("() => document.getElementById('control-state').textContent === 'ready'",
                               timeout=10_000)
        page.click("button[data-say='smile']")
        page.wait_for_function(
            "() => document.getElementById('control-state').textContent === 'sent (instruction)'", timeout=10_000)

        page.click("#stop")
        wait_for_state(page, server, "s.state === 'closed'", 10)
        assert page.text_content("#stat-state") == "closed"
        assert page.is_enabled("#start") and not page.is_enabled("#stop")

        deadline = time.monotonic() + 10.0
        while (left := get_json(server.url + "/api/sessions")["sessions"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == [], f"sessions still active 10 s after Stop: {left}"
    assert errors == [], f"errors in the page: {errors}"


def test_page_shows_the_servers_error(server: ServerProcess, tmp_path: Path) -> None:
    """A refused offer (here a 503, as at the session limit) shows the server's message."""
    wav = write_wav(tmp_path / "mic.wav", speech_then_silence(0.5, 1.0, 0.5))
    message = "server is at its limit of 4 sessions; try again later"
    before = session_ids(server)  # an earlier test's session may still be closing
    with chromium_page(tmp_path / "profile", wav) as page:
        page.route("**/offer", lambda route: route.fulfill(
            status=503, content_type="application/json", body=json.dumps({"error": message})))
        page.goto(server.url + "/", timeout=15_000)
        page.click("#start")
        wait_for_state(page, server, "s.state.startsWith('error')", 15)
        assert page.text_content("#stat-state") == f"error: {message}"
        assert page.is_enabled("#start") and not page.is_enabled("#stop")
    assert session_ids(server) <= before, "a refused offer left a session behind"


def test_leaving_the_page_frees_the_session(server: ServerProcess, tmp_path: Path) -> None:
    """Closing or leaving the tab (pagehide: beacon + pc.close) frees the server's session at once,
    not after the ~30 s it takes ICE consent to fail."""
    wav = write_wav(tmp_path / "mic.wav", speech_then_silence(0.5, 2.0, 0.5))
    before = session_ids(server)  # an earlier test's session may still be closing
    with chromium_page(tmp_path / "profile", wav) as page:
        page.goto(server.url + "/", timeout=15_000)
        page.click("#start")
        wait_for_state(page, server, "s.state === 'streaming'", 30)
        ours = session_ids(server) - before
        assert len(ours) == 1, f"one new session expected, the server lists {ours}"
        page.goto("about:blank", timeout=15_000)
        deadline = time.monotonic() + 5.0
        while (left := ours & session_ids(server)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"the page's session still active 5 s after leaving the page: {left}"
