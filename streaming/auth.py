"""Access control: the operator secret, scoped tokens, and the route policy every request passes.

Two kinds of credential, both sent as `Authorization: Bearer <token>` (a WebSocket upgrade may send it as
the `token` query parameter instead: browsers cannot set headers there):
- the operator secret (`--token`, AVATAR_ENGINE_TOKEN, or `token` in the TOML file): may do everything;
- scoped tokens, minted by the operator on POST /tokens, in the manner of LiveKit's access tokens: a JWT
  (HS256, PyJWT) that names one stream (a session id, or "*" for "a new stream") and one role, and expires.

Every route is classified in POLICY; a route that is not is refused (deny by default), and
tests/test_auth.py fails for it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import jwt
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

if TYPE_CHECKING:
    from streaming.config import ServerConfig

log = logging.getLogger(__name__)

MIN_SECRET_CHARS = 32
Role = Literal["publish", "view", "control"]
ROLES: tuple[str, ...] = ("publish", "view", "control")
NEW_STREAM = "*"  # the stream a publish token names when it may create one (the server picks the id)
SESSION_TOKEN_TTL_S = 12 * 3600  # the control token handed to whoever created a session: a long show
MAX_TTL_S = 7 * 24 * 3600
ALGORITHM = "HS256"
ISSUER = "avatar-engine"
# The JWT key is derived from the operator secret, not the secret itself: a token's signature then
# says nothing about the secret that a request carrying the secret itself could be confused with.
_KEY_LABEL = b"avatar-engine scoped tokens v1"


@dataclass(frozen=True)
class Rule:
    """Who may use a route. access: public (anyone), operator (the operator secret only) or stream
    (the operator, or a scoped token of one of `roles` for the stream named by the path parameter
    `stream_param`; None means a new stream, which a token for NEW_STREAM may create)."""

    access: Literal["public", "operator", "stream"]
    roles: tuple[str, ...] = ()
    stream_param: str | None = None
    websocket: bool = False  # the route upgrades to a WebSocket: the token may come as ?token=


PUBLIC = Rule("public")
OPERATOR = Rule("operator")
# (method, canonical path) -> rule. HEAD follows GET; a CORS preflight (OPTIONS) is answered by
# streaming/origin.py before this policy is consulted.
POLICY: dict[tuple[str, str], Rule] = {
    ("GET", "/"): PUBLIC,  # the page holds no secret: it reads the token from its own URL
    ("GET", "/health"): PUBLIC,
    ("GET", "/static"): PUBLIC,
    ("GET", "/api/sessions"): OPERATOR,  # lists session ids: only for the operator
    ("GET", "/metrics"): OPERATOR,
    ("POST", "/tokens"): OPERATOR,
    ("POST", "/offer"): Rule("stream", roles=("publish",)),
    ("POST", "/sessions/{sid}/close"): Rule("stream", roles=("publish", "control"), stream_param="sid"),
    ("GET", "/sessions/{sid}/control"): Rule("stream", roles=("control",), stream_param="sid", websocket=True),
    ("POST", "/streams"): OPERATOR,  # a stream without a browser: it runs until deleted
    ("GET", "/streams"): OPERATOR,  # lists stream ids
    ("GET", "/streams/{sid}"): OPERATOR,  # one stream's portrait, viewers and outputs' health
    ("DELETE", "/streams/{sid}"): OPERATOR,
    ("POST", "/portraits"): OPERATOR,  # upload a portrait (prepared: seconds of CPU) for POST /streams
    ("GET", "/portraits"): OPERATOR,  # the portraits a stream may name
    ("GET", "/streams/{sid}/audio"): Rule("stream", roles=("publish",), stream_param="sid", websocket=True),  # TTS
    ("GET", "/watch/{sid}"): PUBLIC,  # the watch page holds no secret: its viewer token comes in its URL
    ("POST", "/streams/{sid}/whep"): Rule("stream", roles=("view",), stream_param="sid"),
    ("DELETE", "/streams/{sid}/whep/{vid}"): Rule("stream", roles=("view",), stream_param="sid"),
    ("POST", "/streams/{sid}/whip"): Rule("stream", roles=("publish",), stream_param="sid"),
    ("DELETE", "/streams/{sid}/whip/{pid}"): Rule("stream", roles=("publish",), stream_param="sid"),
    ("POST", "/streams/{sid}/interrupt"): Rule("stream", roles=("publish",), stream_param="sid"),
}


def route_key(method: str, canonical: str) -> tuple[str, str]:
    return ("GET" if method == "HEAD" else method, canonical)


def unclassified_routes(app: web.Application) -> list[tuple[str, str]]:
    """The app's routes that POLICY does not name: each is refused to everyone."""
    keys = {route_key(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    return sorted(k for k in keys if k not in POLICY)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_secret(token: str | None) -> None:
    """A short secret can be guessed: refuse it at start, never silently accept it."""
    if token is not None and len(token) < MIN_SECRET_CHARS:
        raise ValueError(f"the operator token must be at least {MIN_SECRET_CHARS} characters long, got "
                         f"{len(token)}; make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")


def check_exposure(cfg: ServerConfig) -> list[str]:
    """Refuse to serve a network without a token (ValueError); returns the warnings to log."""
    check_secret(cfg.token)
    if cfg.token:
        return []
    if is_loopback(cfg.host):
        return [f"access control is OFF: no operator token, bound to loopback {cfg.host} only. "
                "Set AVATAR_ENGINE_TOKEN (or --token) to require one."]
    if not cfg.insecure:
        raise ValueError(f"refusing to serve {cfg.host} without an operator token: anyone who reaches it could "
                         "start, list, direct and close streams. Set AVATAR_ENGINE_TOKEN (or --token, or `token` "
                         "in the TOML file) to a secret of 32+ characters, or pass --insecure to serve it open.")
    return [f"INSECURE: serving {cfg.host} with access control OFF (--insecure): anyone who reaches this "
            "address can start, list, direct and close streams."]


@dataclass(frozen=True)
class Grant:
    """What a request's credential allows: the operator, or one role on one stream."""

    role: str  # "operator" or one of ROLES
    stream: str | None = None


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TokenAuthority:
    """Holds the operator secret (never shown by repr) and mints and checks scoped tokens."""

    def __init__(self, secret: str | None) -> None:
        check_secret(secret)
        self._secret = secret.encode() if secret else None
        self._key = hmac.new(self._secret, _KEY_LABEL, hashlib.sha256).digest() if self._secret else b""

    def __repr__(self) -> str:
        return f"TokenAuthority(enabled={self.enabled})"

    @property
    def enabled(self) -> bool:
        return self._secret is not None

    def mint(self, stream: str, role: str, ttl_s: float, now: float | None = None) -> tuple[str, int]:
        """A token for one role on one stream, valid for ttl_s; returns it and its expiry (Unix seconds)."""
        if not self.enabled:
            raise RuntimeError("no operator secret: tokens cannot be minted")
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        iat = int(time.time() if now is None else now)
        exp = iat + max(1, round(ttl_s))
        claims = {"iss": ISSUER, "sub": stream, "role": role, "iat": iat, "exp": exp, "jti": secrets.token_urlsafe(8)}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), exp

    def verify(self, token: str) -> Grant:
        """The grant a bearer token carries; AuthError(401) when it is neither the secret nor a valid token."""
        assert self._secret is not None
        if hmac.compare_digest(token.encode(), self._secret):
            return Grant("operator")
        try:
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={"require": ["exp", "iat", "sub", "iss"]})
        except jwt.ExpiredSignatureError as e:
            raise AuthError(401, "token expired") from e
        except jwt.InvalidTokenError as e:
            raise AuthError(401, "invalid token") from e
        role = claims.get("role")
        if role not in ROLES:
            raise AuthError(401, "invalid token: unknown role")
        return Grant(role, claims["sub"])


def bearer_token(request: web.Request, rule: Rule) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if rule.websocket and request.headers.get("Upgrade", "").lower() == "websocket":
        return request.query.get("token") or None
    return None


def permit(grant: Grant, rule: Rule, request: web.Request) -> None:
    """AuthError(403) when a valid credential does not reach this route."""
    if grant.role == "operator" or rule.access == "public":
        return
    if rule.access == "operator":
        raise AuthError(403, "this route needs the operator token")
    if grant.role not in rule.roles:
        raise AuthError(403, f"a {grant.role} token cannot use this route (it needs {' or '.join(rule.roles)})")
    wanted = NEW_STREAM if rule.stream_param is None else request.match_info[rule.stream_param]
    if grant.stream != wanted:
        raise AuthError(403, "this token is for another stream")


AUTHORITY = web.AppKey("token_authority", TokenAuthority)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def refusal(status: int, message: str) -> web.Response:
    headers = {}
    if status == 401:  # RFC 6750: say which scheme, and why a token that came was refused
        headers["WWW-Authenticate"] = 'Bearer realm="avatar-engine"' + (
            ', error="invalid_token"' if message != "missing bearer token" else "")
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = request.match_info
    if match.http_exception is not None:  # 404 / 405: aiohttp answers, nothing is served
        return await handler(request)
    resource = match.route.resource
    rule = POLICY.get(route_key(request.method, resource.canonical if resource is not None else ""))
    if rule is None:
        log.error("refused %s %s: the route is not classified in streaming/auth.py POLICY",
                  request.method, resource.canonical if resource is not None else request.path)
        return refusal(403, "this route is not open to anyone (not classified in the access policy)")
    authority = request.app[AUTHORITY]
    if rule.access == "public" or not authority.enabled:
        return await handler(request)
    token = bearer_token(request, rule)
    if token is None:
        return refusal(401, "missing bearer token")
    try:
        permit(authority.verify(token), rule, request)
    except AuthError as e:
        return refusal(e.status, str(e))
    return await handler(request)


def session_token(request: web.Request, sid: str) -> dict[str, object]:
    """For the answer to a new session: a control token for it (close it, direct it), so its creator
    needs no wider credential afterwards. Empty when access control is off."""
    authority = request.app[AUTHORITY]
    if not authority.enabled:
        return {}
    token, expires_at = authority.mint(sid, "control", SESSION_TOKEN_TTL_S)
    return {"session_token": token, "session_token_expires_at": expires_at}


class TokenRequest(BaseModel):
    stream: str = Field(min_length=1, max_length=128, pattern=r"^(\*|[A-Za-z0-9_-]+)$")
    role: Role
    ttl_s: int = Field(default=3600, ge=1, le=MAX_TTL_S)


async def mint_tokens(request: web.Request) -> web.Response:
    """POST /tokens (operator only): {"stream", "role", "ttl_s"} -> {"token", "expires_at", ...}."""
    authority = request.app[AUTHORITY]
    if not authority.enabled:
        return web.json_response({"error": "access control is off (no operator token): there is nothing to mint"},
                                 status=409)
    try:
        body = TokenRequest.model_validate_json(await request.read())
    except ValidationError as e:
        reasons = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in e.errors())
        return web.json_response({"error": f"expected {{\"stream\", \"role\", \"ttl_s\"}}: {reasons}"}, status=400)
    if body.stream == NEW_STREAM and body.role != "publish":
        return web.json_response({"error": f'stream "{NEW_STREAM}" (a new stream) goes only with role "publish"'},
                                 status=400)
    token, expires_at = authority.mint(body.stream, body.role, body.ttl_s)
    return web.json_response({"token": token, "expires_at": expires_at, "stream": body.stream, "role": body.role})


def install_auth(app: web.Application, config: ServerConfig) -> None:
    """The token authority, the policy middleware and the minting route."""
    app[AUTHORITY] = TokenAuthority(config.token)
    app.middlewares.append(auth_middleware)
    app.router.add_post("/tokens", mint_tokens)
