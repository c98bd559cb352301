"""A generator as another package would ship it: flat colour frames, its capabilities on the class.

tests/test_registry.py registers it in code and through an entry point (`tests.plugin_generator:SolidGenerator`).
"""

from __future__ import annotations

import numpy as np

from engine.backends import GeneratorCapabilities
from engine.generator import PreparedAvatar
from engine.types import N_CONTROLS, FirstFrame, MotionWindow, RenderedWindow

COLOUR = (30, 160, 90)


class SolidGenerator:
    name = "solid"
    capabilities = GeneratorCapabilities(description="flat colour frames (a test plugin)", shareable=True)

    def __init__(self, avatar: PreparedAvatar, threads: int = 1) -> None:
        self.picture = np.empty_like(avatar.rgb)
        self.picture[:] = COLOUR

    def first_frame(self) -> FirstFrame:
        return FirstFrame(-1, self.picture, np.zeros(N_CONTROLS, np.float32))

    def render(self, window: MotionWindow, condition: FirstFrame) -> tuple[RenderedWindow, FirstFrame]:
        frames = np.repeat(self.picture[None], window.n_frames, axis=0)
        rendered = RenderedWindow(window.start_frame, frames, window.audio, created_t_s=window.created_t_s)
        return rendered, FirstFrame(rendered.end_frame - 1, frames[-1], window.controls[-1])
