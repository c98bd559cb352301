"""Renders in processes of their own: a render never waits on the server's GIL, nor the server on a render's.

Why: a render thread and the event loop share one GIL. The warp renderer makes ~400 small torch calls a
window, each giving up the GIL and waiting to take it back; with the loop busy 60% of the time (RTP,
audio features, a flood of requests) one-frame windows went from 14.8 to 44.9 ms a frame, and a live
session on a loaded two-core host skipped most of its windows. In a process of its own the render costs
what it costs offline.

`ProcessGenerator` is a Generator (engine/generator/base.py) whose render() sends the window to a process
of the shared `RenderProcessPool` and waits (the calling thread blocks, the event loop does not). The pool
starts one process and adds one, up to its limit, whenever every process is busy: a session has one
render in flight at a time, so it grows to the number of sessions rendering at once, and shrinks again (a
process idle for IDLE_STOP_S is stopped, the last one kept). A process that dies
or hangs is replaced; the window it had fails (the session holds its last frame, counted), the next one
renders. Generators opt in by `GeneratorCapabilities.out_of_process` (warp does: its pictures are the
only heavy state, rebuilt from the avatar in each process).
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

import engine
from engine.render_worker import KEEP_CONDITIONS, WindowReply, view
from engine.renderer import pool_size
from engine.types import FirstFrame, MotionWindow, RenderedWindow

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # a process imports torch and OpenCV first: ~3 s here, much longer on a loaded host
RENDER_TIMEOUT_S = 30.0  # a render that takes longer is taken for hung: its process is killed and replaced
IDLE_STOP_S = 60.0  # a process idle this long is stopped (~390 MB each), all but the last one
HEADROOM = 1.25  # a segment grows to this much more than the window that did not fit


class RenderProcessError(RuntimeError):
    """A render process died, hung or could not start; the window is lost, the session goes on."""


class RenderProcessUnavailable(RenderProcessError):
    """No render process runs and the last one to start failed (no `python -m` here, an embedded interpreter):
    ProcessGenerator renders in this process instead."""


@dataclass(eq=False)
class RenderProcess:
    process: subprocess.Popen
    conn: Connection
    segment: SharedMemory | None = None

    @classmethod
    def launch(cls) -> RenderProcess:
        """`python -m engine.render_worker` on one end of a socket pair. Not multiprocessing's spawn: that runs
        the parent's __main__ again in the child (the server's imports, or an embedder's unguarded script)."""
        ours, theirs = socket.socketpair()
        root = os.path.dirname(os.path.dirname(os.path.abspath(engine.__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
        try:
            process = subprocess.Popen([sys.executable, "-m", "engine.render_worker", str(theirs.fileno())],
                                       pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        return cls(process, Connection(ours.detach()))

    def call(self, message: tuple, timeout_s: float = RENDER_TIMEOUT_S) -> tuple:
        try:
            self.conn.send(message)
            if not self.conn.poll(timeout_s):
                raise RenderProcessError(f"render process {self.process.pid} gave no answer in {timeout_s:.0f} s")
            reply = self.conn.recv()
        except (EOFError, OSError) as e:
            raise RenderProcessError(f"render process {self.process.pid} exited "
                                     f"(exit code {self.process.poll()})") from e
        if reply[0] == "error":
            raise RuntimeError(f"in render process {self.process.pid}: {reply[1]}")
        return reply

    def grow(self, n_bytes: int) -> tuple:
        """A larger segment for the window waiting in the process; its reply."""
        old = self.segment
        self.segment = SharedMemory(create=True, size=int(n_bytes * HEADROOM))
        reply = self.call(("buffer", self.segment.name))
        if old is not None:
            old.close()
            old.unlink()
        return reply

    def stop(self) -> None:
        try:
            self.conn.send(("stop",))
        except OSError:
            pass
        try:
            self.process.wait(2.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(2.0)
        self.conn.close()
        if self.segment is not None:
            self.segment.close()
            self.segment.unlink()
            self.segment = None


class RenderProcessPool:
    """Up to `max_processes` render processes, started as needed; each serves one render at a time."""

    def __init__(self, max_processes: int, idle_stop_s: float = IDLE_STOP_S) -> None:
        self.max_processes = max(1, max_processes)
        self.idle_stop_s = idle_stop_s
        self._lock = threading.Condition()
        self._idle: list[RenderProcess] = []  # the most recently used last: taken first, so the others age
        self._idle_since: dict[RenderProcess, float] = {}
        self._all: list[RenderProcess] = []
        self._starting = 0
        self._start_error: str | None = None
        self._failed_starts = 0  # in a row
        self._closed = False
        self.started = 0  # processes started over the pool's life (replacements included)
        self.stopped_idle = 0  # ... and stopped for being idle
        self._closing = threading.Event()
        atexit.register(self.close)
        self._start_one()
        threading.Thread(target=self._reap, name="process-pool-reaper", daemon=True).start()

    @property
    def processes(self) -> int:
        with self._lock:
            return len(self._all)

    def acquire(self, prefer: RenderProcess | None = None) -> RenderProcess:
        """An idle process (`prefer` if it is idle); while none is, one more starts if the limit allows."""
        deadline = time.monotonic() + START_TIMEOUT_S
        with self._lock:
            while True:
                if self._closed:
                    raise RenderProcessError("the render process pool is closed")
                if self._idle:
                    chosen = prefer if prefer in self._idle else self._idle[-1]
                    self._idle.remove(chosen)
                    self._idle_since.pop(chosen, None)
                    return chosen
                if self._starting == 0 and not self._all and self._failed_starts:
                    raise RenderProcessUnavailable(f"no render process could start: {self._start_error}")
                if self._starting == 0 and len(self._all) < self.max_processes:
                    self._start_one()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RenderProcessError(f"no render process free in {START_TIMEOUT_S:.0f} s "
                                             f"({len(self._all)} busy, {self._starting} starting)")
                self._lock.wait(min(left, 1.0))

    def release(self, process: RenderProcess, broken: bool = False) -> None:
        """Back to the idle list; a broken one (died, hung) is stopped and a new one started."""
        if broken:
            log.warning("render process %d failed (exit code %s); starting another",
                        process.process.pid, process.process.poll())
            with self._lock:
                self._all.remove(process)
                self._lock.notify_all()
            process.stop()
            with self._lock:
                if not self._closed and self._starting == 0:
                    self._start_one()
            return
        with self._lock:
            if self._closed:
                process.stop()
                return
            self._idle.append(process)
            self._idle_since[process] = time.monotonic()
            self._lock.notify_all()

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            self._closed = True
            processes, self._all, self._idle = self._all, [], []
            self._lock.notify_all()
        for process in processes:
            process.stop()

    def _reap(self) -> None:
        """Stop processes idle for idle_stop_s, all but one, until the pool closes."""
        while not self._closing.wait(min(10.0, self.idle_stop_s / 2)):  # not the lock's condition: 48 wakes a second
            with self._lock:
                now = time.monotonic()
                stale = [p for p in self._idle[:-1] if now - self._idle_since.get(p, now) >= self.idle_stop_s]
                for process in stale:
                    self._idle.remove(process)
                    self._all.remove(process)
                    self._idle_since.pop(process, None)
                self.stopped_idle += len(stale)
            for process in stale:
                log.info("render process %d stopped after %.0f s idle", process.process.pid, self.idle_stop_s)
                process.stop()

    def _start_one(self) -> None:
        """Start a process in the background (caller holds the lock); it joins the idle list once ready."""
        self._starting += 1
        self.started += 1
        threading.Thread(target=self._start, name="process-pool-start", daemon=True).start()

    def _start(self) -> None:
        process = None
        try:
            process = RenderProcess.launch()
            if not process.conn.poll(START_TIMEOUT_S):
                raise RenderProcessError(f"not ready in {START_TIMEOUT_S:.0f} s")
            process.conn.recv()  # EOFError: it exited (its traceback is on stderr)
            log.info("render process %d ready", process.process.pid)
        except Exception as e:
            log.error("a render process could not start: %s", e)
            if process is not None:
                process.stop()
            with self._lock:
                self._starting -= 1
                self._start_error = f"{type(e).__name__}: {e}"
                self._failed_starts += 1
                self._lock.notify_all()
            return
        with self._lock:
            self._starting -= 1
            self._failed_starts = 0
            if self._closed:
                closed = True
            else:
                closed = False
                self._all.append(process)
                self._idle.append(process)
                self._idle_since[process] = time.monotonic()
            self._lock.notify_all()
        if closed:
            process.stop()


_pool: RenderProcessPool | None = None
_pool_lock = threading.Lock()


def render_process_pool(size: int = 0) -> RenderProcessPool:
    """The process's render process pool, made on first use with at most `size` processes (0: one per core,
    at least 4, as the render thread pool); later calls get the same pool."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._closed:
            _pool = RenderProcessPool(pool_size(size))
        return _pool


class ProcessGenerator:
    """A Generator whose windows render in the shared render processes (see the module's docstring)."""

    def __init__(self, backend: str, avatar: Any, threads: int, key: object, pool: RenderProcessPool) -> None:
        self.name = backend
        self.backend = backend
        self.avatar = avatar
        self.threads = threads
        self.key = key  # the avatar's identity: a process builds one generator per key
        self.pool = pool
        self._first: FirstFrame | None = None
        self._local: Any = None  # the generator in this process, once render processes cannot start
        self._lock = threading.Lock()
        self._first_lock = threading.Lock()
        self.emit_alpha = False  # as WarpGenerator's: set when a keyed background needs each frame's alpha
        # Last frames handed out -> (the process that holds them, its token): the next window of the session
        # names its condition by token instead of sending the picture (786 kB at 512x512) back.
        self._tokens: OrderedDict[int, tuple[FirstFrame, RenderProcess, int]] = OrderedDict()

    @property
    def emit_alpha(self) -> bool:
        return self._emit_alpha

    @emit_alpha.setter
    def emit_alpha(self, on: bool) -> None:
        self._emit_alpha = on
        if self._local is not None and hasattr(self._local, "emit_alpha"):
            self._local.emit_alpha = on

    def first_frame(self) -> FirstFrame:
        # One ask at a time: the server's warm-up asks as it starts, and a session that opens meanwhile asked too,
        # found the only process busy building its generator, and started a second one, whose start (~4 s of a
        # core) came out of the new stream's first seconds.
        with self._first_lock:
            if self._first is None:
                try:
                    self._first = self._call(lambda process: self._ask(process, ("first", self.key)))[1]
                except RenderProcessUnavailable as e:
                    self._first = self._fall_back(e).first_frame()
            return self._first

    def render(self, window: MotionWindow, condition: FirstFrame) -> tuple[RenderedWindow, FirstFrame]:
        if self._local is not None:
            return self._local.render(window, condition)
        try:
            return self._render_in_a_process(window, condition)
        except RenderProcessUnavailable as e:
            return self._fall_back(e).render(window, condition)

    def _fall_back(self, e: RenderProcessUnavailable) -> Any:
        """The generator built in this process, once (the stream renders on, as it did before render processes)."""
        from engine.generator import make_generator

        with self._lock:
            if self._local is None:
                log.error("%s; %s renders in the server's own process", e, self.backend)
                self._local = make_generator(self.backend, self.avatar, self.threads)
                if hasattr(self._local, "emit_alpha"):
                    self._local.emit_alpha = self.emit_alpha
            return self._local

    def _render_in_a_process(self, window: MotionWindow, condition: FirstFrame) -> tuple[RenderedWindow, FirstFrame]:
        with self._lock:
            known = self._tokens.get(id(condition))
        held = known if known is not None and known[0] is condition else None

        def run(process: RenderProcess) -> tuple[RenderedWindow, FirstFrame]:
            sent: Any = ("token", held[2]) if held is not None and held[1] is process else condition
            reply = self._ask(process, ("render", self.key, self.emit_alpha, window, sent))
            if reply[0] == "miss":  # the process no longer has that last frame: send the picture
                reply = process.call(("render", self.key, self.emit_alpha, window, condition))
            if reply[0] == "need":
                reply = process.grow(reply[1])
            return self._unpack(process, reply[1])

        return self._call(run, prefer=None if held is None else held[1])

    def _call(self, run: Any, prefer: RenderProcess | None = None) -> Any:
        process = self.pool.acquire(prefer)
        try:
            result = run(process)
        except RenderProcessError:
            self.pool.release(process, broken=True)
            raise
        except BaseException:
            self.pool.release(process)
            raise
        self.pool.release(process)
        return result

    def _ask(self, process: RenderProcess, message: tuple) -> tuple:
        """The process's reply; one that lacks this avatar's generator gets the avatar, then the message again."""
        reply = process.call(message)
        if reply[0] == "unknown":
            process.call(("avatar", self.key, self.backend, self.threads, self.avatar), START_TIMEOUT_S)
            reply = process.call(message)
        return reply

    def _unpack(self, process: RenderProcess, reply: WindowReply) -> tuple[RenderedWindow, FirstFrame]:
        assert process.segment is not None, "a window came back before any segment was given"
        # One copy out of the segment, which the process overwrites with its next window.
        data = np.empty(reply.n_bytes, np.uint8)
        data[:] = np.frombuffer(process.segment.buf, np.uint8, reply.n_bytes)
        arrays = {name: view(data, spec) for name, spec in reply.arrays.items()}
        frames = arrays["frames_rgb"]
        rendered = RenderedWindow(reply.start_frame, frames, reply.audio, reply.render_ms, reply.created_t_s,
                                  arrays.get("frames_i420"), arrays.get("alpha_frames"))
        picture = frames[reply.last_picture] if isinstance(reply.last_picture, int) else arrays["last_rgb"]
        last = FirstFrame(reply.last_frame_index, picture, reply.last_controls, reply.last_talking)
        with self._lock:
            self._tokens[id(last)] = (last, process, reply.token)
            while len(self._tokens) > KEEP_CONDITIONS:
                self._tokens.popitem(last=False)
        return rendered, last


__all__ = ["ProcessGenerator", "RenderProcessError", "RenderProcessPool", "RenderProcessUnavailable",
           "render_process_pool"]
