"""Speech synthesised by espeak-ng at run time (deterministic), and WAV files of it."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

from engine.audio.resample import resample
from engine.types import SAMPLE_RATE_HZ


def espeak(text: str, voice: str = "en") -> np.ndarray:
    """Speech as float32 mono at 48 kHz."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed: run .ci/run or `apt-get install espeak-ng`")
    raw = subprocess.run([exe, "-v", voice, "-s", "150", "--stdout", text], check=True,
                         capture_output=True).stdout
    with wave.open(io.BytesIO(raw)) as w:
        rate_hz = w.getframerate()  # 22.05 kHz
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    return resample(pcm, rate_hz)


def write_wav(path: Path, mono: np.ndarray, rate_hz: int = SAMPLE_RATE_HZ) -> Path:
    pcm = (np.clip(mono, -1, 1) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(pcm.tobytes())
    return path


def speech_then_silence(lead_silence_s: float, speech_s: float, tail_silence_s: float) -> np.ndarray:
    """Silence, then espeak speech filling exactly speech_s (repeated), then silence; 48 kHz."""
    sentence = espeak("Hello everyone, welcome to the show. Today we are looking at a new camera.")
    reps = int(np.ceil(speech_s * SAMPLE_RATE_HZ / len(sentence)))
    speech = np.tile(sentence, reps)[: int(speech_s * SAMPLE_RATE_HZ)]
    return np.concatenate([
        np.zeros(int(lead_silence_s * SAMPLE_RATE_HZ), np.float32),
        speech,
        np.zeros(int(tail_silence_s * SAMPLE_RATE_HZ), np.float32),
    ])
