"""A close-up sheet of the mouth: one row per portrait; the photo, the rest pose, the jaw at 0.3 / 0.6 / 1.0
and a smile, through the generator's own fast path, cropped around the mouth and enlarged.

    python -m benchmarks.mouth_closeup [--out docs/mouth_closeup.png] [--avatar PATH ...] [--height 200]
        [--keep-expression] [--closing]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.contact_sheet import BG, DIM, FG, font
from benchmarks.quality import EMBEDDED, controls, default_portraits
from engine.generator import prepare_avatar
from engine.generator.warp import WarpGenerator

POSES: tuple[tuple[str, dict[str, float]], ...] = (
    ("rest", {}),
    ("jaw 0.3", {"JAW_OPEN": 0.3}),
    ("jaw 0.6", {"JAW_OPEN": 0.6}),
    ("jaw 1.0", {"JAW_OPEN": 1.0}),
    ("smile", {"SMILE": 1.0, "JAW_OPEN": 0.15}),
    ("round (o)", {"MOUTH_ROUND": 1.0, "JAW_OPEN": 0.45}),
)
# The mouth near closing: where the lips meet as the jaw comes to rest.
CLOSING: tuple[tuple[str, dict[str, float]], ...] = (
    ("rest", {}),
    ("jaw 0.05", {"JAW_OPEN": 0.05}),
    ("jaw 0.1", {"JAW_OPEN": 0.1}),
    ("jaw 0.15", {"JAW_OPEN": 0.15}),
    ("jaw 0.2", {"JAW_OPEN": 0.2}),
    ("jaw 0.3", {"JAW_OPEN": 0.3}),
    ("smile", {"SMILE": 1.0}),
)
LABEL_W, HEADER_H, GAP = 170, 30, 6


def mouth_box(landmarks: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """A 4:3 box from above the nose's base to below the chin, as wide as 1.6 mouths."""
    mw = float(np.linalg.norm(landmarks[291] - landmarks[61]) / 2)
    cx, cy = float(landmarks[[13, 14], 0].mean()), float(landmarks[[13, 14], 1].mean())
    w, h = 3.2 * mw, 2.4 * mw
    x0 = int(min(max(cx - w / 2, 0), width - w))
    y0 = int(min(max(cy - 0.38 * h, 0), height - h))
    return x0, y0, x0 + int(w), y0 + int(h)


def row(portrait: str, height: int, keep_expression: bool,
        poses: tuple[tuple[str, dict[str, float]], ...] = POSES) -> tuple[str, list[Image.Image]]:
    avatar = prepare_avatar(None if portrait == EMBEDDED else portrait, max_side_px=1280,
                            keep_expression=keep_expression)
    gen = WarpGenerator(avatar)
    ctl = np.concatenate([controls(1, **values) for _, values in poses])
    photo = avatar.rest.photo if avatar.rest is not None else avatar.rgb
    frames = [photo, *gen._frames(gen.renderer.expressed(ctl))]
    box = mouth_box(avatar.landmarks, *avatar.size)
    tiles = []
    for f in frames:
        tile = Image.fromarray(f).crop(box)
        tiles.append(tile.resize((round(tile.width * height / tile.height), height), Image.Resampling.BICUBIC))
    name = "astronaut" if portrait == EMBEDDED else Path(portrait).stem
    return name, tiles


def sheet(portraits: list[str], height: int = 160, keep_expression: bool = False,
          poses: tuple[tuple[str, dict[str, float]], ...] = POSES) -> Image.Image:
    rows = [row(p, height, keep_expression, poses) for p in portraits]
    labels = ["photo", *(label for label, _ in poses)]
    col_w = max(t.width for _, tiles in rows for t in tiles)
    out = Image.new("RGB", (LABEL_W + len(labels) * (col_w + GAP), HEADER_H + len(rows) * (height + GAP)), BG)
    draw = ImageDraw.Draw(out)
    for j, label in enumerate(labels):
        draw.text((LABEL_W + j * (col_w + GAP) + col_w // 2, HEADER_H // 2), label, fill=FG, font=font(16), anchor="mm")
    for i, (name, tiles) in enumerate(rows):
        y = HEADER_H + i * (height + GAP)
        draw.text((10, y + height // 2), name, fill=DIM if i % 2 else FG, font=font(15), anchor="lm")
        for j, tile in enumerate(tiles):
            out.paste(tile, (LABEL_W + j * (col_w + GAP) + (col_w - tile.width) // 2, y))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="docs/mouth_closeup.png")
    ap.add_argument("--avatar", nargs="+", help="portraits (default: the embedded one and tests/data/portraits)")
    ap.add_argument("--height", type=int, default=160)
    ap.add_argument("--keep-expression", action="store_true", help="animate from the photos' own expressions")
    ap.add_argument("--closing", action="store_true", help="the jaw near closing (0.05-0.3) instead of wide poses")
    args = ap.parse_args()
    sheet(args.avatar or default_portraits(), args.height, args.keep_expression,
          CLOSING if args.closing else POSES).save(args.out, optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
