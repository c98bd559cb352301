"""Sinks: where a stream's paced pictures and sound go (a WebRTC peer, an MP4 file, a test's counter).

The pacer hands every sink the same items in the same order, each through the sink's own small
queue and task (streaming/fanout.py): a slow sink loses its own oldest items, a failing one is
dropped (or restarted), and neither holds up the others or the clock. A new sink overrides what it
needs:

    class FrameCounter(Sink):
        frames = 0

        async def on_video(self, frame: PacedFrame) -> None:
            self.frames += 1

A sink that sets `encoding` gets encoded packets (on_packet) instead of pictures and sound: sinks
that ask for the same codec and settings share one encoder (streaming/encoding.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import av
import cv2
import numpy as np

if TYPE_CHECKING:
    from streaming.encoding import EncodedPacket, EncodingSpec


@dataclass(frozen=True, slots=True)
class PacedFrame:
    """One frame slot of the stream, handed out at its due time (live) or as soon as rendered (offline)."""

    frame_index: int
    picture: np.ndarray  # (H * 3 // 2, W) uint8 planar I420 when the generator made one, else (H, W, 3) RGB
    due_t_s: float | None  # time.monotonic() at which it was due; None offline
    repeated: bool = False  # not rendered in time: the previous picture again

    @property
    def is_i420(self) -> bool:
        return self.picture.ndim == 2

    def __str__(self) -> str:
        return f"PacedFrame[{self.frame_index}]{' repeated' if self.repeated else ''}"


@dataclass(frozen=True, slots=True)
class PacedAudio:
    """A stretch of the stream's sound: 960 samples (20 ms) live; the last one of an offline stream is shorter."""

    start_sample: int  # 48 kHz samples since frame 0 (frame k starts at k * 1000)
    samples: np.ndarray  # (n,) float32 mono 48 kHz
    due_t_s: float | None  # when its first sample is due (the pacer sends it audio_lead_s earlier); None offline

    def __str__(self) -> str:
        return f"PacedAudio[{self.start_sample}:{self.start_sample + len(self.samples)}]"


class Sink:
    """Receives a stream's items in order, one at a time, in its own task. Override what you need."""

    name: str = "sink"  # for logs and metrics; made unique per stream
    queue_size: int = 16  # items waiting for this sink; live, the oldest are dropped beyond it (~100 items/s)
    restartable: bool = False  # after an exception: close() then start() again, instead of being removed
    encoding: EncodingSpec | None = None  # set to receive encoded packets (on_packet) for this spec instead

    async def start(self) -> None:
        """Before the first item (and again after a restart)."""

    async def on_video(self, frame: PacedFrame) -> None:
        """Each frame slot, in frame order (live: counted and dropped, oldest first, when it falls behind)."""

    async def on_audio(self, chunk: PacedAudio) -> None:
        """Each stretch of sound, contiguous (until items are dropped)."""

    async def on_packet(self, packet: EncodedPacket) -> None:
        """Each encoded packet, when `encoding` is set: decode order, timestamps from this sink's first keyframe."""

    async def on_batch(self, items: Sequence[PacedFrame | PacedAudio | EncodedPacket]) -> None:
        """What queued up since the last call, in order. Hands each to the methods above; override to take them
        together (an encoder encodes a batch in one call off the event loop)."""
        for item in items:
            if isinstance(item, PacedFrame):
                await self.on_video(item)
            elif isinstance(item, PacedAudio):
                await self.on_audio(item)
            else:
                await self.on_packet(item)

    async def close(self) -> None:
        """After the last item, or when removed or failed: release what start() took."""

    def info(self) -> dict[str, int | float | str | None]:
        """The sink's own counters, listed with its queue's in /api/sessions and /metrics."""
        return {}


def to_video_frame(picture: np.ndarray) -> av.VideoFrame:
    """A paced picture as a yuv420p frame (what encoders take), without a pts."""
    if picture.ndim == 3:  # RGB (the still portrait before the first window): cv2 beats swscale ~4x
        picture = cv2.cvtColor(picture, cv2.COLOR_RGB2YUV_I420)
    return av.VideoFrame.from_ndarray(picture, format="yuv420p")
