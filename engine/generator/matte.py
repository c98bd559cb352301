"""The person as a layer: a matte from mediapipe's selfie segmentation and a background plate behind it.

Made once at `prepare` (and cached with the avatar), so that the renderer can move the head over a
background that never moves: where a turned head uncovers what was behind it, the plate shows wall,
filled from the wall around the person, not the head's own pixels dragged along.

- `person_matte`: mediapipe's general selfie-segmentation model (it ships in the 0.10.21 wheel), its
  coarse mask sharpened along the photo's own edges by a colour guided filter (He et al., "Guided
  Image Filtering", 2010), so hair and ears keep soft, true edges. 0..255.
- `background_plate`: the photo with the person removed. The band a head uncovers is filled with the wall's own
  patches (engine.generator.exemplar, Criminisi et al. 2004), deeper in OpenCV's inpainting (Telea 2004) from
  coarse to fine spreads the wall's colour; both seeded only from wall past the person's soft edge, and made to
  meet the photo along the matte's edge; equal to the photo wherever the matte is zero.
"""

from __future__ import annotations

import cv2
import numpy as np

from engine.generator.exemplar import exemplar_fill
from engine.generator.exemplar import low_pass as _low_pass


def selfie_mask(rgb: np.ndarray) -> np.ndarray:
    """mediapipe's person probability at each pixel, (H, W) float32 in [0, 1]."""
    from mediapipe.python.solutions.selfie_segmentation import SelfieSegmentation

    # model_selection=0: the general (256x256) model, which keeps hair and shoulders better than the
    # landscape one on portrait photos.
    with SelfieSegmentation(model_selection=0) as seg:
        mask = seg.process(np.ascontiguousarray(rgb)).segmentation_mask
    if mask is None:
        return np.zeros(rgb.shape[:2], np.float32)
    return np.clip(mask.astype(np.float32), 0.0, 1.0)


def _box(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.blur(x, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, p: np.ndarray, r: int, eps: float, subsample: int = 1) -> np.ndarray:
    """He et al.'s guided filter with a colour guide: guide (H, W, 3) and p (H, W) float32 -> (H, W).

    Locally, the output is an affine function of the guide's colour: edges in p snap to edges in the photo.
    subsample > 1: the fast variant (He and Sun, 2015): the affine coefficients are fitted on a smaller
    copy and applied to the full-size guide, so the edges stay sharp at a fraction of the cost."""
    h, w = p.shape
    small_guide, small_p, rs = guide, p, r
    if subsample > 1:
        size = (max(1, w // subsample), max(1, h // subsample))
        small_guide = cv2.resize(guide, size, interpolation=cv2.INTER_AREA)
        small_p = cv2.resize(p, size, interpolation=cv2.INTER_AREA)
        rs = max(1, round(r / subsample))
    gh, gw = small_p.shape
    mean_i = _box(small_guide, rs)
    mean_p = _box(small_p, rs)
    cov_ip = _box(small_guide * small_p[..., None], rs) - mean_i * mean_p[..., None]
    outer = np.einsum("hwi,hwj->hwij", small_guide, small_guide).reshape(gh, gw, 9)
    sigma = (_box(outer, rs).reshape(gh, gw, 3, 3) - np.einsum("hwi,hwj->hwij", mean_i, mean_i)
             + eps * np.eye(3, dtype=np.float32))
    a = np.linalg.solve(sigma, cov_ip[..., None])[..., 0]  # (h, w, 3)
    b = mean_p - np.einsum("hwi,hwi->hw", a, mean_i)
    mean_a, mean_b = _box(a, rs), _box(b, rs)
    if subsample > 1:
        mean_a = cv2.resize(mean_a, (w, h), interpolation=cv2.INTER_LINEAR)
        mean_b = cv2.resize(mean_b, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.einsum("hwi,hwi->hw", mean_a, guide) + mean_b


def person_matte(rgb: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The person's alpha, (H, W) uint8: 255 on the person, 0 on the background, soft at hair and edges.
    mask: `selfie_mask(rgb)` if already made."""
    mask = selfie_mask(rgb) if mask is None else mask
    side = max(rgb.shape[:2])
    guide = rgb.astype(np.float32) / 255.0
    alpha = guided_filter(guide, mask, r=max(2, round(side / 128)), eps=1e-3, subsample=max(1, side // 400))
    # Far from the outline the coarse mask is right; the filter only decides the edge.
    alpha = np.where(mask > 0.97, 1.0, np.where(mask < 0.03, 0.0, alpha))
    alpha = np.clip((alpha - 0.04) / 0.92, 0.0, 1.0)
    return (alpha * 255.0 + 0.5).astype(np.uint8)


def background_plate(rgb: np.ndarray, matte: np.ndarray, band_px: int = 24, below: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(matte, plate): the photo with the person filled in from the background around it, (H, W, 3) uint8, and the
    matte with the head's halo on the wall just past it added (`_unmix_the_halo`), above row `below`.

    The hole is the matte grown past the person's soft edge (`seed_hole`): hair's blur, a rim of light and skin
    colour bled into the wall are not copied in. A band of band_px inside the outline, what a moving head uncovers,
    is filled with patches of the wall around it (`exemplar.exemplar_fill`): its texture and lines (a flag's cords,
    wood grain, a shelf) continue behind the head, above row `below` + band_px (where a head moves). Deeper in,
    coarse-to-fine inpainting spreads the wall's colour smoothly. Equal to the photo wherever the matte is zero, and
    meeting it there without a seam (`_meet_the_photo`)."""
    # The fill is seeded only from wall past the person's soft edge: the hair's blur, a rim of light and the skin's
    # colour bled into the wall just outside the matte would otherwise spread inward as a pale or grey head shape.
    hole = seed_hole(matte, band_px)
    smooth = _inpaint_pyramid(rgb, hole, band_px)
    plate = smooth
    if (hole == 0).any():
        copied, weight = exemplar_fill(rgb, hole, band_px, below)
        copied = _shade_like(copied, smooth, weight, band_px)
        # Under the matte's soft edge the photo shows the wall through the hair: there the plate stays the smooth
        # fill, which meets the photo's own colours, so that un-mixing the layer over it does not take a copied
        # line that differs from the one seen through the hair for part of the person (an opaque fringe, keyed).
        weight = weight * np.clip(matte.astype(np.float32) / 128.0, 0.0, 1.0)
        plate = weight[..., None] * copied + (1.0 - weight[..., None]) * smooth
        plate = np.where(hole[..., None] > 0, np.clip(plate + 0.5, 0, 255), rgb).astype(np.uint8)
    halo, wall = _unmix_the_halo(rgb, matte, below)
    # The fill meets the wall with the halo taken out: met with the photo's own pixels there, it would take the hair's
    # dark blur (or a JPEG's light ringing) in as far as a turn uncovers, a ring round the old outline.
    seen = np.where((halo > 0)[..., None], wall, rgb)
    plate = _meet_the_photo(seen, matte, plate, reach=meet_reach(band_px))
    # Matte 1: premultiplied_layer raises the alpha there to just what explains the photo over that wall.
    matte = np.where(halo > 0, 1, matte).astype(np.uint8)
    plate = np.where((halo > 0)[..., None], np.clip(wall + 0.5, 0, 255), plate).astype(np.uint8)
    plate = _iron_the_seam(rgb, matte, plate, below)
    keep = matte == 0
    plate[keep] = rgb[keep]
    return matte, plate


# Just past the matte the photo's wall still carries the head's edge over up to 1/HALO_SIDE of the portrait's longer
# side (5 px at 720, 2 px on a 160 px photo): the hair's defocus blur, a JPEG's ringing and chroma bleed round a hat.
HALO_SIDE = 150
# The wall just past the halo is taken as one colour where its spread (std, 8-bit levels) is under this, and not at all
# from twice this ...
HALO_WALL_SPREAD = 8.0
# ... and, where that wall is smooth (its roughness under SMOOTH_WALL of ROUGH_MAX), under this. The spread is taken
# over a dozen pixels, so a wall's soft shading and broad stripes count in it: at 8 everywhere the halo stayed beside a
# third to a half of shenk's, meeting_darker_skin's and maher_teeth's outline, a light arc that a turn uncovered. At 32
# the lit patch beside pedersen_tilted's cheek moved with his head (background flow 0.11 -> 1.81 px, at 16 0.44:
# `benchmarks.head_layer`), and beside a rougher wall the flag's cords beside hopper_tall_exif6's hair (0.80 -> 0.89).
HALO_SMOOTH_SPREAD = 16.0
SMOOTH_WALL = 0.75


def halo_reach(shape: tuple[int, ...]) -> int:
    return max(2, round(max(shape[:2]) / HALO_SIDE))


def _wall_roughness(rgb: np.ndarray, wall: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W) float32: the photo's fine detail (mean |grey - its blur|, 8-bit levels) over the `wall` pixels near each
    pixel (a normalised Gaussian of `sigma` px): a wall's grain, which ROUGH_MAX bounds."""
    w = wall.astype(np.float32)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    detail = np.abs(gray - cv2.GaussianBlur(gray, (0, 0), 2.0))
    return _low_pass(detail * w, sigma) / np.maximum(_low_pass(w, sigma), 1e-3)


def _unmix_the_halo(rgb: np.ndarray, matte: np.ndarray, below: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(moved (H, W) float32 in [0, 1], wall (H, W, 3) float32): in a rim `halo_reach` px wide past the matte, above
    row `below`, how much of the photo's departure from the wall behind it (the photo just past the rim) moves with the
    head, and the wall left when it is taken out.

    Left on the wall, that halo stays behind when the head turns: a ring of dark or coloured dots tracing the old
    outline on a pale sky (hopper_lowres_160), an arc round the hair (beard_smile_darker_skin), and the fill met the
    photo there, taking it inward. Put on the layer whole (a rim of matte 1 whose alpha explains the photo over the
    fill), it took the wall's own texture with it and a textured wall moved with the head (pedersen_tilted: background
    flow 0.04 -> 2.33 px). Here it moves only beside a plain wall (its roughness under ROUGH_MAX: a departure there is
    the head's, not the wall's grain) of one colour just past the rim, all of it near the matte, fading out to none at
    the rim's end."""
    reach = halo_reach(matte.shape)
    person = (matte > 0).astype(np.uint8)
    out = cv2.distanceTransform(1 - person, cv2.DIST_L2, 3)
    rim = (person == 0) & (out <= reach + 0.5)
    if below is not None:
        rim[max(0, below):] = False
    i = rgb.astype(np.float32)
    if not rim.any():
        return np.zeros(matte.shape, np.float32), i
    # The wall's roughness, from the wall past the rim only (the halo is not the wall's grain).
    rough = _wall_roughness(rgb, (person == 0) & (out > reach + 0.5), 3.0 * reach)
    plain = np.clip((ROUGH_MAX - rough) / (0.5 * ROUGH_MAX), 0.0, 1.0)
    moved = (plain * np.clip((reach + 1.0 - out) / (0.5 * reach + 1.0), 0.0, 1.0) * rim).astype(np.float32)
    # The wall behind the halo: the photo's own just past it (the fill, seeded a soft edge further out, can be another
    # colour there: the blurred figure beside a head, whose edge is the wall's own and must not move).
    near = ((person == 0) & (out > reach + 0.5) & (out <= 2 * reach + 1.5)).astype(np.float32)
    norm = np.maximum(cv2.GaussianBlur(near, (0, 0), reach), 1e-4)[..., None]
    wall = cv2.GaussianBlur(i * near[..., None], (0, 0), reach) / norm
    # Where the wall is not one colour further out (an edge of the wall's own crosses the rim: a lit patch beside
    # pedersen_tilted's cheek), the rim's departure from its mean is that edge, which stays. Measured past where the
    # halo itself may still reach, which is no edge of the wall's.
    far = ((person == 0) & (out > 2 * reach + 1.5) & (out <= 3 * reach + 2.5)).astype(np.float32)
    far_norm = np.maximum(_low_pass(far, 2.0 * reach), 1e-4)[..., None]
    far_mean = _low_pass(i * far[..., None], 2.0 * reach) / far_norm
    spread = np.sqrt(np.maximum(_low_pass(i * i * far[..., None], 2.0 * reach) / far_norm - far_mean * far_mean, 0.0))
    spread = spread.max(axis=2)
    moved *= np.maximum(np.clip(2.0 - spread / HALO_WALL_SPREAD, 0.0, 1.0),
                        np.clip(2.0 - spread / HALO_SMOOTH_SPREAD, 0.0, 1.0) * (rough < SMOOTH_WALL * ROUGH_MAX))
    moved[norm[..., 0] < 1e-3] = 0.0
    moved[moved < 0.05] = 0.0
    return moved, i + moved[..., None] * (wall - i)


# The plate just inside the person's outline is ironed by a median of this size (px) ...
SEAM_MEDIAN = 5
# ... where that changes no channel by more than this (8-bit levels): a seam is a few levels, a wall's own edge more;
SEAM_STEP_MAX = 12
# ... and beside a wall whose roughness is under this share of ROUGH_MAX (at 1, the median carried a piece of
# hopper_tall_exif6's flag cords with her head: background flow 0.80 -> 0.95 px).
SEAM_WALL = 0.5


def _iron_the_seam(rgb: np.ndarray, matte: np.ndarray, plate: np.ndarray, below: int | None) -> np.ndarray:
    """The plate just inside the matte's edge, above row `below`, beside a plain wall, median-filtered.

    There the fill meets the photo's wall and the halo's unmixed rim, each right to a few levels: together they leave
    a line one or two pixels wide along the old outline (a light or dark dip of 4-8 levels), which every turn and
    nod uncovers as a ghost of the head's outline (shenk's window stripes). A median takes out a line that thin and
    keeps the wall's own straight edges that cross it (a stripe, a frame); where it would change a pixel by more
    than SEAM_STEP_MAX (a corner of a lit patch, which the head's layer would then carry along), the pixel stays.
    Beside a textured wall (SEAM_WALL) the fill is the wall's copied texture, which a median would smooth and the
    layer, explaining the photo over the smoothed plate, would carry along: left as it is."""
    reach = halo_reach(matte.shape)
    person = (matte > 0).astype(np.uint8)
    band = (person > 0) & (cv2.distanceTransform(person, cv2.DIST_L2, 3) <= reach + 2)
    if below is not None:
        band[max(0, below):] = False
    if not band.any():
        return plate
    wall = (person == 0) & (cv2.distanceTransform(1 - person, cv2.DIST_L2, 3) > 1.5)
    band &= _wall_roughness(rgb, wall, 3.0 * reach) < SEAM_WALL * ROUGH_MAX
    ironed = cv2.medianBlur(plate, SEAM_MEDIAN)
    step = np.abs(ironed.astype(np.int16) - plate.astype(np.int16)).max(axis=2)
    band &= step <= SEAM_STEP_MAX
    return np.where(band[..., None], ironed, plate)


# The copied patches keep their own detail finer than this (in band depths) and take the smooth fill's shade.
SHADE_SCALE = 1.0 / 6.0


def _shade_like(copied: np.ndarray, smooth: np.ndarray, weight: np.ndarray, band_px: int) -> np.ndarray:
    """The copied wall with its shade (its local mean, over SHADE_SCALE band depths) made the smooth fill's.

    Patches come from anywhere on the wall within a few band depths: sunlit grass beside a head in shade, the white
    of a wall a window's width away. Copied as they are, they fill the uncovered band brighter or darker than the wall
    right round it (beard_smile_darker_skin's pale arc, henner_glasses's pale strip); the smooth fill, spread from
    that wall, has its shade. The patches' texture and lines stay."""
    sigma = max(1.5, SHADE_SCALE * band_px)
    w = (weight > 0).astype(np.float32)
    norm = np.maximum(_low_pass(w, sigma), 1e-4)
    diff = (smooth.astype(np.float32) - copied) * w[..., None]
    shade = _low_pass(diff, sigma) / norm[..., None]
    # Where the copied wall is busy (a flag's stripes and cords), its shade is its structure: kept as copied.
    gray = cv2.cvtColor(np.clip(copied, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    detail = np.abs(gray - cv2.GaussianBlur(gray, (0, 0), 2.0)) * w
    rough = _low_pass(detail, sigma) / norm
    plain = np.clip((ROUGH_MAX - rough) / (0.5 * ROUGH_MAX), 0.0, 1.0)
    return copied + plain[..., None] * shade



# How far in the fill takes the shade of the wall beside the head, in band depths (what a turn uncovers).
MEET_REACH = 0.25


def meet_reach(band_px: int) -> float:
    return max(2.0, MEET_REACH * band_px)


def _meet_the_photo(rgb: np.ndarray, matte: np.ndarray, fill: np.ndarray, reach: float) -> np.ndarray:
    """The fill, corrected to equal the photo where the matte ends, the correction fading inward.

    The plate is the photo wherever the matte is zero (that wall never moves), and the fill inside it comes from
    the wall past the hole's smooth outline; along the matte's own ragged edge the two differ (the hair's fringe,
    the fill's guesses), which a turned head shows as a jagged line around the uncovered wall. The difference on
    that edge is spread inward (a normalised Gaussian, as in seamless cloning's membrane) and added, fading out
    over `reach` px: the fill keeps its own texture, and takes the shade of the wall right beside the head (often
    darker there: the head's shadow, the hair's blur) as far in as a turn uncovers."""
    person = (matte > 0).astype(np.uint8)
    edge = (cv2.dilate(person, np.ones((3, 3), np.uint8)) > 0) & (person == 0)
    if not edge.any() or not person.any():
        return fill
    # Along the edge, the difference is smoothed over a few pixels: the matte's ragged edge is not copied inward.
    sigma = max(2.0, reach / 2)
    diff = (rgb.astype(np.float32) - fill.astype(np.float32)) * edge[..., None]
    w = _low_pass(edge.astype(np.float32), sigma)
    spread = _low_pass(diff, sigma) / np.maximum(w, 1e-4)[..., None]
    depth = cv2.distanceTransform(person, cv2.DIST_L2, 3)
    fade = np.exp(-depth / reach) * (person > 0)
    return np.clip(fill + fade[..., None] * spread + 0.5, 0, 255).astype(np.uint8)


# The hole reaches 1/HOLE_GROW of the portrait's longer side past the matte (4 px at 720).
HOLE_GROW = 200


def hole_grow(shape: tuple[int, ...]) -> int:
    return max(2, round(max(shape[:2]) / HOLE_GROW))


def plate_hole(matte: np.ndarray) -> np.ndarray:
    """Where the plate is filled, (H, W) uint8 0/1: the matte grown by a few pixels (its edge pixels mix in hair
    and skin) and closed, so that its outline is smooth: a hair-level ragged one would make a ragged fill."""
    grow = hole_grow(matte.shape)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    return cv2.morphologyEx(cv2.dilate((matte > 0).astype(np.uint8), disk), cv2.MORPH_CLOSE,
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (4 * grow + 1, 4 * grow + 1)))


# How far past the matte the photo still carries the person (hair's defocus blur, a rim of light), in band_px (a third
# of a face width): 0.2 of it is about 7% of a face width, 16 px on a face 230 px wide.
SOFT_EDGE = 0.2
# ... and at least 1/SOFT_EDGE_SIDE of the photo's longer side: loose strands of hair on a small face reach as far.
SOFT_EDGE_SIDE = 60


def soft_edge(shape: tuple[int, ...], band_px: int) -> float:
    return max(SOFT_EDGE * band_px, max(shape[:2]) / SOFT_EDGE_SIDE)


def seed_hole(matte: np.ndarray, band_px: int) -> np.ndarray:
    """The plate's hole grown past the person's soft edge, (H, W) uint8 0/1: what the fill is made for, from the wall
    outside it only."""
    hole = plate_hole(matte)
    reach = max(0, round(soft_edge(matte.shape, band_px)) - hole_grow(matte.shape))
    if reach == 0:
        return hole
    return cv2.dilate(hole, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1)))


def _inpaint_pyramid(rgb: np.ndarray, hole: np.ndarray, band_px: int, coarse_side: int = 96) -> np.ndarray:
    """Telea inpainting from a small copy up to full size: each level starts from the coarser level's
    fill, so the inside of a large hole is the wall's colour spread smoothly, and a band of band_px
    along the outline (what a moving head can uncover) is inpainted again at each finer level."""
    levels = [(rgb, hole)]
    while max(levels[-1][1].shape) > coarse_side:
        img, m = levels[-1]
        small = cv2.resize(img, (img.shape[1] // 2 + img.shape[1] % 2, img.shape[0] // 2 + img.shape[0] % 2),
                           interpolation=cv2.INTER_AREA)
        # A coarse pixel is known only if all of it was: no person colour leaks into the wall.
        small_hole = cv2.resize(m.astype(np.float32), (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
        levels.append((small, (small_hole > 0).astype(np.uint8)))
    fill = cv2.inpaint(levels[-1][0], levels[-1][1], 3, cv2.INPAINT_TELEA)
    for level, (img, m) in reversed(list(enumerate(levels[:-1]))):
        # The exemplar fill covers the band a head uncovers: this fill only needs sane colours there.
        depth = max(2, min(16, band_px >> level))
        up = cv2.resize(fill, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
        # Only a band inside the outline is inpainted again at this level; deeper in, the coarse fill stays.
        band = m - cv2.erode(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * depth + 1, 2 * depth + 1)))
        start = np.where(m[..., None] > 0, up, img)
        fine = cv2.inpaint(start, band, 3, cv2.INPAINT_TELEA)
        fill = np.where(m[..., None] > 0, fine, img)
    return fill


def face_hull(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """(H, W) uint8, 255 inside the face mesh's outline: the face is on the person layer even where
    the segmentation misses it (a face mask, a hand, an odd light)."""
    hull = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(landmarks).astype(np.int32)), 255)
    return hull


# How far past the face mesh's sides the ears and the hair over them reach, in face widths.
EAR_REACH = 0.2


def head_core(mask: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: where the head is surely person though the segmenter is unsure of it.

    The face mesh's hull widened sideways by EAR_REACH face widths holds the ears and the hair beside the
    cheeks, where the selfie model often gives only 0.3..0.7 (pale hair against a pale flag), so a moving head
    would carry them half-transparent and leave their ghost on the plate. Inside it, wherever the segmenter
    sees any person at all, the layer is opaque; where it sees none (the wall beside a turned face's far
    cheek, no ear there) it stays out. Feathered over a few pixels."""
    h, w = mask.shape
    x = landmarks[:, 0].astype(np.float64)
    cx, fw = (x.min() + x.max()) / 2, float(np.ptp(x))
    pts = landmarks[:, :2].astype(np.float64).copy()
    pts[:, 0] = cx + (pts[:, 0] - cx) * (1.0 + 2.0 * EAR_REACH)
    region = np.zeros((h, w), np.float32)
    cv2.fillConvexPoly(region, cv2.convexHull(np.round(pts).astype(np.int32)), 1.0)
    sigma = max(1.0, fw / 80)
    region = cv2.GaussianBlur(region, (0, 0), sigma)
    sure = np.clip((cv2.GaussianBlur(mask, (0, 0), sigma) - 0.08) / 0.17, 0.0, 1.0)
    return region * sure


# How far past the matte, around the head, loose hair and a glasses' arm may reach, in face widths. 0: no fringe.
# Off for now: where the photo has a dark halo along the outline (pedersen_open_mouth), the ring's wall and the fill
# inside it meet in a jagged step that a turned head uncovers (/tmp/layer2_pedersen_fringe_seam.png); guido's
# glasses' arm and hopper's wisps moved with the head at 0.06.
FRINGE_REACH = 0.0
JAW_CORNERS = (172, 397)  # face-mesh points at the jaw's corners, under the ears


def fringe_reach(landmarks: np.ndarray) -> float:
    return max(2.0, FRINGE_REACH * float(np.ptp(landmarks[:, 0])))


def head_fringe(matte: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(H, W) uint8, 1 in a ring FRINGE_REACH face widths wide around the matte above the jaw's corners, else 0.

    Wisps of hair and the tip of a glasses' arm beyond the segmenter's outline would otherwise stay on the wall
    while the head moves. A matte of 1 there puts the ring in the plate's hole (filled with wall) and on the layer,
    and `premultiplied_layer` raises its alpha to just what explains the photo over that fill: a wisp becomes
    opaque enough to move with the head, the plain wall about it stays near 0."""
    if FRINGE_REACH <= 0:
        return np.zeros(matte.shape, np.uint8)
    reach = round(fringe_reach(landmarks))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
    ring = cv2.dilate((matte > 0).astype(np.uint8), disk)
    jaw_y = round(float(landmarks[list(JAW_CORNERS), 1].mean()))
    ring[max(0, jaw_y):] = 0
    return ring


def person_layer(rgb: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(matte (H, W) uint8, plate (H, W, 3) uint8): what `prepare_avatar` stores with a portrait."""
    mask = selfie_mask(rgb)
    # Raised before the guided filter, so that the ear's and the hair's edge snap to the photo's own edges.
    mask = np.maximum(mask, head_core(mask, landmarks))
    return layer_and_plate(rgb, landmarks, np.maximum(person_matte(rgb, mask), face_hull(rgb.shape[:2], landmarks)))


def layer_and_plate(rgb: np.ndarray, landmarks: np.ndarray, matte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(matte, plate) from the person's matte: its fringe added to it, the plate filled."""
    matte = matte.copy()
    ring = (head_fringe(matte, landmarks) > 0) & (matte == 0)
    matte[ring] = 1
    x0, x1 = landmarks[:, 0].min(), landmarks[:, 0].max()
    # The head moves the plate's outline band into view: up to about a third of a face width.
    band_px = max(4, round(0.35 * (x1 - x0)))
    jaw_y = round(float(landmarks[list(JAW_CORNERS), 1].mean()))
    matte, plate = background_plate(rgb, matte, band_px=band_px, below=jaw_y)
    return _keep_the_wall_in_the_fringe(rgb, matte, plate, ring, fringe_reach(landmarks), meet_reach(band_px))


# Where the photo departs from the plate's fill by less than this in the fringe, it is the wall (8-bit levels)...
WALL_LEVELS = 12.0
# ... and by more than this, surely something of the head (a wisp, a glasses' arm).
WISP_LEVELS = 28.0
# How many times the wall's local roughness (mean |photo - its blur|) a wisp must stand out by besides.
ROUGHNESS_BAR = 1.5
# A wall rougher than this (mean |photo - its blur|, 8-bit levels) keeps no fringe on the layer.
ROUGH_MAX = 6.0
# A wisp is at most this wide (px): the top-hat's structuring element.
THIN_PX = 7


def _keep_the_wall_in_the_fringe(rgb: np.ndarray, matte: np.ndarray, plate: np.ndarray, ring: np.ndarray,
                                 reach: float, meet_reach: float) -> tuple[np.ndarray, np.ndarray]:
    """In the fringe ring, only what stands out from the fill (a wisp, with a pixel around it) stays on the layer
    with the fill behind it; elsewhere the ring is the photo's own wall again, off the layer: moved with the head,
    the wall's gradients and texture there would show as a faint ghost of the head's outline."""
    d = np.abs(rgb.astype(np.float32) - plate.astype(np.float32)).max(axis=2)
    # A textured wall (a flag's stars and cords, wood grain) departs from any fill by its own texture: the bar is
    # raised by the wall's local roughness just past the ring, so that only what stands out from it counts.
    wall = (matte == 0).astype(np.float32)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    detail = np.abs(gray - cv2.GaussianBlur(gray, (0, 0), 2.0))
    spread = 2.0 * reach
    rough = cv2.GaussianBlur(detail * wall, (0, 0), spread) / np.maximum(cv2.GaussianBlur(wall, (0, 0), spread), 1e-3)
    lo = WALL_LEVELS + ROUGHNESS_BAR * rough
    # Against a busy wall (a flag's cords) a wisp and the wall's own lines look alike: the fringe stays the wall.
    smooth_wall = np.clip((ROUGH_MAX - rough) / (0.5 * ROUGH_MAX), 0.0, 1.0)
    # And only what is thin (a top-hat's answer): a lock of hair, a glasses' arm, not a door frame's or a shadow's
    # broad edge, which would move with the head as a bulge of wall.
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (THIN_PX, THIN_PX))
    thin = np.maximum(cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, k), cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, k))
    wisp = (np.clip((d - lo) / (WISP_LEVELS - WALL_LEVELS), 0.0, 1.0) * smooth_wall
            * np.clip((thin - WALL_LEVELS) / (WISP_LEVELS - WALL_LEVELS), 0.0, 1.0))
    # The fill goes fully under a wisp and a couple of pixels round it: a half-filled plate would keep a faint copy.
    wisp = np.clip(3.0 * cv2.dilate(wisp, np.ones((5, 5), np.uint8)), 0.0, 1.0) * ring
    plate = np.where(ring[..., None], wisp[..., None] * plate + (1.0 - wisp[..., None]) * rgb, plate)
    matte = matte.copy()
    matte[ring & (wisp <= 0)] = 0
    # The fill met the photo at the ring's outer edge; the photo's wall now reaches in to the matte's own edge, so
    # the fill is made to meet it there again (no seam round a turned head).
    plate = _meet_the_photo(rgb, matte, np.clip(plate + 0.5, 0, 255).astype(np.uint8), reach=meet_reach)
    keep = matte == 0
    plate[keep] = rgb[keep]
    return matte, plate


def premultiplied_layer(rgb: np.ndarray, matte: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """The person as (colour x alpha, alpha), (H, W, 4) uint8, such that layer + (1 - alpha) x plate = photo.

    Unmixing the photo against its own plate makes the still frame exact and keeps the plate's colour
    out of the moving edge. Where the matte is too thin to explain the photo over the plate (a dark hat
    with alpha 0.5 over a bright sky), alpha is raised to the least that can: 0 <= colour <= 1 holds."""
    i = rgb.astype(np.float32)
    p = plate.astype(np.float32)
    # I = a F + (1 - a) P with 0 <= F <= 255 needs a >= 1 - I / P and a >= (I - P) / (255 - P), per channel.
    need = np.maximum(1.0 - i / np.maximum(p, 1e-3), (i - p) / np.maximum(255.0 - p, 1e-3)).max(axis=2)
    a = np.where(matte > 0, np.maximum(matte.astype(np.float32), np.ceil(255.0 * np.clip(need, 0.0, 1.0))), 0.0)
    fg = np.clip(i - (1.0 - a[..., None] / 255.0) * p, 0.0, a[..., None])
    return (np.concatenate([fg, a[..., None]], axis=2) + 0.5).astype(np.uint8)
