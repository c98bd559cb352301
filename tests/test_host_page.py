"""The host page's go-live workflow in a real headless Chromium against the real server (access control on): upload
a portrait, write a persona, start a stream; its watch link plays in a second tab at ~48 fps with that portrait;
the host page shows the viewer; ending the stream frees it."""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from pathlib import Path

import pytest

from harness.browser import chromium_page
from tests.conftest import speech_then_silence, start_server, stop_server, write_wav

pytestmark = pytest.mark.browser

SECRET = secrets.token_urlsafe(32)
HOPPER = Path(__file__).parent / "data" / "portraits" / "hopper.jpg"


def frames_at_update(page) -> tuple[float, int]:
    """(monotonic time, framesDecoded) right after the watch page's 500 ms stats poll moves the count."""
    before = page.evaluate("() => window.watchStats.framesDecoded")
    page.wait_for_function("n => window.watchStats.framesDecoded !== n", arg=before, timeout=3000)
    return time.monotonic(), page.evaluate("() => window.watchStats.framesDecoded")


def active_streams(url: str) -> list[str]:
    req = urllib.request.Request(url + "/streams", headers={"Authorization": f"Bearer {SECRET}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return [s["id"] for s in json.loads(r.read())["streams"]]


def test_upload_a_portrait_go_live_and_watch_it_in_a_second_tab(tmp_path: Path) -> None:
    mic = write_wav(tmp_path / "unused-mic.wav", speech_then_silence(0.2, 0.5, 0.2))
    server = start_server(tmp_path, f"--token={SECRET}")
    errors: list[str] = []
    try:
        with chromium_page(tmp_path / "profile", mic, viewport=(1200, 1400)) as host:
            host.on("pageerror", lambda e: errors.append(str(e)))
            host.goto(f"{server.url}/?token={SECRET}", timeout=15_000)
            host.wait_for_function("() => document.getElementById('portrait-select').options.length >= 1")
            host.set_input_files("#portrait-file", str(HOPPER))
            host.wait_for_function("() => window.goLive.portrait !== null || "
                                   "document.getElementById('portrait-state').dataset.state === 'error'",
                                   timeout=120_000)
            portrait = host.evaluate("() => window.goLive.portrait")
            assert portrait is not None, host.text_content("#portrait-state")
            assert host.eval_on_selector("#portrait-select", "s => s.value") == portrait["id"]
            host.fill("#live-persona", "a calm science host")
            host.click("#live-start")
            host.wait_for_function("() => ['live', 'error'].includes(window.goLive.state)", timeout=60_000)
            stream = host.evaluate("() => window.goLive.stream")
            assert stream is not None, host.text_content("#live-state")
            assert stream["avatar"]["id"] == portrait["id"]
            assert "token=" in stream["watch"] and host.text_content("#live-whep").endswith(f"/{stream['id']}/whep")
            viewer = host.context.new_page()
            viewer.on("pageerror", lambda e: errors.append(str(e)))
            viewer.goto(host.get_attribute("#live-watch", "href"), timeout=15_000)
            viewer.wait_for_function("() => window.watchStats.state === 'playing'", timeout=30_000)
            viewer.wait_for_timeout(1500)
            t0, f0 = frames_at_update(viewer)
            viewer.wait_for_timeout(4000)
            t1, f1 = frames_at_update(viewer)
            fps = (f1 - f0) / (t1 - t0)
            watched = viewer.evaluate("() => ({...window.watchStats})")
            host.wait_for_function("() => window.goLive.health && window.goLive.health.viewers === 1",
                                   timeout=10_000)
            health = host.evaluate("() => window.goLive.health")
            host.screenshot(path=str(tmp_path / "host.png"), full_page=True)
            print(f"\nwatch tab: {fps:.1f} fps, {watched['width']}x{watched['height']}; host page: {health['viewers']} "
                  f"viewer, {health['frames_sent']} frames sent; screenshot {tmp_path / 'host.png'}")
            viewer.close()
            host.click("#live-stop")
            host.wait_for_function("() => window.goLive.state === 'ended'", timeout=10_000)
            assert stream["id"] not in active_streams(server.url)
    finally:
        stop_server(server)
    assert fps >= 40, f"the watch tab decoded {fps:.1f} fps"
    assert (watched["width"], watched["height"]) == (portrait["width"], portrait["height"]) == (512, 600), \
        "the watch tab does not show the uploaded portrait"
    assert health["avatar"]["id"] == portrait["id"] and health["state"] == "streaming"
    assert errors == []
