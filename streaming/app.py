"""The aiohttp application: web client, WebRTC signaling, session list and metrics."""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from engine.generator import PreparedAvatar
from engine.session import AvatarSession
from streaming import disclosure
from streaming.admission import check_rate, client_key, read_body, require_json
from streaming.auth import install_auth, session_token
from streaming.config import ServerConfig
from streaming.control import ControlLimits, ControlSockets
from streaming.errors import contain_errors
from streaming.live_stream import OutputsUnavailable, confined_outputs, parse_outputs
from streaming.loop_monitor import LoopMonitor
from streaming.offers import OfferError, parse_offer
from streaming.origin import install_origin_check
from streaming.patches import log_orphaned_connects
from streaming.portraits_api import install_portraits
from streaming.provenance import disclose
from streaming.ratelimit import RateLimiter
from streaming.reclaim import Reclaimer
from streaming.registry import SessionRegistry
from streaming.stream import AvatarStream
from streaming.streams_api import add_stream_routes, reasons
from streaming.webrtc import PeerSession, new_session_id
from streaming.whep import install_whep
from streaming.whip import install_whip

log = logging.getLogger(__name__)
WEB_DIR = Path(__file__).resolve().parent / "web"
MAX_OFFER_BYTES = 256 * 1024


REGISTRY = web.AppKey("registry", SessionRegistry)


class OfferOutputs(BaseModel):
    """What an offer may ask for besides its SDP: the outputs a stream of POST /streams may have (RTMP, a
    recording, the output size), checked and confined alike."""

    outputs: dict[str, Any] | None = None  # streaming.outputs.OutputsSpec


def json_error(status: int, message: str, retry_after_s: int | None = None) -> web.Response:
    headers = None if retry_after_s is None else {"Retry-After": str(retry_after_s)}
    return web.json_response({"error": message}, status=status, headers=headers)


def build_app(config: ServerConfig, avatar: PreparedAvatar) -> web.Application:
    app = web.Application(client_max_size=MAX_OFFER_BYTES, middlewares=[contain_errors])
    registry = SessionRegistry(config.max_sessions, config.max_pending_sessions, Reclaimer())
    offer_limit = RateLimiter(config.offer_rate_per_s, config.offer_burst)
    controls = ControlSockets(ControlLimits(config.control_rate_per_s, config.control_burst,
                                            connects_per_s=config.offer_rate_per_s,
                                            connect_burst=config.offer_burst))
    loop_monitor = LoopMonitor()

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_DIR / "index.html")

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def offer(request: web.Request) -> web.Response:
        # Cheapest first: the client's rate, the body (bounded in size and time), the offer parsed and
        # checked whole, the caps; only then is a session built.
        check_rate(offer_limit, request, "offers")
        require_json(request)
        raw = await read_body(request, config.body_timeout_s)
        try:
            desc = parse_offer(raw)
            outputs = confined_outputs(parse_outputs(OfferOutputs.model_validate_json(raw).outputs), config)
        except OfferError as e:
            return json_error(400, str(e))
        except ValidationError as e:
            return json_error(400, reasons(e))
        except OutputsUnavailable as e:
            return json_error(501, str(e))
        except ValueError as e:  # a path outside the server's folders
            return json_error(400, str(e))
        refusal = registry.refusal()
        if refusal is not None:
            return json_error(503, refusal, retry_after_s=2)
        sid = new_session_id()
        try:
            with registry.reserve():
                # Building a session (renderer fields, voice-activity model) takes 30-60 ms of CPU: off the
                # event loop, so the sessions already streaming do not stall for it.
                session = await asyncio.get_running_loop().run_in_executor(
                    None, functools.partial(AvatarSession, avatar, config.engine, live=True, session_id=sid))
            stream = AvatarStream(session, audio_lead_s=config.audio_lead_s)
            disclose(stream, config)  # the visible label, on every picture its viewers get
            peer = PeerSession(stream, outputs)
        except Exception:
            log.exception("session %s: could not be created", sid)
            return json_error(500, "internal error while creating the session; see the server log")
        registry.add(stream)
        try:
            answer = await peer.answer(desc, config.connect_timeout_s)
        except OfferError as e:
            await stream.close()
            return json_error(400, str(e))
        except Exception:
            log.exception("session %s: failed to answer", sid)
            await stream.close()
            return json_error(500, "internal error while answering the offer; see the server log")
        log.info("session %s: answered (%d active)", sid, len(registry.active))
        return web.json_response({"sdp": answer.sdp, "type": answer.type, "session_id": sid,
                                  **session_token(request, sid)})

    async def close_session(request: web.Request) -> web.Response:
        stream = registry.active.get(request.match_info["sid"])
        if stream is None:
            return json_error(404, f"no active session {request.match_info['sid']!r}")
        await stream.close()
        # Its final counters: what the session did (frames sent, skipped, delay added) to its last frame.
        return web.json_response({"closed": True, "session": stream.info()})

    async def control(request: web.Request) -> web.StreamResponse:
        """Live control of one session: JSON messages {"type": "instruction"|"persona", "text": ...}."""
        stream = registry.active.get(request.match_info["sid"])
        if stream is None:
            return json_error(404, f"no active session {request.match_info['sid']!r}")
        check_rate(controls.connects, request, "control connections")
        client = client_key(request)
        if controls.full(client):
            return json_error(429, f"{client} has {controls.limits.sockets_per_client} control sockets open "
                                   "(the limit)")
        return await controls.serve(request, stream, client)

    async def sessions(_: web.Request) -> web.Response:
        reclaim = ({"reclaim_runs": registry.reclaimer.runs, "reclaim_last_ms": round(registry.reclaimer.last_ms, 1)}
                   if registry.reclaimer is not None else {})
        return web.json_response({"sessions": [s.info() for s in registry.active.values()],
                                  "server": {**loop_monitor.as_dict(), **reclaim}})

    async def metrics(_: web.Request) -> web.Response:
        lines = ["# TYPE avatar_sessions_active gauge", f"avatar_sessions_active {len(registry.active)}",
                 "# TYPE avatar_sessions_ended_total counter", f"avatar_sessions_ended_total {registry.ended}",
                 "# TYPE avatar_sessions_pending gauge", f"avatar_sessions_pending {registry.pending()}",
                 # Streams started without the visible AI label (label = "off"; each also logged with its id).
                 "# TYPE avatar_unlabelled_streams_total counter",
                 f"avatar_unlabelled_streams_total {disclosure.unlabelled_streams_total}"]
        # Requests refused by the per-client rate limits (429 / "rate limited"): a flood shows here.
        for name, limiter in (("offers", offer_limit), ("control_connections", controls.connects),
                              ("control_messages", controls.messages)):
            lines += [f"# TYPE avatar_{name}_rate_limited_total counter",
                      f"avatar_{name}_rate_limited_total {limiter.refused}"]
        for key, value in loop_monitor.as_dict().items():
            lines += [f"# TYPE avatar_{key} gauge", f"avatar_{key} {value}"]
        per_session = [(s.id, s.info()) for s in registry.active.values()]
        keys = sorted({k for _, info in per_session for k, v in info.items() if isinstance(v, int | float)})
        for key in keys:
            lines.append(f"# TYPE avatar_{key} gauge")
            lines += [f'avatar_{key}{{session="{sid}"}} {info[key]}' for sid, info in per_session if key in info]
        # Each sink's counters (queue drops, failures, ...), labelled by session and sink.
        per_sink = [(sid, name, counters) for sid, info in per_session for name, counters in info["sinks"].items()]
        keys = sorted({k for _, _, c in per_sink for k, v in c.items() if isinstance(v, int | float)})
        for key in keys:
            lines.append(f"# TYPE avatar_sink_{key} gauge")
            lines += [f'avatar_sink_{key}{{session="{sid}",sink="{name}"}} {c[key]}'
                      for sid, name, c in per_sink if isinstance(c.get(key), int | float)]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def on_startup(_: web.Application) -> None:
        loop_monitor.start()
        log_orphaned_connects(asyncio.get_running_loop())

    async def on_shutdown(_: web.Application) -> None:
        # SIGTERM/SIGINT: aiohttp has stopped accepting; every stream closes its sinks (finishing their files)
        # and its peer connection before the process exits.
        streams = list(registry.active.values())
        log.info("shutting down: closing %d sessions", len(streams))
        await loop_monitor.stop()
        await asyncio.gather(*(s.close() for s in streams), return_exceptions=True)
        if registry.reclaimer is not None:
            registry.reclaimer.cancel()
        log.info("shutting down: sessions closed")

    app.router.add_get("/", index)
    app.router.add_get("/health", health)
    app.router.add_post("/offer", offer)
    app.router.add_post("/sessions/{sid}/close", close_session)
    app.router.add_get("/sessions/{sid}/control", control)
    app.router.add_get("/api/sessions", sessions)
    app.router.add_get("/metrics", metrics)
    app.router.add_static("/static", WEB_DIR)
    install_portraits(app, config, avatar)  # /portraits: a portrait per stream, uploaded or from portraits_dir
    add_stream_routes(app, config, registry, offer_limit)  # /streams: streams without a browser
    install_whep(app, registry, config, offer_limit)  # WHEP viewers and the watch page
    install_whip(app, registry, config, offer_limit)  # WHIP publishers
    install_auth(app, config)  # every route above must be classified in streaming/auth.py POLICY
    install_origin_check(app, config)
    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app[REGISTRY] = registry
    return app
