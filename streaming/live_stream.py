"""A stream that exists without a browser: one avatar on the media clock, fed by pushed audio or a file,
shown to whatever outputs it has (RTMP, a recording, WHEP viewers) or to none yet.

Used by POST /streams (streaming/streams_api.py) and `avatar-engine live` (server.py).

Idle and live: such a stream is live from the moment it starts. Its pacer's loops start with the
first sink, so every stream gets a ClockSink first: the clock runs, the avatar is rendered (idle
motion when there is no audio), and pushed audio plays out on time, whether anyone watches or not.
Outputs and viewers join that one render, frame by frame (one render and one encode per codec for
all of them); none of them starts or stops it.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.generator import PreparedAvatar
from engine.session import AvatarSession
from engine.types import SAMPLE_RATE_HZ
from streaming.config import ServerConfig
from streaming.provenance import disclose
from streaming.sinks import PacedAudio, PacedFrame, Sink
from streaming.sources import FileSource, PushedAudio
from streaming.stream import AvatarStream

log = logging.getLogger(__name__)
OUTPUTS_MODULE = "streaming.outputs"  # the outputs helper's OutputsSpec and attach_outputs (issue 14)


class ClockSink(Sink):
    """Holds a stream on its clock with nobody watching: takes every item and keeps nothing (the fan-out counts
    them, in /api/sessions' sinks.clock)."""

    name = "clock"
    queue_size = 4

    async def on_batch(self, items: Sequence[PacedFrame | PacedAudio | object]) -> None:
        return None


class StreamEnded(RuntimeError):
    """The stream was closed before it finished starting."""


class OutputsUnavailable(RuntimeError):
    """This build has no streaming.outputs (RTMP, recording, canvas)."""


def outputs_module() -> Any:
    """streaming.outputs, imported when first needed (it pulls in the RTMP and file egress)."""
    try:
        return importlib.import_module(OUTPUTS_MODULE)
    except ModuleNotFoundError as e:
        if e.name != OUTPUTS_MODULE:
            raise
        raise OutputsUnavailable("outputs (rtmp, record_dir, size, fit, background) need streaming.outputs, "
                                 "which this build does not have") from e


def parse_outputs(raw: dict[str, Any] | None) -> Any:
    """An OutputsSpec from its JSON form (pydantic.ValidationError when wrong), or None for no outputs."""
    if not raw:
        return None
    return outputs_module().OutputsSpec.model_validate(raw)


@dataclass
class LiveStream:
    """A stream created without a browser, and what feeds it."""

    stream: AvatarStream
    pushed: PushedAudio | None  # the TTS WebSocket's way in; None when a file plays
    audio_file: str | None = None
    loop: bool = False
    outputs: Any = None  # the OutputsSpec it was given
    created_at: float = field(default_factory=time.time)
    _file: FileSource | None = field(default=None, repr=False)
    audio_done: asyncio.Event = field(default_factory=asyncio.Event)  # its file has been read to the end (no loop)

    @property
    def id(self) -> str:
        return self.stream.id

    def describe(self) -> dict[str, Any]:
        """For GET /streams and the `live` command's log."""
        out: dict[str, Any] = {"id": self.id, "state": self.stream.state, "created_at": round(self.created_at, 3),
                               "audio": {"source": "websocket" if self.pushed is not None else "file",
                                         "file": self.audio_file, "loop": self.loop},
                               "frames_sent": self.stream.pacer.metrics.frames_sent}
        if self.pushed is not None:
            backlog_s = round(self.pushed.backlog_samples / SAMPLE_RATE_HZ, 3)
            out["audio"] |= self.pushed.stats.as_dict() | {"backlog_s": backlog_s}
        if self.outputs is not None:
            try:
                out["outputs"] = outputs_module().describe_outputs(self.stream)
            except Exception as e:  # a report must not fail the listing
                out["outputs"] = {"error": f"{type(e).__name__}: {e}"}
        return out


async def build_session(avatar: PreparedAvatar, config: ServerConfig, sid: str) -> AvatarSession:
    # 30-60 ms of CPU (renderer fields, voice-activity model): off the event loop, so streams already
    # running do not stall for it.
    return await asyncio.get_running_loop().run_in_executor(
        None, functools.partial(AvatarSession, avatar, config.engine, live=True, session_id=sid))


class _Tracked:
    """A source that says when it has ended."""

    def __init__(self, source: FileSource | PushedAudio, done: asyncio.Event) -> None:
        self.source, self.done, self.name = source, done, source.name

    async def run(self, session: AvatarSession) -> None:
        try:
            await self.source.run(session)
        finally:
            self.done.set()


def live_stream(session: AvatarSession, config: ServerConfig, audio: FileSource | None = None,
                outputs: Any = None) -> LiveStream:
    """A live stream around a session (not started): fed by `audio` (a file), or by pushed audio (its `pushed`)."""
    stream = AvatarStream(session, audio_lead_s=config.audio_lead_s)
    disclose(stream, config, getattr(outputs, "label", None))  # the visible label from the first frame
    return LiveStream(stream, None if audio is not None else PushedAudio(),
                      str(audio.path) if audio is not None else None, bool(audio and audio.loop), outputs,
                      _file=audio)


async def start_live_stream(live: LiveStream, persona: str | None = None) -> None:
    """On its clock at once, with its outputs and its audio. Closes the stream and raises if a step fails."""
    stream = live.stream
    try:
        if persona:
            stream.session.set_persona(persona)
        stream.add_sink(ClockSink())
        if live.outputs is not None:  # before the start: an output canvas must be set before the first frame
            outputs_module().attach_outputs(stream, live.outputs)
        await stream.start()
        if stream.state == "closed":  # deleted, or the server shut down, while it warmed up
            raise StreamEnded(f"stream {stream.id} was ended while it started")
        source = live._file if live._file is not None else live.pushed
        assert source is not None
        stream.add_source(_Tracked(source, live.audio_done))
    except BaseException:
        await stream.close()
        raise
    log.info("stream %s: live (%s)", stream.id, f"file {live.audio_file}" if live._file else "pushed audio")


def safe_media_path(media_dir: str | None, name: str) -> Path:
    """A file named by an API client, which must lie inside media_dir (ValueError otherwise)."""
    if not media_dir:
        raise ValueError("this server plays no files named over the API: set media_dir (AVATAR_ENGINE_MEDIA_DIR, "
                         "or media_dir in the TOML file) to the folder they may come from")
    root = Path(media_dir).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ValueError(f"{name!r} is not a file inside the media folder")
    return path


def confined_outputs(outputs: Any, config: Any) -> Any:
    """The OutputsSpec of an API request with its paths resolved inside the server's folders: a recording
    folder inside `recordings_dir`, a background image inside `media_dir` (ValueError otherwise). An
    operator's token should not also be a way to write or read any path the server can reach."""
    default = getattr(config, "background", None)
    if default and default != "photo" and (outputs is None or outputs.background is None):
        # The server's own background (--background, set by its operator, not confined) for a stream that names
        # none; the request's own paths are still confined below.
        outputs = (outputs if outputs is not None else outputs_module().OutputsSpec()).model_copy(
            update={"background": str(outputs_module().parse_background(default))})
        return _confined_paths(outputs, config, background=False)
    if outputs is None:
        return None
    return _confined_paths(outputs, config, background=True)


def _confined_paths(outputs: Any, config: Any, *, background: bool) -> Any:
    """outputs with its record_dir (and, if `background`, its picture) resolved inside the server's folders."""
    update: dict[str, Any] = {}
    if outputs.record_dir is not None:
        if not config.recordings_dir:
            raise ValueError("this server records nothing requested over the API: set recordings_dir "
                             "(AVATAR_ENGINE_RECORDINGS_DIR, or recordings_dir in the TOML file)")
        root = Path(config.recordings_dir).resolve()
        path = (root / outputs.record_dir).resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"outputs.record_dir {str(outputs.record_dir)!r} is not inside the recordings folder")
        path.mkdir(parents=True, exist_ok=True)
        update["record_dir"] = path
    mode = outputs.mode if background and outputs.background is not None else None
    if mode is not None and mode.path is not None:  # image:PATH (or an image path, the older form)
        update["background"] = str(mode.with_path(safe_media_path(config.media_dir, str(mode.path))))
    return outputs.model_copy(update=update)
