"""The typed units that flow between the engine's stages, one per hop.

Everything is stamped on the session's media clock: audio sample index at 48 kHz, and video
frame k covers samples [1000k, 1000k + 1000) (see DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from engine.vocabulary import Emotion, Expression, Gaze, HeadMotion

SAMPLE_RATE_HZ = 48_000
FPS = 48
SAMPLES_PER_FRAME = SAMPLE_RATE_HZ // FPS  # 1000


@dataclass(slots=True)
class FeatureFrame:
    """Audio features of one video frame (audio -> blueprint, director)."""

    frame_index: int
    rms: float  # linear RMS of the frame's 1000 samples
    energy_db: float  # 20*log10(rms), floored at -100
    voice_activity: float  # 0..1, probability that the host is speaking
    audio: np.ndarray  # (1000,) float32, the frame's own samples, carried so output stays in sync
    filled: bool = False  # True when the samples were missing and silence stands in
    visemes: np.ndarray = field(default_factory=lambda: np.full(5, 0.2, np.float32))  # A I U E O weights
    pitch_hz: float = 0.0  # 0 when unvoiced
    arrived_t_s: float = 0.0  # monotonic time its last sample arrived (or silence stood in)
    mfcc: np.ndarray | None = None  # (13,) of the last 25 ms

    def __str__(self) -> str:
        return f"FeatureFrame#{self.frame_index} {self.energy_db:.0f}dB vad={self.voice_activity:.2f}"


@dataclass(slots=True)
class StoryBeat:
    """One timed beat of the storyline (director -> blueprint)."""

    start_frame: int
    end_frame: int
    emotion: Emotion | None = Emotion.NEUTRAL  # None (or "") keeps the mood of the beats under it (a gesture alone)
    intensity: float = 0.0  # 0..1
    head_motion: HeadMotion = HeadMotion.IDLE
    blink: bool = False  # a single blink starting at start_frame
    note: str = ""
    expression: Expression = Expression.NEUTRAL  # on top of the emotion ("" is neutral)
    gaze: Gaze = Gaze.CAMERA

    def __post_init__(self) -> None:
        # Words may arrive as plain strings (a plugin director, a test): checked here, so a misspelt one
        # raises at once, naming the allowed words, instead of never showing.
        self.emotion = Emotion(self.emotion) if self.emotion else None
        self.head_motion = HeadMotion(self.head_motion)
        self.expression = Expression(self.expression or Expression.NEUTRAL)
        self.gaze = Gaze(self.gaze)

    def __str__(self) -> str:
        return f"Beat[{self.start_frame}:{self.end_frame}] {self.emotion} {self.head_motion}"


@dataclass(slots=True)
class Storyline:
    """The director's rolling plan: beats covering [planned_from_frame, planned_to_frame)."""

    planned_from_frame: int
    planned_to_frame: int
    beats: list[StoryBeat] = field(default_factory=list)
    source: str = "rules"


class Control(IntEnum):
    """Rig controls, one column each in a MotionWindow; `engine/generator/rig.py` documents what
    each one moves. Unit ranges unless stated; head angles in degrees."""

    JAW_OPEN = 0  # 0 closed .. 1 fully open (lower lip and chin drop, the mouth interior shows)
    MOUTH_WIDTH = 1  # -1 narrow .. 1 wide (stretched lips, as in /i/ /e/)
    MOUTH_ROUND = 2  # 0 .. 1 rounded, corners drawn in (as in /u/ /o/)
    LIP_PRESS = 3  # 0 .. 1 lips pressed together and thinned (/m/ /b/ /p/, determination)
    SMILE = 4  # 0 .. 1 mouth corners up and out
    BROW_RAISE = 5  # -1 furrow (brows down) .. 1 raised (surprise)
    BLINK_LEFT = 6  # 0 open .. 1 closed, the eye on the image's left
    BLINK_RIGHT = 7  # ... on the image's right
    GAZE_X = 8  # -1 .. 1 irises toward the image's left .. right
    GAZE_Y = 9  # -1 up .. 1 down
    HEAD_YAW = 10  # degrees, + turns toward the image's right
    HEAD_PITCH = 11  # degrees, + looks down (nod)
    HEAD_ROLL = 12  # degrees, + tilts clockwise
    BREATH = 13  # 0 exhaled .. 1 inhaled: the head and shoulders rise a little


N_CONTROLS = len(Control)


@dataclass(slots=True)
class MotionWindow:
    """Per-frame rig controls for frames [start_frame, start_frame + N) (blueprint -> generator)."""

    start_frame: int
    controls: np.ndarray  # (N, N_CONTROLS) float32
    audio: np.ndarray  # (N * 1000,) float32, the audio these frames show
    created_t_s: float = 0.0  # monotonic time the last audio of the window was ready

    @property
    def n_frames(self) -> int:
        return int(self.controls.shape[0])

    def __str__(self) -> str:
        return f"MotionWindow[{self.start_frame}:{self.start_frame + self.n_frames}]"


@dataclass(slots=True)
class FirstFrame:
    """The condition a window starts from: the previous window's last frame and its controls."""

    frame_index: int
    rgb: np.ndarray  # (H, W, 3) uint8
    controls: np.ndarray  # (N_CONTROLS,) float32
    # How much the host was talking up to that frame: a decaying hold of the jaw (warp.talking_hold). A generator's
    # state that outlives a window, carried by the condition: one generator serves every session of its avatar.
    talking: float = 0.0


@dataclass(slots=True)
class RenderedWindow:
    """Rendered frames and their audio (generator -> pacer / egress)."""

    start_frame: int
    frames_rgb: np.ndarray  # (N, H, W, 3) uint8
    audio: np.ndarray  # (N * 1000,) float32 mono at 48 kHz
    render_ms: float = 0.0
    created_t_s: float = 0.0  # copied from the MotionWindow, for latency accounting
    frames_i420: np.ndarray | None = None  # (N, H * 3 // 2, W) uint8 planar YUV 4:2:0, what encoders take
    # (N, H, W) uint8: the person's coverage of each frame (0 background, 255 person), made only when asked
    # (a keyed background, streaming/keying.py); None: not made, the still portrait's alpha stands in.
    alpha_frames: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.frames_rgb.shape[0])

    @property
    def end_frame(self) -> int:
        return self.start_frame + self.n_frames

    def __str__(self) -> str:
        return f"RenderedWindow[{self.start_frame}:{self.end_frame}] {self.render_ms:.1f}ms"
