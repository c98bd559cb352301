"""The output canvas' cost per frame, and what one frame costs to encode for RTMP at each canvas size.

    python -m benchmarks.canvas [--frames 300]

A 512x512 portrait frame (I420, as the warp generator hands it over) put on 720x1280 (fit, fill,
over a background image), 1280x720 and 1080x1920, one thread; then the live encoding
(streaming.egress_rtmp.live_encoding: x264 veryfast zerolatency, 2 s GOP) of the canvas, for scale.
Median ms per frame.
"""

from __future__ import annotations

import argparse
import fractions
import statistics
import time

import av
import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from streaming.canvas import Canvas, to_i420
from streaming.egress_rtmp import bit_rate_for, live_encoding


def ms_per_call(fn: object, frames: int) -> float:
    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times[frames // 10:])


def encode_ms(width: int, height: int, frames: int) -> float:
    spec = live_encoding(bit_rate_for(width, height))
    codec = av.CodecContext.create(spec.video_codec, "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = fractions.Fraction(1, 48)
    codec.options = dict(spec.video_options)
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (height * 3 // 2, width), np.uint8), (0, 0), 8)
    pts = iter(range(10**9))

    def one() -> None:
        frame = av.VideoFrame.from_ndarray(np.roll(base, next(pts) % 7, axis=1), format="yuv420p")
        frame.pts = next(pts)
        codec.encode(frame)

    return ms_per_call(one, frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    portrait = to_i420(cv2.GaussianBlur(rng.integers(0, 255, (512, 512, 3), np.uint8), (0, 0), 3))
    background = rng.integers(0, 255, (1080, 1920, 3), np.uint8)
    cases = [("720x1280", "fit", None), ("720x1280", "fill", None), ("720x1280", "fit", background),
             ("1280x720", "fit", None), ("1080x1920", "fit", background), ("512x512", "fit", None)]
    table = Table(title="Output canvas from a 512x512 portrait, one thread (median ms/frame)")
    for column in ("canvas", "fit", "background", "canvas ms", "x264 live encode ms"):
        table.add_column(column)
    encoded: dict[str, float] = {}
    for size, fit, bg in cases:
        width, height = (int(v) for v in size.split("x"))
        canvas = Canvas(width, height, fit, bg)
        if size not in encoded:
            encoded[size] = encode_ms(width, height, min(args.frames, 150))
        table.add_row(size, fit, "image" if bg is not None else "black",
                      f"{ms_per_call(lambda c=canvas: c(portrait), args.frames):.2f}", f"{encoded[size]:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
