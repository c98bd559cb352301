"""How many live sessions this machine holds at 48 fps: ramp up until frames come late.

    python -m benchmarks.sessions [--max 8] [--seconds 15] [--out sessions]
    python -m benchmarks.sessions --gpu            # GPU mode: compile variant, 1080x1920 portrait

For N = 1, 2, ... a fresh `python server.py` serves N aiortc peers at once (each sends espeak-ng
speech and receives the avatar) for --seconds; the server's own counters say how many frames were
late (repeated) or skipped. Sessions adapt their pipeline delay to a busy machine (a frame at a
time, engine/session.py), so the late share is taken over the steady part after --settle seconds;
the table shows the delay they settled at. The ramp stops at the first N with more than 0.1% late
frames.
The peers run on the same machine and take CPU from the server: on a 2-core box this measures the
pair, so read it as a lower bound for a dedicated server.

`--generator` and `--max-side` go to the server as its flags. `--gpu` (CUDA only) is the sessions-per-GPU
mode: the `compile` variant renders on the GPU and the portrait is the 1080x1920 one of
benchmarks.throughput; encoding (VP8 in aiortc) still runs on the CPU cores, which may be the limit.
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
import psutil
from rich.console import Console
from rich.table import Table

from benchmarks.plots import bars
from harness.server import CpuMeter, start_server, stop_server
from harness.speech import speech_then_silence, write_wav
from harness.webrtc_client import stream_session


def ramp_step(n: int, seconds: float, settle_s: float, wav: Path, tmp: Path, server_args: list[str]) -> dict:
    # All N peers offer at once from 127.0.0.1: one client, as far as the server's admission limits can tell.
    os.environ["AVATAR_ENGINE_OFFER_BURST"] = str(max(5, n))
    server = start_server(tmp, "--max-sessions", str(n), "--max-pending-sessions", str(n), *server_args)
    meter = CpuMeter(server.proc.pid)  # its render processes included
    cpu: list[float] = []
    counters: list[list[dict]] = []  # after settling, at the end
    done = threading.Event()

    def sample() -> None:
        meter.percent()
        while not done.wait(1.0):
            cpu.append(meter.percent())

    async def look(_: str) -> None:
        loop = asyncio.get_running_loop()
        for at in (settle_s, seconds - 0.5):
            await asyncio.sleep(max(0.0, at - (time.monotonic() - t0)))
            text = await loop.run_in_executor(None, lambda: urllib.request.urlopen(server.url + "/api/sessions").read())
            counters.append(json.loads(text)["sessions"])

    async def all_peers() -> list:
        # Only the first peer reads the counters, once every session has streamed for a while.
        return await asyncio.gather(*(stream_session(server.url, wav, seconds, during=look if i == 0 else None)
                                      for i in range(n)))

    t0 = time.monotonic()
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        results = asyncio.run(all_peers())
    finally:
        done.set()
        sampler.join()
        stop_server(server)
    def total(i: int, *names: str) -> int:
        return sum(c[name] for c in counters[i] for name in names)

    sent = total(1, "frames_sent") - total(0, "frames_sent")
    late = total(1, "frames_repeated", "frames_skipped") - total(0, "frames_repeated", "frames_skipped")
    late_all = total(1, "frames_repeated", "frames_skipped")
    delay_ms = max(c["pipeline_delay_s"] for c in counters[1]) * 1000
    received = []
    for got, _ in results:
        t = np.array(got.video_wall_s)
        t = t[t >= t[0] + 1.0]
        received.append((len(t) - 1) / (t[-1] - t[0]) if len(t) > 2 else 0.0)
    return {"sessions": n, "frames_sent": sent, "late_frames": late, "late_share": late / max(1, sent),
            "late_frames_while_settling": late_all - late, "pipeline_delay_ms_max": delay_ms,
            "received_fps_min": min(received), "server_cpu_percent": float(np.mean(cpu[1:])) if len(cpu) > 1 else 0.0}


def gpu_name() -> str:
    import torch

    return f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""


def server_flags(args: argparse.Namespace, tmp: Path) -> list[str]:
    """The server's --generator / --max-side / --avatar for this run; --gpu fills them in (CUDA only)."""
    generator, max_side, avatar = args.generator, args.max_side, None
    if args.gpu:
        if not gpu_name():
            raise SystemExit("--gpu needs CUDA (torch.cuda.is_available() is False here); "
                             "run without --gpu to measure the CPU server")
        from benchmarks.throughput import portraits

        _, avatar, max_side = portraits(tmp)[-1]  # the 1080x1920 portrait
        generator = generator or "compile"
    flags = ["--generator", generator] if generator else []
    flags += ["--max-side", str(max_side)] if max_side else []
    return flags + (["--avatar", str(avatar)] if avatar else [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds before late frames count")
    ap.add_argument("--generator", help="server renderer (default: the server's, warp)")
    ap.add_argument("--max-side", type=int, help="server output size, longer side px (default: the server's, 720)")
    ap.add_argument("--gpu", action="store_true", help="sessions per GPU: --generator compile on a 1080x1920 portrait")
    ap.add_argument("--out", default="sessions", help="writes OUT.json and OUT.png")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sessions-"))
    server_args = server_flags(args, tmp)
    wav = write_wav(tmp / "talk.wav", speech_then_silence(0.5, args.seconds, 0.5))
    rows = []
    for n in range(1, args.max + 1):
        t0 = time.monotonic()
        row = ramp_step(n, args.seconds, args.settle, wav, tmp, server_args)
        row["wall_s"] = time.monotonic() - t0
        row["server_args"] = server_args
        rows.append(row)
        if row["late_share"] > 0.001 or row["received_fps_min"] < 47.5:
            break
    setup = " ".join(server_args) or "server defaults"
    table = Table(title=f"concurrent live sessions, {psutil.cpu_count()} cores{gpu_name()}, server and peers on "
                        f"one machine ({setup})")
    for col in ("sessions", "late frames (settling)", "late after settling", "late share", "pipeline delay ms",
                "min received fps", "server CPU %", "holds 48 fps"):
        table.add_column(col, justify="right")
    for r in rows:
        ok = r["late_share"] <= 0.001 and r["received_fps_min"] >= 47.5
        table.add_row(str(r["sessions"]), str(r["late_frames_while_settling"]), str(r["late_frames"]),
                      f"{r['late_share']:.2%}", f"{r['pipeline_delay_ms_max']:.0f}",
                      f"{r['received_fps_min']:.1f}", f"{r['server_cpu_percent']:.0f}", "yes" if ok else "no")
    Console(width=140).print(table)
    held = [r["sessions"] for r in rows if r["late_share"] <= 0.001 and r["received_fps_min"] >= 47.5]
    print(f"most sessions held: {max(held) if held else 0}")
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    bars(out.with_suffix(".png"), [str(r["sessions"]) for r in rows], [100 * r["late_share"] for r in rows],
         "late frames (%)", "late frames by number of concurrent sessions")
    print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
