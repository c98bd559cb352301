"""WHEP egress: any number of viewers of one stream, fed by one render and one encode per codec.

    POST   /streams/{sid}/whep        application/sdp offer -> 201, the answer, Location: .../whep/{vid}
    DELETE /streams/{sid}/whep/{vid}  that viewer leaves; the stream and the other viewers go on

Each viewer is an EncodedWebRtcSink (streaming/tracks.py): its tracks hand aiortc packets of the
stream's shared encodes (streaming/encoding.py), which aiortc only packetises. H.264 where the viewer
offers it: the stream's one live H.264 encode (streaming.outputs.live_video_for), which its RTMP
pushes and recording share; else VP8; Opus for the sound. A viewer starts at a keyframe forced when
it joins; its keyframe requests (RTCP PLI/FIR) go to the shared video encoder, at most one per
KEYFRAME_INTERVAL_S for all its viewers together (one lossy viewer must not turn everyone's stream,
the RTMP pushes' included, into keyframes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from aiortc import RTCRtpSender, RTCSessionDescription
from aiortc.codecs import CODECS
from aiortc.rtcpeerconnection import find_common_codecs
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import MediaDescription, SessionDescription

from streaming.admission import check_rate
from streaming.config import ServerConfig
from streaming.encoding import AudioSpec, EncodingSpec, VideoSpec, live_video
from streaming.offers import OfferError
from streaming.outputs import live_video_for
from streaming.patches import on_keyframe_request, present_ahead
from streaming.ratelimit import RateLimiter
from streaming.registry import SessionRegistry
from streaming.sdp_exchange import PeerResource, Resources, location, read_sdp_offer, refuse_sdp, sdp_created
from streaming.stream import AvatarStream
from streaming.tracks import EncodedWebRtcSink

log = logging.getLogger(__name__)
WEB_DIR = Path(__file__).resolve().parent / "web"

MAX_VIEWERS_PER_STREAM = 32
KEYFRAME_INTERVAL_S = 0.5
SAFETY_GOP_FRAMES = 240  # a keyframe every 5 s even if no viewer asks: a receiver that never sends PLI recovers
OPUS_BIT_RATE = 64_000


def video_spec(mime: str, bitrate_bps: int, h264: VideoSpec | None = None) -> EncodingSpec:
    """The shared encodes for a WebRTC viewer: for H.264 the stream's live H.264 (h264; its bit rate from the
    picture size; or streaming.encoding.live_video(bitrate_bps)); for VP8 no lookahead (latency), one thread
    (libvpx threads fight the renderer on a small machine), the bitrate capped (a keyframe that exceeds a
    receiver's UDP buffer is lost whole). Opus for the sound."""
    opus = AudioSpec("libopus", OPUS_BIT_RATE)
    if mime == "video/H264":
        return EncodingSpec.of(h264 or live_video(bitrate_bps), opus)
    bps = str(bitrate_bps)
    options = (("deadline", "realtime"), ("cpu-used", "8"), ("lag-in-frames", "0"), ("g", str(SAFETY_GOP_FRAMES)),
               ("b", bps), ("maxrate", bps), ("bufsize", str(bitrate_bps // 4)), ("threads", "1"))
    return EncodingSpec.of(VideoSpec("libvpx", options), opus)


def choose_video(media: MediaDescription) -> str:
    """H.264 (packetization-mode 1) if the viewer can take it, else VP8: aiortc has no other video codec."""
    try:
        common = find_common_codecs(CODECS["video"], media.rtp.codecs)
    except Exception as e:
        raise OfferError(f"the video m-line's codec parameters are invalid ({type(e).__name__})") from None
    mimes = {c.mimeType for c in common}
    for mime in ("video/H264", "video/VP8"):
        if mime in mimes:
            return mime
    raise OfferError("the video m-line offers neither H264 (packetization-mode=1) nor VP8")


def viewer_media(description: SessionDescription) -> tuple[MediaDescription, MediaDescription | None]:
    """The video m-line a viewer receives on, and its audio m-line (optional); OfferError if it cannot receive."""
    video = [m for m in description.media if m.kind == "video"]
    audio = [m for m in description.media if m.kind == "audio"]
    if not video:
        raise OfferError("a WHEP offer needs a video m-line (recvonly) to receive the avatar on")
    if len(video) > 1 or len(audio) > 1:
        raise OfferError("a WHEP offer may have one audio and one video m-line")
    for m in (*video, *audio):
        if m.direction not in ("recvonly", "sendrecv"):
            raise OfferError(f"the {m.kind} m-line is {m.direction}: a viewer receives (recvonly)")
    if audio and not any(c.mimeType.lower() == "audio/opus" for c in audio[0].rtp.codecs):
        raise OfferError("the audio m-line does not offer Opus")
    return video[0], audio[0] if audio else None


def _preferences(kind: str, mime: str) -> list[RTCRtpCodecCapability]:
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    return [c for c in codecs if c.mimeType.lower() in (mime.lower(), f"{kind}/rtx")]


class KeyframeGate:
    """At most one keyframe request per interval reaches the encoder; one asked for meanwhile goes at its end."""

    def __init__(self, fire: Callable[[], None], interval_s: float = KEYFRAME_INTERVAL_S) -> None:
        self._fire = fire
        self.interval_s = interval_s
        self._last_s = -interval_s
        self._pending: asyncio.TimerHandle | None = None
        self.requests = 0

    def request(self) -> None:
        self.requests += 1
        if self._pending is not None:
            return
        wait_s = self._last_s + self.interval_s - time.monotonic()
        if wait_s <= 0:
            self._go()
        else:
            self._pending = asyncio.get_running_loop().call_later(wait_s, self._go)

    def _go(self) -> None:
        self._pending = None
        self._last_s = time.monotonic()
        self._fire()

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None


class WhepEgress:
    """The WHEP viewers of every stream of a server."""

    def __init__(self, video_bitrate_bps: int, connect_timeout_s: float,
                 max_viewers: int = MAX_VIEWERS_PER_STREAM) -> None:
        self.video_bitrate_bps = video_bitrate_bps
        self.connect_timeout_s = connect_timeout_s
        self.max_viewers = max_viewers
        self.viewers = Resources("whep")
        self._sinks: dict[PeerResource, EncodedWebRtcSink] = {}
        self._gates: dict[tuple[str, VideoSpec], KeyframeGate] = {}  # per stream and video encode

    def refusal(self, stream: AvatarStream) -> str | None:
        if len(self.viewers.of(stream.id)) >= self.max_viewers:
            return f"stream {stream.id} has {self.max_viewers} viewers (the limit); try again later"
        return None

    async def add_viewer(self, stream: AvatarStream, sdp: str, description: SessionDescription) -> tuple[str, str]:
        """A viewer for the offer: (its resource id, the answer SDP). OfferError when it cannot be answered."""
        video_media, audio_media = viewer_media(description)
        spec = video_spec(choose_video(video_media), self.video_bitrate_bps, live_video_for(stream))
        gate = self._gate(stream, spec)
        sink = EncodedWebRtcSink(spec, on_lost=gate.request)
        viewer = PeerResource("whep", stream, self._gone)
        self._sinks[viewer] = sink
        self.viewers.add(viewer)
        pc = viewer.pc
        try:
            # Transceivers made before the offer is applied take its m-lines, with the codec the encoder makes.
            video = pc.addTransceiver(sink.video, direction="sendonly")
            video.setCodecPreferences(_preferences("video", spec_mime(spec)))
            on_keyframe_request(video.sender, gate.request)
            if audio_media is not None:
                audio = pc.addTransceiver(sink.audio, direction="sendonly")
                audio.setCodecPreferences(_preferences("audio", "audio/opus"))
                # The sound leaves audio_lead_s before its picture; reports say when it is presented.
                present_ahead(audio.sender, stream.pacer.audio_lead_s)
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                await pc.setLocalDescription(await pc.createAnswer())
            except Exception as e:  # aiortc raises many kinds on SDP it cannot use (aiortc#114)
                raise OfferError(f"cannot answer this offer: {type(e).__name__}: {e}") from e
        except BaseException:
            await viewer.close()
            raise

        def watch() -> None:
            if stream.state != "closed" and self.viewers.find(stream.id, viewer.id) is viewer:
                stream.add_sink(sink)  # its encoder forces a keyframe for it: the picture starts at once

        viewer.on_connected.append(watch)
        viewer.expire_unless_connected(self.connect_timeout_s)
        log.info("stream %s: WHEP viewer %s (%s), %d viewers", stream.id, viewer.id[:8], spec.video_codec,
                 len(self.viewers.of(stream.id)))
        return viewer.id, pc.localDescription.sdp

    async def remove(self, stream_id: str, viewer_id: str) -> bool:
        viewer = self.viewers.find(stream_id, viewer_id)
        if viewer is None:
            return False
        await viewer.close()
        return True

    def _gate(self, stream: AvatarStream, spec: EncodingSpec) -> KeyframeGate:
        key = (stream.id, spec.video)
        gate = self._gates.get(key)
        if gate is None:
            def fire() -> None:
                encoder = stream.pacer.sinks.encoders.get(spec.video)
                if encoder is not None:
                    encoder.request_keyframe()

            gate = self._gates[key] = KeyframeGate(fire)
        return gate

    async def _gone(self, viewer: PeerResource) -> None:
        self.viewers.forget(viewer)
        sink = self._sinks.pop(viewer, None)
        stream = viewer.stream
        if sink is not None and stream.state != "closed":
            await stream.remove_sink(sink)
        if not self.viewers.of(stream.id):
            for key in [k for k in self._gates if k[0] == stream.id]:
                self._gates.pop(key).cancel()
        log.info("stream %s: WHEP viewer %s left, %d viewers", stream.id, viewer.id[:8],
                 len(self.viewers.of(stream.id)))


def spec_mime(spec: EncodingSpec) -> str:
    return "video/H264" if "264" in spec.video_codec else "video/VP8"


WHEP = web.AppKey("whep", WhepEgress)


def install_whep(app: web.Application, registry: SessionRegistry, config: ServerConfig, limiter: RateLimiter) -> None:
    """The WHEP routes and the watch page (a WHEP client: /watch/{sid}?token=VIEW_TOKEN)."""
    egress = app[WHEP] = WhepEgress(config.video_bitrate_bps, config.connect_timeout_s)

    async def watch_page(_: web.Request) -> web.FileResponse:
        # The page holds no secret: the stream id is in its path, the viewer's token in its query.
        return web.FileResponse(WEB_DIR / "watch.html")

    async def whep(request: web.Request) -> web.Response:
        check_rate(limiter, request, "offers")
        sid = request.match_info["sid"]
        stream = registry.active.get(sid)
        if stream is None or stream.state == "closed":
            return refuse_sdp(f"no live stream {sid!r}", 404)
        sdp, description = await read_sdp_offer(request, config.body_timeout_s)
        if (refusal := egress.refusal(stream)) is not None:
            return web.json_response({"error": refusal}, status=503, headers={"Retry-After": "5"})
        try:
            viewer_id, answer = await egress.add_viewer(stream, sdp, description)
        except OfferError as e:
            return refuse_sdp(str(e), 400)
        return sdp_created(answer, location(request, viewer_id))

    async def leave(request: web.Request) -> web.Response:
        sid, vid = request.match_info["sid"], request.match_info["vid"]
        if not await egress.remove(sid, vid):
            return refuse_sdp(f"no WHEP viewer {vid!r} on stream {sid!r}", 404)
        return web.json_response({"closed": True})

    app.router.add_get("/watch/{sid}", watch_page)
    app.router.add_post("/streams/{sid}/whep", whep)
    app.router.add_delete("/streams/{sid}/whep/{vid}", leave)
