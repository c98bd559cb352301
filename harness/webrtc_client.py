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
