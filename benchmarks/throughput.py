"""Render throughput per core: frames/s of each generator variant at 512x512, 720x1280, 1080x1920.

    python -m benchmarks.throughput [--variants warp ...] [--window 8] [--concurrent K] [--out throughput]
    python -m benchmarks.throughput --variants torch compile onnx tensorrt --concurrent 8   # GPU mode

One thread, whole windows through the generator protocol (what a session calls), burn-in first,
then the median of timed windows and the p50/p95 latency of one window; on CUDA the timing is
synchronised, so the window latency is each compiled variant's on the GPU. `--concurrent K` renders
K streams at once (K generators, one thread each, as K sessions in one server): their total frames/s
over 48 is the render-bound number of sessions per machine, or per GPU. 720x1280 is a real portrait
(tests/data/portraits); 1080x1920 is the same photo enlarged.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from rich.console import Console
from rich.table import Table

from benchmarks.plots import bars
from engine.blueprint import idle_head_deg
from engine.generator import make_generator, prepare_avatar
from engine.types import N_CONTROLS, Control, MotionWindow

REPO = Path(__file__).resolve().parent.parent
TALL = REPO / "tests/data/portraits/hopper_tall_exif6.jpg"


def portraits(tmp: Path) -> list[tuple[str, str | None, int]]:
    big = tmp / "tall_1080x1920.jpg"
    with Image.open(TALL) as im:
        ImageOps.exif_transpose(im).resize((1080, 1920), Image.Resampling.LANCZOS).save(big, quality=92)
    return [("512x512", None, 720), ("720x1280", str(TALL), 1280), ("1080x1920", str(big), 1920)]


def talking_controls(n: int, start: int) -> np.ndarray:
    k = np.arange(start, start + n)
    c = np.zeros((n, N_CONTROLS), np.float32)
    c[:, Control.JAW_OPEN] = 0.5 + 0.5 * np.sin(k / 3.0)
    c[:, Control.MOUTH_WIDTH] = 0.3 * np.sin(k / 7.0)
    head = idle_head_deg(k)
    c[:, Control.HEAD_YAW], c[:, Control.HEAD_PITCH], c[:, Control.HEAD_ROLL] = head.T
    return c


def talking_window(i: int, window: int) -> MotionWindow:
    """The i-th window of `window` frames of talking controls (silent audio: the renderer ignores it)."""
    return MotionWindow(i * window, talking_controls(window, i * window), np.zeros(window * 1000, np.float32))


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def window_times_s(variant: str, path: str | None, max_side: int, window: int, runs: int) -> list[float]:
    """Seconds per window (whole windows through the generator protocol), after two burn-in windows."""
    generator = make_generator(variant, prepare_avatar(path, max_side), threads=1)
    condition = generator.first_frame()
    times = []
    for i in range(runs + 2):
        _sync()
        t0 = time.perf_counter()
        _, condition = generator.render(talking_window(i, window), condition)
        _sync()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return times


def concurrent_fps(variant: str, path: str | None, max_side: int, window: int, runs: int, streams: int) -> float:
    """Frames/s of `streams` generators rendering at once, one thread each (sessions in one server process):
    on a GPU they share it, on a CPU the cores."""
    avatar = prepare_avatar(path, max_side)
    generators = [make_generator(variant, avatar, threads=1) for _ in range(streams)]

    def run(k: int) -> None:
        g = generators[k]
        condition = g.first_frame()
        for i in range(runs):
            _, condition = g.render(talking_window(i, window), condition)

    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(run, range(streams)))  # burn-in: compile, autotune, caches
        _sync()
        t0 = time.perf_counter()
        list(pool.map(run, range(streams)))
        _sync()
    return streams * runs * window / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["warp"])
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--concurrent", type=int, default=0, metavar="K",
                    help="also render K streams at once (threads) and report their total frames/s")
    ap.add_argument("--out", default="throughput", help="writes OUT.json and OUT.png")
    args = ap.parse_args()
    where = f"CUDA {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "CPU"
    table = Table(title=f"render throughput, one thread, windows of {args.window} ({where})")
    cols = ["variant", "resolution", "frames/s per core", "ms/frame", "window ms p50", "window ms p95",
            "48 fps sessions per core"]
    if args.concurrent:
        cols.append(f"{args.concurrent} streams: frames/s, sessions")
    for col in cols:
        table.add_column(col, justify="right")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            for name, path, side in portraits(Path(tmp)):
                try:
                    times = window_times_s(variant, path, side, args.window, args.runs)
                    together = (concurrent_fps(variant, path, side, args.window, args.runs, args.concurrent)
                                if args.concurrent else None)
                except (ValueError, RuntimeError, ImportError) as e:
                    table.add_row(variant, name, "-", "-", "-", "-", f"unavailable: {e}"[:60])
                    continue
                fps = args.window / statistics.median(times)
                p50, p95 = (float(np.percentile(times, q)) * 1000 for q in (50, 95))
                row = {"variant": variant, "resolution": name, "fps": fps, "device": where,
                       "window_frames": args.window, "window_ms_p50": p50, "window_ms_p95": p95}
                cells = [variant, name, f"{fps:.0f}", f"{1000 / fps:.2f}", f"{p50:.1f}", f"{p95:.1f}",
                         f"{fps / 48:.1f}"]
                if together is not None:
                    row.update(concurrent_streams=args.concurrent, concurrent_fps=together)
                    cells.append(f"{together:.0f}, {together / 48:.1f}")
                results.append(row)
                table.add_row(*cells)
    Console(width=160).print(table)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    bars(out.with_suffix(".png"), [f"{r['variant']} {r['resolution']}" for r in results],
         [r["fps"] for r in results], "frames/s per core", f"render throughput, one thread ({where})")
    print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
