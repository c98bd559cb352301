"""A session stage's failures: counted, logged without flooding the log, and a reason to report while they last.

A stage that raises on one frame or window is given a stand-in for it (the session decides which) and
tries again on the next; after DEGRADED_AFTER failures in a row the session reports itself degraded
(`error` in /api/sessions) and keeps streaming; one success clears it.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

DEGRADED_AFTER = 48  # failures in a row (1 s of one-frame windows) before the session says so
LOG_EVERY_S = 10.0  # after the first failure (logged with its traceback), one summary line at most this often


class StageFaults:
    def __init__(self, stage: str, session_id: str = "", what: str = "frame") -> None:
        self.stage = stage
        self.session_id = session_id
        self.what = what  # what it fails on: "frame", "window"
        self.failures = 0
        self.in_a_row = 0
        self.degraded: str | None = None
        self._last_log_s = 0.0
        self._unlogged = 0

    def failed(self, e: Exception) -> None:
        self.failures += 1
        self.in_a_row += 1
        now = time.monotonic()
        if self.failures == 1:
            log.error("session %s: stage %s failed; a stand-in %s is used and the next one tries again",
                      self.session_id, self.stage, self.what, exc_info=e)
            self._last_log_s = now
        elif now - self._last_log_s >= LOG_EVERY_S:
            log.warning("session %s: stage %s failed %d more times (%d in a row): %s: %s", self.session_id,
                        self.stage, self._unlogged + 1, self.in_a_row, type(e).__name__, e)
            self._last_log_s, self._unlogged = now, 0
        else:
            self._unlogged += 1
        if self.in_a_row >= DEGRADED_AFTER and self.degraded is None:
            self.degraded = (f"{self.stage} failing ({self.in_a_row} {self.what}s in a row): "
                             f"{type(e).__name__}: {e}")
            log.error("session %s: degraded: %s", self.session_id, self.degraded)

    def ok(self) -> None:
        if self.in_a_row == 0:
            return
        if self.degraded is not None:
            log.warning("session %s: stage %s recovered after %d failed %ss", self.session_id, self.stage,
                        self.in_a_row, self.what)
        self.in_a_row, self.degraded = 0, None
