"""A file with an alpha channel (background mode `alpha`): the person over nothing, for an editor or OBS.

    .webm  VP9 with alpha (yuva420p, libvpx-vp9) + Opus: small; OBS' media source and browsers play it
    .mov   ProRes 4444 (yuva444p10le, prores_ks) + 16-bit PCM: large, for editors

The canvas keys the picture on a colour and carries the person's alpha with it (streaming/keying.py,
KeyedPicture); this sink un-mixes the person's straight colour from the key with that alpha (alpha video is
not premultiplied) and encodes both, in a worker thread. A picture that lost its alpha on the way (a stage
that drew a new picture) is keyed out of its colour instead, and counted.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np

from engine.types import FPS, SAMPLE_RATE_HZ
from streaming.keying import KEY_GREEN, alpha_from_key, alpha_of, straight_yuva
from streaming.sinks import PacedAudio, PacedFrame, Sink

# (container, video codec, its pixel format, options, audio codec, its sample format)
FORMATS: dict[str, tuple[str, str, str, dict[str, str], str, str]] = {
    ".webm": ("webm", "libvpx-vp9", "yuva420p",
              {"deadline": "realtime", "cpu-used": "8", "row-mt": "1", "crf": "28", "b": "0"}, "libopus", "flt"),
    ".mov": ("mov", "prores_ks", "yuva444p10le", {"profile": "4444", "qscale": "9"}, "pcm_s16le", "s16"),
}


def alpha_format(path: str | Path) -> str:
    """The file's suffix when it can hold an alpha channel, else ValueError naming the ones that can."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: background alpha writes .webm (VP9 with alpha) or .mov (ProRes 4444), "
                         f"not {suffix or 'a file without a suffix'}")
    return suffix


class AlphaFileSink(Sink):
    """Writes the stream's pictures with their alpha, and its sound, to a .webm or .mov."""

    name = "alpha-file"
    queue_size = 256  # frames and audio (~2.5 s): offline they are awaited; live, a slow encode drops the oldest

    def __init__(self, path: str | Path, key: tuple[int, int, int] = KEY_GREEN) -> None:
        self.path = Path(path)
        self.suffix = alpha_format(self.path)
        self.key = key
        self.frames = 0
        self.keyed_from_colour = 0  # pictures that came without their alpha (counted: the canvas' is finer)
        self._container: av.container.OutputContainer | None = None
        self._video: av.VideoStream | None = None
        self._audio: av.AudioStream | None = None
        self._first_frame: int | None = None
        self._lock = threading.Lock()

    async def start(self) -> None:
        self._container = av.open(str(self.path), mode="w", format=FORMATS[self.suffix][0])
        self._video = self._audio = None
        self._first_frame = None

    def info(self) -> dict[str, int | float | str | None]:
        try:
            size = self.path.stat().st_size
        except OSError:
            size = None
        return {"path": str(self.path), "bytes": size, "frames": self.frames,
                "keyed_from_colour": self.keyed_from_colour}

    async def on_batch(self, items: Sequence[object]) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._write, list(items))

    def _streams(self, width: int, height: int) -> None:
        assert self._container is not None
        _, codec, pix_fmt, options, audio_codec, _ = FORMATS[self.suffix]
        video = self._container.add_stream(codec, rate=FPS, options=options)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        self._video = video
        self._audio = self._container.add_stream(audio_codec, rate=SAMPLE_RATE_HZ, layout="mono")

    def _write(self, items: list[object]) -> None:
        with self._lock:
            assert self._container is not None
            for item in items:
                if isinstance(item, PacedFrame):
                    self._frame(item)
                elif isinstance(item, PacedAudio) and self._audio is not None and self._first_frame is not None:
                    self._sound(item)

    def _frame(self, frame: PacedFrame) -> None:
        picture = frame.picture
        height, width = (picture.shape[0] * 2 // 3, picture.shape[1]) if picture.ndim == 2 else picture.shape[:2]
        if self._video is None:
            self._streams(width, height)
            self._first_frame = frame.frame_index
        assert self._video is not None and self._container is not None and self._first_frame is not None
        if picture.ndim == 3:  # an RGB picture (no canvas): opaque
            rgba = np.dstack([picture, np.full(picture.shape[:2], 255, np.uint8)])
            out = av.VideoFrame.from_ndarray(rgba, format="rgba")
        else:
            alpha = alpha_of(picture)
            if alpha is None or alpha.shape != (height, width):  # lost on the way: keyed out of the colour instead
                self.keyed_from_colour += 1
                alpha = alpha_from_key(np.asarray(picture), self.key)
            out = yuva_frame(straight_yuva(np.asarray(picture), alpha, self.key))
        out.pts = frame.frame_index - self._first_frame  # in the stream's 1/FPS time base
        for packet in self._video.encode(out):
            self._container.mux(packet)
        self.frames += 1

    def _sound(self, chunk: PacedAudio) -> None:
        assert self._audio is not None and self._container is not None and self._first_frame is not None
        start = chunk.start_sample - self._first_frame * (SAMPLE_RATE_HZ // FPS)
        if start + len(chunk.samples) <= 0:
            return
        samples = chunk.samples[max(0, -start):]
        fmt = FORMATS[self.suffix][5]
        data = samples[None] if fmt == "flt" else (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)[None]
        audio = av.AudioFrame.from_ndarray(np.ascontiguousarray(data, dtype=np.float32 if fmt == "flt" else np.int16),
                                           format=fmt, layout="mono")
        audio.sample_rate = SAMPLE_RATE_HZ
        audio.pts = max(0, start)
        for packet in self._audio.encode(audio):
            self._container.mux(packet)

    def _finish(self) -> None:
        with self._lock:
            container, self._container = self._container, None
            if container is None:
                return
            for stream in (self._video, self._audio):
                if stream is not None:
                    for packet in stream.encode():
                        container.mux(packet)
            container.close()

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._finish)


def yuva_frame(planes: list[np.ndarray]) -> av.VideoFrame:
    """A yuva420p VideoFrame of Y, U, V, A planes, copied into its own (row-padded) buffers: no conversion, which
    from RGBA cost swscale about as much as the VP9 encode itself at 720x1280."""
    height, width = planes[0].shape
    frame = av.VideoFrame(width, height, "yuva420p")
    for plane, data in zip(frame.planes, planes, strict=True):
        rows = np.frombuffer(plane, np.uint8).reshape(data.shape[0], plane.line_size)
        rows[:, :data.shape[1]] = data
    return frame


def alpha_file_sink(path: str | Path, canvas: object) -> AlphaFileSink | None:
    """The file sink for a canvas in alpha mode (`render --background alpha`), else None."""
    mode = getattr(canvas, "mode", None)
    if mode is None or getattr(mode, "mode", None) != "alpha":
        return None
    return AlphaFileSink(path, mode.key)
