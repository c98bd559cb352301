"""The closed lid's skin grain, made once at prepare time: a fill (`lid_fill.lid_fill`) is smooth, and a large closed
lid without the photo's pores and fine lines reads as a flat patch of make-up.

The grain is the photo's own: the fine light and shade (luma over its local mean) of the clean skin around the
eye, copied in small square tiles from near each place to fill (the nearest few, one chosen at random) and
overlap-added with sine windows whose squares sum to one, so the copied grain keeps the source's strength and
shows no seams (the "image quilting" idea of Efros and Freeman 2001, with blended rather than cut seams: skin
grain is a stochastic texture, and has no structure for a cut to keep).
"""

from __future__ import annotations

import cv2
import numpy as np

# A source tile may hold at most this share of pixels whose grain passes GRAIN_CLIP (a brow hair, a lash, a
# mole: no skin's grain); what passes it in the tiles kept is clipped to it.
GRAIN_CLIP, STRAY_SHARE = 0.16, 0.03
MAX_GAIN = 2.0
NEAREST = 6  # a tile is copied from one of the nearest this many clean source tiles, chosen at random


def skin_detail(luma: np.ndarray, known: np.ndarray, sigma: float) -> np.ndarray:
    """The fine grain of luma (H, W): its ratio to its mean over a Gaussian of sigma pixels, less one, that mean
    taken over the known pixels only (the dark lashes or a hole next to the skin do not pull it down)."""
    k = known.astype(np.float32)
    low = cv2.GaussianBlur(luma * k, (0, 0), sigma) / np.maximum(cv2.GaussianBlur(k, (0, 0), sigma), 1e-3)
    return np.where(known, luma / np.maximum(low, 1.0) - 1.0, 0.0).astype(np.float32)


def tile_px(tile: int) -> int:
    """The side of `quilt`'s tiles for a tile of about `tile` pixels: even (half a tile is its hop), 4 at least."""
    return max(4, tile - tile % 2)


def clean_tiles(detail: np.ndarray, source: np.ndarray, tile: int) -> np.ndarray:
    """Where a tile x tile piece of detail (H, W) may be copied from (`quilt`), by its top-left corner: (almost) none
    of its pixels out of the source or with a grain past GRAIN_CLIP (H - tile + 1, W - tile + 1; empty where the
    picture is smaller than a tile)."""
    h, w = detail.shape
    if h < tile or w < tile:
        return np.zeros((0, 0), bool)
    stray = (np.abs(detail) > GRAIN_CLIP) | ~source
    share = cv2.boxFilter(stray.astype(np.float32), -1, (tile, tile), normalize=True, anchor=(0, 0),
                          borderType=cv2.BORDER_CONSTANT)[: h - tile + 1, : w - tile + 1]
    return share <= STRAY_SHARE


def quilt(detail: np.ndarray, source: np.ndarray, target: np.ndarray, tile: int, strength: float = 1.0,
          seed: int = 0) -> np.ndarray:
    """Grain (H, W) over the target pixels made of tile x tile pieces of detail where source is true throughout
    (and its grain is skin's), overlap-added at half a tile's step, strength times as strong as the source's;
    zero where there is no source."""
    h, w = detail.shape
    tile = tile_px(tile)
    hop = tile // 2
    if not target.any() or h < tile or w < tile:
        return np.zeros((h, w), np.float32)
    sy, sx = np.nonzero(clean_tiles(detail, source, tile))
    if len(sy) == 0:
        return np.zeros((h, w), np.float32)
    # Source tiles on a hop grid are enough (neighbouring positions hold nearly the same grain).
    pick = (sy % hop == 0) & (sx % hop == 0)
    if pick.sum() >= NEAREST:
        sy, sx = sy[pick], sx[pick]
    clipped = np.clip(np.where(source, detail, 0.0), -GRAIN_CLIP, GRAIN_CLIP).astype(np.float32)
    win1 = np.sin(np.pi * (np.arange(tile) + 0.5) / tile).astype(np.float32)
    window = win1[:, None] * win1[None, :]  # its squares, shifted by a hop, sum to one
    ty, tx = np.nonzero(target)
    out = np.zeros((h + 2 * tile, w + 2 * tile), np.float32)
    rng = np.random.default_rng(seed)
    for y in range((int(ty.min()) // hop) * hop - hop, int(ty.max()) + 1, hop):
        for x in range((int(tx.min()) // hop) * hop - hop, int(tx.max()) + 1, hop):
            d2 = (sy - y) ** 2 + (sx - x) ** 2
            near = np.argpartition(d2, min(NEAREST, len(d2) - 1))[:NEAREST]
            i = near[rng.integers(len(near))]
            out[y + tile : y + 2 * tile, x + tile : x + 2 * tile] += window * clipped[sy[i] : sy[i] + tile,
                                                                                       sx[i] : sx[i] + tile]
    out = out[tile : tile + h, tile : tile + w]
    out -= float(np.median(out[target]))  # grain, not a change of tone (pores are dark specks: it leans dark)
    # The clean tiles are the smoother ones, and overlapping tiles that share grain average it: the copy is brought
    # back to the strength of the source's grain (the clean skin's, all of it), at most MAX_GAIN times over.
    have = float(out[target].std())
    want = strength * float(clipped[source].std())
    return out * min(want / max(have, 1e-6), MAX_GAIN)
