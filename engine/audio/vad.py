"""Voice activity with silero-vad's ONNX model (shipped inside the silero-vad wheel), streaming.

The model takes 512-sample chunks at 16 kHz (32 ms) with 64 samples of context and a recurrent
state; each video frame reports the probability of the newest chunk.
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CHUNK = 512
CONTEXT = 64


@functools.cache
def _model() -> Any:
    """One ONNX Runtime session for the process: the model is stateless (each stream passes its own state)
    and ORT allows concurrent run() calls, so sessions share it instead of each paying ~25 ms and its memory."""
    import onnxruntime as ort

    model = importlib.resources.files("silero_vad") / "data" / "silero_vad.onnx"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # 0.1 ms a chunk: threads cost more
    return ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])


class SileroVad:
    def __init__(self) -> None:
        self._session = _model()
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)
        self._sr = np.array(16000, np.int64)
        self.probability = 0.0

    def push(self, samples_16k: np.ndarray) -> float:
        """Feed 16 kHz audio; returns the probability of speech in the newest complete chunk."""
        self._pending = np.concatenate([self._pending, samples_16k.astype(np.float32, copy=False)])
        while len(self._pending) >= CHUNK:
            chunk, self._pending = self._pending[:CHUNK], self._pending[CHUNK:]
            x = np.concatenate([self._context, chunk])[None]
            out, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
            self._context = chunk[-CONTEXT:]
            self.probability = float(out[0, 0])
        return self.probability


def make_vad() -> SileroVad | None:
    """The silero VAD, or None (energy gating only) when onnxruntime or silero-vad is missing."""
    try:
        return SileroVad()
    except ImportError as e:
        log.warning("silero VAD unavailable (%s): voice activity falls back to an energy gate; "
                    "pip install onnxruntime silero-vad", e)
        return None
