"""The rule director: the embedded default, and the fallback whenever another director is late.

It keeps the avatar alive without a model: natural blinks, a baseline mood read from the persona
text, and host commands ("smile", "nod", "look left", "surprised") turned into beats at once.
Emphasis nods on stressed syllables and idle head motion come from the blueprint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from engine.director.base import DirectorContext
from engine.types import FPS, StoryBeat, Storyline
from engine.vocabulary import Emotion, Expression, Gaze, HeadMotion


@dataclass(frozen=True)
class Rule:
    pattern: str
    seconds: float  # how long the beat lasts
    emotion: Emotion | None = None  # None leaves the mood as it is (a gesture alone)
    expression: Expression = Expression.NEUTRAL
    head_motion: HeadMotion = HeadMotion.IDLE
    gaze: Gaze = Gaze.CAMERA
    intensity: float = 0.8


# Host commands, matched case-insensitively anywhere in the text; every match adds a beat.
COMMANDS = (
    Rule(r"\bgrin", 3.0, emotion=Emotion.HAPPY, expression=Expression.GRIN),
    Rule(r"\bsmil|\bhappy|\bcheer", 3.0, emotion=Emotion.HAPPY, expression=Expression.SMILE),
    Rule(r"surpris|\bwow\b|amaz|shock", 2.0, emotion=Emotion.SURPRISED, expression=Expression.RAISED_BROWS,
         intensity=1.0),
    Rule(r"excit|energ", 3.0, emotion=Emotion.EXCITED),
    Rule(r"serious|stern", 3.0, emotion=Emotion.SERIOUS),
    Rule(r"\bsad\b|sorry", 3.0, emotion=Emotion.SAD),
    Rule(r"frown|angry", 2.5, expression=Expression.FROWN),
    Rule(r"\bpout", 2.0, expression=Expression.POUT),
    Rule(r"\bnod", 1.0, head_motion=HeadMotion.NOD, intensity=1.0),
    Rule(r"shake|\bno no\b", 1.0, head_motion=HeadMotion.SHAKE, intensity=1.0),
    Rule(r"\btilt", 2.5, head_motion=HeadMotion.TILT),
    Rule(r"\bturn", 2.5, head_motion=HeadMotion.TURN),
    Rule(r"look (to the )?left", 2.0, gaze=Gaze.LEFT),
    Rule(r"look (to the )?right", 2.0, gaze=Gaze.RIGHT),
    Rule(r"look (up|above)", 2.0, gaze=Gaze.UP),
    Rule(r"look (down|at the product)|\bproduct", 2.0, gaze=Gaze.PRODUCT),
)

# Persona words -> the mood between commands (emotion, intensity).
PERSONA_MOODS = (
    (r"energetic|excit|enthusias|lively", (Emotion.EXCITED, 0.35)),
    (r"cheer|friendly|warm|happy|upbeat", (Emotion.HAPPY, 0.4)),
    (r"calm|gentle|soothing|relax", (Emotion.CALM, 0.5)),
    (r"serious|formal|professional|news", (Emotion.SERIOUS, 0.3)),
)


def persona_mood(persona: str) -> tuple[Emotion, float]:
    for pattern, mood in PERSONA_MOODS:
        if re.search(pattern, persona, re.IGNORECASE):
            return mood
    return Emotion.NEUTRAL, 0.0


class RuleDirector:
    """Blink times and command beats are remembered, so overlapping re-plans agree with each other
    and with what was already shown."""

    name = "rules"

    def __init__(self, seed: int = 0, mean_blink_interval_s: float = 3.5) -> None:
        self._rng = np.random.default_rng(seed)
        self._mean_blink_frames = mean_blink_interval_s * FPS
        self._blinks: list[int] = []
        self._next_blink = int(self._draw_interval() * 0.5)
        self._commands: list[StoryBeat] = []

    def _draw_interval(self) -> float:
        # Human blink intervals: a floor of ~1.5 s plus an exponential tail.
        floor = 1.5 * FPS
        return floor + self._rng.exponential(max(1.0, self._mean_blink_frames - floor))

    def plan_now(self, context: DirectorContext) -> Storyline:
        """Synchronous planning (the rules are instant); used directly as the fallback."""
        start, end = context.from_frame, context.to_frame
        for text in context.new_instructions:
            self._commands += command_beats(text, start)
        self._commands = [b for b in self._commands if b.end_frame > start]
        while self._next_blink < end:
            self._blinks.append(self._next_blink)
            self._next_blink += int(self._draw_interval())
        self._blinks = [b for b in self._blinks if b >= start - FPS]
        emotion, intensity = persona_mood(context.persona)
        beats = [StoryBeat(start, end, emotion, intensity, note="baseline")]
        beats += [b for b in self._commands if b.start_frame < end]
        beats += [StoryBeat(b, b + 8, blink=True, note="blink") for b in self._blinks if start <= b < end]
        return Storyline(start, end, beats, source=self.name)

    async def plan(self, context: DirectorContext) -> Storyline:
        return self.plan_now(context)


def command_beats(text: str, start_frame: int) -> list[StoryBeat]:
    """The beats a host command asks for, starting at start_frame (in the order they match)."""
    beats = []
    for rule in COMMANDS:
        if re.search(rule.pattern, text, re.IGNORECASE):
            beats.append(StoryBeat(start_frame, start_frame + int(rule.seconds * FPS), rule.emotion,
                                   rule.intensity, rule.head_motion, expression=rule.expression, gaze=rule.gaze,
                                   note=f"command: {text[:60]}"))
    return beats
