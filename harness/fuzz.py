"""Fuzzing inputs for the signaling endpoints, shared by tests/test_fuzz.py and benchmarks/fuzz_offers.py.

Offer bodies are mutations of real offers (harness/offer_seeds.py: aiortc's, Chromium- and Firefox-shaped
ones, and the public SDP corpus of mediasoup's and Janus' fuzzers): mutations of lines, tokens and
characters, the two shapes of Janus' own SDP timeout reproducers (tens of thousands of tiny lines; one line
of tens of kilobytes), and structural mutations of the JSON body around the SDP. One mutator makes them,
driven by either of two sources of choices: hypothesis (offer_bodies: a strategy; it steers toward
boundaries, ~3 ms an example) or a seeded random.Random (random_offer_bodies: ~50x faster, for the 10,000
offers that CI runs in process).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.offer_seeds import CHROME_OFFER, FIREFOX_OFFER, aiortc_offer, corpus_offers
from streaming.offers import OfferError, parse_offer
from streaming.webrtc import NO_ICE_SERVERS

__all__ = ["CHROME_OFFER", "FIREFOX_OFFER", "admit", "aiortc_offer", "answer", "control_messages", "corpus_offers",
           "generated", "offer_bodies", "random_offer_bodies"]
T = TypeVar("T")

# Values that have broken parsers: numbers past every limit, signs, separators, non-ASCII, control characters.
NASTY = ["", " ", "0", "-1", "65536", "4294967296", "1e999", "NaN", "9" * 40, "9" * 5001, "\x00", "\t", "\u2028",
         "\u0660\u0661", "é", "ﬀ", "\ud7ff", ":", "::", "/", " / ", "=", "a=", "m=", "IN IP4", "IN IP9 x", "*",
         "{}", "[", "%s%n", "..", "0x1F", "true"]
SDP_LINES = ["m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=video 9 UDP/TLS/RTP/SAVPF 96", "m=application 9 UDP/DTLS/SCTP "
             "webrtc-datachannel", "m=text 9 RTP/AVP 0", "m=audio 9 nonsense", "m=audio x UDP/TLS/RTP/SAVPF 111",
             "m=audio 9 UDP/TLS/RTP/SAVPF 300", "a=mid:", "a=mid:0", "a=setup:bogus", "a=setup:active",
             "a=fingerprint:", "a=fingerprint:sha-256", "a=ice-ufrag:", "a=ice-pwd:", "a=rtcp-mux",
             "a=rtpmap:96", "a=rtpmap:96 VP8", "a=rtpmap:111 opus/x", "a=fmtp:999 apt=1",
             "a=fmtp:102 profile-level-id=zzzzzz", "a=rtcp-fb:96", "a=ssrc:abc cname:x", "a=ssrc:1",
             "a=ssrc-group:FID x", "a=group:BUNDLE 7", "a=group:BUNDLE", "a=extmap:x y", "a=extmap:1",
             "a=extmap:1/sendonly urn:x", "a=candidate:", "a=candidate:1 1 udp 1 127.0.0.1 9 typ host",
             "a=candidate:1 1 udp x 127.0.0.1 9 typ host", "a=candidate:1 1 udp 1 ::1 99999 typ host",
             "a=candidate:1 1 udp 1 127.0.0.1 9 typ relay raddr 127.0.0.1 rport x", "a=end-of-candidates",
             "a=rtcp:x", "a=rtcp:9 IN IP4", "c=IN IP4", "c=IN IP4 127.0.0.1", "a=max-message-size:x",
             "a=sctp-port:x", "a=sctpmap:x y", "a=sendonly", "a=recvonly", "a=inactive", "a=sendrecv",
             "a=ice-lite", "a=msid-semantic:", "v=0", "v=x", "o=", "s=", "t=", "a="]
SEPARATORS = [" ", ":", "/", "=", ";"]


JANUS_SIZES = [1_500, 12_000, 300_000]  # under the line bound, over it, and Janus' 1 MB reproducer's size
INTERESTING = "0123456789 :/=\r\n"


class Choices(Protocol):
    """Where the mutator's decisions come from."""

    def integer(self, lo: int, hi: int) -> int: ...

    def pick(self, options: Sequence[T]) -> T: ...

    def text(self, max_size: int) -> str: ...

    def char(self) -> str: ...

    def blob(self, max_size: int) -> bytes: ...


class HypothesisChoices:
    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def pick(self, options: Sequence[T]) -> T:
        return self.draw(st.sampled_from(options))

    def text(self, max_size: int) -> str:
        return self.draw(st.text(max_size=max_size))

    def char(self) -> str:
        return self.draw(st.characters() | st.sampled_from(INTERESTING))

    def blob(self, max_size: int) -> bytes:
        return self.draw(st.binary(max_size=max_size))


class RandomChoices:
    """Uniform choices, with hypothesis' habit of trying the ends of a range now and then."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        r = self.rng.random()
        return lo if r < 0.05 else hi if r < 0.1 else self.rng.randint(lo, hi)

    def pick(self, options: Sequence[T]) -> T:
        return self.rng.choice(options)

    def char(self) -> str:
        r = self.rng.random()
        if r < 0.3:
            return self.rng.choice(INTERESTING)
        if r < 0.7:
            return chr(self.rng.randint(0x20, 0x7E))
        code = self.rng.randint(0, sys.maxunicode)
        return chr(code) if not 0xD800 <= code <= 0xDFFF else "\ufffd"

    def text(self, max_size: int) -> str:
        return "".join(self.char() for _ in range(self.integer(0, max_size)))

    def blob(self, max_size: int) -> bytes:
        return self.rng.randbytes(self.integer(0, max_size))


def _weird_line(c: Choices) -> str:
    return c.pick(SDP_LINES) if c.integer(0, 1) else c.text(60)


def _weird_token(c: Choices) -> str:
    kind = c.integer(0, 2)
    return c.pick(NASTY) if kind == 0 else c.text(12) if kind == 1 else str(c.integer(-(2**70), 2**70))


def mutate_sdp(c: Choices, seed: str) -> str:
    """A seed offer with one to four mutations of its lines, tokens or characters."""
    lines = seed.split("\r\n")
    for _ in range(c.integer(1, 4)):
        i = c.integer(0, max(0, len(lines) - 1))
        op = c.pick(["delete", "duplicate", "swap", "replace", "insert", "char", "char", "token", "token",
                     "truncate", "repeat", "janus"])
        if not lines:
            lines = [_weird_line(c)]
        elif op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = c.integer(0, len(lines) - 1)
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "replace":
            lines[i] = _weird_line(c)
        elif op == "insert":
            lines.insert(i, _weird_line(c))
        elif op == "char":
            line, p = lines[i], c.integer(0, len(lines[i]))
            kind, ch = c.pick(["set", "insert", "delete"]), c.char()
            lines[i] = (line[:p] + ch + line[p + 1:] if kind == "set" else line[:p] + ch + line[p:]
                        if kind == "insert" else line[:p] + line[p + 1:])
        elif op == "token":
            sep = c.pick(SEPARATORS)
            tokens = lines[i].split(sep)
            tokens[c.integer(0, len(tokens) - 1)] = _weird_token(c)
            lines[i] = sep.join(tokens)
        elif op == "truncate":
            lines = lines[:i]
        elif op == "janus":  # the shapes of Janus' SDP parser timeouts, under and over the bounds
            n = c.pick(JANUS_SIZES)
            lines[i:i] = ["a=d"] * n if c.integer(0, 1) else [lines[i] + " " * (n // 5)]
        else:  # repeat: past the bounds on lines, m-lines and candidates
            lines[i:i + 1] = [lines[i]] * c.pick([2, 9, 65, 300, 1200])
    return c.pick(["\r\n", "\r\n", "\r\n", "\n"]).join(lines)


def json_value(c: Choices, depth: int = 0) -> object:
    """Any small JSON value."""
    kind = c.integer(0, 7 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return bool(c.integer(0, 1))
    if kind == 2:
        return c.integer(-(2**70), 2**70)
    if kind == 3:
        return c.integer(-(10**6), 10**6) / c.pick([1, 7, 1e-300, 1e300])
    if kind in (4, 5):
        return c.text(20)
    if kind == 6:
        return [json_value(c, depth + 1) for _ in range(c.integer(0, 4))]
    return {c.text(8): json_value(c, depth + 1) for _ in range(c.integer(0, 4))}


def deep(n: int, inner: str = "") -> str:
    return "[" * n + inner + "]" * n


def structural_body(c: Choices, sdp: Callable[[], str]) -> bytes:
    """A mutation of the JSON around the SDP."""
    def offer(**fields: object) -> bytes:
        return json.dumps(fields).encode()

    kind = c.integer(0, 17)
    if kind == 0:
        return json.dumps(json_value(c)).encode()  # any JSON at all
    if kind == 1:
        return offer(sdp=json_value(c), type="offer")  # sdp not a string
    if kind == 2:
        return offer(sdp=sdp(), type=c.pick(["answer", "OFFER", "", "pranswer"]) if c.integer(0, 1)
                     else json_value(c))  # type not "offer"
    if kind == 3:
        return offer(sdp=sdp())  # no type
    if kind == 4:
        return offer(type="offer", spd=sdp())  # no sdp
    if kind == 5:
        return f'{{"sdp": {deep(c.integer(1, 5000))}, "type": "offer"}}'.encode()
    if kind == 6:
        return f'{{"type": "offer", "sdp": "v=0", "x": {deep(c.integer(1, 5000), "1")}}}'.encode()
    if kind == 7:
        return b'{"sdp": "v=0", "type": "offer", "n": ' + b"7" * c.integer(20, 6000) + b"}"
    if kind == 8:
        return b'{"sdp": "v=0", "type": "offer", "n": 1e' + b"7" * c.integer(20, 6000) + b"}"
    if kind == 9:
        return b'{"sdp": "v=0", "type": "offer", "n": ' + c.pick([b"NaN", b"Infinity", b"-Infinity"]) + b"}"
    if kind == 10:
        return offer(sdp=sdp(), type="offer")[:c.integer(0, 4000)]  # truncated
    if kind == 11:
        return offer(sdp=sdp(), type="offer") + (c.blob(8) or b"x")  # trailing junk
    if kind == 12:
        return b'{"sdp": "' + sdp().encode()[:40] + b'\xff\xfe", "type": "offer"}'  # bad UTF-8
    if kind == 13:
        return json.dumps({"sdp": sdp(), "type": "offer"}).encode("utf-16")
    if kind == 14:  # extra keys: ignored
        extra = {c.text(8): json_value(c) for _ in range(c.integer(0, 3))}
        return json.dumps({**extra, "sdp": sdp(), "type": "offer"}).encode()
    if kind == 15:
        return c.blob(300)
    return c.text(300).encode(errors="surrogatepass")


def offer_body(c: Choices, seeds: list[str], corpus: list[str]) -> bytes:
    """A body for POST /offer: four in five are well-formed JSON around a mutated SDP, the rest structural
    mutations of the JSON itself. Half the SDP seeds are WebRTC offers (they pass the offer check, so their
    mutations reach the answer path), half come from the corpus (mostly SIP-era SDP, refused somewhere)."""
    def sdp() -> str:
        return mutate_sdp(c, c.pick(corpus) if corpus and c.integer(0, 1) else c.pick(seeds))

    if c.integer(0, 4):
        return json.dumps({"sdp": sdp(), "type": "offer"}).encode()
    return structural_body(c, sdp)


@st.composite
def offer_bodies(draw: st.DrawFn, seeds: list[str], corpus: list[str] | None = None) -> bytes:
    """offer_body's choices made by hypothesis."""
    return offer_body(HypothesisChoices(draw), seeds, corpus or [])


def random_offer_bodies(seeds: list[str], corpus: list[str], n: int, seed: int = 0) -> list[bytes]:
    """n offer bodies from a seeded random.Random: the same every run for the same seed."""
    c = RandomChoices(random.Random(seed))
    return [offer_body(c, seeds, corpus) for _ in range(n)]


SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | \
    st.text(max_size=20)
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=12)


def control_messages() -> st.SearchStrategy[str]:
    """Text messages for the control WebSocket, all under its 4,096-byte limit."""
    text = st.text(max_size=600) | st.sampled_from(["", " ", "smile", "x" * 501, "\u2028", "\x00"])
    msg_type = st.sampled_from(["instruction", "persona", "dance", ""]) | JSON_VALUES
    shaped = st.builds(lambda t, x, extra: json.dumps({**extra, "type": t, "text": x}),
                       msg_type, text | JSON_VALUES, st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=2))
    return st.one_of(
        shaped, shaped,
        JSON_VALUES.map(json.dumps),
        st.integers(1, 2000).map(deep),
        st.integers(20, 4000).map(lambda n: '{"type": "instruction", "text": "x", "n": ' + "9" * n + "}"),
        st.text(max_size=400),
    ).filter(lambda m: len(m.encode()) <= 4000)



FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))


def generated(strategy: st.SearchStrategy[T], n: int) -> list[T]:
    """n examples of a strategy, made up front (hypothesis is slower than what it feeds)."""
    out: list[T] = []

    @settings(FUZZ, max_examples=n)
    @given(strategy)
    def collect(example: T) -> None:
        out.append(example)

    collect()
    return out


async def answer(desc: RTCSessionDescription) -> str:
    """What streaming/webrtc.py PeerSession.answer does with an admitted offer, without a session: set it
    (aiortc's refusal is a 400 there), add an audio and a video track, answer (a failure is a 400 there
    too); then close. ICE gathers on loopback only (use_ice_addresses); nothing waits for a peer."""
    pc = RTCPeerConnection(NO_ICE_SERVERS)
    try:
        try:
            await pc.setRemoteDescription(desc)
        except Exception as e:
            raise OfferError(f"invalid SDP: {e or 'the SDP parser rejected it'} ({type(e).__name__})") from e
        pc.addTrack(AudioStreamTrack())
        pc.addTrack(VideoStreamTrack())
        try:
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as e:
            raise OfferError(f"cannot answer this offer: {type(e).__name__}: {e}") from e
        return pc.localDescription.sdp
    finally:
        await asyncio.wait_for(pc.close(), 5)


async def admit(body: bytes, answered: Callable[[str], None] | None = None) -> tuple[int, str]:
    """An offer body through the server's admission (streaming/offers.py) and, once admitted, its answer path:
    (200, "") or (400, reason) as POST /offer would say; (500, the exception) for anything else."""
    try:
        sdp = await answer(parse_offer(body))
    except OfferError as e:
        return 400, str(e)
    except Exception as e:  # what the server would turn into a 500
        return 500, f"{type(e).__name__}: {e}"
    if answered is not None:
        answered(sdp)
    return 200, ""
