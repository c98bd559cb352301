"""A stream's outputs besides its viewers (RTMP pushes, a recording, the output canvas): one spec, turned into sinks.

    spec = OutputsSpec(rtmp=["rtmp://a.rtmp.youtube.com/live2/KEY"], record_dir=Path("recordings"), size="720x1280")
    attach_outputs(stream, spec)   # before stream.start() when a size is given
    describe_outputs(stream)       # for an API answer and /health: states and counters, stream keys hidden

Every output here shares the stream's one H.264 encode (live_video_for: its bit rate from the canvas
size) with the stream's WHEP viewers, and one AAC encode: a recording is the same packets as the
pushes, written to a fragmented MP4 that survives a killed process.
"""

from __future__ import annotations

import argparse
import time
import weakref
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from engine.generator import PreparedAvatar
from streaming.canvas import Canvas, parse_size
from streaming.egress_alpha import AlphaFileSink
from streaming.egress_file import Mp4Sink
from streaming.egress_rtmp import RtmpSink, bit_rate_for, check_url, live_encoding
from streaming.encoding import VideoSpec, live_video
from streaming.keying import Background, Still, parse_background, read_image
from streaming.provenance import provenance_of
from streaming.sinks import Sink
from streaming.stream import AvatarStream

MAX_RTMP = 8


class OutputsSpec(BaseModel):
    """What a stream sends out besides its WebRTC/WHEP viewers."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # an ingest URL carries its stream key

    rtmp: list[str] = []  # rtmp:// or rtmps:// ingest URLs, stream key included
    record_dir: Path | None = None  # a fragmented MP4 per stream here: <stream id>-<UTC start>.mp4
    size: str | None = None  # "WxH" output canvas, e.g. 720x1280; None: the portrait's own size
    fit: Literal["fit", "fill"] = "fit"  # the whole portrait (background around it), or the canvas covered
    # What is behind the person (streaming/keying.py): photo, green[:#RRGGBB], image:PATH, alpha[:#RRGGBB]; a plain
    # image path (the older form) is the photo as it is with the image around a fitted portrait. Default: photo.
    background: str | None = None
    # The stream's disclosure label preset, over the server's `label` setting (off: logged; streaming/disclosure.py)
    label: Literal["cn", "eu", "en", "off"] | None = None

    @field_validator("rtmp")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        if len(urls) > MAX_RTMP:
            raise ValueError(f"at most {MAX_RTMP} RTMP outputs per stream")
        return [check_url(u) for u in urls]

    @field_validator("size")
    @classmethod
    def _size(cls, size: str | None) -> str | None:
        if size is None:
            return None
        width, height = parse_size(size)
        return f"{width}x{height}"

    @field_validator("background", mode="before")
    @classmethod
    def _background(cls, value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str | Path):
            raise ValueError("background: a string, e.g. green or image:studio.jpg")
        background = parse_background(value)
        path = background.path
        # An absolute path must exist now; a relative one is looked for where it is resolved: the working
        # folder on the command line (check_files), the media folder over the API (confined_outputs).
        if path is not None and path.is_absolute() and not path.is_file():
            raise ValueError(f"background {path}: no such file")
        return str(background)

    @property
    def mode(self) -> Background:
        """The parsed background."""
        return parse_background(self.background)


class _Attached:
    def __init__(self, spec: OutputsSpec, canvas: Canvas | None, sinks: list[Sink]) -> None:
        self.spec, self.canvas, self.sinks = spec, canvas, sinks


_attached: weakref.WeakKeyDictionary[AvatarStream, _Attached] = weakref.WeakKeyDictionary()


def recording_path(record_dir: Path, stream_id: str, started: float | None = None, suffix: str = ".mp4") -> Path:
    """<dir>/<stream id>-<UTC start, to the second>.mp4 (a second recording within the same second gets -2, ...)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    safe_id = "".join(c if c.isalnum() or c in "-_" else "_" for c in stream_id) or "stream"
    path, n = record_dir / f"{safe_id}-{stamp}{suffix}", 1
    while path.exists():
        n += 1
        path = record_dir / f"{safe_id}-{stamp}-{n}{suffix}"
    return path


def attach_outputs(stream: AvatarStream, spec: OutputsSpec) -> list[Sink]:
    """Add the spec's sinks to the stream (and its canvas: before the stream's first frame, else ValueError; right
    after stream.start() and its first add_sink is early enough). Returns the sinks."""
    previous = _attached.get(stream)
    canvas = canvas_for(spec, stream.session.avatar)
    if canvas is not None:
        if stream.pacer.metrics.frames_sent:
            raise ValueError(f"size {spec.size}: a stream's output size is chosen before its first frame")
        stream.pacer.set_canvas(canvas)
    canvas = canvas or (previous.canvas if previous else None)  # a later call adds sinks at the size already set
    width, height = (canvas.width, canvas.height) if canvas is not None else _portrait_size(stream)
    encoding = live_encoding(bit_rate_for(width, height))  # the same H.264 as live_video_for(stream) after this
    provenance = provenance_of(stream)  # the hidden AIGC label in every file and push, C2PA on finished recordings
    sinks: list[Sink] = [RtmpSink(url, encoding, metadata=provenance.metadata(stream.id)) for url in spec.rtmp]
    if spec.record_dir is not None:
        spec.record_dir.mkdir(parents=True, exist_ok=True)
        mode = spec.mode
        if mode.mode == "alpha":  # the person over nothing: VP9 with alpha, its own encode (H.264 has no alpha)
            sinks.append(AlphaFileSink(recording_path(spec.record_dir, stream.id, suffix=".webm"), mode.key))
        else:
            path = recording_path(spec.record_dir, stream.id)
            sinks.append(Mp4Sink(path, encoding=encoding, fragmented=True, metadata=provenance.metadata(path.stem),
                                 on_finished=provenance.on_finished(path.stem)))
    for sink in sinks:
        stream.add_sink(sink)
    _attached[stream] = _Attached(spec, canvas, [*(previous.sinks if previous else []), *sinks])
    return sinks


def output_size(stream: AvatarStream) -> tuple[int, int]:
    """(width, height) of the stream's pictures: its canvas (attach_outputs), else the portrait's own size."""
    attached = _attached.get(stream)
    if attached is not None and attached.canvas is not None:
        return attached.canvas.width, attached.canvas.height
    return _portrait_size(stream)


def live_video_for(stream: AvatarStream) -> VideoSpec:
    """The stream's one live H.264 encode, shared by its WHEP viewers, RTMP pushes and recording (equal specs share
    an encoder): its bit rate follows the stream's picture size."""
    return live_video(bit_rate_for(*output_size(stream)))


def describe_outputs(stream: AvatarStream) -> dict[str, Any]:
    """The outputs attach_outputs gave this stream: canvas, each push's state and counters, the recording."""
    attached = _attached.get(stream)
    if attached is None:
        return {"size": None, "rtmp": [], "recording": None}
    out: dict[str, Any] = {"size": attached.canvas.size if attached.canvas else None,
                           "fit": attached.canvas.fit if attached.canvas else None,
                           "background": attached.spec.mode.mode, "rtmp": [], "recording": None}
    for sink in attached.sinks:
        queue = stream.pacer.sinks.metrics_of(sink)
        extra = {"queue_dropped": queue.dropped, "error": queue.error} if queue is not None else {}
        if isinstance(sink, RtmpSink):
            out["rtmp"].append({**sink.info(), **extra})
        elif isinstance(sink, Mp4Sink | AlphaFileSink):
            out["recording"] = {**sink.info(), **extra}
    return out


def spec_from_args(args: argparse.Namespace) -> OutputsSpec:
    """The OutputsSpec of streaming.canvas.add_canvas_arguments' flags, and of --rtmp/--record where a command has
    them (raises pydantic's ValidationError, a ValueError, on bad values)."""
    spec = OutputsSpec(rtmp=getattr(args, "rtmp", None) or [], record_dir=getattr(args, "record_dir", None),
                       size=args.size, fit=args.fit, background=args.background)
    check_files(spec)
    return spec


def check_files(spec: OutputsSpec) -> None:
    """ValueError when the background names a picture that cannot be read (the command line: from the working
    folder), before anything slow starts."""
    path = spec.mode.path
    if path is not None:
        if not path.is_file():
            raise ValueError(f"background {path}: no such file")
        read_image(path)


def canvas_for(spec: OutputsSpec, avatar: PreparedAvatar | None = None) -> Canvas | None:
    """The spec's output canvas for this avatar: None when the stream's pictures go out as rendered (no size, the
    photo's own background). A keyed background needs the avatar (its alpha and plate)."""
    mode = spec.mode
    if spec.size is None and not mode.keyed:
        return None
    if mode.keyed and avatar is None:
        raise ValueError(f"background {mode}: the canvas is made with the avatar")
    width, height = parse_size(spec.size) if spec.size is not None else _size_of(avatar)
    if not mode.keyed:
        return Canvas(width, height, spec.fit, mode.surround)
    return Canvas(width, height, spec.fit, mode=mode, still=Still.of(avatar))


def _size_of(avatar: PreparedAvatar | None) -> tuple[int, int]:
    assert avatar is not None
    height, width = avatar.rgb.shape[:2]
    return width, height


def _portrait_size(stream: AvatarStream) -> tuple[int, int]:
    height, width = stream.session.avatar.rgb.shape[:2]
    return width, height
