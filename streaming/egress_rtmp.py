"""RTMP egress: push the stream (H.264 + AAC in FLV) to an ingest: YouTube, Twitch, a TikTok push code, SRS, nginx-rtmp.

    stream.add_sink(RtmpSink("rtmp://a.rtmp.youtube.com/live2/KEY"))

The packets come from the stream's shared encodes (live_encoding: the stream's one H.264 encode, which
its WHEP viewers and recording share, with 2 s keyframes and a capped bit rate as platforms ask; AAC).
H.264 comes in Annex B with its SPS/PPS out of band; FFmpeg's FLV muxer writes them as avcC and
converts each packet. Nothing here can hold up the engine or the other sinks:

    pacer ─► encoder ─► RtmpSink.on_batch ─► bounded queue ─► writer thread ─► pipe ─► child process ─► ingest
              (shared)   (never waits)        (full: dropped    (FLV muxer)            (streaming/rtmp_push.py:
                                               to a keyframe)                           the RTMP connection)

The connection lives in a child process because FFmpeg's RTMP client blocks with the GIL held
(an ingest that stalls would freeze the whole server). When the ingest refuses or drops the
connection, or stops taking data, the child ends (or is killed) and the writer starts a new one
after a backoff of 1, 2, 4 ... MAX_BACKOFF_S seconds, beginning with the latest keyframe and what
followed it (kept while disconnected), timestamps from zero. State and counters: `info()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import logging
import os
import queue
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import av

from streaming.encoding import AudioSpec, EncodedPacket, EncodingSpec, live_video
from streaming.sinks import Sink

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
STAYED_UP_S = 10.0  # a connection that lasted this long resets the backoff to its first step
CONNECT_TIMEOUT_S = 10.0  # the child must have connected by then
STALL_TIMEOUT_S = 5.0  # a connected child that reports no progress for this long is killed
QUEUE_PACKETS = 400  # ~4 s of video and audio packets between the event loop and the writer
GOP_CACHE_PACKETS = 1000  # what is kept from the latest keyframe on while disconnected (2 s GOPs: ~200)


def live_encoding(video_bit_rate: int = 3_000_000, audio_bit_rate: int = 128_000,
                  preset: str = "superfast") -> EncodingSpec:
    """For live ingest and recordings: the stream's live H.264 (streaming.encoding.live_video: a keyframe every
    2 s, a capped bit rate, no B-frames; the same encode its WHEP viewers get) and AAC-LC."""
    return EncodingSpec.of(live_video(video_bit_rate, preset), AudioSpec("aac", audio_bit_rate))


def bit_rate_for(width: int, height: int) -> int:
    """A video bit rate for a canvas: ~3 Mbps at 720x1280, ~6.5 at 1080x1920 (platforms' 48-60 fps advice)."""
    return int(min(9_000_000, max(1_500_000, width * height * 48 * 0.07)))


LIVE_ENCODING = live_encoding()


def redact(url: str) -> str:
    """The URL without its stream key (the path after the app, and any query) or credentials: keys are secrets, and
    URLs end up in logs and API answers. rtmp://a.rtmp.youtube.com/live2/KEY -> rtmp://a.rtmp.youtube.com/live2/****"""
    try:
        parts = urlsplit(url)
        host = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
    except ValueError:
        return "****"
    if parts.scheme not in ("rtmp", "rtmps") or not host:
        return "****"
    segments = [s for s in parts.path.split("/") if s]
    app = f"/{segments[0]}" if len(segments) > 1 else ""
    return f"{parts.scheme}://{host}{app}/****"


def scrub(text: str) -> str:
    """Every RTMP URL in a message (an FFmpeg error names the one it failed on) redacted."""
    return re.sub(r"rtmps?://[^\s'\"]+", lambda m: redact(m[0]), text)


def check_url(url: str) -> str:
    if not re.match(r"^rtmps?://[^/\s]+/\S+$", url):
        raise ValueError(f"RTMP URL {redact(url)!r}: expected rtmp://host[:port]/app/key or rtmps://...")
    return url


@dataclass
class RtmpMetrics:
    state: str = "idle"  # idle -> connecting -> live; retrying (waiting out a backoff); closed
    up: int = 0  # 1 while live (the state, as a number for /metrics)
    connects: int = 0  # connections that took the stream (the first, and every reconnect)
    reconnects: int = 0  # connects after the first
    connect_failures: int = 0  # attempts that ended before or while connecting (refused, timed out, ...)
    drops: int = 0  # live connections that ended (the ingest dropped it, or stalled and was cut)
    packets_sent: int = 0  # taken by the ingest's connection (video and audio; as the connection reports them)
    packets_dropped: int = 0  # not sent: while down, or when the connection fell behind (to the next keyframe)
    backoff_s: float = 0.0  # the wait before the next attempt (while retrying)
    last_error: str | None = None


class RtmpSink(Sink):
    """One RTMP/RTMPS push; any number per stream, all sharing the stream's encoder for their spec."""

    name = "rtmp"
    queue_size = 64  # on_batch never waits, so this queue stays short

    def __init__(self, url: str, encoding: EncodingSpec = LIVE_ENCODING, *, max_backoff_s: float = MAX_BACKOFF_S,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S, stall_timeout_s: float = STALL_TIMEOUT_S,
                 metadata: dict[str, str] | None = None) -> None:
        self.url = check_url(url)
        self.metadata = dict(metadata or {})  # FLV onMetaData entries (the AIGC hidden label, streaming/aigc.py)
        self.encoding = encoding
        self.max_backoff_s = max_backoff_s
        self.connect_timeout_s = connect_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.metrics = RtmpMetrics()
        self._packets: queue.Queue[EncodedPacket] = queue.Queue(QUEUE_PACKETS)
        self._resync = False  # the queue overflowed: drop until the next keyframe (a decoder cannot bridge a gap)
        self._dropped_here = 0  # by the event loop's side (the writer thread counts its own in metrics)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._gop: list[EncodedPacket] = []  # from the latest keyframe on (writer thread only)
        self._child: subprocess.Popen[bytes] | None = None

    # ---- the event loop's side: never waits -------------------------------------------------
    async def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"rtmp:{redact(self.url)}", daemon=True)
            self._thread.start()

    async def on_batch(self, items: Sequence[object]) -> None:
        for packet in items:
            if not isinstance(packet, EncodedPacket):
                continue
            if self._resync:
                if not (packet.kind == "video" and packet.is_keyframe):
                    self._dropped_here += 1
                    continue
                self._resync = False
            try:
                self._packets.put_nowait(packet)
            except queue.Full:
                self._dropped_here += 1
                self._resync = True

    async def close(self) -> None:
        """Ends the push: what is queued goes out, the child gets end-of-file and unpublishes; one that has not ended
        within 2.5 s (a slow or stuck ingest) is killed."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, thread.join, 2.5)
            child = self._child
            if thread.is_alive() and child is not None:
                child.kill()
                await loop.run_in_executor(None, thread.join, 1.5)
        self.metrics.state = "closed"

    def info(self) -> dict[str, int | float | str | None]:
        out: dict[str, int | float | str | None] = {"url": redact(self.url), **asdict(self.metrics)}
        out["packets_dropped"] = self.metrics.packets_dropped + self._dropped_here
        return out

    # ---- the writer thread --------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            self.metrics.state, self.metrics.backoff_s = "connecting", 0.0
            try:
                live_for = self._connection()
            except Exception as e:  # could not even start a connection (no process to be had): retry like a refusal
                log.exception("rtmp %s: starting a connection failed", redact(self.url))
                self.metrics.connect_failures += 1
                self.metrics.last_error, live_for = f"{type(e).__name__}: {e}", 0.0
            if self._stop.is_set():
                break
            backoff = 1.0 if live_for >= STAYED_UP_S else backoff
            self.metrics.state, self.metrics.backoff_s = "retrying", backoff
            log.warning("rtmp %s: %s; retrying in %.0f s", redact(self.url), self.metrics.last_error, backoff)
            self._keep_up(started_s=time.monotonic(), for_s=backoff)
            backoff = min(backoff * 2, self.max_backoff_s)
        self._end_child()
        self.metrics.state = "closed"

    def _keep_up(self, started_s: float, for_s: float) -> None:
        """Wait out a backoff while keeping the latest keyframe and what follows it (the next connection's start)."""
        while not self._stop.is_set() and (left := started_s + for_s - time.monotonic()) > 0:
            with contextlib.suppress(queue.Empty):
                self._cache(self._packets.get(timeout=min(left, 0.2)))

    def _cache(self, packet: EncodedPacket) -> None:
        if packet.kind == "video" and packet.is_keyframe:
            self.metrics.packets_dropped += len(self._gop)
            self._gop = []
        if len(self._gop) >= GOP_CACHE_PACKETS:
            self.metrics.packets_dropped += 1
            return
        if self._gop or (packet.kind == "video" and packet.is_keyframe):
            self._gop.append(packet)
        else:
            self.metrics.packets_dropped += 1

    def _connection(self) -> float:
        """One child, fed until it fails or the sink closes; returns how long it was live (0: never connected)."""
        while not self._gop and not self._stop.is_set():  # a connection starts at a keyframe
            with contextlib.suppress(queue.Empty):
                self._cache(self._packets.get(timeout=0.2))
        if self._stop.is_set():
            return 0.0
        argv = [sys.executable, "-m", "streaming.rtmp_push", self.url]
        if self.metadata:
            argv.append(json.dumps(self.metadata))
        child = self._child = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, bufsize=0, cwd=_package_root())
        watch = _Watch(child, self)
        watch.start()
        assert child.stdin is not None
        writer = _FlvWriter(child.stdin)
        try:
            backlog, self._gop = self._gop, []
            for packet in backlog:
                self._send(writer, packet)
            while not self._stop.is_set() and child.poll() is None:
                with contextlib.suppress(queue.Empty):
                    self._send(writer, self._packets.get(timeout=0.2))
            if self._stop.is_set() and child.poll() is None:  # the stream ended: what is queued still goes out
                while (packet := self._next_queued()) is not None:
                    self._send(writer, packet)
                writer.close()  # the FLV trailer; then EOF ends the child
        except Exception as e:  # the child went away under a write (the thread itself must live on)
            watch.note(f"{type(e).__name__}: {e}")
        finally:
            self._end_child()
            watch.join(2.0)
        return watch.live_for()

    def _next_queued(self) -> EncodedPacket | None:
        try:
            return self._packets.get_nowait()
        except queue.Empty:
            return None

    def _send(self, writer: _FlvWriter, packet: EncodedPacket) -> None:
        writer.mux(packet)  # what comes before the connection's first keyframe (AAC priming) is left out by design

    def _end_child(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        with contextlib.suppress(OSError):
            assert child.stdin is not None
            child.stdin.close()
        try:
            child.wait(2.0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


class _FlvWriter:
    """FLV into the child's stdin, timestamps from this connection's first keyframe."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._pipe = pipe
        self._container: av.container.OutputContainer | None = None
        self._streams: dict[str, av.stream.Stream] = {}
        self._origin_s: fractions.Fraction | None = None

    def mux(self, packet: EncodedPacket) -> bool:
        """False for a packet from before the connection's first keyframe (not sent)."""
        t_s = (packet.dts if packet.dts is not None else packet.pts or 0) * packet.time_base
        if self._origin_s is None:
            if not (packet.kind == "video" and packet.is_keyframe):
                return False
            self._origin_s = t_s
            self._container = av.open(self._pipe, mode="w", format="flv")
            self._streams = {"video": self._container.add_stream_from_template(packet.streams.video, opaque=True),
                             "audio": self._container.add_stream_from_template(packet.streams.audio, opaque=True)}
        if t_s < self._origin_s:
            return False
        shift = round(self._origin_s / packet.time_base)
        assert self._container is not None
        out = packet.to_av(self._streams[packet.kind])
        out.pts = None if packet.pts is None else packet.pts - shift
        out.dts = None if packet.dts is None else packet.dts - shift
        self._container.mux(out)
        return True

    def close(self) -> None:
        if self._container is not None:
            container, self._container = self._container, None
            container.close()


class _Watch(threading.Thread):
    """Reads the child's reports; kills it when it does not connect in time or stops making progress."""

    def __init__(self, child: subprocess.Popen[bytes], sink: RtmpSink) -> None:
        super().__init__(name="rtmp-watch", daemon=True)
        self.child, self.sink = child, sink
        self.connected_s: float | None = None
        self.ended_s: float | None = None
        self._error: str | None = None
        self._started_s = time.monotonic()

    def note(self, error: str) -> None:
        self._error = self._error or error

    def live_for(self) -> float:
        if self.connected_s is None:
            return 0.0
        return (self.ended_s or time.monotonic()) - self.connected_s

    def run(self) -> None:
        m, out = self.sink.metrics, self.child.stdout
        assert out is not None
        last_s, buffer, sent_before = time.monotonic(), b"", m.packets_sent
        while True:
            ready, _, _ = select.select([out], [], [], 0.25)
            chunk = os.read(out.fileno(), 4096) if ready else b""
            if ready and not chunk:
                break  # the child ended
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace").strip()
                last_s = time.monotonic()
                if text == "connected":
                    self.connected_s = last_s
                    m.state, m.up, m.connects, m.last_error = "live", 1, m.connects + 1, None
                    m.reconnects += int(m.connects > 1)
                    log.info("rtmp %s: connected", redact(self.sink.url))
                elif text.startswith("sent ") and text[5:].isdigit():
                    m.packets_sent = sent_before + int(text[5:])
                elif text.startswith("error "):
                    self.note(text[6:])
            now = time.monotonic()
            waited = now - (self._started_s if self.connected_s is None else last_s)
            limit = self.sink.connect_timeout_s if self.connected_s is None else self.sink.stall_timeout_s
            if waited > limit and self.child.poll() is None:
                self.note(f"{'no connection' if self.connected_s is None else 'no progress'} for {limit:.0f} s")
                self.child.kill()
        self.ended_s = time.monotonic()
        self.child.wait()
        m.up = 0
        if self.sink._stop.is_set():  # the sink closed it: no failure
            return
        if self.connected_s is None:
            m.connect_failures += 1
        else:
            m.drops += 1
        m.last_error = scrub(self._error or f"the connection ended (exit status {self.child.returncode})")


def _package_root() -> str:
    """Where `streaming` is importable from (the child runs `python -m streaming.rtmp_push`)."""
    return str(Path(__file__).resolve().parent.parent)
