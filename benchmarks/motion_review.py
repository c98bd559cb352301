"""The avatar in motion, as a viewer sees it: filmstrips and per-frame plots of a render with the real voice.

    python -m benchmarks.motion_review [--avatar PATH ...] [--seconds 8] [--out /tmp/motion]

Each portrait speaks the real voice (tests/data/voice, as benchmarks/realism.py uses it) between 1.5 s of
silence, rendered as `avatar-engine render` does (streaming.egress_file.render_to_file) and decoded back. The
blueprint's controls are recorded on their way to the renderer (Blueprint.window is wrapped, not replaced), so the
plots show what was asked beside what was drawn. Written per portrait:

- `<name>-plot.png`: per frame, the loudness; the jaw control; the lip gap mediapipe measures on the frames; the
  mouth region's change from the frame before (mean absolute difference, grey levels); the face's motion (the mean
  displacement of the stable mesh points from the frame before, px); window boundaries as faint lines, the frames
  flagged as pops as red marks.
- `<name>-strip-<event>.png`: 14 consecutive frames around a speech onset, a word boundary (the deepest dip of the
  loudness inside speech), the speech's end and the worst pop, the lower face cropped and enlarged 2x; a blink, the
  eyes cropped.

And a line per portrait: pops (a frame whose mouth change is > 3x the median of its 8 neighbours and > 4 grey levels
while its mouth controls change no more than 1.5x theirs: the picture jumps, the controls do not), jitter
(the lip gap's second difference while the loudness holds within 3 dB), the jaw's share of speech frames that are
nearly closed (< 0.1, a puppet's flutter shuts it between syllables), its mean closing depth between syllables,
and the correlation between head speed and loudness (Munhall et al. 2004: head motion follows the voice).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.quality import PORTRAIT_DIR, STABLE_LANDMARKS, inter_ocular, load, pearson, track
from benchmarks.realism import lip_gap_iod, loudness_db, read_voice, with_silence
from engine.types import FPS, Control

STRIP_FRAMES = 14
POP_RATIO, POP_MIN_LEVELS = 3.0, 4.0
LOWER_FACE = (61, 291, 2, 152, 205, 425)  # mouth corners, under the nose, chin, cheeks: the crop's extent
MOUTH_POINTS = (61, 291, 0, 17, 13, 14, 78, 308)
EYE_POINTS = (33, 133, 362, 263, 159, 145, 386, 374, 70, 300)  # eye corners, lids, brows
DEFAULT_PORTRAITS = ("hopper.jpg", "pedersen_young_teeth.jpg", "giunchedi_beard.jpg")


@dataclass
class Review:
    name: str
    frames: np.ndarray  # (N, H, W, 3) decoded
    controls: np.ndarray  # (N, N_CONTROLS) as the blueprint handed them over
    window_starts: list[int]
    db: np.ndarray
    gap: np.ndarray  # inner-lip gap / inter-ocular distance
    mouth_change: np.ndarray  # grey levels, frame k against k - 1
    face_motion: np.ndarray  # px, frame k against k - 1
    pops: np.ndarray  # frame indices
    box: tuple[int, int, int, int]  # y0, y1, x0, x1 of the lower face
    eye_box: tuple[int, int, int, int]  # ... of the eyes and brows (the blink's strip)


def render_recorded(avatar: object, audio: np.ndarray, tmp: Path,
                    name: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The audio rendered as `avatar-engine render` does; (decoded frames, controls per frame, window starts)."""
    from benchmarks.realism import render_mp4
    from engine import blueprint

    windows: dict[int, np.ndarray] = {}
    original = blueprint.Blueprint.window

    def recording(self: blueprint.Blueprint, *args: object, **kwargs: object) -> object:
        w = original(self, *args, **kwargs)  # type: ignore[arg-type]
        windows[w.start_frame] = w.controls.copy()
        return w

    blueprint.Blueprint.window = recording  # type: ignore[method-assign]
    try:
        frames = render_mp4(avatar, audio, tmp, name)  # type: ignore[arg-type]
    finally:
        blueprint.Blueprint.window = original  # type: ignore[method-assign]
    starts = sorted(windows)
    controls = np.concatenate([windows[s] for s in starts])[: len(frames)]
    if len(controls) < len(frames):
        controls = np.concatenate([controls, np.repeat(controls[-1:], len(frames) - len(controls), axis=0)])
    return frames, controls, starts


def review(portrait: str, seconds: float, tmp: Path) -> Review:
    avatar = load(portrait, 720)
    audio = with_silence(read_voice(seconds))
    name = Path(portrait).stem
    frames, ctl, starts = render_recorded(avatar, audio, tmp, name)
    t = track(avatar.rgb, frames)
    iod = inter_ocular(t.reference)
    gap = lip_gap_iod(t.frames, iod)
    stable = [i for pts in STABLE_LANDMARKS.values() for i in pts]
    lm = t.frames
    face_motion = np.r_[0.0, np.nanmean(np.linalg.norm(np.diff(lm[:, stable], axis=0), axis=-1), axis=1)]
    ref = t.reference
    pts = ref[list(LOWER_FACE)]
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    pad = 0.1 * (x1 - x0)
    h, w = frames.shape[1:3]
    box = (max(0, int(y0 - pad)), min(h, int(y1 + pad)), max(0, int(x0 - pad)), min(w, int(x1 + pad)))
    e = ref[list(EYE_POINTS)]
    (ex0, ey0), (ex1, ey1) = e.min(axis=0), e.max(axis=0)
    ep = 0.08 * (ex1 - ex0)
    eye_box = (max(0, int(ey0 - ep)), min(h, int(ey1 + ep)), max(0, int(ex0 - ep)), min(w, int(ex1 + ep)))
    m = ref[list(MOUTH_POINTS)]
    mx0, my0 = m.min(axis=0)
    mx1, my1 = m.max(axis=0)
    mp = 0.25 * (mx1 - mx0)
    grey = frames[:, max(0, int(my0 - mp)) : int(my1 + mp), max(0, int(mx0 - mp)) : int(mx1 + mp)].mean(axis=-1)
    mouth_change = np.r_[0.0, np.abs(np.diff(grey.astype(np.float32), axis=0)).mean(axis=(1, 2))]
    # A pop: the picture jumps while the controls do not (a renderer switch, a window seam). A fast but real
    # movement (an onset) changes the mouth's controls as much as its picture, and is not counted.
    mouth_ctl = np.r_[0.0, np.abs(np.diff(ctl[:, [Control.JAW_OPEN, Control.MOUTH_WIDTH, Control.MOUTH_ROUND,
                                                  Control.LIP_PRESS, Control.SMILE]], axis=0)).sum(axis=1)]
    pops = []
    for k in range(1, len(frames)):
        near = np.r_[mouth_change[max(1, k - 4) : k], mouth_change[k + 1 : k + 5]]
        near_ctl = np.r_[mouth_ctl[max(1, k - 4) : k], mouth_ctl[k + 1 : k + 5]]
        jump = mouth_change[k] > POP_RATIO * max(np.median(near), 0.5) and mouth_change[k] > POP_MIN_LEVELS
        if len(near) and jump and mouth_ctl[k] <= POP_RATIO / 2 * max(np.median(near_ctl), 0.01):
            pops.append(k)
    db = loudness_db(audio, len(frames))
    return Review(name, frames, ctl, starts, db, gap, mouth_change, face_motion, np.array(pops, int), box, eye_box)


def speech_events(r: Review) -> dict[str, int]:
    """Frames to centre the strips on."""
    voiced = r.db > -40
    events: dict[str, int] = {}
    on = np.flatnonzero(voiced[1:] & ~voiced[:-1]) + 1
    off = np.flatnonzero(~voiced[1:] & voiced[:-1]) + 1
    if len(on):
        events["onset"] = int(on[0])
    if len(off):
        events["end"] = int(off[-1])
    if len(on) > 2:  # a word boundary: a short silence between words, after the first onset
        gaps = [(int(b - a), int(a)) for a, b in zip(off, on[1:], strict=False) if b > a]
        if gaps:
            events["word"] = min(gaps)[1]
    blink = np.flatnonzero(r.controls[:, Control.BLINK_LEFT] > 0.9)
    if len(blink):
        events["blink"] = int(blink[0])
    if len(r.pops):
        events["pop"] = int(r.pops[np.argmax(r.mouth_change[r.pops])])
    return events


def save_strip(r: Review, centre: int, path: Path, eyes: bool = False) -> None:
    from PIL import Image, ImageDraw

    y0, y1, x0, x1 = r.eye_box if eyes else r.box
    first = max(0, min(centre - STRIP_FRAMES // 2, len(r.frames) - STRIP_FRAMES))
    tiles = []
    for k in range(first, first + STRIP_FRAMES):
        tile = Image.fromarray(r.frames[k, y0:y1, x0:x1]).resize(((x1 - x0) * 2, (y1 - y0) * 2), Image.LANCZOS)
        d = ImageDraw.Draw(tile)
        mark = " POP" if k in r.pops else ""
        d.text((4, 4), f"{k} jaw {r.controls[k, Control.JAW_OPEN]:.2f} {r.db[k]:.0f}dB{mark}", fill=(255, 255, 0))
        tiles.append(np.asarray(tile))
    cols = 7
    rows = [np.concatenate(tiles[i : i + cols], axis=1) for i in range(0, len(tiles), cols)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def save_plot(r: Review, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(r.frames)
    x = np.arange(n)
    fig, ax = plt.subplots(5, 1, figsize=(22, 12), sharex=True)
    series = [("loudness dB", r.db), ("jaw control", r.controls[:, Control.JAW_OPEN]), ("lip gap / IOD", r.gap),
              ("mouth change (grey levels)", r.mouth_change), ("face motion px/frame", r.face_motion)]
    for a, (label, y) in zip(ax, series, strict=True):
        a.plot(x, y, lw=0.9, marker=".", ms=2)
        a.set_ylabel(label, fontsize=8)
        for s in r.window_starts:
            a.axvline(s, color="0.85", lw=0.4, zorder=0)
        for p in r.pops:
            a.axvline(p, color="red", lw=0.8, alpha=0.6)
    ax[1].plot(x, r.controls[:, Control.BLINK_LEFT], lw=0.6, color="green", label="blink")
    ax[1].plot(x, r.controls[:, Control.MOUTH_WIDTH], lw=0.6, color="orange", label="width")
    ax[1].plot(x, r.controls[:, Control.MOUTH_ROUND], lw=0.6, color="purple", label="round")
    ax[1].legend(fontsize=7, loc="upper right")
    head = r.controls[:, [Control.HEAD_YAW, Control.HEAD_PITCH, Control.HEAD_ROLL]]
    a4 = ax[4].twinx()
    a4.plot(x, head, lw=0.6, alpha=0.7)
    a4.set_ylabel("head yaw/pitch/roll deg", fontsize=7)
    ax[-1].set_xlabel(f"frame ({FPS} fps)")
    fig.suptitle(r.name)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def numbers(r: Review) -> dict[str, float]:
    speech = r.db > -40
    jaw = r.controls[:, Control.JAW_OPEN]
    steady = np.r_[False, np.abs(np.diff(r.db)) < 3] & np.r_[np.abs(np.diff(r.db)) < 3, False] & speech
    gap = np.nan_to_num(r.gap, nan=float(np.nanmean(r.gap)))
    jitter = np.abs(np.r_[0, np.diff(gap, 2), 0])
    # Between syllables: the jaw's local minima inside speech, and how far each falls from the peaks beside it.
    inner = np.flatnonzero(speech[1:-1] & (jaw[1:-1] < jaw[:-2]) & (jaw[1:-1] <= jaw[2:])) + 1
    depth = [1 - jaw[k] / max(jaw[max(0, k - 8) : k].max(), jaw[k + 1 : k + 9].max(), 1e-6) for k in inner]
    head_speed = np.linalg.norm(np.diff(r.controls[:, [Control.HEAD_YAW, Control.HEAD_PITCH, Control.HEAD_ROLL]],
                                        axis=0), axis=1)
    return {"frames": len(r.frames), "pops": len(r.pops),
            "pops_at_window_start": int(sum(p in set(r.window_starts) for p in r.pops)),
            "jitter_steady_p90": float(np.percentile(jitter[steady], 90)) if steady.any() else float("nan"),
            "jaw_closed_share_in_speech": float((jaw[speech] < 0.1).mean()),
            "jaw_dip_depth_mean": float(np.mean(depth)) if depth else float("nan"),
            "jaw_dips_per_s": len(inner) / max(speech.sum() / FPS, 1e-6),
            "head_speed_vs_loudness_r": pearson(head_speed, np.clip(r.db[1:], -50, None))}


def main(argv: list[str] | None = None) -> int:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--avatar", nargs="+", default=[str(PORTRAIT_DIR / p) for p in DEFAULT_PORTRAITS])
    ap.add_argument("--seconds", type=float, default=8.0, help="how much of the voice (then 1.5 s of silence)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/motion"))
    ap.add_argument("--no-strips", action="store_true")
    ap.add_argument("--at", type=int, nargs="*", default=[], help="also a strip centred on each of these frames")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="motion-"))
    for portrait in args.avatar:
        r = review(portrait, args.seconds, tmp)
        save_plot(r, args.out / f"{r.name}-plot.png")
        if not args.no_strips:
            for event, k in [*speech_events(r).items(), *((f"at{k}", k) for k in args.at)]:
                save_strip(r, k, args.out / f"{r.name}-strip-{event}.png", eyes=event == "blink")
        nums = numbers(r)
        print(r.name, " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in nums.items()),
              "pops at", r.pops.tolist(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
