"""What a blink costs the live path: ms per frame of the warp generator, plain against blinking (both eyes at 0.5
and at 1), in one-frame windows (what a live session renders) and in windows of 8.

    python -m benchmarks.blink_cost [--frames 200] [--window 8]

One torch thread, as a session renders; warm-up first; the three kinds of frame are rendered in turn, frame by
frame, so a loaded machine slows each alike; the median of --frames each. 512x512 is the embedded portrait,
720x1280 a real one (tests/data/portraits/hopper_tall_exif6.jpg). The target: a blinking frame at most ~1.3x a
plain one (a frame that misses its slot is repeated by the pacer, counted as skipped).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from benchmarks.throughput import TALL
from engine.generator import prepare_avatar
from engine.generator.warp import WarpGenerator
from engine.types import N_CONTROLS, Control

KINDS = (("plain", 0.0), ("blink 0.5", 0.5), ("blink 1", 1.0))


def controls(n: int, blink: float) -> np.ndarray:
    c = np.zeros((n, N_CONTROLS), np.float32)
    c[:, Control.JAW_OPEN] = 0.3
    c[:, Control.BLINK_LEFT] = c[:, Control.BLINK_RIGHT] = blink
    return c


def ms_per_frame(gen: WarpGenerator, window: int, frames: int) -> list[float]:
    """Median ms per frame of each kind (KINDS), in windows of `window` frames, rendered in turn."""
    ctl = [controls(window, b) for _, b in KINDS]
    times: list[list[float]] = [[] for _ in KINDS]
    for i in range(max(3, frames // window) + 3):
        for k, c in enumerate(ctl):
            t0 = time.perf_counter()
            gen._frames(c)
            if i >= 3:
                times[k].append((time.perf_counter() - t0) * 1000.0 / window)
    return [statistics.median(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200, help="frames timed of each kind and window size")
    ap.add_argument("--window", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    table = Table(title="blink cost: ms per frame (x a plain frame), one thread")
    for col in ("resolution", "window", *(name for name, _ in KINDS)):
        table.add_column(col, justify="right")
    for name, path, side in (("512x512", None, 720), ("720x1280", str(TALL), 1280)):
        gen = WarpGenerator(prepare_avatar(path, side), threads=1)
        for window in (1, args.window):
            ms = ms_per_frame(gen, window, args.frames)
            table.add_row(name, str(window), *(f"{m:.2f} ({m / ms[0]:.2f}x)" for m in ms))
    Console().print(table)


if __name__ == "__main__":
    main()
