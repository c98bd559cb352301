"""Audio ingest: any sample rate, format and channel count -> mono float32 at 48 kHz."""

from __future__ import annotations

import av
import numpy as np

from engine.types import SAMPLE_RATE_HZ


class AudioIngest:
    """Converts incoming audio to the media clock's format with PyAV's streaming resampler.

    The resampler keeps filter state between calls, so chunk boundaries leave no clicks; it is
    rebuilt only when the input format changes.
    """

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._input_key: tuple[str, str, int] | None = None

    def convert_frame(self, frame: av.AudioFrame) -> np.ndarray:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if key != self._input_key:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE_HZ)
            self._input_key = key
        assert self._resampler is not None
        frame.pts = None  # arrival order is the clock here; pts jumps would make the resampler pad
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out).astype(np.float32, copy=False) if out else np.zeros(0, np.float32)

    def convert_pcm(self, pcm: np.ndarray, sample_rate_hz: int, channels: int = 1) -> np.ndarray:
        """pcm: int16 or float32, interleaved (n * channels,) or shaped (n, channels)."""
        pcm = np.asarray(pcm)
        if pcm.ndim == 2:
            channels = pcm.shape[1]
        interleaved = pcm.reshape(1, -1)
        if pcm.dtype == np.int16:
            fmt = "s16"
        else:
            fmt, interleaved = "flt", interleaved.astype(np.float32, copy=False)
        layout = {1: "mono", 2: "stereo"}.get(channels)
        if layout is None:  # PyAV packed frames need a known layout: downmix wider input here
            mono = interleaved.reshape(-1, channels).astype(np.float32).mean(axis=1)
            if fmt == "s16":
                mono /= 32768.0
            interleaved, fmt, layout = mono.reshape(1, -1), "flt", "mono"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(interleaved), format=fmt, layout=layout)
        frame.sample_rate = sample_rate_hz
        return self.convert_frame(frame)

    def flush(self) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, np.float32)
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(None)]
        self._resampler, self._input_key = None, None
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
