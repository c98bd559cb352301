"""The core of the agent-framework adapters (streaming/agent_stream.py), without a framework: a live stream of the
real warp generator fed like a TTS, read through items(). Where each segment's end lands, what an interrupt cuts."""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.util
import time

import numpy as np
import pytest

from engine.config import EngineConfig
from engine.generator import PreparedAvatar, prepare_avatar
from engine.types import SAMPLE_RATE_HZ
from harness.speech import espeak
from streaming.agent_stream import AgentAvatarStream, SegmentEnd
from streaming.sinks import PacedAudio, PacedFrame


@pytest.fixture(scope="module")
def avatar() -> PreparedAvatar:
    prepared = prepare_avatar(None, 320)
    gc.collect()
    gc.freeze()  # as `serve` does: a full collection would stall the event loop mid-stream
    return prepared


async def read_until(agent: AgentAvatarStream, out: list[tuple[float, object]], stop: asyncio.Event) -> None:
    async for item in agent.items():
        out.append((time.monotonic(), item))
        if stop.is_set():
            return


def speech_of(out: list[tuple[float, object]]) -> np.ndarray:
    """The sound handed out, placed on the stream's clock (zeros where nothing was handed out)."""
    chunks = [i for _, i in out if isinstance(i, PacedAudio)]
    end = max(c.start_sample + len(c.samples) for c in chunks)
    sound = np.zeros(end, np.float32)
    for c in chunks:
        sound[c.start_sample : c.start_sample + len(c.samples)] = c.samples
    return sound


async def test_segment_ends_after_its_sound_and_pictures_keep_coming(avatar: PreparedAvatar) -> None:
    speech = espeak("Hello there, nice to meet you.")
    agent = AgentAvatarStream(avatar, EngineConfig(max_side_px=320))
    out: list[tuple[float, object]] = []
    stop = asyncio.Event()
    await agent.start()
    reader = asyncio.create_task(read_until(agent, out, stop))
    try:
        await asyncio.sleep(0.3)
        for i in range(0, len(speech), 1920):  # 40 ms chunks 5 ms apart, as a TTS streams (8x real time)
            agent.push((speech[i : i + 1920] * 32767).astype(np.int16), SAMPLE_RATE_HZ)
            await asyncio.sleep(0.005)
        agent.end_segment("first")
        await asyncio.sleep(len(speech) / SAMPLE_RATE_HZ + 0.6)
    finally:
        stop.set()
        await agent.aclose()
        await reader
    ends = [(t, i) for t, i in out if isinstance(i, SegmentEnd)]
    assert [i.tag for _, i in ends] == ["first"]
    end = ends[0][1]
    sound = speech_of(out)
    voiced = np.flatnonzero(sound)
    start = voiced[0] - np.flatnonzero(speech)[0]  # where the speech's first sample landed on the clock
    # The end is where the speech's last sample is (espeak's own trailing silence included, the silence that
    # pads the utterance to whole frames not), and it comes after every chunk of that sound.
    assert abs(end.end_sample - (start + len(speech))) <= 48, (end.end_sample, start, len(speech))
    i_end = next(n for n, (_, i) in enumerate(out) if isinstance(i, SegmentEnd))
    assert not any(isinstance(i, PacedAudio) for _, i in out[i_end + 1 :])
    # Only the segment's sound is handed out (no idle silence before or after), all of it.
    assert len(voiced) and abs(len(sound) - end.end_sample) < 960
    assert agent.stats.audio_muted == 0 and agent.stats.dropped == 0
    # No silence written into the speech: a first chunk shorter than the session's read lag is held (START_BUFFER_S)
    assert agent.pushed.stats.underruns == 0
    frames = [(t, i) for t, i in out if isinstance(i, PacedFrame)]
    span = frames[-1][0] - frames[0][0]
    assert abs((len(frames) - 1) / span - 48) < 2, (len(frames), span)
    assert [i.frame_index for _, i in frames] == list(range(frames[0][1].frame_index, frames[-1][1].frame_index + 1))


async def test_interrupt_cuts_the_sound_at_once_and_drops_the_segment_end(avatar: PreparedAvatar) -> None:
    speech = espeak("Welcome to the show. Today we are looking at a brand new camera, and it is very good.")
    agent = AgentAvatarStream(avatar, EngineConfig(max_side_px=320))
    out: list[tuple[float, object]] = []
    stop = asyncio.Event()
    await agent.start()
    reader = asyncio.create_task(read_until(agent, out, stop))
    try:
        agent.push((speech * 32767).astype(np.int16), SAMPLE_RATE_HZ)
        agent.end_segment("long")
        await asyncio.sleep(1.2)
        t_cut = time.monotonic()
        agent.interrupt()
        await asyncio.sleep(0.8)
        agent.push((speech[: SAMPLE_RATE_HZ // 2] * 32767).astype(np.int16), SAMPLE_RATE_HZ)  # speaks again
        agent.end_segment("again")
        await asyncio.sleep(1.2)
    finally:
        stop.set()
        await agent.aclose()
        await reader
    assert [i.tag for _, i in out if isinstance(i, SegmentEnd)] == ["again"]
    heard = [(t, i) for t, i in out if isinstance(i, PacedAudio)]
    assert any(t < t_cut for t, _ in heard)
    # Nothing of the interrupted segment after the cut: the next sound handed out is the new segment's,
    # which starts after the cut on the clock.
    after = [i for t, i in heard if t >= t_cut]
    assert after and min(i.start_sample for i in after) >= max(i.start_sample for t, i in heard if t < t_cut)
    gap = [t for t, _ in heard if t >= t_cut]
    assert gap[0] - t_cut > 0.7, "sound of the interrupted segment came after the cut"
    assert agent.stats.interrupts == 1 and agent.pushed.stats.samples_dropped > SAMPLE_RATE_HZ


@pytest.mark.parametrize(("module", "package"), [("streaming.pipecat_service", "pipecat"),
                                                 ("streaming.livekit_avatar", "livekit.agents")])
def test_an_adapter_without_its_framework_says_how_to_install_it(module: str, package: str) -> None:
    """The frameworks are optional: the rest of the package imports without them, and an adapter's import
    names the install command (their tests run in the agent venv: tests/test_agent_frameworks.py)."""
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    if spec is not None:
        pytest.skip(f"{package} is installed here")
    with pytest.raises(ImportError, match=r"pip install .*protobuf>=5.29,<7"):
        importlib.import_module(module)


async def test_a_segment_never_ended_stops_sounding_once_played(avatar: PreparedAvatar) -> None:
    """A TTS that never says the segment ended: its sound comes out, then no endless silence after it."""
    speech = espeak("Hello there.")
    agent = AgentAvatarStream(avatar, EngineConfig(max_side_px=320))
    out: list[tuple[float, object]] = []
    stop = asyncio.Event()
    await agent.start()
    reader = asyncio.create_task(read_until(agent, out, stop))
    try:
        agent.push((speech * 32767).astype(np.int16), SAMPLE_RATE_HZ)
        await asyncio.sleep(len(speech) / SAMPLE_RATE_HZ + 1.0)
    finally:
        stop.set()
        await agent.aclose()
        await reader
    chunks = [i for _, i in out if isinstance(i, PacedAudio)]
    assert chunks and not any(isinstance(i, SegmentEnd) for _, i in out)
    heard = sum(len(c.samples) for c in chunks)
    assert len(speech) - 2000 <= heard <= len(speech) + 6000, (heard, len(speech))  # not a second of silence more
