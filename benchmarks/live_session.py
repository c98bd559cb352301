"""One live session over real WebRTC on 127.0.0.1: received fps and the server's CPU use.

    python -m benchmarks.live_session [--seconds 12] [--avatar me.jpg]

Starts `python server.py` on a free port, streams espeak-ng speech into it from an aiortc peer,
samples the server's CPU (its render processes included) while the session runs, and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

from harness.server import CpuMeter, start_server, stop_server
from harness.speech import speech_then_silence, write_wav
from harness.webrtc_client import stream_session


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--avatar", help="portrait for the server (default: embedded)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    wav = write_wav(tmp / "speech.wav", speech_then_silence(1.0, args.seconds - 3.0, 2.0))
    server = start_server(tmp, *(["--avatar", args.avatar] if args.avatar else []))
    meter = CpuMeter(server.proc.pid)  # its render processes included
    cpu: list[float] = []
    done = threading.Event()

    def sample_cpu() -> None:
        time.sleep(2.0)  # skip connection set-up
        meter.percent()
        while not done.wait(1.0):
            cpu.append(meter.percent())

    sampler = threading.Thread(target=sample_cpu)
    sampler.start()
    try:
        got, _ = asyncio.run(stream_session(server.url, wav, duration_s=args.seconds))
    finally:
        done.set()
        sampler.join()
        stop_server(server)
    wall = np.array(got.video_wall_s)
    wall = wall[wall >= wall[0] + 0.5]
    gaps = np.diff(wall)
    table = Table(title=f"one live session, {got.video_size[0]}x{got.video_size[1]}, {args.seconds:.0f} s, 127.0.0.1")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("received video fps", f"{(len(wall) - 1) / (wall[-1] - wall[0]):.2f}")
    table.add_row("frames received", str(len(got.video_wall_s)))
    table.add_row("largest gap between frames (ms)", f"{gaps.max() * 1000:.1f}")
    table.add_row("audio frames received (20 ms)", str(len(got.audio_rms)))
    table.add_row("server CPU, % of one core (mean)", f"{np.mean(cpu):.0f}")
    table.add_row("server CPU, % of one core (max)", f"{np.max(cpu):.0f}")
    table.add_row("cores on this machine", str(psutil.cpu_count()))
    Console().print(table)


if __name__ == "__main__":
    main()
