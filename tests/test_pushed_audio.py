"""PushedAudio on a live stream, fed the way a TTS streams: short chunks, faster than real time."""

from __future__ import annotations

import asyncio

from engine.config import EngineConfig
from engine.session import AvatarSession
from engine.types import SAMPLE_RATE_HZ
from streaming.live_stream import ClockSink
from streaming.sources import PushedAudio
from streaming.stream import AvatarStream
from tests.fakes import FakeGenerator
from tests.test_session import avatar, speechlike


async def test_an_utterance_of_short_chunks_plays_without_silence_written_into_it() -> None:
    """40 ms chunks 5 ms apart (8x real time). An utterance used to start where the session reads, which is
    behind the live position: the first chunk ran dry before the second came, and silence went into the
    first word (an underrun). It starts at the live position now, as a microphone's sound would."""
    prepared = avatar()
    session = AvatarSession(prepared, EngineConfig(), live=True, session_id="tts",
                            generator=FakeGenerator())
    stream = AvatarStream(session)
    stream.add_sink(ClockSink())
    pushed = PushedAudio()
    stream.add_source(pushed)
    await stream.start()
    try:
        await asyncio.sleep(0.3)  # idle first: the session reads behind the live position
        speech = speechlike(1.5)
        chunk = int(0.04 * SAMPLE_RATE_HZ)
        for i in range(0, len(speech), chunk):
            pushed.push(speech[i : i + chunk], SAMPLE_RATE_HZ)
            await asyncio.sleep(0.005)
        pushed.flush()
        await pushed.wait_backlog_below(0)
    finally:
        await stream.close()
    assert pushed.stats.samples_fed == pushed.stats.samples_in == len(speech)
    assert pushed.stats.underruns == 0, f"{pushed.stats.underruns} underruns: silence written into the utterance"
