"""What a WHEP viewer costs the server: its CPU with 0, 1 and 3 viewers of one stream (one render, one encode).

    python -m benchmarks.whep_viewers [--viewers 0 1 3] [--seconds 10] [--settle 3] [--rtmp]
                                      [--out docs/bench/whep_viewers]

A fresh `python server.py` makes one stream without a browser (POST /streams); an aiortc WHIP publisher
sends espeak-ng speech to it, looped, so the avatar talks throughout. For each viewer count, that many
aiortc WHEP viewers (H.264) join, and after --settle seconds the server process's CPU (psutil) and each
viewer's received fps are taken over --seconds; then they leave. With the encode shared, a viewer adds
only its packetising and encryption, not a render or an encode. The viewers and the publisher run in
this process on the same machine: on a small box they compete with the server for its cores.
--rtmp also pushes the stream to a local nginx-rtmp (harness/nginx_rtmp.py): its H.264 encode is the
viewers' one, so the push adds an AAC encode and its muxing, not a second H.264 encode. "encoding ms /
frame" is the CPU time of the stream's codec threads (their cpu_s counters; '-' for a server without
them), which the load of a shared machine hardly changes; "CPU ms / frame" is the whole process's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from harness.nginx_rtmp import NginxRtmp
from harness.server import CpuMeter, ServerProcess, start_server, stop_server
from harness.speech import speech_then_silence, write_wav
from harness.whep_client import WhepViewer, WhipPublisher


def session_info(server: ServerProcess, sid: str) -> dict:
    with urllib.request.urlopen(server.url + "/api/sessions", timeout=10) as r:
        return next(s for s in json.loads(r.read())["sessions"] if s["id"] == sid)


def encode_cpu_s(info: dict) -> float | None:
    """CPU seconds so far of the stream's codecs (their counters in /api/sessions; None where the server has none)."""
    codecs = [s["cpu_s"] for name, s in info["sinks"].items() if name.startswith("encoder_") and "cpu_s" in s]
    return sum(codecs) if codecs else None


def create_stream(server: ServerProcess, rtmp: str | None = None) -> str:
    body = {"outputs": {"rtmp": [rtmp]}} if rtmp else {}
    req = urllib.request.Request(server.url + "/streams", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return str(json.loads(r.read())["id"])


async def measure(server: ServerProcess, sid: str, n: int, seconds: float, settle_s: float) -> dict:
    meter = CpuMeter(server.proc.pid)  # its render processes included
    viewers = [WhepViewer() for _ in range(n)]
    await asyncio.gather(*(v.start(f"{server.url}/streams/{sid}/whep") for v in viewers))
    await asyncio.sleep(settle_s)
    loop = asyncio.get_running_loop()
    before = await loop.run_in_executor(None, session_info, server, sid)
    cpu: list[float] = []
    done = threading.Event()

    def sample() -> None:
        meter.percent()
        while not done.wait(1.0):
            cpu.append(meter.percent())

    sampler = threading.Thread(target=sample, daemon=True)
    t0 = time.monotonic()
    sampler.start()
    await asyncio.sleep(seconds)
    done.set()
    sampler.join()
    t1 = time.monotonic()
    info = await loop.run_in_executor(None, session_info, server, sid)
    rates = []
    for v in viewers:
        t = np.array(v.got.video_wall_s)
        t = t[(t >= t0) & (t <= t1)]
        rates.append((len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 else 0.0)
    await asyncio.gather(*(v.stop() for v in viewers))
    await asyncio.sleep(1.0)  # the viewers have left (the encoder goes with the last one)
    sent = info["frames_sent"] - before["frames_sent"]
    encode_s, encode_before_s = encode_cpu_s(info), encode_cpu_s(before)
    return {"viewers": n, "server_cpu_pct_mean": round(float(np.mean(cpu)), 1),
            "server_cpu_ms_per_frame": round(float(np.mean(cpu)) * 10 * (t1 - t0) / max(1, sent), 2),
            "encode_cpu_ms_per_frame": None if encode_s is None or encode_before_s is None
            else round(1000 * (encode_s - encode_before_s) / max(1, sent), 2),
            "video_encoders": info["sinks"].get("encoder", {}).get("video_encoders", "-"),
            "server_cpu_pct_p95": round(float(np.percentile(cpu, 95)), 1), "viewer_fps": [round(r, 2) for r in rates],
            "encoders": info["encoders"],
            "frames_repeated": info["frames_repeated"] - before["frames_repeated"],
            "frames_sent": sent, "load_1min": round(os.getloadavg()[0], 2)}


async def run(args: argparse.Namespace, tmp: Path) -> list[dict]:
    os.environ["AVATAR_ENGINE_OFFER_BURST"] = str(max(5, max(args.viewers) + 2))
    ingest = NginxRtmp(tmp / "nginx") if args.rtmp else None
    server = start_server(tmp)
    try:
        if ingest is not None:
            ingest.start()
        sid = create_stream(server, ingest.url("bench") if ingest is not None else None)
        wav = write_wav(tmp / "speech.wav", speech_then_silence(0.5, 8.0, 0.5))
        publisher = WhipPublisher(wav, loop=True)
        await publisher.start(f"{server.url}/streams/{sid}/whip")
        await asyncio.sleep(2.0)
        rows = [await measure(server, sid, n, args.seconds, args.settle) for n in args.viewers]
        await publisher.stop()
        return rows
    finally:
        stop_server(server)
        if ingest is not None:
            ingest.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, nargs="+", default=[0, 1, 3])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--rtmp", action="store_true", help="also push the stream to a local nginx-rtmp")
    parser.add_argument("--out", type=Path, default=None, help="write OUT.json")
    args = parser.parse_args()
    from streaming.patches import use_ice_addresses

    use_ice_addresses(["127.0.0.1"])
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(run(args, Path(tmp)))
    title = "Server CPU by WHEP viewers of one stream (one render, one encode per codec)"
    table = Table(title=title + (", pushed to RTMP" if args.rtmp else ""))
    for col in ("viewers", "server CPU % (mean)", "p95", "CPU ms / frame", "encoding ms / frame", "viewer fps",
                "encoders (video)", "frames repeated / sent", "load"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["viewers"]), f"{r['server_cpu_pct_mean']:.1f}", f"{r['server_cpu_pct_p95']:.1f}",
                      f"{r['server_cpu_ms_per_frame']:.2f}", str(r["encode_cpu_ms_per_frame"] or "-"),
                      ", ".join(f"{f:.1f}" for f in r["viewer_fps"]) or "-",
                      f"{r['encoders']} ({r['video_encoders']})", f"{r['frames_repeated']} / {r['frames_sent']}",
                      f"{r['load_1min']:.1f}")
    Console().print(table)
    by_n = {r["viewers"]: r["server_cpu_pct_mean"] for r in rows}
    if 1 in by_n and 3 in by_n:
        print(f"3 viewers vs 1: {100 * (by_n[3] - by_n[1]) / by_n[1]:+.1f}% server CPU")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps({"rows": rows, "cpu_count": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
