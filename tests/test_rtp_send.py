"""Sender reports with presentation time: one sender's clock runs ahead, the others' do not."""

from __future__ import annotations

import asyncio
from typing import Any

import aiortc.clock
import aiortc.rtcrtpsender
from aiortc import RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack

from streaming.patches import present_ahead


def test_only_the_shifted_sender_reports_ahead() -> None:
    async def scenario() -> tuple[float, float]:
        pc = RTCPeerConnection()
        shifted, plain = pc.addTrack(AudioStreamTrack()), pc.addTransceiver("audio").sender
        seen: dict[str, float] = {}

        def fake_run_rtp(name: str) -> Any:
            async def run(codec: Any) -> None:  # what aiortc's loop reads for every packet it sends
                await asyncio.sleep(0)
                ntp = aiortc.rtcrtpsender.clock.current_ntp_time()
                seen[name] = (ntp - aiortc.clock.current_ntp_time()) / (1 << 32)
            return run

        shifted._run_rtp, plain._run_rtp = fake_run_rtp("shifted"), fake_run_rtp("plain")
        present_ahead(shifted, 0.03)
        # aiortc starts each sender's loop in a task of its own, both from the same context.
        await asyncio.gather(asyncio.ensure_future(shifted._run_rtp(None)), asyncio.ensure_future(plain._run_rtp(None)))
        await pc.close()
        return seen["shifted"], seen["plain"]

    shifted, plain = asyncio.run(scenario())
    assert abs(shifted - 0.03) < 0.002
    assert abs(plain) < 0.002
