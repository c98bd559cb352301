"""The stream never waits for the director: 48 fps while a model-served director is slow, wrong or gone."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from harness.webrtc_client import delivery, stream_session
from tests.conftest import start_server, stop_server
from tests.director_server import ScriptedServer


@pytest.fixture
def scripted() -> Iterator[tuple[ScriptedServer, asyncio.AbstractEventLoop]]:
    """An OpenAI-compatible stand-in on 127.0.0.1, in its own thread and event loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(ScriptedServer("slow", delay_s=5.0).start(), loop).result(10)
    yield server, loop
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_stream_holds_48fps_while_the_director_is_slow_invalid_or_down(tmp_path, speech_wav, scripted) -> None:
    director, director_loop = scripted
    srv = start_server(tmp_path, "--director", "vllm", "--director-url", director.base_url,
                       "--director-model", "scripted")
    counters: dict = {}

    async def misbehave(session_id: str) -> None:
        await asyncio.sleep(3.0)  # 5 s replies under a 1 s re-plan limit: timeouts
        director.mode = "invalid_json"
        await asyncio.sleep(2.5)
        loop = asyncio.get_running_loop()  # (blocking waits go to a thread: this loop receives the video)
        await loop.run_in_executor(None, lambda: asyncio.run_coroutine_threadsafe(director.stop(),
                                                                                  director_loop).result(10))  # down
        await asyncio.sleep(3.0)
        text = await loop.run_in_executor(None, lambda: urllib.request.urlopen(srv.url + "/api/sessions").read())
        counters.update(json.loads(text)["sessions"][0])

    try:
        got, _ = asyncio.run(stream_session(srv.url, speech_wav, duration_s=9.0, during=misbehave))
    finally:
        stop_server(srv)
    wall = np.array(got.video_wall_s)
    wall = wall[wall >= wall[0] + 0.5]
    # The director's misbehaviour must not stall the stream; on a host short of CPU frames are dropped before
    # encoding (counted), and `Delivery` allows for that.
    delivery(got).assert_live("while the director misbehaved")
    gaps = np.diff(wall)
    print(f"largest gap {gaps.max() * 1000:.0f} ms at {wall[gaps.argmax()] - wall[0]:.1f} s; "
          f"server repeated {counters['frames_repeated']}, skipped {counters['frames_skipped']}")
    # The server's own counters say whether it kept its clock; the peer's receive gaps say the same end to end. A
    # window skipped is the render's: on 2026-12-01's machines (half as fast as the ones this test was written on)
    # 3-20% of them with the director in any state, 28% once in a full suite run. A director that held the windows
    # up would skip nearly all of the 5.5 s it misbehaved (60% of the stream), or stall it. A stall is as long as the
    # director's 1 s re-plan limit; a loaded machine's receive gap is not (163 ms at 1.8 s in a full suite run on
    # 2026-12-02, before the director misbehaved, with 179 of the frames skipped).
    assert counters["frames_skipped"] <= 0.5 * counters["frames_sent"], counters
    assert gaps.max() < 0.5, "the stream stalled"
    assert counters["director_failures"] >= 3, counters
    assert counters["director_calls"] >= 3 and counters["director_invalid_replies"] >= 1, counters
