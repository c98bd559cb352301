"""Connect/stream/disconnect cycles against a real server: does anything stay behind?

    python -m benchmarks.cycles [--cycles 1000] [--stream-s 1.0] [--out cycles.json]

A fresh `python server.py` on 127.0.0.1 serves one aiortc peer at a time (looped espeak-ng speech as
its microphone) for --stream-s (and at least until the server has sent it 10 frames), then the peer
leaves: every other cycle cleanly (POST /sessions/{id}/close, then its peer connection), the others
abruptly (only its peer connection closes; the server learns it from the connection). After each cycle
it records how long the server took to drop the session from /api/sessions and the server's threads,
file descriptors and resident memory (psutil, from /proc); after the last one it waits for the sessions
to drain and reports the ends against the start and against the first cycle. tests/test_cycles.py runs a short version.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from harness.server import start_server, stop_server
from harness.speech import speech_then_silence, write_wav
from harness.webrtc_client import stream_session


@dataclass
class Snapshot:
    threads: int
    fds: int
    rss_mb: float


@dataclass
class Cycle:
    index: int
    abrupt: bool
    freed_s: float | None  # the peer left -> the session gone from /api/sessions; None: not within the wait
    frames: int  # video frames the peer received
    after: Snapshot


def snapshot(pid: int) -> Snapshot:
    p = psutil.Process(pid)
    return Snapshot(p.num_threads(), p.num_fds(), p.memory_info().rss / 2**20)


def active_sessions(url: str) -> list[str]:
    with urllib.request.urlopen(url + "/api/sessions", timeout=10) as r:
        return [s["id"] for s in json.loads(r.read())["sessions"]]


def frames_sent(url: str, sid: str) -> int:
    with urllib.request.urlopen(url + "/api/sessions", timeout=10) as r:
        return next((s["frames_sent"] for s in json.loads(r.read())["sessions"] if s["id"] == sid), 0)


async def streaming(url: str, sid: str, frames: int = 10, within_s: float = 10.0, then_s: float = 0.25) -> None:
    """Until the server has sent `frames` frames to the session's peer (bounded), and then_s more for them to
    arrive: on a busy machine connecting can take longer than the time a cycle streams."""
    loop, t0 = asyncio.get_running_loop(), time.monotonic()
    while time.monotonic() - t0 < within_s:
        if await loop.run_in_executor(None, frames_sent, url, sid) >= frames:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(then_s)


async def wait_freed(url: str, sid: str, within_s: float) -> float | None:
    """Seconds until `sid` is no longer listed (polled every 20 ms), or None after within_s."""
    loop, t0 = asyncio.get_running_loop(), time.monotonic()
    while time.monotonic() - t0 < within_s:
        if sid not in await loop.run_in_executor(None, active_sessions, url):
            return time.monotonic() - t0
        await asyncio.sleep(0.02)
    return None


async def run_cycles(url: str, pid: int, wav: Path, n: int, stream_s: float, free_wait_s: float = 40.0,
                     on_cycle: object = None, then_s: float = 0.25, clients: int = 1) -> list[Cycle]:
    """n cycles, every other one abrupt, by `clients` peers at once after a first cycle alone: that one's
    snapshot (one session's worth) stays the baseline the end is held to, whatever runs beside the others."""
    out: list[Cycle] = []
    indices = iter(range(n))  # shared: each client takes the next cycle when its own is freed

    async def client(count: int | None) -> None:
        for done, i in enumerate(indices, 1):
            abrupt = i % 2 == 1
            got, sid = await stream_session(url, wav, stream_s, loop=True, close_session=not abrupt,
                                            during=lambda sid: streaming(url, sid, then_s=then_s))
            freed = await wait_freed(url, sid, free_wait_s)
            out.append(Cycle(i, abrupt, freed, len(got.video_wall_s), snapshot(pid)))
            if callable(on_cycle):
                on_cycle(out[-1])
            if done == count:
                return

    await client(1)
    await asyncio.gather(*(client(None) for _ in range(clients)))
    return sorted(out, key=lambda c: c.index)


async def drained(url: str, within_s: float) -> bool:
    loop, t0 = asyncio.get_running_loop(), time.monotonic()
    while time.monotonic() - t0 < within_s:
        if not await loop.run_in_executor(None, active_sessions, url):
            return True
        await asyncio.sleep(0.1)
    return False


def settle(pid: int, baseline: Snapshot, within_s: float = 10.0) -> Snapshot:
    """The server's numbers once its threads and descriptors stop moving toward the baseline (bounded wait):
    thread pools and sockets wind down a moment after the last session."""
    deadline, snap = time.monotonic() + within_s, snapshot(pid)
    while time.monotonic() < deadline and (snap.threads > baseline.threads or snap.fds > baseline.fds):
        time.sleep(0.25)
        snap = snapshot(pid)
    return snap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--stream-s", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=None, help="write every cycle's numbers here as JSON")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wav = write_wav(Path(tmp) / "speech.wav", speech_then_silence(0.2, 2.0, 0.2))
        config = Path(tmp) / "cycles.toml"  # one client offering faster than a stranger may (1/s)
        config.write_text("offer_rate_per_s = 100.0\n")
        srv = start_server(Path(tmp), "--config", str(config))
        try:
            start = snapshot(srv.proc.pid)
            print(f"start: {start}")

            def show(c: Cycle) -> None:
                if c.index < 3 or (c.index + 1) % 50 == 0:
                    print(f"cycle {c.index + 1}: {'abrupt' if c.abrupt else 'clean '} freed in "
                          f"{c.freed_s if c.freed_s is None else round(c.freed_s, 2)} s, {c.frames} frames, {c.after}")

            cycles = asyncio.run(run_cycles(srv.url, srv.proc.pid, wav, args.cycles, args.stream_s, on_cycle=show))
            ok = asyncio.run(drained(srv.url, 40.0))
            end = settle(srv.proc.pid, start)
        finally:
            stop_server(srv)
    clean = [c.freed_s for c in cycles if not c.abrupt and c.freed_s is not None]
    abrupt = [c.freed_s for c in cycles if c.abrupt and c.freed_s is not None]
    summary = {"cycles": len(cycles), "drained": ok, "start": asdict(start), "after_first": asdict(cycles[0].after),
               "end": asdict(end), "rss_growth_after_first_mb": round(end.rss_mb - cycles[0].after.rss_mb, 1),
               "clean_freed_s_max": max(clean, default=None), "abrupt_freed_s_max": max(abrupt, default=None),
               "not_freed": sum(c.freed_s is None for c in cycles)}
    print(json.dumps(summary, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps({"summary": summary, "cycles": [asdict(c) for c in cycles]}, indent=1))


if __name__ == "__main__":
    main()
