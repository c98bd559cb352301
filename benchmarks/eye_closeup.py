"""Blink close-ups: each eye of each portrait, enlarged, through a blink (as the live path renders it).

    python -m benchmarks.eye_closeup --avatar giunchedi_beard henner_glasses --out /tmp/eyes_closeup.png
    python -m benchmarks.eye_closeup --avatar astronaut --levels 0.15 0.4 0.7 0.92 1 --max-side 512

Columns: the photo's eye, each blink level (default 0.33, 0.66, 1: closed; --levels: e.g. the closing frames of
engine.blueprint.BLINK_CURVE at 48 fps), and the closed eye with the rig's lid lines drawn (upper lid, lower
lid, the closed line, the top of the lid's skin band). Rows: one per eye.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.quality import EMBEDDED, PORTRAIT_DIR, controls, load
from engine.generator import PreparedAvatar
from engine.generator.avatar import PREP_VERSION
from engine.generator.rig import lid_curve
from engine.generator.warp import WarpGenerator

LEVELS = (0.0, 0.33, 0.66, 1.0)
CACHE = Path(f"/tmp/eye_closeup_cache/v{PREP_VERSION}")  # a prepared avatar of an older version may differ


def avatar_of(name: str, max_side_px: int) -> PreparedAvatar:
    """The prepared portrait, cached between runs (prepare takes seconds)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}_{max_side_px}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    avatar = load(EMBEDDED if name == "astronaut" else str(PORTRAIT_DIR / f"{name}.jpg"), max_side_px)
    path.write_bytes(pickle.dumps(avatar))
    return avatar


def blink_frames(gen: WarpGenerator, levels: tuple[float, ...] = LEVELS) -> np.ndarray:
    ctl = np.concatenate([controls(1, BLINK_LEFT=b, BLINK_RIGHT=b) for b in levels])
    return gen._frames(ctl)


def lid_lines(gen: WarpGenerator, k: int) -> list[np.ndarray]:
    """The rig's lines of eye k in portrait pixels: upper lid, lower lid, closed line, the skin band's top."""
    r = gen.renderer
    eye = r.g.eyes[k]
    us = np.linspace(-1.0, 1.0, 41)
    top, bottom = lid_curve(eye, us, eye.upper), lid_curve(eye, us, eye.lower)
    bottom = np.maximum(bottom, top)
    reach = eye.reach[0] + us * (eye.reach[1] + us * eye.reach[2])
    xs = eye.cx + us * eye.half_w
    x0, y0 = r.roi[:2]
    out = []
    for y in (top, bottom, bottom - 0.12 * (bottom - top), top - reach):
        ix, iy = r.g.frame.to_image(xs, y)
        out.append(np.stack([ix + x0, iy + y0], axis=1))
    return out


def closeup(name: str, max_side_px: int = 1280, scale: int = 4, levels: tuple[float, ...] = LEVELS) -> Image.Image:
    avatar = avatar_of(name, max_side_px)
    gen = WarpGenerator(avatar)
    levels = (0.0, *sorted(v for v in levels if 0 < v < 1), 1.0)
    frames = blink_frames(gen, levels)
    tiles: list[list[Image.Image]] = []
    for k, eye in enumerate(gen.renderer.g.eyes):
        lines = lid_lines(gen, k)
        pts = np.concatenate(lines)
        cx, cy = pts.mean(axis=0)
        half = 1.7 * eye.half_w
        box = (int(cx - half), int(cy - 0.75 * half), int(cx + half), int(cy + 0.55 * half))
        row = [Image.fromarray(f).crop(box) for f in (avatar.rgb, *frames[1:])]
        marked = row[-1].copy()
        d = ImageDraw.Draw(marked)
        for line, colour in zip(lines, ((0, 255, 0), (0, 128, 255), (255, 0, 0), (255, 255, 0)), strict=True):
            d.line([(float(x - box[0]), float(y - box[1])) for x, y in line], fill=colour, width=1)
        row.append(marked)
        tiles.append([t.resize((t.width * scale, t.height * scale), Image.Resampling.NEAREST) for t in row])
    tw = max(t.width for r in tiles for t in r)
    th = max(t.height for r in tiles for t in r)
    out = Image.new("RGB", (len(tiles[0]) * (tw + 4), 20 + len(tiles) * (th + 4)), (24, 24, 28))
    d = ImageDraw.Draw(out)
    d.text((4, 4), f"{name}: photo, blink {', '.join(map(str, levels[1:]))}, closed with lid lines", fill=(235,) * 3)
    for i, row in enumerate(tiles):
        for j, t in enumerate(row):
            out.paste(t, (j * (tw + 4), 20 + i * (th + 4)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--avatar", nargs="+", default=["giunchedi_beard", "guido_grey_beard_glasses", "henner_glasses"])
    ap.add_argument("--out", type=Path, default=Path("/tmp/eyes_closeup.png"))
    ap.add_argument("--max-side", type=int, default=1280)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--levels", type=float, nargs="+", default=list(LEVELS[1:]),
                    help="blink levels to show (closed, 1, is always shown last)")
    args = ap.parse_args()
    sheets = [closeup(n, args.max_side, args.scale, tuple(args.levels)) for n in args.avatar]
    w = max(s.width for s in sheets)
    out = Image.new("RGB", (w, sum(s.height + 6 for s in sheets)), (0, 0, 0))
    y = 0
    for s in sheets:
        out.paste(s, (0, y))
        y += s.height + 6
    out.save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
