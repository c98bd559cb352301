"""Per-video-frame audio features: loudness and voice activity (1000 samples at 48 kHz each)."""

from __future__ import annotations

import math

import numpy as np

from engine.types import FeatureFrame


class FeatureExtractor:
    """Energy and an energy-based voice-activity estimate with an adaptive noise floor.

    The floor falls to quiet frames at once and rises with a ~2 s time constant: room noise is
    learned within seconds, while the short pauses between words keep speech from raising it.
    """

    def __init__(self, min_speech_db: float = -45.0, margin_db: float = 10.0) -> None:
        self.min_speech_db = min_speech_db
        self.margin_db = margin_db
        self.noise_floor_db = -70.0

    def process(self, frame_index: int, samples: np.ndarray, filled: bool = False) -> FeatureFrame:
        rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
        energy_db = 20.0 * math.log10(rms) if rms > 1e-5 else -100.0
        rate = 0.2 if energy_db < self.noise_floor_db else 0.01
        self.noise_floor_db += rate * (max(energy_db, -90.0) - self.noise_floor_db)
        threshold_db = max(self.min_speech_db, self.noise_floor_db + self.margin_db)
        vad = 1.0 / (1.0 + math.exp(-(energy_db - threshold_db) / 2.0))
        return FeatureFrame(frame_index, rms, energy_db, vad, samples, filled)
