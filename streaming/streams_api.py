"""Streams without a browser: POST /streams, GET /streams, DELETE /streams/{id}, and the TTS WebSocket
/streams/{id}/audio (streaming/audio_socket.py).

    POST /streams {"avatar": "<portrait id or file name>", "persona": "...", "outputs": {...},
                   "audio_file": "show.wav", "loop": true}
      -> 201 {"id", "urls": {"audio", "whep", "watch", "control"}, "avatar": {...}, "tokens": {...} (access control on)}
    GET /streams/{id} -> the stream: its portrait, audio, viewers, outputs' health

They live in the same SessionRegistry as POST /offer sessions (same caps), and pass the same admission:
the per-client rate (429 + Retry-After), a bounded body (413, 408), JSON only (415), the caps (503).
The avatar: the server's own portrait (--avatar at start) unless `avatar` names another, uploaded on POST
/portraits (its id) or a file in the portraits_dir folder (prepared on first use, seconds: streaming/portraits.py).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from aiohttp import web
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from streaming.admission import check_rate, read_body, require_json
from streaming.audio_socket import AudioLimits, AudioSockets
from streaming.auth import AUTHORITY, SESSION_TOKEN_TTL_S
from streaming.config import ServerConfig
from streaming.live_stream import (
    OUTPUTS_MODULE,
    LiveStream,
    OutputsUnavailable,
    StreamEnded,
    build_session,
    confined_outputs,
    live_stream,
    parse_outputs,
    safe_media_path,
    start_live_stream,
)
from streaming.portraits import PortraitRefused
from streaming.portraits_api import PORTRAITS
from streaming.ratelimit import RateLimiter
from streaming.registry import SessionRegistry
from streaming.sources import FileSource
from streaming.stream import AvatarStream
from streaming.webrtc import new_session_id
from streaming.whep import WHEP

log = logging.getLogger(__name__)
MAX_STREAM_BODY_BYTES = 16 * 1024
MAX_PERSONA_CHARS = 2000
MAX_AUDIO_FILE_BYTES = 64 * 1024 * 1024  # decoded up front (streaming.sources.FileSource): bounded memory
LIVES = web.AppKey("live_streams", dict)
AUDIO_SOCKETS = web.AppKey("audio_sockets", AudioSockets)


class StreamRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    avatar: str | None = Field(default=None, min_length=1, max_length=256)  # streaming.portraits.PortraitStore
    persona: str | None = Field(default=None, max_length=MAX_PERSONA_CHARS,
                                validation_alias=AliasChoices("persona", "instructions"))
    outputs: dict[str, Any] | None = None  # streaming.outputs.OutputsSpec: rtmp, record_dir, size, fit, background
    audio_file: str | None = Field(default=None, min_length=1, max_length=1024)  # inside media_dir
    loop: bool = False


def error(status: int, message: str, retry_after_s: int | None = None) -> web.Response:
    headers = None if retry_after_s is None else {"Retry-After": str(retry_after_s)}
    return web.json_response({"error": message}, status=status, headers=headers)


def reasons(e: ValidationError) -> str:
    out = []
    for err in e.errors(include_url=False, include_input=False):
        where = ".".join(map(str, err["loc"])) or "body"
        out.append(f"{where}: {err['msg']}")
    return "; ".join(out)


def outputs_module_loaded() -> bool:
    """Whether any stream may have outputs (streaming.outputs is imported by the first that asks for some)."""
    return OUTPUTS_MODULE in sys.modules


def stream_urls(request: web.Request, sid: str) -> dict[str, str]:
    http = f"{request.scheme}://{request.host}"
    ws = f"{'wss' if request.scheme == 'https' else 'ws'}://{request.host}"
    return {"audio": f"{ws}/streams/{sid}/audio", "whep": f"{http}/streams/{sid}/whep",
            "watch": f"{http}/watch/{sid}", "control": f"{ws}/sessions/{sid}/control"}


def stream_tokens(request: web.Request, sid: str) -> dict[str, Any]:
    """Scoped tokens for the new stream: publish (its audio WebSocket), control (direct it), view (watch it)."""
    authority = request.app[AUTHORITY]
    if not authority.enabled:
        return {}
    tokens: dict[str, Any] = {}
    for role in ("publish", "control", "view"):
        tokens[role], expires_at = authority.mint(sid, role, SESSION_TOKEN_TTL_S)
    return {"tokens": tokens | {"expires_at": expires_at}}


async def open_media(media_dir: str | None, name: str, loop: bool) -> FileSource:
    """The named file inside media_dir, decoded (off the event loop); ValueError naming only `name`."""
    path = safe_media_path(media_dir, name)
    if path.stat().st_size > MAX_AUDIO_FILE_BYTES:
        raise ValueError(f"audio_file {name!r} is over {MAX_AUDIO_FILE_BYTES >> 20} MiB")
    try:
        return await asyncio.get_running_loop().run_in_executor(None, lambda: FileSource(path, loop=loop))
    except ValueError as e:  # its message names the server's path (FFmpeg's too): say the client's name instead
        reason = str(e).removeprefix(f"{path}: ").replace(str(path), name)
        raise ValueError(f"audio_file {name!r}: {reason}") from e


def add_stream_routes(app: web.Application, config: ServerConfig, registry: SessionRegistry,
                      creations: RateLimiter) -> None:
    """creations: the per-client bucket new sessions take from (shared with POST /offer). The portraits come from
    the app's PortraitStore (streaming/portraits_api.py install_portraits)."""
    lives: dict[str, LiveStream] = {}
    portraits: dict[str, dict[str, Any]] = {}  # stream id -> the portrait it was created with
    sockets = AudioSockets(AudioLimits(config.stream_audio_backlog_s, config.audio_message_rate_per_s,
                                       config.audio_message_burst, config.audio_max_message_bytes))
    audio_connects = RateLimiter(config.offer_rate_per_s, config.offer_burst)

    def forget(stream: AvatarStream) -> None:
        lives.pop(stream.id, None)
        portraits.pop(stream.id, None)
        sockets.stream_closed(stream.id)

    async def create(request: web.Request) -> web.Response:
        check_rate(creations, request, "stream creations")
        require_json(request)
        raw = await read_body(request, config.body_timeout_s)
        if len(raw) > MAX_STREAM_BODY_BYTES:
            return error(413, f"request body is larger than {MAX_STREAM_BODY_BYTES} bytes")
        try:
            body = StreamRequest.model_validate_json(raw or b"{}")
            outputs = parse_outputs(body.outputs)
        except ValidationError as e:
            return error(400, reasons(e))
        except OutputsUnavailable as e:
            return error(501, str(e))
        refusal = registry.refusal()  # before a file is decoded: a full server spends nothing on it
        if refusal is not None:
            return error(503, refusal, retry_after_s=2)
        try:
            portrait = await request.app[PORTRAITS].resolve(body.avatar)  # a named file not prepared yet: seconds
        except PortraitRefused as e:
            return error(e.status, str(e))
        audio = None
        if body.audio_file is not None:
            try:
                audio = await open_media(config.media_dir, body.audio_file, body.loop)
            except ValueError as e:
                return error(400, str(e))
        elif body.loop:
            return error(400, "loop: needs audio_file")
        try:
            outputs = confined_outputs(outputs, config)
        except ValueError as e:
            return error(400, str(e))
        refusal = registry.refusal()  # again, with no await before the reservation: the caps stay exact
        if refusal is not None:
            return error(503, refusal, retry_after_s=2)
        sid = new_session_id()
        try:
            with registry.reserve():
                session = await build_session(portrait.avatar, config, sid)
            live = live_stream(session, config, audio, outputs)
        except Exception:
            log.exception("stream %s: could not be created", sid)
            return error(500, "internal error while creating the stream; see the server log")
        registry.add(live.stream)  # no await since the reservation: the caps stay exact
        lives[sid] = live
        live.stream.on_closed(forget)
        try:
            await start_live_stream(live, body.persona)
        except StreamEnded as e:
            return error(409, str(e))
        except Exception:
            log.exception("stream %s: could not be started", sid)
            return error(500, "internal error while starting the stream; see the server log")
        portraits[sid] = portrait.describe()
        log.info("stream %s: created with portrait %s (%d active)", sid, portrait.label, len(registry.active))
        return web.json_response({"id": sid, "urls": stream_urls(request, sid), "avatar": portraits[sid],
                                  **stream_tokens(request, sid)}, status=201, headers={"Location": f"/streams/{sid}"})

    def describe(request: web.Request, sid: str, stream: AvatarStream) -> dict[str, Any]:
        live = lives.get(sid)
        if live is not None:
            out = {"kind": "api", **live.describe()}
        else:
            out = {"kind": "webrtc", "id": sid, "state": stream.state, "frames_sent": stream.pacer.metrics.frames_sent}
            if outputs_module_loaded():
                out["outputs"] = sys.modules[OUTPUTS_MODULE].describe_outputs(stream)
        whep = request.app.get(WHEP)
        return out | {"avatar": portraits.get(sid) or {"name": stream.session.avatar.name},
                      "viewers": len(whep.viewers.of(sid)) if whep is not None else 0}

    async def listing(request: web.Request) -> web.Response:
        return web.json_response({"streams": [describe(request, sid, stream)
                                              for sid, stream in list(registry.active.items())]})

    async def one(request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        stream = registry.active.get(sid)
        if stream is None:
            return error(404, f"no active stream {sid!r}")
        return web.json_response(describe(request, sid, stream))

    async def delete(request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        stream = registry.active.get(sid)
        if stream is None:
            return error(404, f"no active stream {sid!r}")
        await stream.close()
        return web.json_response({"closed": True, "id": sid})

    def pushed_stream(sid: str) -> LiveStream | web.Response:
        """The stream that takes pushed audio, or the answer that says why this one does not."""
        live = lives.get(sid)
        if live is None:
            if sid in registry.active:
                return error(409, f"session {sid!r} takes its audio from its WebRTC microphone, not this socket")
            return error(404, f"no active stream {sid!r}")
        if live.pushed is None:
            return error(409, f"stream {sid!r} plays the file it was created with, not pushed audio")
        return live

    async def interrupt(request: web.Request) -> web.Response:
        """Out of band: works even when the publisher's socket is backed up with audio it already wrote."""
        live = pushed_stream(request.match_info["sid"])
        if isinstance(live, web.Response):
            return live
        return web.json_response({"interrupted": True, "dropped_s": round(await sockets.interrupt(live), 3)})

    async def audio(request: web.Request) -> web.StreamResponse:
        sid = request.match_info["sid"]
        live = pushed_stream(sid)
        if isinstance(live, web.Response):
            return live
        if sockets.busy(sid):
            return error(409, f"stream {sid!r} already has an audio publisher connected (one at a time)")
        check_rate(audio_connects, request, "audio connections")
        return await sockets.serve(request, live)

    app.router.add_post("/streams", create)
    app.router.add_get("/streams", listing)
    app.router.add_get("/streams/{sid}", one)
    app.router.add_delete("/streams/{sid}", delete)
    app.router.add_get("/streams/{sid}/audio", audio)
    app.router.add_post("/streams/{sid}/interrupt", interrupt)
    app[LIVES] = lives
    app[AUDIO_SOCKETS] = sockets
