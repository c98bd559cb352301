"""`avatar-engine render`: the same engine offline, into an H.264 + AAC MP4 at 48 fps."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.conftest import REPO, espeak, mouth_box, write_wav


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "server.py"), *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    tmp = tmp_path_factory.mktemp("render")
    # 44.1 kHz stereo input: render must resample and downmix on its own.
    speech = espeak("Good evening. This camera has a bright lens and a long battery life.")
    speech = np.concatenate([np.zeros(48000, np.float32), speech, np.zeros(72000, np.float32)])
    speech_44k = np.interp(np.arange(int(len(speech) * 44100 / 48000)) * 48000 / 44100,
                           np.arange(len(speech)), speech).astype(np.float32)
    wav = tmp / "speech.wav"
    pcm = (np.stack([speech_44k, speech_44k], axis=1) * 32767).astype(np.int16)
    with av.open(str(wav), "w") as c:
        s = c.add_stream("pcm_s16le", rate=44100, layout="stereo")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = 44100
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    out = tmp / "out.mp4"
    result = run_cli("render", "--audio", str(wav), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "frames" in result.stdout
    return out, speech


def test_render_writes_48fps_mp4_with_audio_in_sync(rendered: tuple[Path, np.ndarray]) -> None:
    out, speech = rendered
    with av.open(str(out)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.codec_context.name == "h264" and a.codec_context.name == "aac"
        assert v.average_rate == Fraction(48, 1)
        video_s = float(v.duration * v.time_base)
        audio_s = float(a.duration * a.time_base)
        n_frames = sum(1 for _ in c.decode(video=0))
    assert abs(video_s - audio_s) <= 1 / 48, f"video {video_s:.4f} s vs audio {audio_s:.4f} s"
    assert n_frames == int(np.ceil(len(speech) / 1000)), n_frames
    assert abs(video_s - len(speech) / 48000) <= 1 / 48


def test_render_mp4_reads_back_in_ffprobe(rendered: tuple[Path, np.ndarray]) -> None:
    if shutil.which("ffprobe") is None:
        pytest.fail("ffprobe is not installed: run .ci/run or `apt-get install ffmpeg`")
    out, _ = rendered
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(out)],
                           capture_output=True, text=True, check=True)
    streams = {s["codec_type"]: s for s in json.loads(probe.stdout)["streams"]}
    assert streams["video"]["r_frame_rate"] == "48/1"
    assert abs(float(streams["video"]["duration"]) - float(streams["audio"]["duration"])) <= 1 / 48


def test_render_moves_the_mouth_with_speech(rendered: tuple[Path, np.ndarray]) -> None:
    """The mouth region changes while the host speaks and stays put in the silences around it."""
    out, _ = rendered
    with av.open(str(out)) as c:
        frames = np.stack([f.to_ndarray(format="gray").astype(np.float32) for f in c.decode(video=0)])
    x0, y0, x1, y1 = mouth_box()
    change = np.abs(np.diff(frames[:, y0:y1, x0:x1], axis=0)).mean(axis=(1, 2))
    n = len(change)
    speaking = change[60 : n - 84].mean()  # 1 s of silence before, 1.5 s after (release settles)
    quiet = max(change[:40].mean(), change[n - 48 :].mean())
    assert speaking > 4 * quiet, f"mouth change {speaking:.2f} speaking vs {quiet:.2f} quiet"


def test_render_rejects_bad_input_with_a_clear_message(tmp_path: Path) -> None:
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("no audio here")
    result = run_cli("render", "--audio", str(not_audio), "--out", str(tmp_path / "x.mp4"))
    assert result.returncode == 2
    assert "cannot read audio" in result.stderr

    bad_image = tmp_path / "portrait.jpg"
    bad_image.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    wav = write_wav(tmp_path / "a.wav", np.zeros(4800, np.float32))
    result = run_cli("render", "--avatar", str(bad_image), "--audio", str(wav), "--out", str(tmp_path / "y.mp4"))
    assert result.returncode == 2
    assert "portrait.jpg" in result.stderr and ("corrupt" in result.stderr or "not an image" in result.stderr)
