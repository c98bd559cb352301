"""Spectral features of one frame's audio: log-mel bands and MFCCs, and a pitch estimate.

Numpy only: a 1024-point FFT of the last 25 ms at 16 kHz per video frame costs ~50 us.
"""

from __future__ import annotations

import numpy as np

ANALYSIS_RATE_HZ = 16_000
WINDOW = 400  # 25 ms at 16 kHz
N_FFT = 512
N_MELS = 26
N_MFCC = 13


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _mel_filterbank(n_mels: int = N_MELS, fmin: float = 80.0, fmax: float = 7600.0) -> np.ndarray:
    edges_hz = 700.0 * (10 ** (np.linspace(_mel(fmin), _mel(fmax), n_mels + 2) / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(N_FFT, 1.0 / ANALYSIS_RATE_HZ)
    fb = np.zeros((n_mels, len(bins)), np.float32)
    for m in range(n_mels):
        lo, mid, hi = edges_hz[m : m + 3]
        up = (bins - lo) / (mid - lo)
        down = (hi - bins) / (hi - mid)
        fb[m] = np.clip(np.minimum(up, down), 0.0, None)
    return fb


def _dct_matrix(n_out: int = N_MFCC, n_in: int = N_MELS) -> np.ndarray:
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    return (np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)).astype(np.float32)


MEL_FB = _mel_filterbank()
DCT = _dct_matrix()
HAMMING = np.hamming(WINDOW).astype(np.float32)


def log_mel(window_16k: np.ndarray) -> np.ndarray:
    """(400,) samples at 16 kHz -> (26,) log-mel energies."""
    x = np.append(window_16k[:1], window_16k[1:] - 0.97 * window_16k[:-1]) * HAMMING  # pre-emphasis
    power = np.abs(np.fft.rfft(x, N_FFT)) ** 2
    return np.log(MEL_FB @ power + 1e-8).astype(np.float32)


def mfcc(log_mel_bands: np.ndarray) -> np.ndarray:
    return DCT @ log_mel_bands


def pitch_hz(window_16k: np.ndarray, fmin: float = 70.0, fmax: float = 400.0) -> float:
    """Autocorrelation pitch of a (>= 40 ms) window; 0.0 when unvoiced."""
    x = window_16k - window_16k.mean()
    energy = float(x @ x)
    if energy < 1e-6:
        return 0.0
    ac = np.correlate(x, x, "full")[len(x) - 1 :]
    lo, hi = int(ANALYSIS_RATE_HZ / fmax), min(len(ac) - 1, int(ANALYSIS_RATE_HZ / fmin))
    lag = lo + int(np.argmax(ac[lo:hi]))
    return ANALYSIS_RATE_HZ / lag if ac[lag] > 0.35 * ac[0] else 0.0
