"""What WHIP and WHEP (RFC 9725 and its egress twin) share: an SDP offer as the request body, a 201 with the
answer and a Location to DELETE, and one peer connection per resource that is freed however it ends.

The offer is checked whole before a peer connection is built (streaming/offers.py, check_sdp); a resource
whose peer never connects is freed after connect_timeout_s, one whose connection fails or closes at once,
and every resource of a stream when the stream closes. Trickle ICE (PATCH) is not offered: aiortc
gathers every candidate before it answers, and aiohttp answers PATCH with 405.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiortc import RTCPeerConnection
from aiortc.sdp import SessionDescription

from streaming.admission import json_http_error, read_body
from streaming.offers import MAX_SDP_CHARS, OfferError, check_sdp
from streaming.stream import AvatarStream

log = logging.getLogger(__name__)

SDP_TYPE = "application/sdp"
CLOSE_TIMEOUT_S = 5.0


async def read_sdp_offer(request: web.Request, timeout_s: float) -> tuple[str, SessionDescription]:
    """The request's SDP offer, checked (415 for another content type, 400 saying why it is unusable)."""
    if request.content_type != SDP_TYPE:
        raise json_http_error(web.HTTPUnsupportedMediaType,
                              f"Content-Type must be {SDP_TYPE} (the offer itself), got {request.content_type!r}")
    body = await read_body(request, timeout_s)
    if len(body) > MAX_SDP_CHARS:
        raise json_http_error(web.HTTPBadRequest, f"the SDP is longer than {MAX_SDP_CHARS} bytes")
    try:
        sdp = body.decode("utf-8")
        return sdp, check_sdp(sdp)
    except UnicodeDecodeError:
        raise json_http_error(web.HTTPBadRequest, "the SDP is not UTF-8 text") from None
    except OfferError as e:
        raise json_http_error(web.HTTPBadRequest, str(e)) from None


def sdp_created(answer_sdp: str, location: str) -> web.Response:
    """201 Created: the answer, and where to DELETE the resource."""
    return web.Response(status=201, text=answer_sdp, content_type=SDP_TYPE, headers={"Location": location})


def new_resource_id() -> str:
    return uuid.uuid4().hex  # unguessable: with a stream's token, knowing it is what lets one end it


class PeerResource:
    """One publisher or viewer of a stream: its peer connection, until DELETE, failure, close or no connect."""

    def __init__(self, kind: str, stream: AvatarStream, on_gone: Callable[[PeerResource], Awaitable[None]]) -> None:
        self.kind = kind  # "whip" or "whep"
        self.id = new_resource_id()
        self.stream = stream
        self.pc = RTCPeerConnection()
        self.connected = asyncio.Event()
        self.on_connected: list[Callable[[], None]] = []  # called once, when media can first flow
        self._on_gone = on_gone
        self._closing: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[None] | None = None

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("stream %s: %s %s %s", stream.id, kind, self.id[:8], self.pc.connectionState)
            if self.pc.connectionState == "connected" and not self.connected.is_set():
                self.connected.set()
                for callback in self.on_connected:
                    callback()
            elif self.pc.connectionState in ("failed", "closed"):
                self.close_soon()

    def expire_unless_connected(self, timeout_s: float) -> None:
        async def expire() -> None:
            try:
                await asyncio.wait_for(self.connected.wait(), timeout_s)
            except TimeoutError:
                log.warning("stream %s: %s %s not connected after %.0f s, closing", self.stream.id, self.kind,
                            self.id[:8], timeout_s)
                self.close_soon()

        self._expiry = asyncio.create_task(expire())

    def close_soon(self) -> None:
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(), name=f"{self.kind}:{self.id[:8]}:close")

    async def close(self) -> None:
        self.close_soon()
        assert self._closing is not None
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        if self._expiry is not None and self._expiry is not asyncio.current_task():
            self._expiry.cancel()
        try:
            await self._on_gone(self)
        except Exception:
            log.exception("stream %s: releasing %s %s failed", self.stream.id, self.kind, self.id[:8])
        try:  # pc.close() can hang (aiortc#283)
            await asyncio.wait_for(self.pc.close(), CLOSE_TIMEOUT_S)
        except Exception as e:
            log.warning("stream %s: closing %s %s: %s: %s", self.stream.id, self.kind, self.id[:8],
                        type(e).__name__, e)


class Resources:
    """The resources of every stream, by stream id then resource id; a stream's go when it closes."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.by_stream: dict[str, dict[str, PeerResource]] = {}

    def of(self, stream_id: str) -> dict[str, PeerResource]:
        return self.by_stream.get(stream_id, {})

    def add(self, resource: PeerResource) -> None:
        stream = resource.stream
        if stream.id not in self.by_stream:
            self.by_stream[stream.id] = {}

            async def close_all() -> None:  # the stream's sinks and session are closed by now
                await asyncio.gather(*(r.close() for r in list(self.of(stream.id).values())))
                self.by_stream.pop(stream.id, None)

            stream.close_with(close_all)
        self.by_stream[stream.id][resource.id] = resource

    def forget(self, resource: PeerResource) -> bool:
        """Out of the table (True if it was there); its connection is the caller's to close."""
        return self.by_stream.get(resource.stream.id, {}).pop(resource.id, None) is not None

    def find(self, stream_id: str, resource_id: str) -> PeerResource | None:
        return self.of(stream_id).get(resource_id)


def refuse_sdp(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


def location(request: web.Request, resource_id: str) -> str:
    """The resource's URL, relative to the server's root as RFC 9725 allows (a proxy's prefix is unknown here)."""
    return f"{request.path.rstrip('/')}/{resource_id}"
