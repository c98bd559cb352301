"""`avatar-engine live` as a user runs it: a real process, a WAV made by espeak-ng, a signal to stop it."""

from __future__ import annotations

import importlib.util
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from harness import REPO
from harness.speech import speech_then_silence, write_wav

HAS_OUTPUTS = importlib.util.find_spec("streaming.outputs") is not None


def live(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(REPO / "server.py"), "live", "--max-side", "320", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def summary(out: str) -> tuple[int, float]:
    found = re.search(r"live: (\d+) frames in ([\d.]+) s", out)
    assert found, out[-2000:]
    return int(found.group(1)), float(found.group(2))


def test_a_show_plays_once_and_ends_with_its_audio(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "show.wav", speech_then_silence(0.2, 1.6, 0.2))
    proc = live("--audio", str(wav))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-2000:]
    frames, seconds = summary(out)
    assert "ended: the audio ended" in out
    # It ran until the 2 s of audio had gone out (due a pipeline delay after the start, then a 0.5 s tail), at 48 fps.
    assert 2.4 <= seconds <= 4.0 and abs(frames - 48 * seconds) <= 0.1 * 48 * seconds, (frames, seconds)


def test_a_looped_show_runs_until_sigterm_and_finishes_its_recording(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "loop.wav", speech_then_silence(0.1, 1.0, 0.1))
    record = ["--record", str(tmp_path / "rec")] if HAS_OUTPUTS else []
    proc = live("--audio", str(wav), "--loop", *record)
    assert proc.stdout is not None
    deadline = time.monotonic() + 90
    for line in proc.stdout:  # the stream is on its clock once it says so
        if "on its clock" in line or time.monotonic() > deadline:
            break
    time.sleep(4.0)  # three loops of the file
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out[-2000:]
    frames, seconds = summary(out)
    assert "stopped by a signal" in out and frames >= 48 * 3.5, (frames, seconds)
    if HAS_OUTPUTS:
        files = [p for p in (tmp_path / "rec").rglob("*") if p.is_file()]
        assert files, "no recording"
        with av.open(str(files[0])) as container:
            video = sum(1 for _ in container.decode(video=0))
        assert video >= 48 * 3, f"the recording holds {video} frames"


def test_bad_flags_are_refused_before_anything_starts(tmp_path: Path) -> None:
    proc = live("--audio", str(tmp_path / "missing.wav"))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "cannot read audio" in out, out[-2000:]
    if not HAS_OUTPUTS:
        wav = write_wav(tmp_path / "a.wav", speech_then_silence(0.1, 0.2, 0.1))
        proc = live("--audio", str(wav), "--rtmp", "rtmp://127.0.0.1:1/live/x")
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 2 and "streaming.outputs" in out, out[-2000:]
    else:
        pytest.skip("streaming.outputs is here: its own tests cover its flags")
