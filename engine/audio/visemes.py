"""Language-agnostic visemes: MFCC templates of the open vowels A, I, U, E, O (uLipSync's idea).

The templates (engine/audio/viseme_templates.json) are mean MFCCs of each vowel spoken by
espeak-ng in several languages, made by `python -m benchmarks.calibrate_visemes`. Both the
templates and the live MFCCs are mean-normalised (per language / a running mean over voiced
frames), so a different voice or microphone shifts both alike. A frame's weights are a softmax
over the negative distances to the five templates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

VOWELS = ("A", "I", "U", "E", "O")
TEMPLATES_PATH = Path(__file__).with_name("viseme_templates.json")

# How each vowel shapes the mouth: (jaw share, width, rounding); jaw share scales the loudness-driven opening.
MOUTH_SHAPES = {
    "A": (1.0, 0.1, 0.0),
    "I": (0.35, 0.8, 0.0),
    "U": (0.3, -0.4, 1.0),
    "E": (0.6, 0.5, 0.0),
    "O": (0.7, -0.3, 0.75),
}
SHAPE_MATRIX = np.array([MOUTH_SHAPES[v] for v in VOWELS], np.float32)  # (5, 3)


class VisemeModel(Protocol):
    """What the feature stage needs from a viseme source. A learned audio encoder (wav2vec2/HuBERT
    features with a small head, weights supplied by the user) can stand in for the templates."""

    def weights(self, mfcc: np.ndarray, voiced: bool) -> np.ndarray:
        """(n_mfcc,) MFCCs of one frame -> (5,) weights over A, I, U, E, O (sum 1)."""
        ...


class VisemeClassifier:
    def __init__(self, templates_path: Path = TEMPLATES_PATH, temperature: float = 0.35,
                 mean_rate: float = 0.01) -> None:
        data = json.loads(templates_path.read_text())
        self.templates = np.array([data["templates"][v] for v in VOWELS], np.float32)  # (5, n_mfcc - 1)
        self.scale = float(data["scale"])  # typical template distance: makes the temperature unitless
        self.temperature = temperature
        self.mean_rate = mean_rate  # ~2 s of voiced frames
        self._mean = np.array(data["global_mean"], np.float32)

    def weights(self, mfcc: np.ndarray, voiced: bool) -> np.ndarray:
        """(n_mfcc,) MFCCs of one frame -> (5,) weights over A, I, U, E, O (sum 1)."""
        c = mfcc[1:]  # c0 is loudness, which the jaw already follows
        if voiced:
            self._mean += self.mean_rate * (c - self._mean)
        d = np.linalg.norm(self.templates - (c - self._mean), axis=1) / self.scale
        z = -(d - d.min()) / self.temperature
        w = np.exp(z)
        return (w / w.sum()).astype(np.float32)
