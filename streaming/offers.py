"""An offer, checked whole before any session is built for it.

Building a session costs ~37 ms of CPU and aiortc's own checks come only after it, so garbage used to
cost a session each; a legal-size offer with 3,300 candidates or 1,000 m-lines stalled the event loop
for a second or two; an offer without a=mid made createAnswer fail. Here the body is parsed by
pydantic (Rust: bounded nesting, no int() of 5,000-digit numbers), the SDP is bounded (size, lines,
m-lines, candidates), parsed by aiortc's own parser inside a try, and checked for everything the
answer needs, all in well under a millisecond for a real offer. Each refusal is an OfferError whose
message says what is wrong (HTTP 400).
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from aiortc import RTCSessionDescription
from aiortc.codecs import CODECS
from aiortc.rtcpeerconnection import find_common_codecs
from aiortc.sdp import MediaDescription, SessionDescription
from pydantic import BaseModel, Field, ValidationError

MAX_SDP_CHARS = 64 * 1024  # browsers' audio + video offers are 4-12 KB
MAX_SDP_LINES = 1000
MAX_LINE_CHARS = 2048
MAX_MEDIA = 8  # m-lines
MAX_CANDIDATES = 64  # a=candidate lines in all
MAX_DETAIL_CHARS = 200  # of a parser's own message, quoted back
KINDS = ("audio", "video", "application")
SHAPE = 'expected a JSON object {"sdp": ..., "type": "offer"}'


class OfferError(ValueError):
    """A client's offer is unusable; the message is sent back with HTTP 400."""


class OfferBody(BaseModel):
    sdp: str = Field(max_length=MAX_SDP_CHARS)
    type: Literal["offer"]


def parse_offer(body: bytes | str) -> RTCSessionDescription:
    """The offer in a request body, or OfferError saying why not. Builds nothing, starts nothing."""
    sdp = _read_body(body)
    _check_size(sdp)
    description = _parse_sdp(sdp)
    _check_answerable(description)
    return RTCSessionDescription(sdp=sdp, type="offer")


def _read_body(body: bytes | str) -> str:
    try:
        offer = OfferBody.model_validate_json(body)
    except ValidationError as e:
        raise OfferError(_body_error(e)) from None
    return offer.sdp


def _body_error(e: ValidationError) -> str:
    # Never the input itself: it may be 256 KiB of anything.
    first = e.errors(include_url=False, include_input=False, include_context=True)[0]
    kind, where = first["type"], first["loc"]
    if kind == "json_invalid":
        return f"request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}"
    if kind == "model_type":
        return SHAPE
    if where == ("sdp",):
        if kind == "string_too_long":
            return f"'sdp' is longer than {MAX_SDP_CHARS} characters"
        return f"missing 'sdp': {SHAPE}" if kind == "missing" else f"'sdp' must be a string: {SHAPE}"
    if where == ("type",):
        return "'type' must be \"offer\""
    return f"{'.'.join(map(str, where)) or 'body'}: {first['msg']}"


def _check_size(sdp: str) -> None:
    if not sdp.lstrip().startswith("v=0"):
        raise OfferError("'sdp' is not a session description (it must start with v=0)")
    lines = sdp.splitlines()  # as aiortc's parser splits it
    if len(lines) > MAX_SDP_LINES:
        raise OfferError(f"the SDP has {len(lines)} lines (at most {MAX_SDP_LINES})")
    longest = max(map(len, lines))
    if longest > MAX_LINE_CHARS:
        raise OfferError(f"the SDP has a line of {longest} characters (at most {MAX_LINE_CHARS})")
    media = sum(line.startswith("m=") for line in lines)
    if media > MAX_MEDIA:
        raise OfferError(f"the SDP has {media} m-lines (at most {MAX_MEDIA})")
    candidates = sum(line.startswith("a=candidate") for line in lines)
    if candidates > MAX_CANDIDATES:
        raise OfferError(f"the SDP has {candidates} ICE candidates (at most {MAX_CANDIDATES})")


def _parse_sdp(sdp: str) -> SessionDescription:
    try:
        return SessionDescription.parse(sdp)
    except Exception as e:  # its parser raises whatever its input provokes (aiortc#114): asserts, int(), KeyError
        detail = str(e)[:MAX_DETAIL_CHARS] or "the SDP parser rejected it"
        raise OfferError(f"invalid SDP: {detail} ({type(e).__name__})") from None


def check_sdp(sdp: str) -> SessionDescription:
    """An offer sent as bare SDP (WHIP, WHEP), checked as far as any answer needs: bounded, parsed, every
    m-line answerable. Which m-lines it must have is the caller's to check. OfferError says why not."""
    _check_size(sdp)
    description = _parse_sdp(sdp)
    _check_kinds(description)
    _check_sections(description)
    return description


def _check_kinds(description: SessionDescription) -> None:
    for i, m in enumerate(description.media):
        if m.kind not in KINDS:
            raise OfferError(f"m-line {i} is {m.kind!r}: only audio, video and application are supported")


def _check_answerable(description: SessionDescription) -> None:
    """What aiortc's setRemoteDescription and createAnswer need, and what the engine needs."""
    media = description.media
    _check_kinds(description)
    audio = [m for m in media if m.kind == "audio"]
    video = [m for m in media if m.kind == "video"]
    if not audio:
        raise OfferError("offer has no audio m-line: the engine needs the host's microphone as an audio track")
    if not video:
        raise OfferError("offer has no video m-line: add a recvonly video transceiver to receive the avatar")
    _check_sections(description)
    # The server's tracks go to the first audio and the first video m-line (aiortc's addTrack).
    if audio[0].direction != "sendrecv":
        raise OfferError(f"the first audio m-line is {audio[0].direction}: it must be sendrecv (the microphone "
                         "goes up, the host's voice comes back)")
    if video[0].direction not in ("sendrecv", "recvonly"):
        raise OfferError(f"the first video m-line is {video[0].direction}: it must be recvonly or sendrecv "
                         "to receive the avatar")


def _check_sections(description: SessionDescription) -> None:
    media = description.media
    for i, m in enumerate(media):
        _check_media(i, m)
    mids = Counter(m.rtp.muxId for m in media)
    for mid, n in mids.items():
        if n > 1:
            raise OfferError(f"a=mid:{mid} is used by {n} m-lines (each needs its own)")
    for group in description.group:
        if group.semantic == "BUNDLE":
            unknown = [item for item in group.items if item not in mids]
            if unknown:
                raise OfferError(f"a=group:BUNDLE names mid {unknown[0]}, which no m-line has")


def _check_media(i: int, m: MediaDescription) -> None:
    where = f"m-line {i} ({m.kind})"
    if not m.rtp.muxId:
        raise OfferError(f"{where} has no a=mid: every media section needs one")
    if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
        raise OfferError(f"{where} has no ICE credentials (a=ice-ufrag and a=ice-pwd)")
    if m.dtls is None:
        raise OfferError(f"{where} has no DTLS role (a=setup)")
    if not m.dtls.fingerprints:
        raise OfferError(f"{where} has no DTLS fingerprint (a=fingerprint)")
    if m.kind == "application":
        port_known = m.sctp_port is not None or (bool(m.fmt) and str(m.fmt[0]).isdigit())
        if m.profile not in ("UDP/DTLS/SCTP", "DTLS/SCTP") or not port_known:
            raise OfferError(f"{where} is not an SCTP data channel this server can answer")
        return
    if not m.rtcp_mux:
        raise OfferError(f"{where} has no a=rtcp-mux: RTCP must share the RTP port")
    if m.direction is None:
        raise OfferError(f"{where} has no direction (a=sendrecv, a=recvonly, a=sendonly or a=inactive)")
    try:
        common = find_common_codecs(CODECS[m.kind], m.rtp.codecs)
    except Exception as e:  # a malformed fmtp (an H264 profile-level-id, ...) raises from the comparison
        raise OfferError(f"{where}: invalid codec parameters: {str(e)[:MAX_DETAIL_CHARS]} ({type(e).__name__})") \
            from None
    if not common:
        names = ", ".join(sorted({c.mimeType.split("/")[1] for c in CODECS[m.kind] if c.name != "rtx"}))
        raise OfferError(f"{where} offers no codec the server has ({names})")
