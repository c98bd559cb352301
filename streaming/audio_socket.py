"""The TTS WebSocket of a stream, /streams/{id}/audio: synthesized speech in, played on the stream's clock.

    -> {"type": "start", "format": "pcm_s16le" or "opus", "sample_rate_hz": 8000..192000, "channels": 1 or 2}
    <- {"type": "started", "backlog_limit_s": 10.0}
    -> binary messages: pcm_s16le = little-endian int16, channels interleaved, whole samples only;
       opus = one Opus packet per message (48 kHz)
    -> {"type": "flush"}       end of an utterance: its last frame is completed with silence
    -> {"type": "interrupt"}   drop everything queued; the sound stops and the mouth closes with it
    <- {"type": "interrupted", "dropped_s": ...} / {"type": "flushed"}
    <- {"type": "backlog", "queued_s": ..., "limit_s": ...}: more than stream_audio_backlog_s is queued. The
       server reads no further audio until it has played down to the limit (TCP back-pressure), then says
       {"type": "ready", "queued_s": ...}. Text messages (an interrupt) are still read meanwhile, unless the
       client kept sending audio: then they wait behind it, so a client should pause on "backlog", or
       interrupt out of band (POST /streams/{id}/interrupt): the socket then drops audio until "start".
    <- {"type": "error", "error": "..."}; a protocol error also closes the socket:
       1007 malformed header or audio (odd byte count, undecodable Opus, audio before "start"),
       1008 no "start" within START_TIMEOUT_S, or over the message rate for too long,
       1009 a message over audio_max_message_bytes, 1001 the stream ended.

One publisher per stream at a time (a second one: 409 before the upgrade). Each socket has its own message
rate bucket. A bad socket is closed alone: the stream and every other stream play on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.types import SAMPLE_RATE_HZ
from streaming.errors import CLIENT_GONE
from streaming.live_stream import LiveStream
from streaming.ratelimit import TokenBucket

log = logging.getLogger(__name__)
START_TIMEOUT_S = 10.0
STRIKES = 50  # over-rate messages in a row before the socket is closed with 1008
CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_DATA = 1007  # RFC 6455: data inconsistent with the message's type
CLOSE_POLICY = 1008
CLOSE_INTERNAL_ERROR = 1011
HEADER = ('expected {"type": "start", "format": "pcm_s16le" or "opus", "sample_rate_hz": 8000..192000, '
          '"channels": 1 or 2}')


class StartHeader(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["start"]
    format: Literal["pcm_s16le", "opus"]
    sample_rate_hz: int = Field(ge=8000, le=192_000)
    channels: Literal[1, 2]


class Command(BaseModel):
    model_config = ConfigDict(extra="ignore")  # a "start" carries its fields: StartHeader checks them
    type: Literal["start", "flush", "interrupt"]


class AudioError(ValueError):
    """Audio that does not fit its header: the socket is closed with 1007."""


def validation_reason(e: ValidationError) -> str:
    first = e.errors(include_url=False, include_input=False)[0]
    if first["type"] == "json_invalid":
        return f"not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}"
    where = ".".join(map(str, first["loc"])) or "message"
    return f"{where}: {first['msg']}"


class Decoder:
    """Binary messages -> (PCM array, sample rate, channels) for PushedAudio.push."""

    def __init__(self, header: StartHeader) -> None:
        self.header = header
        self._opus: av.CodecContext | None = None
        if header.format == "opus":
            self._opus = av.CodecContext.create("opus", "r")
            self._opus.sample_rate = SAMPLE_RATE_HZ  # Opus always decodes at 48 kHz
            self._opus.layout = "stereo" if header.channels == 2 else "mono"

    def decode(self, data: bytes) -> tuple[np.ndarray, int, int]:
        channels = self.header.channels
        if self._opus is None:
            if len(data) % (2 * channels):
                raise AudioError(f"{len(data)} bytes is not a whole number of {channels}-channel s16le samples "
                                 f"(a multiple of {2 * channels} bytes)")
            return np.frombuffer(data, "<i2"), self.header.sample_rate_hz, channels
        try:
            frames = self._opus.decode(av.Packet(data))
        except av.error.FFmpegError as e:
            raise AudioError(f"not an Opus packet: {e}") from e
        chunks = [f.to_ndarray().reshape(len(f.layout.channels), -1).T.astype(np.float32) for f in frames]
        pcm = np.concatenate(chunks) if chunks else np.zeros((0, channels), np.float32)
        return pcm, SAMPLE_RATE_HZ, pcm.shape[1]


@dataclass
class AudioLimits:
    backlog_s: float = 10.0
    rate_per_s: float = 500.0
    burst: int = 500
    max_message_bytes: int = 1 << 20


class AudioSockets:
    """The publishers connected now, one per stream; each socket served by an AudioPublisher."""

    def __init__(self, limits: AudioLimits) -> None:
        self.limits = limits
        self.by_stream: dict[str, web.WebSocketResponse] = {}
        self.publishers: dict[str, AudioPublisher] = {}
        self.closed_for_errors = 0
        self._closing: set[asyncio.Task[bool]] = set()

    def busy(self, stream_id: str) -> bool:
        return stream_id in self.by_stream

    def stream_closed(self, stream_id: str) -> None:
        """The stream ended: its publisher is told with 1001 (called once per stream, not per socket, so a
        publisher that reconnects all day adds nothing to the stream)."""
        ws = self.by_stream.get(stream_id)
        if ws is not None:
            task = asyncio.get_running_loop().create_task(ws.close(code=CLOSE_GOING_AWAY, message=b"stream ended"))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def interrupt(self, live: LiveStream) -> float:
        """Out of band (POST /streams/{id}/interrupt): drop what is queued, and the audio the publisher already
        wrote until it sends "start" again. Returns the seconds dropped."""
        assert live.pushed is not None
        dropped_s = live.pushed.backlog_samples / SAMPLE_RATE_HZ
        live.pushed.interrupt()
        publisher = self.publishers.get(live.id)
        if publisher is not None:
            await publisher.discard_until_start(dropped_s)
        return dropped_s

    async def serve(self, request: web.Request, live: LiveStream) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=self.limits.max_message_bytes)
        await ws.prepare(request)
        sid = live.id
        self.by_stream[sid] = ws
        try:
            if live.stream.state == "closed":
                await ws.close(code=CLOSE_GOING_AWAY, message=b"stream ended")
                return ws
            publisher = self.publishers[sid] = AudioPublisher(ws, live, self.limits)
            await publisher.run()
        except CLIENT_GONE as e:
            log.info("audio %s: publisher went away (%s)", sid, type(e).__name__)
        except Exception:  # the response is a WebSocket by now: no HTTP error can follow it
            log.exception("audio %s: failed", sid)
            await ws.close(code=CLOSE_INTERNAL_ERROR, message=b"internal error")
        finally:
            if self.by_stream.get(sid) is ws:
                del self.by_stream[sid]
                self.publishers.pop(sid, None)
            if ws.close_code in (CLOSE_INVALID_DATA, CLOSE_POLICY, 1009):
                self.closed_for_errors += 1
        return ws


class AudioPublisher:
    """One socket's session: header, audio, commands, back-pressure."""

    def __init__(self, ws: web.WebSocketResponse, live: LiveStream, limits: AudioLimits) -> None:
        assert live.pushed is not None
        self.ws, self.live, self.pushed, self.limits = ws, live, live.pushed, limits
        self.limit_samples = int(limits.backlog_s * SAMPLE_RATE_HZ)
        self.bucket = TokenBucket(limits.rate_per_s, limits.burst)
        self.decoder: Decoder | None = None
        self.strikes = 0
        self.paused = False
        self.held: web.WSMessage | None = None  # audio read while paused: played once the backlog allows
        self.discarding = False  # after an out-of-band interrupt: audio is dropped until the next "start"
        self.discarded_bytes = 0

    async def discard_until_start(self, dropped_s: float) -> None:
        self.discarding, self.held = True, None
        await self.ws.send_json({"type": "interrupted", "dropped_s": round(dropped_s, 3), "until": "start"})

    async def fail(self, code: int, message: str) -> None:
        await self.ws.send_json({"type": "error", "error": message})
        await self.ws.close(code=code, message=message.encode()[:120])

    async def run(self) -> None:
        try:
            first = await self.ws.receive(timeout=START_TIMEOUT_S)
        except TimeoutError:
            await self.fail(CLOSE_POLICY, f"no start header within {START_TIMEOUT_S:g} s: {HEADER}")
            return
        if first.type != web.WSMsgType.TEXT:
            if first.type == web.WSMsgType.BINARY:
                await self.fail(CLOSE_INVALID_DATA, f"audio before the start header: {HEADER}")
            return
        if not await self.start(first.data):
            return
        await self.loop()

    async def start(self, raw: str) -> bool:
        try:
            header = StartHeader.model_validate_json(raw)
        except ValidationError as e:
            await self.fail(CLOSE_INVALID_DATA, f"bad start header: {validation_reason(e)}; {HEADER}")
            return False
        if self.decoder is not None and not self.discarding:  # a new format: what the old one left goes out first
            self.pushed.flush()
        self.decoder, self.discarding = Decoder(header), False
        await self.ws.send_json({"type": "started", "backlog_limit_s": self.limits.backlog_s})
        return True

    async def loop(self) -> None:
        receiving: asyncio.Task[web.WSMessage] | None = None
        try:
            while not self.ws.closed:
                if self.paused and self.pushed.backlog_samples <= self.limit_samples:
                    if self.held is not None:
                        message, self.held = self.held, None
                        if not await self.handle(message):
                            return
                        continue
                    self.paused = False
                    await self.ws.send_json({"type": "ready", "queued_s": self.queued_s()})
                waits: set[asyncio.Future[object]] = set()
                if self.held is None:  # while audio is held, read nothing more: the sender is held back by TCP
                    receiving = receiving or asyncio.ensure_future(self.ws.receive())
                    waits.add(receiving)  # type: ignore[arg-type]
                draining = None
                if self.paused:
                    draining = asyncio.ensure_future(self.pushed.wait_backlog_below(self.limit_samples))
                    waits.add(draining)  # type: ignore[arg-type]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if draining is not None and not draining.done():
                    draining.cancel()
                if receiving is None or not receiving.done():
                    continue
                message, receiving = receiving.result(), None
                if message.type == web.WSMsgType.BINARY and self.paused and not self.discarding:
                    self.held = message
                    continue
                if not await self.handle(message):
                    return
        finally:
            if receiving is not None and not receiving.done():
                receiving.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await receiving

    def queued_s(self) -> float:
        return round(self.pushed.backlog_samples / SAMPLE_RATE_HZ, 3)

    async def handle(self, message: web.WSMessage) -> bool:
        """One message; False when the socket is done."""
        if message.type in (web.WSMsgType.CLOSE, web.WSMsgType.CLOSING, web.WSMsgType.CLOSED, web.WSMsgType.ERROR):
            return False
        if message.type not in (web.WSMsgType.TEXT, web.WSMsgType.BINARY):
            return True
        wait_s = self.bucket.take()
        if wait_s:
            self.strikes += 1
            if self.strikes > STRIKES:
                await self.fail(CLOSE_POLICY, "message rate limit exceeded")
                return False
            await self.ws.send_json({"type": "error", "error": f"rate limited: at most {self.limits.rate_per_s:g} "
                                                              "messages a second; this one was not played"})
            return True
        self.strikes = 0
        if self.live.stream.state == "closed":
            await self.fail(CLOSE_GOING_AWAY, "the stream has ended")
            return False
        if message.type == web.WSMsgType.BINARY:
            if self.discarding:  # written before the interrupt: never played
                self.discarded_bytes += len(message.data)
                return True
            return await self.audio(message.data)
        return await self.command(message.data)

    async def audio(self, data: bytes) -> bool:
        assert self.decoder is not None
        try:
            pcm, rate_hz, channels = self.decoder.decode(data)
        except AudioError as e:
            await self.fail(CLOSE_INVALID_DATA, str(e))
            return False
        self.pushed.push(pcm, rate_hz, channels)
        if not self.paused and self.pushed.backlog_samples > self.limit_samples:
            self.paused = True
            await self.ws.send_json({"type": "backlog", "queued_s": self.queued_s(), "limit_s": self.limits.backlog_s})
        return True

    async def command(self, raw: str) -> bool:
        try:
            kind = Command.model_validate_json(raw).type
        except ValidationError as e:
            await self.ws.send_json({"type": "error", "error": f"{validation_reason(e)}; expected "
                                                              '{"type": "start", "flush" or "interrupt"}'})
            return True
        if kind == "start":
            return await self.start(raw)
        if kind == "flush":
            self.pushed.flush()
            await self.ws.send_json({"type": "flushed", "queued_s": self.queued_s()})
            return True
        dropped = self.pushed.backlog_samples
        self.pushed.interrupt()
        await self.ws.send_json({"type": "interrupted", "dropped_s": round(dropped / SAMPLE_RATE_HZ, 3)})
        return True
