"""Head motion over a still background: does the wall behind a turning head stay put?

    python -m benchmarks.head_layer [--out docs/head_layer.png] [--save DIR] [--before DIR] [--portraits A B ...]

For the astronaut, hopper and luispedro (--portraits: other names in tests/data/portraits): rest, turn 8 deg,
nod 6 deg, roll 6 deg, rendered through the
CPU path (WarpGenerator). For each pose it prints the nose's motion (optical flow at the nose tip) and the
background's: pixels that are background both in the photo and in the frame (mediapipe's selfie
segmentation, threshold 0.5) and at least MARGIN_PX from the person in either, Farneback flow without a
pyramid (window 9), 99th percentile; and the share of those pixels changed by more than 2 levels.
The margin keeps the flow window from reaching the moving head, whose motion it would otherwise smear
over identical wall pixels. The sheet shows each pose, a close-up (x2) of the head's edge that the turn
uncovers beside the photo's, the plate behind the person and |frame - photo| (x4, maximum over the poses)
outside the person. --save writes the frames and the plate (.npy) of this run; --before DIR adds rows
rendered by another build from such a directory (e.g. before a change).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

from benchmarks.contact_sheet import font
from engine.generator import prepare_avatar
from engine.generator.matte import selfie_mask
from engine.generator.warp import WarpGenerator
from engine.types import N_CONTROLS, Control

REPO = Path(__file__).resolve().parent.parent
PORTRAITS: tuple[tuple[str, Path | None], ...] = (
    ("astronaut", None), ("hopper", REPO / "tests/data/portraits/hopper.jpg"),
    ("luispedro", REPO / "tests/data/portraits/luispedro.jpg"))
POSES: tuple[tuple[str, dict[int, float]], ...] = (
    ("rest", {}), ("turn 8°", {Control.HEAD_YAW: 8.0}), ("nod 6°", {Control.HEAD_PITCH: 6.0}),
    ("roll 6°", {Control.HEAD_ROLL: 6.0}))
NOSE_TIP = 1
MARGIN_PX = 15
TILE_H = 240


def pose_controls(poses: tuple[tuple[str, dict[int, float]], ...] = POSES) -> np.ndarray:
    """(len(poses), N_CONTROLS): one frame's controls per pose, zero but for the pose's own."""
    c = np.zeros((len(poses), N_CONTROLS), np.float32)
    for i, (_, values) in enumerate(poses):
        for k, v in values.items():
            c[i, k] = v
    return c


def flow(a: np.ndarray, b: np.ndarray, levels: int = 1, window: int = 9) -> np.ndarray:
    """Farneback flow a -> b. One level, window 9 (the background's): local, so it does not spread a moving
    head's motion far; the nose's motion (up to 25 px) needs a pyramid (4 levels, window 15)."""
    ga, gb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (a, b))
    return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, levels, window, 3, 5, 1.1, 0)


def background(photo: np.ndarray, frame: np.ndarray, margin_px: int) -> np.ndarray:
    """Pixels that are background in both images, at least margin_px from the person in either."""
    person = (selfie_mask(photo) > 0.5) | (selfie_mask(frame) > 0.5)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin_px + 1, 2 * margin_px + 1))
    return cv2.dilate(person.astype(np.uint8), k) == 0


def measure(photo: np.ndarray, frame: np.ndarray, nose: np.ndarray) -> dict[str, float]:
    f = flow(photo, frame)
    mag = np.hypot(f[..., 0], f[..., 1])
    x, y = np.round(nose).astype(int)
    nf = flow(photo, frame, 4, 15)[y - 2 : y + 3, x - 2 : x + 3]
    bg = background(photo, frame, MARGIN_PX)
    near = background(photo, frame, 3)
    diff = np.abs(frame.astype(np.int16) - photo.astype(np.int16)).max(axis=2)
    return {"nose_px": float(np.hypot(nf[..., 0], nf[..., 1]).mean()),
            "bg_flow_p99_px": float(np.percentile(mag[bg], 99)),
            "bg_changed_pct": float((diff[near] > 2).mean() * 100.0)}


def tile(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    crop = Image.fromarray(np.ascontiguousarray(img[y0:y1, x0:x1]))
    return np.asarray(crop.resize((round(TILE_H * (x1 - x0) / (y1 - y0)), TILE_H), Image.Resampling.LANCZOS))


def row_image(label: str, tiles: list[np.ndarray], header: list[str] | None) -> np.ndarray:
    label_w, head_h = 150, 26 if header else 0
    w = label_w + sum(t.shape[1] + 4 for t in tiles)
    im = Image.new("RGB", (w, TILE_H + head_h + 4), (24, 24, 28))
    draw = ImageDraw.Draw(im)
    draw.text((8, head_h + 8), label, fill=(235, 235, 235), font=font(15))
    x = label_w
    for i, t in enumerate(tiles):
        im.paste(Image.fromarray(t), (x, head_h))
        if header:
            draw.text((x + 4, 4), header[i], fill=(150, 150, 160), font=font(14))
        x += t.shape[1] + 4
    return np.asarray(im)


def stack(rows: list[np.ndarray]) -> np.ndarray:
    w = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0))) for r in rows])


def build_options(ap: argparse.ArgumentParser) -> None:
    """--save and --before: this build's frames kept, another build's set beside them (turn_closeup.py too)."""
    ap.add_argument("--save", type=Path, help="write each portrait's frames here as NAME.npy")
    ap.add_argument("--before", type=Path, help="add rows of frames saved by another build (--save)")


def saved_and_before(frames: np.ndarray, name: str, save: Path | None, before: Path | None) -> np.ndarray | None:
    """Keep this build's frames of `name` (--save); another build's frames of it (--before), if it saved them."""
    if save:
        save.mkdir(parents=True, exist_ok=True)
        np.save(save / f"{name}.npy", frames)
    return np.load(before / f"{name}.npy") if before and (before / f"{name}.npy").is_file() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="head_layer.png")
    build_options(ap)
    ap.add_argument("--portraits", nargs="+", help="portrait names instead of the default three")
    args = ap.parse_args()
    portraits = PORTRAITS if not args.portraits else tuple(
        (n, None if n == "astronaut" else REPO / f"tests/data/portraits/{n}.jpg") for n in args.portraits)
    table = Table(title=f"head motion over the background (flow: Farneback, 1 level; background >= {MARGIN_PX} px "
                        "from the person)")
    for col in ("portrait", "build", "pose", "nose moves px", "background flow p99 px", "background changed > 2 %"):
        table.add_column(col, justify="right")
    header = [p for p, _ in POSES] + ["photo | turn 8°: edge x2", "plate", "|frame - photo| x4 outside"]
    rows = []
    for name, path in portraits:
        avatar = prepare_avatar(path, cache_dir=None)
        gen = WarpGenerator(avatar)
        builds = [("now", gen._frames(pose_controls()))]
        plates = {"now": avatar.rgb if avatar.plate is None else avatar.plate}
        before = saved_and_before(builds[0][1], name, args.save, args.before)
        if args.save:
            np.save(args.save / f"{name}_plate.npy", plates["now"])
        if before is not None:
            builds.insert(0, ("before", before))
            before_plate = args.before / f"{name}_plate.npy"  # a build without a plate: the photo
            plates["before"] = np.load(before_plate) if before_plate.is_file() else avatar.rgb
        h, w = avatar.rgb.shape[:2]
        lm = avatar.landmarks
        cx, cy, fw = lm[:, 0].mean(), lm[:, 1].mean(), np.ptp(lm[:, 0])
        box = (int(max(0, cx - 1.3 * fw)), int(max(0, cy - 1.5 * fw)), int(min(w, cx + 1.3 * fw)),
               int(min(h, cy + 1.3 * fw)))
        # A turn to +yaw moves the head towards +x: the wall it uncovers is beside the head's -x edge.
        edge_x = lm[:, 0].min()
        edge = (int(max(0, edge_x - 0.4 * fw)), int(max(0, cy - 0.7 * fw)), int(min(w, edge_x + 0.15 * fw)),
                int(min(h, cy + 0.3 * fw)))
        for build, frames in builds:
            outside = np.zeros((h, w), np.uint8)
            for (pose, _), frame in zip(POSES, frames, strict=True):
                m = measure(avatar.rgb, frame, lm[NOSE_TIP])
                table.add_row(name, build, pose, f"{m['nose_px']:.1f}", f"{m['bg_flow_p99_px']:.2f}",
                              f"{m['bg_changed_pct']:.2f}")
                diff = np.abs(frame.astype(np.int16) - avatar.rgb.astype(np.int16)).max(axis=2)
                outside = np.maximum(outside, np.where(background(avatar.rgb, frame, 3), diff, 0).astype(np.uint8))
            diff_img = np.repeat(np.clip(outside.astype(np.int32) * 4, 0, 255).astype(np.uint8)[..., None], 3, 2)
            close = np.concatenate([tile(avatar.rgb, edge), tile(frames[1], edge)], axis=1)
            tiles = [tile(f, box) for f in frames] + [close, tile(plates[build], box), tile(diff_img, box)]
            rows.append(row_image(f"{name}\n{build}", tiles, header if not rows else None))
    Console(width=140).print(table)
    Image.fromarray(stack(rows)).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
