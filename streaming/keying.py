"""Background modes: what shows behind the person (photo, a key colour, a picture) and the alpha that separates them.

    --background photo            the photo as it is (default)
    --background green[:#RRGGBB]  a key colour everywhere outside the person (default #00B140), for a chroma key
    --background image:PATH       a picture behind the person, covering the canvas
    --background alpha[:#RRGGBB]  live outputs keyed on the colour as with green; recordings and `render` get a
                                  file with an alpha channel (WebM VP9 yuva420p, or ProRes 4444 in a .mov)
    --background PATH             (the older form) the photo as it is, the image only around a fitted portrait

The person comes with the renderer's own alpha for each frame (RenderedWindow.alpha_frames: the warped
person layer's coverage, so the matte follows the moving head), and every rendered frame is that layer
over the photo's background plate: frame = person + (1 - alpha) x plate, the person already un-mixed from
the photo's own background at prepare (engine.generator.matte.premultiplied_layer). Swapping the plate for
another background is then one linear step per pixel: out = frame + (1 - alpha) x (background - plate) =
person + (1 - alpha) x background. Hair's soft edge keeps its alpha and carries none of the old background's
colour, so there is no spill of it, nor of the key, on the person. The step is linear, so it runs on the
I420 planes the encoders take, after the canvas' resize: a few byte operations per pixel.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

Mode = Literal["photo", "green", "image", "alpha"]
KEY_GREEN = (0x00, 0xB1, 0x40)  # #00B140: chroma-key green, far from skin and hair
MODES = "photo, green[:#RRGGBB], image:PATH, alpha[:#RRGGBB]"


@dataclass(frozen=True)
class Background:
    """A parsed --background value."""

    mode: Mode = "photo"
    key: tuple[int, int, int] = KEY_GREEN  # green and alpha modes: the colour outside the person (RGB)
    image: Path | None = None  # image mode: the picture behind the person
    surround: Path | None = None  # photo mode (the older form): an image around a fitted portrait only

    @property
    def keyed(self) -> bool:
        """The person is composited over something other than the photo's own background."""
        return self.mode != "photo"

    @property
    def path(self) -> Path | None:
        """The file this mode reads, if any."""
        return self.image if self.mode == "image" else self.surround

    def with_path(self, path: Path) -> Background:
        return replace(self, image=path) if self.mode == "image" else replace(self, surround=path)

    def __str__(self) -> str:
        if self.mode in ("green", "alpha"):
            return self.mode if self.key == KEY_GREEN else f"{self.mode}:#{bytes(self.key).hex().upper()}"
        if self.mode == "image":
            return f"image:{self.image}"
        return str(self.surround) if self.surround is not None else "photo"


def parse_background(text: str | Path | None) -> Background:
    """'green', 'green:#00FF00', 'image:bg.jpg', 'alpha', 'photo', or (the older form) an image path: a Background.
    ValueError naming the accepted forms when it is none of them. Files are not opened here."""
    if text is None:
        return Background()
    raw = str(text).strip()
    head, _, rest = raw.partition(":")
    name = head.lower()
    if name == "photo" and not rest:
        return Background()
    if name in ("green", "alpha"):
        return Background(name, _colour(rest) if rest else KEY_GREEN)  # type: ignore[arg-type]
    if name == "image":
        if not rest.strip():
            raise ValueError("background 'image:': name the picture, e.g. image:studio.jpg")
        return Background("image", image=Path(rest.strip()))
    if not raw or name in ("photo", "key", "chroma", "transparent", "none"):
        raise ValueError(f"background {raw!r}: expected one of {MODES}")
    return Background(surround=Path(raw))


def _colour(text: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"\s*#?([0-9a-fA-F]{6})\s*", text)
    if match is None:
        raise ValueError(f"key colour {text!r}: expected #RRGGBB, e.g. #00B140 or #00FF00")
    r, g, b = bytes.fromhex(match[1])
    return r, g, b


def read_image(path: Path | str) -> np.ndarray:
    """An image file as RGB, or ValueError."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"background {path}: not an image OpenCV can read")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class Still:
    """What keying needs of a portrait: its still picture, the person's alpha on it, and the background plate
    under it (engine.generator.person_alpha.keying_layer: the renderer's, refined for keying at prepare)."""

    rgb: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray  # (H, W) uint8
    plate: np.ndarray  # (H, W, 3) uint8

    @classmethod
    def of(cls, avatar: object) -> Still:
        from engine.generator.person_alpha import keying_layer

        alpha, plate = keying_layer(avatar)  # type: ignore[arg-type]
        return cls(avatar.rgb, alpha, plate)  # type: ignore[attr-defined]


class KeyedPicture(np.ndarray):
    """An I420 picture that also carries the person's alpha at its size (alpha mode): sinks that know it (an
    alpha recording) read it with alpha_of(); the others see a plain picture keyed on the colour. The alpha may
    be given as a function that makes it: then it is made where it is first read (a sink's thread), not on the
    event loop where the canvas runs."""

    _alpha: np.ndarray | Callable[[], np.ndarray] | None = None

    @classmethod
    def wrap(cls, i420: np.ndarray, alpha: np.ndarray | Callable[[], np.ndarray]) -> KeyedPicture:
        out = i420.view(cls)
        out._alpha = alpha
        return out

    @property
    def alpha(self) -> np.ndarray | None:
        if callable(self._alpha):
            self._alpha = self._alpha()
        return self._alpha

    def __array_finalize__(self, obj: object) -> None:
        self._alpha = getattr(obj, "_alpha", None)


def alpha_of(picture: np.ndarray) -> np.ndarray | None:
    """The alpha a picture carries (alpha mode), or None."""
    return picture.alpha if isinstance(picture, KeyedPicture) else None


def i420_planes(i420: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of a (H * 3 // 2, W) I420 buffer."""
    flat = i420.reshape(-1)
    y_size, c_size = width * height, (width // 2) * (height // 2)
    return (flat[:y_size].reshape(height, width),
            flat[y_size:y_size + c_size].reshape(height // 2, width // 2),
            flat[y_size + c_size:y_size + 2 * c_size].reshape(height // 2, width // 2))


class PlateSwap:
    """out = frame - (1 - alpha) x plate + (1 - alpha) x background, on one rectangle of I420 planes, in place.

    The frame is the person over the plate (frame = person + (1 - alpha) x plate): the plate's share comes out and the
    background's goes in. The shares, (1 - alpha) x plate and, for a picture, (1 - alpha) x background, are scaled byte
    multiplies (cv2.multiply: SIMD loops that release the GIL) kept between frames and made again only on the rows
    whose alpha changed since the last frame (a still body keeps its rows; a moving head changes its own): a frame
    then costs a saturating subtract and add per plane, or for a flat background (a key colour) one fused
    multiply-add (cv2.addWeighted). No float frame in between. Where alpha is 0 the result is the background (to a
    level); where it is 255, the frame untouched."""

    def __init__(self, background: list[np.ndarray] | tuple[int, int, int], plate_i420: list[np.ndarray]) -> None:
        """background: the background's Y, U, V planes over the rectangle, or a flat one's Y, U, V values."""
        self.plate = plate_i420
        self.background = background
        self._inv = np.empty_like(plate_i420[0]), np.empty_like(plate_i420[1])
        # The plate's and a picture's shares at the alpha last seen on each row; `_seen` that alpha (None: none yet)
        self._plate_share = [np.empty_like(p) for p in plate_i420]
        self._picture_share = None if isinstance(background, tuple) else [np.empty_like(p) for p in plate_i420]
        self._seen: np.ndarray | None = None
        self._changed = np.empty_like(plate_i420[0])
        self._changed_pairs = np.empty((plate_i420[0].shape[0] // 2, plate_i420[0].shape[1]), np.uint8)

    def apply(self, planes: list[np.ndarray], out: list[np.ndarray] | None, box: tuple[int, int, int, int]) -> None:
        """The swap over `box` ((x0, y0, x1, y1), even) at the alpha last given to update(). planes: the frame's Y, U, V
        over the rectangle, changed in place, or read only when `out` (planes of the same shapes) is where to write
        (saves the caller copying the frame first)."""
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            return
        rects = np.s_[y0:y1, x0:x1], np.s_[y0 // 2:y1 // 2, x0 // 2:x1 // 2]
        pictures = self._picture_share
        for k, (src, plane, share) in enumerate(zip(planes, out or planes, self._plate_share, strict=True)):
            rect = rects[k > 0]
            plane = plane[rect]
            cv2.subtract(src[rect], share[rect], dst=plane)
            if pictures is not None:
                cv2.add(plane, pictures[k][rect], dst=plane)
            else:
                assert isinstance(self.background, tuple)
                cv2.addWeighted(plane, 1.0, self._inv[k > 0][rect], self.background[k] / 255.0, 0.0, dst=plane)

    def update(self, alpha_y: np.ndarray) -> tuple[int, int] | None:
        """(1 - alpha) and the shares made again over the rectangle (even sides: a chroma pixel is its 2x2 Y pixels'
        mean) that bounds the pixels whose alpha differs from the last frame's: the same bytes as making them for
        every frame. Returns its rows (first, end), None when no pixel differs."""
        h, w = alpha_y.shape
        if self._seen is None or h % 2 or w % 2:  # odd: a chroma pixel is not the mean of its own 2x2 alone
            self._seen = np.empty_like(self._changed)
            x0, y0, x1, y1 = 0, 0, w, h
        else:
            cv2.compare(alpha_y, self._seen, cv2.CMP_NE, dst=self._changed)
            # The changed pixels' bounding box over pairs of rows (half the bytes to scan; the box takes whole pairs)
            pairs = self._changed_pairs
            cv2.bitwise_or(self._changed[0::2], self._changed[1::2], dst=pairs)
            x0, p0, cols, rows = cv2.boundingRect(pairs)
            if rows == 0:
                return None
            x1, y0, y1 = min(w, (x0 + cols + 1) // 2 * 2), 2 * p0, 2 * (p0 + rows)
            x0 = x0 // 2 * 2
        rects = np.s_[y0:y1, x0:x1], np.s_[y0 // 2:y1 // 2, x0 // 2:x1 // 2]
        alpha = alpha_y[rects[0]]
        self._seen[rects[0]] = alpha
        invs = self._inv[0][rects[0]], self._inv[1][rects[1]]
        cv2.resize(alpha, invs[1].shape[::-1], dst=invs[1], interpolation=cv2.INTER_AREA)
        cv2.bitwise_not(alpha, dst=invs[0])
        cv2.bitwise_not(invs[1], dst=invs[1])
        pictures = self._picture_share
        for k, (plate, share) in enumerate(zip(self.plate, self._plate_share, strict=True)):
            rect, inv = rects[k > 0], invs[k > 0]
            cv2.multiply(inv, plate[rect], dst=share[rect], scale=1.0 / 255.0)
            if pictures is not None:
                assert not isinstance(self.background, tuple)
                cv2.multiply(inv, self.background[k][rect], dst=pictures[k][rect], scale=1.0 / 255.0)
        return y0, y1


def straight_yuva(i420: np.ndarray, alpha: np.ndarray, key: tuple[int, int, int]) -> list[np.ndarray]:
    """[Y, U, V, A] planes (yuva420p) with straight (not premultiplied) colour, from a picture keyed on `key` and
    its alpha, as alpha video formats want it: the person's colour un-mixed from the key, (picture - (1 - a) key)
    / a, on the soft edge, per plane (the canvas mixed them so: linear in Y, U and V, the chroma with its 2x2 block's
    alpha); black where alpha is 0 (neutral chroma where 4:2:0 mixes it into the edge, as the key's would not be).
    Where alpha is 0 and the picture is not the key (a label drawn over the background), the pixel is made opaque:
    what was drawn over the picture stays visible in the file (but for 2 px beside the person, where 4:2:0 chroma
    mixes the person in). No RGB on the way: the encoder takes these planes as they are."""
    h, w = alpha.shape
    planes = i420_planes(i420, w, h)
    k = cv2.cvtColor(np.full((2, 2, 3), key, np.uint8), cv2.COLOR_RGB2YUV_I420).reshape(-1)[[0, 4, 5]]
    alpha_c = cv2.resize(alpha, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    near_c = cv2.inRange(cv2.merge(planes[1:]), (max(0, int(k[1]) - 16), max(0, int(k[2]) - 16)),
                         (min(255, int(k[1]) + 16), min(255, int(k[2]) + 16)))
    near = cv2.bitwise_and(cv2.inRange(planes[0], max(0, int(k[0]) - 20), min(255, int(k[0]) + 20)),
                           cv2.resize(near_c, (w, h), interpolation=cv2.INTER_NEAREST))
    empty = cv2.compare(alpha, 0, cv2.CMP_EQ)
    beside = cv2.dilate(cv2.bitwise_not(empty), np.ones((5, 5), np.uint8))
    drawn = cv2.bitwise_and(cv2.bitwise_and(empty, cv2.bitwise_not(near)), cv2.bitwise_not(beside))
    drawn_c = cv2.resize(drawn, (w // 2, h // 2), interpolation=cv2.INTER_NEAREST)
    out = []
    for plane, a, kv, mark, blank in zip(planes, (alpha, alpha_c, alpha_c), k, (drawn, drawn_c, drawn_c),
                                         (0, 128, 128), strict=True):
        straight = np.full_like(plane, blank)
        cv2.copyTo(plane, cv2.bitwise_or(cv2.compare(a, 255, cv2.CMP_EQ), mark), straight)
        # The soft edge, a few percent of the picture, through a table of (alpha, value) for this key.
        edge = np.flatnonzero(cv2.inRange(a, 1, 254))
        if edge.size:
            values = np.ascontiguousarray(plane).reshape(-1)[edge]
            straight.reshape(-1)[edge] = _unmix_table(int(kv))[a.reshape(-1)[edge], values]
        out.append(straight)
    out.append(cv2.bitwise_or(alpha, drawn))
    return out


@functools.cache
def _unmix_table(key: int) -> np.ndarray:
    """(256, 256) uint8: (255 x value - (255 - alpha) x key) / alpha, clipped, by [alpha, value]."""
    a = np.arange(256, dtype=np.float32)[:, None]
    v = np.arange(256, dtype=np.float32)[None]
    return np.clip((255.0 * v - (255.0 - a) * key) / np.maximum(a, 1.0) + 0.5, 0.0, 255.0).astype(np.uint8)


def straight_rgba(i420: np.ndarray, alpha: np.ndarray, key: tuple[int, int, int]) -> np.ndarray:
    """straight_yuva as (H, W, 4) RGBA: what the alpha file holds, for a look at it."""
    y, u, v, a = straight_yuva(i420, alpha, key)
    rgb = cv2.cvtColor(np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(-1, y.shape[1]),
                       cv2.COLOR_YUV2RGB_I420)
    return cv2.merge([*cv2.split(rgb), a])


def alpha_from_key(i420: np.ndarray, key: tuple[int, int, int]) -> np.ndarray:
    """(H, W) uint8 alpha of a picture keyed on `key` that lost the alpha it carried (a stage that drew a new
    picture): 0 where its colour difference (U, V) is the key's, 255 beyond 0.09 of it, a ramp between, as the
    watch page's keyer does. The canvas' own alpha is better: this is the fallback."""
    h, w = i420.shape[0] * 2 // 3, i420.shape[1]
    _, u, v = i420_planes(i420, w, h)
    k = cv2.cvtColor(np.full((2, 2, 3), key, np.uint8), cv2.COLOR_RGB2YUV_I420).reshape(-1)
    du, dv = u.astype(np.float32) - float(k[4]), v.astype(np.float32) - float(k[5])
    distance = cv2.magnitude(du, dv) / 255.0
    alpha = np.clip((distance - 0.04) / 0.05, 0.0, 1.0)
    return cv2.resize((alpha * 255.0 + 0.5).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
