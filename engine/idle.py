"""Idle motion that looks alive for hours: breathing, small head shifts and gaze shifts, never a loop.

Every value is a pure function of (seed, frame index): a re-plan that lays out the same frames again gets
the same motion, and nothing is stored however long a stream runs. Three layers, after the classical
rigs (Live2D Cubism's "breath", TalkingHead's idle; /work/shared/notes/realism.md, "Idle that looks alive"):

- sway: sines with incommensurate periods (Cubism: head 6.53 s, 3.53 s, 5.53 s; body 15.5 s), scaled down
  for a photo: a slow drift that never lines up into a repeat;
- shifts: every 1-5 s (jittered slots, per control) the head or the eyes pick a new random target and move
  there (head: eased over 0.5-0.9 s; eyes: a saccade of 3 frames), then hold; the eyes come back to the camera
  most of the time, as a host's do;
- breath: cycles of random length (2.7-4.9 s: in, a short hold, out, a rest) and depth.

The blinks come from the director (engine/director/rules.py), speech motion from the blueprint; all of it
is added on top of this layer, which runs through speech too, so speech starts and stops without a jump.
"""

from __future__ import annotations

import numpy as np

from engine.types import FPS, N_CONTROLS, Control

_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


def _uniform(seed: int, stream: int, index: np.ndarray) -> np.ndarray:
    """A uniform [0, 1) value per integer index, the same for the same (seed, stream, index): splitmix64."""
    with np.errstate(over="ignore"):
        x = (index.astype(np.uint64) * np.uint64(_GOLDEN)) ^ np.uint64(((seed * 1_000_003 + stream) * _GOLDEN) & _MASK)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _slots(seed: int, stream: int, t_s: np.ndarray, slot_s: float,
           jitter: float = 0.8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jittered slots: slot k starts at (k + jitter * (u_k - 0.5)) * slot_s, so consecutive starts are 1 - jitter
    to 1 + jitter slots apart. For each time: its slot's index, that slot's start and the next one's (seconds)."""

    def start(k: np.ndarray) -> np.ndarray:
        return (k + jitter * (_uniform(seed, stream, k) - 0.5)) * slot_s

    k = np.floor(t_s / slot_s).astype(np.int64) + 1
    k = np.where(start(k) > t_s, k - 1, k)
    k = np.where(start(k) > t_s, k - 1, k)
    return k, start(k), start(k + 1)


def shifts(seed: int, stream: int, t_s: np.ndarray, slot_s: float, move_s: float, amplitude: float) -> np.ndarray:
    """Shift and hold: at each slot's start the value moves to that slot's random target in [-amplitude,
    amplitude) over move_s (eased), then holds. move_s must stay under the shortest gap, 0.2 * slot_s."""
    k, t0, _ = _slots(seed, stream, t_s, slot_s)
    now = (2 * _uniform(seed, stream + 1, k) - 1) * amplitude
    before = (2 * _uniform(seed, stream + 1, k - 1) - 1) * amplitude
    return before + (now - before) * _smoothstep((t_s - t0) / move_s)


def gaze(seed: int, t_s: np.ndarray, slot_s: float, amplitude: float, at_camera: float) -> np.ndarray:
    """(N, 2) x, y: each slot the eyes look at the camera (probability at_camera) or at a small random offset
    (y at 40% of x's range: eyes wander sideways more than up and down), with a 3-frame saccade between."""

    def target(k: np.ndarray) -> np.ndarray:
        away = (_uniform(seed, 402, k) >= at_camera)[:, None]
        xy = np.stack([2 * _uniform(seed, 400, k) - 1, 0.4 * (2 * _uniform(seed, 401, k) - 1)], axis=1)
        return np.where(away, xy * amplitude, 0.0)

    k, t0, _ = _slots(seed, 403, t_s, slot_s)
    before = target(k - 1)
    return before + (target(k) - before) * _smoothstep((t_s - t0) / (3 / FPS))[:, None]


def _breath(seed: int, t_s: np.ndarray) -> np.ndarray:
    """0 exhaled .. 1 inhaled: each cycle (2.7-4.9 s) breathes in over 35% of it, holds 10%, breathes out over 35%,
    rests; the depth varies from breath to breath."""
    k, t0, t1 = _slots(seed, 900, t_s, 3.8, jitter=0.3)
    phase = (t_s - t0) / (t1 - t0)
    depth = 0.6 + 0.4 * _uniform(seed, 901, k)
    return depth * (_smoothstep(phase / 0.35) - _smoothstep((phase - 0.45) / 0.35))


# Head, in degrees: sway as (period s, amplitude) pairs, periods after Cubism's idle; shifts as (slot s, amplitude).
SWAY = {Control.HEAD_YAW: ((6.53, 1.0), (15.5, 0.6)), Control.HEAD_PITCH: ((3.53, 0.35), (11.3, 0.4)),
        Control.HEAD_ROLL: ((5.53, 0.5), (17.9, 0.4))}
SHIFTS = {Control.HEAD_YAW: (3.1, 1.0), Control.HEAD_PITCH: (4.3, 0.6), Control.HEAD_ROLL: (5.9, 0.6)}
GAZE_SLOT_S, GAZE_RANGE = 2.3, 0.35
START_FADE_S = 1.0


class IdleMotion:
    """The idle layer of the rig controls for any frames: controls(frames) -> (N, N_CONTROLS), zeros where it
    sets nothing (jaw, lips, blinks, expression)."""

    BLOCK_FRAMES = 10 * FPS  # computed ahead in blocks: a re-plan each second costs a slice, not ~3 ms of numpy

    def __init__(self, seed: int = 0, gaze_at_camera: float = 0.65) -> None:
        self.seed = seed
        self.gaze_at_camera = gaze_at_camera
        # (first frame, controls): one tuple, replaced whole, so a reader on another thread never mixes two blocks
        self._block: tuple[int, np.ndarray] = (0, np.zeros((0, N_CONTROLS), np.float32))

    def controls(self, frame_index: np.ndarray) -> np.ndarray:
        frames = np.asarray(frame_index, np.int64)
        if len(frames) == 0 or not np.array_equal(frames, np.arange(frames[0], frames[0] + len(frames))):
            return self._compute(frames)
        lo, hi = int(frames[0]), int(frames[0]) + len(frames)
        start, block = self._block
        if not (start <= lo and hi <= start + len(block)):
            start, block = lo, self._compute(np.arange(lo, max(hi, lo + self.BLOCK_FRAMES)))
            self._block = (start, block)
        return block[lo - start : hi - start].copy()

    def _compute(self, frame_index: np.ndarray) -> np.ndarray:
        t = np.asarray(frame_index, np.int64).astype(np.float64) / FPS
        out = np.zeros((len(t), N_CONTROLS), np.float32)
        out[:, list(SWAY)] = self.head_deg(frame_index)
        out[:, [Control.GAZE_X, Control.GAZE_Y]] = gaze(self.seed, t, GAZE_SLOT_S, GAZE_RANGE, self.gaze_at_camera)
        out[:, Control.BREATH] = _breath(self.seed, t)
        # A stream starts from the photo's own pose: the head and the breath fade in over its first START_FADE_S,
        # or the first frame (rendered from the photo, the renderer clamping its step) would jump to the idle pose.
        # Not the eyes: a glide of the eyes over a second looks wrong; they start with a saccade, as always.
        fade = [*SWAY, Control.BREATH]
        out[:, fade] *= _smoothstep(t / START_FADE_S).astype(np.float32)[:, None]
        return out

    def head_deg(self, frame_index: np.ndarray) -> np.ndarray:
        """(N, 3): yaw, pitch, roll in degrees."""
        t = np.asarray(frame_index, np.int64).astype(np.float64) / FPS
        columns = []
        for i, (control, waves) in enumerate(SWAY.items()):
            phase = 2 * np.pi * _uniform(self.seed, 100 + i, np.arange(len(waves)))
            sway = sum(a * np.sin(2 * np.pi * t / period + p) for (period, a), p in zip(waves, phase, strict=True))
            slot_s, amplitude = SHIFTS[control]
            columns.append(sway + shifts(self.seed, 200 + 10 * i, t, slot_s, 0.5 + 0.1 * i * slot_s / 3, amplitude))
        return np.stack(columns, axis=1).astype(np.float32)
