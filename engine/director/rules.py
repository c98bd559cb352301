"""The rule director: the embedded default, and the fallback whenever another director is late.

It keeps the avatar alive without a model: natural blinks, a standing mood, and host commands
("smile", "nod", "look left", "surprised") turned into beats at once. Emphasis nods on stressed
syllables and idle head motion come from the blueprint.

A command is a beat of a few seconds. An instruction with a standing word ("keep", "always", "the
whole time", "from now on", ...) sets the standing mood instead: it holds in every plan until a later
standing instruction replaces it or a release ("stop", "neutral", "relax") ends it. The persona is
standing too: without standing words it gives a mild mood ("a cheerful host"), with them the
mood it names ("keep a big smile the whole time").
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

# An instruction with one of these holds its mood and expression until another replaces it.
STANDING_WORDS = r"\bkeep|\balways\b|whole time|from now on|all the time|throughout|\bstay|\bremain"
# ... and one with these ends the standing mood and every running command ("stop smiling", "relax").
RELEASE_WORDS = r"\bstop\b|\bneutral\b|\brelax|straight face"

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


@dataclass(frozen=True)
class Mood:
    """What the face holds between commands: the baseline beat of every plan."""

    emotion: Emotion = Emotion.NEUTRAL
    intensity: float = 0.0
    expression: Expression = Expression.NEUTRAL
    note: str = "baseline"

    def beat(self, start_frame: int, end_frame: int) -> StoryBeat:
        return StoryBeat(start_frame, end_frame, self.emotion, self.intensity, expression=self.expression,
                         note=self.note)


@dataclass(frozen=True)
class Reading:
    """What one instruction asks for."""

    release: bool  # end the standing mood and every running command
    mood: Mood | None  # the new standing mood; None leaves it as it is
    beats: list[StoryBeat]  # one-off beats from the instruction's frame


def _sets_mood(rule: Rule) -> bool:
    return rule.emotion is not None or rule.expression != Expression.NEUTRAL


def read_instruction(text: str, start_frame: int, *, standing: bool = False) -> Reading:
    """A host instruction at start_frame. standing: hold its mood even without a standing word (the persona)."""
    release = re.search(RELEASE_WORDS, text, re.IGNORECASE) is not None
    standing = standing or re.search(STANDING_WORDS, text, re.IGNORECASE) is not None
    mood: Mood | None = None
    beats = []
    for rule in COMMANDS:
        if not re.search(rule.pattern, text, re.IGNORECASE):
            continue
        if _sets_mood(rule) and release:
            continue  # "stop smiling" names the smile it ends
        if _sets_mood(rule) and standing:
            # The first mood named holds; gestures in the same words ("keep smiling and nod") stay one-off.
            mood = mood or Mood(rule.emotion or Emotion.NEUTRAL, rule.intensity, rule.expression,
                                note=f"standing: {text[:60]}")
            continue
        beats.append(_beat(rule, text, start_frame))
    if standing and mood is None:
        emotion, intensity = persona_mood(text)  # "stay calm from now on"
        if emotion != Emotion.NEUTRAL:
            mood = Mood(emotion, intensity, note=f"standing: {text[:60]}")
    if release and mood is None:
        mood = Mood(note=f"released: {text[:60]}")
    return Reading(release, mood, beats)


def persona_standing(persona: str) -> Mood:
    """The standing mood a persona sets: the one it names with standing words, else its mild mood."""
    if re.search(STANDING_WORDS, persona, re.IGNORECASE):
        mood = read_instruction(persona, 0, standing=True).mood
        if mood is not None:
            return mood
    emotion, intensity = persona_mood(persona)
    return Mood(emotion, intensity)


class RuleDirector:
    """Blink times, command beats and the standing mood are remembered, so overlapping re-plans agree
    with each other and with what was already shown."""

    name = "rules"

    def __init__(self, seed: int = 0, mean_blink_interval_s: float = 3.5) -> None:
        self._rng = np.random.default_rng(seed)
        self._mean_blink_frames = mean_blink_interval_s * FPS
        self._blinks: list[int] = []
        self._next_blink = int(self._draw_interval() * 0.5)
        self._commands: list[StoryBeat] = []
        self._persona = ""
        self._mood = Mood()  # the standing mood, from the persona or the latest standing instruction

    def _draw_interval(self) -> float:
        # Human blink intervals: a floor of ~1.5 s plus an exponential tail.
        floor = 1.5 * FPS
        return floor + self._rng.exponential(max(1.0, self._mean_blink_frames - floor))

    def plan_now(self, context: DirectorContext) -> Storyline:
        """Synchronous planning (the rules are instant); used directly as the fallback."""
        start, end = context.from_frame, context.to_frame
        if context.persona != self._persona:  # a new persona is the latest standing instruction
            self._persona, self._mood = context.persona, persona_standing(context.persona)
        for text in context.new_instructions:
            reading = read_instruction(text, start)
            if reading.release:
                self._commands = []
            self._mood = reading.mood or self._mood
            self._commands += reading.beats
        self._commands = [b for b in self._commands if b.end_frame > start]
        while self._next_blink < end:
            self._blinks.append(self._next_blink)
            self._next_blink += int(self._draw_interval())
        self._blinks = [b for b in self._blinks if b >= start - FPS]
        beats = [self._mood.beat(start, end)]
        beats += [b for b in self._commands if b.start_frame < end]
        beats += [StoryBeat(b, b + 8, blink=True, note="blink") for b in self._blinks if start <= b < end]
        return Storyline(start, end, beats, source=self.name)

    async def plan(self, context: DirectorContext) -> Storyline:
        return self.plan_now(context)


def command_beats(text: str, start_frame: int) -> list[StoryBeat]:
    """The beats a host command asks for, starting at start_frame (in the order they match)."""
    return [_beat(rule, text, start_frame) for rule in COMMANDS if re.search(rule.pattern, text, re.IGNORECASE)]


def _beat(rule: Rule, text: str, start_frame: int) -> StoryBeat:
    return StoryBeat(start_frame, start_frame + int(rule.seconds * FPS), rule.emotion, rule.intensity,
                     rule.head_motion, expression=rule.expression, gaze=rule.gaze, note=f"command: {text[:60]}")
