"""Connect/stream/disconnect cycles, half of them abrupt, leave nothing behind in a real server process:
no sessions, threads, file descriptors or memory (benchmarks/cycles.py runs the long version); sessions
render on one bounded thread pool. A session
is freed within 2 s of a clean close and, while the cycles run, within 35 s of a viewer that vanished
without a word (no close, no packets: five missed ICE consent checks expire it after 19-33 s,
streaming.patches.expire_consent_sooner)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks.cycles import Snapshot, active_sessions, drained, run_cycles, settle, snapshot
from engine.renderer import render_pool
from harness.background_stream import BackgroundStream
from harness.speech import speech_then_silence, write_wav
from tests.conftest import start_server, stop_server
from tests.fakes import FakeGenerator
from tests.test_faults import live_stream

CYCLES = 200  # the issue asks for 200 in CI; streaming ~0.3 s each
CLIENTS = 2  # peers cycling at once (with the vanished viewer: 3 sessions, max_sessions is 4)
# The event loop's default executor keeps up to min(32, cpu_count + 4) idle workers (two clients at once fill it);
# the render pool its threads; the process's one silero VAD session (engine/audio/vad.py) an ONNX Runtime thread,
# from the first session on. A leak grows with the cycles: one thread in 200 of them would be 200.
_CPUS = os.cpu_count() or 1
THREADS_MARGIN = min(32, _CPUS + 4) + max(4, _CPUS) + 1
# Each render process (at most as many as the render pool has threads) holds two: its socket and its segment.
FDS_MARGIN = 4 + 2 * max(4, _CPUS)
RSS_MARGIN_MB = 100.0
SILENT_LOSS_S = 35.0


class FreedWatch:
    """Polls the server from a thread until a session is no longer listed: seconds from start() to then."""

    def __init__(self, url: str, sid: str, within_s: float) -> None:
        self.freed_s: float | None = None
        self._thread = threading.Thread(target=self._run, args=(url, sid, within_s), daemon=True)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread.start()

    def _run(self, url: str, sid: str, within_s: float) -> None:
        while time.monotonic() - self._t0 < within_s:
            if sid not in active_sessions(url):
                self.freed_s = time.monotonic() - self._t0
                return
            time.sleep(0.25)

    def result(self, timeout_s: float) -> float | None:
        self._thread.join(timeout_s)
        return self.freed_s


def test_200_cycles_half_abrupt_leave_no_sessions_threads_fds_or_memory(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "speech.wav", speech_then_silence(0.2, 2.0, 0.2))
    # One client offering again and again, faster than the per-client offer rate (1/s) allows a stranger.
    config = tmp_path / "cycles.toml"
    config.write_text("offer_rate_per_s = 100.0\n")
    srv = start_server(tmp_path, "--config", str(config))
    vanished: BackgroundStream | None = None
    try:
        start = snapshot(srv.proc.pid)
        # A viewer that vanishes while the cycles run: its 30-odd seconds overlap theirs.
        vanished = BackgroundStream(srv.url, wav)
        watch = FreedWatch(srv.url, vanished.started(), within_s=SILENT_LOSS_S + 30.0)
        vanished.vanish()
        watch.start()
        # 0.1 s after the server has sent 10 frames: the peer has some of them (each cycle is asserted to).
        # Two clients at a time after a first cycle alone (the RSS baseline): 200 cycles in half the time, and
        # connects and closes overlap each other as well as the vanished viewer.
        cycles = asyncio.run(run_cycles(srv.url, srv.proc.pid, wav, CYCLES, stream_s=0.1, free_wait_s=40.0,
                                        then_s=0.1, clients=CLIENTS))
        silent_freed_s = watch.result(SILENT_LOSS_S + 35.0)
        assert asyncio.run(drained(srv.url, 10.0)), "sessions still listed after the last cycle"
        end = settle(srv.proc.pid, Snapshot(start.threads + THREADS_MARGIN, start.fds + FDS_MARGIN, 0.0))
        with urllib.request.urlopen(srv.url + "/api/sessions", timeout=10) as r:
            server = json.loads(r.read())["server"]
    finally:
        if vanished is not None:
            vanished.kill()
        stop_server(srv)
    first = cycles[0].after
    clean = [c.freed_s for c in cycles if not c.abrupt]
    abrupt = [c.freed_s for c in cycles if c.abrupt]
    rss = [c.after.rss_mb for c in cycles]
    print(f"start {start}; after the first cycle {first}; end {end}; RSS max {max(rss):.0f} MB; "
          f"freed within {max(x for x in clean if x is not None):.3f} s (clean), "
          f"{max((x for x in abrupt if x is not None), default=float('nan')):.3f} s (abrupt); "
          f"vanished viewer freed after {silent_freed_s} s; "
          f"frames per cycle min {min(c.frames for c in cycles)}; reclaimed {server['reclaim_runs']} times, "
          f"last {server['reclaim_last_ms']} ms")
    assert [c.index for c in cycles] == list(range(CYCLES)) and sum(c.abrupt for c in cycles) == CYCLES // 2
    assert all(c.frames > 0 for c in cycles), [c.frames for c in cycles]  # each cycle really streamed
    assert silent_freed_s is not None and silent_freed_s < SILENT_LOSS_S, \
        f"a viewer that vanished held its session for {silent_freed_s} s (None: over a minute)"
    assert server["reclaim_runs"] >= 1 and server["reclaim_last_ms"] < 200, server
    assert all(x is not None and x < 2.0 for x in clean), clean
    assert all(x is not None for x in abrupt), abrupt  # within run_cycles' 40 s wait (silent loss: 35 s)
    assert end.threads <= start.threads + THREADS_MARGIN, (start, end)
    assert end.fds <= start.fds + FDS_MARGIN, (start, end)
    assert end.rss_mb <= first.rss_mb + RSS_MARGIN_MB, (first, end)


async def test_sessions_render_on_one_bounded_pool_however_many_come_and_go() -> None:
    pool = render_pool()
    bound = pool._max_workers
    peak = 0
    for _ in range(3):  # 3 rounds of more sessions at once than the pool has threads
        streams = [live_stream(f"s{i}", FakeGenerator())[0] for i in range(bound + 2)]
        sessions = [s.session for s in streams]
        for stream in streams:
            await stream.start()
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not all(s.metrics.windows_rendered >= 10 for s in sessions):
            peak = max(peak, sum(t.name.startswith("render") for t in threading.enumerate()))
            await asyncio.sleep(0.05)
        await asyncio.gather(*(s.close() for s in streams))
        assert all(s.metrics.windows_rendered >= 10 for s in sessions), [s.metrics.windows_rendered for s in sessions]
    assert all(s._renderer._executor is pool for s in sessions)
    assert 0 < peak <= bound, f"{peak} render threads for a pool of {bound}"
