"""The pacer keeps 48 fps on the media clock for every sink, whatever the windows or the other sinks do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from engine.config import EngineConfig
from engine.session import AvatarSession
from streaming.pacer import Pacer
from streaming.sinks import PacedAudio, PacedFrame, Sink
from streaming.sources import PushedAudio
from streaming.stream import AvatarStream
from tests.fakes import FakeGenerator
from tests.test_session import avatar, speechlike

TONE = (0.3 * np.sin(np.arange(960) / 48000 * 2 * np.pi * 200)).astype(np.float32)


@dataclass
class Got:
    frame_index: int
    late_s: float  # handled this long after it was due
    picture: np.ndarray
    repeated: bool
    t_s: float


class Recorder(Sink):
    """Keeps everything it gets; delay_s: how long each item takes it (a slow sink); fail_at: raises there."""

    def __init__(self, name: str = "recorder", delay_s: float = 0.0, fail_at: int | None = None,
                 queue_size: int = 16, restartable: bool = False) -> None:
        self.name, self.delay_s, self.fail_at = name, delay_s, fail_at
        self.queue_size, self.restartable = queue_size, restartable
        self.frames: list[Got] = []
        self.audio: list[PacedAudio] = []
        self.audio_early_s: list[float] = []  # handed out this long before due
        self.starts = self.closes = 0

    async def start(self) -> None:
        self.starts += 1

    async def on_video(self, frame: PacedFrame) -> None:
        now = time.monotonic()
        if self.fail_at is not None and len(self.frames) == self.fail_at:
            self.fail_at = None  # once
            raise RuntimeError("this sink broke")
        self.frames.append(Got(frame.frame_index, now - (frame.due_t_s or now), frame.picture, frame.repeated, now))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)

    async def on_audio(self, chunk: PacedAudio) -> None:
        if chunk.due_t_s is not None:
            self.audio_early_s.append(chunk.due_t_s - time.monotonic())
        self.audio.append(chunk)

    async def close(self) -> None:
        self.closes += 1

    def indices(self) -> list[int]:
        return [g.frame_index for g in self.frames]

    def fps(self, skip_s: float = 0.3) -> tuple[float, float]:
        t = np.array([g.t_s for g in self.frames])
        t = t[t >= t[0] + skip_s]
        return (len(t) - 1) / (t[-1] - t[0]), t[-1] - t[0]

    def sound(self) -> np.ndarray:
        return np.concatenate([c.samples for c in self.audio])


@dataclass
class Live:
    session: AvatarSession
    pacer: Pacer
    sinks: list[Recorder] = field(default_factory=list)


async def run_live(seconds: float, sinks: list[Recorder], *, audio_lead_s: float = 0.0,
                   during: Callable[[Live], Awaitable[None]] | None = None, session: AvatarSession | None = None,
                   **cfg: object) -> Live:
    """A live session whose microphone plays a tone for `seconds`, paced to `sinks`; during(live) runs alongside."""
    session = session or AvatarSession(avatar(), EngineConfig(**cfg), live=True, session_id="p")  # type: ignore[arg-type]
    pacer = Pacer(session, audio_lead_s=audio_lead_s)
    for sink in sinks:
        pacer.add_sink(sink)
    await session.start()
    pacer.start()
    live = Live(session, pacer, sinks)

    async def mic() -> None:
        for _ in range(int(seconds * 50)):
            session.push_audio(TONE, 48000)
            await asyncio.sleep(0.02)

    await asyncio.gather(mic(), *([during(live)] if during is not None else []))
    await pacer.stop()
    await session.aclose()
    return live


def consecutive(indices: list[int]) -> bool:
    return indices == list(range(indices[0], indices[0] + len(indices)))


def test_frames_come_out_on_the_clock_in_order() -> None:
    rec = Recorder()
    live = asyncio.run(run_live(2.0, [rec]))
    assert consecutive(rec.indices())
    lateness = np.array([g.late_s for g in rec.frames])
    assert np.percentile(lateness, 95) < 0.01, f"frames handed out late: p95 {np.percentile(lateness, 95):.4f}s"
    assert live.pacer.metrics.frames_repeated <= 4  # at most one window late on a busy 2-core machine
    assert np.sqrt(np.mean(rec.sound()[len(rec.sound()) // 2 :] ** 2)) > 0.15, "the microphone's tone is not out"
    starts = [c.start_sample for c in rec.audio]
    assert starts == list(range(starts[0], starts[0] + 960 * len(starts), 960)), "audio chunks are not contiguous"


def test_late_windows_repeat_frames_and_the_stream_keeps_its_rate() -> None:

    # Rendering a 4-frame window (83 ms) takes 120 ms: the generator is always late.
    session = AvatarSession(avatar(), EngineConfig(window_frames=4, pipeline_delay_s=0.2), live=True,
                            session_id="slow", generator=FakeGenerator(avatar().size, render_delay_s=0.12))
    rec = Recorder()
    live = asyncio.run(run_live(3.0, [rec], session=session))
    assert consecutive(rec.indices()), "frame slots were skipped"
    lateness = np.array([g.late_s for g in rec.frames])
    # A missing frame waits at most the pacer's short grace, then the previous picture goes out.
    assert np.percentile(lateness, 95) < live.pacer.video_grace_s + 0.005, "a late window delayed the output"
    assert live.pacer.metrics.frames_repeated > 10
    assert sum(g.repeated for g in rec.frames) == live.pacer.metrics.frames_repeated
    # ... but the engine skips what it cannot make in time, so the picture keeps moving: the generator
    # makes 4 frames per 120 ms (33 fps), so in steady state about every other window is in time.
    steady = [not g.repeated for g in rec.frames[len(rec.frames) // 2 :]]
    assert sum(steady) > 0.3 * len(steady), f"only {sum(steady)} fresh frames of {len(steady)}"
    assert session.metrics.frames_skipped > 0
    assert live.pacer.metrics.frames_sent == len(rec.frames)
    # The sound comes from the input, not from the windows: it plays on through the late ones.
    assert np.sqrt(np.mean(rec.sound()[len(rec.sound()) // 2 :] ** 2)) > 0.15, "late windows silenced the audio"


def test_audio_is_handed_out_its_lead_before_the_picture() -> None:
    rec = Recorder()
    asyncio.run(run_live(1.5, [rec], audio_lead_s=0.021))
    early = np.array(rec.audio_early_s[10:])
    assert np.median(early) > 0.015, f"audio handed out {np.median(early) * 1000:.1f} ms before due"
    assert np.sqrt(np.mean(rec.sound()[len(rec.sound()) // 2 :] ** 2)) > 0.15, "the lead cost the microphone's tone"


def test_two_sinks_see_the_same_frames() -> None:
    a, b = Recorder("a"), Recorder("b")
    live = asyncio.run(run_live(1.5, [a, b]))
    assert a.indices() == b.indices() and len(a.frames) > 48
    assert all(x.picture is y.picture for x, y in zip(a.frames, b.frames, strict=True))
    assert [c.start_sample for c in a.audio] == [c.start_sample for c in b.audio]
    names = live.pacer.sinks.sink_metrics()
    assert names["a"]["frames"] == names["b"]["frames"] == len(a.frames)


def test_a_failing_sink_is_removed_and_the_others_keep_48fps() -> None:
    steady, broken, flaky = Recorder("steady"), Recorder("broken", fail_at=10), Recorder(
        "flaky", fail_at=20, restartable=True)
    live = asyncio.run(run_live(4.0, [broken, steady, flaky]))
    assert consecutive(steady.indices()), "the steady sink lost frames"
    fps, span_s = steady.fps()
    assert span_s >= 3.0 and fps >= 45.0, f"the steady sink got {fps:.1f} fps over {span_s:.1f} s"
    metrics = live.pacer.sinks.sink_metrics()
    assert len(broken.frames) == 10 and broken.closes == 1
    assert metrics["broken"]["failures"] == 1 and "this sink broke" in str(metrics["broken"]["error"])
    assert all(o.sink is not broken for o in live.pacer.sinks.outlets)
    # A sink that may be restarted is closed, started again, and carries on with what comes next.
    assert flaky.starts == 2 and metrics["flaky"]["restarts"] == 1 and metrics["flaky"]["error"] is None
    assert len(flaky.frames) > 0.9 * len(steady.frames)


def test_a_slow_sink_loses_its_oldest_frames_and_the_clock_keeps_time() -> None:
    fast, slow = Recorder("fast"), Recorder("slow", delay_s=0.1, queue_size=4)
    behind: list[int] = []

    async def watch(live: Live) -> None:
        assert live.session.clock is not None
        for _ in range(100):  # how far behind the clock the slow sink's newest frame is
            await asyncio.sleep(0.03)
            if slow.frames:
                behind.append(live.session.clock.frame_now() - slow.frames[-1].frame_index)

    live = asyncio.run(run_live(3.0, [slow, fast], during=watch))
    assert consecutive(fast.indices())
    lateness = np.array([g.late_s for g in fast.frames])
    assert np.percentile(lateness, 95) < 0.01, "the slow sink held up the others"
    metrics = live.pacer.sinks.sink_metrics()
    assert metrics["slow"]["dropped"] > 50 and metrics["fast"]["dropped"] == 0
    assert len(slow.frames) < 0.3 * len(fast.frames)
    # Its queue holds 4 items (pictures and sound, ~100 a second): what it shows is never far behind.
    assert max(behind[10:]) <= 12, f"the slow sink fell {max(behind)} frames behind"


def test_sinks_join_and_leave_while_running() -> None:
    first, joiner = Recorder("first"), Recorder("joiner")
    joined_at: list[int] = []

    async def join_and_leave(live: Live) -> None:
        assert live.session.clock is not None
        await asyncio.sleep(0.8)
        joined_at.append(live.session.clock.frame_now())
        live.pacer.add_sink(joiner)
        await asyncio.sleep(0.8)
        await live.pacer.remove_sink(joiner)
        joined_at.append(live.session.clock.frame_now())

    asyncio.run(run_live(2.5, [first], during=join_and_leave))
    assert consecutive(joiner.indices()) and joiner.starts == 1 and joiner.closes == 1
    assert abs(joiner.frames[0].frame_index - joined_at[0]) <= 2, "the joiner did not start at the frame due"
    assert abs(joiner.frames[-1].frame_index - joined_at[1]) <= 2, "frames went on after the sink was removed"
    assert set(joiner.indices()) <= set(first.indices()) and len(first.frames) > len(joiner.frames) + 48


def test_offline_delivers_every_frame_in_order_to_every_sink() -> None:
    async def render() -> tuple[AvatarStream, Recorder, Recorder]:
        stream = AvatarStream(AvatarSession(avatar(), EngineConfig(), live=False, session_id="offline"))
        slow, tiny = Recorder("slow", delay_s=0.005), Recorder("tiny", queue_size=1)
        stream.add_sink(slow)
        stream.add_sink(tiny)
        await stream.start()
        pushed = PushedAudio()
        pushed.push(speechlike(2.0), 48000)
        stream.add_source(pushed)
        pushed.end()
        await asyncio.wait_for(stream.wait(), 60)
        await stream.close()
        return stream, slow, tiny

    stream, slow, tiny = asyncio.run(render())
    for sink in (slow, tiny):
        assert sink.indices() == list(range(96)), "an offline sink lost or reordered frames"
        starts = [c.start_sample for c in sink.audio]
        assert starts == list(range(0, 96_000, 960)) and len(sink.sound()) == 96_000
        assert sink.closes == 1
    metrics = stream.pacer.sinks.sink_metrics()
    assert metrics["slow"]["dropped"] == metrics["tiny"]["dropped"] == 0
    assert np.abs(slow.sound() - speechlike(2.0)).max() < 1e-4, "the sound is not the input's"
