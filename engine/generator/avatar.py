"""Avatar preparation: load a portrait photo, find the face and its 478 landmarks (mediapipe),
and cache the result next to the photo's content hash so that the next start is instant.

A photo with several faces animates the largest and says so; a face too small or too turned for
the rig, or with its mouth covered, is refused with the reason; covered eyes are noted (engine.generator.faces).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.generator.faces import (
    MAX_ROLL_DEG,
    MAX_YAW_DEG,
    MIN_FACE_WIDTH_PX,
    NOTE_ROLL_DEG,
    covered_features,
    estimate_yaw_deg,
    face_mesh,
    find_faces,
    mesh_width,
)
from engine.generator.head_motion import HeadSplit, head_split_for
from engine.generator.matte import person_layer
from engine.generator.rest_pose import WIDE_GAP, RestPose, close_lips
from engine.generator.rig import face_frame

log = logging.getLogger(__name__)

MAX_INPUT_PIXELS = 50_000_000  # larger images are refused before decoding (decompression bombs)
PREP_VERSION = 14  # bump when what is cached changes meaning (3: the person matte and background plate; 5: the
# plate meets the photo along the matte's edge; 6: covered features refused or noted, the rest pose cut to the lips;
# 7: the ears and the hair beside the face opaque in the matte, the plate's fill without mirrored structures;
# 8: the plate's mirrored texture capped at the wall's grain; 9: the plate seeded past the person's soft edge, the
# band a head uncovers filled with the wall's own patches; 10: the copied patches guarded against objects brought into
# a plain wall and shaded like the wall round them; 11: the head's halo on a plain wall just past the matte on the
# layer, the plate there the wall behind it; copies whose seams show on a plain wall give way to the smooth fill;
# 12: a still figure beside the head goes on behind it in the head part's plate; 13: the head part takes the soft edge
# past it, hair's wisps and blur, where that edge ends nearby; 14: the halo moves with the head beside a smooth wall
# that is not one colour, the seam along the plate's old outline ironed)
DEFAULT_CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "avatar-engine" / "avatars"


class AvatarError(ValueError):
    """The portrait cannot be used; the message names the problem and the file."""


@dataclass
class PreparedAvatar:
    name: str
    rgb: np.ndarray  # (H, W, 3) uint8, scaled so that the longer side <= max_side_px, even sizes
    landmarks: np.ndarray  # (478, 2) float32, pixel coordinates in rgb
    notes: tuple[str, ...] = ()  # what the user should know about the choice made ("3 faces found; ...")
    # The person as a layer over a still background (engine.generator.matte): (H, W) uint8 alpha and the
    # (H, W, 3) uint8 photo with the person filled in. None: the renderer makes them when it starts.
    matte: np.ndarray | None = None
    plate: np.ndarray | None = None
    rest: RestPose | None = None  # the photo as it was where the rest pose closed its lips (rest_pose)
    # What the head moves and over what (head_motion.head_split), made at prepare so that a stream's renderer and
    # keying start without it; None, or made from other landmarks or another matte: made when the renderer starts.
    head: HeadSplit | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


def load_portrait(path: str | Path | None, max_side_px: int) -> tuple[str, np.ndarray, float]:
    """(name, rgb scaled to fit max_side_px, that scale: output pixels per photo pixel)."""
    if path is None:
        from skimage import data

        return "astronaut (embedded default)", *_fit(Image.fromarray(data.astronaut()), max_side_px)
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
    return p.name, *_fit(rgb, max_side_px)


def _fit(im: Image.Image, max_side_px: int) -> tuple[np.ndarray, float]:
    scale = min(1.0, max_side_px / max(im.width, im.height))
    # Video encoders need even sizes.
    w, h = int(im.width * scale) // 2 * 2, int(im.height * scale) // 2 * 2
    if (w, h) != im.size:
        im = im.resize((w, h), Image.Resampling.LANCZOS, box=(0, 0, w / scale, h / scale))
    return np.asarray(im, dtype=np.uint8).copy(), scale


def _too_small(name: str, width_px: float, scale: float) -> AvatarError:
    photo = f"{width_px / scale:.0f} px wide ({width_px:.0f} px at the output size)" if scale < 1 else \
        f"{width_px:.0f} px wide"
    return AvatarError(f"{name}: face too small: the face is {photo}; at least {MIN_FACE_WIDTH_PX} px needed "
                       "at the output size (use a photo cropped closer to the face)")


def detect_landmarks(rgb: np.ndarray, name: str, scale: float = 1.0) -> tuple[np.ndarray, tuple[str, ...]]:
    """The largest face's (478, 2) landmarks in rgb's pixels, and notes on the choice (several faces).

    scale: rgb's pixels per photo pixel, so that messages give sizes and places in the photo's own pixels."""
    faces = find_faces(rgb)
    notes: tuple[str, ...] = ()
    if len(faces) > 1:
        cx, cy = faces[0].centre
        notes = (f"{len(faces)} faces found; animating the largest (at {cx / scale:.0f},{cy / scale:.0f}, "
                 f"{faces[0].w / scale:.0f} px wide)",)
    # The mesh on the whole photo where it finds the chosen face (a portrait: the landmarks as before),
    # else on a crop around that face (small, or one of several).
    pts = face_mesh(rgb)
    if faces and (pts is None or not faces[0].holds(*pts[:, :2].mean(axis=0))):
        pts = face_mesh(rgb, faces[0])
    if pts is None:
        if faces and faces[0].w < MIN_FACE_WIDTH_PX:
            raise _too_small(name, faces[0].w, scale)
        if faces:
            cx, cy = faces[0].centre
            raise AvatarError(f"{name}: no face found whose features can be traced (the face-like region at "
                              f"{cx / scale:.0f},{cy / scale:.0f} may be turned away, covered or blurred); use a "
                              "photo with one clearly visible face toward the camera")
        raise AvatarError(f"{name}: no face found; use a photo with one clearly visible face toward the camera")
    if mesh_width(pts) < MIN_FACE_WIDTH_PX:
        raise _too_small(name, mesh_width(pts), scale)
    yaw = estimate_yaw_deg(pts)
    if abs(yaw) > MAX_YAW_DEG:
        side = "right" if yaw > 0 else "left"
        raise AvatarError(f"{name}: face too turned: about {abs(yaw):.0f} degrees toward the image's {side}; "
                          f"at most {MAX_YAW_DEG:.0f} degrees (three-quarter view) can be animated: use a photo "
                          "facing the camera more")
    covered = covered_features(rgb, pts)
    if covered.mouth:
        raise AvatarError(f"{name}: mouth covered: the lips do not show where the face's mouth is (an object, a hand "
                          "or a patch over it?); lip sync needs the mouth visible: use a photo with the mouth in view")
    if any(covered.eyes):
        which = "both eyes" if all(covered.eyes) else \
            f"the eye on the image's {'left' if covered.eyes[0] else 'right'}"
        notes += (f"{which} covered (no white or iris shows): blinks and gaze will not show there, and what covers "
                  "them moves with the lids",)
    roll = math.degrees(face_frame(pts).roll)
    side = "left" if roll > 0 else "right"  # the mouth right of below the eyes: the head leans to the image's left
    if abs(roll) > MAX_ROLL_DEG:
        raise AvatarError(f"{name}: head too tilted: about {abs(roll):.0f} degrees toward the image's {side}; at most "
                          f"{MAX_ROLL_DEG:.0f} degrees can be animated (the neck and the jaw line the head moves "
                          "above are drawn along the photo's axes): use a photo with the head more upright, or turn "
                          "the photo")
    if abs(roll) > NOTE_ROLL_DEG:
        notes += (f"head tilted about {abs(roll):.0f} degrees toward the image's {side}: mouth and eyes follow the "
                  "tilt, and so do head turns and nods, but the neck and the jaw line the head moves above are "
                  "drawn along the photo's axes",)
    return pts[:, :2].copy(), notes


@functools.cache
def source_digest() -> bytes:
    """The generator package's code (read once per process). Prepared data and exported graphs are keyed by it as
    well as by PREP_VERSION: a change to the plate, the matte or a lid that forgot the bump (or a working copy
    between two bumps) must not load what older code made, as a benchmark once measured a stale plate."""
    h = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        h.update(source.name.encode())
        h.update(source.read_bytes())
    return h.digest()


def cache_key(path: str | Path | None, max_side_px: int) -> str:
    """Content hash of the photo (not its name or date) and of what preparation depends on."""
    h = hashlib.sha256(f"v{PREP_VERSION}:{max_side_px}:".encode())
    h.update(source_digest())
    if path is None:
        h.update(b"embedded:skimage.astronaut")
    else:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:20]


def with_closed_lips(avatar: PreparedAvatar) -> PreparedAvatar:
    """The avatar with a closed rest pose where the photo's lips are apart (engine.generator.rest_pose)."""
    closed = close_lips(avatar.rgb, avatar.landmarks)
    if closed is None:
        return avatar
    rgb, landmarks, rest = closed
    note = (f"lips apart in the photo ({100 * rest.gap:.0f}% of the mouth's width): closed for the rest pose "
            "(keep_expression keeps the photo's expression)")
    log.info("avatar %s: %s", avatar.name, note)
    notes = avatar.notes
    if rest.gap > WIDE_GAP:
        notes += (f"mouth wide open in the photo ({100 * rest.gap:.0f}% of its width): closing it for the rest pose "
                  "stretches the lips; a photo with the mouth closed or less open animates better",)
        log.warning("avatar %s: %s", avatar.name, notes[-1])
    plate = avatar.plate
    if plate is not None and avatar.matte is not None:
        # The closing reaches below the chin, where the matte may call a collar background: the plate shows
        # there at rest, so it takes the closed photo's pixels, and the still frame stays the closed photo.
        plate = np.where((avatar.matte == 0)[..., None], rgb, plate)
    return dataclasses.replace(avatar, rgb=rgb, landmarks=landmarks, notes=notes, rest=rest, plate=plate)


def prepare_avatar(path: str | Path | None = None, max_side_px: int = 720, cache_dir: Path | None = DEFAULT_CACHE_DIR,
                   on_step: Callable[[str], None] | None = None, keep_expression: bool = False) -> PreparedAvatar:
    """Load, check and landmark a portrait. Every problem is an AvatarError that names it.

    cache_dir: where prepared avatars are kept (None: no cache). on_step: told each step's name.
    keep_expression: animate from the photo's own expression; otherwise lips apart in the photo are
    closed for the rest pose, so that the avatar can close its mouth (the photo's teeth still show).
    """
    rest = (lambda a: a) if keep_expression else with_closed_lips
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
                    avatar = PreparedAvatar(str(z["name"]), z["rgb"], z["landmarks"], tuple(map(str, z["notes"])),
                                            z["matte"], z["plate"])
                log.info("avatar %s: %dx%d, from cache %s", avatar.name, *avatar.size, cached)
                for note in avatar.notes:
                    log.warning("avatar %s: %s", avatar.name, note)
                return with_head(rest(avatar))
            except (OSError, ValueError, KeyError):
                log.warning("ignoring unreadable avatar cache %s", cached)
    step("reading image")
    name, rgb, scale = load_portrait(path, max_side_px)
    step("finding the face")
    landmarks, notes = detect_landmarks(rgb, name, scale)
    for note in notes:
        log.warning("avatar %s: %s", name, note)
        step(note)
    step("separating the person from the background")
    matte, plate = person_layer(rgb, landmarks)
    avatar = PreparedAvatar(name, rgb, landmarks, notes, matte, plate)
    if cached is not None:
        step("caching")
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp.npz")
            np.savez(tmp, name=np.array(name), rgb=rgb, landmarks=landmarks, notes=np.array(notes, dtype=str),
                     matte=matte, plate=plate)
            tmp.replace(cached)  # atomic: a concurrent start never reads half a file
        except OSError as e:
            log.warning("could not cache the prepared avatar in %s: %s", cached.parent, e)
    log.info("avatar %s: %dx%d, face found", name, rgb.shape[1], rgb.shape[0])
    return with_head(rest(avatar))


def with_head(avatar: PreparedAvatar) -> PreparedAvatar:
    """The avatar with its head split made (PreparedAvatar.head): after the rest pose, whose landmarks it follows.
    Not in the disk cache, which holds the photo before the rest pose: 0.1-0.4 s here, once per prepare, rather than
    at every stream's start."""
    if avatar.matte is None or avatar.plate is None:
        return avatar
    head = head_split_for(avatar.landmarks, avatar.rgb, avatar.matte, avatar.plate)
    return dataclasses.replace(avatar, head=head)
