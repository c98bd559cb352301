"""Sample-rate conversion with FFmpeg's resampler (PyAV): one streaming class and one function."""

from __future__ import annotations

import av
import numpy as np

from engine.types import SAMPLE_RATE_HZ


class Resampler:
    """Mono float32 at any rate in, mono float32 at `target_rate_hz` out, one chunk at a time.

    The filter state carries over between chunks, so chunk boundaries leave no clicks. The filter
    is rebuilt only when the input rate changes (what it still holds from the old rate comes out
    first); input already at the target rate passes through untouched, with no filter delay.
    """

    def __init__(self, target_rate_hz: int = SAMPLE_RATE_HZ) -> None:
        self.target_rate_hz = target_rate_hz
        self._resampler: av.AudioResampler | None = None
        self._input_rate_hz: int | None = None

    def push(self, mono: np.ndarray, rate_hz: int) -> np.ndarray:
        """The resampled samples ready so far; the filter holds back a few until later calls or flush()."""
        if rate_hz != self._input_rate_hz:
            tail = self.flush()
            self._input_rate_hz = rate_hz
            if rate_hz != self.target_rate_hz:
                self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.target_rate_hz)
            if len(tail):
                return np.concatenate([tail, self.push(mono, rate_hz)])
        if self._resampler is None:
            return np.asarray(mono).astype(np.float32, copy=False)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(mono, np.float32).reshape(1, -1),
                                           format="flt", layout="mono")
        frame.sample_rate = rate_hz
        return _samples(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """The samples still inside the filter (at the end of input); the next push starts afresh."""
        out = _samples(self._resampler.resample(None)) if self._resampler else np.zeros(0, np.float32)
        self._resampler, self._input_rate_hz = None, None
        return out


def resample(mono: np.ndarray, rate_hz: int, target_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """A whole mono signal at rate_hz -> float32 at target_rate_hz."""
    resampler = Resampler(target_rate_hz)
    return np.concatenate([resampler.push(mono, rate_hz), resampler.flush()])


def _samples(frames: list[av.AudioFrame]) -> np.ndarray:
    if not frames:
        return np.zeros(0, np.float32)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32, copy=False)
