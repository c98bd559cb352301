"""A session's input alone: audio in, placed on the clock, read back a frame at a time by its deadline."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from engine.clock import MediaClock
from engine.config import EngineConfig
from engine.metrics import SessionMetrics
from engine.session_input import SessionInput


def make_input(live: bool = False, **cfg: object) -> SessionInput:
    return SessionInput(EngineConfig(**cfg), SessionMetrics(), live=live)  # type: ignore[arg-type]


def mic_frame(pts: int, value: int = 3000, samples: int = 960) -> av.AudioFrame:
    """A 20 ms microphone frame as aiortc delivers it: s16 stereo, pts in 1/48000."""
    frame = av.AudioFrame.from_ndarray(np.full((1, 2 * samples), value, np.int16), format="s16", layout="stereo")
    frame.sample_rate, frame.pts, frame.time_base = 48000, pts, Fraction(1, 48000)
    return frame


async def test_pushed_audio_comes_back_frame_by_frame_exactly_then_ends() -> None:
    inp = make_input()
    heard: list[tuple[int, np.ndarray]] = []
    inp.on_audio(lambda k, samples: heard.append((k, samples)))
    pcm = np.random.default_rng(0).integers(-16000, 16000, 2500).astype(np.int16)
    stereo = np.repeat(pcm, 2)  # interleaved, the same signal twice
    inp.push_audio(stereo, 48000, channels=2)
    inp.end_input()
    frames = []
    while (frame := await inp.read_frame(len(frames), None)) is not None:
        frames.append(frame)
    assert [f.frame_index for f in frames] == [0, 1, 2]
    out = np.concatenate([f.samples for f in frames])
    np.testing.assert_array_equal(out[:2500], pcm / np.float32(32768))
    assert not out[2500:].any(), "the last frame is padded with silence"
    assert [f.missing_samples for f in frames] == [0, 0, 500] and not any(f.late for f in frames)
    assert inp.metrics.audio_samples_in == 2500 and inp.metrics.audio_samples_filled == 0, "padding is no loss"
    assert [k for k, _ in heard] == [0, 1, 2] and all(s is f.samples for (_, s), f in zip(heard, frames, strict=True))
    assert frames[0].arrived_t_s is not None and frames[2].arrived_t_s is None


async def test_other_rates_are_resampled_to_48_khz() -> None:
    inp = make_input()
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    inp.push_audio(tone, 16000)
    inp.end_input()
    assert inp.metrics.audio_samples_in == pytest.approx(48000, abs=100)
    middle = await inp.read_frame(24, None)
    assert middle is not None and np.sqrt(np.mean(middle.samples**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


async def test_a_frame_waits_for_its_audio_until_the_deadline_then_silence_stands_in() -> None:
    inp = make_input(live=True)
    t0 = time.monotonic()
    reader = asyncio.create_task(inp.read_frame(0, deadline_s=t0 + 5.0))
    await asyncio.sleep(0.05)
    assert not reader.done(), "read before its audio came or its deadline passed"
    inp.push_audio(np.full(1000, 0.25, np.float32), 48000)
    frame = await asyncio.wait_for(reader, timeout=1.0)
    assert frame is not None and frame.missing_samples == 0 and frame.samples[0] == 0.25
    # Nothing more comes: at its deadline frame 1 gets silence, counted, and noted as filled.
    frame = await asyncio.wait_for(inp.read_frame(1, deadline_s=time.monotonic() + 0.05), timeout=1.0)
    assert frame is not None and frame.missing_samples == 1000 and not frame.samples.any()
    assert inp.metrics.audio_samples_filled == 1000 and inp.last_filled_frame == 1


async def test_audio_missing_while_the_input_flows_is_late_and_counted() -> None:
    """Late: more delay would have saved it. Without any input at all, it is a quiet microphone."""
    quiet = make_input(live=True)
    quiet.clock = MediaClock(delay_s=0.08)
    frame = await quiet.read_frame(0, deadline_s=time.monotonic())
    assert frame is not None and frame.missing_samples == 1000 and not frame.late
    assert quiet.metrics.audio_frames_late == 0

    flowing = make_input(live=True)
    flowing.clock = MediaClock(delay_s=0.08)
    flowing.push_audio(np.full(500, 0.1, np.float32), 48000)  # half of frame 0, just now
    frame = await flowing.read_frame(0, deadline_s=time.monotonic())
    assert frame is not None and frame.missing_samples == 500 and frame.late
    assert flowing.metrics.audio_frames_late == 1 and flowing.last_filled_frame == 0


async def test_a_live_frame_is_placed_on_the_clock_by_its_timestamp() -> None:
    inp = make_input(live=True)
    inp.clock = MediaClock(delay_s=0.08, start_s=time.monotonic() - 0.1)  # the clock is 4800 samples in
    assert inp.offset_samples is None
    inp.push_audio_frame(mic_frame(pts=0))  # a sender whose timeline starts now
    offset = inp.offset_samples
    assert offset is not None and 4800 - 960 <= offset < 4800 - 960 + 4800, "placed where it arrived"
    first, last = offset // 1000, (offset + 959) // 1000
    audio = np.concatenate([(await inp.read_frame(k, time.monotonic())).samples  # type: ignore[union-attr]
                            for k in range(first, last + 1)])
    at = offset - first * 1000
    assert not audio[:at].any() and np.allclose(audio[at : at + 960], 3000 / 32768)


async def test_a_live_microphones_backlog_is_bounded_and_pushed_audio_is_not() -> None:
    mic = make_input(live=True, max_live_backlog_s=0.3)
    for i in range(25):  # 0.5 s in a burst, before the clock starts
        mic.push_audio_frame(mic_frame(pts=i * 960))
    assert mic.metrics.audio_samples_dropped == 25 * 960 - 14400
    assert mic.ring.backlog_samples == 14400
    pushed = make_input(live=True, max_live_backlog_s=0.3)
    pushed.push_audio(np.zeros(48000, np.float32), 48000)
    assert pushed.metrics.audio_samples_dropped == 0 and pushed.ring.backlog_samples == 48000


async def test_lost_packets_become_silence_and_are_counted() -> None:
    inp = make_input()
    for i in (0, 1, 3):  # frame 2 never arrives
        inp.push_audio_frame(mic_frame(pts=i * 960, value=1000 * (i + 1)))
    inp.end_input()
    assert inp.metrics.audio_samples_lost == 960
    audio = np.concatenate([(await inp.read_frame(k, None)).samples for k in range(4)])  # type: ignore[union-attr]
    assert not audio[1920:2880].any() and np.allclose(audio[2880:3840], 4000 / 32768)


async def test_clear_buffer_drops_what_was_not_read() -> None:
    inp = make_input(live=True)
    inp.push_audio(np.full(48000, 0.2, np.float32), 48000)
    assert (await inp.read_frame(0, None)) is not None
    inp.clear_buffer()
    frame = await inp.read_frame(1, time.monotonic())
    assert frame is not None and frame.missing_samples == 1000


async def test_a_fast_producer_waits_until_the_reader_catches_up() -> None:
    inp = make_input()
    inp.push_audio(np.zeros(48000, np.float32), 48000)
    waiter = asyncio.create_task(inp.wait_backlog_below(10_000))
    read = 0
    while not waiter.done():
        assert read < 48, "the producer was never let go"
        await asyncio.sleep(0)
        if not waiter.done():
            await inp.read_frame(read, None)
            read += 1
    assert read == 38, "let go before (or long after) the backlog fell below 10 000 samples"
