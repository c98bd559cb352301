"""Which web pages may talk to the server: the Origin check (every request, the WebSocket upgrade too)
and CORS as an allow-list.

A browser request from another site carries that site's Origin. Without this check a foreign page could
open the control WebSocket (browsers do not apply CORS to WebSockets) or fire a "simple" cross-site POST
(text/plain needs no preflight) at /offer. Same origin means the Origin's host:port equals the request's
Host; `allow_origin` adds exact origins (scheme://host[:port]) that may call the API from their pages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web

from streaming.auth import is_loopback

if TYPE_CHECKING:
    from streaming.config import ServerConfig

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ALLOWED_HEADERS = "Authorization, Content-Type"
PREFLIGHT_MAX_AGE_S = 600


def normalise_origin(origin: str) -> str:
    """scheme://host[:port], lower case, default ports dropped: how a browser writes it."""
    parts = urlsplit(origin.strip())
    if not parts.scheme or not parts.hostname:
        raise ValueError(f"allow_origin: {origin!r} is not an origin like https://example.com[:port]")
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    port = parts.port
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme.lower()}://{host.lower()}" + (f":{port}" if port and port != default else "")


def origin_host(origin: str) -> str | None:
    """host:port of an Origin header, for the same-origin test against Host (None for "null" etc.)."""
    parts = urlsplit(origin)
    if not parts.scheme or not parts.hostname:
        return None
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host.lower()}:{port}"


def request_host(request: web.Request) -> str:
    """host:port the request was sent to (its Host header), the port made explicit."""
    host = request.host.lower()
    if host.rpartition("]")[2].count(":") == 1 or (not host.startswith("[") and host.count(":") == 1):
        return host
    return f"{host}:{80 if request.scheme == 'http' else 443}"


def host_name(host_port: str) -> str:
    return host_port.rsplit(":", 1)[0].strip("[]")


class OriginPolicy:
    def __init__(self, allow_origin: list[str], loopback_only: bool) -> None:
        self.allowed = {normalise_origin(o) for o in allow_origin}
        # Access control off on loopback: a DNS-rebinding page (evil.example resolving to 127.0.0.1) is
        # "same origin" by host:port, so the Host itself must be a loopback name.
        self.loopback_only = loopback_only

    def cross_origin_allowed(self, origin: str) -> bool:
        try:
            return normalise_origin(origin) in self.allowed
        except ValueError:
            return False

    def same_origin(self, origin: str, request: web.Request) -> bool:
        return origin_host(origin) == request_host(request)

    def cors_headers(self, origin: str) -> dict[str, str]:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                "Access-Control-Expose-Headers": "WWW-Authenticate, Location"}  # Location: WHIP/WHEP

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.loopback_only and not is_loopback(host_name(request_host(request))):
            return web.json_response({"error": "access control is off, so only loopback host names are served "
                                      "(a page that resolves its own name to 127.0.0.1 must not get in)"},
                                     status=403)
        origin = request.headers.get("Origin")
        if origin is None:  # not from a browser page's script: tokens decide
            return await handler(request)
        if self.same_origin(origin, request):
            return await handler(request)
        if not self.cross_origin_allowed(origin):
            return web.json_response({"error": f"origin {origin!r} is not allowed (same origin, or --allow-origin)"},
                                     status=403)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return web.Response(status=204, headers={
                **self.cors_headers(origin),
                "Access-Control-Allow-Methods": "GET, POST, DELETE",
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S)})
        try:
            response = await handler(request)
        except web.HTTPException as e:
            e.headers.update(self.cors_headers(origin))
            raise
        if not response.prepared:  # a WebSocket has sent its headers already (and browsers ignore CORS there)
            response.headers.update(self.cors_headers(origin))
        return response


def install_origin_check(app: web.Application, config: ServerConfig) -> None:
    """First middleware: a foreign page is refused before any credential is looked at."""
    loopback_only = config.token is None and is_loopback(config.host)
    app.middlewares.insert(0, OriginPolicy(config.allow_origin, loopback_only).middleware)
