"""A load table, as LiveKit's load tester prints one: N live streams at once against one server.

    python -m benchmarks.load [--streams 1 4 8] [--seconds 15] [--out load.json]

For each N a fresh `python server.py` (max_sessions N, its per-client offer limits raised: the peers all
come from 127.0.0.1) serves N aiortc peers, each in a process of its own (its decoding must not share
the server's or another peer's GIL), each sending looped espeak-ng speech as its microphone. They connect
together, stream for --seconds, and each reports the tracks it received (expected: the avatar's video and
the host's audio), the frames it decoded, its video packets received and lost (aiortc's inbound-rtp
stats) and any error. The server reports its event-loop lag (streaming/loop_monitor.py: the share of
10 ms ticks that woke more than 20 ms late, so p99 < 20 ms holds when that share is under 1%) and its CPU.

Pass: tracks received = expected, video loss < 1%, 0 errors, event-loop lag p99 < 20 ms; frame rate is
printed beside them (48 fps is the stream's rate).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness.server import busy_s, start_server, stop_server
from harness.speech import speech_then_silence, write_wav
from streaming.webrtc import NO_ICE_SERVERS

WARM_UP_S = 1.0  # frames in the first second after the first one are left out of the rate
MAX_LOSS = 0.01
MAX_LAG_SHARE = 0.01  # of ticks over 20 ms late: p99 < 20 ms


@dataclass
class PeerResult:
    tracks: int = 0
    frames: int = 0
    fps: float = 0.0
    packets_received: int = 0
    packets_lost: int = 0
    error: str = ""
    connect_s: float = 0.0


@dataclass
class Row:
    streams: int
    peers: list[PeerResult] = field(default_factory=list)
    lag_share_over_20ms: float = 0.0
    lag_ms_max: float = 0.0
    server_cpu_pct: float = 0.0

    @property
    def tracks(self) -> int:
        return sum(p.tracks for p in self.peers)

    @property
    def loss(self) -> float:
        lost = sum(p.packets_lost for p in self.peers)
        return lost / max(1, lost + sum(p.packets_received for p in self.peers))

    @property
    def errors(self) -> int:
        return sum(bool(p.error) for p in self.peers)

    @property
    def passed(self) -> bool:
        return (self.tracks == 2 * self.streams and self.loss < MAX_LOSS and self.errors == 0
                and self.lag_share_over_20ms < MAX_LAG_SHARE)


async def _peer(url: str, wav: str, seconds: float, start_at: float) -> PeerResult:
    from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer
    from aiortc.mediastreams import MediaStreamError

    from harness.webrtc_client import post_json
    from streaming.patches import use_ice_addresses

    use_ice_addresses(["127.0.0.1"])
    out = PeerResult()
    pc = RTCPeerConnection(NO_ICE_SERVERS)  # as the server: no STUN server off the machine
    player = MediaPlayer(wav, loop=True)
    pc.addTrack(player.audio)
    pc.addTransceiver("video", direction="recvonly")
    frame_s: list[float] = []
    readers: list[asyncio.Task[None]] = []
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def changed() -> None:
        if pc.connectionState == "connected":
            connected.set()

    async def read(track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                if track.kind == "video":
                    frame_s.append(time.monotonic())
        except MediaStreamError:
            pass

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        out.tracks += 1
        readers.append(asyncio.create_task(read(track)))

    try:
        await pc.setLocalDescription(await pc.createOffer())
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))  # every peer offers at the same moment
        t0 = time.monotonic()
        status, answer = await asyncio.get_running_loop().run_in_executor(
            None, post_json, url + "/offer", {"sdp": pc.localDescription.sdp, "type": "offer"}, 30.0)
        if status != 200:
            out.error = f"offer: {status} {answer.get('error', '')}"
            return out
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        await asyncio.wait_for(connected.wait(), 10)
        out.connect_s = time.monotonic() - t0
        await asyncio.sleep(seconds)
        for stats in (await pc.getStats()).values():
            if stats.type == "inbound-rtp" and stats.kind == "video":
                out.packets_received += stats.packetsReceived
                out.packets_lost += max(0, stats.packetsLost)
        steady = [t for t in frame_s if t >= frame_s[0] + WARM_UP_S] if frame_s else []
        out.frames = len(frame_s)
        out.fps = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
        close_url = f"{url}/sessions/{answer['session_id']}/close"
        await asyncio.get_running_loop().run_in_executor(None, post_json, close_url, {}, 30.0)
    except Exception as e:
        out.error = f"{type(e).__name__}: {e}"
    finally:
        for t in readers:
            t.cancel()
        await asyncio.wait_for(pc.close(), 10)
        player.audio.stop()
    return out


def _peer_process(url: str, wav: str, seconds: float, start_at: float, conn: mp.connection.Connection) -> None:
    try:
        conn.send(asdict(asyncio.run(_peer(url, wav, seconds, start_at))))
    except Exception as e:
        conn.send(asdict(PeerResult(error=f"{type(e).__name__}: {e}")))


def loop_lag(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/api/sessions", timeout=10) as r:
        return json.loads(r.read())["server"]


def run(streams: int, seconds: float, wav: Path, tmp: Path) -> Row:
    config = tmp / f"load{streams}.toml"
    config.write_text(f"max_sessions = {streams}\nmax_pending_sessions = {streams}\noffer_burst = {streams}\n"
                      "offer_rate_per_s = 100.0\n")
    srv = start_server(tmp, "--config", str(config))
    row = Row(streams)
    try:
        ctx = mp.get_context("spawn")
        start_at = time.monotonic() + 8.0  # the peers' imports and offers are made by then
        pipes, procs = [], []
        for _ in range(streams):
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_peer_process, args=(srv.url, str(wav), seconds, start_at, child), daemon=True)
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        time.sleep(max(0.0, start_at + 2.0 - time.monotonic()))  # connected by then
        before, cpu0, t0 = loop_lag(srv.url), busy_s(srv.proc.pid), time.monotonic()
        time.sleep(max(0.5, seconds - 3.0))  # inside every peer's streaming span
        after, cpu1, t1 = loop_lag(srv.url), busy_s(srv.proc.pid), time.monotonic()
        for parent, proc in zip(pipes, procs, strict=True):
            row.peers.append(PeerResult(**parent.recv()) if parent.poll(seconds + 60) else
                             PeerResult(error="the peer process said nothing"))
            proc.join(10)
        ticks = max(1, after["event_loop_ticks"] - before["event_loop_ticks"])
        row.lag_share_over_20ms = (after["event_loop_lags_over_20ms"] - before["event_loop_lags_over_20ms"]) / ticks
        row.lag_ms_max = after["event_loop_lag_ms_max"]
        row.server_cpu_pct = 100.0 * (cpu1 - cpu0) / (t1 - t0)  # its render processes included
    finally:
        stop_server(srv)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        wav = write_wav(Path(tmp) / "speech.wav", speech_then_silence(0.5, 4.0, 1.5))
        for n in args.streams:
            rows.append(run(n, args.seconds, wav, Path(tmp)))
            Console().print(f"{n} streams done: {rows[-1].errors} errors")
    table = Table(title=f"{args.seconds:g} s of N live streams at once, one server, aiortc peers on 127.0.0.1")
    for name in ("streams", "tracks (got/expected)", "fps (min / mean)", "video loss", "errors",
                 "loop lag >20 ms (p99 < 20 ms: < 1%)", "loop lag max (since start)", "server CPU",
                 "connect s (max)", "pass"):
        table.add_column(name, justify="right")
    for r in rows:
        fps = [p.fps for p in r.peers]
        table.add_row(str(r.streams), f"{r.tracks}/{2 * r.streams}", f"{min(fps):.1f} / {sum(fps) / len(fps):.1f}",
                      f"{100 * r.loss:.2f}%", str(r.errors), f"{100 * r.lag_share_over_20ms:.2f}%",
                      f"{r.lag_ms_max:.0f} ms", f"{r.server_cpu_pct:.0f}%",
                      f"{max(p.connect_s for p in r.peers):.2f}", "yes" if r.passed else "NO")
    Console(width=200).print(table)
    for r in rows:
        for i, p in enumerate(r.peers):
            if p.error:
                print(f"{r.streams} streams, peer {i}: {p.error}")
    if args.out is not None:
        args.out.write_text(json.dumps([{**asdict(r), "passed": r.passed, "loss": r.loss} for r in rows], indent=1))


if __name__ == "__main__":
    main()
