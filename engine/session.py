"""A session: one host's avatar, wiring the stages of DESIGN.md as asyncio tasks with bounded queues.

    push_audio ─► SessionInput ─► features ─► blueprint ◄─ WindowPolicy.commit ◄─ DirectorScheduler
    (convert, anchor, AudioRing,                   │         (pending plan or fallback)   (rolling storyline)
     read each frame by its deadline)           Renderer ─► generator (window, first-frame condition)
                                                   │   (skips what WindowPolicy calls too late; late and
                                                   │    on-time windows move DelayController's clock delay)
                                                windows() ─► pacer / file egress

A stage that raises on one frame or window does not end the session: features fall back to silence's
(the sound still goes out), the blueprint holds the last pose, the renderer holds the last picture; each
is counted, and reported in `problem` while it lasts (engine/stage_faults.py).

Live sessions run on a MediaClock: a frame's audio is awaited until shortly before the frame is
due, then silence stands in (counted), so the output never waits for the input. Offline sessions
(live=False) wait for every sample and run as fast as the generator can. The parts, one job each:
engine/session_input.py, engine/director/scheduler.py, engine/window_policy.py, engine/renderer.py,
engine/delay_control.py, engine/metrics.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import numpy as np

from engine.audio.features import FeatureExtractor
from engine.backends import GENERATORS
from engine.blueprint import Blueprint
from engine.clock import MediaClock
from engine.config import EngineConfig
from engine.delay_control import DelayController
from engine.director import Director, director_for
from engine.director.scheduler import DirectorScheduler
from engine.generator import Generator, PreparedAvatar, generator_for
from engine.metrics import SessionMetrics
from engine.renderer import Renderer
from engine.session_input import SessionInput
from engine.stage_faults import StageFaults
from engine.types import N_CONTROLS, FeatureFrame, MotionWindow, RenderedWindow
from engine.window_policy import WindowPolicy
from engine.window_size import WindowSizer

log = logging.getLogger(__name__)


class _End:
    """End of stream: overtakes nothing, closes each queue after the data before it."""


END = _End()


class AvatarSession:
    """generator, director: injected instances; None builds them from config (generator_for, director_for)."""

    def __init__(self, avatar: PreparedAvatar, config: EngineConfig, *, live: bool, session_id: str = "",
                 generator: Generator | None = None, director: Director | None = None) -> None:
        if live:
            config.validate_live()
        self.id, self.avatar, self.config, self.live = session_id, avatar, config, live
        n = config.window_frames if live else config.offline_window_frames
        self.lookahead_frames = config.lookahead_frames if live else config.offline_lookahead_frames
        self.clock: MediaClock | None = None
        self.metrics = SessionMetrics()
        self._input = SessionInput(config, self.metrics, live=live)
        self.ring = self._input.ring  # for render_to_file's back-pressure until it uses wait_backlog_below
        self._features = FeatureExtractor()
        director = director if director is not None else director_for(config, avatar.rgb)
        self._scheduler = DirectorScheduler(director, config, self.metrics, session_id=session_id)
        # Idle motion seeded per session: two streams of one portrait side by side do not move in lockstep.
        self._blueprint = Blueprint(lookahead_frames=self.lookahead_frames,
                                    seed=config.seed + zlib.crc32(session_id.encode()))
        self._policy = WindowPolicy(config, self.metrics, self._blueprint, window_frames=n,
                                    lookahead_frames=self.lookahead_frames)
        self._delay = DelayController(config, self.metrics, session_id=session_id)
        generator = generator if generator is not None else generator_for(config, avatar)
        self.metrics.window_frames = n
        if live:
            longest = GENERATORS.get(config.generator).capabilities.max_window_frames
            self._policy.sizer = WindowSizer(config, self.metrics, lookahead_frames=self.lookahead_frames,
                                             longest=longest, session_id=session_id)
        self._renderer = Renderer(generator, self._policy, self._delay, self.metrics,
                                  lambda: self._input.last_filled_frame, session_id=session_id,
                                  pool_size=config.render_pool_size)
        self._feature_q: asyncio.Queue[FeatureFrame | _End] = asyncio.Queue(maxsize=2 * n)
        self._motion_q: asyncio.Queue[MotionWindow | _End] = asyncio.Queue(maxsize=2)
        self._rendered_q: asyncio.Queue[RenderedWindow | _End] = asyncio.Queue(maxsize=2)
        self._feature_faults = StageFaults("features", session_id, "frame")
        self._blueprint_faults = StageFaults("blueprint", session_id, "window")
        self._last_controls = np.zeros(N_CONTROLS, np.float32)  # the pose a failed blueprint window holds
        self._tasks: list[asyncio.Task[None]] = []
        self.error: BaseException | None = None
        self.closed = False
        # The public input and control calls are the parts' own methods (their docstrings say more).
        self.push_audio = self._input.push_audio  # (pcm, sample_rate_hz, channels=1): TTS, files; played on the clock
        self.push_audio_frame = self._input.push_audio_frame  # (av.AudioFrame): a live source, placed by its pts
        self.end_input = self._input.end_input  # offline: no more audio; the stream ends after it
        self.clear_buffer = self._input.clear_buffer  # barge-in: drop audio not yet read
        self.wait_backlog_below = self._input.wait_backlog_below  # (samples): for producers faster than real time
        self.on_audio = self._input.on_audio  # (listener(frame_index, samples)): each frame's audio as it is read
        self.instruct = self._scheduler.instruct  # (text): a host command; the director re-plans at once
        self.set_persona = self._scheduler.set_persona  # (text)
        self.director_stats = self._scheduler.stats  # the director's own counters, when it keeps any

    @property
    def window_frames(self) -> int:
        """Frames in the windows being planned now (live: engine/window_size.py may have lengthened them)."""
        return self._policy.window_frames

    def request_alpha(self) -> bool:
        """Ask the generator for each frame's person alpha (RenderedWindow.alpha_frames: a keyed background).
        False when it cannot make one: the still portrait's alpha then stands in."""
        generator = self._renderer.generator
        if not hasattr(generator, "emit_alpha"):
            return False
        generator.emit_alpha = True
        return True

    @property
    def input_offset_samples(self) -> int | None:
        """Live input: media-clock index minus the input's own timestamp (48 kHz), once audio came."""
        return self._input.offset_samples

    @property
    def problem(self) -> str | None:
        """Why the session is failed or degraded (a failing stage it streams through), or None when well."""
        if self.error is not None:
            return f"{type(self.error).__name__}: {self.error}"
        return self._feature_faults.degraded or self._blueprint_faults.degraded or self._renderer.degraded

    def queue_depths(self) -> dict[str, int]:
        """Items waiting between the stages (bounded): a growing one shows where a session lags."""
        return {"queue_features": self._feature_q.qsize(), "queue_motion": self._motion_q.qsize(),
                "queue_rendered": self._rendered_q.qsize(), "audio_backlog_samples": self.ring.backlog_samples}

    # ---- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await self._renderer.warm_up(self.window_frames)
        if self.live:
            self.clock = MediaClock(delay_s=self.config.pipeline_delay_s)
            self._input.clock = self._policy.clock = self._delay.clock = self.clock
        if self.closed:  # closed while it warmed up (a stream deleted at once): start no stage
            return
        self._blueprint.update(self._scheduler.first_plan())
        for name, coro in (("features", self._run_features()), ("blueprint", self._run_blueprint()),
                           ("director", self._scheduler.run()), ("generator", self._run_generator())):
            self._tasks.append(asyncio.create_task(self._guard(name, coro), name=f"{self.id}:{name}"))

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
        self._scheduler.stop()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._renderer.close()
        await self._scheduler.aclose()
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
        k = 0
        # Not `while True`: on Python 3.11 a cancel that lands as asyncio.timeout expires is swallowed
        # (fixed in 3.12), and aclose() would wait for this loop forever; closed ends it regardless.
        while not self.closed:
            audio = await self._input.read_frame(k, self._policy.audio_deadline_s(k))
            if audio is None:
                await self._feature_q.put(END)
                return
            if audio.late:  # the input is flowing, just not in time for this frame: more delay would have saved it
                self._delay.fell_behind()
            features = self._features_of(k, audio.samples, filled=audio.missing_samples > 0)
            features.arrived_t_s = audio.arrived_t_s if audio.arrived_t_s is not None else time.monotonic()
            await self._feature_q.put(features)
            k += 1

    def _features_of(self, k: int, samples: np.ndarray, *, filled: bool) -> FeatureFrame:
        try:
            features = self._features.process(k, samples, filled=filled)
        except Exception as e:  # silence's features stand in: the mouth rests, the sound still goes out
            self._feature_faults.failed(e)
            self.metrics.feature_failures += 1
            return FeatureFrame(k, rms=0.0, energy_db=-100.0, voice_activity=0.0, audio=samples, filled=filled)
        self._feature_faults.ok()
        return features

    async def _run_blueprint(self) -> None:
        ahead = self.lookahead_frames
        batch: list[FeatureFrame] = []
        while True:
            item = await self._feature_q.get()
            ended = isinstance(item, _End)
            if not isinstance(item, _End):
                batch.append(item)
                self._scheduler.hear(item)
                if len(batch) > ahead:  # this frame completes the lookahead of the one `ahead` before it
                    self.metrics.note_audio_path_delay(time.monotonic() - batch[-1 - ahead].arrived_t_s)
            while batch and (len(batch) >= (n := self._window_length(batch[0].frame_index)) + ahead or ended):
                await self._motion_q.put(self._plan_window(batch[:n], batch[n : n + ahead]))
                batch = batch[n:]
            if ended:
                await self._motion_q.put(END)
                return

    def _window_length(self, start_frame: int) -> int:
        """Frames in the window that starts at start_frame; live, the sizer may have lengthened it (or shortened it
        back): a longer window needs its audio for longer, so it waits until the pipeline delay covers it."""
        sizer = self._policy.sizer
        if sizer is None:
            return self.window_frames
        n = sizer.length_at(start_frame, lambda longer: self._delay.make_room(sizer.room_needed_s(longer)))
        self._policy.window_frames = n
        return n

    def _plan_window(self, batch: list[FeatureFrame], lookahead: list[FeatureFrame]) -> MotionWindow:
        start = batch[0].frame_index
        try:
            self._scheduler.progress(start)
            self._policy.commit(start, len(batch), self._scheduler.take_pending(), self._scheduler.fallback_plan)
            window = self._blueprint.window(batch, lookahead)
        except Exception as e:  # the last pose held for the window: the picture stays still, the sound goes on
            self._blueprint_faults.failed(e)
            self.metrics.blueprint_failures += 1
            controls = np.broadcast_to(self._last_controls, (len(batch), N_CONTROLS)).copy()
            return MotionWindow(start, controls, np.concatenate([f.audio for f in batch]),
                                created_t_s=time.monotonic())
        self._blueprint_faults.ok()
        self._last_controls = window.controls[-1].copy()
        return window

    async def _run_generator(self) -> None:
        while True:
            item = await self._motion_q.get()
            if isinstance(item, _End):
                await self._rendered_q.put(END)
                return
            rendered = await self._renderer.render(item)  # None: too late to be shown, skipped
            if rendered is not None:
                await self._rendered_q.put(rendered)
