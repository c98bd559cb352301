"""Real offers to start fuzzing from: one made by aiortc's createOffer at run time, two written here in the
shape Chromium and Firefox send (their candidates moved to 127.0.0.1; mDNS names left out so that nothing
resolves off the machine), and the SDP corpus that mediasoup and Janus keep for their own fuzzers
(tests/data/sdp/, SOURCES.md says where from; its addresses are moved to loopback as it is read)."""

from __future__ import annotations

import re
from pathlib import Path

from aiortc import RTCPeerConnection

from streaming.patches import use_ice_addresses
from streaming.webrtc import NO_ICE_SERVERS

CORPUS_DIR = Path(__file__).resolve().parent.parent / "tests" / "data" / "sdp"

async def aiortc_offer() -> str:
    """A real offer as aiortc's createOffer makes it: microphone sendrecv, video recvonly, loopback candidates."""
    use_ice_addresses(["127.0.0.1"])
    pc = RTCPeerConnection(NO_ICE_SERVERS)
    pc.addTransceiver("audio", direction="sendrecv")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def _to_loopback(line: str) -> str:
    """A corpus line with its connection addresses on loopback: an answered offer's ICE checks must not
    leave the machine (the corpus has public addresses and example.com names)."""
    if line.startswith("a=candidate:"):
        fields = line.split(" ")
        if len(fields) > 4:
            fields[4] = "::1" if ":" in fields[4] else "127.0.0.1"
        for i, field in enumerate(fields[:-1]):
            if field == "raddr":
                fields[i + 1] = "127.0.0.1"
        return " ".join(fields)
    match = re.fullmatch(r"(c=IN IP[46] |a=rtcp:\d+ IN IP[46] )\S+", line)
    if match:
        return match.group(1) + ("::1" if "IP6" in match.group(1) else "127.0.0.1")
    return line


def corpus_offers(directory: Path = CORPUS_DIR) -> list[str]:
    """The vendored SDP corpus, CRLF line ends (as the mutations split them), addresses on loopback."""
    return ["\r\n".join(_to_loopback(line) for line in path.read_text(errors="replace").splitlines()) + "\r\n"
            for path in sorted(directory.glob("*.sdp"))]


CHROME_FINGERPRINT = ("a=fingerprint:sha-256 6A:9D:2C:58:0F:41:73:B1:6E:92:AA:0C:E4:31:5D:7F:18:C2:93:4B:E0:55:AC:"
                      "1D:3F:86:20:7B:94:E1:C8:02")
CHROME_OFFER = "\r\n".join([
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS 6b4f1b6a-0c1f-4d49-9b1e-4a1f1b7d5f10",
    "m=audio 50114 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
    "c=IN IP4 127.0.0.1",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:2999745851 1 udp 2122260223 127.0.0.1 50114 typ host generation 0 network-id 1",
    "a=candidate:4233069003 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active generation 0 network-id 1",
    "a=ice-ufrag:Vq5B",
    "a=ice-pwd:H8h2KjC5sWq9p3tYf0v1aXzr",
    "a=ice-options:trickle",
    CHROME_FINGERPRINT,
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=sendrecv",
    "a=msid:6b4f1b6a-0c1f-4d49-9b1e-4a1f1b7d5f10 0d1e5a8c-2f7b-4f0e-8c7a-93a1b2c3d4e5",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:13 CN/8000",
    "a=rtpmap:110 telephone-event/48000",
    "a=rtpmap:126 telephone-event/8000",
    "a=ssrc:3735928559 cname:k3Yq2tZx8pLmN0aB",
    "a=ssrc:3735928559 msid:6b4f1b6a-0c1f-4d49-9b1e-4a1f1b7d5f10 0d1e5a8c-2f7b-4f0e-8c7a-93a1b2c3d4e5",
    "m=video 50115 UDP/TLS/RTP/SAVPF 96 97 102 103 45 46",
    "c=IN IP4 127.0.0.1",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:2999745851 1 udp 2122260223 127.0.0.1 50115 typ host generation 0 network-id 1",
    "a=ice-ufrag:Vq5B",
    "a=ice-pwd:H8h2KjC5sWq9p3tYf0v1aXzr",
    "a=ice-options:trickle",
    CHROME_FINGERPRINT,
    "a=setup:actpass",
    "a=mid:1",
    "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:13 urn:3gpp:video-orientation",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=recvonly",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:96 VP8/90000",
    "a=rtcp-fb:96 goog-remb",
    "a=rtcp-fb:96 transport-cc",
    "a=rtcp-fb:96 ccm fir",
    "a=rtcp-fb:96 nack",
    "a=rtcp-fb:96 nack pli",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
    "a=rtpmap:102 H264/90000",
    "a=rtcp-fb:102 nack",
    "a=rtcp-fb:102 nack pli",
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    "a=rtpmap:103 rtx/90000",
    "a=fmtp:103 apt=102",
    "a=rtpmap:45 AV1/90000",
    "a=fmtp:45 level-idx=5;profile=0;tier=0",
    "a=rtpmap:46 rtx/90000",
    "a=fmtp:46 apt=45",
    "",
])

# Firefox puts the fingerprint, ICE options and credentials at session level.
FIREFOX_OFFER = "\r\n".join([
    "v=0",
    "o=mozilla...THIS_IS_SDPARTA-99.0 5327395719335633414 0 IN IP4 0.0.0.0",
    "s=-",
    "t=0 0",
    "a=fingerprint:sha-256 1B:0C:92:6E:3A:55:F0:71:8D:4C:B2:19:E7:60:3F:A8:2D:95:C4:1E:7B:08:F3:66:5A:D1:90:2C:4E:B7:"
    "13:A9",
    "a=group:BUNDLE 0 1",
    "a=ice-options:trickle",
    "a=msid-semantic:WMS *",
    "m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101",
    "c=IN IP4 0.0.0.0",
    "a=candidate:0 1 UDP 2122252543 127.0.0.1 41234 typ host",
    "a=sendrecv",
    "a=end-of-candidates",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1",
    "a=fmtp:101 0-15",
    "a=ice-pwd:4c7e5bb1e3a3b8ca0dcd2c1a0b9e1f33",
    "a=ice-ufrag:7e2a1c9d",
    "a=mid:0",
    "a=msid:{5f3c0d8e-1a2b-4c3d-9e8f-7a6b5c4d3e2f} {a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d}",
    "a=rtcp-mux",
    "a=rtpmap:109 opus/48000/2",
    "a=rtpmap:9 G722/8000/1",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000/1",
    "a=setup:actpass",
    "a=ssrc:2401034577 cname:{0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d}",
    "m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125 126 127 97 98",
    "c=IN IP4 0.0.0.0",
    "a=candidate:0 1 UDP 2122252543 127.0.0.1 41235 typ host",
    "a=recvonly",
    "a=end-of-candidates",
    "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:4 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:5 urn:ietf:params:rtp-hdrext:toffset",
    "a=fmtp:126 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1",
    "a=fmtp:97 profile-level-id=42e01f;level-asymmetry-allowed=1",
    "a=fmtp:120 max-fs=12288;max-fr=60",
    "a=fmtp:124 apt=120",
    "a=fmtp:121 max-fs=12288;max-fr=60",
    "a=fmtp:125 apt=121",
    "a=fmtp:127 apt=126",
    "a=fmtp:98 apt=97",
    "a=ice-pwd:4c7e5bb1e3a3b8ca0dcd2c1a0b9e1f33",
    "a=ice-ufrag:7e2a1c9d",
    "a=mid:1",
    "a=rtcp-fb:120 nack",
    "a=rtcp-fb:120 nack pli",
    "a=rtcp-fb:120 ccm fir",
    "a=rtcp-fb:120 goog-remb",
    "a=rtcp-fb:126 nack",
    "a=rtcp-fb:126 nack pli",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:120 VP8/90000",
    "a=rtpmap:124 rtx/90000",
    "a=rtpmap:121 VP9/90000",
    "a=rtpmap:125 rtx/90000",
    "a=rtpmap:126 H264/90000",
    "a=rtpmap:127 rtx/90000",
    "a=rtpmap:97 H264/90000",
    "a=rtpmap:98 rtx/90000",
    "a=setup:actpass",
    "a=ssrc:3133713371 cname:{0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d}",
    "",
])
