"""A scripted show: beats from a JSON file, on the media clock, with the rule director's blinks.

The words are the model director's (engine.vocabulary); the beats are absolute and unbounded in
number, where a model's plan covers a few seconds.

    {"beats": [{"start_s": 1.0, "end_s": 3.0, "emotion": "happy", "intensity": 0.8,
                "expression": "smile", "head_motion": "nod", "gaze": "camera", "note": "greeting"}]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from engine.director.base import DirectorContext
from engine.director.rules import RuleDirector
from engine.types import FPS, StoryBeat, Storyline
from engine.vocabulary import Emotion, Expression, Gaze, HeadMotion


def _empty_means(default: Any) -> BeforeValidator:
    """An empty string is how files left a word out before words had defaults: it still means the default."""
    return BeforeValidator(lambda value: default if value == "" else value)


class ScriptBeat(BaseModel):
    """One beat of the file. The words are the model director's (engine.vocabulary); an emotion left out
    keeps the mood of the beats under it."""

    model_config = ConfigDict(extra="forbid")

    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)
    emotion: Annotated[Emotion | None, _empty_means(None)] = None
    intensity: float = Field(default=0.8, ge=0, le=1)
    expression: Annotated[Expression, _empty_means(Expression.NEUTRAL)] = Expression.NEUTRAL
    head_motion: HeadMotion = HeadMotion.IDLE
    gaze: Gaze = Gaze.CAMERA
    note: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _check(self) -> ScriptBeat:
        if self.end_s <= self.start_s:
            raise ValueError(f"end_s {self.end_s} must be after start_s {self.start_s}")
        return self


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid")

    beats: list[ScriptBeat]


def _problems(error: ValidationError) -> str:
    """Pydantic's errors as "beats[3]: emotion: Input should be 'neutral', 'happy', ... (got 'furious')"."""
    out = []
    for e in error.errors():
        loc = [str(p) for p in e["loc"]]
        where = f"beats[{loc[1]}]" if loc[:1] == ["beats"] and len(loc) > 1 else ".".join(loc) or "the file"
        field = ".".join(loc[2:])
        out.append(f"{where}: {field}: {e['msg']} (got {e['input']!r})" if field else
                   f"{where}: {e['msg'].removeprefix('Value error, ')}")
    return "; ".join(out)


def load_script(path: str | Path) -> list[StoryBeat]:
    """The file's beats on the media clock; a ValueError naming the file, the beat (its index) and the allowed words."""
    try:
        script = Script.model_validate(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the storyline ({e})") from e
    except ValidationError as e:
        raise ValueError(f"{path}: invalid storyline: {_problems(e)}") from e
    return [StoryBeat(round(b.start_s * FPS), round(b.end_s * FPS), b.emotion, b.intensity, b.head_motion,
                      note=b.note, expression=b.expression, gaze=b.gaze) for b in script.beats]


class ScriptDirector:
    name = "script"

    def __init__(self, beats: list[StoryBeat], seed: int = 0) -> None:
        self.beats = sorted(beats, key=lambda b: b.start_frame)
        self._rules = RuleDirector(seed=seed)  # blinks, persona mood and live commands still apply

    def plan_now(self, context: DirectorContext) -> Storyline:
        story = self._rules.plan_now(context)
        baseline, rest = story.beats[:1], story.beats[1:]
        scripted = [b for b in self.beats if b.end_frame > context.from_frame and b.start_frame < context.to_frame]
        return Storyline(story.planned_from_frame, story.planned_to_frame, baseline + scripted + rest, self.name)

    async def plan(self, context: DirectorContext) -> Storyline:
        return self.plan_now(context)
