"""The storyline's words: closed vocabularies, one StrEnum each.

Text becomes a member where it enters the engine (a storyline file, a model's reply, a StoryBeat built
from plain strings), so a misspelt word fails there, naming the words allowed, instead of silently
doing nothing. Members are strings: `Emotion.HAPPY == "happy"`, and they serialise as their words.
"""

from __future__ import annotations

import re
from enum import StrEnum, auto


class Vocabulary(StrEnum):
    """A closed set of words. `Emotion("furious")` raises a ValueError listing the allowed words."""

    @classmethod
    def _missing_(cls, value: object) -> Vocabulary:
        raise ValueError(f"{cls.label()} {value!r} is not one of: {cls.words()}")

    @classmethod
    def label(cls) -> str:
        """The vocabulary's name in messages: HeadMotion -> "head motion"."""
        return re.sub(r"(?<!^)(?=[A-Z])", " ", cls.__name__).lower()

    @classmethod
    def words(cls) -> str:
        return ", ".join(cls)


class Emotion(Vocabulary):
    """The mood: smile and brow targets (engine.blueprint.EMOTION_TARGETS), scaled by the beat's intensity."""

    NEUTRAL = auto()
    HAPPY = auto()
    EXCITED = auto()
    CALM = auto()
    SURPRISED = auto()
    SERIOUS = auto()
    SAD = auto()


class Expression(Vocabulary):
    """A facial expression on top of the mood (engine.blueprint.EXPRESSION_TARGETS); neutral adds none."""

    NEUTRAL = auto()
    SMILE = auto()
    GRIN = auto()
    FROWN = auto()
    RAISED_BROWS = auto()
    POUT = auto()


class HeadMotion(Vocabulary):
    """A head gesture over the beat (engine.blueprint.head_motion_deg); idle leaves the slow sway alone."""

    IDLE = auto()
    NOD = auto()
    SHAKE = auto()
    TILT = auto()
    TURN = auto()


class Gaze(Vocabulary):
    """Where the eyes look (engine.blueprint.GAZE_TARGETS); product is down and to the image's left."""

    CAMERA = auto()
    LEFT = auto()
    RIGHT = auto()
    UP = auto()
    DOWN = auto()
    PRODUCT = auto()


class SpeakingStyle(Vocabulary):
    """How the host speaks, as a model director reads it: kept in the beat's note (no control yet)."""

    CALM = auto()
    ENERGETIC = auto()
    WARM = auto()
    SERIOUS = auto()
    PLAYFUL = auto()
    WHISPER = auto()
