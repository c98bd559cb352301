"""SIGTERM: the server stops accepting, closes every session (sinks, peer connection) and exits 0 in time."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from pathlib import Path

from aiohttp import web

from engine.session import AvatarSession
from harness.webrtc_client import stream_session
from streaming.app import REGISTRY, build_app
from streaming.config import ServerConfig
from streaming.egress_file import Mp4Sink
from streaming.sources import PushedAudio
from streaming.stream import AvatarStream
from tests.conftest import start_server, stop_server
from tests.test_session import avatar, speechlike
from tests.test_sinks import read_back

EXIT_WITHIN_S = 10.0


def test_sigterm_closes_a_live_session_and_exits_0(tmp_path: Path, speech_wav: Path) -> None:
    srv = start_server(tmp_path)
    outcome: dict[str, float | int | None] = {}

    async def terminate(_: str) -> None:
        await asyncio.sleep(2.0)  # streaming by now
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()  # (the blocking wait goes to a thread: this loop receives the video)
        try:
            outcome["rc"] = await loop.run_in_executor(None, srv.proc.wait, EXIT_WITHIN_S)
        except subprocess.TimeoutExpired:
            outcome["rc"] = None
        outcome["exit_s"] = time.monotonic() - t0

    try:
        got, sid = asyncio.run(stream_session(srv.url, speech_wav, duration_s=2.5, during=terminate, loop=True,
                                              close_session=False))
    finally:
        stop_server(srv)
    log = srv.log()
    print(f"exit {outcome['rc']} after {outcome['exit_s']:.2f} s; {len(got.video_wall_s)} frames received")
    assert len(got.video_wall_s) >= 48, "the session never streamed"
    assert outcome["rc"] == 0, f"exit code {outcome['rc']} after {outcome['exit_s']:.1f} s:\n{log[-3000:]}"
    assert outcome["exit_s"] < EXIT_WITHIN_S
    assert "shutting down: closing 1 sessions" in log and "shutting down: sessions closed" in log, log[-3000:]
    closed = re.search(rf"stream {sid}: closed \((\d+) frames sent\)", log)
    assert closed is not None and int(closed.group(1)) >= 48, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


async def test_the_shutdown_hook_finishes_a_live_recording(tmp_path: Path) -> None:
    """What SIGTERM runs (aiohttp's shutdown, the app's on_shutdown) closes each stream's sinks: an MP4 sink on a
    live session ends as a complete, playable file."""
    config = ServerConfig()
    app = build_app(config, avatar())
    runner = web.AppRunner(app)
    await runner.setup()
    stream = AvatarStream(AvatarSession(avatar(), config.engine, live=True, session_id="recorded"))
    out = tmp_path / "live.mp4"
    stream.add_sink(Mp4Sink(out))
    await stream.start()
    pushed = PushedAudio()
    stream.add_source(pushed)
    pushed.push(speechlike(3.0), 48000)
    app[REGISTRY].add(stream)
    await asyncio.sleep(2.0)  # the recording runs on the stream's clock meanwhile
    await runner.cleanup()
    assert stream.state == "closed" and not app[REGISTRY].active
    packets, frames, video_s, audio_s, key_first = read_back(out)
    assert key_first and frames == len(packets) and abs(frames - 96) <= 14, f"{frames} frames for ~2 s"
    assert abs(audio_s - video_s) <= 2 / 48, f"audio {audio_s:.3f} s vs video {video_s:.3f} s"
