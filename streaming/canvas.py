"""The output canvas: every picture of a stream at one chosen size (720x1280 for a vertical platform, ...).

The generator renders the portrait at its own size (the render cost stays per face); the canvas puts
each rendered picture into a WxH frame, fitted (whole portrait, the rest background) or filled (the
frame covered, the portrait's overflow cropped), over a background image or a plain colour. It works
on I420 planes (what the encoders take), so a frame costs one resize of the portrait's planes and
one copy of the background, and nothing when the sizes already agree.

With a keyed background (streaming/keying.py: green, image, alpha) the person is composited over it with the
frame's alpha: the key colour or the picture fills the canvas, the fitted portrait's own background included.
"""

from __future__ import annotations

import argparse
import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from streaming.backdrop import Backdrop
from streaming.keying import MODES, Background, KeyedPicture, PlateSwap, Still, i420_planes, read_image

Fit = Literal["fit", "fill"]
MIN_SIDE, MAX_SIDE = 16, 4096


def parse_size(text: str) -> tuple[int, int]:
    """'720x1280' -> (720, 1280); even sides (I420 halves them), MIN_SIDE..MAX_SIDE."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None:
        raise ValueError(f"size {text!r}: expected WIDTHxHEIGHT, e.g. 720x1280")
    width, height = int(match[1]), int(match[2])
    for side in (width, height):
        if not MIN_SIDE <= side <= MAX_SIDE or side % 2:
            raise ValueError(f"size {text!r}: each side must be even and {MIN_SIDE}..{MAX_SIDE}")
    return width, height


def add_canvas_arguments(parser: argparse.ArgumentParser) -> None:
    """--size, --fit, --background: for `render` and `live` (streaming.outputs.spec_from_args reads them)."""
    parser.add_argument("--size", help="output canvas WIDTHxHEIGHT, e.g. 720x1280 (vertical), 1280x720, 1080x1920 "
                                       "(default: the portrait's own size)")
    parser.add_argument("--fit", choices=("fit", "fill"), default="fit",
                        help="fit: the whole portrait, background around it (default); fill: the canvas covered")
    parser.add_argument("--background", metavar="MODE",
                        help=f"what is behind the person: {MODES} (default photo; a plain image path: "
                             "the photo as it is, the image around a fitted portrait)")


def to_i420(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420)


@dataclass(frozen=True)
class _Layout:
    """Where a source of one size goes: its crop (fill), and the rectangle it covers on the canvas (even)."""

    crop: tuple[int, int, int, int]  # x, y, w, h in the source
    place: tuple[int, int, int, int]  # x, y, w, h on the canvas


def _even(v: float) -> int:
    return max(2, round(v / 2) * 2)


def layout(src_w: int, src_h: int, width: int, height: int, fit: Fit) -> _Layout:
    if fit == "fit":  # all of the portrait, centred; the rest is background
        scale = min(width / src_w, height / src_h)
        w, h = min(width, _even(src_w * scale)), min(height, _even(src_h * scale))
        return _Layout((0, 0, src_w, src_h), ((width - w) // 2 // 2 * 2, (height - h) // 2 // 2 * 2, w, h))
    # fill: the canvas covered; crop the source to the canvas' aspect first, so the resize does no wasted work
    scale = max(width / src_w, height / src_h)
    cw, ch = min(src_w, _even(width / scale)), min(src_h, _even(height / scale))
    return _Layout(((src_w - cw) // 2 // 2 * 2, (src_h - ch) // 2 // 2 * 2, cw, ch), (0, 0, width, height))


class Canvas:
    """canvas(picture[, alpha]) -> the picture on a fresh (H * 3 // 2, W) I420 canvas; picture is RGB (h, w, 3) or
    I420; alpha (h, w) uint8 the person's coverage of it, for a keyed background (None: the still portrait's).

    mode: a keyed Background (green, image, alpha) composites the person over it; it needs `still`, the
    portrait's picture, alpha and plate (keying.Still.of(avatar)). Photo mode: `background`, an image or a
    colour around a fitted portrait, as before."""

    def __init__(self, width: int, height: int, fit: Fit = "fit", background: Path | str | np.ndarray | None = None,
                 colour: tuple[int, int, int] = (0, 0, 0), *, mode: Background | None = None,
                 still: Still | None = None) -> None:
        if fit not in ("fit", "fill"):
            raise ValueError(f"fit {fit!r}: 'fit' or 'fill'")
        parse_size(f"{width}x{height}")
        self.width, self.height, self.fit = width, height, fit
        self.mode = mode if mode is not None and mode.keyed else None
        if self.mode is not None:
            if still is None:
                raise ValueError(f"background {self.mode}: a keyed background needs the portrait's alpha and plate")
            background = self.mode.image if self.mode.mode == "image" else None
            colour = self.mode.key
        self.still = still
        self.background = background if isinstance(background, Path | str) else None
        rgb = _load_background(background) if background is not None else None
        if rgb is None:
            rgb = np.empty((height, width, 3), np.uint8)
            rgb[:] = colour
        else:
            rgb = _cover(rgb, width, height)
        self._base = to_i420(rgb)  # copied for every frame: sinks keep the pictures they were handed
        self._layouts: dict[tuple[int, int], _Layout] = {}
        self._swaps: dict[tuple[int, int], PlateSwap] = {}
        self._backdrops: dict[tuple[int, int], Backdrop] = {}
        # Per source size: a buffer the swap writes for the resize to read, and its planes over the crop (views)
        self._scratch: dict[tuple[int, int], tuple[np.ndarray, list[np.ndarray]]] = {}

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def needs_alpha(self) -> bool:
        """The pacer asks the renderer for each frame's person alpha (AvatarSession.request_alpha)."""
        return self.mode is not None

    def __call__(self, picture: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
        if picture.ndim == 3:
            src_h, src_w = picture.shape[:2]
            picture = to_i420(picture)
        else:
            src_h, src_w = picture.shape[0] * 2 // 3, picture.shape[1]
        lay = self._layouts.get((src_w, src_h))
        if lay is None:
            lay = self._layouts[(src_w, src_h)] = layout(src_w, src_h, self.width, self.height, self.fit)
        cx, cy, cw, ch = lay.crop
        px, py, pw, ph = lay.place
        backdrop: Backdrop | None = None
        tops: tuple[int, int] | None = (0, 0)
        crops: list[np.ndarray] | None = None  # the picture's planes over the crop, where known
        if self.mode is not None:
            # The swap runs at the portrait's size, on the part the canvas shows, before the resize: there are fewer
            # pixels there, and the resize and the swap are both linear. A key colour is the same at any size; a
            # picture is put back at its own detail around the person after the resize (streaming/backdrop.py).
            alpha = self._alpha_for(alpha, src_w, src_h)
            swap = self._swap(lay, src_w, src_h)
            backdrop = self._backdrops.get((src_w, src_h))  # made by _swap
            crop_alpha = alpha[cy:cy + ch, cx:cx + cw]
            changed = swap.update(crop_alpha)
            # Image mode: the picture goes back where the person does not reach (no swap there, no resize above). Its
            # masks are the alpha's alone: an alpha the last frame's (a head that holds still) keeps them as they are.
            if backdrop is not None:
                tops = backdrop.prepare(crop_alpha, changed) if changed is not None or not backdrop.prepared \
                    else backdrop.tops
            full, frame = (0, 0, cw, ch), picture
            if (src_w, src_h) == (self.width, self.height) and self.mode.mode != "image":
                picture = picture.copy()  # handed on as it is: a picture of its own
                swap.apply(_cropped(picture, lay, src_w, src_h), None, full)
            else:  # read only by the resize below: a buffer kept between frames (fresh pages cost page faults), of
                # which the swap writes the crop straight from the picture (no copy first; the rest is never read)
                scratch = self._scratch.get((src_w, src_h))
                if scratch is None:
                    buffer = np.zeros_like(picture)
                    scratch = self._scratch[(src_w, src_h)] = buffer, _cropped(buffer, lay, src_w, src_h)
                picture, crops = scratch[0], scratch[1]
                swap.apply(_cropped(frame, lay, src_w, src_h), crops, backdrop.box if backdrop is not None else full)
        if self.mode is None or self.mode.mode != "image":
            if (src_w, src_h) == (self.width, self.height):
                return picture if self.mode is None or self.mode.mode != "alpha" else KeyedPicture.wrap(picture, alpha)
        tops = tops or (ph, ph // 2)  # no person: the picture everywhere
        covers = lay.place == (0, 0, self.width, self.height)
        out = np.empty_like(self._base) if covers else self._base.copy()
        placed = []
        if crops is None:
            crops = _cropped(picture, lay, src_w, src_h)
        targets = i420_planes(out, self.width, self.height)
        for d, src, dst, top in zip((1, 2, 2), crops, targets, (tops[0], tops[1], tops[1]), strict=True):
            dst = dst[py // d:(py + ph) // d, px // d:(px + pw) // d]
            _resize_into(src, dst, top)
            placed.append(dst)
        if self.mode is None or self.mode.mode == "green":
            return out
        if self.mode.mode == "alpha":  # the canvas-size alpha is made where it is read (the file sink's thread)
            assert alpha is not None
            return KeyedPicture.wrap(out, functools.partial(self._placed_alpha, alpha, lay))
        if backdrop is not None:
            backdrop.apply(placed)
        return out

    def _placed_alpha(self, alpha: np.ndarray, lay: _Layout) -> np.ndarray:
        """The source's alpha on the whole canvas (0 around the portrait's rectangle)."""
        cx, cy, cw, ch = lay.crop
        px, py, pw, ph = lay.place
        out = np.zeros((self.height, self.width), np.uint8)
        _resize_into(alpha[cy:cy + ch, cx:cx + cw], out[py:py + ph, px:px + pw])
        return out

    def _alpha_for(self, alpha: np.ndarray | None, src_w: int, src_h: int) -> np.ndarray:
        if alpha is not None and alpha.shape == (src_h, src_w):
            return alpha
        assert self.still is not None
        if self.still.alpha.shape == (src_h, src_w):  # the still portrait, or a generator that gives no alpha
            return self.still.alpha
        return np.full((src_h, src_w), 255, np.uint8)  # a picture of another size: shown whole

    def _swap(self, lay: _Layout, src_w: int, src_h: int) -> PlateSwap:
        """The plate under the source crop and the background to put there, made once per source size: a key's
        values, or the picture over the portrait's rectangle of the canvas shrunk to the crop (with its Backdrop)."""
        swap = self._swaps.get((src_w, src_h))
        if swap is not None:
            return swap
        assert self.still is not None and self.mode is not None
        plate = self.still.plate
        if plate.shape[:2] != (src_h, src_w):
            plate = cv2.resize(plate, (src_w, src_h), interpolation=cv2.INTER_AREA)
        cx, cy, cw, ch = lay.crop
        px, py, pw, ph = lay.place
        plate_crop = [np.ascontiguousarray(p[cy // d:(cy + ch) // d, cx // d:(cx + cw) // d])
                      for p, d in zip(i420_planes(to_i420(plate), src_w, src_h), (1, 2, 2), strict=True)]
        if self.mode.mode != "image":
            key = to_i420(np.full((2, 2, 3), self.mode.key, np.uint8)).reshape(-1)
            swap = self._swaps[(src_w, src_h)] = PlateSwap((int(key[0]), int(key[4]), int(key[5])), plate_crop)
            return swap
        picture = [base[py // d:(py + ph) // d, px // d:(px + pw) // d]
                   for base, d in zip(i420_planes(self._base, self.width, self.height), (1, 2, 2), strict=True)]
        shrunk = [np.empty_like(small) for small in plate_crop]
        for p, small in zip(picture, shrunk, strict=True):
            _resize_into(p, small)
        if (cw, ch) != (pw, ph):
            self._backdrops[(src_w, src_h)] = Backdrop(picture, (cw, ch))
        swap = self._swaps[(src_w, src_h)] = PlateSwap(shrunk, plate_crop)
        return swap


def _cropped(picture: np.ndarray, lay: _Layout, src_w: int, src_h: int) -> list[np.ndarray]:
    """The I420 picture's Y, U, V over the layout's crop (views)."""
    cx, cy, cw, ch = lay.crop
    return [plane[cy // d:(cy + ch) // d, cx // d:(cx + cw) // d]
            for plane, d in zip(i420_planes(picture, src_w, src_h), (1, 2, 2), strict=True)]


def _resize_into(part: np.ndarray, dst: np.ndarray, top: int = 0) -> None:
    """part resized to dst's size, written into dst; rows of dst above `top` may be left unwritten."""
    if part.shape == dst.shape:
        dst[:] = part
        return
    size = dst.shape[::-1]
    # Shrinking: INTER_AREA averages (no aliasing); growing: bilinear is the cheap, smooth choice.
    shrink = size[0] < part.shape[1]
    sh, dh = part.shape[0], dst.shape[0]
    step = math.gcd(sh, dh)
    skip = top // (dh // step) - 1  # whole blocks (dh / step rows of dst from sh / step of part) left out
    if not shrink and dh > sh and skip > 0:
        # From a block's edge the rows' sample positions and weights are the whole resize's; the band's first rows
        # (under half a block) read its clamped edge instead of the rows above: a block above `top`, not shown
        if skip >= step:
            return
        rows = skip * (dh // step)
        cv2.resize(part[skip * (sh // step):], (size[0], dh - rows), dst=dst[rows:], interpolation=cv2.INTER_LINEAR)
        return
    cv2.resize(part, size, dst=dst, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _load_background(background: Path | str | np.ndarray) -> np.ndarray:
    return background if isinstance(background, np.ndarray) else read_image(background)


def _cover(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """The image scaled and centre-cropped to cover width x height."""
    h, w = rgb.shape[:2]
    scale = max(width / w, height / h)
    cw, ch = min(w, round(width / scale)), min(h, round(height / scale))
    x, y = (w - cw) // 2, (h - ch) // 2
    return cv2.resize(np.ascontiguousarray(rgb[y:y + ch, x:x + cw]), (width, height), interpolation=cv2.INTER_AREA)
