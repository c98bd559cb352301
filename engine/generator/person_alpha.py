"""The person's coverage of the still portrait, the alpha that keyed backgrounds composite with, and the plate
behind it.

It starts from the alpha of the premultiplied person layer the warp renderer moves (matte.premultiplied_layer: the
matte, raised where the photo cannot be explained over the plate with less): the still frame is that layer over the
plate. The matte is made for the head turn, where a little of the wall on the layer does no harm; keyed, every pixel
of it shows. So, for keying only, at prepare time:

- at the matte's edge, where the photo's colour lies between the plate's (the wall behind) and the person's nearby,
  the alpha is no more than the share of the person that explains it (a difference key against the plate): the sky
  the matte took in above a head of blond hair goes, and so does its pale rim;
- outside the box the head moves in (the body, the ground: those pixels never move), the alpha is cut to the
  person's segmentation, a few pixels grown: a towel or sand the matte reached onto is background.

The keyed frame is frame + (1 - a_k) x (key - Q): with the keying plate Q = P + (a - a_k) / (1 - a_k) x (F - P),
F the layer's own colour, the still frame keyed is a_k x F + (1 - a_k) x key exactly. Where the head moves, Q is the
plate but where the alpha was lowered, and it was lowered only where F is close to P.
"""

from __future__ import annotations

import weakref

import cv2
import numpy as np

from engine.generator.avatar import PreparedAvatar
from engine.generator.head_motion import HeadSplit, head_split_for
from engine.generator.matte import face_hull, person_layer, premultiplied_layer, selfie_mask

# The band at the matte's edge where the alpha is checked against the colours, in face widths.
EDGE_REACH = 0.2
# The face's outline grown by this many face widths keeps the renderer's alpha.
FACE_MARGIN = 0.1
# The person's colour there is the mean of the surely-opaque pixels about, over this many face widths (sigma).
COLOUR_SPREAD = 0.06
# Person and plate must differ by this much (8-bit levels, Euclidean RGB) before the colours decide anything ...
SEPARATION_MIN = 40.0
# ... and fully from this much.
SEPARATION_FULL = 80.0
# A difference key's share of the person under this is the wall; over PERSON_SHARE, the person (a ramp between).
BACKGROUND_SHARE = 0.15
PERSON_SHARE = 0.45
# A patch of wall at the edge is keyed out when at least this many face widths square.
WALL_PATCH = 0.08
# Outside the moving box: the segmentation grown by this many pixels, its 0.5 line feathered over as many again.
SEGMENT_GROW_PX = 6


def layer_of(avatar: PreparedAvatar) -> tuple[np.ndarray, np.ndarray]:
    """(matte, plate) of the avatar, made now for one prepared without them (a few hundred ms)."""
    if avatar.matte is not None and avatar.plate is not None:
        return avatar.matte, avatar.plate
    return person_layer(avatar.rgb, avatar.landmarks)


def head_split_of(avatar: PreparedAvatar, matte: np.ndarray, plate: np.ndarray) -> HeadSplit:
    """What the warp renderer moves and what it moves over (head_motion.head_split, as WarpRenderer has it)."""
    return head_split_for(avatar.landmarks, avatar.rgb, matte, plate, avatar.head)


_made: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def keying_layer(avatar: PreparedAvatar) -> tuple[np.ndarray, np.ndarray]:
    """(alpha (H, W) uint8, plate (H, W, 3) uint8) that keyed backgrounds composite the rendered frames with. Made
    once per avatar (a few hundred ms; the canvas and the generator both ask), kept while the avatar lives."""
    made = _made.get(id(avatar))
    if made is None:
        made = _made[id(avatar)] = _keying_layer(avatar)
        weakref.finalize(avatar, _made.pop, id(avatar), None)
    return made


def _keying_layer(avatar: PreparedAvatar) -> tuple[np.ndarray, np.ndarray]:
    matte, plate = layer_of(avatar)
    rgb = avatar.rgb
    layer = premultiplied_layer(rgb, matte, plate)
    a = layer[..., 3].astype(np.float32) / 255.0
    i, p = rgb.astype(np.float32), plate.astype(np.float32)
    lm = avatar.landmarks
    face_w = float(np.ptp(lm[:, 0]))
    keyed = np.minimum(a, _colour_alpha(i, p, a, face_w))
    # Never at the face, nor a little past its outline (a cheek over a wall of about its colour, a beard).
    grow = 2 * max(1, round(FACE_MARGIN * face_w)) + 1
    hull = face_hull(rgb.shape[:2], lm[:, :2])
    face = cv2.dilate(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow,) * 2))
    keyed[face > 0] = a[face > 0]
    split = head_split_of(avatar, matte, plate)
    x0, y0, x1, y1 = split.roi
    # What never moves: everything outside the box the renderer warps, and in it what is not the head's own part
    # (shoulders, a poster's figure: the renderer draws the photo there, under the moving head).
    still = np.ones(rgb.shape[:2], bool)
    still[y0:y1, x0:x1] = ~split.part
    # Cut to the segmentation: what never moves, and the moving head too but for the face itself (the gate moves
    # with the head: the renderer warps this alpha).
    gated = still | (hull == 0)
    keyed[gated] = np.minimum(keyed, _segment_gate(rgb))[gated]
    alpha = np.clip(255.0 * keyed + 0.5, 0, 255).astype(np.uint8)
    # The keying plate: what leaves the still frame, keyed, at alpha's share of the layer's own colour. Only where
    # pixels never move: in the head's box the plate shows wherever the head uncovers it, and must be keyed out
    # exactly there (the colour key lowered the alpha only where the layer is about the plate's colour anyway).
    k = alpha.astype(np.float32) / 255.0
    f = layer[..., :3].astype(np.float32) / np.maximum(a, 1e-3)[..., None]
    share = np.where(still & (k < 1.0), (a - k) / np.maximum(1.0 - k, 1e-3), 0.0)[..., None]
    q = np.clip(p + share * (f - p) + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(alpha), q


def _colour_alpha(i: np.ndarray, p: np.ndarray, a: np.ndarray, face_w: float) -> np.ndarray:
    """(H, W) float32 in 0..1: at the matte's edge, 0 where the photo is the plate's colour rather than the nearby
    person's (a difference key, (I - P) . (F - P) / |F - P|^2, under BACKGROUND_SHARE), 1 where it is the person's
    (over PERSON_SHARE) or where the colours cannot tell (too close, no opaque person about) and away from the edge.
    Only what is clearly the wall goes: a blond strand over a pale sky is half of each, and stays."""
    reach = max(1, round(EDGE_REACH * face_w))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1,) * 2)
    edge = cv2.dilate((a < 1.0).astype(np.uint8), disk)
    # The person's colour at the edge: of its opaque pixels near the edge (the hair there, not the face inside).
    solid = (cv2.erode((a >= 1.0).astype(np.uint8), np.ones((5, 5), np.uint8)) & cv2.dilate(edge, disk))
    solid = solid.astype(np.float32)
    sigma = max(1.0, COLOUR_SPREAD * face_w)
    weight = cv2.GaussianBlur(solid, (0, 0), sigma)
    person = cv2.GaussianBlur(i * solid[..., None], (0, 0), sigma) / np.maximum(weight, 1e-3)[..., None]
    d = person - p
    separation = np.sqrt((d * d).sum(axis=2))
    share = ((i - p) * d).sum(axis=2) / np.maximum(separation * separation, 1.0)
    share = cv2.GaussianBlur(share, (3, 3), 0)  # the photo's noise, over the separation
    keep = np.clip((share - BACKGROUND_SHARE) / (PERSON_SHARE - BACKGROUND_SHARE), 0.0, 1.0)
    trust = np.clip((separation - SEPARATION_MIN) / (SEPARATION_FULL - SEPARATION_MIN), 0.0, 1.0)
    trust *= np.clip(weight / 0.005, 0.0, 1.0) * edge  # the colour is a normalised mean: a little weight will do
    wall = trust * (1.0 - keep)
    # Only wall that reaches the background outside: a gap between strands, closed in by hair, is left opaque (keyed
    # it would read as a hole in the head). And only a patch of it: single pixels along a soft edge are the edge's
    # own mix, which the matte has already (lowered alone, 4:2:0 chroma and the alpha file's un-mixing speckle them).
    patch = ((wall > 0.5) & (a > 0.0)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(patch, connectivity=8)
    beside = cv2.dilate((a <= 0.0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    reached = np.zeros(n, bool)
    reached[np.unique(labels[beside & (patch > 0)])] = True
    reached &= stats[:, cv2.CC_STAT_AREA] >= max(4.0, (WALL_PATCH * face_w) ** 2)
    reached[0] = False
    open_wall = cv2.dilate(reached[labels].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.float32)
    return (1.0 - wall * cv2.GaussianBlur(open_wall, (3, 3), 0)).astype(np.float32)


def _segment_gate(rgb: np.ndarray) -> np.ndarray:
    """(H, W) float32 in 0..1: the person's segmentation grown by SEGMENT_GROW_PX, feathered as much again."""
    person = (selfie_mask(rgb) > 0.5).astype(np.uint8)
    k = 2 * SEGMENT_GROW_PX + 1
    grown = cv2.dilate(person, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))).astype(np.float32)
    return cv2.GaussianBlur(grown, (0, 0), SEGMENT_GROW_PX / 3.0)


def picture_alpha(avatar: PreparedAvatar) -> np.ndarray:
    """(H, W) uint8: the person's coverage of the still picture as the renderer draws it (the premultiplied layer's
    alpha, before keying refines it): what a rendered pixel is made of, for tests and measures of the picture."""
    matte, plate = layer_of(avatar)
    return np.ascontiguousarray(premultiplied_layer(avatar.rgb, matte, plate)[..., 3])


def still_alpha(avatar: PreparedAvatar) -> np.ndarray:
    """(H, W) uint8: 255 on the person, 0 on the background, soft at hair and edges (keying_layer's alpha)."""
    return keying_layer(avatar)[0]
