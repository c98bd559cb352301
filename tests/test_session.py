"""The engine session through its public API: push audio, iterate rendered windows."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from functools import cache
from itertools import pairwise

import numpy as np
import pytest

from engine.config import EngineConfig
from engine.generator import PreparedAvatar, prepare_avatar
from engine.session import AvatarSession
from engine.types import Control
from streaming.loop_monitor import LoopLag, LoopMonitor
from tests.conftest import espeak
from tests.fakes import FakeDirector, FakeGenerator, frame_index_of


@cache
def avatar() -> PreparedAvatar:
    return prepare_avatar()


def speechlike(seconds: float) -> np.ndarray:
    """Syllable-rate amplitude bursts on a voiced tone: loud and quiet parts, 48 kHz."""
    t = np.arange(int(seconds * 48000)) / 48000
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None)
    return (0.3 * envelope * np.sin(2 * np.pi * 160 * t)).astype(np.float32)


async def render_offline(audio: np.ndarray, rate_hz: int = 48000, generator: FakeGenerator | None = None,
                         director: FakeDirector | None = None, **cfg: object) -> tuple[list, AvatarSession]:
    session = AvatarSession(avatar(), EngineConfig(**cfg), live=False,  # type: ignore[arg-type]
                            generator=generator, director=director)
    await session.start()
    for i in range(0, len(audio), 4096):
        session.push_audio(audio[i : i + 4096], rate_hz)
    session.end_input()
    windows = [w async for w in session.windows()]
    await session.aclose()
    return windows, session


def test_offline_windows_are_contiguous_and_carry_the_exact_audio() -> None:
    audio = speechlike(1.3)
    windows, session = asyncio.run(render_offline(audio, offline_window_frames=4))
    starts = [w.start_frame for w in windows]
    assert starts == list(range(0, 63, 4))[: len(windows)]
    frames = sum(w.n_frames for w in windows)
    assert frames == int(np.ceil(len(audio) / 1000))
    out = np.concatenate([w.audio for w in windows])
    np.testing.assert_array_equal(out[: len(audio)], audio)
    assert not out[len(audio) :].any()
    assert session.metrics.audio_samples_filled == 0
    assert windows[0].frames_rgb.shape[1:] == (512, 512, 3)


def test_window_seams_are_no_rougher_than_inside_windows() -> None:
    speech = espeak("Welcome back everyone. Let me show you three new colours and tell you the price.")
    windows, _ = asyncio.run(render_offline(speech, offline_window_frames=4))
    frames = np.concatenate([w.frames_rgb for w in windows]).astype(np.float32)
    diffs = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    seam = np.array([(i + 1) % 4 == 0 for i in range(len(diffs))])
    assert diffs[seam].mean() <= 1.1 * diffs[~seam].mean() + 1e-3


def test_silence_leaves_the_portrait_still_and_speech_moves_it() -> None:
    audio = np.concatenate([np.zeros(2 * 48000, np.float32), speechlike(1.0)])
    windows, _ = asyncio.run(render_offline(audio))
    frames = np.concatenate([w.frames_rgb for w in windows]).astype(np.float32)
    change = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    # The idle layer fades in over the first second (engine/idle.py: no jump from the photo's pose), so the
    # silence is judged in the second second, once idle motion is all there is. Idle breathing and sway are meant
    # to show, and the speaking jaw is conversational (peaks near 0.55): speech moves the picture 4.9x as much.
    assert change[96:].mean() > 4 * change[56:88].mean()


def test_live_session_keeps_rendering_on_the_clock_without_any_input() -> None:
    """No microphone audio at all: windows still come, on time, and the missing audio is counted."""

    async def scenario() -> tuple[list[tuple[int, float]], AvatarSession, int]:
        session = AvatarSession(avatar(), EngineConfig(), live=True, session_id="t")
        await session.start()
        assert session.clock is not None
        got = []
        async for w in session.windows():
            got.append((w.start_frame, w.n_frames, time.monotonic() - session.clock.frame_due_s(w.start_frame)))
            if w.start_frame + w.n_frames > 95:  # 2 s of video (windows of one frame, longer if renders are slow)
                break
        await session.aclose()
        return got, session, session.clock.frame_now()

    got, session, closed_at = asyncio.run(scenario())
    frames = [k + i for k, n, _ in got for i in range(n)]
    # Frame 95 itself may have been skipped: the loop then ends on the first window after it.
    assert frames == sorted(set(frames)) and frames[-1] >= 95, frames
    # A window that cannot be ready when due is skipped (the pacer repeats a frame): counted, never silent. The render
    # stage runs ahead of this reader (a queue between them): by the time the session closed it may have skipped
    # windows past the last one read, as late as the clock then was plus its lead (a loaded CI run counted 41 against
    # the 39 read), never more.
    skipped = frames[-1] + 1 - len(frames)
    assert skipped <= session.metrics.frames_skipped <= skipped + max(0, closed_at + 12 - frames[-1]), (
        session.metrics.frames_skipped, skipped, closed_at, frames[-1])
    lateness = np.array([late for _, _, late in got])
    # A late or skipped window costs repeated frames (counted), never the stream. How many a machine misses is its
    # speed, a benchmark's matter (benchmarks/): a shared 2-core CI machine skipped 8 (the others ~12 ms early), one
    # half as fast had 7 late and 7 skipped, and a full suite run on 2026-12-01 15 skipped and 17 late by 0-13 ms.
    # What the test holds is that the session keeps the clock: a stalled stream skips all of them, so at most three
    # quarters (a CI run on 2026-12-03, the hypervisor taking a third of the cores, skipped 40 and had 21 late).
    report = f"{skipped} skipped; finished after due: {np.round(lateness, 3)}"
    assert (lateness > 0).sum() + skipped <= 72, report
    # The typical window is ready within half a frame of its due time (before it, on a machine of its own). A shared
    # machine once stalled one window by 110 ms: a few such stalls are the machine's, many are the session's.
    assert np.median(lateness) < 0.5 / 48, report
    assert (lateness >= 2 / 48).sum() <= 3, report
    assert session.metrics.audio_samples_filled >= 90 * 1000


def test_a_quiet_microphone_does_not_ratchet_the_delay_up() -> None:
    """Without input audio every window waits for it until the last moment, whatever the delay; a slow
    render then makes windows late, but more delay would not have helped, so none is added. (A late
    window whose audio was there does add a frame: tests/test_delay_control.py.)"""

    async def scenario() -> AvatarSession:
        # Slower than render_reserve_s (20 ms): the first windows miss their time.
        generator = FakeGenerator(avatar().size, render_delay_s=0.03)
        # Windows of one frame throughout: a longer window (engine/window_size.py) would raise the delay for itself.
        session = AvatarSession(avatar(), EngineConfig(max_live_window_frames=1), live=True, session_id="q",
                                generator=generator)
        await session.start()
        count = 0
        async for _ in session.windows():
            count += 1
            if count == 48:
                break
        await session.aclose()
        return session

    session = asyncio.run(scenario())
    assert session.metrics.windows_late + session.metrics.frames_skipped >= 1, "nothing was late: proves nothing"
    assert session.metrics.pipeline_delay_raises == 0
    assert session.clock is not None and session.clock.delay_s == EngineConfig().pipeline_delay_s


def test_a_generator_too_slow_for_one_frame_windows_gets_longer_ones_and_keeps_up() -> None:
    """A render call costs 26 ms whatever its length (the rig's fixed cost; a frame is due every 20.8 ms): windows
    of one frame fall behind, so the session doubles them (engine/window_size.py) and then keeps up. Each window
    starts on a multiple of its length, and the windows tile the frames in order."""

    async def scenario() -> tuple[list[tuple[int, int, float]], AvatarSession]:
        generator = FakeGenerator(avatar().size, render_delay_s=0.026)
        session = AvatarSession(avatar(), EngineConfig(), live=True, session_id="s", generator=generator)
        await session.start()
        assert session.clock is not None
        got = []
        async for w in session.windows():
            got.append((w.start_frame, w.n_frames, time.monotonic() - session.clock.frame_due_s(w.start_frame)))
            if w.start_frame >= 5 * 48:
                break
        await session.aclose()
        return got, session

    got, session = asyncio.run(scenario())
    assert session.metrics.window_resizes >= 1 and session.window_frames >= 2, session.metrics
    assert all(k % n == 0 for k, n, _ in got), got
    assert all(k + n <= k2 for (k, n, _), (k2, _, _) in pairwise(got)), "windows overlap or go back"
    # After the change has settled (a second, then up to two more while the delay grows a frame a second to cover
    # it), the frames of the last 1.5 s are rendered, typically before they are due. Windows without input audio wait
    # for it until due - lead_s() and then take 26 ms, so they are ready only a few ms early: a full suite run on the
    # shared machine had one 1.6 ms late, and a starved process skips some (under two CPU burners on these 2 cores,
    # 22-28 of the 72 frames). With windows of one frame 36 are skipped, unloaded.
    last = [(k, n, late) for k, n, late in got if k >= got[-1][0] - 72]
    skipped = got[-1][0] + got[-1][1] - last[0][0] - sum(n for _, n, _ in last)
    # 30: 18 on a CI run with a third of the cores taken by the hypervisor; windows of one frame skip 36, unloaded.
    assert skipped <= 30, f"{skipped} frames skipped: {last}"
    lateness = np.array([late for _, _, late in last])
    # A window stalled by the machine now and then is the machine's (a loaded CI run: one 55 ms late, the median 9 ms
    # early); the session's own lateness is the typical window's.
    assert np.median(lateness) < 0.5 / 48 and (lateness >= 2 / 48).sum() <= 2, last


def test_storyline_blinks_close_the_eyes() -> None:
    windows, session = asyncio.run(render_offline(np.zeros(48000 * 6, np.float32), seed=3))
    assert session.metrics.director_plans >= 4
    lm = avatar().landmarks
    # Luma in a box over the left eye: lids (skin) are brighter than the iris and lashes.
    x0, x1 = int(lm[33, 0]), int(lm[133, 0])
    y0, y1 = int(lm[159, 1]) - 1, int(lm[145, 1]) + 1
    frames = np.concatenate([w.frames_rgb for w in windows])
    eye = frames[:, y0:y1, x0:x1].astype(np.float32).mean(axis=(1, 2, 3))
    open_level = eye[0]
    assert (eye > open_level + 8).sum() >= 3, "no blink in 6 s"


def test_host_commands_reach_the_picture_within_half_a_second() -> None:
    """A live session: 'smile' arrives, and the mouth corners move in frames due < 0.5 s later."""

    async def scenario() -> tuple[list, int]:
        session = AvatarSession(avatar(), EngineConfig(), live=True, session_id="cmd")
        await session.start()
        assert session.clock is not None
        windows = []
        command_frame = -1
        async for w in session.windows():
            windows.append(w)
            if len(windows) == 12 and command_frame < 0:  # 1 s in: the host asks for a smile
                session.instruct("big smile please")
                command_frame = session.clock.frame_now()
            if len(windows) == 30:
                break
        await session.aclose()
        return windows, command_frame

    windows, command_frame = asyncio.run(scenario())
    frames = {w.start_frame + i: f for w in windows for i, f in enumerate(w.frames_rgb)}
    lm = avatar().landmarks
    x0, x1 = int(lm[61, 0]) - 6, int(lm[291, 0]) + 6  # mouth, corners included
    y0, y1 = int(lm[13, 1]) - 10, int(lm[14, 1]) + 8
    # The last picture before the command (on a loaded machine the frame just before may have been skipped).
    before = frames[max(k for k in frames if k < command_frame)][y0:y1, x0:x1].astype(np.float32)
    changed = [k for k in sorted(frames) if k >= command_frame
               and np.abs(frames[k][y0:y1, x0:x1].astype(np.float32) - before).mean() > 2.0]
    assert changed, "the smile never showed"
    print(f"smile visible {(changed[0] - command_frame) / 48:.3f} s after the command")
    assert (changed[0] - command_frame) / 48 < 0.5, f"the smile showed {(changed[0] - command_frame) / 48:.2f} s later"


async def jittery_mic(session: AvatarSession, seconds: float, late_every: int, late_s: float,
                      jitter_until_s: float = float("inf")) -> list[int]:
    """A live microphone: 20 ms frames (pts in 1/48000), every `late_every`-th one delivered late_s late
    and the ones behind it held up with it (a delay spike; the jitter buffer keeps their order).
    Returns audio_frames_late as it stood after each second."""
    import av

    t0, late_per_second = time.monotonic(), []
    pending: list[tuple[float, av.AudioFrame]] = []
    for i in range(int(seconds * 50)):
        frame = av.AudioFrame.from_ndarray(np.full((1, 960), 3000, np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, i * 960, Fraction(1, 48000)
        late = i % late_every == 0 and i * 0.02 < jitter_until_s
        due = t0 + (i + 1) * 0.02 + (late_s if late else 0.0)
        pending.append((max(due, pending[-1][0]) if pending else due, frame))
    for when, frame in pending:
        await asyncio.sleep(max(0.0, when - time.monotonic()))
        session.push_audio_frame(frame)
        if len(late_per_second) < int(when - t0):
            late_per_second.append(session.metrics.audio_frames_late)
    return late_per_second


def test_a_session_whose_audio_comes_late_raises_its_delay_until_it_is_in_time() -> None:
    """Every fifth microphone packet is 45 ms late, more than the default delay leaves for it: those
    frames would get silence. The session adds frames of delay until they are in time; with the
    delay held fixed they keep missing. The generator is a fake that renders at once: a real one on a busy
    machine runs late windows of its own, which raise the delay too and keep it from coming back (a CI
    machine half as fast as ours did), and this test is about the audio (test_renderer has the late windows)."""

    stalls = LoopMonitor(period_s=0.002)  # how late this event loop wakes (a loaded machine stalls it)

    async def scenario(jitter_until_s: float = float("inf"), seconds: float = 6.0,
                       **cfg: object) -> tuple[list[int], AvatarSession]:
        session = AvatarSession(avatar(), EngineConfig(**cfg), live=True, session_id="j",  # type: ignore[arg-type]
                                generator=FakeGenerator(avatar().size))
        stalls.lag = LoopLag()
        stalls.start()
        await session.start()
        consumer = asyncio.create_task(drain(session))
        late = await jittery_mic(session, seconds, late_every=5, late_s=0.045, jitter_until_s=jitter_until_s)
        consumer.cancel()
        await session.aclose()
        await stalls.stop()
        return late, session

    async def drain(session: AvatarSession) -> None:
        async for _ in session.windows():
            pass

    late, session = asyncio.run(scenario())
    raised = session.metrics.pipeline_delay_raises
    assert raised >= 1 and session.clock is not None
    assert session.clock.delay_s == pytest.approx(EngineConfig().pipeline_delay_s + raised / 48)
    assert late[-1] == late[-3], f"audio still late after adapting: {late}"
    # The control: 4 s is enough to see a fixed delay still missing in its 4th second (a late packet each 0.1 s).
    fixed, _ = asyncio.run(scenario(seconds=4.0, max_pipeline_delay_s=EngineConfig().pipeline_delay_s))
    assert len(fixed) >= 3, fixed
    assert fixed[-1] > fixed[-3], f"a fixed delay was enough, the test proves nothing: {fixed}"

    # The congestion passes after 2 s: with 2 s to relax, the frames of delay come back, and no window is due before
    # it is rendered by as much as half a frame beyond the event loop's own longest stall in the run (giving back a
    # frame of delay wrongly would leave one a frame late; loaded CI runs had windows 2.8, 12.9 and 17.0 ms late
    # with this fake generator, which renders at once: the loop's stalls). 8 s after the congestion, not 4: each
    # frame given back takes 2 s of windows all early, and a loaded CI run raised the delay twice and gave none back
    # in 4 s (a window 10 ms late there restarted the 2 s).
    late, relaxed = asyncio.run(scenario(jitter_until_s=2.0, seconds=10.0, delay_relax_s=2.0))
    # (On that loaded host a frame of the delay can still stand at the end: given back is what this holds.)
    m = relaxed.metrics
    assert m.pipeline_delay_raises >= 1 and m.pipeline_delay_lowers >= 1, m
    assert relaxed.clock is not None and relaxed.clock.delay_s == pytest.approx(
        EngineConfig().pipeline_delay_s + (m.pipeline_delay_raises - m.pipeline_delay_lowers) / 48)
    assert late[-1] == late[-3], late
    stall_ms = stalls.lag.lag_ms_max
    assert relaxed.metrics.window_slack_ms_min > -1000.0 / 48 / 2 - stall_ms, (stall_ms, relaxed.metrics)


def test_injected_backends_render_every_window_and_plan_the_show() -> None:
    """A session built with a fake generator and director: every frame comes from the generator it
    was given, each window from the previous one's last frame, and the director plans on schedule."""
    generator, director = FakeGenerator(avatar().size, patterned=True), FakeDirector()
    windows, session = asyncio.run(render_offline(speechlike(3.0), generator=generator, director=director))
    assert [frame_index_of(f) for w in windows for f in w.frames_rgb] == [k % 256 for k in range(144)]
    rendered = generator.windows[2:]  # after the two warm-up windows
    assert [w.start_frame for w in rendered] == [w.start_frame for w in windows]
    assert [c.frame_index for c in generator.conditions[3:]] == [w.start_frame - 1 for w in rendered[1:]]
    # The first plan is the fallback's; the director is asked every replan_interval_s of progress after.
    starts = [c.from_frame for c in director.contexts]
    assert len(starts) >= 1 and starts[0] >= 48 and all(b - a >= 48 for a, b in pairwise(starts))
    assert session.metrics.director_plans == director.calls and director.closed
    assert all(c.prosody is not None and c.to_frame - c.from_frame == 4 * 48 for c in director.contexts)


def test_a_failing_director_loses_neither_the_picture_nor_the_host_command() -> None:
    """Every model call fails: the windows keep coming, and a host's "smile" reaches the rig through
    the rule fallback."""

    async def scenario() -> tuple[int, list[float], AvatarSession]:
        generator = FakeGenerator(avatar().size)
        director = FakeDirector([RuntimeError("the model is down")] * 100)
        session = AvatarSession(avatar(), EngineConfig(), live=False, generator=generator, director=director)
        await session.start()
        session.instruct("big smile please")
        session.push_audio(np.zeros(3 * 48000, np.float32), 48000)
        session.end_input()
        windows = [w async for w in session.windows()]
        await session.aclose()
        assert director.contexts[0].new_instructions == ["big smile please"]
        return len(windows), [float(w.controls[:, Control.SMILE].max()) for w in generator.windows[2:]], session

    n_windows, smiles, session = asyncio.run(scenario())
    assert n_windows == len(smiles) == 3 * 48 // EngineConfig().offline_window_frames
    assert session.metrics.director_failures >= 1 and session.metrics.director_plans == 0
    assert session.metrics.director_fallbacks >= 1
    assert max(smiles) > 0.3, f"the smile never reached the rig: {np.round(smiles, 2)}"
