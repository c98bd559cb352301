"""The live window's length alone (engine/window_size.py): grown while renders cannot keep up, only to what the
pipeline delay's cap allows, shrunk back after a long fast run; on a fake time source."""

from __future__ import annotations

from engine.config import EngineConfig
from engine.metrics import SessionMetrics
from engine.window_size import WindowSizer


class FakeTime:
    def __init__(self) -> None:
        self.t_s = 0.0

    def __call__(self) -> float:
        return self.t_s


def sizer(longest: int | None = None, **cfg: object) -> tuple[WindowSizer, FakeTime, SessionMetrics]:
    now, metrics = FakeTime(), SessionMetrics()
    return WindowSizer(EngineConfig(**cfg), metrics, lookahead_frames=0, longest=longest, now=now), now, metrics  # type: ignore[arg-type]


def run(s: WindowSizer, now: FakeTime, start: int, seconds: float, ms_per_frame: float) -> list[int]:
    """Windows from frame `start` for `seconds` of media, each rendered at ms_per_frame; their lengths."""
    lengths, k = [], start
    while k < start + round(seconds * 48):
        n = s.length_at(k)
        assert k % n == 0, f"a window of {n} starts at frame {k}"
        lengths.append(n)
        now.t_s += n / 48
        s.rendered(n, n * ms_per_frame / 1000)
        k += n
    return lengths


def test_slow_renders_double_the_window_once_a_second_up_to_the_cap() -> None:
    s, now, metrics = sizer()
    assert run(s, now, 0, 0.9, 30.0) == [1] * 43, "a change waits a second for the estimate to settle"
    lengths = run(s, now, 43, 5.0, 18.0)  # 86% of a frame's time: still too slow at any length
    assert lengths[0] == 1 and sorted(set(lengths)) == [1, 2, 4], lengths
    # 8 would need 8 frames + 1.25 x 8 x 18 ms = 347 ms of delay, over max_pipeline_delay_s (250 ms).
    assert s.frames == 4 and metrics.window_frames == 4 and metrics.window_resizes == 2
    assert s.delay_needed_s(4) == 4 / 48 + 1.25 * 4 * s.frame_s  # type: ignore[operator]


def test_renders_slower_than_the_frame_grow_the_window_past_what_the_delay_covers() -> None:
    """A frame that costs more than its 20.8 ms is late at any delay: the longer window, its fixed cost shared by
    more frames, is the only way back, so the length grows even where its delay needs more than the cap. Windows of
    one frame at 96 ms stayed at one before (a CI host with a third of its cores taken, nearly every window
    skipped); the longer window waits at most for the cap."""
    s, now, metrics = sizer()
    lengths = run(s, now, 0, 5.0, 96.0)
    assert s.delay_needed_s(2) > s.max_delay_s and s.frames == 8 and metrics.window_resizes == 3, lengths
    assert s.room_needed_s(8) == s.max_delay_s


def test_a_fast_generator_keeps_windows_of_one_frame() -> None:
    s, now, metrics = sizer()
    assert set(run(s, now, 0, 10.0, 14.0)) == {1}, "67% of a frame's time keeps up"
    assert metrics.window_resizes == 0


def test_the_window_shrinks_after_delay_relax_s_of_fast_renders() -> None:
    s, now, metrics = sizer(delay_relax_s=5.0)
    run(s, now, 0, 3.0, 20.0)
    assert s.frames == 4
    start = 3 * 48
    assert set(run(s, now, start, 4.0, 6.0)) == {4}, "too soon to shrink"
    lengths = run(s, now, start + 4 * 48, 6.0, 5.0)  # under 35% of a frame's time
    assert lengths[-1] == 2 and metrics.window_resizes == 3, lengths
    run(s, now, start + 10 * 48, 2.0, 12.0)  # between the marks: the length stays
    assert s.frames == 2


def test_the_lengths_obey_the_config_and_the_generator() -> None:
    s, now, _ = sizer(window_frames=1, max_live_window_frames=1)
    assert set(run(s, now, 0, 4.0, 40.0)) == {1}, "max_live_window_frames = window_frames: fixed"
    s, now, _ = sizer(window_frames=3, max_live_window_frames=8, pipeline_delay_s=0.15, max_pipeline_delay_s=0.3)
    assert s.lengths == [3, 6]
    assert set(run(s, now, 0, 4.0, 18.0)) == {3, 6}
    s, now, _ = sizer(longest=2)
    assert s.lengths == [1, 2], "a generator that takes at most 2 frames a call"


def test_a_longer_window_waits_for_the_delay_to_cover_it() -> None:
    s, now, _ = sizer()
    run(s, now, 0, 0.9, 30.0)  # frames 0-42
    now.t_s += 0.2
    s.rendered(1, 0.03)  # too slow, and settled: windows of 2 from the next even frame
    asked: list[int] = []
    assert s.length_at(44, lambda n: asked.append(n) is not None) == 1 and asked == [2], "no room yet: still one"
    assert s.length_at(45, lambda n: True) == 1, "2 starts on an even frame"
    assert s.length_at(46, lambda n: True) == 2
