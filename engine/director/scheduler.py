"""A session's director scheduler: keeps a rolling storyline a few seconds ahead of the picture.

The session reports its progress (the window being planned); every replan_interval_s of it, or at
once after a host instruction, the director is asked for the next plan_horizon_s. A call that fails
or outlasts the interval is counted and the current plan carries on; a host command in it is not
lost: the instant fallback (the rule director) plans it at once. The plan waits as `pending` until
the window policy commits it to the blueprint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass

import numpy as np

from engine.audio.prosody import analyse as analyse_prosody
from engine.config import EngineConfig
from engine.director.base import Director, DirectorContext, InstantDirector
from engine.director.rules import RuleDirector
from engine.metrics import SessionMetrics
from engine.types import FPS, FeatureFrame, Storyline

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PendingPlan:
    """A plan from the director, waiting to be committed to the blueprint (scheduler -> window policy)."""

    storyline: Storyline
    immediate: bool = False  # a host command's plan: shown at once, not after the committed span

    def __str__(self) -> str:
        return f"PendingPlan[{self.storyline.planned_from_frame}:{self.storyline.planned_to_frame}]" + (
            " immediate" if self.immediate else "")


class DirectorScheduler:
    def __init__(self, director: Director, config: EngineConfig, metrics: SessionMetrics, *,
                 session_id: str = "") -> None:
        self.director = director
        self.fallback: InstantDirector = (director if isinstance(director, InstantDirector)
                                          else RuleDirector(config.seed))
        self.config = config
        self.metrics = metrics
        self.session_id = session_id
        self.persona = config.persona
        self.replan_frames = int(config.replan_interval_s * FPS)
        self.horizon_frames = int(config.plan_horizon_s * FPS)
        self.pending: PendingPlan | None = None
        self.stopped = False
        self._instructions: deque[tuple[str, int]] = deque(maxlen=16)  # (text, frame it arrived at)
        self._new_instructions: list[str] = []
        self._recent: deque[FeatureFrame] = deque(maxlen=2 * FPS)
        self._progress_frame = 0
        self._next_plan_frame = 0
        self._wakeup = asyncio.Event()

    def instruct(self, text: str) -> None:
        """A host instruction ("smile", "nod", "look left", ...): the director re-plans at once."""
        self._instructions.append((text, self._progress_frame))
        self._new_instructions.append(text)
        self._next_plan_frame = 0
        self._wakeup.set()

    def set_persona(self, text: str) -> None:
        self.persona = text
        self._next_plan_frame = 0
        self._wakeup.set()

    def hear(self, frame: FeatureFrame) -> None:
        """A frame of features: the recent ones give the director prosody (and audio for omni models)."""
        self._recent.append(frame)

    def progress(self, frame_index: int) -> None:
        """The window from frame_index is being planned: time to re-plan when the interval has passed."""
        self._progress_frame = frame_index
        self._wakeup.set()

    def take_pending(self) -> PendingPlan | None:
        pending, self.pending = self.pending, None
        return pending

    def first_plan(self) -> Storyline:
        """The fallback's plan a session starts with; the director's first call is due an interval later."""
        self._next_plan_frame = self.replan_frames
        # The persona is standing: its mood shows from the first frame, not from the first re-plan.
        return self.fallback.plan_now(DirectorContext(0, self.horizon_frames, persona=self.persona))

    def fallback_plan(self, start_frame: int) -> Storyline:
        """The fallback's plan from start_frame, for a window no plan covers."""
        return self.fallback.plan_now(self.context(start_frame, start_frame + self.horizon_frames))

    def context(self, from_frame: int, to_frame: int) -> DirectorContext:
        """What the director sees; instructions that arrived since the last context count as new."""
        recent = [text for text, frame in self._instructions if frame >= from_frame - 10 * FPS]
        new, self._new_instructions = self._new_instructions, []
        frames = list(self._recent)
        audio = None
        if frames and (self.config.director_audio or self.config.director_transcribe_model):
            from engine.director.vllm import wav_bytes

            audio = wav_bytes(np.concatenate([f.audio for f in frames]))
        return DirectorContext(from_frame, to_frame, prosody=analyse_prosody(frames), instructions=recent,
                               persona=self.persona, new_instructions=new, audio_wav=audio)

    def stats(self) -> dict[str, object]:
        """The director's own counters (calls, failures, latency, ...) when it keeps any."""
        stats = getattr(self.director, "stats", None)
        return {f"director_{k}": v for k, v in stats().items()} if callable(stats) else {}

    async def run(self) -> None:
        """The rolling re-plan loop (a session stage): ends when cancelled or after stop()."""
        # Not `while True`: on Python 3.11 a cancel that lands as asyncio.wait_for below times out is
        # swallowed (fixed in 3.12), and the session's aclose() would wait for this loop forever.
        while not self.stopped:
            await self._wakeup.wait()
            self._wakeup.clear()
            start = self._progress_frame
            if self.stopped or start < self._next_plan_frame:
                continue
            self._next_plan_frame = start + self.replan_frames
            context = self.context(start, start + self.horizon_frames)
            try:
                story = await asyncio.wait_for(self.director.plan(context), timeout=self.config.replan_interval_s)
            except Exception:
                self.metrics.director_failures += 1
                log.warning("session %s: director %s failed; the current plan carries on",
                            self.session_id, self.director.name, exc_info=True)
                if context.new_instructions and self.fallback is not self.director:
                    # The host's command must not be lost with the call: the rule director takes it.
                    self.metrics.director_fallbacks += 1
                    self.pending = PendingPlan(self.fallback.plan_now(context), immediate=True)
                continue
            self.metrics.director_plans += 1
            self.pending = PendingPlan(story, immediate=bool(context.new_instructions))

    def stop(self) -> None:
        """No more plans: run() ends at its next turn even where a cancel was swallowed."""
        self.stopped = True
        self._wakeup.set()

    async def aclose(self) -> None:
        """Stop, and close the director's own resources (HTTP clients) where it has any."""
        self.stop()
        close = getattr(self.director, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
