"""A real aiortc peer for tests and benchmarks: sends a WAV as the microphone, records what returns."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError

from streaming.webrtc import NO_ICE_SERVERS


@dataclass
class Received:
    video_wall_s: list[float] = field(default_factory=list)
    video_pts: list[int] = field(default_factory=list)
    video_size: tuple[int, int] = (0, 0)
    crops: list[np.ndarray] = field(default_factory=list)  # the watched region of each frame, grey
    audio_wall_s: list[float] = field(default_factory=list)
    audio_rms: list[float] = field(default_factory=list)
    final: dict = field(default_factory=dict)  # the session's counters as its close returned them (close_session)

    def frames_held(self) -> int:
        return frames_held(self.final)


PTS_STEP = 1875  # 90 kHz RTP clock / 48 fps
MIN_RECEIVED_FPS = 24.0  # half the rate: what a viewer gets on a shared 2-core host short of CPU, not a freeze


@dataclass(frozen=True)
class Delivery:
    """A viewer's 48 fps stream judged so that a host short of CPU passes (the server then drops frames before
    encoding and counts them) while a stream that stalls or loses frames uncounted fails.

    clock_fps: frames of media time (RTP timestamps) per second of wall time (a least-squares slope), near 48
    whatever was dropped; reported, not checked (see assert_live).
    missing: frames absent from the timestamp sequence (a step of k x 1875 ticks, +-2 of aiortc's rounding, is k - 1
    of them); received_fps: those that came. dropped_counted: the frames the session's server dropped before encoding
    (its close's counters; None for a viewer without them, e.g. WHEP's).
    """

    clock_fps: float
    received_fps: float
    missing: int
    longest_gap_s: float
    span_s: float
    dropped_counted: int | None = None

    def assert_live(self, what: str) -> None:
        """The viewer got at least half the frames with no gap of half a second and, where the server's count of
        the frames it dropped before encoding is known, none went missing uncounted. Not the clock: the pacer plays a
        few frames faster or slower while the session's pipeline delay moves (measured 50.3 fps over 6.5 s after a
        busy start), by design."""
        assert self.received_fps >= MIN_RECEIVED_FPS and self.longest_gap_s < 0.5, f"{what}: {self}"
        if self.dropped_counted is not None:
            assert self.missing <= self.dropped_counted + 2, (
                f"{what}: {self}, only {self.dropped_counted} counted as dropped")

    def __str__(self) -> str:
        return (f"clock {self.clock_fps:.2f} fps, received {self.received_fps:.1f} fps over {self.span_s:.1f} s, "
                f"{self.missing} frames missing, longest gap {self.longest_gap_s:.2f} s")


def delivery(got: Received, skip_s: float = 0.5) -> Delivery:
    """The video `got` received after its first skip_s."""
    wall, pts = np.array(got.video_wall_s), np.array(got.video_pts, np.int64)
    keep = wall >= wall[0] + skip_s
    wall, pts = wall[keep], pts[keep]
    span_s = float(wall[-1] - wall[0]) if len(wall) > 1 else 0.0
    dropped = got.final.get("sinks", {}).get("webrtc", {}).get("track_frames_dropped")
    if len(wall) < 3 or span_s <= 0:
        return Delivery(0.0, 0.0, 0, span_s, span_s, dropped)
    slope = float(np.polyfit(wall - wall[0], (pts - pts[0]) / PTS_STEP, 1)[0])
    frames_apart = frames_between(pts)
    return Delivery(clock_fps=slope, received_fps=(len(wall) - 1) / span_s,
                    missing=int(np.clip(frames_apart - 1, 0, None).sum()), longest_gap_s=float(np.diff(wall).max()),
                    span_s=span_s, dropped_counted=dropped)


def frames_between(pts: np.ndarray) -> np.ndarray:
    """How many frames apart consecutive RTP timestamps are: steps of 1875 ticks, rounded (aiortc's conversion
    makes them 1874-1876, 3749-3751...)."""
    return np.round(np.diff(pts) / PTS_STEP).astype(np.int64)


def frames_held(counters: dict) -> int:
    """Frames a session's server held the picture for while it added pipeline delay, from its counters (/api/sessions,
    or its close): a busy machine makes a live session run a frame later rather than repeat frames; each costs a
    frame of wall time."""
    return int(counters.get("pipeline_delay_raises", 0)) - int(counters.get("pipeline_delay_lowers", 0))


def auth_header(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def post_json(url: str, payload: object, timeout_s: float = 30.0, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **auth_header(token)})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def stream_session(base_url: str, wav: Path, duration_s: float,
                         crop_box: tuple[int, int, int, int] | None = None,
                         during: Callable[[str], Awaitable[object]] | None = None,
                         loop: bool = False, token: str | None = None, close_session: bool = True,
                         extra: dict[str, object] | None = None) -> tuple[Received, str]:
    """Connect, send `wav` as the microphone for duration_s, record video and audio, close.

    during(session_id) runs while the session streams. Without `loop` the microphone goes quiet (no
    packets) once the WAV ends. `token` (the operator's or a publish token) goes on the offer as a
    bearer token; the session is closed with the token the answer hands back for it. Returns what was
    received and the session id. close_session=False: an abrupt end, the client only closes its own
    peer connection (the server learns of it from the connection, not from /sessions/{id}/close).
    extra: more fields of the offer's body (its outputs).
    """
    pc = RTCPeerConnection(NO_ICE_SERVERS)  # as the server: no STUN server off the machine
    player = MediaPlayer(str(wav), loop=loop)
    pc.addTrack(player.audio)
    pc.addTransceiver("video", direction="recvonly")
    got = Received()
    readers: list[asyncio.Task[None]] = []

    async def read_video(track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                got.video_wall_s.append(time.monotonic())
                got.video_pts.append(int(frame.pts))
                got.video_size = (frame.width, frame.height)
                if crop_box is not None:
                    x0, y0, x1, y1 = crop_box
                    # The Y plane is the picture's luma: enough to see the mouth move.
                    luma = frame.to_ndarray(format="gray")
                    got.crops.append(luma[y0:y1, x0:x1].astype(np.float32))

    async def read_audio(track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                pcm = frame.to_ndarray().astype(np.float32) / 32768.0
                got.audio_wall_s.append(time.monotonic())
                got.audio_rms.append(float(np.sqrt(np.mean(pcm**2))))

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        readers.append(asyncio.create_task(read_video(track) if track.kind == "video" else read_audio(track)))

    await pc.setLocalDescription(await pc.createOffer())
    loop = asyncio.get_running_loop()
    status, answer = await loop.run_in_executor(
        None, post_json, base_url + "/offer", {"sdp": pc.localDescription.sdp, "type": "offer", **(extra or {})}, 30.0,
        token)
    if status != 200:
        player.audio.stop()
        await pc.close()
        raise RuntimeError(f"offer refused: {status} {answer}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    if during is not None:
        await asyncio.gather(asyncio.sleep(duration_s), during(answer["session_id"]))
    else:
        await asyncio.sleep(duration_s)
    if close_session:
        close_token = answer.get("session_token", token)
        _, closed = await loop.run_in_executor(None, post_json, f"{base_url}/sessions/{answer['session_id']}/close",
                                               {}, 30.0, close_token)
        got.final = closed.get("session", {})
    for t in readers:
        t.cancel()
    await asyncio.wait_for(pc.close(), timeout=10)
    player.audio.stop()
    return got, answer["session_id"]
