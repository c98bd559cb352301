"""One configuration object, built from (lowest to highest priority) defaults, an optional TOML
file, AVATAR_ENGINE_* environment variables, and command-line flags."""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.config import EngineConfig
from engine.types import FPS
from streaming.auth import check_secret
from streaming.c2pa_sign import C2paSigning
from streaming.disclosure import spec_from_config
from streaming.origin import normalise_origin

ENV_PREFIX = "AVATAR_ENGINE_"
NOT_SETTINGS = {"director_api_key", "vllm_test"}  # read where they are used, never stored in the config
log = logging.getLogger(__name__)


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    ice_host: str | None = None  # address for ICE host candidates; default: host, or all when 0.0.0.0
    max_sessions: int = 4  # further offers get 503: each live session costs ~half a core here
    # Answered but not yet connected sessions (a client that vanished, or never meant to connect): further
    # offers get 503 until one connects or is freed after connect_timeout_s.
    max_pending_sessions: int = 2
    video_bitrate_bps: int = 1_500_000  # fixed: a moving target rebuilds the encoder (keyframes)
    # WebRTC: the returned audio is sent this much before its picture, and its RTCP sender reports say
    # it is presented with the picture (streaming/patches.py, present_ahead). Browsers' audio path is slower than
    # their video path and they sync the two, so without the lead the picture waits for the sound.
    # At most pipeline_delay_s - 1/FPS - 0.02: the microphone's sound must have arrived.
    audio_lead_s: float = 0.03
    connect_timeout_s: float = 10.0  # a session whose peer never connects is freed after this
    # Per client address (token bucket): offers beyond offer_burst at once, or offer_rate_per_s sustained,
    # get 429 with Retry-After, before the body is read. The same limit applies to new control sockets.
    offer_rate_per_s: float = 1.0
    offer_burst: int = 5
    body_timeout_s: float = 5.0  # a request body that has not arrived by then: 408 (then up to 2 s to say so)
    # A connection with no request in progress (idle, or its headers still trickling in) is closed after this.
    idle_timeout_s: float = 8.0
    control_rate_per_s: float = 20.0  # control WebSocket messages per client address; over it: "rate limited"
    control_burst: int = 10
    # The TTS WebSocket (/streams/{id}/audio, streaming/audio_socket.py): with more than this much audio queued
    # the server answers {"type": "backlog"} and stops reading binary messages (TCP back-pressure) until it
    # has played down to it.
    stream_audio_backlog_s: float = 10.0
    audio_message_rate_per_s: float = 500.0  # messages per TTS WebSocket; over it: "rate limited", then 1008
    audio_message_burst: int = 500
    audio_max_message_bytes: int = 1 << 20  # a larger message closes the socket with 1009
    # POST /streams may name an audio file to play only inside this folder (None: no file over the API).
    media_dir: str | None = None
    # POST /streams may record (`outputs.record_dir`) only into this folder or a sub-folder of it (None: no
    # recordings over the API; `avatar-engine live --record DIR` is not limited by it).
    recordings_dir: str | None = None
    # Behind the person in streams that name no background (POST /streams outputs.background): photo,
    # green[:#RRGGBB], image:PATH (the operator's path, not confined to media_dir), alpha[:#RRGGBB].
    background: str = "photo"
    # POST /streams may name a portrait file ({"avatar": "name.jpg"}) only inside this folder (None: only the
    # server's own portrait and uploaded ones). Uploads (POST /portraits) are kept in memory only.
    portraits_dir: str | None = None
    max_portraits: int = 8  # prepared portraits kept in memory (uploaded or named), least recently used dropped
    portrait_max_bytes: int = 8 << 20  # a larger upload gets 413
    # Access control (streaming/auth.py): the operator secret, 32+ characters. Never shown by repr or logs.
    # Without it the server serves only loopback (with a warning), unless `insecure`.
    token: str | None = field(default=None, repr=False)
    insecure: bool = False  # serve a non-loopback address without a token (loudly warned)
    allow_origin: list[str] = field(default_factory=list)  # origins whose pages may call the API; default: same
    # The visible AI disclosure label drawn into every picture (streaming/disclosure.py): cn, eu, en, or off (which
    # logs a WARNING per stream). Empty text/position and 0 height: the preset's own.
    label: str = "en"
    label_text: str = ""
    label_position: str = ""  # top-left, top-right, bottom-left, bottom-right
    label_height: float = 0.0  # glyph height as a fraction of the frame's short side (cn: at least 0.05)
    # The hidden label (the AIGC JSON of GB 45438-2025 in MP4/FLV metadata, streaming/aigc.py): who produced it
    # (a name or filing number) and who propagates it.
    label_producer: str = "avatar-engine"
    label_propagator: str = ""
    # C2PA content credentials on recordings and `render` output (streaming/provenance.py; pip install
    # 'avatar-engine[c2pa]'): a PEM certificate chain (signer first) and its private key. Unset: not signed.
    c2pa_cert: str | None = None
    c2pa_key: str | None = field(default=None, repr=False)
    c2pa_alg: str = "es256"  # es256 es384 es512 ps256 ps384 ps512 ed25519: the key's algorithm
    engine: EngineConfig = field(default_factory=EngineConfig)

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent setting (the engine's too)."""
        self.engine.validate()
        check_secret(self.token)
        spec_from_config(self).resolved()
        if (self.c2pa_cert is None) != (self.c2pa_key is None):
            raise ValueError("c2pa_cert and c2pa_key go together: a certificate chain and its private key")
        C2paSigning.from_config(self)  # a missing file, a key that is not the certificate's, no c2pa-python: now
        for origin in self.allow_origin:
            normalise_origin(origin)
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be between 1 and 65535, got {self.port}")
        for name in ("max_sessions", "max_pending_sessions", "offer_burst", "control_burst", "audio_message_burst",
                     "audio_max_message_bytes", "max_portraits", "portrait_max_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("connect_timeout_s", "offer_rate_per_s", "body_timeout_s", "idle_timeout_s",
                     "control_rate_per_s", "stream_audio_backlog_s", "audio_message_rate_per_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be greater than 0, got {getattr(self, name)}")
        from streaming.keying import parse_background

        parse_background(self.background)
        most = self.engine.pipeline_delay_s - 1 / FPS - 0.02
        if not 0 <= self.audio_lead_s <= most:
            raise ValueError(f"audio_lead_s must be between 0 and pipeline_delay_s - 1/{FPS} - 0.02 = {most:.3f} s "
                             f"(the microphone's audio must have arrived), got {self.audio_lead_s}")

    def ice_addresses(self) -> list[str] | None:
        """None lets aioice pick every interface (server bound to all of them)."""
        if self.ice_host:
            return [self.ice_host]
        if self.host in ("0.0.0.0", "::", ""):
            return None
        return ["127.0.0.1" if self.host == "localhost" else self.host]


def _coerce(value: str, like: Any) -> Any:
    if isinstance(like, list):  # AVATAR_ENGINE_ALLOW_ORIGIN="https://a.example, https://b.example"
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(like, bool):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(like, int):
        return int(value)
    if isinstance(like, float):
        return float(value)
    return value


def _apply(target: Any, values: dict[str, Any], origin: str) -> None:
    names = {f.name for f in fields(target)}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key not in names:
            raise ValueError(f"{origin}: unknown setting {key!r}; known: {', '.join(sorted(names))}")
        current = getattr(target, key)
        if isinstance(value, str) and current is not None and not isinstance(current, str):
            value = _coerce(value, current)
        setattr(target, key, value)


def load_config(toml_path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                environ: dict[str, str] | None = None) -> ServerConfig:
    """overrides: CLI values (None means 'not given'); keys of EngineConfig go to .engine."""
    cfg = ServerConfig()
    engine_names = {f.name for f in fields(EngineConfig)}
    layers: list[tuple[str, dict[str, Any]]] = []
    if toml_path:
        data = tomllib.loads(Path(toml_path).read_text())
        engine = data.pop("engine", {})
        layers += [(str(toml_path), data), (f"{toml_path} [engine]", {"engine": engine})]
    env = os.environ if environ is None else environ
    known = {f.name for f in fields(ServerConfig)} | engine_names
    env_values = {k[len(ENV_PREFIX):].lower(): v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    for name in sorted(set(env_values) - known):
        # The prefix is shared with secrets and test switches (AVATAR_ENGINE_DIRECTOR_API_KEY, ...).
        if name not in NOT_SETTINGS:
            log.warning("ignoring %s%s: not a setting", ENV_PREFIX, name.upper())
        del env_values[name]
    layers.append(("environment", env_values))
    layers.append(("command line", {k: v for k, v in (overrides or {}).items() if v is not None}))
    for origin, values in layers:
        values = dict(values)
        nested = values.pop("engine", {})
        nested.update({k: values.pop(k) for k in list(values) if k in engine_names})
        _apply(cfg, values, origin)
        _apply(cfg.engine, nested, origin)
    cfg.validate()
    return cfg
