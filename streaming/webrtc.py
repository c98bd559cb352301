"""WebRTC: offer validation, ICE and bitrate settings, and the adapter that joins a peer connection to a stream."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from streaming.patches import present_ahead, release_frames_promptly
from streaming.sources import TrackSource
from streaming.stream import AvatarStream
from streaming.tracks import WebRtcSink

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
    """The WebRTC adapter of a stream: the peer's microphone feeds it, a WebRTC sink shows it to the peer."""

    def __init__(self, stream: AvatarStream) -> None:
        self.id = stream.id
        self.stream = stream
        self.pc = RTCPeerConnection()
        self.sink = WebRtcSink()
        self._tasks: list[asyncio.Task[None]] = []
        self._sink_added = False
        stream.close_with(self._close_connection)

    async def answer(self, offer: RTCSessionDescription, connect_timeout_s: float) -> RTCSessionDescription:
        pc, stream = self.pc, self.stream

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                for receiver in pc.getReceivers():
                    if receiver.track is track:
                        release_frames_promptly(receiver)
                stream.add_source(TrackSource(track))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("session %s: connection %s", self.id, pc.connectionState)
            if pc.connectionState == "connected" and stream.state != "closed":
                stream.state = "streaming"
                if not self._sink_added:
                    # From now on, not before: its first frame is the first the peer gets (first_sent_frame).
                    self._sink_added = True
                    stream.add_sink(self.sink)
            elif pc.connectionState in ("failed", "closed"):
                stream.close_soon()

        try:
            await pc.setRemoteDescription(offer)
        except Exception as e:  # aiortc raises many kinds on malformed SDP (aiortc#114)
            detail = str(e) or "the SDP parser rejected it"
            raise OfferError(f"invalid SDP: {detail} ({type(e).__name__})") from e
        stream.state = "connecting"
        await stream.start()
        # The sound goes out audio_lead_s before its picture, labelled for the browser as presented with it.
        present_ahead(pc.addTrack(self.sink.audio), stream.pacer.audio_lead_s)
        pc.addTrack(self.sink.video)
        try:
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as e:
            raise OfferError(f"cannot answer this offer: {type(e).__name__}: {e}") from e
        self._tasks.append(asyncio.create_task(self._expire_if_unconnected(connect_timeout_s)))
        return pc.localDescription

    async def _expire_if_unconnected(self, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)
        if self.pc.connectionState != "connected":
            log.warning("session %s: not connected after %.0f s, closing", self.id, timeout_s)
            self.stream.close_soon()

    async def close(self) -> None:
        await self.stream.close()

    async def _close_connection(self) -> None:
        """The stream's last step: its sinks (this peer's tracks) and its session are closed by now."""
        current = asyncio.current_task()
        for t in self._tasks:
            if t is not current:
                t.cancel()
        self._tasks.clear()
        try:  # pc.close() can hang (aiortc#283)
            await asyncio.wait_for(self.pc.close(), timeout=5.0)
        except TimeoutError:
            log.warning("session %s: peer connection close timed out", self.id)


def new_session_id() -> str:
    return uuid.uuid4().hex  # all 122 random bits: an id must not be guessable
