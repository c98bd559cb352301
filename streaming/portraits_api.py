"""Portrait routes (operator only): upload one to stream with, list those a stream may name.

    POST /portraits?name=me.jpg   body: the JPEG or PNG itself (Content-Type image/jpeg or image/png)
      -> 201 {"id", "name", "source", "width", "height", "notes"}   (200 when it was prepared already)
         400 not an image / corrupt, 413 too large, 415 not image/jpeg|png, 422 no usable face (prepare's
         reason), 429 too fast, 503 too many being prepared
    GET /portraits -> {"portraits": [the server's own, then the prepared ones], "files": [names in portraits_dir]}

Then POST /streams {"avatar": "<id or file name>"} streams it (streaming/streams_api.py).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from engine.generator import PreparedAvatar
from streaming.admission import check_rate, json_http_error
from streaming.config import ServerConfig
from streaming.portraits import PortraitRefused, PortraitStore
from streaming.ratelimit import RateLimiter

PORTRAITS = web.AppKey("portraits", PortraitStore)
IMAGE_TYPES = ("image/jpeg", "image/png")
CHUNK_BYTES = 64 * 1024


async def read_image(request: web.Request, max_bytes: int, timeout_s: float) -> bytes:
    """The body, at most max_bytes (413 as soon as it is known to be more), within timeout_s (408)."""
    too_big = f"the image is larger than {max_bytes} bytes (portrait_max_bytes)"
    if request.content_length is not None and request.content_length > max_bytes:
        raise json_http_error(web.HTTPRequestEntityTooLarge, too_big, max_size=max_bytes,
                              actual_size=request.content_length)
    data = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await request.content.read(CHUNK_BYTES):
                data += chunk
                if len(data) > max_bytes:
                    raise json_http_error(web.HTTPRequestEntityTooLarge, too_big, max_size=max_bytes,
                                          actual_size=len(data))
    except TimeoutError:
        raise json_http_error(web.HTTPRequestTimeout, f"the image did not arrive within {timeout_s:g} s") from None
    return bytes(data)


def install_portraits(app: web.Application, config: ServerConfig, avatar: PreparedAvatar) -> None:
    store = PortraitStore(config, avatar)
    uploads = RateLimiter(config.offer_rate_per_s, config.offer_burst)

    async def upload(request: web.Request) -> web.Response:
        check_rate(uploads, request, "portrait uploads")
        if request.content_type not in IMAGE_TYPES:
            raise json_http_error(web.HTTPUnsupportedMediaType,
                                  f"Content-Type must be image/jpeg or image/png, got {request.content_type!r}")
        data = await read_image(request, config.portrait_max_bytes, config.body_timeout_s)
        if not data:
            return web.json_response({"error": "empty body: send the image itself"}, status=400)
        try:
            portrait, new = await store.upload(data, request.query.get("name"))
        except PortraitRefused as e:
            return web.json_response({"error": str(e)}, status=e.status)
        return web.json_response(portrait.describe(), status=201 if new else 200,
                                 headers={"Location": f"/portraits/{portrait.id}"})

    async def listing(_: web.Request) -> web.Response:
        portraits = [store.default_portrait(), *store.kept()]
        return web.json_response({"portraits": [p.describe() for p in portraits], "files": store.files(),
                                  "prepared": store.prepared, "refused": store.refused})

    async def on_cleanup(_: web.Application) -> None:
        store.close()

    app.router.add_post("/portraits", upload)
    app.router.add_get("/portraits", listing)
    app.on_cleanup.append(on_cleanup)
    app[PORTRAITS] = store
