"""Contact sheets of rendered frames: one row per portrait, one column per pose.

    python -m benchmarks.contact_sheet [--out docs/contact_sheet.png] [--mouth-out docs/mouth_sheet.png]
                                       [--avatar PATH ...] [--height 200] [--rows-per-sheet 7]

Portraits: the embedded astronaut and every JPEG in tests/data/portraits/ (as benchmarks.quality), each
row labelled with the kinds of face it shows (benchmarks.portraits); the kinds issue 13 asks for that no
portrait shows are printed with the reason. More rows than --rows-per-sheet are split over several
pictures (contact_sheet.png, contact_sheet_2.png, ...), so that each stays readable at page width.
Each frame is rendered through `WarpRenderer` with the controls named in its column. The face sheet
crops it to the face region (the same box for a whole row, so motion shows); the mouth sheet crops the
same frames around the mouth and enlarges them, to judge the lips, teeth and cavity as a viewer of a
full-screen stream would. Both are scaled to a common row height.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from benchmarks.portraits import coverage_lines, kinds_of
from benchmarks.quality import EMBEDDED, controls, default_portraits, load, render
from engine.generator.warp import WarpRenderer
from engine.types import N_CONTROLS

# (label, {control name: value}); names from engine.types.Control
POSES: tuple[tuple[str, dict[str, float]], ...] = (
    ("rest", {}),
    ("jaw 0.3", {"JAW_OPEN": 0.3}),
    ("jaw 0.6", {"JAW_OPEN": 0.6}),
    ("jaw 1", {"JAW_OPEN": 1.0}),
    ("blink", {"BLINK_LEFT": 1.0, "BLINK_RIGHT": 1.0}),
    ("smile", {"SMILE": 1.0, "JAW_OPEN": 0.15}),
    ("turn 8° + roll 6°", {"HEAD_YAW": 8.0, "HEAD_ROLL": 6.0}),
)
LABEL_W = 270
HEADER_H = 30
BG = (24, 24, 28)
FG = (235, 235, 235)
DIM = (150, 150, 160)


def pose_controls() -> np.ndarray:
    c = np.zeros((len(POSES), N_CONTROLS), np.float32)
    for i, (_, values) in enumerate(POSES):
        c[i] = controls(1, **values)[0]
    return c


def face_box(landmarks: np.ndarray, width: int, height: int, scale: float = 1.7) -> tuple[int, int, int, int]:
    """A box around the face, 4:5 (w:h), `scale` times the landmarks' extent, shifted to stay inside the image."""
    x0, y0 = landmarks.min(axis=0)
    x1, y1 = landmarks.max(axis=0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + 0.05 * (y1 - y0)
    h = min(height, scale * max(y1 - y0, 1.25 * (x1 - x0)))
    w = min(width, 0.8 * h)
    h = min(h, 1.25 * w)
    left = int(min(max(cx - w / 2, 0), width - w) + 0.5)
    top = int(min(max(cy - h / 2, 0), height - h) + 0.5)
    return left, top, left + int(w), top + int(h)


def mouth_box(landmarks: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """A 4:3 box around the mouth: corners and outer lips plus a margin that leaves room for the open jaw."""
    from engine.generator.rig import MOUTH_LEFT, MOUTH_RIGHT

    left, right = landmarks[MOUTH_LEFT], landmarks[MOUTH_RIGHT]
    w = 1.9 * float(np.linalg.norm(right - left))
    h = 0.75 * w
    cx, cy = (left + right) / 2 + np.array([0.0, 0.12 * w])  # below the corners: the jaw opens downward
    w, h = min(w, width), min(h, height)
    x0 = int(min(max(cx - w / 2, 0), width - w) + 0.5)
    y0 = int(min(max(cy - h / 2, 0), height - h) + 0.5)
    return x0, y0, x0 + int(w), y0 + int(h)


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",):
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


Row = tuple[str, list[Image.Image]]


def crop_row(frames: np.ndarray, box: tuple[int, int, int, int], height: int) -> list[Image.Image]:
    tiles = []
    for f in frames:
        tile = Image.fromarray(f).crop(box)
        # Enlarged crops (the mouth) use bicubic: Lanczos rings on the pixel edges of a small photo.
        method = Image.Resampling.LANCZOS if tile.height >= height else Image.Resampling.BICUBIC
        tiles.append(tile.resize((round(tile.width * height / tile.height), height), method))
    return tiles


def portrait_rows(portrait: str, height: int, max_side_px: int, mouth_height: int) -> tuple[Row, Row]:
    """(face row, mouth row) of one portrait, from the same rendered frames."""
    avatar = load(portrait, max_side_px)
    frames = render(WarpRenderer(avatar).eval(), pose_controls())
    name = "astronaut (embedded)" if portrait == EMBEDDED else Path(portrait).stem
    label = f"{name}\n{avatar.size[0]}x{avatar.size[1]}\n{', '.join(kinds_of(portrait))}"
    face = crop_row(frames, face_box(avatar.landmarks, *avatar.size), height)
    mouth = crop_row(frames, mouth_box(avatar.landmarks, *avatar.size), mouth_height)
    return (label, face), (label, mouth)


def row_images(portrait: str, height: int, max_side_px: int) -> Row:
    return portrait_rows(portrait, height, max_side_px, height)[0]


def contact_sheet(portraits: list[str], height: int = 220, max_side_px: int = 1280) -> Image.Image:
    return sheet_of([row_images(p, height, max_side_px) for p in portraits], height)


def sheet_of(rows: list[Row], height: int) -> Image.Image:
    col_w = [max(tiles[i].width for _, tiles in rows) for i in range(len(POSES))]
    gap = 6
    sheet = Image.new("RGB", (LABEL_W + sum(col_w) + gap * len(POSES), HEADER_H + len(rows) * (height + gap)), BG)
    draw = ImageDraw.Draw(sheet)
    tiny, small, big = font(13), font(15), font(16)
    x = LABEL_W
    for (label, _), w in zip(POSES, col_w, strict=True):
        draw.text((x + w // 2, HEADER_H // 2), label, fill=FG, font=big, anchor="mm")
        x += w + gap
    for r, (label, tiles) in enumerate(rows):
        y = HEADER_H + r * (height + gap)
        name, size, kinds = [*label.split("\n"), ""][:3]
        notes = [size, *wrap(kinds, LABEL_W - 16, tiny)]
        top = y + height // 2 - 10 * len(notes)
        draw.text((10, top), name, fill=FG, font=small, anchor="lm")
        for k, note in enumerate(notes):
            draw.text((10, top + 22 + 18 * k), note, fill=DIM, font=small if k == 0 else tiny, anchor="lm")
        x = LABEL_W
        for tile, w in zip(tiles, col_w, strict=True):
            sheet.paste(tile, (x + (w - tile.width) // 2, y))
            x += w + gap
    return sheet


def wrap(text: str, width: int, face: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> list[str]:
    """Comma-separated words in lines no wider than `width` px."""
    lines: list[str] = []
    for word in (w.strip() for w in text.split(",") if w.strip()):
        joined = f"{lines[-1]}, {word}" if lines else word
        if lines and face.getlength(joined + ",") <= width:
            lines[-1] = joined
        else:
            if lines:
                lines[-1] += ","
            lines.append(word)
    return lines


def part_path(out: Path, k: int) -> Path:
    """The k-th (0-based) picture of a sheet split in parts: out, then out_2, out_3, ..."""
    return out if k == 0 else out.with_name(f"{out.stem}_{k + 1}{out.suffix}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("docs/contact_sheet.png"))
    ap.add_argument("--mouth-out", type=Path, default=Path("docs/mouth_sheet.png"), help="the mouth close-ups")
    ap.add_argument("--avatar", nargs="+", help=f"portraits ('{EMBEDDED}' = the astronaut); default: all")
    ap.add_argument("--height", type=int, default=200, help="height of each frame in the sheet, px")
    ap.add_argument("--mouth-height", type=int, default=140, help="height of each mouth close-up, px")
    ap.add_argument("--max-side", type=int, default=1280, help="longer side the portrait is scaled down to")
    ap.add_argument("--rows-per-sheet", type=int, default=7, help="portraits per picture; more are split")
    args = ap.parse_args()
    portraits = args.avatar or default_portraits()
    rows = [portrait_rows(p, args.height, args.max_side, args.mouth_height) for p in portraits]
    n = max(1, args.rows_per_sheet)
    parts = [rows[i:i + n] for i in range(0, len(rows), n)]
    for out_base, pick, height in ((args.out, 0, args.height), (args.mouth_out, 1, args.mouth_height)):
        for k, part in enumerate(parts):
            out = part_path(out_base, k)
            out.parent.mkdir(parents=True, exist_ok=True)
            sheet = sheet_of([row[pick] for row in part], height)
            sheet.save(out, optimize=True)
            print(f"{out}: {sheet.width}x{sheet.height}")
        k = len(parts)
        while args.avatar is None and part_path(out_base, k).is_file():  # left by a run with more portraits
            part_path(out_base, k).unlink()
            k += 1
    print("\n".join(coverage_lines(portraits)))


if __name__ == "__main__":
    main()
