"""What the agent-framework runs (tests/agents/*_run.py) share: the portrait, a jaw probe, TTS-like speech and
the numbers taken from what came out. These scripts run in the agent venv (harness/agent_venv.py) and print
one JSON line; tests/test_agent_frameworks.py judges it."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.audio.resample import resample
from engine.config import EngineConfig
from engine.generator import PreparedAvatar, WarpGenerator, prepare_avatar
from engine.types import FPS, SAMPLE_RATE_HZ, Control, FirstFrame, MotionWindow, RenderedWindow
from harness.speech import espeak

TTS_RATE_HZ = 24000  # what TTS services commonly send
TTS_CHUNK_S = 0.04
CLOSED_JAW = 0.1  # the mouth counts as closed at or below this jaw opening
SHORT = "Hello there, nice to meet you."
BYE = "Goodbye now."
LONG = ("Welcome to the show. Today we are looking at a brand new camera, and it is very good indeed, "
        "with a bright lens and a quiet shutter.")


class JawProbe:
    """The warp generator, noting each rendered frame's jaw control (what the mouth does is judged on it)."""

    name = "jawprobe"

    def __init__(self, avatar: PreparedAvatar) -> None:
        self.inner = WarpGenerator(avatar)
        self.jaw: dict[int, float] = {}

    def first_frame(self) -> FirstFrame:
        return self.inner.first_frame()

    def render(self, window: MotionWindow, condition: FirstFrame) -> tuple[RenderedWindow, FirstFrame]:
        for i in range(window.n_frames):
            self.jaw[window.start_frame + i] = float(window.controls[i, Control.JAW_OPEN])
        return self.inner.render(window, condition)


def setup() -> tuple[PreparedAvatar, EngineConfig, JawProbe]:
    """The default portrait, landmarked here (no cache: mediapipe's face mesh runs in this venv, on its
    protobuf), a small frame for a 2-core machine, and the probe."""
    avatar = prepare_avatar(None, 320, cache_dir=None)
    gc.collect()
    gc.freeze()  # as `serve` does: no full collection stalls the event loop mid-run
    return avatar, EngineConfig(max_side_px=320), JawProbe(avatar)


def tts_chunks(text: str) -> list[np.ndarray]:
    """espeak speech as a TTS sends it: int16 at 24 kHz in 40 ms chunks."""
    pcm = (np.clip(resample(espeak(text), SAMPLE_RATE_HZ, TTS_RATE_HZ), -1, 1) * 32767).astype(np.int16)
    step = int(TTS_CHUNK_S * TTS_RATE_HZ)
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def samples_48k(chunks: list[np.ndarray]) -> int:
    return round(sum(len(c) for c in chunks) * SAMPLE_RATE_HZ / TTS_RATE_HZ)


@dataclass
class Seen:
    """What came out, with arrival times (time.monotonic)."""

    frames: list[tuple[float, int]] = field(default_factory=list)  # (t, frame index)
    sounds: list[tuple[float, int, int, float]] = field(default_factory=list)  # (t, start sample, n, rms)
    ends: list[tuple[float, int]] = field(default_factory=list)  # (t, sound samples out before it)
    sizes: set[tuple[int, int]] = field(default_factory=set)

    def sound_out(self, since_t: float = 0.0, until_t: float = float("inf")) -> int:
        return sum(n for t, _, n, _ in self.sounds if since_t <= t < until_t)


async def until_mouth_open(seen: Seen, probe: JawProbe, timeout_s: float = 5.0, jaw: float = 0.5) -> None:
    """Until the newest picture out shows the mouth open: an interrupt then comes mid-word, not in a pause."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if seen.frames and probe.jaw.get(seen.frames[-1][1], 0.0) > jaw:
            return
        await asyncio.sleep(0.005)
    raise TimeoutError("the mouth never opened")


def report(seen: Seen, probe: JawProbe, t_interrupt: float, extra: dict[str, Any],
           until_t: float = float("inf")) -> dict[str, Any]:
    """The numbers the test judges: rate and regularity of the pictures, sound in step with the mouth,
    and how the interrupt was honoured (judged on what came out from it until_t, when the next speech began)."""
    times = np.array([t for t, _ in seen.frames])
    index = [k for _, k in seen.frames]
    steady = times[times > times[0] + 0.5]  # past the start-up
    fps = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    arrival = dict((k, t) for t, k in seen.frames)
    # Sound and picture in step: each sound chunk reaches the sink when the frame its first sample belongs to does.
    skew = [t - arrival[s // 1000] for t, s, _, _ in seen.sounds if s // 1000 in arrival]
    after = [k for t, k in seen.frames if t_interrupt <= t < until_t]
    first_after = after[0] if after else None
    closed_from = None  # first frame after the interrupt from which the jaw stays closed
    for k in after:
        if k in probe.jaw and probe.jaw[k] > CLOSED_JAW:
            closed_from = None
        elif closed_from is None and k in probe.jaw:
            closed_from = k
    before = [probe.jaw[k] for t, k in seen.frames if t < t_interrupt and k in probe.jaw]
    at = [probe.jaw[k] for t, k in seen.frames if t_interrupt - 0.05 <= t < t_interrupt and k in probe.jaw]
    return {
        "frames": len(seen.frames), "fps": round(fps, 2), "sizes": sorted(seen.sizes),
        "index_steps": sorted({b - a for a, b in itertools.pairwise(index)}),
        "max_gap_s": round(float(np.diff(times).max()), 4) if len(times) > 1 else None,
        "av_skew_s": [round(float(min(skew)), 4), round(float(max(skew)), 4)] if skew else None,
        "jaw_max_before_interrupt": round(max(before), 3) if before else None,
        "jaw_at_interrupt": round(max(at), 3) if at else None,  # the newest pictures out when it came
        "interrupt_to_closed_frames": None if closed_from is None or first_after is None else closed_from - first_after,
        "sound_after_interrupt_s": seen.sound_out(t_interrupt + 0.03, until_t) / SAMPLE_RATE_HZ,
        "ends": [(round(t, 3), n) for t, n in seen.ends], "fps_target": FPS, **extra,
    }


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)
    sys.stdout.flush()
