"""The rule director: the embedded default, and the fallback whenever another director is late."""

from __future__ import annotations

import numpy as np

from engine.director.base import DirectorContext
from engine.types import FPS, StoryBeat, Storyline


class RuleDirector:
    """Natural blinks and a calm idle presence.

    Blink times are drawn once and remembered, so overlapping re-plans agree with each other and
    with what was already shown.
    """

    name = "rules"

    def __init__(self, seed: int = 0, mean_blink_interval_s: float = 3.5) -> None:
        self._rng = np.random.default_rng(seed)
        self._mean_blink_frames = mean_blink_interval_s * FPS
        self._blinks: list[int] = []
        self._next_blink = int(self._draw_interval() * 0.5)

    def _draw_interval(self) -> float:
        # Human blink intervals: a floor of ~1.5 s plus an exponential tail.
        floor = 1.5 * FPS
        return floor + self._rng.exponential(max(1.0, self._mean_blink_frames - floor))

    def plan_now(self, context: DirectorContext) -> Storyline:
        """Synchronous planning (the rules are instant); used directly as the fallback."""
        while self._next_blink < context.to_frame:
            self._blinks.append(self._next_blink)
            self._next_blink += int(self._draw_interval())
        self._blinks = [b for b in self._blinks if b >= context.from_frame - FPS]
        beats = [StoryBeat(context.from_frame, context.to_frame, "neutral", 0.0, "idle", note="idle")]
        beats += [StoryBeat(b, b + 8, blink=True, note="blink") for b in self._blinks
                  if context.from_frame <= b < context.to_frame]
        return Storyline(context.from_frame, context.to_frame, beats, source=self.name)

    async def plan(self, context: DirectorContext) -> Storyline:
        return self.plan_now(context)
