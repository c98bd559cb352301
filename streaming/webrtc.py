"""WebRTC: offer validation and one engine session per peer connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from engine.session import AvatarSession
from streaming.pacer import Pacer
from streaming.patches import present_ahead, release_frames_promptly
from streaming.tracks import AvatarAudioTrack, AvatarVideoTrack

log = logging.getLogger(__name__)


class OfferError(ValueError):
    """A client's offer is unusable; the message is sent back with HTTP 400."""


def parse_offer(body: bytes) -> RTCSessionDescription:
    try:
        params = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise OfferError(f"request body is not valid JSON: {e}") from e
    if not isinstance(params, dict):
        raise OfferError('expected a JSON object {"sdp": ..., "type": "offer"}')
    sdp, kind = params.get("sdp"), params.get("type")
    if not isinstance(sdp, str) or not sdp.strip():
        raise OfferError("missing 'sdp': expected a JSON object {\"sdp\": ..., \"type\": \"offer\"}")
    if kind != "offer":
        raise OfferError(f"'type' must be \"offer\", got {kind!r}")
    if not sdp.lstrip().startswith("v=0"):
        raise OfferError("'sdp' is not a session description (it must start with v=0)")
    media = [line.split()[0][2:] for line in sdp.splitlines() if line.startswith("m=")]
    if "audio" not in media:
        raise OfferError("offer has no audio m-line: the engine needs the host's microphone as an audio track")
    if "video" not in media:
        raise OfferError("offer has no video m-line: add a recvonly video transceiver to receive the avatar")
    return RTCSessionDescription(sdp=sdp, type="offer")


class PeerSession:
    """A peer connection and the engine session that answers it."""

    def __init__(self, session: AvatarSession, on_closed: Callable[[PeerSession], None],
                 audio_lead_s: float = 0.0) -> None:
        self.id = session.id
        self.session = session
        self.pc = RTCPeerConnection()
        self.pacer: Pacer | None = None
        self.state = "new"
        self._on_closed = on_closed
        self.audio_lead_s = audio_lead_s
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: asyncio.Task[None] | None = None

    async def answer(self, offer: RTCSessionDescription, connect_timeout_s: float) -> RTCSessionDescription:
        pc = self.pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                for receiver in pc.getReceivers():
                    if receiver.track is track:
                        release_frames_promptly(receiver)
                self._tasks.append(asyncio.create_task(self._read_mic(track), name=f"{self.id}:mic"))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("session %s: connection %s", self.id, pc.connectionState)
            if pc.connectionState == "connected":
                self.state = "streaming"
            elif pc.connectionState in ("failed", "closed"):
                self.close_soon()

        try:
            await pc.setRemoteDescription(offer)
        except Exception as e:  # aiortc raises many kinds on malformed SDP (aiortc#114)
            detail = str(e) or "the SDP parser rejected it"
            raise OfferError(f"invalid SDP: {detail} ({type(e).__name__})") from e
        await self.session.start()
        assert self.session.clock is not None
        self.pacer = Pacer(self.session, self.session.clock, audio_lead_s=self.audio_lead_s)
        self.pacer.start()
        # The sound goes out audio_lead_s before its picture, labelled for the browser as presented with it.
        present_ahead(pc.addTrack(AvatarAudioTrack(self.pacer)), self.audio_lead_s)
        pc.addTrack(AvatarVideoTrack(self.pacer))
        try:
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as e:
            raise OfferError(f"cannot answer this offer: {type(e).__name__}: {e}") from e
        self.state = "connecting"
        self._tasks.append(asyncio.create_task(self._expire_if_unconnected(connect_timeout_s)))
        return pc.localDescription

    async def _read_mic(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                self.session.push_audio_frame(await track.recv())

    async def _expire_if_unconnected(self, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)
        if self.pc.connectionState != "connected":
            log.warning("session %s: not connected after %.0f s, closing", self.id, timeout_s)
            self.close_soon()

    def close_soon(self) -> None:
        if self._closing is None:
            self._closing = asyncio.create_task(self.close())

    async def close(self) -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        self._on_closed(self)
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current:
                t.cancel()
        if self.pacer is not None:
            await self.pacer.stop()
        await self.session.aclose()
        try:  # pc.close() can hang (aiortc#283)
            await asyncio.wait_for(self.pc.close(), timeout=5.0)
        except TimeoutError:
            log.warning("session %s: peer connection close timed out", self.id)
        self._tasks.clear()

    def info(self) -> dict[str, Any]:
        pacer = self.pacer.metrics.as_dict() if self.pacer else {}
        clock = self.session.clock
        if clock is not None and self.pacer is not None:
            # Frame k is due at clock_start_s + pipeline_delay_s + k / 48 (time.monotonic, which a peer
            # on the same machine shares: benchmarks.latency splits its latency with it).
            pacer |= {"clock_start_s": clock.start_s, "pipeline_delay_s": clock.delay_s,
                      "first_sent_frame": self.pacer.first_sent_frame,
                      "mic_offset_samples": self.session.input_offset_samples}
        return {"id": self.id, "state": self.state, **pacer, **self.session.metrics.as_dict(),
                **self.session.queue_depths(), **self.session.director_stats()}


def new_session_id() -> str:
    return uuid.uuid4().hex[:12]
