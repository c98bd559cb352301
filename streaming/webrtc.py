"""WebRTC: the adapter that joins a peer connection to a stream (offers are checked in streaming/offers.py)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from streaming.live_stream import outputs_module
from streaming.offers import OfferError
from streaming.patches import label_h264_keyframes, present_ahead, release_frames_promptly
from streaming.sei import KeyframeSei
from streaming.sources import TrackSource
from streaming.stream import AvatarStream
from streaming.tracks import WebRtcSink

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 5.0
# No STUN server: aiortc's default is Google's, so every answer asked stun.l.google.com (a DNS query and a
# packet leaving the machine per session, from a server that may be bound to loopback) and its gathering
# waited up to 5 s where that did not answer. The server's own addresses (--ice-host) are its candidates.
NO_ICE_SERVERS = RTCConfiguration(iceServers=[])


class PeerSession:
    """The WebRTC adapter of a stream: the peer's microphone feeds it, a WebRTC sink shows it to the peer."""

    def __init__(self, stream: AvatarStream, outputs: Any = None) -> None:
        """outputs: a streaming.outputs.OutputsSpec (RTMP, recording, size), attached once the peer connects."""
        self.id = stream.id
        self.outputs = outputs
        self.stream = stream
        self.pc = RTCPeerConnection(NO_ICE_SERVERS)
        self.sink = WebRtcSink()
        if stream.pacer.sinks.aigc:  # the hidden label in its H.264 keyframes, if H.264 is what the peer takes
            label_h264_keyframes()
            self.sink.video.label = KeyframeSei.of(stream.pacer.sinks.aigc)
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
                    if self.outputs is not None:  # its canvas before the first frame, which the first sink starts
                        try:
                            outputs_module().attach_outputs(stream, self.outputs)
                        except Exception:  # the peer still gets its stream; the log says what is missing
                            log.exception("session %s: its outputs could not be attached", self.id)
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
        try:  # pc.close() can hang (aiortc#283), and raises after a failed createAnswer
            await asyncio.wait_for(self.pc.close(), timeout=CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("session %s: peer connection close timed out after %.0f s", self.id, CLOSE_TIMEOUT_S)
        except Exception as e:
            log.warning("session %s: peer connection close failed: %s: %s", self.id, type(e).__name__, e)


def new_session_id() -> str:
    return uuid.uuid4().hex  # all 122 random bits: an id must not be guessable
