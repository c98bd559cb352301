"""Real aiortc WHEP viewers and WHIP publishers (RFC 9725) for tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError

from harness.webrtc_client import Received, auth_header

SDP = "application/sdp"


class SdpRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


async def post_sdp(url: str, sdp: str, token: str | None = None) -> tuple[str, str]:
    """POST an offer; (answer SDP, absolute Location) or SdpRefused with the server's status and reason."""
    async with aiohttp.ClientSession() as http, http.post(
            url, data=sdp.encode(), headers={"Content-Type": SDP, **auth_header(token)}) as r:
        if r.status != 201:
            body = await r.json(content_type=None)
            raise SdpRefused(r.status, body.get("error", "") if isinstance(body, dict) else str(body))
        assert r.content_type == SDP, r.content_type
        return await r.text(), str(r.url.join(aiohttp.client.URL(r.headers["Location"])))


async def delete(url: str, token: str | None = None) -> int:
    async with aiohttp.ClientSession() as http, http.delete(url, headers=auth_header(token)) as r:
        return r.status


class WhepViewer:
    """Watches a stream: records when each video frame and audio frame is decoded."""

    def __init__(self, video_codec: str | None = None, crop_box: tuple[int, int, int, int] | None = None,
                 keep_pictures: bool = False) -> None:
        self.pc = RTCPeerConnection()
        self.crop_box = crop_box  # (x0, y0, x1, y1): keep this region of each picture, grey
        self.keep_pictures = keep_pictures
        self.pictures: list[tuple[int, float, np.ndarray]] = []  # keep_pictures: (RTP pts, decoded at, RGB)
        self.got = Received()
        self.location: str | None = None
        self.answered_s: float | None = None
        self.connected_s: float | None = None
        self.keyframes = 0  # decoded frames flagged key (H.264)
        video = self.pc.addTransceiver("video", direction="recvonly")
        if video_codec is not None:  # e.g. "video/VP8": the viewer offers only that
            video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                       if c.mimeType.lower() in (video_codec.lower(), "video/rtx")])
        self.pc.addTransceiver("audio", direction="recvonly")
        self._readers: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            if self.pc.connectionState == "connected" and self.connected_s is None:
                self.connected_s = time.monotonic()

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._readers.append(asyncio.create_task(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if track.kind == "video":
                    self.got.video_wall_s.append(now)
                    self.got.video_pts.append(int(frame.pts))
                    self.got.video_size = (frame.width, frame.height)
                    self.keyframes += int(bool(getattr(frame, "key_frame", False)))
                    if self.keep_pictures:
                        self.pictures.append((int(frame.pts), now, frame.to_ndarray(format="rgb24")))
                    if self.crop_box is not None:
                        x0, y0, x1, y1 = self.crop_box
                        self.got.crops.append(frame.to_ndarray(format="gray")[y0:y1, x0:x1].astype(np.float32))
                else:
                    pcm = frame.to_ndarray().astype(np.float32) / 32768.0
                    self.got.audio_wall_s.append(now)
                    self.got.audio_rms.append(float(np.sqrt(np.mean(pcm**2))))

    async def start(self, url: str, token: str | None = None) -> None:
        """url: the stream's WHEP endpoint (.../streams/{id}/whep)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        try:
            answer, self.location = await post_sdp(url, self.pc.localDescription.sdp, token)
        except BaseException:
            await self.pc.close()
            raise
        self.answered_s = time.monotonic()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def send_pli(self) -> None:
        """Ask the sender for a keyframe (RTCP PLI), as a receiver does when its decoder lost its place."""
        receiver = next(t.receiver for t in self.pc.getTransceivers() if t.kind == "video")
        for source in receiver.getSynchronizationSources():
            await receiver._send_rtcp_pli(source.source)  # aiortc's own sender of PLI (private; a test peer)

    def first_frame_after_s(self) -> float | None:
        """Seconds from the connection (ICE and DTLS done: media can flow) to the first decoded picture (a decoder
        shows nothing before a keyframe)."""
        if not self.got.video_wall_s or self.connected_s is None:
            return None
        return self.got.video_wall_s[0] - self.connected_s

    async def stop(self, token: str | None = None, send_delete: bool = True) -> int | None:
        status = await delete(self.location, token) if send_delete and self.location else None
        for t in self._readers:
            t.cancel()
        await asyncio.wait_for(self.pc.close(), 10)
        return status


class WhipPublisher:
    """Publishes a WAV as the host's voice."""

    def __init__(self, wav: Path, loop: bool = False) -> None:
        self.pc = RTCPeerConnection()
        self.player = MediaPlayer(str(wav), loop=loop)
        self.pc.addTransceiver(self.player.audio, direction="sendonly")
        self.location: str | None = None

    async def start(self, url: str, token: str | None = None) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        try:
            answer, self.location = await post_sdp(url, self.pc.localDescription.sdp, token)
        except BaseException:
            await self.close()
            raise
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def stop(self, token: str | None = None) -> int | None:
        status = await delete(self.location, token) if self.location else None
        await self.close()
        return status

    async def close(self) -> None:
        self.player.audio.stop()
        await asyncio.wait_for(self.pc.close(), 10)
