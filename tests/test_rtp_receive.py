"""The prompt jitter buffer: frames leave as soon as they are complete, in order."""

from __future__ import annotations

from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from streaming.rtp_receive import PromptJitterBuffer


def packet(seq: int, timestamp: int, marker: bool = False) -> RtpPacket:
    p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=timestamp, marker=marker)
    p._data = bytes([seq % 256])  # type: ignore[attr-defined]  # what aiortc's depayloader leaves there
    return p


def test_a_video_frame_leaves_with_its_marker_packet_not_with_the_next_frame() -> None:
    prompt, stock = PromptJitterBuffer(128, is_video=True), JitterBuffer(128, is_video=True)
    for buf in (prompt, stock):
        assert buf.add(packet(10, 1000))[1] is None  # the frame's first packet: not complete yet
    frame = prompt.add(packet(11, 1000, marker=True))[1]
    assert frame is not None and frame.timestamp == 1000 and frame.data == bytes([10, 11])
    assert stock.add(packet(11, 1000, marker=True))[1] is None  # aiortc waits for the next frame


def test_audio_packets_leave_at_once_and_a_hole_is_given_up_after_two() -> None:
    buf = PromptJitterBuffer(16)
    assert buf.add(packet(5, 0))[1].data == bytes([5])
    assert buf.add(packet(7, 1920))[1] is None  # 6 is missing: 7 waits for it ...
    late = buf.add(packet(8, 2880))[1]  # ... until two wait: the hole and 7 are dropped, 8 goes on
    assert late is not None and late.data == bytes([8])
    assert buf.add(packet(9, 3840))[1].data == bytes([9])  # and nothing stays a packet behind
    assert buf.add(packet(6, 960))[1] is None  # the lost one, arriving after all, is too late
