"""The reclaimer runs once for a burst of closed sessions, and collects the cycles they leave."""

from __future__ import annotations

import asyncio
import gc
import weakref

from streaming.reclaim import Reclaimer


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


async def test_a_burst_of_closes_reclaims_once_and_frees_their_cycles() -> None:
    gc.disable()  # only the reclaimer may collect here
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        reclaimer = Reclaimer(delay_s=0.05)
        for _ in range(5):
            reclaimer.soon()
        assert gone() is not None and reclaimer.runs == 0
        for _ in range(100):  # bounded: 2 s
            if reclaimer.runs:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # a second run would have come by now
    finally:
        gc.enable()
    assert reclaimer.runs == 1 and gone() is None


async def test_a_cancelled_reclaim_does_not_run() -> None:
    reclaimer = Reclaimer(delay_s=0.01, trim=False)
    reclaimer.soon()
    reclaimer.cancel()
    await asyncio.sleep(0.1)
    assert reclaimer.runs == 0
