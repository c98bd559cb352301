"""Receiving RTP without aiortc's extra wait: a frame goes to the decoder as soon as it is complete.

aiortc's jitter buffer calls a frame complete only when the first packet of the next one arrives,
and holds 4 audio packets before the first: every microphone packet waits 20 ms for its successor
(80 ms at the start), every received video frame one frame interval. Browsers finish a video frame
on its RTP marker bit and decode audio packets as they come. The engine's ring buffer absorbs
jitter on the media clock (engine/audio/anchor.py), so for it that wait is pure delay; the
benchmark peers use the same buffer so that they measure what a browser would. It goes into aiortc's
receivers by a patch (streaming/patches.py, release_frames_promptly).
"""

from __future__ import annotations

from aiortc.jitterbuffer import JitterBuffer, JitterFrame

AUDIO_HOLE_PACKETS = 2  # audio packets waiting behind a missing one before it is given up as lost


class PromptJitterBuffer(JitterBuffer):
    """aiortc's reordering buffer, with frames released when their last packet is in: an audio
    packet is a whole frame; a video frame ends with the packet carrying the marker bit
    (RFC 7741 for VP8, RFC 6184 for H.264). Frames whose marker packet was lost are still released
    by aiortc's rule, when the next frame begins. A lost audio packet holds the ones behind it only
    until AUDIO_HOLE_PACKETS wait (aiortc: until its 16-packet buffer overflows, 320 ms); then the
    newest goes on and the older ones are dropped with the hole: the buffer releases one frame per
    arriving packet, so releasing them all would leave every later packet a packet late."""

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        if not self._is_video and self._packets[self._origin % self._capacity] is None:
            waiting = [i for i in range(self._capacity) if self._packets[(self._origin + i) % self._capacity]]
            if len(waiting) < AUDIO_HOLE_PACKETS:
                return None
            self.remove(waiting[-1])  # the ingest's pts check turns what was dropped into silence
        packets = []
        for count in range(self._capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None:
                return None
            if packets and packet.timestamp != packets[0].timestamp:
                break
            packets.append(packet)
            if not self._is_video or packet.marker:
                break
        else:
            return None
        frame = JitterFrame(data=b"".join(p._data for p in packets), timestamp=packets[0].timestamp)
        self.remove(len(packets))
        return frame

