"""WHIP ingest (RFC 9725): the host's voice published from OBS, a browser or GStreamer becomes the stream's source.

    POST   /streams/{sid}/whip        application/sdp offer -> 201, the answer, Location: .../whip/{pid}
    DELETE /streams/{sid}/whip/{pid}  the publisher stops; the stream goes on (silence, then idle)

One voice at a time: a second publisher while one is live, or a publisher to a stream whose host's
browser already sends its microphone (POST /offer), gets 409 with the reason. The published audio is
pushed into the session like the microphone's (placed on the media clock by its RTP timestamps);
a published video m-line is answered inactive (nothing is decoded for it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from fractions import Fraction

import av
from aiohttp import web
from aiortc import MediaStreamTrack, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription

from engine.session import AvatarSession
from engine.types import SAMPLE_RATE_HZ
from streaming.admission import check_rate
from streaming.config import ServerConfig
from streaming.offers import OfferError
from streaming.patches import release_frames_promptly
from streaming.ratelimit import RateLimiter
from streaming.registry import SessionRegistry
from streaming.sdp_exchange import PeerResource, Resources, location, read_sdp_offer, refuse_sdp, sdp_created
from streaming.stream import AvatarStream
from streaming.streams_api import AUDIO_SOCKETS

log = logging.getLogger(__name__)

LIVE_VOICES = ("microphone", "whip")  # sources a second voice would garble (their frames interleave)


class PublishedAudio:
    """A WHIP publisher's audio track. Its timestamps are moved onto the clock's timeline at its first frame,
    so a publisher that follows another continues where that one left off (its RTP timestamps start anywhere,
    and the session's anchor would otherwise take the jump for jitter)."""

    name = "whip"

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track

    async def run(self, session: AvatarSession) -> None:
        shift: int | None = None
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await self.track.recv()
                assert isinstance(frame, av.AudioFrame)
                if frame.pts is not None and frame.time_base is not None and session.clock is not None:
                    if shift is None:
                        now = Fraction(session.clock.live_sample_now(), SAMPLE_RATE_HZ)
                        shift = round(now / frame.time_base) - frame.pts
                    frame.pts += shift
                session.push_audio_frame(frame)


def publisher_media(description: SessionDescription) -> None:
    """OfferError unless the offer sends audio (Opus) on one audio m-line."""
    audio = [m for m in description.media if m.kind == "audio"]
    if len(audio) != 1:
        raise OfferError(f"a WHIP offer needs exactly one audio m-line (the voice), it has {len(audio)}")
    if audio[0].direction not in ("sendonly", "sendrecv"):
        raise OfferError(f"the audio m-line is {audio[0].direction}: a publisher sends (sendonly)")
    if not any(c.mimeType.lower() == "audio/opus" for c in audio[0].rtp.codecs):
        raise OfferError("the audio m-line does not offer Opus")


class WhipIngest:
    """The WHIP publishers of every stream of a server: at most one live per stream."""

    def __init__(self, connect_timeout_s: float, other_voice: Callable[[str], bool] | None = None) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.publishers = Resources("whip")
        self.other_voice = other_voice  # whether another ingest (the TTS WebSocket) is feeding a stream now

    def conflict(self, stream: AvatarStream) -> str | None:
        """Why the stream takes no publisher now (HTTP 409), or None."""
        if self.publishers.of(stream.id):
            return (f"stream {stream.id} already has a WHIP publisher: one voice at a time (the live one must "
                    "DELETE its resource, or drop, first)")
        sources = stream.source_names
        if "microphone" in sources:
            return f"stream {stream.id} takes its voice from its host's browser microphone (POST /offer)"
        if "file" in sources:
            return f"stream {stream.id} plays the audio file it was created with"
        if self.other_voice is not None and self.other_voice(stream.id):
            return f"stream {stream.id} has a TTS publisher on its audio WebSocket (one voice at a time)"
        return None

    async def add_publisher(self, stream: AvatarStream, sdp: str, description: SessionDescription) -> tuple[str, str]:
        """A publisher for the offer: (its resource id, the answer SDP). OfferError when it cannot be answered."""
        publisher_media(description)
        publisher = PeerResource("whip", stream, self._gone)
        self.publishers.add(publisher)  # before any await: a second POST meanwhile sees it (409)
        pc = publisher.pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind != "audio" or stream.state == "closed":
                return
            for receiver in pc.getReceivers():
                if receiver.track is track:
                    release_frames_promptly(receiver)
            stream.add_source(PublishedAudio(track))

        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                for transceiver in pc.getTransceivers():
                    if transceiver.kind != "audio":
                        transceiver.direction = "inactive"  # OBS sends video too: nothing here shows it
                await pc.setLocalDescription(await pc.createAnswer())
            except Exception as e:  # aiortc raises many kinds on SDP it cannot use (aiortc#114)
                raise OfferError(f"cannot answer this offer: {type(e).__name__}: {e}") from e
        except BaseException:
            await publisher.close()
            raise
        publisher.expire_unless_connected(self.connect_timeout_s)
        log.info("stream %s: WHIP publisher %s", stream.id, publisher.id[:8])
        return publisher.id, pc.localDescription.sdp

    async def remove(self, stream_id: str, publisher_id: str) -> bool:
        publisher = self.publishers.find(stream_id, publisher_id)
        if publisher is None:
            return False
        await publisher.close()
        return True

    async def _gone(self, publisher: PeerResource) -> None:
        # Its track ends with its connection, and the source with it (MediaStreamError).
        self.publishers.forget(publisher)
        log.info("stream %s: WHIP publisher %s left", publisher.stream.id, publisher.id[:8])


WHIP = web.AppKey("whip", WhipIngest)


def install_whip(app: web.Application, registry: SessionRegistry, config: ServerConfig, limiter: RateLimiter) -> None:
    def tts_busy(sid: str) -> bool:
        sockets = app.get(AUDIO_SOCKETS)
        return sockets is not None and sockets.busy(sid)

    ingest = app[WHIP] = WhipIngest(config.connect_timeout_s, tts_busy)

    async def whip(request: web.Request) -> web.Response:
        check_rate(limiter, request, "offers")
        sid = request.match_info["sid"]
        stream = registry.active.get(sid)
        if stream is None or stream.state == "closed":
            return refuse_sdp(f"no live stream {sid!r}", 404)
        sdp, description = await read_sdp_offer(request, config.body_timeout_s)
        if (conflict := ingest.conflict(stream)) is not None:
            return refuse_sdp(conflict, 409)
        try:
            publisher_id, answer = await ingest.add_publisher(stream, sdp, description)
        except OfferError as e:
            return refuse_sdp(str(e), 400)
        return sdp_created(answer, location(request, publisher_id))

    async def stop(request: web.Request) -> web.Response:
        sid, pid = request.match_info["sid"], request.match_info["pid"]
        if not await ingest.remove(sid, pid):
            return refuse_sdp(f"no WHIP publisher {pid!r} on stream {sid!r}", 404)
        return web.json_response({"closed": True})

    app.router.add_post("/streams/{sid}/whip", whip)
    app.router.add_delete("/streams/{sid}/whip/{pid}", stop)
