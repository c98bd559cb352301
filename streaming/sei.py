"""The hidden AI label in the H.264 stream itself: a user_data_unregistered SEI message (ITU-T H.264 D.1.7, payload
type 5) in every IDR access unit, so the label survives remuxing and reaches a WebRTC viewer, an RTMP ingest and a
file alike. Its payload is our own UUID, then the AIGC JSON of streaming/aigc.py as UTF-8:

    UUID  cae13c39-db1f-5fa6-b7ee-d0a994a2d6a2   (uuid5(NAMESPACE_URL, "urn:avatar-engine:aigc-label"), fixed)
    JSON  {"Label":"1","ContentProducer":"avatar-engine","ProduceID":...}

ProduceID is the stream's id (a live stream's outputs share one encode: its RTMP pushes' onMetaData says the same; a
recording's container metadata names the file instead), or for `render` the file's own. It is put into the shared
encoder's packets (streaming/encoding.py: WHEP viewers, RTMP pushes, recordings, `render`; a keyframe costs one bytes
copy, the NAL unit is built once per stream) and, for an /offer peer taking H.264, by aiortc's own encoder
(streaming.patches.label_h264_keyframes), before the access unit's first slice: after any SPS/PPS or x264's own
SEI, as the standard orders them. Read it back with
`python -m streaming.sei FILE|URL` (each keyframe's time and JSON), read_aigc_sei(a demuxed packet's bytes), from a
decoded frame's side data (PyAV: frame.side_data of Type.SEI_UNREGISTERED: the UUID, then the JSON; ffprobe
-show_frames lists it as "H.26[45] User Data Unregistered SEI message"), or byte by byte with
`ffmpeg -i FILE -c copy -bsf:v trace_headers -f null -`.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from dataclasses import dataclass

AIGC_SEI_UUID = uuid.UUID("cae13c39-db1f-5fa6-b7ee-d0a994a2d6a2")
USER_DATA_UNREGISTERED = 5
NAL_SEI = 6
START_CODE = b"\x00\x00\x00\x01"
_EMULATED = re.compile(b"\x00\x00(?=[\x00-\x03])")  # two zeros before 0-3: a start code to a parser
_PREVENTION = re.compile(b"\x00\x00\x03")


def escape(rbsp: bytes) -> bytes:
    """Emulation prevention (H.264 7.4.1): 00 00 0x (x <= 3) in a NAL unit's payload becomes 00 00 03 0x."""
    return _EMULATED.sub(b"\x00\x00\x03", rbsp)


def unescape(ebsp: bytes) -> bytes:
    return _PREVENTION.sub(b"\x00\x00", ebsp)


def sei_nal(text: str, uuid_: uuid.UUID = AIGC_SEI_UUID) -> bytes:
    """One SEI NAL unit (no start code, no length): a user_data_unregistered message of uuid_ and text."""
    payload = uuid_.bytes + text.encode()
    size, header = len(payload), bytearray([USER_DATA_UNREGISTERED])
    while size >= 255:  # payloadSize: 0xFF per 255, then the rest
        header.append(255)
        size -= 255
    header.append(size)
    return bytes([NAL_SEI]) + escape(bytes(header) + payload + b"\x80")  # nal_ref_idc 0; rbsp trailing bits


def length_size(extradata: bytes | None) -> int:
    """How the codec frames its NAL units: 0 for Annex B start codes (libx264's packets, global header or not), else
    the byte count of an avcC's length prefix (an encoder that writes its extradata as avcC frames packets so)."""
    if extradata and extradata[0] == 1 and len(extradata) > 4:
        return (extradata[4] & 3) + 1
    return 0


def nal_units(data: bytes, prefix: int = 0) -> list[tuple[int, int]]:
    """(start, end) of each NAL unit in an access unit, its header byte at start: after a start code (prefix 0) or a
    prefix-byte big-endian length."""
    units: list[tuple[int, int]] = []
    if prefix:
        i = 0
        while i + prefix <= len(data):
            n = int.from_bytes(data[i:i + prefix], "big")
            units.append((i + prefix, min(i + prefix + n, len(data))))
            i += prefix + n
        return units
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        start = i + 3
        i = data.find(b"\x00\x00\x01", start)
        end = len(data) if i == -1 else i - (1 if data[i - 1] == 0 else 0)  # a 4-byte start code's leading zero
        units.append((start, end))
    return units


def insert_before_slice(data: bytes, framed_nal: bytes, prefix: int = 0) -> bytes:
    """The access unit with framed_nal (start code or length included) before its first slice (NAL types 1-5)."""
    for start, _ in nal_units(data, prefix):
        if start < len(data) and 1 <= data[start] & 0x1F <= 5:
            at = start - (prefix or (4 if start >= 4 and data[start - 4] == 0 else 3))
            return data[:at] + framed_nal + data[at:]
    return data


@dataclass(frozen=True)
class KeyframeSei:
    """An SEI NAL unit (no framing) that a video frame carries, as its opaque, to aiortc's own H.264 encoder (an /offer
    peer's): streaming.patches.label_h264_keyframes puts it before each IDR slice that frame becomes."""

    nal: bytes

    @classmethod
    def of(cls, text: str) -> KeyframeSei:
        return cls(sei_nal(text))


class SeiLabel:
    """The label's SEI NAL unit for one encode, framed as its packets are, built once; insert() adds it to an access
    unit."""

    def __init__(self, text: str, extradata: bytes | None = None) -> None:
        self.prefix = length_size(extradata)
        nal = sei_nal(text)
        self.framed = (len(nal).to_bytes(self.prefix, "big") if self.prefix else START_CODE) + nal

    def insert(self, access_unit: bytes) -> bytes:
        return insert_before_slice(access_unit, self.framed, self.prefix)


def user_data(data: bytes, prefix: int = 0, uuid_: uuid.UUID = AIGC_SEI_UUID) -> list[bytes]:
    """The payloads (after the UUID) of the user_data_unregistered messages of uuid_ in an access unit."""
    found = []
    for start, end in nal_units(data, prefix):
        if start >= end or data[start] & 0x1F != NAL_SEI:
            continue
        rbsp, i = unescape(data[start + 1:end]), 0
        try:
            while rbsp[i] != 0x80:  # sei_message()s until the trailing bits
                kind, i = _ff_coded(rbsp, i)
                size, i = _ff_coded(rbsp, i)
                body, i = rbsp[i:i + size], i + size
                if kind == USER_DATA_UNREGISTERED and body[:16] == uuid_.bytes:
                    found.append(body[16:])
        except IndexError:  # a truncated or foreign SEI: what was read so far stands
            pass
    return found


def _ff_coded(rbsp: bytes, i: int) -> tuple[int, int]:
    """An SEI payloadType or payloadSize (0xFF bytes adding 255 each, then the last byte) and where it ends."""
    value = 0
    while rbsp[i] == 255:
        value, i = value + 255, i + 1
    return value + rbsp[i], i + 1


def read_aigc_sei(data: bytes, prefix: int = 0) -> dict[str, str] | None:
    """The AIGC fields of our SEI in an H.264 access unit (a demuxed packet: prefix from length_size(extradata)),
    or None."""
    payloads = user_data(data, prefix)
    return json.loads(payloads[0].decode()) if payloads else None


def labels_in(source: str, limit: int = 0) -> list[tuple[float, dict[str, str] | None]]:
    """Each keyframe's time (s) and AIGC fields (None: no label) in a file or stream PyAV opens; limit: stop after
    that many keyframes (0: all)."""
    import av  # only this reader needs the demuxer

    found: list[tuple[float, dict[str, str] | None]] = []
    with av.open(source) as container:
        video = container.streams.video[0]
        prefix = length_size(video.codec_context.extradata)
        for packet in container.demux(video):
            if packet.is_keyframe and packet.size:
                t = float(packet.pts * packet.time_base) if packet.pts is not None and packet.time_base else 0.0
                found.append((t, read_aigc_sei(bytes(packet), prefix)))
                if limit and len(found) >= limit:
                    break
    return found


def main(argv: list[str] | None = None) -> int:
    """python -m streaming.sei FILE [KEYFRAMES]: each keyframe's hidden label, one JSON line each; exit 1 if one
    has none."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m streaming.sei FILE|URL [KEYFRAMES]", file=sys.stderr)
        return 2
    found = labels_in(args[0], int(args[1]) if len(args) > 1 else 0)
    for t, fields in found:
        print(json.dumps({"t_s": round(t, 3), "AIGC": fields}, ensure_ascii=False))
    return 0 if found and all(fields is not None for _, fields in found) else 1


if __name__ == "__main__":
    raise SystemExit(main())
