"""One producer, many sinks: each sink behind its own bounded queue and task.

Live, handing an item out never waits: a sink whose queue is full loses its oldest item (counted),
so a slow sink costs only itself and the clock keeps time. Offline, every sink is awaited
(back-pressure, nothing dropped). A sink that raises is restarted if it says it can be, else closed
and removed; the others never notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, TypeAlias

from streaming.sinks import PacedAudio, PacedFrame, Sink

if TYPE_CHECKING:
    from streaming.encoding import CodecEncoder, EncodedPacket, Encoder, Spec

log = logging.getLogger(__name__)

MAX_RESTARTS = 3
CLOSE_TIMEOUT_S = 5.0  # a sink's close() (and draining its queue when the stream ends) may take this long


class _End:
    """After the last item: the sink's task closes it and ends."""


END = _End()
Item: TypeAlias = "PacedFrame | PacedAudio | EncodedPacket"
MAX_LEFT = 32  # sinks that left whose last counters are kept for /api/sessions


@dataclass
class SinkMetrics:
    frames: int = 0
    audio_chunks: int = 0
    packets: int = 0
    dropped: int = 0  # live: items it had no room for (the oldest waiting go first)
    failures: int = 0
    restarts: int = 0
    first_frame_index: int | None = None  # the first frame this sink received
    error: str | None = None  # why it was removed

    def as_dict(self) -> dict[str, int | str | None]:
        return asdict(self)


class Outlet:
    """A sink, its queue and the task that feeds it."""

    def __init__(self, sink: Sink, name: str, on_failed: Callable[[Outlet], None]) -> None:
        self.sink = sink
        self.name = name
        self.metrics = SinkMetrics()
        self.failed = False
        self._on_failed = on_failed
        self._queue: asyncio.Queue[Item | _End] = asyncio.Queue(maxsize=max(1, sink.queue_size))
        self._sink_open = False
        self._task = asyncio.create_task(self._run(), name=f"sink:{name}")

    def offer(self, item: Item) -> int:
        """Live: queue it at once, dropping the oldest items if full; returns how many were dropped."""
        if self.failed:
            return 0
        dropped = 0
        while self._queue.full():
            self._queue.get_nowait()
            dropped += 1
        self.metrics.dropped += dropped
        self._queue.put_nowait(item)
        return dropped

    def counters(self) -> dict[str, int | str | None]:
        """Its queue's counters and the sink's own (Sink.info)."""
        try:
            own = self.sink.info()
        except Exception:
            own = {}
        return {**self.metrics.as_dict(), "queued": self._queue.qsize(), **own}

    def clear(self) -> int:
        """Drop everything waiting (counted); returns how many."""
        n = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            n += 1
        self.metrics.dropped += n
        return n

    async def put(self, item: Item) -> None:
        """Offline: wait for room."""
        if not self.failed:
            await self._queue.put(item)

    async def aclose(self, drain: bool) -> None:
        """drain: deliver what is queued first (within CLOSE_TIMEOUT_S); else stop at once. Then close the sink."""
        if drain and not self.failed and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.put(END), CLOSE_TIMEOUT_S)
                await asyncio.wait_for(asyncio.shield(self._task), CLOSE_TIMEOUT_S)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._close_sink()

    async def _close_sink(self) -> None:
        if not self._sink_open:
            return
        self._sink_open = False
        try:
            await asyncio.wait_for(self.sink.close(), CLOSE_TIMEOUT_S)
        except Exception:
            log.exception("sink %s: close failed", self.name)

    async def _run(self) -> None:
        started = await self._recover(None)
        while started:
            batch = [await self._queue.get()]
            while not self._queue.empty():  # what queued up meanwhile goes in one call (Sink.on_batch)
                batch.append(self._queue.get_nowait())
            items = [item for item in batch if not isinstance(item, _End)]
            try:
                if items:
                    self._count(items)
                    await self.sink.on_batch(items)
            except Exception as e:
                started = await self._recover(e)
            if len(items) < len(batch):
                await self._close_sink()
                return

    def _count(self, items: list[Item]) -> None:
        m = self.metrics
        for item in items:
            if isinstance(item, PacedFrame):
                if m.first_frame_index is None:
                    m.first_frame_index = item.frame_index
                m.frames += 1
            elif isinstance(item, PacedAudio):
                m.audio_chunks += 1
            else:
                m.packets += 1

    async def _recover(self, error: Exception | None) -> bool:
        """(Re)start the sink; False when it is given up (closed, removed from its fan-out)."""
        if error is not None:
            self.metrics.failures += 1
            restart = self.sink.restartable and self.metrics.restarts < MAX_RESTARTS
            log.error("sink %s failed (%s: %s); %s", self.name, type(error).__name__, error,
                      "restarting it" if restart else "removing it", exc_info=error)
            await self._close_sink()
            if not restart:
                return self._give_up(error)
            self.metrics.restarts += 1
        try:
            await self.sink.start()
        except Exception as e:
            log.exception("sink %s: start failed; removing it", self.name)
            self.metrics.failures += 1
            return self._give_up(e)
        self._sink_open = True
        return True

    def _give_up(self, error: Exception) -> bool:
        self.failed = True
        self.metrics.error = f"{type(error).__name__}: {error}"
        self.clear()  # wakes an offline producer waiting for room
        self._on_failed(self)
        return False


class FanOut:
    """The sinks of one stream (or of one encoder): raw sinks get items, encoding sinks share the stream's encoder
    (one encode per codec)."""

    def __init__(self, live: bool, parent: FanOut | None = None) -> None:
        self.live = live
        self.parent = parent  # an encoder's subscribers: names are unique across the whole stream
        self.outlets: list[Outlet] = []
        self.encoder: Encoder | None = None  # the encoding sinks' (streaming/encoding.py)
        self.aigc: str | None = None  # the hidden label its encoder's H.264 keyframes carry (streaming/sei.py)
        self.left: deque[Outlet] = deque(maxlen=MAX_LEFT)  # sinks removed, failed or closed: their last counters
        self._first: SinkMetrics | None = None  # the first sink attached
        self._background: set[asyncio.Task[None]] = set()

    def add(self, sink: Sink) -> None:
        """Start feeding the sink: pictures and sound, or the packets of the codecs for its spec."""
        if sink.encoding is None:
            self.attach(sink)
            return
        from streaming.encoding import Encoder  # encoding builds on this module

        if self.encoder is None:
            self.encoder = Encoder(FanOut(self.live, parent=self), on_idle=self._encoder_idle)
            self.attach(self.encoder)
        self.encoder.subscribe(sink)

    @property
    def encoders(self) -> dict[Spec, CodecEncoder]:
        """One per distinct video and audio spec among the encoding sinks."""
        return dict(self.encoder.codecs) if self.encoder is not None else {}

    def attach(self, sink: Sink, on_failed: Callable[[Outlet], None] | None = None) -> Outlet:
        """The sink as given (an encoder's subscribers take packets through this)."""

        def failed(outlet: Outlet) -> None:
            self._failed(outlet)
            if on_failed is not None:
                on_failed(outlet)

        outlet = Outlet(sink, self._unique_name(sink.name), failed)
        self.outlets.append(outlet)
        if self._first is None:
            self._first = outlet.metrics
        return outlet

    async def remove(self, sink: Sink, drain: bool = False) -> None:
        """Stop feeding the sink and close it, after what is queued for it if drain (a subscriber of an encoder
        gets the frames still in the encoder first; the encoder goes when it has no subscribers)."""
        outlet = next((o for o in self.outlets if o.sink is sink), None)
        if outlet is not None:
            self.outlets.remove(outlet)
            await outlet.aclose(drain)
            self._keep(outlet)
            return
        if self.encoder is not None:
            await self.encoder.unsubscribe(sink)

    def send(self, item: Item) -> None:
        """Live: every sink gets it at once (a full queue loses its oldest item)."""
        for outlet in self.outlets:
            outlet.offer(item)

    async def deliver(self, item: Item) -> None:
        """Offline: every sink gets it, waiting for room in each queue."""
        for outlet in list(self.outlets):
            await outlet.put(item)

    async def aclose(self, drain: bool) -> None:
        outlets, self.outlets = self.outlets, []
        await asyncio.gather(*(o.aclose(drain) for o in outlets))
        for o in outlets:
            self._keep(o)
        self.encoder = None
        await asyncio.gather(*self._background, return_exceptions=True)

    def sink_metrics(self) -> dict[str, dict[str, int | str | None]]:
        """Per sink (encoders' subscribers included), by name; sinks that left keep their last counters."""
        out = {}
        for outlet in [*self.left, *self.outlets]:
            out[outlet.name] = outlet.counters()
            if (subscribers := _subscribers(outlet)) is not None:  # an encoder's sinks: listed with the stream's
                out |= subscribers.sink_metrics()
            if (codec_metrics := getattr(outlet.sink, "codec_metrics", None)) is not None:  # and its codecs
                out |= codec_metrics()
        return out

    def metrics_of(self, sink: Sink) -> SinkMetrics | None:
        """The counters of a sink fed here now or before (an encoder's subscribers included)."""
        for outlet in [*self.outlets, *self.left]:
            if outlet.sink is sink:
                return outlet.metrics
            if (subscribers := _subscribers(outlet)) is not None and (m := subscribers.metrics_of(sink)) is not None:
                return m
        return None

    def first_frame_index(self) -> int | None:
        """The first frame that the first sink attached received (a peer maps RTP timestamps with it)."""
        return self._first.first_frame_index if self._first is not None else None

    def _keep(self, outlet: Outlet) -> None:
        if outlet not in self.left:
            self.left.append(outlet)

    def _names(self) -> set[str]:
        names = set()
        for outlet in [*self.outlets, *self.left]:
            names.add(outlet.name)
            if (subscribers := _subscribers(outlet)) is not None:
                names |= subscribers._names()
        return names

    def _unique_name(self, name: str) -> str:
        root = self
        while root.parent is not None:
            root = root.parent
        base = re.sub(r"\W", "_", name) or "sink"
        taken = root._names()
        n, unique = 1, base
        while unique in taken:
            n += 1
            unique = f"{base}_{n}"
        return unique

    def _failed(self, outlet: Outlet) -> None:
        if outlet in self.outlets:
            self.outlets.remove(outlet)
            self._keep(outlet)
        if self.encoder is outlet.sink:  # its close() (already run) closed its subscribers too
            self.encoder = None

    def _encoder_idle(self, encoder: Encoder) -> None:
        """Its last subscriber went: stop encoding for nobody."""
        if self.encoder is encoder:
            self.encoder = None
        outlet = next((o for o in self.outlets if o.sink is encoder), None)
        if outlet is not None:
            self.outlets.remove(outlet)
            self._keep(outlet)
            task = asyncio.get_running_loop().create_task(outlet.aclose(drain=False))
            self._background.add(task)
            task.add_done_callback(self._background.discard)


def _subscribers(outlet: Outlet) -> FanOut | None:
    subscribers = getattr(outlet.sink, "subscribers", None)
    return subscribers if isinstance(subscribers, FanOut) else None
