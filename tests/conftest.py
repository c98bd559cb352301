"""Shared fixtures: a real server process on 127.0.0.1 and speech made by espeak-ng at test time."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from engine.generator import prepare_avatar
from engine.generator.rig import LOWER_INNER_LIP, MOUTH_LEFT, MOUTH_RIGHT, UPPER_INNER_LIP

REPO = Path(__file__).resolve().parent.parent
RATE_HZ = 48_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(tmp: Path, *extra: str, startup_timeout_s: float = 90.0) -> ServerProcess:
    port = free_port()
    log_path = tmp / f"server-{port}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "server.py"), "--host", "127.0.0.1", "--port", str(port), *extra],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return ServerProcess(url, proc, log_path)
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not answer /health in {startup_timeout_s}s:\n{log_path.read_text()}")


def stop_server(server: ServerProcess) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    stop_server(srv)


def espeak(text: str, voice: str = "en") -> np.ndarray:
    """Speech as float32 mono at 48 kHz, synthesised by espeak-ng now (deterministic)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is not installed: run .ci/run or `apt-get install espeak-ng`")
    raw = subprocess.run([exe, "-v", voice, "-s", "150", "--stdout", text], check=True,
                         capture_output=True).stdout
    import io

    with wave.open(io.BytesIO(raw)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    # espeak speaks at 22.05 kHz: linear resampling is plenty for a test signal
    n_out = int(len(pcm) * RATE_HZ / rate)
    return np.interp(np.arange(n_out) * rate / RATE_HZ, np.arange(len(pcm)), pcm).astype(np.float32)


def write_wav(path: Path, mono: np.ndarray, rate_hz: int = RATE_HZ) -> Path:
    pcm = (np.clip(mono, -1, 1) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(pcm.tobytes())
    return path


def speech_then_silence(lead_silence_s: float, speech_s: float, tail_silence_s: float) -> np.ndarray:
    """Silence, then espeak speech filling exactly speech_s (repeated), then silence."""
    sentence = espeak("Hello everyone, welcome to the show. Today we are looking at a new camera.")
    reps = int(np.ceil(speech_s * RATE_HZ / len(sentence)))
    speech = np.tile(sentence, reps)[: int(speech_s * RATE_HZ)]
    return np.concatenate([
        np.zeros(int(lead_silence_s * RATE_HZ), np.float32),
        speech,
        np.zeros(int(tail_silence_s * RATE_HZ), np.float32),
    ])


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s silence, 4 s speech, 4 s silence, 48 kHz mono WAV."""
    return write_wav(tmp_path_factory.mktemp("audio") / "speech.wav", speech_then_silence(2.0, 4.0, 4.0))


@cache
def mouth_box() -> tuple[int, int, int, int]:
    """The mouth region of the embedded default avatar, in its pixels (x0, y0, x1, y1)."""
    lm = prepare_avatar().landmarks
    x0, x1 = lm[MOUTH_LEFT, 0], lm[MOUTH_RIGHT, 0]
    pad = 0.3 * (x1 - x0)
    y0, y1 = lm[UPPER_INNER_LIP, 1] - pad, lm[LOWER_INNER_LIP, 1] + 2 * pad
    return int(x0 - pad), int(y0), int(x1 + pad), int(y1)
