"""Access control: every route of the real app, over real sockets on 127.0.0.1, refuses a missing, wrong,
expired or wrongly scoped token; tokens, the secret's rules, the Origin check and CORS; the CLI's refusals."""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Iterator

import aiohttp
import jwt
import pytest
from aiohttp import web

import server
from engine.generator import PreparedAvatar, prepare_avatar
from harness.server import free_port, running
from streaming.app import build_app
from streaming.auth import (
    AUTHORITY,
    MIN_SECRET_CHARS,
    NEW_STREAM,
    POLICY,
    ROLES,
    AuthError,
    TokenAuthority,
    check_exposure,
    route_key,
    unclassified_routes,
)
from streaming.config import ServerConfig, load_config
from streaming.webrtc import new_session_id

SECRET = secrets.token_urlsafe(32)
SID = new_session_id()  # a well-formed id no session has: the check comes before the handler
OTHER_SID = new_session_id()


@pytest.fixture(scope="module")
def avatar() -> PreparedAvatar:
    return prepare_avatar()


def concrete_path(resource: web.AbstractResource) -> str:
    """A URL that reaches `resource`: path parameters filled with SID, a static folder with a file in it."""
    if isinstance(resource, web.StaticResource):
        return resource.canonical + "/client.js"
    return re.sub(r"\{[^}]+\}", SID, resource.canonical)


def app_routes(app: web.Application) -> Iterator[tuple[str, str, tuple[str, str]]]:
    """(method, concrete path, policy key) for every route the app has, HEAD included."""
    for route in app.router.routes():
        assert route.resource is not None
        yield route.method, concrete_path(route.resource), route_key(route.method, route.resource.canonical)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stream_of(key: tuple[str, str]) -> str:
    rule = POLICY[key]
    return NEW_STREAM if rule.stream_param is None else SID


async def status_of(http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str]) -> int:
    async with http.request(method, url, headers=headers, json={} if method == "POST" else None) as r:
        if r.status == 401:
            assert r.headers["WWW-Authenticate"].startswith("Bearer"), "a 401 must name the Bearer scheme"
        return r.status


async def upgrade_status(http: aiohttp.ClientSession, url: str, token: str | None) -> int:
    """The WebSocket upgrade, the token as the browser sends it (query parameter); its HTTP status."""
    try:
        async with http.ws_connect(url, params={"token": token} if token else None) as ws:
            await ws.close()
            return 101
    except aiohttp.WSServerHandshakeError as e:
        return e.status


async def test_every_route_refuses_missing_wrong_expired_and_misscoped_tokens(avatar: PreparedAvatar) -> None:
    app = build_app(ServerConfig(token=SECRET), avatar)
    assert unclassified_routes(app) == [], "every route must be classified in streaming/auth.py POLICY"
    public = {key for key, rule in POLICY.items() if rule.access == "public"}
    assert public == {("GET", "/"), ("GET", "/health"), ("GET", "/static"), ("GET", "/watch/{sid}")}, \
        "only the pages and /health are public"
    authority = app[AUTHORITY]
    foreign = TokenAuthority(secrets.token_urlsafe(32))
    checked: set[tuple[str, str]] = set()
    async with running(app) as base, aiohttp.ClientSession() as http:
        for method, path, key in app_routes(app):
            rule = POLICY[key]
            url = base + path
            if rule.access == "public":
                assert await status_of(http, method, url, {}) == 200, f"{method} {path} must stay public"
                checked.add(key)
                continue
            right_role = rule.roles[0] if rule.access == "stream" else "control"
            expired, _ = authority.mint(stream_of(key), right_role, 60, now=time.time() - 3600)
            wrong = {
                "missing": ({}, 401),
                "garbage": (bearer("x" * len(SECRET)), 401),
                "secret with one character changed": (bearer(SECRET[:-1] + ("A" if SECRET[-1] != "A" else "B")), 401),
                "signed by another secret": (bearer(foreign.mint(stream_of(key), right_role, 600)[0]), 401),
                "expired": (bearer(expired), 401),
                "not bearer": ({"Authorization": f"Basic {SECRET}"}, 401),
            }
            if rule.access == "operator":
                for role in ROLES:
                    wrong[f"scoped {role} token"] = (bearer(authority.mint(SID, role, 600)[0]), 403)
                wrong["publish token for a new stream"] = (bearer(authority.mint(NEW_STREAM, "publish", 600)[0]), 403)
            else:
                for role in set(ROLES) - set(rule.roles):
                    wrong[f"{role} token"] = (bearer(authority.mint(stream_of(key), role, 600)[0]), 403)
                other = OTHER_SID if rule.stream_param else SID
                wrong["token for another stream"] = (bearer(authority.mint(other, right_role, 600)[0]), 403)
            for what, (headers, expected) in wrong.items():
                got = await status_of(http, method, url, headers)
                assert got == expected, f"{method} {path} with a {what}: {got}, expected {expected}"
            for token in (SECRET, authority.mint(stream_of(key), right_role, 600)[0]):
                if rule.access == "operator" and token != SECRET:
                    continue
                got = await status_of(http, method, url, bearer(token))
                assert got not in (401, 403), f"{method} {path} refused a right token: {got}"
            if method == "GET":
                # The upgrade: the query parameter counts only on a WebSocket route, and only there.
                assert await upgrade_status(http, url, None) == 401, f"upgrade of {path} without a token"
                assert await upgrade_status(http, url, "x" * 43) == 401
                assert await upgrade_status(http, url, expired) == 401
                scoped = authority.mint(OTHER_SID if rule.stream_param else SID, right_role, 600)[0]
                assert await upgrade_status(http, url, scoped) == (403 if rule.websocket else 401)
                got = await upgrade_status(http, url, SECRET)
                assert (got not in (401, 403)) if rule.websocket else got == 401, (path, got)
            checked.add(key)
    assert checked == {route_key(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}


async def test_a_route_missing_from_the_policy_is_refused_to_everyone(avatar: PreparedAvatar) -> None:
    app = build_app(ServerConfig(token=SECRET), avatar)

    async def sneaky(_: web.Request) -> web.Response:
        return web.Response(text="should never be served")

    app.router.add_post("/sneaky/{x}", sneaky)
    assert unclassified_routes(app) == [("POST", "/sneaky/{x}")]
    async with running(app) as base, aiohttp.ClientSession() as http:
        async with http.post(f"{base}/sneaky/1", headers=bearer(SECRET)) as r:
            assert r.status == 403 and "not classified" in (await r.json())["error"]


async def test_minted_tokens_are_scoped_signed_and_expire(avatar: PreparedAvatar) -> None:
    app = build_app(ServerConfig(token=SECRET), avatar)
    async with running(app) as base, aiohttp.ClientSession() as http:
        body = {"stream": SID, "role": "control", "ttl_s": 120}
        async with http.post(f"{base}/tokens", json=body, headers=bearer(SECRET)) as r:
            assert r.status == 200
            minted = await r.json()
        assert minted["role"] == "control" and minted["stream"] == SID
        assert abs(minted["expires_at"] - (time.time() + 120)) < 30
        assert SECRET not in minted["token"]
        claims = jwt.decode(minted["token"], options={"verify_signature": False})
        assert (claims["sub"], claims["role"]) == (SID, "control")
        assert jwt.get_unverified_header(minted["token"])["alg"] == "HS256"
        for bad, reason in (({"stream": SID, "role": "admin"}, "role"), ({"stream": "../x", "role": "view"}, "stream"),
                            ({"stream": SID, "role": "view", "ttl_s": 10**9}, "ttl_s"),
                            ({"stream": NEW_STREAM, "role": "control"}, "publish")):
            async with http.post(f"{base}/tokens", json=bad, headers=bearer(SECRET)) as r:
                assert r.status == 400 and reason in (await r.json())["error"], bad
        async with http.post(f"{base}/tokens", data=b"{" * 5000, headers=bearer(SECRET)) as r:
            assert r.status == 400

    authority = app[AUTHORITY]
    grant = authority.verify(minted["token"])
    assert (grant.role, grant.stream) == ("control", SID)
    assert authority.verify(SECRET).role == "operator"
    with pytest.raises(AuthError, match="expired"):
        authority.verify(authority.mint(SID, "view", 1, now=time.time() - 10)[0])
    head, payload, sig = minted["token"].split(".")
    forged = jwt.encode({**claims, "role": "publish"}, "not the key " * 4, algorithm="HS256").split(".")[1]
    # (a character in the signature's middle changed: its last one carries 2 bits that decoding drops, so "AA" over
    # the last two left a signature that ended in them, or in "AB".."AD", valid: a CI run drew one)
    flipped = sig[:10] + ("B" if sig[10] == "A" else "A") + sig[11:]
    for tampered in (f"{head}.{forged}.{sig}", f"{head}.{payload}.{flipped}",
                     jwt.encode(claims, secrets.token_urlsafe(32), algorithm="HS256"),
                     f'{"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"}.{payload}.'):  # alg "none"
        with pytest.raises(AuthError) as refused:
            authority.verify(tampered)
        assert refused.value.status == 401
    assert SECRET not in repr(authority) and SECRET not in repr(load_config(None, {"token": SECRET}, environ={}))


def test_the_secret_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    authority = TokenAuthority(SECRET)
    assert authority.verify(SECRET).role == "operator"
    with pytest.raises(AuthError):
        authority.verify(SECRET + "x")
    assert calls and all(b == SECRET.encode() for _, b in calls)


def test_a_short_secret_is_refused_at_start(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    short = "s" * (MIN_SECRET_CHARS - 1)
    with pytest.raises(ValueError, match=f"at least {MIN_SECRET_CHARS} characters"):
        load_config(None, {"token": short}, environ={})
    with pytest.raises(ValueError, match="at least"):
        load_config(None, {}, environ={"AVATAR_ENGINE_TOKEN": short})
    monkeypatch.delenv("AVATAR_ENGINE_TOKEN", raising=False)
    assert server.main(["serve", "--token", short]) == 2
    err = capsys.readouterr().err
    assert f"at least {MIN_SECRET_CHARS} characters" in err and short not in err
    cfg = load_config(None, {}, environ={"AVATAR_ENGINE_TOKEN": SECRET})
    assert cfg.token == SECRET and SECRET not in repr(cfg)


def test_serving_a_network_without_a_token_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("AVATAR_ENGINE_TOKEN", raising=False)
    monkeypatch.delenv("AVATAR_ENGINE_INSECURE", raising=False)
    # Refused before anything is loaded or bound: main returns at once.
    assert server.main(["serve", "--host", "0.0.0.0", "--port", str(free_port())]) == 2
    assert "refusing to serve 0.0.0.0 without an operator token" in capsys.readouterr().err
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        warnings = check_exposure(load_config(None, {"host": host}, environ={}))
        assert len(warnings) == 1 and "access control is OFF" in warnings[0], host
    assert check_exposure(load_config(None, {"host": "0.0.0.0", "token": SECRET}, environ={})) == []
    warnings = check_exposure(load_config(None, {"host": "0.0.0.0", "insecure": True}, environ={}))
    assert "INSECURE" in warnings[0]
    args = server.build_parser().parse_args(["serve", "--host", "0.0.0.0", "--insecure", "--allow-origin",
                                             "https://studio.example", "--allow-origin", "http://127.0.0.1:9000"])
    cfg = server.config_from_args(args)
    assert cfg.insecure and cfg.allow_origin == ["https://studio.example", "http://127.0.0.1:9000"]
    with pytest.raises(ValueError, match="allow_origin"):
        load_config(None, {"allow_origin": ["studio.example"]}, environ={})


def test_session_ids_carry_at_least_122_random_bits() -> None:
    ids = {new_session_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)  # a full uuid4: 122 random bits


async def test_origin_check_and_cors_allow_list(avatar: PreparedAvatar) -> None:
    allowed = "https://studio.example"
    app = build_app(ServerConfig(token=SECRET, allow_origin=[allowed]), avatar)
    async with running(app) as base, aiohttp.ClientSession() as http:
        control = f"{base}/sessions/{SID}/control"
        # The WebSocket upgrade: a foreign page is refused whatever it carries; the page's own origin passes.
        for origin, expected in (("http://evil.example", 403), ("null", 403), (base, 404), (allowed, 404)):
            try:
                async with http.ws_connect(control, params={"token": SECRET}, headers={"Origin": origin}):
                    got = 101
            except aiohttp.WSServerHandshakeError as e:
                got = e.status
            assert got == expected, (origin, got)
        # A "simple" cross-site POST (text/plain: no preflight) from a foreign page.
        async with http.post(f"{base}/offer", data="{}", headers={"Origin": "http://evil.example",
                                                                   "Content-Type": "text/plain"}) as r:
            assert r.status == 403 and "not allowed" in (await r.json())["error"]
        # CORS preflight: the allowed origin may send Authorization; a foreign one may not.
        preflight = {"Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"}
        async with http.options(f"{base}/offer", headers={"Origin": allowed, **preflight}) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == allowed
            assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
        async with http.options(f"{base}/offer", headers={"Origin": "http://evil.example", **preflight}) as r:
            assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
        async with http.get(f"{base}/api/sessions", headers={"Origin": allowed, **bearer(SECRET)}) as r:
            assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == allowed
        async with http.get(f"{base}/api/sessions", headers={"Origin": allowed}) as r:
            assert r.status == 401 and r.headers["Access-Control-Allow-Origin"] == allowed  # the page may read why


async def test_without_a_token_only_loopback_names_are_served(avatar: PreparedAvatar) -> None:
    """Access control off (loopback, no token): a DNS-rebinding page, whose own name resolves to 127.0.0.1,
    is same-origin by host:port; the Host must be a loopback name."""
    app = build_app(ServerConfig(), avatar)
    async with running(app) as base, aiohttp.ClientSession() as http:
        port = base.rsplit(":", 1)[1]
        async with http.get(f"{base}/api/sessions") as r:
            assert r.status == 200
        async with http.get(f"{base}/api/sessions", headers={"Host": f"localhost:{port}"}) as r:
            assert r.status == 200
        for host in (f"evil.example:{port}", "evil.example"):
            async with http.get(f"{base}/api/sessions", headers={"Host": host, "Origin": f"http://{host}"}) as r:
                assert r.status == 403, host
        async with http.post(f"{base}/tokens", json={"stream": SID, "role": "view"}) as r:
            assert r.status == 409  # nothing to mint without a secret
