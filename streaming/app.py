"""The aiohttp application: web client, WebRTC signaling, session list and metrics."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from pathlib import Path

from aiohttp import web

from engine.generator import PreparedAvatar
from engine.session import AvatarSession
from streaming.auth import install_auth, session_token
from streaming.config import ServerConfig
from streaming.loop_monitor import LoopMonitor
from streaming.origin import install_origin_check
from streaming.reclaim import Reclaimer
from streaming.stream import AvatarStream
from streaming.webrtc import OfferError, PeerSession, new_session_id, parse_offer

log = logging.getLogger(__name__)
WEB_DIR = Path(__file__).resolve().parent / "web"
MAX_OFFER_BYTES = 256 * 1024
MAX_CONTROL_BYTES = 4096
MAX_CONTROL_TEXT = 500


def apply_control(session: AvatarSession, raw: str) -> dict[str, object]:
    """One control message -> the reply. Texts are data for the director, never instructions to us."""
    try:
        msg = json.loads(raw)
    except json.JSONDecodeError as e:
        return {"ok": False, "error": f"not valid JSON: {e}"}
    if not isinstance(msg, dict) or msg.get("type") not in ("instruction", "persona"):
        return {"ok": False, "error": 'expected {"type": "instruction" or "persona", "text": "..."}'}
    text = msg.get("text")
    if not isinstance(text, str) or not text.strip():
        return {"ok": False, "error": "'text' must be a non-empty string"}
    if len(text) > MAX_CONTROL_TEXT:
        return {"ok": False, "error": f"'text' is longer than {MAX_CONTROL_TEXT} characters"}
    if msg["type"] == "instruction":
        session.instruct(text.strip())
    else:
        session.set_persona(text.strip())
    return {"ok": True, "type": msg["type"]}


class SessionRegistry:
    """The live streams being served, by session id."""

    def __init__(self, max_sessions: int, reclaimer: Reclaimer | None = None) -> None:
        self.max_sessions = max_sessions
        self.active: dict[str, AvatarStream] = {}
        self.ended = 0
        self.reclaimer = reclaimer

    def full(self) -> bool:
        return len(self.active) >= self.max_sessions

    def full_error(self) -> web.Response:
        return json_error(503, f"server is at its limit of {self.max_sessions} sessions; try again later")

    def add(self, stream: AvatarStream) -> None:
        self.active[stream.id] = stream
        stream.on_closed(self.remove)
        if self.reclaimer is not None:
            reclaimer = self.reclaimer

            async def reclaim() -> None:  # the stream's last closer: its peer connection is closed by now
                reclaimer.soon()

            stream.close_with(reclaim)

    def remove(self, stream: AvatarStream) -> None:
        if self.active.pop(stream.id, None) is not None:
            self.ended += 1


REGISTRY = web.AppKey("registry", SessionRegistry)


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def build_app(config: ServerConfig, avatar: PreparedAvatar) -> web.Application:
    app = web.Application(client_max_size=MAX_OFFER_BYTES)
    registry = SessionRegistry(config.max_sessions, Reclaimer())
    loop_monitor = LoopMonitor()

    async def index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_DIR / "index.html")

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def offer(request: web.Request) -> web.Response:
        try:
            desc = parse_offer(await request.read())
        except OfferError as e:
            return json_error(400, str(e))
        if registry.full():
            return registry.full_error()
        sid = new_session_id()
        try:
            # Building a session (renderer fields, voice-activity model) takes 30-60 ms of CPU: off the
            # event loop, so the sessions already streaming do not stall for it.
            session = await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(AvatarSession, avatar, config.engine, live=True, session_id=sid))
            stream = AvatarStream(session, audio_lead_s=config.audio_lead_s)
            peer = PeerSession(stream)
        except Exception:
            log.exception("session %s: could not be created", sid)
            return json_error(500, "internal error while creating the session; see the server log")
        if registry.full():  # another offer took the last place while this session was built
            return registry.full_error()
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
        return web.json_response({"closed": True})

    async def control(request: web.Request) -> web.StreamResponse:
        """Live control of one session: JSON messages {"type": "instruction"|"persona", "text": ...}."""
        stream = registry.active.get(request.match_info["sid"])
        if stream is None:
            return json_error(404, f"no active session {request.match_info['sid']!r}")
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_CONTROL_BYTES)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type != web.WSMsgType.TEXT:
                continue
            reply = apply_control(stream.session, msg.data)
            await ws.send_json(reply)
            if stream.state == "closed":
                break
        return ws

    async def sessions(_: web.Request) -> web.Response:
        reclaim = ({"reclaim_runs": registry.reclaimer.runs, "reclaim_last_ms": round(registry.reclaimer.last_ms, 1)}
                   if registry.reclaimer is not None else {})
        return web.json_response({"sessions": [s.info() for s in registry.active.values()],
                                  "server": {**loop_monitor.as_dict(), **reclaim}})

    async def metrics(_: web.Request) -> web.Response:
        lines = ["# TYPE avatar_sessions_active gauge", f"avatar_sessions_active {len(registry.active)}",
                 "# TYPE avatar_sessions_ended_total counter", f"avatar_sessions_ended_total {registry.ended}"]
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
    install_auth(app, config)  # every route above must be classified in streaming/auth.py POLICY
    install_origin_check(app, config)
    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app[REGISTRY] = registry
    return app
