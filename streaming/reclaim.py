"""Giving a closed session's memory and threads back, promptly rather than whenever the collector gets to it.

A closed session leaves reference cycles (aiortc's peer connection, its transports and PyAV codec
contexts refer to each other). Until a full collection finds them they hold their buffers and the
VP8 encoder's own threads; with the long-lived start-up objects frozen (server.py) full collections
come rarely. A second after sessions close (debounced: one run for a burst of closes) the reclaimer
collects them, then asks glibc to return freed heap pages to the OS (malloc_trim), measured to matter.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[], None] | None:
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    return None if trim is None else (lambda: trim(0))


class Reclaimer:
    def __init__(self, delay_s: float = 1.0, trim: bool = True) -> None:
        self.delay_s = delay_s
        self._trim = _malloc_trim() if trim else None
        self._pending: asyncio.TimerHandle | None = None
        self.runs = 0
        self.last_ms = 0.0  # how long the last run held the event loop

    def soon(self) -> None:
        """A session closed: reclaim in delay_s (once for all closes until then)."""
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(self.delay_s, self._run)

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _run(self) -> None:
        self._pending = None
        t0 = time.perf_counter()
        found = gc.collect()
        self.runs += 1
        self.last_ms = (time.perf_counter() - t0) * 1000.0
        log.debug("reclaimed %d objects in %.1f ms", found, self.last_ms)
        if self._trim is not None:
            # ctypes lets go of the GIL for the call: trimming walks the heap on a worker, not on the loop.
            asyncio.get_running_loop().run_in_executor(None, self._trim)
