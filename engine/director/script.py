"""A scripted show: beats from a JSON file, on the media clock, with the rule director's blinks.

The words are the LLM director's (engine.director.schema); the beats are absolute and unbounded in
number, where a model's plan covers a few seconds.

    {"beats": [{"start_s": 1.0, "end_s": 3.0, "emotion": "happy", "intensity": 0.8,
                "expression": "smile", "head_motion": "nod", "gaze": "camera", "note": "greeting"}]}
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine.director.base import EMOTIONS, HEAD_MOTIONS, DirectorContext
from engine.director.rules import RuleDirector
from engine.director.schema import EXPRESSIONS as LLM_EXPRESSIONS
from engine.director.schema import GAZES
from engine.types import FPS, StoryBeat, Storyline

# The model's vocabulary (engine.director.schema); a script may also leave the expression out.
EXPRESSIONS = ("", *LLM_EXPRESSIONS)


class ScriptBeat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)
    emotion: str = ""
    intensity: float = Field(default=0.8, ge=0, le=1)
    expression: str = ""
    head_motion: str = "idle"
    gaze: str = "camera"
    note: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _check(self) -> ScriptBeat:
        if self.end_s <= self.start_s:
            raise ValueError(f"end_s {self.end_s} must be after start_s {self.start_s}")
        for name, value, allowed in (("emotion", self.emotion, ("", *EMOTIONS)),
                                     ("expression", self.expression, EXPRESSIONS),
                                     ("head_motion", self.head_motion, HEAD_MOTIONS), ("gaze", self.gaze, GAZES)):
            if value not in allowed:
                raise ValueError(f"{name} {value!r} is not one of {', '.join(repr(a) for a in allowed)}")
        return self


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid")

    beats: list[ScriptBeat]


def load_script(path: str | Path) -> list[StoryBeat]:
    try:
        script = Script.model_validate(json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the storyline ({e})") from e
    except ValidationError as e:
        raise ValueError(f"{path}: invalid storyline: {e}") from e
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
