"""A close-up of the hair's edge in the background modes, for the README.

    python -m benchmarks.green_edge [--out docs/green_edge.png]

For each portrait, the head turned 8 degrees (the matte follows it): the photo mode's frame, the green mode's
(as a viewer decodes it: I420), and the alpha mode's straight colour and alpha laid over a dark scene, as OBS
shows the alpha file or the keyed watch page. Each crop is the top of the head, enlarged 3x without smoothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from benchmarks.contact_sheet import font
from engine.generator import prepare_avatar
from engine.generator.warp import WarpGenerator
from engine.types import N_CONTROLS, Control
from streaming.canvas import Canvas
from streaming.keying import Still, parse_background, straight_rgba

REPO = Path(__file__).resolve().parent.parent
PORTRAITS = (("anne_helene", REPO / "tests/data/portraits/anne_helene_sunglasses_small.jpg"), ("astronaut", None))
ZOOM = 3


def crops(path: Path | None) -> list[np.ndarray]:
    avatar = prepare_avatar(path)
    gen = WarpGenerator(avatar)
    gen.emit_alpha = True
    controls = np.zeros((1, N_CONTROLS), np.float32)
    controls[0, Control.HEAD_YAW] = 8.0
    alphas = gen._alpha_frames(1)
    frame, alpha = gen._frames(controls, alphas)[0], alphas[0]
    still = Still.of(avatar)
    green = Canvas(*avatar.size, mode=parse_background("green"), still=still)(
        cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420), alpha)
    keyed = Canvas(*avatar.size, mode=parse_background("alpha"), still=still)(
        cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420), alpha)
    rgba = straight_rgba(np.asarray(keyed), keyed.alpha, still_key()).astype(np.float32)  # type: ignore[attr-defined]
    scene = np.empty_like(frame, np.float32)
    scene[:] = (28, 36, 64)  # a dark blue studio
    a = rgba[..., 3:] / 255.0
    over = (rgba[..., :3] * a + scene * (1 - a)).astype(np.uint8)
    # The top of the head: from above the hair to the eyes.
    lm = avatar.landmarks
    face_w = float(np.ptp(lm[:, 0]))
    cx, top, eyes = float(lm[:, 0].mean()), float(lm[10, 1]), float(lm[[33, 263], 1].mean())
    y0 = int(max(0, top - 0.9 * face_w))
    y1 = int(min(frame.shape[0], eyes))
    x0 = int(max(0, cx - 0.8 * face_w))
    x1 = int(min(frame.shape[1], cx + 0.8 * face_w))
    views = [frame, cv2.cvtColor(np.asarray(green), cv2.COLOR_YUV2RGB_I420), over]
    return [cv2.resize(v[y0:y1, x0:x1], None, fx=ZOOM, fy=ZOOM, interpolation=cv2.INTER_NEAREST) for v in views]


def still_key() -> tuple[int, int, int]:
    return parse_background("alpha").key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs/green_edge.png"))
    args = parser.parse_args()
    rows = []
    for name, path in PORTRAITS:
        tiles = crops(path)
        h = max(t.shape[0] for t in tiles)
        row = np.hstack([np.pad(t, ((0, h - t.shape[0]), (0, 8), (0, 0)), constant_values=255) for t in tiles])
        rows.append((name, row))
    width = max(r.shape[1] for _, r in rows)
    header = 28
    sheet = np.full((sum(r.shape[0] + header for _, r in rows), width, 3), 255, np.uint8)
    y = 0
    labels = []
    for name, row in rows:
        sheet[y + header:y + header + row.shape[0], :row.shape[1]] = row
        labels.append((y, name, row.shape[1] // 3))
        y += header + row.shape[0]
    image = Image.fromarray(sheet)
    draw = ImageDraw.Draw(image)
    for y, name, tile_w in labels:
        for i, title in enumerate(("photo (head turned 8°)", "green, as decoded (4:2:0)", "alpha over a scene")):
            draw.text((i * tile_w + 6, y + 4), f"{name}: {title}" if i == 0 else title, fill=(0, 0, 0), font=font(16))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out, optimize=True)
    print(f"{args.out}: {image.width}x{image.height}")


if __name__ == "__main__":
    main()
