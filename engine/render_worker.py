"""The loop of a render process (engine.render_process): generators built by name, windows rendered into
shared memory.

A window's pictures (RGB, I420, alpha: ~1.4 MB a 512x512 frame) go through a shared-memory segment the
parent owns, not through the pipe: pickled over the pipe a window of 8 cost 9.5 ms to pickle alone, as
much as rendering it. Only small things (controls, audio, the layout of the arrays) are pickled.

Messages (tuples, first item the verb), each answered once:
  ("avatar", key, backend, threads, avatar)  -> ("ok",)       build a generator for an avatar
  ("buffer", name)                            -> ("ok",)       the parent's segment to write windows into
  ("first", key)                              -> ("ok", FirstFrame) | ("unknown",)
  ("render", key, emit_alpha, window, condition or ("token", t))
      -> ("ok", reply) | ("need", n_bytes) | ("miss",) | ("unknown",) | ("error", text)
"unknown": the process has no generator for that avatar (never sent, or dropped for newer ones): send it.
"""

from __future__ import annotations

import signal
import sys
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from engine.types import FirstFrame, RenderedWindow

KEEP_AVATARS = 4  # generators kept per process (one per portrait); the least recently used goes first
KEEP_CONDITIONS = 64  # last frames remembered, so a session's next window need not send its picture back


@dataclass(frozen=True, slots=True)
class ArraySpec:
    """Where one array lies in the shared segment."""
    offset: int
    shape: tuple[int, ...]
    dtype: str


@dataclass(slots=True)
class WindowReply:
    """A rendered window without its pictures (those are in the segment, `arrays` says where)."""
    start_frame: int
    audio: np.ndarray
    render_ms: float
    created_t_s: float
    arrays: dict[str, ArraySpec]  # frames_rgb, and frames_i420 / alpha_frames when made
    n_bytes: int  # of the segment used, from offset 0
    last_frame_index: int
    last_controls: np.ndarray
    last_picture: int | ArraySpec  # which frame of frames_rgb the next condition shows, or its own array
    token: int  # names the next condition in this process (a ("token", t) condition reuses it)
    last_talking: float = 0.0  # FirstFrame.talking of the next condition


def layout(arrays: dict[str, np.ndarray]) -> tuple[dict[str, ArraySpec], int]:
    """Offsets for the arrays laid end to end, each 64-byte aligned."""
    specs, offset = {}, 0
    for name, a in arrays.items():
        specs[name] = ArraySpec(offset, a.shape, a.dtype.str)
        offset += -(-a.nbytes // 64) * 64
    return specs, offset


def view(buffer: Any, spec: ArraySpec) -> np.ndarray:
    return np.ndarray(spec.shape, np.dtype(spec.dtype), buffer=buffer, offset=spec.offset)


def attach(name: str) -> SharedMemory:
    """The parent's segment, not registered with a resource tracker of this process: Python 3.11 registers every
    attach, and a tracker of the child's would unlink the parent's segment when the child exits."""
    register = resource_tracker.register
    resource_tracker.register = lambda *args: None  # type: ignore[assignment]
    try:
        return SharedMemory(name)
    finally:
        resource_tracker.register = register  # type: ignore[assignment]


def frame_of(picture: np.ndarray, frames: np.ndarray) -> int | None:
    """The index of `picture` in `frames` when it is one of its frames (a view), else None."""
    if picture.shape != frames.shape[1:] or picture.dtype != frames.dtype or not len(frames):
        return None
    offset = picture.__array_interface__["data"][0] - frames.__array_interface__["data"][0]
    if offset % frames.strides[0] or not 0 <= offset // frames.strides[0] < len(frames):
        return None
    k = offset // frames.strides[0]
    return k if picture.strides == frames.strides[1:] else None


class Worker:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.generators: OrderedDict[object, Any] = OrderedDict()
        self.conditions: OrderedDict[int, FirstFrame] = OrderedDict()
        self.next_token = 0
        self.segment: SharedMemory | None = None
        self.pending: tuple[RenderedWindow, FirstFrame] | None = None  # rendered, waiting for a larger segment

    def serve(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):  # the parent is gone
                return
            if message[0] == "stop":
                return
            try:
                reply = getattr(self, "do_" + message[0])(*message[1:])
            except Exception as e:  # the generator's own error: the parent counts it, the process lives on
                reply = ("error", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}")
            self.conn.send(reply)

    def do_avatar(self, key: object, backend: str, threads: int, avatar: Any) -> tuple:
        from engine.generator import make_generator

        self.generators[key] = make_generator(backend, avatar, threads)
        while len(self.generators) > KEEP_AVATARS:
            self.generators.popitem(last=False)
        return ("ok",)

    def do_buffer(self, name: str) -> tuple:
        if self.segment is not None:
            self.segment.close()
        self.segment = attach(name)
        if self.pending is not None:  # the window that did not fit
            rendered, last = self.pending
            self.pending = None
            return self._reply(rendered, last)
        return ("ok",)

    def do_first(self, key: object) -> tuple:
        generator = self._generator(key)
        return ("unknown",) if generator is None else ("ok", generator.first_frame())

    def do_render(self, key: object, emit_alpha: bool, window: Any, condition: Any) -> tuple:
        generator = self._generator(key)
        if generator is None:
            return ("unknown",)
        if isinstance(condition, tuple):  # ("token", t): a last frame this process handed out
            condition = self.conditions.get(condition[1])
            if condition is None:
                return ("miss",)
        if hasattr(generator, "emit_alpha"):
            generator.emit_alpha = emit_alpha
        return self._reply(*generator.render(window, condition))

    def _generator(self, key: object) -> Any:
        if key not in self.generators:
            return None
        self.generators.move_to_end(key)
        return self.generators[key]

    def _reply(self, rendered: RenderedWindow, last: FirstFrame) -> tuple:
        arrays = {"frames_rgb": rendered.frames_rgb}
        for name in ("frames_i420", "alpha_frames"):
            if getattr(rendered, name) is not None:
                arrays[name] = getattr(rendered, name)
        picture = frame_of(last.rgb, rendered.frames_rgb)
        if picture is None:
            arrays["last_rgb"] = last.rgb
        specs, n_bytes = layout(arrays)
        if self.segment is None or self.segment.size < n_bytes:
            self.pending = (rendered, last)
            return ("need", n_bytes)
        for name, a in arrays.items():
            view(self.segment.buf, specs[name])[...] = a
        token = self.next_token
        self.next_token += 1
        self.conditions[token] = last
        while len(self.conditions) > KEEP_CONDITIONS:
            self.conditions.popitem(last=False)
        return ("ok", WindowReply(rendered.start_frame, rendered.audio, rendered.render_ms, rendered.created_t_s,
                                  specs, n_bytes, last.frame_index, last.controls,
                                  specs["last_rgb"] if picture is None else picture, token, last.talking))


def main(conn: Connection) -> None:
    """Serve until the parent says stop or goes away."""
    # Ctrl+C reaches the whole process group: the parent decides when its renderers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import engine.generator  # noqa: F401  (torch, OpenCV: "ready" means ready to render)

    conn.send(("ready",))
    worker = Worker(conn)
    try:
        worker.serve()
    finally:
        if worker.segment is not None:
            worker.segment.close()


if __name__ == "__main__":  # python -m engine.render_worker FD: FD is this end of the parent's socket pair
    # Served from the module imported by name, so what it pickles names engine.render_worker, not __main__.
    from engine import render_worker

    render_worker.main(Connection(int(sys.argv[1])))
