"""A session: one host's avatar, wiring the stages of DESIGN.md as asyncio tasks with bounded queues.

    push_audio ─► ingest ─► AudioRing ─► features ─► blueprint ◄─ director (rolling storyline)
                                                         │
                                          generator (window, first-frame condition)
                                                         │
                                                  windows() ─► pacer / file egress

Live sessions run on a MediaClock: a frame's audio is awaited until shortly before the frame is
due, then silence stands in (counted), so the output never waits for the input. Offline sessions
(live=False) wait for every sample and run as fast as the generator can.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import av
import numpy as np

from engine.audio.anchor import LiveAnchor
from engine.audio.features import FeatureExtractor
from engine.audio.ingest import AudioIngest
from engine.audio.prosody import analyse as analyse_prosody
from engine.audio.ring import AudioRing
from engine.blueprint import Blueprint
from engine.clock import MediaClock
from engine.config import EngineConfig
from engine.director import DirectorContext, RuleDirector, director_for
from engine.director.base import InstantDirector
from engine.generator import PreparedAvatar, generator_for
from engine.metrics import SessionMetrics
from engine.types import (
    FPS,
    N_CONTROLS,
    SAMPLE_RATE_HZ,
    SAMPLES_PER_FRAME,
    FeatureFrame,
    MotionWindow,
    RenderedWindow,
    Storyline,
)

log = logging.getLogger(__name__)


class _End:
    """End of stream: overtakes nothing, closes each queue after the data before it."""


END = _End()


class AvatarSession:
    def __init__(self, avatar: PreparedAvatar, config: EngineConfig, *, live: bool, session_id: str = "") -> None:
        if live:
            config.validate_live()
        self.id = session_id
        self.avatar = avatar
        self.config = config
        self.live = live
        self.window_frames = config.window_frames if live else config.offline_window_frames
        self.lookahead_frames = config.lookahead_frames if live else config.offline_lookahead_frames
        self.clock: MediaClock | None = None
        self.ring = AudioRing(int(config.max_live_backlog_s * SAMPLE_RATE_HZ))
        self._anchor = LiveAnchor()
        self._pushed_backlog = int(config.max_pushed_backlog_s * SAMPLE_RATE_HZ)
        self.metrics = SessionMetrics()
        self._ingest = AudioIngest()
        self._features = FeatureExtractor()
        self._director = director_for(config, avatar.rgb)
        self._fallback: InstantDirector = (self._director if isinstance(self._director, InstantDirector)
                                           else RuleDirector(config.seed))
        self._blueprint = Blueprint(lookahead_frames=self.lookahead_frames)
        self._generator = generator_for(config, avatar)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"render-{session_id}")
        n = self.window_frames
        self._feature_q: asyncio.Queue[FeatureFrame | _End] = asyncio.Queue(maxsize=2 * n)
        self._motion_q: asyncio.Queue[MotionWindow | _End] = asyncio.Queue(maxsize=2)
        self._rendered_q: asyncio.Queue[RenderedWindow | _End] = asyncio.Queue(maxsize=2)
        self._recent: deque[FeatureFrame] = deque(maxlen=2 * FPS)
        self._progress_frame = 0
        self._next_plan_frame = 0
        self._pending: Storyline | None = None
        self._pending_immediate = False  # a host command's plan: shown at once, not after the committed span
        self._director_wakeup = asyncio.Event()
        self._render_s_avg = 0.0  # recent render time per window, moving average
        self._delay_changed_s = 0.0  # when the live pipeline delay last changed (monotonic)
        self._slack_per_s: deque[tuple[int, float]] = deque()  # (second, least window slack in it), recent
        self._late_s = 0.0  # when the session last ran late (monotonic)
        self._last_filled_frame = -1  # the newest frame whose input audio was missing (silence stood in)
        self.persona = config.persona
        self._instructions: deque[tuple[str, int]] = deque(maxlen=16)  # (text, frame it arrived at)
        self._new_instructions: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._audio_listeners: list[Callable[[int, np.ndarray], None]] = []
        self.error: BaseException | None = None
        self.closed = False

    def queue_depths(self) -> dict[str, int]:
        """Items waiting between the stages (bounded): a growing one shows where a session lags."""
        return {"queue_features": self._feature_q.qsize(), "queue_motion": self._motion_q.qsize(),
                "queue_rendered": self._rendered_q.qsize(), "audio_backlog_samples": self.ring.backlog_samples}

    @property
    def input_offset_samples(self) -> int | None:
        """Live input: media-clock index minus the input's own timestamp (48 kHz), once audio came."""
        return self._anchor.offset_samples

    @property
    def size(self) -> tuple[int, int]:
        return self.avatar.size

    # ---- input -------------------------------------------------------------------------------
    def push_audio_frame(self, frame: av.AudioFrame) -> None:
        """A live source's audio (a transport's microphone), any format PyAV knows.

        Live sessions place it on the clock by its timestamps and its least delayed arrivals
        (engine/audio/anchor.py), so jitter and packets queued at start-up add no lasting delay, and
        bound its backlog (a sender whose clock runs fast loses the excess, counted); gaps in its pts
        (lost packets) become silence, so later audio is not shifted earlier.
        """
        gap = self._ingest.gap_samples(frame)
        self.metrics.audio_samples_lost += gap
        mono = self._ingest.convert_frame(frame)
        if self.clock is None:  # offline: contiguous, with lost packets as silence
            if gap:
                self.ring.skip(min(gap, self.ring.max_backlog_samples))
            self._write(mono, None, None if self.live else self._pushed_backlog)
            return
        at = self._anchor.place(len(mono), self.clock.live_sample_now(), frame.pts, frame.time_base)
        self._write(mono, at, None)

    def push_audio(self, pcm: np.ndarray, sample_rate_hz: int, channels: int = 1) -> None:
        """Pushed audio (TTS, files): int16 or float32 PCM, interleaved or shaped (n, channels).

        It may come faster than real time: it is buffered and played on the clock, never dropped
        (up to max_pushed_backlog_s).
        """
        self._write(self._ingest.convert_pcm(pcm, sample_rate_hz, channels), None, self._pushed_backlog)

    def end_input(self) -> None:
        """No more audio (offline): the last frame is padded with silence and the stream ends."""
        self._write(self._ingest.flush(), None, self._pushed_backlog)
        self.ring.end()

    def instruct(self, text: str) -> None:
        """A host instruction ("smile", "nod", "look left", ...): the director re-plans at once."""
        self._instructions.append((text, self._progress_frame))
        self._new_instructions.append(text)
        self._next_plan_frame = 0
        self._director_wakeup.set()

    def set_persona(self, text: str) -> None:
        self.persona = text
        self._next_plan_frame = 0
        self._director_wakeup.set()

    def clear_buffer(self) -> None:
        """Barge-in: drop audio not yet turned into features."""
        self.ring.clear()

    def _write(self, mono: np.ndarray, at: int | None, max_backlog: int | None) -> None:
        if len(mono):
            self.metrics.audio_samples_in += len(mono)
            self.metrics.audio_samples_dropped += self.ring.write(mono, at, max_backlog_samples=max_backlog)

    # ---- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self._warm_up()
        if self.live:
            self.clock = MediaClock(delay_s=self.config.pipeline_delay_s)
        horizon = int(self.config.plan_horizon_s * FPS)
        self._blueprint.update(self._fallback.plan_now(DirectorContext(0, horizon)))
        self._next_plan_frame = int(self.config.replan_interval_s * FPS)
        for name, coro in (("features", self._run_features()), ("blueprint", self._run_blueprint()),
                           ("director", self._run_director()), ("generator", self._run_generator())):
            self._tasks.append(asyncio.create_task(self._guard(name, coro), name=f"{self.id}:{name}"))

    async def _warm_up(self) -> None:
        """Render two throw-away windows: the first call allocates; the second says how long one takes."""
        n = self.window_frames
        idle = MotionWindow(0, np.zeros((n, N_CONTROLS), np.float32), np.zeros(n * SAMPLES_PER_FRAME, np.float32))
        loop = asyncio.get_running_loop()
        for _ in range(2):
            t0 = time.monotonic()
            await loop.run_in_executor(self._executor, self._generator.render, idle, self._generator.first_frame())
            self._render_s_avg = time.monotonic() - t0

    def on_audio(self, listener: Callable[[int, np.ndarray], None]) -> None:
        """listener(frame_index, samples) gets each frame's audio (1000 samples) as soon as it is read
        from the input, before its window is rendered: a live transport plays it from there, so the
        sound neither waits for nor drops out with the picture."""
        self._audio_listeners.append(listener)

    async def windows(self) -> AsyncIterator[RenderedWindow]:
        """Rendered windows in frame order; ends after end_input() (offline) or aclose()."""
        while True:
            item = await self._rendered_q.get()
            if isinstance(item, _End):
                if self.error is not None:
                    raise RuntimeError(f"session {self.id} failed: {self.error}") from self.error
                return
            yield item

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
        close = getattr(self._director, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
        with contextlib.suppress(asyncio.QueueFull):
            self._rendered_q.put_nowait(END)

    async def _guard(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("session %s: stage %s failed", self.id, name)
            self.error = e
            while not self._rendered_q.empty():  # make room so the reader sees the end at once
                self._rendered_q.get_nowait()
            self._rendered_q.put_nowait(END)

    # ---- stages ------------------------------------------------------------------------------
    async def _run_features(self) -> None:
        n = self.window_frames
        k = 0
        # Not `while True`: on Python 3.11 a cancel that lands as asyncio.timeout expires is swallowed
        # (fixed in 3.12), and aclose() would wait for this loop forever; closed ends it regardless.
        while not self.closed:
            end_sample = (k + 1) * SAMPLES_PER_FRAME
            timeout = None
            if self.clock is not None:  # frame k is needed by the window it looks ahead for
                needed_by = max(0, k - self.lookahead_frames)
                window_start = needed_by - needed_by % n
                timeout = self.clock.frame_due_s(window_start) - self._lead_s() - time.monotonic()
            await self.ring.wait_for(end_sample, max(0.0, timeout) if timeout is not None else None)
            if self.ring.ended and self.ring.write_cursor <= k * SAMPLES_PER_FRAME:
                await self._feature_q.put(END)
                return
            samples, missing = self.ring.read(k * SAMPLES_PER_FRAME, SAMPLES_PER_FRAME)
            if not self.ring.ended:  # the silence padding the very last frame is not a loss
                self.metrics.audio_samples_filled += missing
            if missing:
                self._last_filled_frame = k
            if missing and self.clock is not None and time.monotonic() - self.ring.last_write_s < 0.1:
                # The input is flowing, just not in time for this frame: more delay would have saved it.
                self.metrics.audio_frames_late += 1
                self._fell_behind()
            arrived = self.ring.arrival_time(end_sample - 1) if not missing else None
            for listener in self._audio_listeners:
                listener(k, samples)
            features = self._features.process(k, samples, filled=missing > 0)
            features.arrived_t_s = arrived if arrived is not None else time.monotonic()
            await self._feature_q.put(features)
            k += 1

    def _lead_s(self) -> float:
        """How long before its first frame is due a window must start rendering."""
        return max(self.config.render_reserve_s, 1.25 * self._render_s_avg)

    async def _run_blueprint(self) -> None:
        n, ahead = self.window_frames, self.lookahead_frames
        batch: list[FeatureFrame] = []
        while True:
            item = await self._feature_q.get()
            if not isinstance(item, _End):
                batch.append(item)
                self._recent.append(item)
                if len(batch) > ahead:  # this frame completes the lookahead of the one `ahead` before it
                    self.metrics.note_audio_path_delay(time.monotonic() - batch[-1 - ahead].arrived_t_s)
            while len(batch) >= n + ahead or (batch and isinstance(item, _End)):
                await self._motion_q.put(self._plan_window(batch[:n], batch[n : n + ahead]))
                batch = batch[n:]
            if isinstance(item, _End):
                await self._motion_q.put(END)
                return

    def _plan_window(self, batch: list[FeatureFrame], lookahead: list[FeatureFrame]) -> MotionWindow:
        start = batch[0].frame_index
        self._progress_frame = start
        self._director_wakeup.set()
        if self._pending is not None:
            commit = 0 if self._pending_immediate else int(self.config.commit_s * FPS)
            self._blueprint.update(self._pending, keep_until_frame=start + commit)
            self._pending = None
        if not self._blueprint.covers(start, len(batch)):
            self.metrics.director_fallbacks += 1
            horizon = int(self.config.plan_horizon_s * FPS)
            self._blueprint.update(self._fallback.plan_now(self._context(start, start + horizon)))
        return self._blueprint.window(batch, lookahead)

    def _context(self, from_frame: int, to_frame: int) -> DirectorContext:
        recent = [text for text, frame in self._instructions if frame >= from_frame - 10 * FPS]
        new, self._new_instructions = self._new_instructions, []
        frames = list(self._recent)
        audio = None
        if frames and (self.config.director_audio or self.config.director_transcribe_model):
            from engine.director.vllm import wav_bytes

            audio = wav_bytes(np.concatenate([f.audio for f in frames]))
        return DirectorContext(from_frame, to_frame, prosody=analyse_prosody(frames), instructions=recent,
                               persona=self.persona, new_instructions=new, audio_wav=audio)

    def director_stats(self) -> dict[str, object]:
        """The director's own counters (calls, failures, latency, ...) when it keeps any."""
        stats = getattr(self._director, "stats", None)
        return {f"director_{k}": v for k, v in stats().items()} if callable(stats) else {}

    async def _run_director(self) -> None:
        replan = int(self.config.replan_interval_s * FPS)
        horizon = int(self.config.plan_horizon_s * FPS)
        while not self.closed:  # asyncio.wait_for below may swallow a cancel on 3.11, as in _run_features
            await self._director_wakeup.wait()
            self._director_wakeup.clear()
            start = self._progress_frame
            if start < self._next_plan_frame:
                continue
            self._next_plan_frame = start + replan
            context = self._context(start, start + horizon)
            try:
                story = await asyncio.wait_for(self._director.plan(context), timeout=self.config.replan_interval_s)
            except Exception:
                self.metrics.director_failures += 1
                log.warning("session %s: director %s failed; the current plan carries on",
                            self.id, self._director.name, exc_info=True)
                if context.new_instructions and self._fallback is not self._director:
                    # The host's command must not be lost with the call: the rule director takes it.
                    self.metrics.director_fallbacks += 1
                    self._pending, self._pending_immediate = self._fallback.plan_now(context), True
                continue
            self.metrics.director_plans += 1
            self._pending, self._pending_immediate = story, bool(context.new_instructions)

    def _fell_behind(self) -> None:
        """A late window, or late input audio, adds a frame of pipeline delay (at most one a second, up
        to max_pipeline_delay_s). The clock moves, so every stage follows: the picture holds for a
        frame, the sound gets a 21 ms gap that receivers conceal, and the stream keeps its rate
        instead of repeating frames. _spare_slack() takes frames back."""
        if self.clock is None:
            return
        now, frame_s = time.monotonic(), 1 / FPS
        self._late_s = now
        cap = max(self.config.max_pipeline_delay_s, self.config.pipeline_delay_s)
        if self.clock.delay_s + frame_s > cap + 1e-9 or now - self._delay_changed_s < 1.0:
            return
        self.clock.delay_s += frame_s
        self.metrics.pipeline_delay_raises += 1
        self._delay_changed_s = now
        log.info("session %s: running late; pipeline delay now %.0f ms", self.id, self.clock.delay_s * 1e3)

    def _window_late(self, window: MotionWindow) -> None:
        """A late (or skipped) window raises the delay, unless its input audio was missing: then the
        features stage waited for it until the last moment (due - _lead_s()), which any delay would
        have done as well, so more delay buys nothing and a quiet microphone would ratchet it up."""
        if self._last_filled_frame < window.start_frame:
            self._fell_behind()

    def _spare_slack(self, slack_s: float) -> None:
        """A window was on time. After delay_relax_s of that, with every window more than a frame (and
        10 ms) early, a raised delay gives one frame back: moved earlier by a frame, even the
        tightest of those windows would still have been on time."""
        assert self.clock is not None
        now, frame_s, relax = time.monotonic(), 1 / FPS, self.config.delay_relax_s
        second, recent = int(now), self._slack_per_s
        if recent and recent[-1][0] == second:
            recent[-1] = (second, min(recent[-1][1], slack_s))
        else:
            recent.append((second, slack_s))
        while recent[0][0] < now - relax - 1:
            recent.popleft()
        if (self.clock.delay_s - frame_s >= self.config.pipeline_delay_s - 1e-9
                and now - max(self._delay_changed_s, self._late_s) >= relax
                and min(s for _, s in recent) > frame_s + 0.01):
            self.clock.delay_s -= frame_s
            self.metrics.pipeline_delay_lowers += 1
            self._delay_changed_s = now
            recent.clear()
            log.info("session %s: on time; pipeline delay back to %.0f ms", self.id, self.clock.delay_s * 1e3)

    async def _run_generator(self) -> None:
        loop = asyncio.get_running_loop()
        condition = self._generator.first_frame()
        while True:
            item = await self._motion_q.get()
            if isinstance(item, _End):
                await self._rendered_q.put(END)
                return
            if self.clock is not None and time.monotonic() + self._render_s_avg > self.clock.frame_due_s(
                    item.start_frame):
                # Too late to be shown: skipping it lets the next window be on time, so the picture
                # keeps moving when the generator cannot keep up (the pacer repeats frames meanwhile).
                self.metrics.frames_skipped += item.n_frames
                self._window_late(item)
                continue
            t0 = time.monotonic()
            rendered, condition = await loop.run_in_executor(self._executor, self._generator.render,
                                                             item, condition)
            # Wall time, not the renderer's own timing: waiting for a busy core counts too.
            self._render_s_avg += 0.3 * (time.monotonic() - t0 - self._render_s_avg)
            m = self.metrics
            m.windows_rendered += 1
            m.frames_rendered += rendered.n_frames
            m.render_ms_total += rendered.render_ms
            m.render_ms_max = max(m.render_ms_max, rendered.render_ms)
            m.audio_to_window_ms_max = max(m.audio_to_window_ms_max,
                                           (time.monotonic() - item.created_t_s) * 1000.0)
            if self.clock is not None:
                slack = self.clock.frame_due_s(item.start_frame) - time.monotonic()
                m.note_window_slack(slack)
                if slack < 0:
                    m.windows_late += 1
                    self._window_late(item)
                else:
                    self._spare_slack(slack)
            await self._rendered_q.put(rendered)
