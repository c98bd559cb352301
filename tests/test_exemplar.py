"""The exemplar fill of the band a head turn uncovers (engine.generator.exemplar), on a small synthetic wall."""

from __future__ import annotations

import cv2
import numpy as np

from engine.generator.exemplar import exemplar_fill


def beach(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rgb, hole): a plain pale sky over sand, dark figures standing about, and a head-shaped hole among them."""
    rng = np.random.default_rng(seed)
    h = w = 240
    img = np.full((h, w, 3), 225.0) + rng.normal(0.0, 2.0, (h, w, 1))
    img[150:] = np.array([200.0, 185.0, 160.0]) + rng.normal(0.0, 4.0, (h - 150, w, 1))
    for x, y in ((40, 140), (195, 145), (70, 100), (178, 100), (120, 58)):
        cv2.ellipse(img, (x, y), (5, 14), 0, 0, 360, (30, 30, 40), -1)
    hole = np.zeros((h, w), np.uint8)
    cv2.ellipse(hole, (120, 170), (60, 90), 0, 0, 360, 1, -1)
    return np.clip(img, 0, 255).astype(np.uint8), hole


def test_no_figure_is_copied_into_a_plain_sky() -> None:
    """Where the wall around the hole is plain sky, the fill is sky: a patch whose known part matches the sky is not
    taken when what it would copy in is a dark figure from beside it (anne_helene_sunglasses_small's turn showed a
    figure from the beach above her head; here the old fill copied 926 dark pixels into 5447 of sky)."""
    img, hole = beach(seed=0)
    fill, weight = exemplar_fill(img, hole, band_px=40)
    sky = (weight > 0.5) & (np.arange(img.shape[0])[:, None] < 150)
    assert sky.sum() > 1000, "the fill covered too little sky for the test to mean anything"
    dark = int((fill.mean(axis=2)[sky] < 150).sum())
    print(f"{sky.sum()} px of sky filled, {dark} of them dark")
    assert dark < 0.01 * sky.sum(), f"{dark} dark pixels copied into the plain sky"
