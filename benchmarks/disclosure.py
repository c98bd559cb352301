"""The disclosure label's cost per frame (streaming/disclosure.py), as the pacer pays it: once per frame, after the
canvas, before any sink or encoder.

    python -m benchmarks.disclosure [--frames 2000]

Each preset on a 720x1280 and a 1280x720 I420 frame (what the canvas and the encoders hand on) and on a 720x1280
RGB frame, one thread; the copy of the frame it makes (sinks keep the pictures they are handed) is shown apart.
Median ms per frame (timeit-style: perf_counter around each call, the first tenth left out as warm-up). The
budget, with the background modes (streams keyed by streaming/canvas.py), is 0.5 ms at 720x1280.

The hidden label in the H.264 (streaming/sei.py) is paid per keyframe, in the encoder's thread: its SEI put into a
real 720x1280 keyframe of the live encode, per keyframe and per frame (a keyframe every 2 s: 1 frame in 96).
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks.canvas import ms_per_call
from streaming.aigc import aigc_fields, aigc_json
from streaming.disclosure import DisclosureLabel
from streaming.egress_rtmp import bit_rate_for
from streaming.encoding import LIVE_GOP_FRAMES, CodecEncoder, live_video
from streaming.sei import SeiLabel
from streaming.sinks import PacedFrame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    table = Table(title="disclosure label, ms per frame (median)")
    for column in ("preset", "frame", "label", "of which the copy"):
        table.add_column(column)
    for preset in ("cn", "eu", "en"):
        for width, height, kind in ((720, 1280, "I420"), (1280, 720, "I420"), (720, 1280, "RGB")):
            shape = (height * 3 // 2, width) if kind == "I420" else (height, width, 3)
            frame = cv2.GaussianBlur(rng.integers(0, 255, shape, np.uint8), (0, 0), 4)
            label = DisclosureLabel(preset)
            label(frame, 0)  # the patch is made once per frame size
            cost = ms_per_call(lambda label=label, frame=frame: label(frame, 0), args.frames)
            copy = ms_per_call(frame.copy, args.frames)
            table.add_row(preset, f"{width}x{height} {kind}", f"{cost:.3f}", f"{copy:.3f}")
    Console().print(table)
    Console().print(sei_table(frame_i420(rng, 720, 1280), args.frames))


def frame_i420(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    return cv2.GaussianBlur(rng.integers(0, 255, (height * 3 // 2, width), np.uint8), (0, 0), 4)


def sei_table(picture: np.ndarray, frames: int) -> Table:
    """The SEI's cost on a keyframe of the stream's live H.264 (its bytes built once per stream, apart)."""
    width, height = picture.shape[1], picture.shape[0] * 2 // 3
    codec = CodecEncoder("video", live_video(bit_rate_for(width, height)), "bench")  # no label: the bare keyframe
    keyframe = codec.encode_video([PacedFrame(0, picture, None)], keyframe=True)[0].data
    codec.flush()
    text = aigc_json(aigc_fields())
    label = SeiLabel(text)
    build = ms_per_call(lambda: SeiLabel(text), frames)
    insert = ms_per_call(lambda: label.insert(keyframe), frames)
    table = Table(title=f"hidden label: H.264 SEI, {width}x{height} keyframe of {len(keyframe) // 1000} kB, ms")
    for column in ("SEI bytes", "built (once per stream)", "per keyframe", "per frame (1 in 96)"):
        table.add_column(column)
    table.add_row(str(len(label.framed)), f"{build:.4f}", f"{insert:.4f}", f"{insert / LIVE_GOP_FRAMES:.5f}")
    return table


if __name__ == "__main__":
    main()
