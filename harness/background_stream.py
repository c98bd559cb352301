"""A live WebRTC viewer in a process of its own (harness.webrtc_client.stream_session): a test or benchmark can
load the server from its own process meanwhile without taking the viewer's CPU (or its GIL)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import signal
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

from harness.webrtc_client import stream_session


def _run(url: str, wav: str, out: Connection, stop: Event) -> None:
    from streaming.patches import use_ice_addresses

    use_ice_addresses(["127.0.0.1"])

    async def during(session_id: str) -> None:
        await asyncio.sleep(1.5)  # connected and streaming by then
        out.send(("started", session_id))
        await asyncio.get_running_loop().run_in_executor(None, stop.wait, 600)

    try:
        got, _ = asyncio.run(stream_session(url, Path(wav), duration_s=2.0, during=during, loop=True))
        out.send(("done", got.video_wall_s))
    except Exception as e:
        out.send(("error", f"{type(e).__name__}: {e}"))


class BackgroundStream:
    """Starts streaming at once; started() gives the session id, stop() the receive times of its frames
    (time.monotonic, which is system-wide on Linux: comparable with the caller's)."""

    def __init__(self, url: str, wav: Path) -> None:
        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        self._conn, child = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_run, args=(url, str(wav), child, self._stop), daemon=True)
        self._proc.start()

    def _receive(self, timeout_s: float) -> tuple[str, object]:
        if not self._conn.poll(timeout_s):
            raise TimeoutError(f"the background stream said nothing in {timeout_s} s")
        kind, value = self._conn.recv()
        if kind == "error":
            raise RuntimeError(f"the background stream failed: {value}")
        return kind, value

    def started(self, timeout_s: float = 60.0) -> str:
        kind, value = self._receive(timeout_s)
        assert kind == "started", kind
        return str(value)

    def stop(self, timeout_s: float = 60.0) -> list[float]:
        self._stop.set()
        try:
            kind, value = self._receive(timeout_s)
            assert kind == "done", kind
            return list(value)  # type: ignore[call-overload]
        finally:
            self._proc.join(timeout=10)
            if self._proc.is_alive():
                self._proc.kill()

    def vanish(self) -> None:
        """The viewer is gone without a word, as behind a pulled cable: its process stops (SIGSTOP), so
        its sockets stay open and nothing answers or closes them. Killed for good by kill()."""
        if self._proc.pid is not None:
            os.kill(self._proc.pid, signal.SIGSTOP)

    def kill(self) -> None:
        self._proc.kill()
        self._proc.join(timeout=10)
