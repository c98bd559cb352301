"""Audio ingest: any sample rate, sample format and channel count -> mono float32 at 48 kHz."""

from __future__ import annotations

import av
import numpy as np

from engine.audio.resample import Resampler
from engine.types import SAMPLE_RATE_HZ

_INT_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0, np.dtype(np.uint8): 128.0}


def to_mono_float(pcm: np.ndarray, channels: int, planar: bool = False) -> np.ndarray:
    """Average the channels (a sum would clip: a stereo microphone sends the same signal twice)."""
    pcm = np.asarray(pcm)
    frames = pcm.reshape(channels, -1).T if planar else pcm.reshape(-1, channels)
    mono = frames.astype(np.float32).mean(axis=1)
    if pcm.dtype == np.uint8:
        mono -= 128.0
    scale = _INT_SCALE.get(pcm.dtype)
    return mono / scale if scale else mono


class AudioIngest:
    """Downmixes, then resamples to 48 kHz (engine/audio/resample.py: no clicks at chunk boundaries,
    input already at 48 kHz untouched)."""

    def __init__(self) -> None:
        self._resampler = Resampler(SAMPLE_RATE_HZ)
        self._next_pts: int | None = None

    def gap_samples(self, frame: av.AudioFrame) -> int:
        """48 kHz samples missing before this frame, judged by its pts (RTP timestamps show lost
        packets); 0 for the first frame, for frames without pts, and for overlaps."""
        if frame.pts is None or frame.time_base is None:
            return 0
        expected, self._next_pts = self._next_pts, frame.pts + frame.samples * frame.time_base.denominator // (
            frame.sample_rate * frame.time_base.numerator)
        if expected is None or frame.pts <= expected:
            return 0
        return int((frame.pts - expected) * frame.time_base * SAMPLE_RATE_HZ)

    def convert_frame(self, frame: av.AudioFrame) -> np.ndarray:
        channels = len(frame.layout.channels)
        mono = to_mono_float(frame.to_ndarray(), channels, planar=frame.format.is_planar)
        return self._resampler.push(mono, frame.sample_rate)

    def convert_pcm(self, pcm: np.ndarray, sample_rate_hz: int, channels: int = 1) -> np.ndarray:
        """pcm: int16 or float32, interleaved (n * channels,) or shaped (n, channels)."""
        pcm = np.asarray(pcm)
        if pcm.ndim == 2:
            channels = pcm.shape[1]
        return self._resampler.push(to_mono_float(pcm, channels), sample_rate_hz)

    def flush(self) -> np.ndarray:
        """Samples still inside the resampler's filter (call at the end of input)."""
        return self._resampler.flush()
