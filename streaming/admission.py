"""Admission before cost: who may ask for a session and how fast, read with deadlines.

A per-client token bucket answers excess offers (and, through the same class, stream creation) with
429 and Retry-After before the body is even read; a request body that trickles in is cut after
body_timeout_s with 408; idle connections, and connections whose headers trickle in, are closed by
aiohttp's keepalive_timeout, which aiohttp (3.14) arms from the moment a connection is accepted and
does not re-arm while header bytes arrive (server_options).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from streaming.config import ServerConfig
from streaming.ratelimit import RateLimiter, retry_after

# After a refused request the server reads and drops the rest of its body for this long at most, so
# that the client still sees the answer; aiohttp's default is 10 s.
LINGERING_S = 2.0


def json_http_error(cls: type[web.HTTPException], message: str, headers: dict[str, str] | None = None,
                    **kwargs: Any) -> web.HTTPException:
    """An HTTP error with {"error": message} as its body, to raise from anywhere in a handler."""
    return cls(text=json.dumps({"error": message}), content_type="application/json", headers=headers, **kwargs)


def client_key(request: web.Request) -> str:
    # The peer's address, never a header a client can set: behind a reverse proxy every client shares
    # the proxy's bucket, which is the safe side.
    return request.remote or "unknown"


def check_rate(limiter: RateLimiter, request: web.Request, what: str) -> None:
    """Raise 429 with Retry-After if this client is over `limiter`'s rate."""
    wait_s = limiter.take(client_key(request))
    if wait_s:
        raise json_http_error(web.HTTPTooManyRequests,
                              f"too many {what} from {client_key(request)}: at most {limiter.burst} at once and "
                              f"{limiter.rate_per_s:g} per second; retry in {wait_s:.1f} s",
                              {"Retry-After": retry_after(wait_s)})


def require_json(request: web.Request) -> None:
    """415 unless the body is declared JSON. A cross-site page can POST text/plain without asking; a JSON
    POST from another origin needs the browser's CORS preflight first, which this server does not grant."""
    if request.content_type != "application/json":
        raise json_http_error(web.HTTPUnsupportedMediaType,
                              f"Content-Type must be application/json, got {request.content_type!r}")


async def read_body(request: web.Request, timeout_s: float) -> bytes:
    """The whole body within timeout_s (else 408), no larger than the app's client_max_size (else 413)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise json_http_error(web.HTTPRequestTimeout,
                              f"the request body did not arrive within {timeout_s:g} s") from None
    except web.HTTPRequestEntityTooLarge:
        limit = request.client_max_size
        raise json_http_error(web.HTTPRequestEntityTooLarge, f"request body is larger than {limit} bytes",
                              max_size=limit) from None


def server_options(config: ServerConfig) -> dict[str, Any]:
    """Keyword arguments for web.run_app / web.AppRunner: the connection timeouts."""
    return {"keepalive_timeout": config.idle_timeout_s, "lingering_time": LINGERING_S}
