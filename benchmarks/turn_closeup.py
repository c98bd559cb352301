"""Close-ups of the head turning over the background, for every portrait: are there ghosts of hair or a hat?

    python -m benchmarks.turn_closeup [--out turn_closeup.png] [--save DIR] [--before DIR] [--portraits A B ...]
                                      [--height 300]

Each row is a portrait (the astronaut and every JPEG in tests/data/portraits, loaded as the contact sheet does),
each column a pose: the photo, then turn 8 deg + roll 6 deg (the contact sheet's turn column and the blueprint's
"turn your head"), the same to the other side, and nod 5 deg down and up, rendered through the CPU path
(WarpGenerator). The crop is the head with its hair and the wall beside it, enlarged so that a face 200 px wide
shows at 2x: where a ghost of the hair's top, a hat's rim or a smear of the plate shows, it shows here. --save
writes each portrait's frames (.npy); --before DIR adds, under each row, the row rendered by another build
from such a directory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.contact_sheet import font
from benchmarks.head_layer import build_options, pose_controls, saved_and_before, stack
from benchmarks.quality import EMBEDDED, load
from engine.generator.warp import WarpGenerator
from engine.types import Control

REPO = Path(__file__).resolve().parent.parent
POSES: tuple[tuple[str, dict[int, float]], ...] = (
    ("photo", {}), ("turn 8° + roll 6°", {Control.HEAD_YAW: 8.0, Control.HEAD_ROLL: 6.0}),
    ("turn -8° + roll -6°", {Control.HEAD_YAW: -8.0, Control.HEAD_ROLL: -6.0}),
    ("nod 5°", {Control.HEAD_PITCH: 5.0}), ("nod -5°", {Control.HEAD_PITCH: -5.0}))
TILE_H = 300
LABEL_W = 200


def head_crop(landmarks: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """The head, its hair or hat above and the wall on both sides: 1.1 face widths each side of the face's
    centre, from 0.9 face widths above the face mesh's top to 1 below it."""
    x0, x1 = landmarks[:, 0].min(), landmarks[:, 0].max()
    cx, fw, top = (x0 + x1) / 2, x1 - x0, landmarks[:, 1].min()
    return (int(max(0, cx - 1.1 * fw)), int(max(0, top - 0.9 * fw)), int(min(width, cx + 1.1 * fw)),
            int(min(height, top + 1.0 * fw)))


def row(label: str, frames: np.ndarray, box: tuple[int, int, int, int], header: bool, tile_h: int = TILE_H
        ) -> np.ndarray:
    x0, y0, x1, y1 = box
    tw = round(tile_h * (x1 - x0) / (y1 - y0))
    head_h = 24 if header else 0
    im = Image.new("RGB", (LABEL_W + len(frames) * (tw + 4), tile_h + head_h + 4), (24, 24, 28))
    draw = ImageDraw.Draw(im)
    draw.text((8, head_h + 8), label, fill=(235, 235, 235), font=font(15))
    for i, f in enumerate(frames):
        tile = Image.fromarray(np.ascontiguousarray(f[y0:y1, x0:x1])).resize((tw, tile_h), Image.Resampling.LANCZOS)
        im.paste(tile, (LABEL_W + i * (tw + 4), head_h))
        if header:
            draw.text((LABEL_W + i * (tw + 4) + 4, 4), POSES[i][0], fill=(150, 150, 160), font=font(14))
    return np.asarray(im)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="turn_closeup.png")
    build_options(ap)
    ap.add_argument("--portraits", nargs="+", help="portrait names (astronaut, or a file name in tests/data/portraits)")
    ap.add_argument("--height", type=int, default=TILE_H, help="tile height in pixels")
    args = ap.parse_args()
    names = args.portraits or ["astronaut", *sorted(p.stem for p in (REPO / "tests/data/portraits").glob("*.jpg"))]
    rows = []
    for name in names:
        avatar = load(EMBEDDED if name == "astronaut" else str(REPO / f"tests/data/portraits/{name}.jpg"))
        frames = WarpGenerator(avatar)._frames(pose_controls(POSES))
        box = head_crop(avatar.landmarks, *avatar.size)
        rows.append(row(f"{name}\nnow", frames, box, not rows, args.height))
        before = saved_and_before(frames, name, args.save, args.before)
        if before is not None:
            rows.append(row(f"{name}\nbefore", before, box, False, args.height))
        print(f"{name}: {avatar.size[0]}x{avatar.size[1]}", flush=True)
    Image.fromarray(stack(rows)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
