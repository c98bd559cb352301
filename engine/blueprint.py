"""Blueprint: storyline + audio features -> per-frame rig controls (the paper's blueprint video).

Storyline-driven controls (blinks, head motion, expression targets) are laid out as keyframes
for the whole planned horizon whenever a storyline arrives; audio-driven controls (the jaw)
are added per window as its features come in. Filters carry state from window to window, so
the motion is continuous across windows and across re-plans.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from engine.audio.visemes import SHAPE_MATRIX
from engine.idle import IdleMotion
from engine.types import FPS, N_CONTROLS, Control, FeatureFrame, MotionWindow, Storyline
from engine.vocabulary import Emotion, Expression, Gaze, HeadMotion

# A blink at 48 fps, as Live2D Cubism's eye blink and Trutoiu et al. (ACM TAP 2011) time it: the lid closes
# in ~0.10 s, accelerating (5 frames), holds ~0.05 s (3 frames: 4-6 at 1.0), and opens more slowly,
# ~0.15 s (7 frames), easing out. A blink is a point event: its whole curve is laid out from the beat's
# start, whatever the beat's length.
BLINK_CURVE = np.array([0.15, 0.4, 0.7, 0.92, 1.0, 1.0, 1.0, 0.88, 0.7, 0.52, 0.35, 0.2, 0.09, 0.02], np.float32)
# About one blink in seven is a double blink (TalkingHead: 85 % single, 15 % double): the lid closes
# again before it has opened; which ones is drawn from the blink's frame, so re-plans agree.
DOUBLE_BLINK_SHARE = 0.15
DOUBLE_BLINK_GAP = 10  # frames from the first close to the second


def blink_curve(start_frame: int) -> np.ndarray:
    """The blink starting at start_frame: single, or (DOUBLE_BLINK_SHARE of them) double."""
    if np.random.default_rng(start_frame).random() >= DOUBLE_BLINK_SHARE:
        return BLINK_CURVE
    curve = np.zeros(DOUBLE_BLINK_GAP + len(BLINK_CURVE), np.float32)
    curve[: len(BLINK_CURVE)] = BLINK_CURVE
    curve[DOUBLE_BLINK_GAP:] = np.maximum(curve[DOUBLE_BLINK_GAP:], BLINK_CURVE)
    return curve

# The jaw: a loud open vowel opens it this far (1 is a shout); steps larger than JAW_BIG_STEP move at the full
# attack/release, smaller ones more calmly; below SILENT_DB the sound has stopped and the lips shut.
# 0.85, not less: on a small face (anne_helene, 33 px between the eyes) a smaller opening is lost in the face
# mesh's noise and the lip gap no longer follows the voice (r 0.38 at 0.7, 0.75 at 0.85; benchmarks.realism).
JAW_SPEECH_MAX, JAW_BIG_STEP, SILENT_DB = 0.85, 0.25, -50.0
# Anticipation from closed lips: none. The frame before a loud onset is silent, and the face mesh reads any drop
# of the jaw there, lips touching or not, as lips apart on a small face: on hopper_lowres_160 (27 px between the
# eyes, its idle poses: breath 0-0.5 px, roll), the median lip gap read on that frame was 0.62 px at rest, 0.71 at
# jaw 0.03, 0.78 at 0.04, 1.01 at 0.08 (round 8's cap, under which the rig's lips were 0.03 mouth half-widths apart);
# 14 of 27 poses read open (>= 1 px, benchmarks.realism) at 0.08, 1 at rest. So from lips together (a jaw under
# LIPS_TOGETHER_JAW, where the rig's opening reaches mouth.SEAL) the jaw waits for the sound; inside speech it
# anticipates a louder syllable in full.
# Lip sync on the real voice (benchmarks.realism, seed 0): hopper_lowres_160 r 0.888 -> 0.888 (lag 0), anne_helene
# 0.865 -> 0.879 (lag 0 -> +1), hopper 0.907 -> 0.907 (lag 0 -> +1), meeting_darker_skin, the weakest, 0.681 -> 0.674
# (lag +1).
LIPS_TOGETHER_JAW = 0.08

# An emphasis nod on a stressed syllable: head pitch in degrees per frame (down, then back, ~0.3 s).
NOD_CURVE = np.array([0.3, 0.8, 1.3, 1.7, 1.9, 1.9, 1.7, 1.4, 1.1, 0.8, 0.5, 0.3, 0.15, 0.05], np.float32)

# The tables below cover every word of their vocabulary (tests/test_vocabulary.py checks): a word
# without an entry is a KeyError, never a silent default.

# Expression targets per emotion: (smile, brow raise).
EMOTION_TARGETS: dict[Emotion, tuple[float, float]] = {
    Emotion.NEUTRAL: (0.0, 0.0), Emotion.HAPPY: (0.7, 0.15), Emotion.EXCITED: (0.8, 0.4), Emotion.CALM: (0.2, 0.0),
    Emotion.SURPRISED: (0.1, 0.9), Emotion.SERIOUS: (0.0, -0.4), Emotion.SAD: (0.0, -0.2),
}

# Facial expressions on top of the emotion: control -> value.
EXPRESSION_TARGETS: dict[Expression, dict[Control, float]] = {
    Expression.NEUTRAL: {}, Expression.SMILE: {Control.SMILE: 0.8},
    Expression.GRIN: {Control.SMILE: 1.0, Control.MOUTH_WIDTH: 0.4},
    Expression.FROWN: {Control.BROW_RAISE: -0.8, Control.LIP_PRESS: 0.4},
    Expression.RAISED_BROWS: {Control.BROW_RAISE: 1.0},
    Expression.POUT: {Control.MOUTH_ROUND: 0.8, Control.LIP_PRESS: 0.3},
}
# The controls the storyline sets as held targets: eased toward them frame by frame, so a beat's start
# or end never jumps (the mouth's width and rounding get the speech shape added on top).
EXPRESSION_CONTROLS = [Control.SMILE, Control.BROW_RAISE, Control.MOUTH_WIDTH, Control.MOUTH_ROUND, Control.LIP_PRESS]
_WIDTH, _ROUND = EXPRESSION_CONTROLS.index(Control.MOUTH_WIDTH), EXPRESSION_CONTROLS.index(Control.MOUTH_ROUND)
GAZE_TARGETS: dict[Gaze, tuple[float, float]] = {
    Gaze.CAMERA: (0.0, 0.0), Gaze.LEFT: (-0.8, 0.0), Gaze.RIGHT: (0.8, 0.0), Gaze.UP: (0.0, -0.7),
    Gaze.DOWN: (0.0, 0.7), Gaze.PRODUCT: (-0.4, 0.6),
}


def ease_in_out(t_s: np.ndarray, duration_s: float, ramp_s: float = 0.25) -> np.ndarray:
    """0 -> 1 over ramp_s, held, back to 0 over the last ramp_s of duration_s (smooth both ways)."""
    ramp = min(ramp_s, duration_s / 2)
    up = np.clip(t_s / ramp, 0, 1)
    down = np.clip((duration_s - t_s) / ramp, 0, 1)
    x = np.minimum(up, down)
    return x * x * (3 - 2 * x)


def head_motion_deg(kind: HeadMotion, t_s: np.ndarray, duration_s: float,
                    intensity: float) -> tuple[Control, np.ndarray]:
    """A beat's head gesture as (control, degrees per frame) at times t_s since the beat started."""
    a = 0.4 + 0.6 * intensity
    span = min(duration_s, 1.0)  # nods and shakes: at most two cycles, then stillness
    inside = (t_s < span).astype(np.float32)
    match kind:
        case HeadMotion.IDLE:
            return Control.HEAD_YAW, np.zeros_like(t_s)
        case HeadMotion.NOD:
            return Control.HEAD_PITCH, a * 5.0 * np.sin(np.pi * t_s / 0.5) ** 2 * inside
        case HeadMotion.SHAKE:
            return Control.HEAD_YAW, a * 6.0 * np.sin(2 * np.pi * t_s / 0.5) * np.sin(np.pi * t_s / span) * inside
        case HeadMotion.TILT:
            return Control.HEAD_ROLL, a * 6.0 * ease_in_out(t_s, duration_s)
        case HeadMotion.TURN:
            return Control.HEAD_YAW, a * 8.0 * ease_in_out(t_s, duration_s)
    raise ValueError(f"no head motion for {kind!r}")  # a HeadMotion member without a case above


def idle_head_deg(frame_index: np.ndarray, seed: int = 0) -> np.ndarray:
    """The idle layer's head motion (yaw, pitch, roll in degrees) at these frames (engine/idle.py)."""
    return _idle_of(seed).controls(frame_index)[:, [Control.HEAD_YAW, Control.HEAD_PITCH, Control.HEAD_ROLL]]


@functools.lru_cache(maxsize=8)
def _idle_of(seed: int) -> IdleMotion:
    return IdleMotion(seed)  # one per seed, so its computed block serves the next call (benchmarks call per window)


class Blueprint:
    def __init__(self, lookahead_frames: int = 1, jaw_attack: float = 0.7, jaw_release: float = 0.45,
                 nod_scale: float = 1.0, stress_db: float = 5.0, min_nod_gap_s: float = 0.8, jaw_cut: float = 0.75,
                 seed: int = 0, jaw_coart_release: float = 0.25, jaw_steady_rate: float = 0.35,
                 head_prosody_deg: float = 1.2) -> None:
        self.lookahead_frames = lookahead_frames  # how far ahead the jaw may anticipate a loud onset
        self.jaw_attack = jaw_attack  # share of the way to a higher target taken per frame
        self.jaw_release = jaw_release  # ... to a lower one: slower, so syllables do not flicker
        # ... when the audio has stopped altogether (no samples: an interrupt, the end of pushed speech): the
        # mouth shuts with the sound, within two frames, instead of trailing it by syllable-length decay.
        self.jaw_cut = jaw_cut
        # Co-articulation: inside speech (a consonant, a short dip of loudness that is still sound) the jaw
        # eases down slowly instead of shutting on every syllable like a puppet's; where the sound is gone
        # (below SILENT_DB) it shuts at jaw_release, so the lips still close in a pause.
        self.jaw_coart_release = jaw_coart_release
        # Small steps (loudness wobble on a held vowel) are smoothed more than big ones (an onset): the mouth
        # holds still on a steady vowel without lagging an onset (an adaptive rate, after the One Euro filter).
        self.jaw_steady_rate = jaw_steady_rate
        self.head_prosody_deg = head_prosody_deg  # head pitch that follows the voice's pitch and loudness
        self._prosody = np.zeros(2, np.float32)  # eased (F0 rise, loudness rise) over the running speech levels
        self._f0_hz = 0.0  # running F0 of voiced frames (0: none heard yet)
        self._idle = IdleMotion(seed)  # breathing, head and gaze shifts: under everything, speech included
        self._plan_from = 0
        self._targets = np.zeros((0, N_CONTROLS), np.float32)
        self._jaw = 0.0
        self._expr = np.zeros(len(EXPRESSION_CONTROLS), np.float32)  # the storyline's targets, eased
        self._shape = np.zeros(2, np.float32)  # eased (width, rounding)
        self.nod_scale = nod_scale  # emphasis nods on stressed syllables (0: none)
        self.stress_db = stress_db  # a syllable this much louder than the running speech level is stressed
        self.min_nod_frames = int(min_nod_gap_s * FPS)
        self._speech_db = -30.0  # running loudness of voiced frames
        self._prev_db = -100.0
        self._last_nod = -(10**9)
        self._nods: dict[int, float] = {}  # frame index -> extra head pitch (degrees) still to show
        # Share of the way to the vowel's (width, rounding) per frame: the lips glide between vowels over ~4 frames;
        # the viseme weights of single frames are noisy, and a faster rate makes the lips flutter with them.
        self.shape_rate = 0.3

    @property
    def planned_to_frame(self) -> int:
        return self._plan_from + len(self._targets)

    def update(self, storyline: Storyline, keep_until_frame: int | None = None) -> None:
        """Lay out keyframes for the storyline's horizon, replacing the older plan from its start.

        keep_until_frame: the older plan stays committed before this frame (where it covers it), so a
        re-plan never changes what is about to be shown.
        """
        start, end = storyline.planned_from_frame, storyline.planned_to_frame
        frames = np.arange(start, end)
        targets = self._idle.controls(frames)
        for beat in storyline.beats:
            lo, hi = max(beat.start_frame, start) - start, min(beat.end_frame, end) - start
            if beat.blink:
                curve = blink_curve(beat.start_frame)
                first = beat.start_frame - start  # < 0: the blink began before this plan
                a, b = max(first, 0), min(first + len(curve), len(frames))
                for c in (Control.BLINK_LEFT, Control.BLINK_RIGHT):
                    targets[a:b, c] = np.maximum(targets[a:b, c], curve[a - first : b - first])
            elif hi > lo:
                if beat.emotion is not None:  # later beats override the mood of earlier ones
                    smile, brow = EMOTION_TARGETS[beat.emotion]
                    targets[lo:hi, Control.SMILE] = smile * beat.intensity
                    targets[lo:hi, Control.BROW_RAISE] = brow * beat.intensity
                for control, value in EXPRESSION_TARGETS[beat.expression].items():
                    targets[lo:hi, control] = np.clip(targets[lo:hi, control] + value * max(beat.intensity, 0.5), -1, 1)
                t_s = (np.arange(lo, hi) + start - beat.start_frame) / FPS
                duration_s = (beat.end_frame - beat.start_frame) / FPS
                if beat.head_motion != HeadMotion.IDLE:
                    control, deg = head_motion_deg(beat.head_motion, t_s, duration_s, beat.intensity)
                    targets[lo:hi, control] += deg
                gx, gy = GAZE_TARGETS[beat.gaze]
                if gx or gy:  # the beat's look takes over from the idle eyes, and hands back
                    env = ease_in_out(t_s, duration_s, ramp_s=0.12)  # eyes move fast
                    for control, g in ((Control.GAZE_X, gx), (Control.GAZE_Y, gy)):
                        targets[lo:hi, control] += env * (g - targets[lo:hi, control])
        if keep_until_frame is not None:
            lo, hi = max(start, self._plan_from), min(keep_until_frame, end, self.planned_to_frame)
            if hi > lo:
                targets[lo - start : hi - start] = self._targets[lo - self._plan_from : hi - self._plan_from]
        self._plan_from, self._targets = start, targets

    def covers(self, start_frame: int, n_frames: int) -> bool:
        return self._plan_from <= start_frame and start_frame + n_frames <= self.planned_to_frame

    def window(self, features: list[FeatureFrame], lookahead: list[FeatureFrame] | None = None) -> MotionWindow:
        """Controls for the frames of `features` (consecutive); the plan must cover them.

        lookahead: the frames that follow (at most a couple): the jaw starts to open just before
        a loud onset, as lips do, and the frames after the window need not be rendered yet.
        """
        start, n = features[0].frame_index, len(features)
        if not self.covers(start, n):
            raise ValueError(f"blueprint plan [{self._plan_from}, {self.planned_to_frame}) "
                             f"does not cover frames [{start}, {start + n})")
        controls = self._targets[start - self._plan_from : start - self._plan_from + n].copy()
        frames = features + (lookahead or [])
        openness = [self._openness(f) for f in frames]
        for i, f in enumerate(features):
            ahead = openness[i + 1 : i + 1 + self.lookahead_frames]
            lead = max([0.0, *(w * o for w, o in zip((0.6, 0.3), ahead, strict=False))])
            self._jaw = self._next_jaw(f, openness[i], lead)
            _, width, rounding = f.voice_activity * (f.visemes @ SHAPE_MATRIX)
            self._shape += self.shape_rate * (np.array([width, rounding], np.float32) - self._shape)
            nxt = frames[i + 1].energy_db if i + 1 < len(frames) else -100.0
            self._maybe_nod(f, nxt)
            controls[i, Control.HEAD_PITCH] += self._nods.pop(f.frame_index, 0.0) + self._prosody_pitch(f)
            controls[i, Control.JAW_OPEN] = self._jaw
            self._expr += 0.08 * (controls[i, EXPRESSION_CONTROLS] - self._expr)
            controls[i, EXPRESSION_CONTROLS] = self._expr
            # The speech shape adds to the expression's, so a grin stays wider and a pout rounder while speaking.
            controls[i, Control.MOUTH_WIDTH] = np.clip(self._expr[_WIDTH] + self._shape[0], -1.0, 1.0)
            controls[i, Control.MOUTH_ROUND] = np.clip(self._expr[_ROUND] + self._shape[1], 0.0, 1.0)
        audio = np.concatenate([f.audio for f in features])
        return MotionWindow(start, controls, audio, created_t_s=time.monotonic())

    def _maybe_nod(self, f: FeatureFrame, next_db: float) -> None:
        """A loudness peak well above the running speech level starts an emphasis nod."""
        db, prev = f.energy_db, self._prev_db
        self._prev_db = db
        if f.voice_activity <= 0.5:
            return
        self._speech_db += 0.05 * (db - self._speech_db)
        peak = db >= prev and db > next_db
        if (self.nod_scale > 0 and peak and db >= self._speech_db + self.stress_db
                and f.frame_index - self._last_nod >= self.min_nod_frames):
            self._last_nod = f.frame_index
            for j, deg in enumerate(NOD_CURVE):
                k = f.frame_index + j
                self._nods[k] = self._nods.get(k, 0.0) + self.nod_scale * float(deg)

    def _next_jaw(self, f: FeatureFrame, own: float, lead: float) -> float:
        """The jaw of this frame, from its own openness and the anticipated one of the frames ahead."""
        target = max(own, lead)
        jaw = self._jaw + self._jaw_rate(f, target) * (target - self._jaw)
        if lead > own and self._jaw < LIPS_TOGETHER_JAW:  # lips together: they part with the sound, not before it
            jaw = self._jaw + self._jaw_rate(f, own) * (own - self._jaw)
        return jaw

    def _jaw_rate(self, f: FeatureFrame, target: float) -> float:
        """Share of the way to the target the jaw takes this frame."""
        if target > self._jaw:  # opening: fast for an onset, calmer for a wobble on a held vowel
            step = min(1.0, (target - self._jaw) / JAW_BIG_STEP)
            return self.jaw_steady_rate + (self.jaw_attack - self.jaw_steady_rate) * step
        if f.filled:
            return self.jaw_cut
        if f.energy_db > SILENT_DB:  # still sound (a consonant, voiced or not): co-articulated, not shut
            step = min(1.0, (self._jaw - target) / JAW_BIG_STEP)
            return self.jaw_steady_rate + (self.jaw_coart_release - self.jaw_steady_rate) * step
        return self.jaw_release

    def _prosody_pitch(self, f: FeatureFrame) -> float:
        """Head pitch (degrees, + down) that follows the voice (Munhall et al., Psychological Science 2004): the
        head rises a little as the voice rises in pitch and loudness over its running level, eased over ~0.3 s,
        and settles back to the idle pose when the voice stops."""
        voiced = f.voice_activity > 0.5 and f.energy_db > SILENT_DB
        rise = np.zeros(2, np.float32)
        if voiced:
            if f.pitch_hz > 0:
                self._f0_hz = f.pitch_hz if self._f0_hz <= 0 else self._f0_hz + 0.01 * (f.pitch_hz - self._f0_hz)
                rise[0] = np.clip(12.0 * np.log2(f.pitch_hz / self._f0_hz) / 4.0, -1.0, 1.0)  # 4 semitones: full
            rise[1] = np.clip((f.energy_db - self._speech_db) / 10.0, -1.0, 1.0)
        self._prosody += 0.07 * (rise - self._prosody)
        return -self.head_prosody_deg * float(0.6 * self._prosody[0] + 0.4 * self._prosody[1])

    @staticmethod
    def _openness(f: FeatureFrame) -> float:
        """Jaw target of one frame: loudness, gated by voice activity, shaped by the vowel. A conversational voice
        opens the jaw about half way (JAW_SPEECH_MAX on an open vowel at full loudness), not to a shout."""
        loud = float(np.clip((f.energy_db + 48.0) / 30.0, 0.0, 1.0))
        jaw_share = float(f.visemes @ SHAPE_MATRIX[:, 0])
        return JAW_SPEECH_MAX * loud * f.voice_activity * (0.4 + 0.6 * jaw_share)
