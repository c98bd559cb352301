"""How late the server's event loop wakes up: every session's pacing, audio and signaling share it,
so a stall here is a late frame there. Exposed in /metrics and /api/sessions."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass


@dataclass
class LoopLag:
    ticks: int = 0
    lag_ms_max: float = 0.0
    lags_over_10ms: int = 0
    lags_over_20ms: int = 0  # a share of ticks under 1% here: lag p99 < 20 ms (benchmarks/load.py)
    lags_over_30ms: int = 0  # longer than the default slack of a window: frames go late


class LoopMonitor:
    """Sleeps period_s at a time and counts how much later than asked it wakes."""

    def __init__(self, period_s: float = 0.01) -> None:
        self.period_s = period_s
        self.lag = LoopLag()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(self.period_s)
            lag_ms = (time.monotonic() - t0 - self.period_s) * 1000.0
            lag = self.lag
            lag.ticks += 1
            lag.lag_ms_max = max(lag.lag_ms_max, lag_ms)
            lag.lags_over_10ms += lag_ms > 10.0
            lag.lags_over_20ms += lag_ms > 20.0
            lag.lags_over_30ms += lag_ms > 30.0

    def as_dict(self) -> dict[str, float]:
        return {f"event_loop_{k}": v for k, v in asdict(self.lag).items()}
