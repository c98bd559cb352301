"""Exemplar-based fill of the wall a turned head uncovers (Criminisi, Perez and Toyama, "Region Filling and Object
Removal by Exemplar-Based Image Inpainting", IEEE TIP 2004), made at prepare time.

A diffusion fill (Telea) is smooth by design: behind a head it shows as a soft patch where the wall has grain, a
flag's cords stop at the old outline, a window frame ends in a smear. Here patches of the wall itself are copied
in, the front of the hole advancing first where the wall's lines run into it (Criminisi's priority: confidence
times the isophote's strength across the front), so lines continue and texture stays texture.

It works on a small copy (the band a head can uncover about BAND_CELLS cells deep), keeping for every filled cell
the offset to the wall it came from; the full-size fill copies the photo's own pixels through those offsets, blended
between neighbouring cells, so it has the wall's full-resolution detail.
"""

from __future__ import annotations

import cv2
import numpy as np

# The uncovered band is this many cells deep on the small copy.
BAND_CELLS = 24
# A patch is (2 PATCH_R + 1) cells square.
PATCH_R = 3
# Patches come from the wall within this many band depths of where they go.
SEARCH_BANDS = 3.0
# The most patches copied: the fill stays bounded on any photo (a few hundred are typical).
MAX_PATCHES = 3000
# A source patch may be this much busier (its grey level's std) than the wall the target patch already shows, times
# CONTRAST_RATIO plus CONTRAST_SLACK levels; past that each level of excess costs as much as a level of mismatch over
# the cells it would fill: a plain sky takes no figure from the beach beside it.
CONTRAST_RATIO = 1.5
CONTRAST_SLACK = 4.0
# A copied cell's grey level, and each of its two colour channels (`_chroma`), may lie this far outside the range the
# target patch's known cells span; past it each level counts as a level of mismatch: no dark figure copied into a pale
# sky, however well its surround matches, and no coloured one into a white wall.
RANGE_SLACK = 10.0
# The wall "around the target" for those two guards: known cells within this many patch radii.
CONTEXT_R = 2
# A neighbour's source is kept for the next patch if it costs at most this fraction more than the best.
COHERENCE = 0.3
# Neighbouring cells' copies are blended over at least this many pixels at full size.
BLEND_PX = 2.5


def exemplar_fill(rgb: np.ndarray, hole: np.ndarray, band_px: int, below: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(fill (H, W, 3) float32, filled (H, W) float32 in [0, 1]): the hole's band of band_px along its outline (above
    row `below` + band_px, where a head moves) filled with the wall's own patches; `filled` says where, fading at the
    band's inner edge and wherever the fill stopped. rgb (H, W, 3) uint8, hole (H, W) uint8 0/1."""
    h, w = hole.shape
    f = max(1.0, band_px / BAND_CELLS)
    sw, sh = max(8, round(w / f)), max(8, round(h / f))
    fx, fy = w / sw, h / sh
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
    # A cell is wall only if all of it was: no person colour is copied.
    unknown = cv2.resize(hole.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA) > 0
    depth = cv2.distanceTransform(unknown.astype(np.uint8), cv2.DIST_L2, 3)
    band = band_px / f
    target = unknown & (depth <= band + PATCH_R)
    if below is not None:
        target[min(sh, max(0, round((below + band_px) / fy))):] = False
    off_y, off_x, done = _fill_cells(small, unknown, target, depth, band)
    return _full_size(rgb, off_y, off_x, done, (fy, fx), (h, w), band_px, hole)


def _fill_cells(img: np.ndarray, unknown: np.ndarray, target: np.ndarray, depth: np.ndarray, band: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Criminisi's greedy fill of `target` on the small copy: (offset y, offset x, filled) per cell.

    The front advances in layers (only cells within PATCH_R of its shallowest depth compete): by priority alone a
    strongly lined wall (a flag) races across the band ahead of a plain one (the sky beside it) and takes its place."""
    r = PATCH_R
    sh, sw = unknown.shape
    pad = lambda a, v: np.pad(a, ((r, r), (r, r)) + ((0, 0),) * (a.ndim - 2), constant_values=v)  # noqa: E731
    im = pad(img, 0.0)
    known = pad(~unknown, False)
    todo = pad(target, False)
    dep = pad(depth, 0.0)
    # A source patch lies wholly on the wall (and inside the image).
    src_ok = cv2.erode(known.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8), borderValue=0) > 0
    conf = known.astype(np.float32)
    gray = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)
    off = np.zeros((*known.shape, 2), np.int32)
    done = np.zeros(known.shape, bool)
    search = max(2 * r + 2, round(SEARCH_BANDS * band))
    src_std = _patch_std(gray, r)
    for _ in range(MAX_PATCHES):
        front = todo & (cv2.dilate(known.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
        if not front.any():
            break
        ys, xs = np.nonzero(front)
        layer = dep[ys, xs] <= dep[ys, xs].min() + PATCH_R
        ys, xs = ys[layer], xs[layer]
        p = _priority(gray, known, conf, ys, xs, r)
        k = int(np.argmax(p))
        y, x = int(ys[k]), int(xs[k])
        sl = np.s_[y - r:y + r + 1, x - r:x + r + 1]
        tmpl, have = im[sl], known[sl]
        y0, y1 = max(r, y - search), min(sh + r, y + search + 1)
        x0, x1 = max(r, x - search), min(sw + r, x + search + 1)
        win = im[y0 - r:y1 + r, x0 - r:x1 + r]
        mask = np.repeat(have[..., None], 3, axis=2).astype(np.float32)
        ssd = cv2.matchTemplate(win, tmpl, cv2.TM_SQDIFF, mask=mask)
        ok = src_ok[y0:y1, x0:x1]
        if not ok.any():
            todo[y, x] = False  # nothing of the wall near enough: left to the smooth fill
            continue
        # Of equally good patches the nearer: the wall right beside the head is likeliest behind it.
        gy, gx = np.mgrid[y0:y1, x0:x1]
        new = ~have & todo[sl]
        # What the wall around the target already shows (its known cells within CONTEXT_R patches) bounds what may
        # be copied in: a star field's next star is fine, a figure in a plain sky is not.
        c = CONTEXT_R * r
        ctx = np.s_[max(0, y - c):y + c + 1, max(0, x - c):x + c + 1]
        seen = gray[ctx][known[ctx]]
        excess = np.maximum(src_std[y0:y1, x0:x1] - _allowed_std(seen), 0.0)
        outside = _out_of_range(gray[y0 - r:y1 + r, x0 - r:x1 + r], seen, new)
        # The same for the colour (two opponent channels): a grey range alone let the teal of a far door, as dark as
        # the shadow beside it, into pedersen_open_mouth's white frame.
        for channel, seen_channel in zip(_chroma(win), _chroma(im[ctx][known[ctx]]), strict=True):
            outside = outside + _out_of_range(channel, seen_channel, new)
        ssd = ssd[: y1 - y0, : x1 - x0] + 3.0 * float(new.sum()) * excess * excess + 3.0 * outside[: y1 - y0, : x1 - x0]
        cost = np.where(ok, ssd * (1.0 + 1e-3 * np.hypot(gy - y, gx - x)), np.inf)
        qy, qx = np.unravel_index(int(np.argmin(cost)), cost.shape)
        qy, qx = _coherent(cost, float(cost[qy, qx]), off[sl][done[sl]], (y, x), (y0, x0))
        src = im[qy - r:qy + r + 1, qx - r:qx + r + 1]
        im[sl][new] = src[new]
        gray[sl][new] = cv2.cvtColor(src, cv2.COLOR_RGB2GRAY)[new]
        # Copied cells count as known for the next patches (Criminisi's confidence decays inward).
        conf[sl][new] = float(conf[sl][have].mean()) if have.any() else 0.0
        off[sl][new] = (qy - y, qx - x)
        done[sl][new] = True
        known[sl] |= new
        todo[sl] &= ~new
        todo[y, x] = False
    crop = np.s_[r:r + sh, r:r + sw]
    return off[crop][..., 0], off[crop][..., 1], done[crop] & target


def _coherent(cost: np.ndarray, best: float, offsets: np.ndarray, at: tuple[int, int], corner: tuple[int, int]
              ) -> tuple[int, int]:
    """The source for the patch at `at`: the best, or one continuing a neighbour's copy (its offset, from the cells of
    the patch already copied) if that costs at most COHERENCE more. Whole stretches of wall copied from one place
    keep their lines whole; patch after patch from different places leaves a checkerboard of seams."""
    y0, x0 = corner
    pick, pick_cost = None, best * (1.0 + COHERENCE) + 1e-6
    for oy, ox in {(int(a), int(b)) for a, b in offsets}:
        cy, cx = at[0] + oy - y0, at[1] + ox - x0
        if 0 <= cy < cost.shape[0] and 0 <= cx < cost.shape[1] and cost[cy, cx] <= pick_cost:
            pick, pick_cost = (cy, cx), float(cost[cy, cx])
    cy, cx = pick if pick is not None else np.unravel_index(int(np.argmin(cost)), cost.shape)
    return int(cy) + y0, int(cx) + x0


def _patch_std(gray: np.ndarray, r: int) -> np.ndarray:
    """The grey level's standard deviation over the (2r+1)-square patch centred on each cell."""
    k = (2 * r + 1, 2 * r + 1)
    mean = cv2.blur(gray, k, borderType=cv2.BORDER_REFLECT)
    return np.sqrt(np.maximum(cv2.blur(gray * gray, k, borderType=cv2.BORDER_REFLECT) - mean * mean, 0.0))


def _allowed_std(seen: np.ndarray) -> float:
    """How much contrast a source patch may bring: CONTRAST_RATIO times that of the wall seen around the target, plus
    the slack."""
    return CONTRAST_RATIO * float(seen.std()) + CONTRAST_SLACK if seen.size else np.inf


def _chroma(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two opponent colour channels of (..., 3) float32 RGB: red against green, blue against yellow (0 on grey)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.ascontiguousarray(r - g), np.ascontiguousarray(b - 0.5 * (r + g))


def _out_of_range(win: np.ndarray, known: np.ndarray, new: np.ndarray) -> np.ndarray:
    """For each source position in `win`, the summed square of how far the cells it would copy into `new` lie
    outside the known cells' range (of one channel: grey, or a colour channel) widened by RANGE_SLACK."""
    if not known.size or not new.any():
        return np.zeros((win.shape[0] - new.shape[0] + 1, win.shape[1] - new.shape[1] + 1), np.float32)
    lo, hi = float(known.min()) - RANGE_SLACK, float(known.max()) + RANGE_SLACK
    out = np.maximum(lo - win, 0.0) + np.maximum(win - hi, 0.0)
    return cv2.matchTemplate(out * out, new.astype(np.float32), cv2.TM_CCORR)


def _priority(gray: np.ndarray, known: np.ndarray, conf: np.ndarray, ys: np.ndarray, xs: np.ndarray, r: int
              ) -> np.ndarray:
    """Criminisi's priority of the front cells: confidence (how much of the patch is known) times data (the wall's
    isophote strength across the front)."""
    k = np.ones((2 * r + 1, 2 * r + 1), np.float32) / (2 * r + 1) ** 2
    c = cv2.filter2D(conf, -1, k, borderType=cv2.BORDER_CONSTANT)[ys, xs]
    g = np.where(known, gray, 0.0).astype(np.float32)
    kn = known.astype(np.float32)
    # Gradients from known cells only: the image's and the front's normal (the known mask's gradient).
    wsum = np.maximum(cv2.blur(kn, (3, 3)), 1e-3)
    smooth = cv2.blur(g, (3, 3)) / wsum
    iy, ix = cv2.Sobel(smooth, cv2.CV_32F, 0, 1)[ys, xs], cv2.Sobel(smooth, cv2.CV_32F, 1, 0)[ys, xs]
    ny, nx = cv2.Sobel(kn, cv2.CV_32F, 0, 1)[ys, xs], cv2.Sobel(kn, cv2.CV_32F, 1, 0)[ys, xs]
    norm = np.maximum(np.hypot(ny, nx), 1e-3)
    # The isophote is the gradient turned by 90 degrees; its part along the normal.
    data = np.abs(-iy * nx / norm + ix * ny / norm) / 255.0
    return c * (data + 0.01)


def _full_size(rgb: np.ndarray, off_y: np.ndarray, off_x: np.ndarray, done: np.ndarray, scale: tuple[float, float],
               size: tuple[int, int], band_px: int, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo's own pixels copied through the cells' offsets, blended bilinearly between the four nearest cells
    (where neighbouring cells copied from the same place the copy is exact; across two sources it is a soft seam)."""
    h, w = size
    fy, fx = scale
    sh, sw = done.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = (yy + 0.5) / fy - 0.5, (xx + 0.5) / fx - 0.5
    y0, x0 = np.floor(cy).astype(np.int32), np.floor(cx).astype(np.int32)
    ty, tx = cy - y0, cx - x0
    acc = np.zeros((h, w, 3), np.float32)
    acc2 = np.zeros((h, w, 3), np.float32)
    wsum = np.zeros((h, w), np.float32)
    # The photo, and its detail at the cells' scale (what each copy brings: a fringe of cords a few cells apart hides
    # the seams between its copies; a blurred shelf does not).
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grain = np.abs(gray - cv2.GaussianBlur(gray, (0, 0), max(2.0, min(fy, fx))))
    src = np.dstack([rgb.astype(np.float32), grain])
    copied_grain = np.zeros((h, w), np.float32)
    # A tent over `reach` cells each way: bilinear where cells are large; where they are a pixel or two (a small
    # photo), wider, so that two patches side by side meet in a soft seam, not a step of blocks.
    reach = max(1, int(np.ceil(BLEND_PX / min(fy, fx))))
    for dy in range(1 - reach, reach + 1):
        for dx in range(1 - reach, reach + 1):
            iy, ix = np.clip(y0 + dy, 0, sh - 1), np.clip(x0 + dx, 0, sw - 1)
            wt = (np.clip(1.0 - np.abs(dy - ty) / reach, 0.0, 1.0) * np.clip(1.0 - np.abs(dx - tx) / reach, 0.0, 1.0)
                  * done[iy, ix]) / (reach * reach)
            my = (yy + off_y[iy, ix] * fy).astype(np.float32)
            mx = (xx + off_x[iy, ix] * fx).astype(np.float32)
            copy = cv2.remap(src, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            copied_grain += wt * copy[..., 3]
            copy = copy[..., :3]
            acc += wt[..., None] * copy
            acc2 += wt[..., None] * copy * copy
            wsum += wt
    fill = acc / np.maximum(wsum, 1e-6)[..., None]
    # Where neighbouring cells copied from different places, how far their copies disagree (levels, the blend's std).
    spread = np.sqrt(np.maximum(acc2 / np.maximum(wsum, 1e-6)[..., None] - fill * fill, 0.0).mean(axis=2))
    # Full weight where all four cells were filled; fading over the band's last quarter toward the smooth fill.
    depth = cv2.distanceTransform(hole, cv2.DIST_L2, 3)
    t = np.clip((depth - 0.85 * band_px) / (0.3 * band_px), 0.0, 1.0)
    weight = np.clip(wsum, 0.0, 1.0) * (1.0 - t * t * (3 - 2 * t)) * (hole > 0)
    if reach == 1:
        # Cells of BLEND_PX or more copy whole blocks, whose seams can show. Smaller (a photo of a few hundred px), the
        # blend spans several cells and their spread is the wall's own texture: the copies stay (hopper_lowres_160's
        # flag; its smooth fill beside the jaw moved mediapipe's lip gap, lips closed in silence 99% -> 96%).
        weight *= 1.0 - _seams_shown(spread, copied_grain / np.maximum(wsum, 1e-6), wsum > 0, band_px)
    return fill, weight.astype(np.float32)


# Seams between copies show where their disagreement, averaged over the seams within SEAM_SCALE band depths, passes
# SEAM_LEVELS plus the detail the copies bring (mean |grey - its blur| at the cells' scale, at their sources); fully
# shown at twice SEAM_LEVELS. Only where that detail is under SEAM_GRAIN levels, none from 1.5 times it: a flag's stars
# and cords hide the seams between their copies, and a smooth fill there would be a smear of the flag's colours.
SEAM_SCALE = 1.0 / 3.0
SEAM_LEVELS = 2.0
SEAM_GRAIN = 4.0
# Where copies disagree by less (levels), they meet without a seam.
SEAM_MIN = 0.5


def _seams_shown(spread: np.ndarray, grain: np.ndarray, covered: np.ndarray, band_px: int) -> np.ndarray:
    """(H, W) float32 in [0, 1]: where the copies' seams (`spread`) show against the grain they copied (`grain`, per
    pixel), which the smooth fill then takes over. On a plain or blurred wall with a gradient (a defocused shelf's
    dark end beside a head) every copy breaks the gradient: the front repeats the strip of wall beside the hole, each
    strip's end against the next one's start, and a block of stripes shows behind the turned head
    (beard_smile_darker_skin)."""
    sigma = max(2.0, SEAM_SCALE * band_px)

    def mean_over(mask: np.ndarray, img: np.ndarray) -> np.ndarray:
        m = mask.astype(np.float32)
        return low_pass(img * m, sigma) / np.maximum(low_pass(m, sigma), 1e-6)

    grain = mean_over(covered, grain)
    # The seams' own contrast (their mean disagreement where copies meet), not diluted by the stretches between them.
    seams = mean_over(covered & (spread > SEAM_MIN), spread)
    plain = np.clip((1.5 * SEAM_GRAIN - grain) / (0.5 * SEAM_GRAIN), 0.0, 1.0)
    return np.clip((seams - SEAM_LEVELS - grain) / SEAM_LEVELS, 0.0, 1.0) * plain * covered


def low_pass(img: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of sigma px; a wide one made on a copy a quarter of sigma smaller (the same answer to a level or
    so, at a fraction of the cost on a 1280 px photo)."""
    k = int(sigma // 4)
    if k < 2:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / k), (w, h), interpolation=cv2.INTER_LINEAR)
