"""The control WebSocket of a session: instructions and persona for its director, bounded.

Each client address has a message-rate bucket shared by its sockets, so that reconnecting does not refill
it (an over-rate message is answered "rate limited"; a socket that keeps going is closed with 1008) and a
connection-rate bucket (more connections: 429), messages are at most MAX_CONTROL_BYTES (aiohttp closes with 1009),
JSON is parsed by pydantic (bounded nesting: a 2,000-deep message is an error reply, not a dead
handler), a client address holds at most ControlLimits.sockets_per_client of them, and each is closed
with 1001 when its session ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, StringConstraints, ValidationError

from engine.session import AvatarSession
from streaming.errors import CLIENT_GONE
from streaming.ratelimit import RateLimiter
from streaming.stream import AvatarStream

log = logging.getLogger(__name__)
MAX_CONTROL_BYTES = 4096
MAX_CONTROL_TEXT = 500
SHAPE = 'expected {"type": "instruction" or "persona", "text": "..."}'
CLOSE_POLICY = 1008  # RFC 6455: policy violation
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011


class ControlMessage(BaseModel):
    type: Literal["instruction", "persona"]
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_CONTROL_TEXT)]


@dataclass
class ControlLimits:
    rate_per_s: float = 20.0  # messages per client address, all its sockets together
    burst: int = 10
    strikes: int = 20  # over-rate messages in a row before the socket is closed with 1008
    sockets_per_client: int = 4
    connects_per_s: float = 1.0  # new sockets per client address
    connect_burst: int = 5


def parse_control(raw: str | bytes) -> ControlMessage | str:
    """The message, or the reason it is refused."""
    try:
        return ControlMessage.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors(include_url=False, include_input=False)[0]
        kind, where = first["type"], first["loc"]
        if kind == "json_invalid":
            return f"not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}"
        if where == ("text",):
            if kind == "string_too_long":
                return f"'text' is longer than {MAX_CONTROL_TEXT} characters"
            return "'text' must be a non-empty string"
        return SHAPE


def apply_control(session: AvatarSession, raw: str | bytes) -> dict[str, object]:
    """One control message -> the reply. Texts are data for the director, never instructions to us."""
    msg = parse_control(raw)
    if isinstance(msg, str):
        return {"ok": False, "error": msg}
    if msg.type == "instruction":
        session.instruct(msg.text)
    else:
        session.set_persona(msg.text)
    return {"ok": True, "type": msg.type}


class ControlSockets:
    """The control sockets open now: per client address (for the cap) and per stream (closed with it)."""

    def __init__(self, limits: ControlLimits) -> None:
        self.limits = limits
        self.by_client: Counter[str] = Counter()
        self.messages = RateLimiter(limits.rate_per_s, limits.burst)
        self.connects = RateLimiter(limits.connects_per_s, limits.connect_burst)
        # One listener per stream, not per socket: a client that reconnects all day adds nothing to the stream.
        self._by_stream: dict[AvatarStream, set[web.WebSocketResponse]] = {}
        self._closing: set[asyncio.Task[bool]] = set()

    def full(self, client: str) -> bool:
        return self.by_client[client] >= self.limits.sockets_per_client

    async def serve(self, request: web.Request, stream: AvatarStream, client: str) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_CONTROL_BYTES)
        await ws.prepare(request)
        self.by_client[client] += 1
        try:
            if stream.state == "closed":  # it ended during the handshake
                await ws.close(code=CLOSE_GOING_AWAY, message=b"session ended")
                return ws
            self._watch(stream).add(ws)
            await self._answer(ws, stream, client)
        except CLIENT_GONE as e:
            log.info("control %s: client %s went away (%s)", stream.id, client, type(e).__name__)
        except Exception:  # the response is a WebSocket by now: no HTTP error can follow it
            log.exception("control %s: failed", stream.id)
            await ws.close(code=CLOSE_INTERNAL_ERROR, message=b"internal error")
        finally:
            self._by_stream.get(stream, set()).discard(ws)
            self.by_client[client] -= 1
            if self.by_client[client] <= 0:
                del self.by_client[client]
        return ws

    def _watch(self, stream: AvatarStream) -> set[web.WebSocketResponse]:
        if stream not in self._by_stream:
            self._by_stream[stream] = set()
            stream.on_closed(self._stream_closed)
        return self._by_stream[stream]

    def _stream_closed(self, stream: AvatarStream) -> None:
        for ws in self._by_stream.pop(stream, set()):
            task = asyncio.create_task(ws.close(code=CLOSE_GOING_AWAY, message=b"session ended"))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _answer(self, ws: web.WebSocketResponse, stream: AvatarStream, client: str) -> None:
        strikes = 0
        async for msg in ws:
            if msg.type not in (web.WSMsgType.TEXT, web.WSMsgType.BINARY):
                continue
            if self.messages.take(client):
                strikes += 1
                if strikes > self.limits.strikes:
                    await ws.close(code=CLOSE_POLICY, message=b"message rate limit exceeded")
                    return
                await ws.send_json({"ok": False, "error": "rate limited"})
                continue
            strikes = 0
            if stream.state == "closed":
                await ws.send_json({"ok": False, "error": "the session has ended"})
                await ws.close(code=CLOSE_GOING_AWAY, message=b"session ended")
                return
            if msg.type == web.WSMsgType.BINARY:
                await ws.send_json({"ok": False, "error": f"binary message: {SHAPE} as text"})
                continue
            await ws.send_json(apply_control(stream.session, msg.data))
