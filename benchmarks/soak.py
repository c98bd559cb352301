"""Soak: a long stream, watching memory, lateness and the face's drift from the portrait over time.

    python -m benchmarks.soak [--minutes 60] [--out soak]                # offline, faster than real time
    python -m benchmarks.soak --realtime [--minutes 10] [--out soak-rt]  # a live session over WebRTC

Offline: speech and pauses (espeak-ng) stream through an offline session as fast as it renders;
every 10 s of media it records the process RSS and render time, and in pauses it measures the
face (mediapipe) against the portrait: the mean landmark distance in neutral frames is the drift.
Realtime: `python server.py` and an aiortc peer; the server's RSS, fps and late/repeated frames.
Writes OUT.png (plot) and OUT.json, prints a table. `--generator compile` (or torch, onnx, tensorrt)
soaks a compiled variant: on a CUDA machine that is the GPU mode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

from benchmarks.quality import FaceTracker, find_face
from engine.config import EngineConfig
from engine.generator import prepare_avatar
from engine.session import AvatarSession
from harness.server import start_server, stop_server
from harness.speech import espeak, speech_then_silence, write_wav
from harness.webrtc_client import stream_session

STEP_S = 10.0
SENTENCES = ["Welcome back everyone, this is the evening show.", "This serum has vitamin C and a light texture.",
             "Ask me anything in the chat, I read every message.", "Three colours are in stock, and shipping is free."]


def media_block(rng: np.random.Generator) -> np.ndarray:
    """10 s: speech with a pause of at least 2 s at the end (the neutral frames are measured there)."""
    speech = np.concatenate([espeak(SENTENCES[i]) for i in rng.permutation(len(SENTENCES))[:2]])
    speech = speech[: int(7.0 * 48000)]
    return np.concatenate([speech, np.zeros(int(STEP_S * 48000) - len(speech), np.float32)])


async def offline(minutes: float, generator: str) -> list[dict]:
    avatar = prepare_avatar()
    reference = find_face(avatar.rgb)
    session = AvatarSession(avatar, EngineConfig(generator=generator), live=False, session_id="soak")
    await session.start()
    rng = np.random.default_rng(0)
    blocks = int(minutes * 60 / STEP_S)
    proc = psutil.Process()
    rows: list[dict] = []

    async def feed() -> None:
        for _ in range(blocks):
            await session.wait_backlog_below(int(2 * STEP_S * 48000))
            session.push_audio(media_block(rng), 48000)
        session.end_input()

    feeder = asyncio.create_task(feed())
    t0 = time.monotonic()
    frames_per_block = int(STEP_S * 48)
    neutral: list[np.ndarray] = []
    render_ms = 0.0
    with FaceTracker() as tracker:
        async for w in session.windows():
            render_ms += w.render_ms
            for i, rgb in enumerate(w.frames_rgb):
                k = w.start_frame + i
                in_block = k % frames_per_block
                if in_block in (int(9.0 * 48), int(9.5 * 48)):  # deep in the pause: a neutral face
                    lm = tracker.landmarks(rgb)
                    if lm is not None:
                        neutral.append(np.linalg.norm(lm - reference, axis=-1).mean())
                if in_block == frames_per_block - 1:
                    rows.append({"media_s": (k + 1) / 48, "wall_s": time.monotonic() - t0,
                                 "rss_mb": proc.memory_info().rss / 2**20,
                                 "render_ms_per_frame": render_ms / frames_per_block,
                                 "drift_px": float(np.mean(neutral)) if neutral else float("nan"),
                                 "audio_filled": session.metrics.audio_samples_filled})
                    neutral, render_ms = [], 0.0
    await feeder
    await session.aclose()
    return rows


def realtime(minutes: float, generator: str) -> list[dict]:
    tmp = Path(tempfile.mkdtemp(prefix="soak-rt-"))
    wav = write_wav(tmp / "talk.wav", speech_then_silence(1.0, 6.0, 3.0))  # looped: 6 s talk in every 10 s
    server = start_server(tmp, "--generator", generator)
    proc = psutil.Process(server.proc.pid)
    rows: list[dict] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not stop.wait(STEP_S):
            try:
                with urllib.request.urlopen(server.url + "/api/sessions", timeout=5) as r:
                    reply = json.loads(r.read())
                    sessions = reply["sessions"]
            except OSError:
                continue
            if not sessions:  # before the peer connected or after it left
                continue
            s = sessions[0]
            rows.append({"wall_s": time.monotonic() - t0, "rss_mb": proc.memory_info().rss / 2**20,
                         "frames_sent": s["frames_sent"], "frames_repeated": s["frames_repeated"],
                         "windows_late": s["windows_late"], "audio_frames_late": s["audio_frames_late"],
                         "pipeline_delay_ms": s["pipeline_delay_s"] * 1000,
                         "event_loop_lag_ms_max": reply["server"]["event_loop_lag_ms_max"],
                         "session": s})  # every counter, to tell a slow machine from a stalled input

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        asyncio.run(stream_session(server.url, wav, duration_s=minutes * 60, loop=True))
    finally:
        stop.set()
        sampler.join()
        stop_server(server)
    return rows


def plot(rows: list[dict], out: Path, x: str, series: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(series), 1, figsize=(8, 2.2 * len(series)), sharex=True)
    for ax, name in zip(np.atleast_1d(axes), series, strict=True):
        ax.plot([r[x] for r in rows], [r[name] for r in rows], marker=".")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[-1].set_xlabel(x)
    fig.tight_layout()
    fig.savefig(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--realtime", action="store_true")
    ap.add_argument("--generator", default="warp", help="renderer variant (warp, torch, compile, onnx, tensorrt)")
    ap.add_argument("--out", default="soak")
    args = ap.parse_args()
    out = Path(args.out)
    if args.realtime:
        rows = realtime(args.minutes, args.generator)
        plot(rows, out.with_suffix(".png"), "wall_s", ["rss_mb", "frames_repeated", "pipeline_delay_ms"])
        fps = (rows[-1]["frames_sent"] - rows[0]["frames_sent"]) / (rows[-1]["wall_s"] - rows[0]["wall_s"])
        last = rows[-1]
        summary = {"minutes": args.minutes, "generator": args.generator, "fps": fps, "frames_sent": last["frames_sent"],
                   "frames_repeated": last["frames_repeated"], "windows_late": last["windows_late"],
                   "audio_frames_late": last["audio_frames_late"],
                   "pipeline_delay_ms_max": max(r["pipeline_delay_ms"] for r in rows),
                   "event_loop_lag_ms_max": last["event_loop_lag_ms_max"],
                   "rss_mb_first": rows[0]["rss_mb"], "rss_mb_last": last["rss_mb"]}
    else:
        rows = asyncio.run(offline(args.minutes, args.generator))
        plot(rows, out.with_suffix(".png"), "media_s", ["rss_mb", "render_ms_per_frame", "drift_px"])
        summary = {"media_minutes": args.minutes, "generator": args.generator, "wall_minutes": rows[-1]["wall_s"] / 60,
                   "rss_mb_first": rows[0]["rss_mb"], "rss_mb_last": rows[-1]["rss_mb"],
                   "drift_px_first": rows[0]["drift_px"], "drift_px_last": rows[-1]["drift_px"],
                   "drift_px_max": max(r["drift_px"] for r in rows)}
    out.with_suffix(".json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    table = Table(title=f"soak ({'real time over WebRTC' if args.realtime else 'offline'}), {args.minutes:g} min")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for k, v in summary.items():
        table.add_row(k, f"{v:.2f}" if isinstance(v, float) else str(v))
    Console().print(table)
    print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
