"""Every change this project makes to aiortc and aioice, in one place.

Written against aiortc 1.16.0 and aioice 0.13.0 (CHECKED_VERSIONS). None of these libraries offers a
setting for what is changed here, so each patch replaces a module attribute or a private one;
tests/test_patches.py checks that everything they rely on is still there and fails, naming the patch
and the installed version, when an upgrade moves it.

| patch                     | what it replaces                                          | scope          |
|---------------------------|-----------------------------------------------------------|----------------|
| use_ice_addresses         | aioice.ice.get_host_addresses                             | process        |
| expire_consent_sooner     | aioice.ice.CONSENT_FAILURES                               | process        |
| use_fixed_bitrate         | aiortc.codecs.vpx / h264 DEFAULT_, MIN_, MAX_BITRATE      | process        |
| release_frames_promptly   | RTCRtpReceiver's private jitter buffer                    | one receiver   |
| present_ahead             | aiortc.rtcrtpsender.clock (a pass-through for senders not | one sender     |
|                           | shifted) and RTCRtpSender._run_rtp                        |                |
| on_keyframe_request       | RTCRtpSender._send_keyframe                               | one sender     |
| label_h264_keyframes      | aiortc.codecs.h264.H264Encoder._encode_frame              | process        |
| log_orphaned_connects     | the event loop's exception handler, for aiortc's own      | event loop     |
|                           | RTCPeerConnection.__connect task                          |                |
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import Any

import aioice.ice
import aiortc.clock
import aiortc.codecs.h264
import aiortc.codecs.vpx
import aiortc.rtcrtpsender
from aiortc import RTCRtpSender
from aiortc.jitterbuffer import JitterBuffer

from streaming.rtp_receive import PromptJitterBuffer
from streaming.sei import KeyframeSei

log = logging.getLogger(__name__)

CHECKED_VERSIONS = {"aiortc": "1.16.0", "aioice": "0.13.0"}


def use_ice_addresses(addresses: list[str]) -> None:
    """Gather ICE host candidates only on these addresses.

    aioice leaves 127.0.0.1 out of its host candidates, so on a loopback-only machine ICE would
    never connect; and a server bound to one address should not offer the others.
    """
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addresses)


# Consent checks missed in a row before a peer is dropped (aioice: 6). Each is sent 4-6 s after the last and fails
# 0.5 s later, and the wait in progress when the peer vanished is partly over: 6 take 23-39 s, so a vanished viewer
# now and then held its session past the 35 s that issue 15 allows (34.1 s seen under load); 5 take 19-33 s, about
# RFC 7675's 30 s consent lifetime.
CONSENT_FAILURES = 5


def expire_consent_sooner(failures: int = CONSENT_FAILURES) -> None:
    """Drop a peer that stopped answering ICE consent checks after `failures` missed checks in a row."""
    aioice.ice.CONSENT_FAILURES = failures


# The coroutine aiortc starts with asyncio.ensure_future when both descriptions are set, and never awaits.
ORPHANED_CONNECT = "RTCPeerConnection.__connect"


def log_orphaned_connects(loop: asyncio.AbstractEventLoop) -> None:
    """A peer connection closed while aiortc's own connect task was still starting ICE (a fuzzed or abandoned offer,
    a client gone at once) leaves that task's error unretrieved: asyncio then logs "Task exception was never retrieved"
    with a traceback, whenever the task is collected. Logged here as the one line it is; every other unretrieved
    error still goes to the loop's handler as before."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        task, error = context.get("future"), context.get("exception")
        coro = task.get_coro() if isinstance(task, asyncio.Task) else None
        if error is not None and getattr(coro, "__qualname__", "") == ORPHANED_CONNECT:
            log.info("a peer connection closed while connecting: %s: %s", type(error).__name__, error)
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def label_h264_keyframes() -> None:
    """aiortc's own H.264 encoder (an /offer peer's, which encodes per peer) puts the hidden label a frame carries
    (its opaque: a streaming.sei.KeyframeSei) before each IDR slice, as the shared encoder does for WHEP, RTMP and
    recordings. Frames without one are encoded as before. Idempotent."""
    encoder = aiortc.codecs.h264.H264Encoder
    original = encoder._encode_frame
    if getattr(original, "labels_keyframes", False):
        return

    def _encode_frame(self: Any, frame: Any, force_keyframe: bool) -> Any:
        label = frame.opaque if isinstance(frame.opaque, KeyframeSei) else None
        for nal in original(self, frame, force_keyframe):  # NAL units without start codes
            if label is not None and nal and nal[0] & 0x1F == 5:
                yield label.nal
                label = None
            yield nal

    _encode_frame.labels_keyframes = True  # type: ignore[attr-defined]
    encoder._encode_frame = _encode_frame  # type: ignore[method-assign]


def use_fixed_bitrate(bps: int) -> None:
    """Pin the encoders' bitrate: aiortc rebuilds the encoder (and sends a keyframe) each time its
    estimate moves by 10%, which churned 9-12 keyframes per 20 s on loopback (media-stack.md).
    Encoders read these when they are built and whenever the estimate moves."""
    for codec in (aiortc.codecs.vpx, aiortc.codecs.h264):
        codec.DEFAULT_BITRATE = codec.MIN_BITRATE = codec.MAX_BITRATE = bps


def release_frames_promptly(receiver: object) -> bool:
    """Give an aiortc RTCRtpReceiver the prompt buffer (streaming/rtp_receive.py says why), before media
    flows (from the "track" event).

    aiortc has no setting for this: it swaps the receiver's private buffer, and logs and leaves
    aiortc's own if a future aiortc renames it."""
    attr = "_RTCRtpReceiver__jitter_buffer"
    old = getattr(receiver, attr, None)
    if not isinstance(old, JitterBuffer) or not hasattr(old, "_is_video"):
        log.warning("aiortc's jitter buffer has changed; received frames keep aiortc's own timing")
        return False
    setattr(receiver, attr, PromptJitterBuffer(capacity=old.capacity, is_video=old._is_video))
    return True


# Sending audio ahead of its picture without the browser holding the picture back for it.
#
# A browser plays a peer's audio and video in sync by the RTCP sender reports: each maps the stream's
# RTP timestamps to an NTP time, and samples and frames with the same NTP time are presented together.
# libwebrtc puts the capture time there; aiortc puts the time the last packet was sent. The engine
# sends a frame and its sound at the same moment (both due at speech time + pipeline delay), so the two
# agree, until the audio goes out early: then the browser thinks the sound was captured early too, and
# delays it or the picture to match. Chromium's audio path (jitter buffer ~35 ms + playout ~30 ms) is
# slower than its video path (~25 ms), so the picture always waited for the sound, at its latency.
#
# present_ahead(sender, s) makes one sender's reports carry the presentation time: its send clock
# reads s seconds ahead. The audio then goes out s early (pacer.audio_lead_s), reaches the browser's
# slower path in time, and the picture shows at its own latency: 25-35 ms less glass to glass in
# Chromium (benchmarks/browser_latency.py). Receivers without A/V sync (the aiortc test peers) hear
# the sound s early. aiortc's round-trip estimate uses its own wall clock and is unaffected.

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


def on_keyframe_request(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """A receiver's keyframe requests (RTCP PLI and FIR) to `sender` call request(). aiortc only sets a flag
    that its own encoder reads, so a sender of pre-encoded packets (streaming/whep.py) would never pass one
    on to the encoder that made them."""
    sender._send_keyframe = request  # type: ignore[method-assign]
