"""The generator protocol. Implementations are synchronous; the session runs them off the event loop.

A generator registered as shareable (engine.backends.GeneratorCapabilities) serves several sessions at
once: render() must then be safe to call from several threads together, keeping nothing between calls
(the session carries the condition from one window to the next).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from engine.types import FirstFrame, MotionWindow, RenderedWindow


@runtime_checkable
class Generator(Protocol):
    name: str

    def first_frame(self) -> FirstFrame:
        """The condition for the very first window: the still portrait at neutral controls."""
        ...

    def render(self, window: MotionWindow, condition: FirstFrame) -> tuple[RenderedWindow, FirstFrame]:
        """Render the window from `condition`; return it and the condition for the next window."""
        ...
