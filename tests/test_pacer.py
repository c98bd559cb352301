"""The pacer keeps 48 fps on the media clock even when windows are late."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from engine.config import EngineConfig
from engine.session import AvatarSession
from streaming.pacer import Pacer
from tests.fakes import FakeGenerator
from tests.test_session import avatar


async def pace(seconds: float, render_delay_s: float = 0.0, audio_lead_s: float = 0.0, **cfg: object
               ) -> tuple[list[tuple[int, float, bool]], Pacer, np.ndarray]:
    """Run a live session with a paced consumer; per frame: (index, seconds after due, fresh picture)."""
    # render_delay_s: a generator that cannot keep up, e.g. an overloaded GPU
    generator = FakeGenerator(avatar().size, render_delay_s=render_delay_s) if render_delay_s else None
    session = AvatarSession(avatar(), EngineConfig(**cfg), live=True, session_id="p",  # type: ignore[arg-type]
                            generator=generator)
    await session.start()
    assert session.clock is not None
    pacer = Pacer(session, session.clock, audio_lead_s=audio_lead_s)
    pacer.start()
    tone = (0.3 * np.sin(np.arange(960) / 48000 * 2 * np.pi * 200)).astype(np.float32)
    got: list[tuple[int, float, bool]] = []
    audio: list[np.ndarray] = []
    pacer.audio_handed_early_s = []  # type: ignore[attr-defined]
    k = pacer.first_frame_index()

    async def mic() -> None:
        for _ in range(int(seconds * 50)):
            session.push_audio(tone, 48000)
            await asyncio.sleep(0.02)

    async def speaker() -> None:
        sample = k * 1000
        for _ in range(int(seconds * 50) - 5):
            audio.append(await pacer.audio(sample, 960))
            pacer.audio_handed_early_s.append(session.clock.sample_due_s(sample) - time.monotonic())
            sample += 960

    feeders = [asyncio.create_task(mic()), asyncio.create_task(speaker())]
    previous = None
    for _ in range(int(seconds * 48)):
        k, rgb = await pacer.video_frame(k)
        got.append((k, time.monotonic() - session.clock.frame_due_s(k), rgb is not previous))
        previous = rgb
        k += 1
    await asyncio.gather(*feeders)
    await pacer.stop()
    await session.aclose()
    return got, pacer, np.concatenate(audio)


def test_frames_come_out_on_the_clock_in_order() -> None:
    got, pacer, audio = asyncio.run(pace(2.0))
    indices = [k for k, _, _ in got]
    assert indices == list(range(indices[0], indices[0] + len(indices)))
    lateness = np.array([late for _, late, _ in got])
    assert np.percentile(lateness, 95) < 0.01, f"frames handed out late: p95 {np.percentile(lateness, 95):.4f}s"
    assert pacer.metrics.frames_repeated <= 4  # at most one window late on a busy 2-core machine
    assert np.sqrt(np.mean(audio[len(audio) // 2 :] ** 2)) > 0.15, "the microphone's tone is not in the output"


def test_late_windows_repeat_frames_and_the_stream_keeps_its_rate() -> None:
    # Rendering a 4-frame window (83 ms) takes 120 ms: the generator is always late.
    got, pacer, audio = asyncio.run(pace(3.0, render_delay_s=0.12, window_frames=4, pipeline_delay_s=0.2))
    indices = [k for k, _, _ in got]
    assert indices == list(range(indices[0], indices[0] + len(indices))), "frame slots were skipped"
    lateness = np.array([late for _, late, _ in got])
    # A missing frame waits at most the pacer's short grace, then the previous picture goes out.
    assert np.percentile(lateness, 95) < pacer.video_grace_s + 0.005, "a late window delayed the output"
    assert pacer.metrics.frames_repeated > 10
    # ... but the engine skips what it cannot make in time, so the picture keeps moving.
    # The generator makes 4 frames per 120 ms (33 fps), so in steady state (the second half) about
    # every other window can be shown in time.
    steady = [fresh for _, _, fresh in got[len(got) // 2 :]]
    assert sum(steady) > 0.3 * len(steady), f"only {sum(steady)} fresh frames of {len(steady)}"
    assert pacer.session.metrics.frames_skipped > 0
    assert pacer.metrics.frames_sent == len(got)
    # The sound comes from the input, not from the windows: it plays on through the late ones.
    assert np.sqrt(np.mean(audio[len(audio) // 2 :] ** 2)) > 0.15, "late windows silenced the audio"


def test_audio_is_handed_out_its_lead_before_the_picture() -> None:
    _, pacer, audio = asyncio.run(pace(1.5, audio_lead_s=0.021))
    early = np.array(pacer.audio_handed_early_s[10:])  # type: ignore[attr-defined]
    assert np.median(early) > 0.015, f"audio handed out {np.median(early) * 1000:.1f} ms before due"
    assert np.sqrt(np.mean(audio[len(audio) // 2 :] ** 2)) > 0.15, "the lead cost the microphone's tone"
