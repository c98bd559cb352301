"""The output canvas' cost per frame, and what one frame costs to encode for RTMP at each canvas size.

    python -m benchmarks.canvas [--frames 300] [--modes]

A 512x512 portrait frame (I420, as the warp generator hands it over) put on 720x1280 (fit, fill,
over a background image), 1280x720 and 1080x1920, one thread; then the live encoding
(streaming.egress_rtmp.live_encoding: x264 veryfast zerolatency, 2 s GOP) of the canvas, for scale.
Median ms per frame. Then the background modes (streaming/keying.py) at 720x1280: the person keyed over
green, a picture, or green with the alpha carried (alpha), with each frame's alpha (a soft-edged head and
shoulders), against photo mode on the same canvas: the modes' own cost is the difference.
"""

from __future__ import annotations

import argparse
import fractions
import functools
import itertools
import math
import statistics
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from streaming.canvas import Canvas, to_i420
from streaming.disclosure import DisclosureLabel
from streaming.egress_alpha import FORMATS, yuva_frame
from streaming.egress_rtmp import bit_rate_for, live_encoding
from streaming.keying import Still, parse_background, straight_yuva


def ms_per_call(fn: object, frames: int) -> float:
    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times[frames // 10:])


def paired_ms(base: object, fn: object, frames: int) -> tuple[float, float]:
    """(median ms of fn, median of fn's ms less base's) with the two called in turn, each pair a moment apart: on a
    shared machine the load moves between separate runs, and the difference of two separate medians moves with it."""
    times, extra = [], []
    for _ in range(frames):
        t0 = time.perf_counter()
        base()  # type: ignore[operator]
        t1 = time.perf_counter()
        fn()  # type: ignore[operator]
        t2 = time.perf_counter()
        times.append((t2 - t1) * 1000)
        extra.append((t2 - t1 - (t1 - t0)) * 1000)
    return statistics.median(times[frames // 10:]), statistics.median(extra[frames // 10:])


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
    parser.add_argument("--modes", action="store_true", help="only the background modes' table")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    if args.modes:
        Console().print(modes_table(args.frames))
        return
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
    Console().print(modes_table(args.frames))
    print(f"alpha file (.webm VP9 with alpha, 720x1280): {alpha_file_ms(min(args.frames, 96)):.1f} CPU ms/frame "
          "to un-mix and encode, one thread (the frame interval at 48 fps is 20.8 ms)")


def alpha_file_ms(frames: int) -> float:
    """CPU ms per frame of what an alpha recording does with each picture: the straight colour and alpha planes
    (keying.straight_yuva), the frame, and the VP9 encode with the sink's options (process time: steadier than
    the wall clock on a shared machine)."""
    still, alpha = person(720)
    canvas = Canvas(720, 1280, "fill", mode=parse_background("alpha"), still=still)
    codec = av.CodecContext.create("libvpx-vp9", "w")
    codec.width, codec.height, codec.pix_fmt = 720, 1280, "yuva420p"
    codec.time_base = fractions.Fraction(1, 48)
    codec.options = dict(FORMATS[".webm"][3])
    codec.thread_count = 1
    pictures = [canvas(to_i420(np.roll(still.rgb, k % 9, axis=1)), np.roll(alpha, k % 9, axis=1))
                for k in range(frames)]
    t0 = time.process_time()
    for i, picture in enumerate(pictures):
        key = canvas.mode.key  # type: ignore[union-attr]
        frame = yuva_frame(straight_yuva(np.asarray(picture), picture.alpha, key))  # type: ignore[attr-defined]
        frame.pts = i
        codec.encode(frame)
    codec.encode()
    return (time.process_time() - t0) * 1000 / frames


def person(size: int) -> tuple[Still, np.ndarray]:
    """A synthetic portrait with a soft-edged head and shoulders: its Still and one frame's alpha."""
    rng = np.random.default_rng(1)
    rgb = cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3), np.uint8), (0, 0), 3)
    alpha = _alpha(size, (0, 0))
    return Still(rgb, alpha, cv2.GaussianBlur(rgb, (0, 0), 9)), np.roll(alpha, 3, axis=1)


def _alpha(size: int, head: tuple[int, int]) -> np.ndarray:
    """The person's alpha, the head moved by `head` (x, y) pixels."""
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(mask, (size // 2 + head[0], size * 2 // 5 + head[1]), (size // 5, size // 4), 0, 0, 360, 255, -1)
    cv2.ellipse(mask, (size // 2, size), (size * 2 // 5, size * 2 // 5), 0, 180, 360, 255, -1)
    return cv2.GaussianBlur(mask, (0, 0), size / 200)


def modes_table(frames: int) -> Table:
    """Each mode's canvas, then the same with the cn disclosure label drawn after it as the pacer does (into the
    canvas' own picture, in_place); the modes' own cost is the difference from photo mode (the median of paired
    differences, photo and the mode called in turn), the budget being 0.5 ms with the label. The head moves every
    frame (a fast wobble of a few pixels: the worst case for what image mode keeps between frames); the last column
    holds it still (the same alpha every frame: speech with a still head, where only the mouth inside moves)."""
    table = Table(title="Background modes on a 720x1280 canvas, one thread (median ms/frame; + over photo)")
    for column in ("portrait", "fit", "background", "canvas ms", "+ ms over photo", "+ ms with the cn label",
                   "+ ms, label, head still"):
        table.add_column(column)
    rng = np.random.default_rng(2)
    label = DisclosureLabel("cn")
    with tempfile.TemporaryDirectory() as tmp:
        picture = Path(tmp) / "studio.png"
        cv2.imwrite(str(picture), cv2.GaussianBlur(rng.integers(0, 255, (1280, 720, 3), np.uint8), (0, 0), 1.5))
        for size, fit in ((512, "fit"), (512, "fill"), (720, "fill")):
            still, _ = person(size)
            # The head moves every frame, the body stays (as the renderer's): what changes is what image mode redraws
            heads = itertools.cycle([_alpha(size, (round(4 * math.sin(k / 3)), round(3 * math.cos(k / 4))))
                                     for k in range(24)])
            frame = to_i420(still.rgb)
            plain = functools.partial(Canvas(720, 1280, fit), frame)
            photo = ms_per_call(plain, frames)
            table.add_row(f"{size}x{size}", fit, "photo", f"{photo:.2f}", "", "", "")
            for mode in ("green", f"image:{picture}", "alpha"):
                canvas = Canvas(720, 1280, fit, mode=parse_background(mode), still=still)
                ms, extra = paired_ms(plain, lambda c=canvas, f=frame, h=heads: c(f, next(h)), frames)
                _, both = paired_ms(
                    plain, lambda c=canvas, f=frame, h=heads: label(c(f, next(h)), 0, in_place=True), frames)
                held = next(heads)
                _, still_head = paired_ms(
                    plain, lambda c=canvas, f=frame, a=held: label(c(f, a), 0, in_place=True), frames)
                table.add_row("", "", mode.split(":")[0], f"{ms:.2f}", f"{extra:+.2f}", f"{both:+.2f}",
                              f"{still_head:+.2f}")
    return table


if __name__ == "__main__":
    main()
