"""The library patches still fit the installed aiortc and aioice (streaming/patches.py).

Each test lists what one patch relies on: the names it replaces, their signatures, the private
attributes it reads or swaps, and that the library still looks them up when it runs (a patched name
nobody reads any more would silently do nothing). After an upgrade a failure names the patch, what is
gone, and the installed and checked versions. Where it is cheap the patch is also applied and seen
to work; what it changed process-wide is put back afterwards.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import aioice.ice
import aiortc.clock
import aiortc.codecs.h264
import aiortc.codecs.vpx
import aiortc.rtcrtpsender
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterBuffer, JitterFrame

from streaming import patches
from streaming.rtp_receive import PromptJitterBuffer

RECEIVER_BUFFER = "_RTCRtpReceiver__jitter_buffer"


def fits(patch: str, checks: dict[str, bool]) -> None:
    """Fail with every broken assumption of `patch` at once."""
    broken = [relies_on for relies_on, ok in checks.items() if not ok]
    if broken:
        installed = ", ".join(f"{name} {version(name)}" for name in patches.CHECKED_VERSIONS)
        checked = ", ".join(f"{name} {v}" for name, v in patches.CHECKED_VERSIONS.items())
        pytest.fail(f"streaming.patches.{patch} no longer fits the installed {installed} (written against "
                    f"{checked}); it relies on:\n  " + "\n  ".join(broken), pytrace=False)


def params(fn: Callable[..., Any] | None) -> list[str]:
    return list(inspect.signature(fn).parameters) if callable(fn) else []


def looks_up(fn: Any, *names: str) -> bool:
    """Whether fn's code looks these names up (as globals or attributes) each time it runs."""
    code = getattr(fn, "__code__", None)
    return code is not None and set(names) <= set(code.co_names)


async def test_use_ice_addresses_fits_aioice(monkeypatch: pytest.MonkeyPatch) -> None:
    fits("use_ice_addresses", {
        "aioice.ice.get_host_addresses(use_ipv4, use_ipv6)":
            params(getattr(aioice.ice, "get_host_addresses", None)) == ["use_ipv4", "use_ipv6"],
        "Connection.gather_candidates calling get_host_addresses from aioice.ice's globals":
            looks_up(aioice.ice.Connection.gather_candidates, "get_host_addresses"),
    })
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)  # restored afterwards
    patches.use_ice_addresses(["127.0.0.1"])
    connection = aioice.ice.Connection(ice_controlling=True)  # no STUN server: only host candidates
    await connection.gather_candidates()
    hosts = {c.host for c in connection.local_candidates}
    await connection.close()
    assert hosts == {"127.0.0.1"}, "aioice gathered candidates on addresses it was not given"


def test_expire_consent_sooner_fits_aioice(monkeypatch: pytest.MonkeyPatch) -> None:
    fits("expire_consent_sooner", {
        "aioice.ice.CONSENT_FAILURES, an int": isinstance(getattr(aioice.ice, "CONSENT_FAILURES", None), int),
        "Connection.query_consent reading CONSENT_FAILURES from aioice.ice's globals each time it runs":
            looks_up(aioice.ice.Connection.query_consent, "CONSENT_FAILURES"),
    })
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", aioice.ice.CONSENT_FAILURES)  # restored afterwards
    patches.expire_consent_sooner()
    assert aioice.ice.CONSENT_FAILURES == patches.CONSENT_FAILURES < 6


def test_use_fixed_bitrate_fits_aiortc(monkeypatch: pytest.MonkeyPatch) -> None:
    encoders = {aiortc.codecs.vpx: "Vp8Encoder", aiortc.codecs.h264: "H264Encoder"}
    checks: dict[str, bool] = {}
    for module, name in encoders.items():
        encoder = getattr(module, name, None)
        for constant in ("DEFAULT_BITRATE", "MIN_BITRATE", "MAX_BITRATE"):
            checks[f"{module.__name__}.{constant}, an int"] = isinstance(getattr(module, constant, None), int)
        checks[f"{module.__name__}.{name}.__init__ starting at DEFAULT_BITRATE"] = looks_up(
            getattr(encoder, "__init__", None), "DEFAULT_BITRATE")
        setter = getattr(getattr(encoder, "target_bitrate", None), "fset", None)
        checks[f"{module.__name__}.{name}.target_bitrate's setter clamping to MIN_BITRATE..MAX_BITRATE"] = looks_up(
            setter, "MIN_BITRATE", "MAX_BITRATE")
    fits("use_fixed_bitrate", checks)

    for module in encoders:
        for constant in ("DEFAULT_BITRATE", "MIN_BITRATE", "MAX_BITRATE"):
            monkeypatch.setattr(module, constant, getattr(module, constant))  # restored afterwards
    patches.use_fixed_bitrate(1_234_000)
    for module, name in encoders.items():
        encoder = getattr(module, name)()
        encoder.target_bitrate = 5_000_000  # what a congestion-control estimate would ask for
        assert encoder.target_bitrate == 1_234_000, f"{name} left the pinned bitrate"


async def test_release_frames_promptly_fits_aiortc() -> None:
    buffer = JitterBuffer(capacity=16)
    fits("release_frames_promptly (and PromptJitterBuffer, which subclasses aiortc's buffer)", {
        "JitterBuffer(capacity, ..., is_video)": {"capacity", "is_video"} <= set(params(JitterBuffer)),
        "JitterBuffer.add handing over to self._remove_frame(sequence_number)":
            looks_up(JitterBuffer.add, "_remove_frame")
            and params(getattr(JitterBuffer, "_remove_frame", None)) == ["self", "sequence_number"],
        "JitterBuffer.remove(count)": params(getattr(JitterBuffer, "remove", None)) == ["self", "count"],
        "JitterBuffer's _packets, _origin, _capacity, _is_video and capacity":
            all(hasattr(buffer, a) for a in ("_packets", "_origin", "_capacity", "_is_video", "capacity")),
        "JitterFrame(data, timestamp)": params(JitterFrame) == ["data", "timestamp"],
        f"RTCRtpReceiver._handle_rtp_packet feeding self.{RECEIVER_BUFFER} packets carrying ._data":
            looks_up(getattr(RTCRtpReceiver, "_handle_rtp_packet", None), RECEIVER_BUFFER, "_data", "add"),
    })
    pc = RTCPeerConnection()
    try:
        for kind in ("audio", "video"):
            receiver = pc.addTransceiver(kind).receiver
            stock = getattr(receiver, RECEIVER_BUFFER, None)
            fits("release_frames_promptly", {f"a {kind} RTCRtpReceiver's {RECEIVER_BUFFER}, a JitterBuffer":
                                             patches.release_frames_promptly(receiver)})
            prompt = getattr(receiver, RECEIVER_BUFFER)
            assert isinstance(prompt, PromptJitterBuffer)
            assert (prompt.capacity, prompt._is_video) == (stock.capacity, kind == "video")
    finally:
        await pc.close()


def test_present_ahead_fits_aiortc() -> None:
    run_rtp = getattr(RTCRtpSender, "_run_rtp", None)
    fits("present_ahead", {
        "aiortc.clock.current_ntp_time()": params(getattr(aiortc.clock, "current_ntp_time", None)) == [],
        "aiortc.rtcrtpsender.clock, the module senders read the time from": hasattr(aiortc.rtcrtpsender, "clock"),
        "RTCRtpSender._run_rtp(codec), a coroutine function":
            inspect.iscoroutinefunction(run_rtp) and params(run_rtp) == ["self", "codec"],
        "RTCRtpSender._run_rtp reading clock.current_ntp_time() for its reports and abs-send-time":
            looks_up(run_rtp, "clock", "current_ntp_time"),
        "RTCRtpSender.send starting self._run_rtp in a task of its own (asyncio.ensure_future)":
            looks_up(getattr(RTCRtpSender, "send", None), "_run_rtp", "ensure_future"),
    })


def test_on_keyframe_request_fits_aiortc() -> None:
    handler = getattr(RTCRtpSender, "_handle_rtcp_packet", None)
    fits("on_keyframe_request", {
        "RTCRtpSender._send_keyframe()": params(getattr(RTCRtpSender, "_send_keyframe", None)) == ["self"],
        "RTCRtpSender._handle_rtcp_packet calling self._send_keyframe on PLI/FIR": looks_up(handler, "_send_keyframe"),
        "RTCRtpSender._next_encoded_frame packing an av.Packet with the encoder's pack()": looks_up(
            getattr(RTCRtpSender, "_next_encoded_frame", None), "pack"),
    })


def test_label_h264_keyframes_fits_aiortc() -> None:
    encoder = aiortc.codecs.h264.H264Encoder
    fits("label_h264_keyframes", {
        "H264Encoder._encode_frame(self, frame, force_keyframe), a generator of NAL units":
            params(getattr(encoder, "_encode_frame", None))[:3] == ["self", "frame", "force_keyframe"],
        "H264Encoder.encode (and pack) calling self._encode_frame":
            looks_up(encoder.encode, "_encode_frame") or looks_up(getattr(encoder, "pack", None), "_encode_frame"),
    })


async def test_log_orphaned_connects_fits_aiortc(caplog: pytest.LogCaptureFixture) -> None:
    """aiortc's connect task, closed under it (a fuzzed offer beside a live stream once left an InvalidStateError
    traceback in a CI run's server log), is logged as one line; any other task's unretrieved error still reaches the
    loop's own handler."""
    import asyncio

    from aiortc.exceptions import InvalidStateError

    pc = RTCPeerConnection()
    connect = pc._RTCPeerConnection__connect()  # type: ignore[attr-defined]
    assert connect.__qualname__ == patches.ORPHANED_CONNECT, f"aiortc {version('aiortc')} renamed its connect task"
    loop = asyncio.get_running_loop()
    passed: list[dict] = []
    loop.set_exception_handler(lambda _, context: passed.append(context))
    patches.log_orphaned_connects(loop)

    async def other() -> None:
        return None

    try:
        orphan, unrelated = asyncio.ensure_future(connect), asyncio.ensure_future(other())
        await asyncio.gather(orphan, unrelated)
        with caplog.at_level("INFO", logger="streaming.patches"):
            loop.call_exception_handler({"message": "Task exception was never retrieved", "future": orphan,
                                         "exception": InvalidStateError("RTCIceTransport is closed")})
        loop.call_exception_handler({"message": "Task exception was never retrieved", "future": unrelated,
                                     "exception": RuntimeError("something else")})
    finally:
        loop.set_exception_handler(None)
        await pc.close()
    assert [r.getMessage() for r in caplog.records if r.name == "streaming.patches"] == [
        "a peer connection closed while connecting: InvalidStateError: RTCIceTransport is closed"]
    assert [c["future"] for c in passed] == [unrelated]
