"""The director protocol: context in, storyline out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from engine.audio.prosody import Prosody
from engine.types import Storyline


@dataclass
class DirectorContext:
    """What a director may look at when it plans [from_frame, to_frame)."""

    from_frame: int
    to_frame: int
    prosody: Prosody | None = None  # of the recent speech (the last ~2 s)
    instructions: list[str] = field(default_factory=list)  # recent host instructions (data, never prompt)
    persona: str = ""
    new_instructions: list[str] = field(default_factory=list)  # those that arrived since the last plan
    transcript: str = ""  # what the host said recently, when known (data, never prompt)
    image_jpeg: bytes | None = None  # the portrait, for directors that look at it (vision models)
    audio_wav: bytes | None = None  # the recent speech as WAV, for omni models or transcription


@runtime_checkable
class Director(Protocol):
    name: str

    async def plan(self, context: DirectorContext) -> Storyline:
        """Return beats covering [context.from_frame, context.to_frame)."""
        ...


@runtime_checkable
class InstantDirector(Protocol):
    """A director that plans synchronously in microseconds: usable as the fallback."""

    name: str

    def plan_now(self, context: DirectorContext) -> Storyline: ...
