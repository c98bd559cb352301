"""A live avatar stream for an agent framework's adapter (streaming/pipecat_service.py, streaming/livekit_avatar.py).

    TTS PCM ─► push() ─► PushedAudio ─► AvatarSession ─► Pacer ─► items(): PacedFrame, PacedAudio, SegmentEnd
               end_segment(tag) ........................................................► SegmentEnd(tag)
               interrupt(): queued audio dropped, the sound cut at once, the mouth closes with it

The frameworks' contracts are alike: audio pushed faster than real time in segments, a barge-in that drops
what is queued, and pictures plus the sound they go with coming back on a clock. This joins them to one
live stream (the pacer's 48 fps media clock) and says where each segment's sound ended, so an adapter can
tell its framework when playback finished. It needs neither framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.config import EngineConfig
from engine.director import Director
from engine.generator import Generator, PreparedAvatar
from engine.session import AvatarSession
from engine.types import FPS
from streaming.disclosure import LabelSpec, label_for
from streaming.sinks import PacedAudio, PacedFrame, Sink
from streaming.sources import PushedAudio
from streaming.stream import AvatarStream

log = logging.getLogger(__name__)

SEGMENT_POLL_S = 0.01  # how often a segment's end is looked for while one is pending (a frame is 20.8 ms)
# A segment's first audio is held until this much has come (or the segment ends). PushedAudio places an
# utterance's start where the session reads, which lags the live position by the pipeline delay less the
# render lead; a first TTS chunk shorter than that lag (40 ms at 8x real time, measured) ran dry at once and
# got four frames of silence written after it, in the middle of the word (84 ms). 0.1 s covers the lag.
START_BUFFER_S = 0.1


@dataclass(frozen=True, slots=True)
class SegmentEnd:
    """The last sound of a segment (what end_segment(tag) closed) has been handed out."""

    tag: Any = None
    end_sample: int = 0  # where its sound ended on the stream's 48 kHz clock

    def __str__(self) -> str:
        return f"SegmentEnd[{self.end_sample}]"


AgentItem = PacedFrame | PacedAudio | SegmentEnd


@dataclass
class AgentStats:
    frames: int = 0  # pictures handed out
    repeated_frames: int = 0  # ... of which the previous picture again (a window came late)
    audio_chunks: int = 0  # sound chunks handed out
    audio_muted: int = 0  # chunks cut by an interrupt (their sound was read before it)
    dropped: int = 0  # items lost because the reader of items() fell more than queue_items behind
    segments: int = 0
    interrupts: int = 0
    # At the last interrupt: the session's pipeline delay and window length (frames), which set how many pictures
    # already rendered or under way still show the mouth as it was (a busy machine raises both).
    delay_frames_at_interrupt: int = 0
    window_frames_at_interrupt: int = 0


class _Out(Sink):
    """The stream's one sink: every paced item onto the adapter's queue, in order."""

    name = "agent"
    queue_size = 64

    def __init__(self, owner: AgentAvatarStream) -> None:
        self.owner = owner

    async def on_batch(self, items: Sequence[object]) -> None:
        for item in items:
            if isinstance(item, PacedFrame | PacedAudio):
                self.owner._hand_out(item)


class AgentAvatarStream:
    """One live avatar for one agent: start(), push()/end_segment()/interrupt(), iterate items(), aclose().

    all_audio: hand out every 20 ms of sound, silence included; by default only the sound of segments (from
    their first non-silent chunk to their end), as a TTS output would, so a framework that starts and stops
    "speaking" on audio sees the avatar speak only when it does. queue_items: how far the reader of items()
    may fall behind (about 2 s at 98 items a second) before the oldest items are dropped (counted). label: the
    visible AI label's preset or spec (streaming/disclosure.py; on by default, "off" is logged).
    """

    def __init__(self, avatar: PreparedAvatar, config: EngineConfig | None = None, *, session_id: str = "agent",
                 generator: Generator | None = None, director: Director | None = None, all_audio: bool = False,
                 queue_items: int = 196, label: LabelSpec | str = "en") -> None:
        self.avatar = avatar
        self.session = AvatarSession(avatar, config or EngineConfig(), live=True, session_id=session_id,
                                     generator=generator, director=director)
        self.stream = AvatarStream(self.session)
        # The visible AI label on every picture the framework gets (streaming/disclosure.py; "off" is logged).
        self.stream.pacer.set_label(label_for(LabelSpec(label) if isinstance(label, str) else label, session_id))
        self.pushed = PushedAudio()
        self.stats = AgentStats()
        self.all_audio = all_audio
        self._queue: deque[AgentItem] = deque()
        self._queue_items = queue_items
        self._ready = asyncio.Event()
        self._pending: deque[tuple[int, int, Any]] = deque()  # (samples_in at the end, samples_padded then, tag)
        self._ends: deque[SegmentEnd] = deque()  # located on the clock, waiting for the sound to get there
        self._speaking = False
        self._muted_until = 0  # sound before this sample was read before an interrupt: never handed out
        self._heard_until = 0  # end of the last sound chunk handed out (or muted)
        self._skipped = 0  # samples pushed that interrupts dropped before they were fed
        self._start: list[tuple[np.ndarray, int, int]] = []  # a segment's first audio, held (START_BUFFER_S)
        self._start_s = 0.0
        self._in_segment = False  # audio went to PushedAudio since the last end_segment() or interrupt()
        self._watcher: asyncio.Task[None] | None = None
        self._started = False
        self.closed = False

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the pictures."""
        return self.avatar.size

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.stream.add_sink(_Out(self))
        await self.stream.start()
        self.stream.add_source(self.pushed)
        self._watcher = asyncio.create_task(self._locate_ends(), name=f"{self.session.id}:segment-ends")

    def push(self, pcm: np.ndarray, sample_rate_hz: int, channels: int = 1) -> None:
        """int16 or float32 PCM, interleaved; any rate; faster than real time is fine (it plays on the clock)."""
        if self._in_segment:
            self.pushed.push(pcm, sample_rate_hz, channels)
            return
        self._start.append((pcm, sample_rate_hz, channels))
        self._start_s += len(pcm) / channels / sample_rate_hz
        if self._start_s >= START_BUFFER_S:
            self._release_start()

    def _release_start(self) -> None:
        for pcm, rate, channels in self._start:
            self.pushed.push(pcm, rate, channels)
        self._in_segment = bool(self._start) or self._in_segment
        self._start, self._start_s = [], 0.0

    def end_segment(self, tag: Any = None) -> None:
        """The segment's audio is all pushed: items() says SegmentEnd(tag) right after its last sound."""
        self._release_start()
        self._in_segment = False
        self.pushed.flush()
        self.stats.segments += 1
        self._pending.append((self.pushed.stats.samples_in, self.pushed.stats.samples_padded, tag))

    def interrupt(self) -> None:
        """Barge-in: drop every queued sample and pending segment end; the sound stops at once (what the
        session already read is muted) and the mouth closes with what it had read, about the pipeline delay
        plus 60 ms later (5-7 frames measured); then the avatar idles."""
        self.stats.interrupts += 1
        clock = self.session.clock
        self.stats.delay_frames_at_interrupt = 0 if clock is None else round(clock.delay_s * FPS)
        self.stats.window_frames_at_interrupt = self.session.window_frames
        self._start, self._start_s, self._in_segment = [], 0.0, False
        self._skipped = self.pushed.stats.samples_in - self.pushed.stats.samples_fed
        self.pushed.interrupt()
        self._pending.clear()
        self._ends.clear()
        self._speaking = False
        ring = self.session.ring
        self._muted_until = max(ring.write_cursor, ring.read_cursor, self._heard_until)
        # Sound already queued for a reader that lags is cut too; the pictures stay (the clock goes on).
        kept = [item for item in self._queue if isinstance(item, PacedFrame)]
        self.stats.audio_muted += len(self._queue) - len(kept)
        self._queue = deque(kept)

    async def items(self) -> AsyncIterator[AgentItem]:
        """Pictures (48 a second, on the clock), their sound and segment ends, in order, until aclose()."""
        while not self.closed:
            while self._queue:
                yield self._queue.popleft()
            self._ready.clear()
            await self._ready.wait()

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._ready.set()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self.stream.close()

    # ---- inside ------------------------------------------------------------------------------
    def _put(self, item: AgentItem) -> None:
        if len(self._queue) >= self._queue_items:
            self._queue.popleft()
            self.stats.dropped += 1
        self._queue.append(item)
        self._ready.set()

    def _hand_out(self, item: PacedFrame | PacedAudio) -> None:
        if isinstance(item, PacedFrame):
            self.stats.frames += 1
            self.stats.repeated_frames += item.repeated
            self._put(item)
            return
        end = item.start_sample + len(item.samples)
        self._heard_until = end
        if end <= self._muted_until:
            self.stats.audio_muted += 1
        else:
            if item.start_sample < self._muted_until:  # straddles the cut: the part before it is silence
                samples = item.samples.copy()
                samples[: self._muted_until - item.start_sample] = 0
                item = PacedAudio(item.start_sample, samples, item.due_t_s)
            voiced = bool(np.any(item.samples))
            if not self._speaking and voiced:
                self._speaking = True
            elif self._speaking and not voiced and self._played_out(item):
                self._speaking = False  # a segment never ended (no end_segment): its sound is over all the same
            if self._speaking or self.all_audio:
                self.stats.audio_chunks += 1
                self._put(item)
        self._end_segments()

    def _played_out(self, chunk: PacedAudio) -> bool:
        """Everything pushed has been heard and no segment end is on its way."""
        return (not self._pending and not self._ends and not self._start and self.pushed.backlog_samples == 0
                and chunk.start_sample >= self.session.ring.write_cursor)

    def _end_segments(self) -> None:
        while self._ends and self._ends[0].end_sample <= self._heard_until:
            self._put(self._ends.popleft())
            self._speaking = False

    async def _locate_ends(self) -> None:
        """Find where each ended segment's last sample landed on the clock: the ring's write position when
        PushedAudio has fed it, less what was written after it (later audio, the padding that ends it)."""
        stats, ring = self.pushed.stats, self.session.ring
        while True:
            await asyncio.sleep(SEGMENT_POLL_S)
            while self._pending and stats.samples_fed + self._skipped >= self._pending[0][0]:
                target, padded, tag = self._pending.popleft()
                after = stats.samples_fed + self._skipped - target + stats.samples_padded - padded
                self._ends.append(SegmentEnd(tag, max(0, ring.write_cursor - after)))
            self._end_segments()
