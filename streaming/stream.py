"""A stream: one session, the sources that feed it and the sinks that watch it, through one pacer.

    sources (microphone, pushed PCM, file) ─► AvatarSession ─► Pacer ─┬─► sink (WebRTC peer)
                                                                      ├─► sink (MP4 file)
                                                                      └─► ...

It knows no transport: a WebRTC peer (streaming/webrtc.py) attaches a microphone source and a
WebRTC sink to one; the file render (streaming/egress_file.py) attaches a file source and an MP4
sink to an offline one. The server's registry holds streams.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from engine.session import AvatarSession
from streaming.pacer import Pacer
from streaming.sinks import Sink
from streaming.sources import Source

log = logging.getLogger(__name__)


class AvatarStream:
    """Live when its session is (the pacer's clock), else offline (as fast as it renders, nothing dropped)."""

    def __init__(self, session: AvatarSession, *, audio_lead_s: float = 0.0) -> None:
        self.id = session.id
        self.session = session
        self.pacer = Pacer(session, audio_lead_s=audio_lead_s)
        # new -> streaming -> closed; a transport may say more meanwhile (WebRTC: connecting).
        self.state = "new"
        self._sources: dict[asyncio.Task[None], Source] = {}
        self._sources_ended = 0
        self._on_closed: list[Callable[[AvatarStream], object]] = []
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._closing: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.session.start()
        self.pacer.start()
        if self.state == "new":
            self.state = "streaming"

    def add_source(self, source: Source) -> None:
        """Run it in its own task (before or after start)."""
        task = asyncio.create_task(source.run(self.session), name=f"{self.id}:source:{source.name}")
        self._sources[task] = source
        task.add_done_callback(self._source_ended)

    def _source_ended(self, task: asyncio.Task[None]) -> None:
        source = self._sources.pop(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("stream %s: source %s failed", self.id, source.name, exc_info=task.exception())
        if not self.session.live and not self._sources and self.state != "closed":
            self.session.end_input()  # the last source of a render ended: so does the render

    @property
    def source_names(self) -> list[str]:
        """The sources feeding it now (an ingest refuses a second live voice)."""
        return [source.name for source in self._sources.values()]

    def add_sink(self, sink: Sink) -> None:
        """Feed it from the next frame on (before or while running)."""
        self.pacer.add_sink(sink)

    async def remove_sink(self, sink: Sink) -> None:
        await self.pacer.remove_sink(sink)

    def on_closed(self, listener: Callable[[AvatarStream], object]) -> None:
        """listener(stream) as soon as the stream starts closing (a registry forgets it)."""
        self._on_closed.append(listener)

    def close_with(self, aclose: Callable[[], Awaitable[None]]) -> None:
        """Await aclose() after the sinks and the session are closed (a transport drops its connection)."""
        self._closers.append(aclose)

    async def wait(self) -> None:
        """Offline: until the last frame went to every sink and they are closed; raises if the session failed."""
        await self.pacer.wait()

    def close_soon(self) -> None:
        """close() from a callback that cannot await."""
        if self._closing is None:
            self._closing = asyncio.create_task(self.close(), name=f"{self.id}:close")

    async def close(self) -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        for listener in self._on_closed:
            listener(self)
        current = asyncio.current_task()
        sources = [t for t in self._sources if t is not current]
        for t in sources:
            t.cancel()
        await asyncio.gather(*sources, return_exceptions=True)
        await self.pacer.stop()
        await self.session.aclose()
        for aclose in self._closers:
            try:
                await aclose()
            except Exception:
                log.exception("stream %s: closing its transport failed", self.id)
        log.info("stream %s: closed (%d frames sent)", self.id, self.pacer.metrics.frames_sent)

    def info(self) -> dict[str, Any]:
        """For /api/sessions and /metrics: the pacer's, the session's and each sink's counters."""
        out: dict[str, Any] = {"id": self.id, "state": self.state, "error": self.session.problem,
                               "encoders": len(self.pacer.encoders),  # one per codec, however many watch
                               **self.pacer.metrics.as_dict()}
        clock = self.session.clock
        if clock is not None:
            # Frame k is due at clock_start_s + pipeline_delay_s + k / 48 (time.monotonic, which a peer
            # on the same machine shares: benchmarks.latency splits its latency with it).
            out |= {"clock_start_s": clock.start_s, "pipeline_delay_s": clock.delay_s,
                    "first_sent_frame": self.pacer.first_sent_frame,
                    "mic_offset_samples": self.session.input_offset_samples}
        return {**out, **self.session.metrics.as_dict(), **self.session.queue_depths(),
                **self.session.director_stats(), "sinks": self.pacer.sinks.sink_metrics()}
