"""Where to look in the default avatar's picture."""

from __future__ import annotations

from functools import cache

from engine.generator import prepare_avatar
from engine.generator.rig import LOWER_INNER_LIP, MOUTH_LEFT, MOUTH_RIGHT, UPPER_INNER_LIP


@cache
def mouth_box() -> tuple[int, int, int, int]:
    """The mouth region of the embedded default avatar, in its pixels (x0, y0, x1, y1)."""
    lm = prepare_avatar().landmarks
    x0, x1 = lm[MOUTH_LEFT, 0], lm[MOUTH_RIGHT, 0]
    pad = 0.3 * (x1 - x0)
    y0, y1 = lm[UPPER_INNER_LIP, 1] - pad, lm[LOWER_INNER_LIP, 1] + 2 * pad
    return int(x0 - pad), int(y0), int(x1 + pad), int(y1)
