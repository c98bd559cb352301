"""The event-loop lag monitor sees a blocked loop."""

from __future__ import annotations

import asyncio
import time

from streaming.loop_monitor import LoopMonitor


def test_a_blocked_event_loop_is_counted() -> None:
    async def scenario() -> dict[str, float]:
        monitor = LoopMonitor(period_s=0.005)
        monitor.start()
        await asyncio.sleep(0.05)
        time.sleep(0.06)  # noqa: ASYNC251 -- on purpose: a synchronous 60 ms step, as a slow stage would do
        await asyncio.sleep(0.05)
        await monitor.stop()
        return monitor.as_dict()

    lag = asyncio.run(scenario())
    assert lag["event_loop_ticks"] > 5
    assert lag["event_loop_lags_over_30ms"] >= 1 and lag["event_loop_lag_ms_max"] >= 40
