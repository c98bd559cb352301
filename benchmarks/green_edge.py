"""A close-up of the hair's edge in the background modes, for the README; and green mode's coverage per portrait.

    python -m benchmarks.green_edge [--out docs/green_edge.png]
    python -m benchmarks.green_edge --coverage [NAME ...]   (default: every portrait in tests/data/portraits)

Coverage, as issue 16 asks it: of the pixels farther than 10 px from the person's segmentation of the rendered
frame, the share within 10 levels of the key colour, at rest, the head turned 8 degrees and rolled 6; and how many
pixels inside the face's outline (the face mesh's FACE_OVAL on the rendered frame) are within 10 levels of the key
(0 wanted).

The person's segmentation of a rendered frame is mediapipe's on that frame, and, where the renderer left the photo's
pixel in its place (the body, the room: most of the frame), also mediapipe's on the photo: the same pixel at the same
place is the same thing, and the model, whose 256x256 input sees the moved head, is not stable there (pedersen_tilted's
black sweater: person in the photo, 0.16 on the frame turned 8 degrees, for identical pixels). A pixel is background
when both say so; where the head moved, the frame's segmentation alone decides. --masks DIR saves, per portrait and
pose, the keyed frame with the background pixels that are not key in red and the segmentation's outline in blue.

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


def coverage(name: str, masks: Path | None = None) -> list[tuple[str, float, int]]:
    """(pose, share of the background that is key, key pixels on the face) at rest, turned and rolled."""
    from engine.generator.matte import selfie_mask
    from streaming.keying import KEY_GREEN

    avatar = prepare_avatar(None if name == "astronaut" else REPO / f"tests/data/portraits/{name}.jpg")
    gen = WarpGenerator(avatar)
    gen.emit_alpha = True
    controls = np.zeros((3, N_CONTROLS), np.float32)
    controls[1, Control.HEAD_YAW], controls[2, Control.HEAD_ROLL] = 8.0, 6.0
    alphas = gen._alpha_frames(3)
    frames = gen._frames(controls, alphas)
    canvas = Canvas(*avatar.size, mode=parse_background("green"), still=Still.of(avatar))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (21, 21))
    photo_person = selfie_mask(avatar.rgb) > 0.5
    rows = []
    for pose, frame, alpha in zip(("rest", "turn 8", "roll 6"), frames, alphas, strict=True):
        keyed = canvas(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420), alpha)
        out = cv2.cvtColor(np.asarray(keyed), cv2.COLOR_YUV2RGB_I420)
        key = np.abs(out.astype(np.int16) - np.asarray(KEY_GREEN, np.int16)).max(axis=-1) <= 10
        person = person_of(frame, avatar.rgb, photo_person)
        outside = cv2.dilate(person.astype(np.uint8), disk) == 0
        face = face_region(frame)
        rows.append((pose, float(key[outside].mean()), int(key[face].sum())))
        if masks is not None:
            save_mask(masks / f"{name}_{pose.replace(' ', '')}.png", out, outside & ~key, person, key & face)
    return rows


def face_region(frame: np.ndarray) -> np.ndarray:
    """(H, W) bool: inside the face's outline (the face mesh's FACE_OVAL, found on the frame itself), not its convex
    hull, which bridges the outline's hollows (under the jaw beside the neck, at the temples) over the background."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_FACE_OVAL

    from engine.generator.faces import face_mesh

    face = np.zeros(frame.shape[:2], np.uint8)
    landmarks = face_mesh(frame)
    if landmarks is not None:
        after = dict(FACEMESH_FACE_OVAL)
        outline = [next(iter(after))]
        while after[outline[-1]] != outline[0]:
            outline.append(after[outline[-1]])
        cv2.fillPoly(face, [np.round(landmarks[outline, :2]).astype(np.int32)], 1)
    return face > 0


def person_of(frame: np.ndarray, photo: np.ndarray, photo_person: np.ndarray) -> np.ndarray:
    """(H, W) bool: the person's segmentation of a rendered frame: mediapipe's on the frame, or on the photo where
    the frame's pixel is the photo's own (within 2 levels: the renderer left it in place)."""
    from engine.generator.matte import selfie_mask

    unchanged = np.abs(frame.astype(np.int16) - photo.astype(np.int16)).max(axis=-1) <= 2
    return (selfie_mask(frame) > 0.5) | (unchanged & photo_person)


def save_mask(path: Path, keyed: np.ndarray, missed: np.ndarray, person: np.ndarray, on_face: np.ndarray) -> None:
    """The keyed frame with `missed` (background that is not key) in red, key on the face in magenta and the
    person's outline in blue."""
    vis = keyed.copy()
    vis[missed] = (255, 0, 0)
    vis[on_face] = (255, 0, 255)
    outline, _ = cv2.findContours(person.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(vis, outline, -1, (0, 0, 255), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(vis).save(path)


def coverage_table(names: list[str], masks: Path | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="green mode: background within 10 levels of the key, 10 px past the person; key on the face")
    for column in ("portrait", "rest", "turn 8", "roll 6", "key pixels on the face"):
        table.add_column(column)
    for name in names:
        rows = coverage(name, masks)
        table.add_row(name, *(f"{100 * share:.2f}%" for _, share, _ in rows), " / ".join(str(n) for *_, n in rows))
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs/green_edge.png"))
    parser.add_argument("--coverage", nargs="*", metavar="NAME", help="print green mode's coverage instead")
    parser.add_argument("--masks", type=Path, metavar="DIR", help="with --coverage: save where the key is missed")
    args = parser.parse_args()
    if args.coverage is not None:
        names = args.coverage or ["astronaut", *sorted(p.stem for p in (REPO / "tests/data/portraits").glob("*.jpg"))]
        coverage_table(names, args.masks)
        return
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
