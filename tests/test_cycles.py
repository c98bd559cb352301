"""Connect/stream/disconnect cycles, half of them abrupt, leave nothing behind in a real server process:
no sessions, threads, file descriptors or memory (benchmarks/cycles.py runs the long version)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

from benchmarks.cycles import Snapshot, drained, run_cycles, settle, snapshot
from harness.speech import speech_then_silence, write_wav
from tests.conftest import start_server, stop_server

CYCLES = 40
THREADS_MARGIN = 6  # the event loop's default executor keeps up to cpu_count + 4 idle workers
FDS_MARGIN = 4
RSS_MARGIN_MB = 100.0


def test_forty_cycles_half_abrupt_leave_no_sessions_threads_fds_or_memory(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "speech.wav", speech_then_silence(0.2, 2.0, 0.2))
    # One client offering again and again, faster than the per-client offer rate (1/s) allows a stranger.
    config = tmp_path / "cycles.toml"
    config.write_text("offer_rate_per_s = 100.0\n")
    srv = start_server(tmp_path, "--config", str(config))
    try:
        start = snapshot(srv.proc.pid)
        cycles = asyncio.run(run_cycles(srv.url, srv.proc.pid, wav, CYCLES, stream_s=0.5, free_wait_s=40.0))
        assert asyncio.run(drained(srv.url, 10.0)), "sessions still listed after the last cycle"
        end = settle(srv.proc.pid, Snapshot(start.threads + THREADS_MARGIN, start.fds + FDS_MARGIN, 0.0))
        with urllib.request.urlopen(srv.url + "/api/sessions", timeout=10) as r:
            server = json.loads(r.read())["server"]
    finally:
        stop_server(srv)
    first = cycles[0].after
    clean = [c.freed_s for c in cycles if not c.abrupt]
    abrupt = [c.freed_s for c in cycles if c.abrupt]
    rss = [c.after.rss_mb for c in cycles]
    print(f"start {start}; after the first cycle {first}; end {end}; RSS max {max(rss):.0f} MB; "
          f"freed within {max(x for x in clean if x is not None):.3f} s (clean), "
          f"{max((x for x in abrupt if x is not None), default=float('nan')):.3f} s (abrupt); "
          f"frames per cycle min {min(c.frames for c in cycles)}; reclaimed {server['reclaim_runs']} times, "
          f"last {server['reclaim_last_ms']} ms")
    assert all(c.frames > 0 for c in cycles), [c.frames for c in cycles]  # each cycle really streamed
    assert server["reclaim_runs"] >= 1 and server["reclaim_last_ms"] < 200, server
    assert all(x is not None and x < 2.0 for x in clean), clean
    assert all(x is not None for x in abrupt), abrupt  # within run_cycles' 40 s wait (silent loss: 35 s)
    assert end.threads <= start.threads + THREADS_MARGIN, (start, end)
    assert end.fds <= start.fds + FDS_MARGIN, (start, end)
    assert end.rss_mb <= first.rss_mb + RSS_MARGIN_MB, (first, end)
