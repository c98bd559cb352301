"""Renders in processes of their own (engine/render_process.py): the same pictures as in a thread, and a
render process that dies or fails costs one window, not the session or the server."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from engine.config import EngineConfig
from engine.generator import avatar_identity, generator_for, prepare_avatar
from engine.generator.warp import WarpGenerator
from engine.render_process import ProcessGenerator, RenderProcessError, RenderProcessPool
from engine.types import N_CONTROLS, Control, FirstFrame, MotionWindow
from tests.test_faults import live_stream


@pytest.fixture(scope="module")
def avatar():
    return prepare_avatar()


@pytest.fixture(scope="module")
def pool() -> Iterator[RenderProcessPool]:
    pool = RenderProcessPool(2)
    yield pool
    pool.close()


def remote(avatar, pool: RenderProcessPool) -> ProcessGenerator:
    return ProcessGenerator("warp", avatar, 1, avatar_identity(avatar), pool)


def speech_windows(sizes: list[int]) -> list[MotionWindow]:
    windows, start = [], 0
    rng = np.random.default_rng(3)
    for n in sizes:
        controls = np.zeros((n, N_CONTROLS), np.float32)
        controls[:, Control.JAW_OPEN] = rng.uniform(0.0, 0.9, n)
        controls[:, Control.BLINK_LEFT] = controls[:, Control.BLINK_RIGHT] = rng.uniform(0.0, 1.0, n) > 0.7
        controls[:, Control.HEAD_YAW] = rng.uniform(-6.0, 6.0, n)
        windows.append(MotionWindow(start, controls, np.zeros(n * 1000, np.float32)))
        start += n
    return windows


def render_all(generator, windows: list[MotionWindow]) -> list:
    condition: FirstFrame = generator.first_frame()
    out = []
    for window in windows:
        rendered, condition = generator.render(window, condition)
        out.append(rendered)
    return out


def test_a_render_process_gives_the_same_pictures_as_a_thread(avatar, pool: RenderProcessPool) -> None:
    windows = speech_windows([1, 1, 4, 8, 1])  # longer windows after short ones: the shared segment grows
    local, far = WarpGenerator(avatar), remote(avatar, pool)
    for alpha in (False, True):
        local.emit_alpha = far.emit_alpha = alpha
        for a, b in zip(render_all(local, windows), render_all(far, windows), strict=True):
            assert a.start_frame == b.start_frame and a.n_frames == b.n_frames
            assert np.array_equal(a.frames_rgb, b.frames_rgb)
            assert np.array_equal(a.frames_i420, b.frames_i420)
            assert np.array_equal(a.audio, b.audio)
            assert (b.alpha_frames is not None) == alpha
            if alpha:
                assert np.array_equal(a.alpha_frames, b.alpha_frames)
            assert b.render_ms > 0


def test_a_render_process_that_dies_costs_one_window(avatar, pool: RenderProcessPool) -> None:
    far = remote(avatar, pool)
    windows = speech_windows([2, 2, 2])
    condition = far.first_frame()
    _, condition = far.render(windows[0], condition)
    holder = far._tokens[id(condition)][1]  # the process that rendered it, which the next window goes back to
    started = pool.started
    os.kill(holder.process.pid, signal.SIGKILL)
    with pytest.raises(RenderProcessError, match="exited"):
        far.render(windows[1], condition)
    rendered, _ = far.render(windows[2], condition)  # another process, the picture sent along
    assert rendered.n_frames == 2 and rendered.frames_rgb.any()
    assert pool.started == started + 1, "the dead process was replaced"
    assert pool.processes <= pool.max_processes


def test_a_generator_error_in_the_process_is_reported_and_the_process_lives_on(avatar, pool) -> None:
    far = remote(avatar, pool)
    bad = MotionWindow(0, np.zeros((2, N_CONTROLS + 3), np.float32), np.zeros(2000, np.float32))
    started = pool.started
    with pytest.raises(RuntimeError, match="in render process"):
        far.render(bad, far.first_frame())
    rendered, _ = far.render(speech_windows([2])[0], far.first_frame())
    assert rendered.n_frames == 2 and pool.started == started


def test_sessions_rendering_at_once_share_a_bounded_number_of_processes(avatar, pool) -> None:
    far = remote(avatar, pool)
    results: list[int] = []
    errors: list[BaseException] = []

    def session() -> None:
        try:
            results.extend(r.n_frames for r in render_all(far, speech_windows([2] * 6)))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=session) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert results == [2] * 24
    assert pool.processes <= pool.max_processes == 2


def test_the_default_config_renders_warp_in_processes(avatar) -> None:
    assert isinstance(generator_for(EngineConfig(), avatar), ProcessGenerator)
    assert isinstance(generator_for(EngineConfig(render_processes=False), avatar), WarpGenerator)


def test_a_session_opening_during_the_warm_up_waits_for_it_rather_than_start_a_second_process(avatar) -> None:
    """The server warms its render process with first_frame() as it starts; a session that asked meanwhile found the
    only process busy building its generator and started a second one (~4 s of a core, out of its stream's start)."""
    pool = RenderProcessPool(4)
    try:
        far = remote(avatar, pool)
        warm = threading.Thread(target=far.first_frame, name="render-warm")
        warm.start()
        deadline = time.monotonic() + 60.0
        while not (pool.processes == 1 and not pool._idle) and time.monotonic() < deadline:  # the warm-up holds it
            time.sleep(0.001)
        assert pool.processes == 1 and not pool._idle, "the warm-up never held the process"
        rendered = render_all(far, speech_windows([1, 1, 2]))  # the session: its first frame, then windows
        warm.join(60)
        assert [r.n_frames for r in rendered] == [1, 1, 2]
        assert pool.started == 1, f"{pool.started} render processes started for one session"
    finally:
        pool.close()


def test_processes_idle_for_a_while_are_stopped_but_the_last(avatar) -> None:
    pool = RenderProcessPool(2, idle_stop_s=1.0)
    try:
        far = remote(avatar, pool)
        threads = [threading.Thread(target=render_all, args=(far, speech_windows([2] * 20))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert pool.started == 2, "two renders at once: a second process"
        deadline = time.monotonic() + 60.0
        while pool.processes < 2 and pool.stopped_idle == 0 and time.monotonic() < deadline:
            time.sleep(0.1)  # the second may still be starting
        while pool.processes > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pool.processes == 1 and pool.stopped_idle == 1
        rendered, _ = far.render(speech_windows([2])[0], far.first_frame())  # the one kept still renders
        assert rendered.n_frames == 2
    finally:
        pool.close()


async def test_a_live_session_whose_render_process_is_killed_keeps_streaming(avatar) -> None:
    generator = generator_for(EngineConfig(), avatar)
    assert isinstance(generator, ProcessGenerator)
    stream, counter = live_stream("killed", generator)
    await stream.start()
    try:
        await asyncio.sleep(2.0)
        before = stream.info()
        started = generator.pool.started
        with generator.pool._lock:  # every process the session could be rendering on
            pids = [p.process.pid for p in generator.pool._all]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        t_kill = time.monotonic()
        # A new process starts in seconds (longer on a loaded host); the stream holds its frame meanwhile.
        for _ in range(600):  # up to a minute
            if stream.info()["windows_rendered"] > before["windows_rendered"] + 10:
                break
            await asyncio.sleep(0.1)
        after = stream.info()
        t_end = time.monotonic()
    finally:
        await stream.close()
    assert after["generator_failures"] >= 1, after
    assert after["windows_rendered"] > before["windows_rendered"] + 10, (before, after)  # rendering again
    assert generator.pool.started >= started + 1
    after_kill = [t for t in counter.t_s if t_kill <= t <= t_end]
    span_s = t_end - t_kill
    gaps = np.diff(after_kill)
    assert len(after_kill) >= 24 * span_s - 2 and gaps.max() < 0.5, (span_s, len(after_kill), gaps.max())


def test_where_no_render_process_can_start_the_generator_renders_in_this_process(avatar, monkeypatch, caplog) -> None:
    monkeypatch.setattr("sys.executable", "/nonexistent/python")  # an embedded interpreter has no `python -m`
    pool = RenderProcessPool(2)
    try:
        far = remote(avatar, pool)
        far.emit_alpha = True
        windows = speech_windows([2, 2])
        got = render_all(far, windows)
        want = render_all(WarpGenerator(avatar), windows)
        assert all(np.array_equal(a.frames_rgb, b.frames_rgb) for a, b in zip(got, want, strict=True))
        assert got[0].alpha_frames is not None, "emit_alpha reaches the generator rendering in this process"
        assert isinstance(far._local, WarpGenerator) and pool.processes == 0
        assert "no render process could start" in caplog.text and "renders in the server's own process" in caplog.text
    finally:
        pool.close()
