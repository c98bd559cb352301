"""The generator protocol. Implementations are synchronous; the session runs them off the event loop."""

from __future__ import annotations

from typing import Protocol

from engine.types import FirstFrame, MotionWindow, RenderedWindow


class Generator(Protocol):
    name: str

    def first_frame(self) -> FirstFrame:
        """The condition for the very first window: the still portrait at neutral controls."""
        ...

    def render(self, window: MotionWindow, condition: FirstFrame) -> tuple[RenderedWindow, FirstFrame]:
        """Render the window from `condition`; return it and the condition for the next window."""
        ...
