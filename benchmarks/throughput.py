"""Render throughput per core: frames/s of each generator variant at 512x512, 720x1280, 1080x1920.

    python -m benchmarks.throughput [--variants warp ...] [--window 8] [--out throughput]

One thread, whole windows through the generator protocol (what a session calls), burn-in first,
then the median of timed windows; on CUDA the timing is synchronised. 720x1280 is a real portrait
(tests/data/portraits); 1080x1920 is the same photo enlarged.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
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


def frames_per_s(variant: str, path: str | None, max_side: int, window: int, runs: int) -> float:
    generator = make_generator(variant, prepare_avatar(path, max_side), threads=1)
    condition = generator.first_frame()
    times = []
    for i in range(runs + 2):
        w = MotionWindow(i * window, talking_controls(window, i * window), np.zeros(window * 1000, np.float32))
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        _, condition = generator.render(w, condition)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return window / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["warp"])
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--out", default="throughput", help="writes OUT.json and OUT.png")
    args = ap.parse_args()
    table = Table(title=f"render throughput, one thread, windows of {args.window} "
                        f"({'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'})")
    for col in ("variant", "resolution", "frames/s per core", "ms/frame", "48 fps sessions per core"):
        table.add_column(col, justify="right")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            for name, path, side in portraits(Path(tmp)):
                try:
                    fps = frames_per_s(variant, path, side, args.window, args.runs)
                except (ValueError, RuntimeError, ImportError) as e:
                    table.add_row(variant, name, "-", "-", f"unavailable: {e}"[:60])
                    continue
                results.append({"variant": variant, "resolution": name, "fps": fps})
                table.add_row(variant, name, f"{fps:.0f}", f"{1000 / fps:.2f}", f"{fps / 48:.1f}")
    Console(width=140).print(table)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    bars(out.with_suffix(".png"), [f"{r['variant']} {r['resolution']}" for r in results],
         [r["fps"] for r in results], "frames/s per core", "render throughput, one thread")
    print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
