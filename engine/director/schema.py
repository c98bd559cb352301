"""The storyline an LLM director returns: a pydantic model, its JSON Schema, and the converter to engine beats.

The model speaks seconds relative to the start of the plan (language models handle seconds better than
frame numbers); `to_storyline` puts the beats on the session's media clock (48 fps) and clamps them to the
planned interval. Every value comes from a closed vocabulary or a bounded range, so a schema-valid reply is
always safe to show. A reply that is not valid JSON, or that breaks the schema, is discarded whole
(`StorylineError`): no half-parsed plan reaches the picture.

Beats carry a start and a duration (not an end), so that every schema-valid beat has a positive length;
a constrained decoder can enforce that, it cannot enforce end > start.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from engine.types import FPS, StoryBeat, Storyline
from engine.vocabulary import Emotion, Expression, Gaze, HeadMotion, SpeakingStyle, Vocabulary

MAX_BEATS = 6
MAX_START_S = 30.0
MIN_DURATION_S, MAX_DURATION_S = 0.1, 10.0
MIN_BLINKS_PER_MIN, MAX_BLINKS_PER_MIN = 4.0, 40.0  # what the picture shows; the schema allows 0..60
DEFAULT_BLINKS_PER_MIN = 15.0  # where no beat says otherwise
NOTE_MAX_CHARS = 80
BLINK_FRAMES = 8  # a blink beat's length

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class StorylineError(ValueError):
    """The director's reply is not a valid storyline; it is discarded whole."""


def _clamp(lo: float, hi: float):
    def clamp(value: Any) -> Any:
        # Numbers only (bool is an int in Python, and no number); anything else fails validation below.
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError("not a finite number")
            return min(hi, max(lo, float(value)))
        return value

    return BeforeValidator(clamp)


def _word(vocabulary: type[Vocabulary]) -> BeforeValidator:
    """A word of `vocabulary`, compared case- and space-insensitively ("Raised Brows" -> raised_brows);
    an unknown one fails validation with a message that lists the allowed words."""

    def lookup(value: Any) -> Any:
        if isinstance(value, str):
            return vocabulary(value.strip().lower().replace(" ", "_").replace("-", "_"))
        return value  # not a string: the strict enum check rejects it

    return BeforeValidator(lookup)


def _note(value: Any) -> Any:
    if isinstance(value, str):
        return _CONTROL_CHARS.sub(" ", value).strip()[:NOTE_MAX_CHARS]
    return value


class LlmBeat(BaseModel):
    """One beat as the model writes it. Out-of-range numbers are clamped; unknown words are invalid."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # Field constraints first: they become the schema's minimum/maximum, and the clamp runs before them.
    start_s: Annotated[float, Field(ge=0.0, le=MAX_START_S, description="seconds after the plan start"),
                       _clamp(0.0, MAX_START_S)]
    duration_s: Annotated[float, Field(ge=MIN_DURATION_S, le=MAX_DURATION_S, description="seconds"),
                          _clamp(MIN_DURATION_S, MAX_DURATION_S)]
    emotion: Annotated[Emotion, _word(Emotion)]
    intensity: Annotated[float, Field(ge=0.0, le=1.0), _clamp(0.0, 1.0)]
    expression: Annotated[Expression, _word(Expression)]
    head_motion: Annotated[HeadMotion, _word(HeadMotion)]
    gaze: Annotated[Gaze, _word(Gaze)]
    blink_rate_per_min: Annotated[float, Field(ge=0.0, le=60.0), _clamp(0.0, 60.0)]
    speaking_style: Annotated[SpeakingStyle, _word(SpeakingStyle)]
    note: Annotated[str, Field(max_length=NOTE_MAX_CHARS, description="a few words: why"), BeforeValidator(_note)]


class LlmStoryline(BaseModel):
    """The whole reply: the beats of the next few seconds, in any order, possibly overlapping
    (a later beat's mood wins where they overlap)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    beats: list[LlmBeat] = Field(min_length=1, max_length=MAX_BEATS)


def storyline_json_schema(horizon_s: float | None = None) -> dict[str, Any]:
    """JSON Schema of the reply (self-contained, every property required, no extra properties: it
    works with OpenAI's strict mode, vLLM's guided decoding and llama.cpp's json_object schema).
    With `horizon_s`, beats must also start inside the plan, so a constrained decoder cannot plan past it."""
    schema = copy.deepcopy(_SCHEMA)
    for prop in schema["$defs"]["LlmBeat"]["properties"].values():
        if prop.get("type") == "number":
            # Two decimals are plenty; without this a constrained decoder may spend many tokens on digits.
            # (Only the exported schema says so: the parser accepts any finite number and clamps it.)
            prop["multipleOf"] = 0.01
    if horizon_s is not None:
        start = schema["$defs"]["LlmBeat"]["properties"]["start_s"]
        start["maximum"] = max(0.0, round(min(MAX_START_S, horizon_s) - 2.0 / FPS, 2))
    return schema


def _build_schema() -> dict[str, Any]:
    schema = LlmStoryline.model_json_schema()
    # Vocabularies inline, as {"type": "string", "enum": [...]}: what every constrained decoder takes.
    # (Only the words: the enums' docstrings are notes for us, not for the model.)
    defs = schema["$defs"]
    for prop in defs["LlmBeat"]["properties"].values():
        if "$ref" in prop:
            vocabulary = defs[prop.pop("$ref").removeprefix("#/$defs/")]
            prop.update(type="string", enum=vocabulary["enum"])
    schema["$defs"] = {"LlmBeat": defs["LlmBeat"]}
    for model in (schema, schema["$defs"]["LlmBeat"]):
        model["additionalProperties"] = False
        model["required"] = list(model["properties"])
        model.pop("title", None)
        for prop in model["properties"].values():
            prop.pop("title", None)
    return schema


_SCHEMA = _build_schema()

_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)
_THINK = re.compile(r"^\s*<think>.*?</think>", re.DOTALL)


def _reject_constant(name: str) -> Any:
    raise StorylineError(f"non-finite number {name} in the reply")


def parse_reply(text: str | None) -> LlmStoryline:
    """The model's reply text -> a validated storyline, or StorylineError. Tolerates a reasoning
    preamble (<think>...</think>), Markdown code fences and prose around one JSON object; the object
    itself is parsed strictly (no NaN/Infinity, no control characters inside strings)."""
    if not text or not text.strip():
        raise StorylineError("empty reply")
    body = _THINK.sub("", text).strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    if not body.startswith("{"):
        first, last = body.find("{"), body.rfind("}")
        if first < 0 or last < first:
            raise StorylineError(f"no JSON object in the reply: {text[:80]!r}")
        body = body[first : last + 1]
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise StorylineError(f"reply is not valid JSON: {e}") from None
    return validate(data)


def validate(data: Any) -> LlmStoryline:
    """A decoded JSON value -> a validated storyline, or StorylineError."""
    if not isinstance(data, dict):
        raise StorylineError(f"reply is a JSON {type(data).__name__}, not an object")
    try:
        return LlmStoryline.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise StorylineError(f"reply breaks the schema ({e.error_count()} errors; first at {where}: "
                             f"{first['msg']})") from None


def blink_frames(from_frame: int, to_frame: int, rate_at: Callable[[int], float]) -> list[int]:
    """Blink start frames in [from_frame - 7, to_frame) (a blink already under way when the plan starts
    goes on). They sit on a grid of the media clock, so overlapping re-plans with the same rate put
    blinks on the same frames. `rate_at(frame)` gives blinks per minute; blinks are >= 1.2 s apart."""
    frames: list[int] = []
    min_gap = round(1.2 * FPS)
    for k in range(from_frame - BLINK_FRAMES + 1, to_frame):
        rate = min(MAX_BLINKS_PER_MIN, max(MIN_BLINKS_PER_MIN, rate_at(max(k, from_frame))))
        interval = max(min_gap, round(60.0 * FPS / rate))
        if (k - interval // 3) % interval == 0 and (not frames or k - frames[-1] >= min_gap):
            frames.append(k)
    return frames


def to_storyline(story: LlmStoryline, from_frame: int, to_frame: int, source: str = "vllm") -> Storyline:
    """Put the model's beats on the media clock, clamped to [from_frame, to_frame). Beats that start at or
    after to_frame are dropped; if none is left the plan is invalid (StorylineError). Blinks come from
    the beats' blink rates (a default rate where no beat is)."""
    if to_frame <= from_frame:
        raise StorylineError(f"empty plan interval [{from_frame}, {to_frame})")
    beats: list[StoryBeat] = []
    spans: list[tuple[int, int, float]] = []
    for b in sorted(story.beats, key=lambda b: b.start_s):
        start = from_frame + round(b.start_s * FPS)
        if start >= to_frame:
            continue
        end = min(to_frame, max(start + 1, start + round(b.duration_s * FPS)))
        note = f"{b.speaking_style}: {b.note}" if b.note else b.speaking_style
        beats.append(StoryBeat(start, end, emotion=b.emotion, intensity=float(b.intensity), head_motion=b.head_motion,
                               note=note[:NOTE_MAX_CHARS], expression=b.expression, gaze=b.gaze))
        spans.append((start, end, b.blink_rate_per_min))
    if not beats:
        raise StorylineError("no beat starts inside the plan interval")

    def rate_at(frame: int) -> float:
        rate = DEFAULT_BLINKS_PER_MIN
        for start, end, r in spans:  # the latest-starting beat covering the frame wins, as for the mood
            if start <= frame < end:
                rate = r
        return min(MAX_BLINKS_PER_MIN, max(MIN_BLINKS_PER_MIN, rate))

    blinks = blink_frames(from_frame, to_frame, rate_at)
    beats += [StoryBeat(f, f + BLINK_FRAMES, emotion=None, blink=True, note="blink") for f in blinks]
    return Storyline(from_frame, to_frame, beats, source=source)
