"""Per-video-frame audio features (1000 samples at 48 kHz each): loudness, voice activity,
pitch and viseme weights. Everything a frame needs is computed from audio up to its own end:
the front end adds no lookahead of its own."""

from __future__ import annotations

import math

import numpy as np

from engine.audio.resample import Resampler
from engine.audio.spectral import ANALYSIS_RATE_HZ, WINDOW, log_mel, mfcc, pitch_hz
from engine.audio.vad import make_vad
from engine.audio.visemes import VisemeClassifier, VisemeModel
from engine.types import SAMPLE_RATE_HZ, FeatureFrame

PITCH_WINDOW = 640  # 40 ms at 16 kHz: two periods of a 50 Hz voice


class FeatureExtractor:
    """Loudness with an adaptive noise floor, silero voice activity, MFCC visemes, pitch.

    The noise floor falls to quiet frames at once and rises with a ~2 s time constant: room noise
    is learned within seconds, while the short pauses between words keep speech from raising it.
    """

    def __init__(self, min_speech_db: float = -45.0, margin_db: float = 10.0, use_vad_model: bool = True,
                 visemes: VisemeModel | None = None) -> None:
        self.min_speech_db = min_speech_db
        self.margin_db = margin_db
        self.noise_floor_db = -70.0
        self._vad = make_vad() if use_vad_model else None
        self._visemes = visemes or VisemeClassifier()
        self._to_16k = Resampler(ANALYSIS_RATE_HZ)
        self._history = np.zeros(PITCH_WINDOW, np.float32)  # newest 40 ms at 16 kHz

    def process(self, frame_index: int, samples: np.ndarray, filled: bool = False) -> FeatureFrame:
        samples = np.ascontiguousarray(samples, np.float32)
        rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
        energy_db = 20.0 * math.log10(rms) if rms > 1e-5 else -100.0
        rate = 0.2 if energy_db < self.noise_floor_db else 0.01
        self.noise_floor_db += rate * (max(energy_db, -90.0) - self.noise_floor_db)
        threshold_db = max(self.min_speech_db, self.noise_floor_db + self.margin_db)
        energy_gate = 1.0 / (1.0 + math.exp(-(energy_db - threshold_db) / 2.0))

        x16 = self._to_16k.push(samples, SAMPLE_RATE_HZ)
        self._history = np.concatenate([self._history, x16])[-PITCH_WINDOW:]
        if self._vad is not None:
            # The model decides speech vs noise; the energy gate keeps its 32 ms chunks from
            # holding the mouth open into the silence after a word.
            voice = min(self._vad.push(x16), energy_gate) if energy_gate > 0.05 else 0.0
        else:
            voice = energy_gate
        coeffs = mfcc(log_mel(self._history[-WINDOW:]))
        visemes = self._visemes.weights(coeffs, voiced=voice > 0.5)
        pitch = pitch_hz(self._history) if voice > 0.5 else 0.0
        return FeatureFrame(frame_index, rms, energy_db, voice, samples, filled, visemes, pitch, mfcc=coeffs)
