"""How fast `interrupt` closes the mouth, as a WHEP viewer sees it: mediapipe's lip gap on the viewer's decoded frames.

    python -m benchmarks.interrupt [--trials 5] [--voice espeak|real] [--avatar PATH] [--max-side 320] [--json OUT]

The real app (streaming.app.build_app) serves on 127.0.0.1 in this process; POST /streams makes a stream,
an aiortc WHEP viewer (H.264) decodes it and keeps every picture with its RTP timestamp, and the TTS
WebSocket (/streams/{id}/audio) sends speech all at once (faster than real time). When the stream is
mid-word (at least --speak seconds in, its last four frames loud) the socket sends `interrupt`; the next
trial starts --settle seconds later. Each decoded picture is put at its stream frame (the viewer's first
picture is its first keyframe, whose frame the server's sink counters name; RTP timestamps step 1875 a
frame), and mediapipe's face mesh (video mode) reads the inner-lip gap over the inter-ocular distance;
lips count as closed below benchmarks.realism's threshold (0.03, or 1 px). Per trial, in frames (48 fps;
a live window is EngineConfig.window_frames frames, longer on a machine too slow for it: engine/window_size.py):

- sound after interrupt: frames of sound the session still played (what it had read before the interrupt:
  streaming.sources.FEED_AHEAD_S, and a busy event loop's delay)
- closed after sound: from the first silent frame to the first frame from which the lips stay closed for
  the rest of the trial (<= 0: they were closed before the sound ended). Target: two windows.
- closed after interrupt: the same from the frame that was live at the input when interrupt was sent
- ms: from sending interrupt to the viewer decoding that closed frame (the pipeline delay and the WebRTC
  transport included: what a viewer waits)
- repeated: frames in that span the pacer sent again because their render was late (a loaded machine),
  and closed after sound rendered: the same less those (what the mouth itself did)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

from benchmarks.quality import inter_ocular, track
from benchmarks.realism import CLOSED_GAP_FLOOR_PX, CLOSED_GAP_MAX, lip_gap_iod
from engine.types import FPS, SAMPLE_RATE_HZ
from harness.whep_client import WhepViewer
from streaming.sinks import PacedFrame, Sink
from streaming.stream import AvatarStream

RTP_TICKS_PER_FRAME = 90_000 // FPS
LOUD_RMS = 0.02  # a frame of speech, not a pause between words
BEFORE_FRAMES, AFTER_FRAMES = 24, 30  # tracked around each interrupt


class RepeatLog(Sink):
    """The frames the pacer sent again (their render was late): a viewer sees the previous picture there."""

    name = "repeat_log"
    queue_size = 256

    def __init__(self) -> None:
        self.repeated: set[int] = set()

    async def on_video(self, frame: PacedFrame) -> None:
        if frame.repeated:
            self.repeated.add(frame.frame_index)


@dataclass
class Trial:
    interrupt_frame: int  # the input's live frame when interrupt was sent
    last_sound_frame: int  # the last frame with sound, as the session read it
    window_frames: int  # the session's live window length when the trial was read
    delay_s: float  # the stream's pipeline delay then (a frame is due this long after its sound came in)
    closed_below: float  # lip gap / inter-ocular distance
    gap: dict[int, float] = field(default_factory=dict)  # viewer frame -> lip gap (NaN: no face found)
    decoded_after_s: dict[int, float] = field(default_factory=dict)  # viewer frame -> decoded, s after interrupt
    repeated: list[int] = field(default_factory=list)
    pictures: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # the tracked ones (RGB)
    mouth_box: tuple[int, int, int, int] = (0, 0, 0, 0)  # (x0, y0, x1, y1) around the photo's mouth

    @property
    def closed_frame(self) -> int | None:
        """The first frame from which every tracked frame to the end of the trial shows closed lips."""
        seen = sorted(k for k in self.gap if k >= self.interrupt_frame)
        closed = None
        for k in reversed(seen):
            if not self.gap[k] < self.closed_below:  # open, or no face found
                break
            closed = k
        return closed

    @property
    def open_gap(self) -> float:
        """The widest gap while the interrupted speech still sounded (it was mid-word: above closed_below)."""
        gaps = [g for k, g in self.gap.items() if self.interrupt_frame - 12 <= k <= self.last_sound_frame]
        return float(np.nanmax(gaps)) if gaps else float("nan")

    def numbers(self) -> dict[str, float | int | None]:
        closed = self.closed_frame
        end = self.last_sound_frame + 1
        repeated = sum(1 for k in self.repeated if end <= k <= (closed or end))
        return {"sound_after_interrupt": end - self.interrupt_frame,
                "closed_after_sound": None if closed is None else closed - end,
                "closed_after_sound_rendered": None if closed is None else closed - end - repeated,
                "closed_after_interrupt": None if closed is None else closed - self.interrupt_frame,
                "ms": None if closed is None else round(1000 * self.decoded_after_s[closed]),
                "repeated": repeated,
                "open_gap": round(self.open_gap, 3), "closed_below": round(self.closed_below, 3),
                "window_frames": self.window_frames, "delay_ms": round(1000 * self.delay_s)}

    def strip(self, path: Path, scale: int = 3) -> Path:
        """The mouth on the viewer's frames from a little before the sound ended to after the lips closed, side by
        side and labelled (frame - first silent frame, lip gap; red: still open, r: a repeated picture)."""
        import cv2

        end, closed = self.last_sound_frame + 1, self.closed_frame or self.last_sound_frame + 8
        x0, y0, x1, y1 = self.mouth_box
        tiles = []
        for k in range(end - 3, closed + 4):
            if k not in self.pictures:
                continue
            crop = cv2.resize(self.pictures[k][y0:y1, x0:x1], None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
            tile = cv2.copyMakeBorder(crop, 0, 34, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255))
            colour = (0, 120, 0) if self.gap[k] < self.closed_below else (200, 0, 0)
            label = f"{k - end:+d}{' r' if k in self.repeated else ''}"
            cv2.putText(tile, label, (4, crop.shape[0] + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
            cv2.putText(tile, f"{self.gap[k]:.3f}", (4, crop.shape[0] + 30), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1,
                        cv2.LINE_AA)
            tiles.append(tile)
        cv2.imwrite(str(path), cv2.cvtColor(np.hstack(tiles), cv2.COLOR_RGB2BGR))
        return path


def pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def whep_first_frame(stream: AvatarStream) -> int | None:
    """The stream frame the (one) WHEP viewer's pictures start at: its first keyframe."""
    firsts = [m["first_frame_index"] for name, m in stream.pacer.sinks.sink_metrics().items()
              if name.startswith("whep") and m.get("first_frame_index") is not None]
    return int(firsts[0]) if len(firsts) == 1 else None  # type: ignore[arg-type]


async def interrupt_trials(base: str, stream: AvatarStream, speech: np.ndarray, trials: int = 1, *,
                           speak_s: float = 1.0, settle_s: float = 0.8, timeout_s: float = 20.0) -> list[Trial]:
    """Speech over the stream's TTS WebSocket, interrupted mid-word `trials` times, watched by a WHEP viewer."""
    clock = stream.session.clock
    assert clock is not None, "a live stream"
    assert settle_s * FPS > AFTER_FRAMES + 4, "a trial's frames would run into the next trial's speech"
    log = RepeatLog()
    stream.add_sink(log)
    read: dict[int, float] = {}  # every frame's input audio as the session reads it
    stream.session.on_audio(lambda k, x: read.__setitem__(k, float(np.sqrt(np.mean(x**2)))))
    viewer = WhepViewer(video_codec="video/H264", keep_pictures=True)
    await viewer.start(f"{base}/streams/{stream.id}/whep")
    marks: list[tuple[float, int]] = []  # (interrupt sent at, the input's live frame then)
    try:
        deadline = time.monotonic() + timeout_s
        while not viewer.pictures or whep_first_frame(stream) is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the WHEP viewer got no picture")
            await asyncio.sleep(0.02)
        anchor = whep_first_frame(stream)
        ws_url = f"{base.replace('http://', 'ws://')}/streams/{stream.id}/audio"
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
            await ws.send_json({"type": "start", "format": "pcm_s16le", "sample_rate_hz": SAMPLE_RATE_HZ,
                                "channels": 1})
            assert (await ws.receive_json(timeout=10))["type"] == "started"
            for _ in range(trials):
                pushed_at = int((time.monotonic() - clock.start_s) * FPS)
                await ws.send_bytes(pcm16(speech))
                deadline = time.monotonic() + timeout_s
                while True:  # mid-word: speak_s into the speech, its last four frames loud
                    last = max(read, default=0)
                    recent = [read.get(k, 0.0) for k in range(last - 3, last + 1)]
                    if last - pushed_at >= speak_s * FPS and min(recent) > LOUD_RMS:
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError("the speech never got loud")
                    await asyncio.sleep(0.002)
                sent_s = time.monotonic()
                await ws.send_json({"type": "interrupt"})
                marks.append((sent_s, int((sent_s - clock.start_s) * FPS)))
                reply = await ws.receive_json(timeout=10)
                assert reply["type"] == "interrupted", reply
                await asyncio.sleep(settle_s)
    finally:
        await viewer.stop()
        await stream.remove_sink(log)
    assert anchor is not None
    return [_measure(stream, viewer, anchor, read, sent_s, k_i, sorted(log.repeated)) for sent_s, k_i in marks]


def _measure(stream: AvatarStream, viewer: WhepViewer, anchor: int, read: dict[int, float], sent_s: float,
             k_i: int, repeated: list[int]) -> Trial:
    pts0 = viewer.pictures[0][0]
    frames: dict[int, tuple[float, np.ndarray]] = {}
    for pts, wall, rgb in viewer.pictures:
        ticks = (pts - pts0) % 2**32  # RTP timestamps wrap
        assert ticks % RTP_TICKS_PER_FRAME == 0, f"a picture off the 48 fps grid ({ticks} ticks)"
        frames[anchor + ticks // RTP_TICKS_PER_FRAME] = (wall, rgb)
    clock = stream.session.clock
    assert clock is not None
    # A wrong anchor (a first keyframe lost on the way: the viewer started at a later one) would put every picture
    # a keyframe interval off: decoded pictures arrive within the transport's few tens of ms of their due time.
    late_s = float(np.median([wall - clock.frame_due_s(k) for k, (wall, _) in frames.items()]))
    assert -0.1 < late_s < 0.5, f"the viewer's pictures do not line up with the stream's frames ({late_s:+.3f} s)"
    last = max(k for k, rms in read.items() if rms > 0 and k <= k_i + AFTER_FRAMES)  # the next trial's comes later
    window = [k for k in sorted(frames) if k_i - BEFORE_FRAMES <= k <= k_i + AFTER_FRAMES]
    photo = stream.session.avatar.rgb
    t = track(photo, [frames[k][1] for k in window])
    iod = inter_ocular(t.reference)
    gaps = lip_gap_iod(t.frames, iod)
    closed_below = max(CLOSED_GAP_MAX, CLOSED_GAP_FLOOR_PX / iod)
    corners = t.reference[[61, 291, 13, 14]]  # mediapipe: mouth corners, inner lips
    pad = 0.35 * (corners[1, 0] - corners[0, 0])
    box = (int(corners[0, 0] - pad), int(corners[2, 1] - pad), int(corners[1, 0] + pad), int(corners[3, 1] + pad))
    return Trial(k_i, last, stream.session.window_frames, clock.delay_s, closed_below,
                 {k: float(g) for k, g in zip(window, gaps, strict=True)},
                 {k: frames[k][0] - sent_s for k in window}, [k for k in repeated if k_i <= k <= k_i + AFTER_FRAMES],
                 {k: frames[k][1] for k in window}, box)


# ---- the benchmark ----------------------------------------------------------------------------------
def voice(kind: str) -> np.ndarray:
    if kind == "real":
        from benchmarks.realism import read_voice

        return read_voice(4.0)
    from harness.speech import espeak

    return espeak("Hello everyone, welcome to the show. Today we are looking at a brand new camera, and it is "
                  "very good indeed.")


async def run(args: argparse.Namespace) -> list[Trial]:
    from engine.config import EngineConfig
    from engine.generator import prepare_avatar
    from harness.server import running
    from streaming.app import REGISTRY, build_app
    from streaming.config import ServerConfig
    from streaming.patches import use_ice_addresses

    use_ice_addresses(["127.0.0.1"])
    avatar = prepare_avatar(args.avatar, args.max_side)
    app = build_app(ServerConfig(engine=EngineConfig(max_side_px=args.max_side)), avatar)
    async with running(app) as base, aiohttp.ClientSession() as http:
        async with http.post(f"{base}/streams", json={}) as r:
            sid = (await r.json())["id"]
        stream = app[REGISTRY].active[sid]
        trials = await interrupt_trials(base, stream, voice(args.voice), args.trials, speak_s=args.speak)
        async with http.delete(f"{base}/streams/{sid}"):
            pass
    return trials


def main(argv: Sequence[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--voice", choices=("espeak", "real"), default="espeak")
    parser.add_argument("--avatar", type=Path, default=None, help="portrait (default: the built-in one)")
    parser.add_argument("--max-side", type=int, default=320)
    parser.add_argument("--speak", type=float, default=1.0, help="seconds of speech before each interrupt")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--strips", type=Path, default=None, help="write each trial's mouth strip here (PNG)")
    args = parser.parse_args(argv)
    trials = asyncio.run(run(args))
    rows = [t.numbers() for t in trials]
    table = Table(title=f"interrupt -> lips closed, on a WHEP viewer's frames (mediapipe; {args.voice} voice; "
                        f"window {rows[0]['window_frames']} frame(s); 48 fps)")
    cols = ("sound_after_interrupt", "closed_after_sound", "repeated", "closed_after_sound_rendered",
            "closed_after_interrupt", "ms", "delay_ms", "open_gap", "closed_below")
    table.add_column("trial")
    for c in cols:
        table.add_column(c.replace("_", " "))
    for i, r in enumerate(rows):
        table.add_row(str(i + 1), *(str(r[c]) for c in cols))
    Console().print(table)
    after = [r["closed_after_sound"] for r in rows if r["closed_after_sound"] is not None]
    rendered = [r["closed_after_sound_rendered"] for r in rows if r["closed_after_sound_rendered"] is not None]
    if after:
        print(f"closed after the sound ended: median {statistics.median(after)} frames, worst {max(after)}; "
              f"not counting repeated pictures: worst {max(rendered)} (target: two windows = "
              f"{2 * int(rows[0]['window_frames'] or 1)} frames); {len(rows) - len(after)} trials never closed")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        detail = [{k: v for k, v in asdict(t).items() if k != "pictures"} for t in trials]
        args.json.write_text(json.dumps({"trials": rows, "detail": detail}, indent=1))
    if args.strips is not None:
        args.strips.mkdir(parents=True, exist_ok=True)
        for i, t in enumerate(trials):
            print("mouth strip:", t.strip(args.strips / f"interrupt_{i + 1}.png"))


if __name__ == "__main__":
    main()
