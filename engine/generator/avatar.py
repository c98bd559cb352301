"""Avatar preparation: load a portrait photo, find the face and its 478 landmarks (mediapipe),
and cache the result next to the photo's content hash so that the next start is instant."""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

MAX_INPUT_PIXELS = 50_000_000  # larger images are refused before decoding (decompression bombs)
MIN_FACE_WIDTH_PX = 48  # smaller faces have too few pixels to animate believably
PREP_VERSION = 1  # bump when what is cached changes meaning
DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "avatar-engine" / "avatars"


class AvatarError(ValueError):
    """The portrait cannot be used; the message names the problem and the file."""


@dataclass
class PreparedAvatar:
    name: str
    rgb: np.ndarray  # (H, W, 3) uint8, scaled so that the longer side <= max_side_px, even sizes
    landmarks: np.ndarray  # (478, 2) float32, pixel coordinates in rgb

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


def load_portrait(path: str | Path | None, max_side_px: int) -> tuple[str, np.ndarray]:
    if path is None:
        from skimage import data

        return "astronaut (embedded default)", _fit(Image.fromarray(data.astronaut()), max_side_px)
    p = Path(path)
    try:
        with warnings.catch_warnings():  # PIL warns on big images; the check right below refuses them
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(p)
        with im:
            if im.width * im.height > MAX_INPUT_PIXELS:  # checked on the header, before decoding
                raise AvatarError(f"{p}: {im.width}x{im.height} is over the {MAX_INPUT_PIXELS:,}-pixel limit")
            im.load()
            rgb = ImageOps.exif_transpose(im).convert("RGB")
    except UnidentifiedImageError as e:
        raise AvatarError(f"{p}: not an image this engine can read (JPEG, PNG or WebP)") from e
    except Image.DecompressionBombError as e:
        raise AvatarError(f"{p}: image is over the {MAX_INPUT_PIXELS:,}-pixel limit") from e
    except OSError as e:
        raise AvatarError(f"{p}: corrupt or truncated image ({e})") from e
    return p.name, _fit(rgb, max_side_px)


def _fit(im: Image.Image, max_side_px: int) -> np.ndarray:
    scale = min(1.0, max_side_px / max(im.width, im.height))
    # Video encoders need even sizes.
    w, h = int(im.width * scale) // 2 * 2, int(im.height * scale) // 2 * 2
    if (w, h) != im.size:
        im = im.resize((w, h), Image.Resampling.LANCZOS, box=(0, 0, w / scale, h / scale))
    return np.asarray(im, dtype=np.uint8).copy()


def detect_landmarks(rgb: np.ndarray, name: str) -> np.ndarray:
    import mediapipe as mp

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                         refine_landmarks=True, min_detection_confidence=0.5) as mesh:
        result = mesh.process(rgb)
    if not result.multi_face_landmarks:
        raise AvatarError(f"{name}: no face found; use a photo with one clearly visible, frontal face")
    h, w = rgb.shape[:2]
    pts = np.array([(p.x * w, p.y * h) for p in result.multi_face_landmarks[0].landmark], np.float32)
    face_w = float(pts[:, 0].max() - pts[:, 0].min())
    if face_w < MIN_FACE_WIDTH_PX:
        raise AvatarError(f"{name}: the face is only {face_w:.0f} px wide after scaling; "
                          f"at least {MIN_FACE_WIDTH_PX} px are needed (use a closer crop)")
    return pts


def cache_key(path: str | Path | None, max_side_px: int) -> str:
    """Content hash of the photo (not its name or date) and of what preparation depends on."""
    h = hashlib.sha256(f"v{PREP_VERSION}:{max_side_px}:".encode())
    if path is None:
        h.update(b"embedded:skimage.astronaut")
    else:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:20]


def prepare_avatar(path: str | Path | None = None, max_side_px: int = 720, cache_dir: Path | None = DEFAULT_CACHE_DIR,
                   on_step: Callable[[str], None] | None = None) -> PreparedAvatar:
    """Load, check and landmark a portrait. Every problem is an AvatarError that names it.

    cache_dir: where prepared avatars are kept (None: no cache). on_step: told each step's name.
    """
    step = on_step or (lambda _: None)
    if path is not None and not Path(path).is_file():
        raise AvatarError(f"avatar image not found: {path}")
    cached = None
    if cache_dir is not None:
        step("hashing")
        cached = Path(cache_dir) / f"{cache_key(path, max_side_px)}.npz"
        if cached.is_file():
            try:
                with np.load(cached) as z:
                    avatar = PreparedAvatar(str(z["name"]), z["rgb"], z["landmarks"])
                log.info("avatar %s: %dx%d, from cache %s", avatar.name, *avatar.size, cached)
                return avatar
            except (OSError, ValueError, KeyError):
                log.warning("ignoring unreadable avatar cache %s", cached)
    step("reading image")
    name, rgb = load_portrait(path, max_side_px)
    step("finding the face")
    landmarks = detect_landmarks(rgb, name)
    avatar = PreparedAvatar(name, rgb, landmarks)
    if cached is not None:
        step("caching")
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp.npz")
            np.savez(tmp, name=np.array(name), rgb=rgb, landmarks=landmarks)
            tmp.replace(cached)  # atomic: a concurrent start never reads half a file
        except OSError as e:
            log.warning("could not cache the prepared avatar in %s: %s", cached.parent, e)
    log.info("avatar %s: %dx%d, face found", name, rgb.shape[1], rgb.shape[0])
    return avatar
