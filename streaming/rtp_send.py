"""Sending audio ahead of its picture without the browser holding the picture back for it.

A browser plays a peer's audio and video in sync by the RTCP sender reports: each maps the stream's
RTP timestamps to an NTP time, and samples and frames with the same NTP time are presented together.
libwebrtc puts the capture time there; aiortc puts the time the last packet was sent. The engine
sends a frame and its sound at the same moment (both due at speech time + pipeline delay), so the two
agree, until the audio goes out early: then the browser thinks the sound was captured early too, and
delays it or the picture to match. Chromium's audio path (jitter buffer ~35 ms + playout ~30 ms) is
slower than its video path (~25 ms), so the picture always waited for the sound, at its latency.

`present_ahead(sender, s)` makes one sender's reports carry the presentation time: its send clock
reads `s` seconds ahead. The audio then goes out `s` early (pacer.audio_lead_s), reaches the
browser's slower path in time, and the picture shows at its own latency: 25-35 ms less glass to glass
in Chromium (benchmarks/browser_latency.py). Receivers without A/V sync (the aiortc test peers) hear
the sound `s` early. aiortc's round-trip estimate uses its own wall clock and is unaffected.
"""

from __future__ import annotations

import contextvars
from typing import Any

import aiortc.clock
import aiortc.rtcrtpsender
from aiortc import RTCRtpSender

# The offset of the sender whose task is running: each sender sends from its own asyncio task, and a
# task keeps its own copy of the context.
_AHEAD_S: contextvars.ContextVar[float] = contextvars.ContextVar("ntp_ahead_s", default=0.0)


class _PresentationClock:
    """aiortc.clock as the senders see it: NTP time moved ahead by the running sender's offset."""

    def current_ntp_time(self) -> int:
        return aiortc.clock.current_ntp_time() + round(_AHEAD_S.get() * (1 << 32))

    def __getattr__(self, name: str) -> Any:
        return getattr(aiortc.clock, name)


def present_ahead(sender: RTCRtpSender, ahead_s: float) -> None:
    """Before the connection starts: `sender`'s RTCP reports say its media is presented ahead_s after it
    is sent (also its abs-send-time header extension, a constant offset that bandwidth estimation,
    which works on differences, does not see)."""
    if ahead_s == 0:
        return
    if not isinstance(aiortc.rtcrtpsender.clock, _PresentationClock):
        aiortc.rtcrtpsender.clock = _PresentationClock()  # type: ignore[assignment]
    run_rtp = sender._run_rtp

    async def run_rtp_ahead(codec: Any) -> None:
        _AHEAD_S.set(ahead_s)  # in this sender's own task only
        await run_rtp(codec)

    sender._run_rtp = run_rtp_ahead  # type: ignore[method-assign]
