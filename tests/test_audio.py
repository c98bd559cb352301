"""Audio front end: resampling, ingest, the media-clock ring buffer, per-frame features."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import numpy as np
import pytest

from engine.audio.anchor import LiveAnchor
from engine.audio.features import FeatureExtractor
from engine.audio.ingest import AudioIngest
from engine.audio.resample import Resampler, resample
from engine.audio.ring import AudioRing
from engine.audio.visemes import VOWELS
from engine.types import FPS, SAMPLE_RATE_HZ, SAMPLES_PER_FRAME, FeatureFrame
from tests.conftest import espeak


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


def test_resampling_in_chunks_equals_resampling_at_once_across_a_rate_change() -> None:
    """The filter state carries over chunk boundaries, and a new input rate first empties the old filter."""
    rng = np.random.default_rng(0)
    a, b = (0.1 * rng.standard_normal(n).astype(np.float32) for n in (22050, 16000))  # 1 s each
    resampler = Resampler(SAMPLE_RATE_HZ)
    out = [resampler.push(a[i : i + 441], 22050) for i in range(0, len(a), 441)]
    out += [resampler.push(b[i : i + 320], 16000) for i in range(0, len(b), 320)]
    out.append(resampler.flush())
    assert len(out[0]) < 960, "the filter holds some samples back"
    np.testing.assert_array_equal(np.concatenate(out), np.concatenate([resample(a, 22050), resample(b, 16000)]))
    assert len(np.concatenate(out)) == 2 * SAMPLE_RATE_HZ
    np.testing.assert_array_equal(Resampler(SAMPLE_RATE_HZ).push(a, SAMPLE_RATE_HZ), a)  # no filter, no delay


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


def per_frame(fx: FeatureExtractor, audio: np.ndarray) -> list[FeatureFrame]:
    """The features of each whole video frame of `audio`, in order, as a session computes them."""
    n = len(audio) // SAMPLES_PER_FRAME
    return [fx.process(k, audio[k * SAMPLES_PER_FRAME : (k + 1) * SAMPLES_PER_FRAME]) for k in range(n)]


def test_features_separate_speech_from_room_noise() -> None:
    rng = np.random.default_rng(1)
    speech = espeak("Good evening, this is our new camera.")
    audio = np.concatenate([np.zeros(2 * SAMPLE_RATE_HZ, np.float32), speech])
    audio += 0.003 * rng.standard_normal(len(audio))
    fx = FeatureExtractor()
    frames = per_frame(fx, audio)
    noise, talk = frames[FPS : 2 * FPS], frames[2 * FPS :]
    assert max(f.voice_activity for f in noise) < 0.2
    loud = [f for f in talk if f.energy_db > -30]
    assert len(loud) > 30
    assert np.mean([f.voice_activity > 0.5 for f in loud]) > 0.9
    assert np.mean([f.pitch_hz > 60 for f in loud]) > 0.7


def test_visemes_tell_the_open_vowels_apart_across_languages() -> None:
    """Vowels spoken alone in Spanish and Korean land on their own viseme."""
    for voice, vowels in (("es", ("a", "i", "u", "e", "o")), ("ko", ("아", "이", "우", "에", "오"))):
        fx = FeatureExtractor()
        # Calibrate the running mean on a sentence first, as a live stream would.
        warm = espeak("hola, buenos dias a todos" if voice == "es" else "안녕하세요 여러분", voice)
        per_frame(fx, warm)
        for expected, text in zip(VOWELS, vowels, strict=True):
            frames = per_frame(fx, espeak(text, voice))
            voiced = [f.visemes for f in frames if f.voice_activity > 0.5 and f.energy_db > -30]
            assert voiced, f"{voice} {text}: no voiced frames"
            winner = VOWELS[int(np.argmax(np.mean(voiced, axis=0)))]
            assert winner == expected, f"{voice} {text!r}: heard {winner}, expected {expected}"


def test_live_audio_goes_where_it_belongs_on_the_clock() -> None:
    ring = AudioRing(max_backlog_samples=48000)
    ring.read(0, 5000)  # the reader already took silence for the first 5000 samples
    # The microphone starts late: its first chunk belongs where it arrives on the clock.
    ring.write(np.ones(960, np.float32), at=9000)
    assert ring.write_cursor == 9960
    chunk, missing = ring.read(5000, 4000)
    assert missing == 0 and not chunk.any(), "the skipped span must read as silence"
    # A resampler's few extra samples keep the stream contiguous ...
    ring.write(np.full(960, 2.0, np.float32), at=9960 + 100)
    assert ring.write_cursor == 9960 + 960
    # ... a chunk that belongs 500 samples earlier loses its overlapping head, counted.
    assert ring.write(np.full(960, 3.0, np.float32), at=9960 + 960 - 500) == 500
    assert ring.write_cursor == 9960 + 960 + 460


def _packets(arrivals: list[int], n: int = 960) -> list[int]:
    """Where a LiveAnchor places 20 ms packets with pts 0, 960, ... whose last samples arrive at `arrivals`."""
    anchor = LiveAnchor()
    return [anchor.place(n, arrived, pts=i * n, time_base=Fraction(1, 48000)) for i, arrived in enumerate(arrivals)]


def test_packets_queued_at_start_add_no_lasting_delay() -> None:
    """Ten packets queued while the session started arrive at once; later ones arrive on time. The
    anchor ends up at the least delayed arrivals: nothing of the start-up queue stays as delay."""
    t0 = 100_000
    arrivals = [t0] * 10 + [t0 + 960 * i for i in range(1, 40)]
    at = _packets(arrivals)
    prompt = [a - 960 for a in arrivals[10:]]  # where an on-time packet belongs: it arrived as it ended
    assert at[10:] == prompt


def test_a_stall_keeps_later_audio_in_its_place() -> None:
    """Packets 20-24 are held up 100 ms (a busy event loop) and come together: they, and every packet
    after them, keep their place by pts; the stall costs slack, not lasting delay."""
    arrivals = [50_000 + 960 * i for i in range(60)]
    for i in range(20, 25):
        arrivals[i] = max(arrivals[i], 50_000 + 960 * 24 + 4800)
    at = _packets(arrivals)
    assert at == [50_000 + 960 * (i - 1) for i in range(60)]


def test_rtp_timestamps_that_wrap_keep_counting() -> None:
    anchor = LiveAnchor()
    start = (1 << 32) - 960 * 3
    at = [anchor.place(960, 10_000 + 960 * i, pts=(start + 960 * i) % (1 << 32), time_base=Fraction(1, 48000))
          for i in range(8)]
    assert np.diff(at).tolist() == [960] * 7


def test_lost_packets_become_silence_and_later_audio_keeps_its_place() -> None:
    """Frames as aiortc delivers them (s16 stereo, 960 samples, pts in 1/48000): one is lost."""
    import av

    from engine.config import EngineConfig
    from engine.generator import prepare_avatar
    from engine.session import AvatarSession

    session = AvatarSession(prepare_avatar(), EngineConfig(), live=False)
    for i in (0, 1, 3):  # frame 2 never arrives
        pcm = np.full((1, 960 * 2), 1000 * (i + 1), np.int16)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * 960
        frame.time_base = Fraction(1, 48000)
        session.push_audio_frame(frame)
    assert session.metrics.audio_samples_lost == 960
    audio, missing = session.ring.read(0, 4 * 960)
    assert missing == 0
    np.testing.assert_allclose(audio[2 * 960 : 3 * 960], 0.0)
    np.testing.assert_allclose(audio[3 * 960 :], 4000 / 32768, rtol=1e-3)


def test_drift_between_sender_and_clock_is_bounded_and_counted() -> None:
    """A live sender 2% fast loses only its excess; one 2% slow gets silence in its gaps; the
    reader's clock never moves."""
    for speed, expect_drop in ((1.02, True), (0.98, False)):
        ring, anchor = AudioRing(max_backlog_samples=9600), LiveAnchor()
        arrival = 0
        for step in range(1500):  # 30 s of 20 ms reads
            sent = int(960 * speed)
            arrival += 960  # arrivals follow the receiver's clock; the sender packs more or fewer samples
            ring.write(np.ones(sent, np.float32), at=anchor.place(sent, arrival))
            if step >= 5:
                ring.read((step - 5) * 960, 960)
        assert ring.read_cursor == (1500 - 5) * 960
        assert (ring.dropped_samples > 0) == expect_drop
        assert ring.backlog_samples <= 9600


def test_pushed_audio_faster_than_real_time_is_played_on_the_clock_not_dropped() -> None:
    from engine.config import EngineConfig
    from engine.generator import prepare_avatar
    from engine.session import AvatarSession

    speech = espeak("Three new colours, all in stock today.")

    async def scenario() -> tuple[list[tuple[int, np.ndarray]], AvatarSession, float]:
        session = AvatarSession(prepare_avatar(), EngineConfig(), live=True, session_id="tts")
        await session.start()
        session.push_audio(speech, SAMPLE_RATE_HZ)  # the whole utterance at once, as TTS delivers it
        out, t0 = [], asyncio.get_running_loop().time()
        async for w in session.windows():
            out.append((w.start_frame, w.audio))
            if w.start_frame * SAMPLES_PER_FRAME + len(w.audio) >= len(speech):
                break
        elapsed = asyncio.get_running_loop().time() - t0
        await session.aclose()
        return out, session, elapsed

    out, session, elapsed = asyncio.run(scenario())
    assert session.metrics.audio_samples_dropped == 0
    # Each window carries the utterance's own samples at its place on the clock. (A window that a loaded machine
    # could not render in time is skipped, with its picture: the pacer plays its sound from the input, not from
    # the windows (streaming/pacer.py), so only the windows rendered are compared.)
    padded = np.concatenate([speech, np.zeros(len(out[-1][1]), np.float32)])
    for start_frame, audio in out:
        at = start_frame * SAMPLES_PER_FRAME
        np.testing.assert_array_equal(audio, padded[at : at + len(audio)], err_msg=f"window at frame {start_frame}")
    shown = sum(len(a) for _, a in out)
    assert shown + session.metrics.frames_skipped * SAMPLES_PER_FRAME >= len(speech)
    assert shown >= len(speech) // 2, f"most windows skipped: {session.metrics.frames_skipped} frames"
    assert elapsed > 0.8 * len(speech) / SAMPLE_RATE_HZ, "pushed audio must play on the clock, not as fast as it came"


def test_prosody_finds_speech_pauses_and_stressed_syllables() -> None:
    from engine.audio.prosody import analyse

    fx = FeatureExtractor()
    quiet = np.zeros(24000, np.float32)
    # Two phrases with a half-second pause; the second word of the second is shouted.
    a, b, c = espeak("we have three colours"), espeak("and"), espeak("TODAY") * 2.5
    audio = np.concatenate([quiet, a, quiet, b, np.zeros(4800, np.float32), np.clip(c, -1, 1), quiet])
    frames = per_frame(fx, audio)
    p = analyse(frames)
    assert p.pauses >= 1 and p.longest_pause_s >= 0.4
    assert 3.0 < p.syllables_per_s < 6.0  # 8 syllables in 1.85 s of voiced frames: 4.3 a second
    assert not p.speaking  # it ends in silence
    shout_start = (len(audio) - len(quiet) - len(c)) // SAMPLES_PER_FRAME
    assert p.stressed_frames and all(k >= shout_start - 2 for k in p.stressed_frames[-1:])
    assert "pauses" in p.summary()
