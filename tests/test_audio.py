"""Audio front end: ingest resampling, the media-clock ring buffer, per-frame features."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from engine.audio.features import FeatureExtractor
from engine.audio.ingest import AudioIngest
from engine.audio.ring import AudioRing


@pytest.mark.parametrize(("rate_hz", "channels", "dtype"), [(16000, 1, np.int16), (44100, 2, np.int16),
                                                            (48000, 2, np.float32), (22050, 6, np.float32)])
def test_ingest_converts_any_rate_and_layout_to_48k_mono(rate_hz: int, channels: int, dtype: type) -> None:
    ingest = AudioIngest()
    seconds = 2.0
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    pcm = np.repeat(tone[:, None], channels, axis=1)
    pcm = (pcm * 32767).astype(np.int16) if dtype is np.int16 else pcm.astype(np.float32)
    chunk = rate_hz // 50  # 20 ms pieces, as a live source would send
    out = [ingest.convert_pcm(pcm[i : i + chunk], rate_hz, channels) for i in range(0, len(pcm), chunk)]
    mono = np.concatenate([*out, ingest.flush()])
    assert abs(len(mono) - 96000) <= 1
    # The tone survives: its spectrum peaks at 440 Hz and its level is kept.
    spectrum = np.abs(np.fft.rfft(mono[4800:-4800]))
    peak_hz = np.argmax(spectrum) * 48000 / len(mono[4800:-4800])
    assert abs(peak_hz - 440) < 2
    assert abs(np.sqrt(np.mean(mono[4800:-4800] ** 2)) - 0.5 / np.sqrt(2)) < 0.02


def test_ring_fills_gaps_with_silence_without_shifting_later_audio() -> None:
    ring = AudioRing(max_backlog_samples=48000)
    ring.write(np.ones(1000, np.float32))
    first, missing = ring.read(0, 1000)
    assert missing == 0 and first.min() == 1.0
    # The next frame is due before its audio arrives: silence stands in ...
    gap, missing = ring.read(1000, 1000)
    assert missing == 1000 and not gap.any()
    # ... and the late audio continues at the clock, not in the past.
    ring.write(np.full(1000, 0.5, np.float32))
    assert ring.write_cursor == 3000
    late, missing = ring.read(2000, 1000)
    assert missing == 0 and np.all(late == 0.5)


def test_ring_bounds_live_backlog_and_counts_drops() -> None:
    ring = AudioRing(max_backlog_samples=2000)
    dropped = ring.write(np.ones(1500, np.float32)) + ring.write(np.ones(1500, np.float32))
    assert dropped == 1000 and ring.dropped_samples == 1000
    assert ring.backlog_samples == 2000


def test_ring_memory_stays_bounded_over_long_streams() -> None:
    ring = AudioRing(max_backlog_samples=48000)
    for k in range(5000):  # 100 s of audio
        ring.write(np.full(960, k, np.float32))
        ring.read(ring.read_cursor, 960)
    assert len(ring._buf) <= 1 << 17


def test_ring_wait_for_times_out_and_wakes_on_data() -> None:
    async def scenario() -> tuple[bool, bool]:
        ring = AudioRing(48000)
        timed_out = await ring.wait_for(1000, timeout_s=0.01)
        asyncio.get_running_loop().call_soon(ring.write, np.zeros(1000, np.float32))
        woke = await ring.wait_for(1000, timeout_s=5.0)
        return timed_out, woke

    assert asyncio.run(scenario()) == (False, True)


def test_features_separate_speech_from_room_noise() -> None:
    rng = np.random.default_rng(1)
    fx = FeatureExtractor()
    noise = [fx.process(k, 0.003 * rng.standard_normal(1000).astype(np.float32)) for k in range(96)]
    voiced = 0.2 * np.sin(2 * np.pi * 150 * np.arange(1000) / 48000).astype(np.float32)
    speech = [fx.process(96 + k, voiced + 0.003 * rng.standard_normal(1000).astype(np.float32)) for k in range(24)]
    assert max(f.voice_activity for f in noise[48:]) < 0.2
    assert min(f.voice_activity for f in speech) > 0.9
    assert speech[0].energy_db > noise[-1].energy_db + 20
