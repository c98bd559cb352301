"""A stream joins a session, its sources and its sinks, and closes them in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.metrics import SessionMetrics
from engine.session import AvatarSession
from streaming.pacer import PacerMetrics
from streaming.sources import FileSource
from streaming.stream import AvatarStream
from tests.conftest import write_wav
from tests.fakes import FakeGenerator
from tests.test_pacer import Recorder
from tests.test_session import avatar, speechlike


def test_a_looping_file_source_keeps_a_live_stream_talking(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "short.wav", speechlike(0.5))
    steps: list[str] = []

    async def run() -> tuple[AvatarStream, Recorder, dict]:
        stream = AvatarStream(AvatarSession(avatar(), EngineConfig(), live=True, session_id="loop"))
        rec = Recorder()
        stream.add_sink(rec)
        stream.on_closed(lambda s: steps.append(f"closed listener, session closed: {s.session.closed}"))

        async def transport_close() -> None:
            steps.append(f"transport, session closed: {stream.session.closed}, sink closed: {rec.closes}")

        stream.close_with(transport_close)
        await stream.start()
        stream.add_source(FileSource(wav, loop=True))
        await asyncio.sleep(2.5)
        info = stream.info()
        await stream.close()
        await stream.close()  # once is enough
        return stream, rec, info

    stream, rec, info = asyncio.run(run())
    # 0.5 s of audio, looped: the session kept getting it for the whole run, a few seconds' backlog ahead.
    assert stream.session.metrics.audio_samples_in >= 2.5 * 48000
    assert rec.sound()[-48000:].std() > 0.02, "the looped file went quiet"
    assert steps == ["closed listener, session closed: False", "transport, session closed: True, sink closed: 1"]
    assert stream.state == "closed"
    for key in ("id", "state", "frames_sent", "frames_repeated", "clock_start_s", "pipeline_delay_s",
                "first_sent_frame", "mic_offset_samples", "windows_rendered", "queue_motion"):
        assert key in info, key
    # The pacer's and the session's counters share one dict: a name both used would hide the pacer's.
    assert info["frames_resynced"] == stream.pacer.metrics.frames_resynced
    assert info["frames_skipped"] == stream.session.metrics.frames_skipped
    assert info["state"] == "streaming" and info["first_sent_frame"] == rec.frames[0].frame_index
    assert info["sinks"]["recorder"]["frames"] > 100


def test_a_file_source_refuses_what_is_not_audio(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("no audio here")
    with pytest.raises(ValueError, match="cannot read audio"):
        FileSource(notes)


def test_a_live_stream_without_sinks_renders_a_few_windows_then_waits_for_one() -> None:
    """A WebRTC peer adds its sink once connected: a client that never connects must not keep a session
    rendering until the connect timeout. The pacer's store fills and back-pressure pauses the renderer;
    the first sink starts the clock's loops, and rendering resumes."""

    async def run() -> tuple[int, int, Recorder]:
        generator = FakeGenerator()
        stream = AvatarStream(AvatarSession(avatar(), EngineConfig(), live=True, session_id="idle",
                                            generator=generator))
        await stream.start()
        await asyncio.sleep(1.5)  # 72 frames of clock time: a running pacer would have asked for all of them
        idle_renders = generator.calls
        rec = Recorder()
        stream.add_sink(rec)
        for _ in range(300):  # bounded: 3 s at most
            if len(rec.frames) >= 48:
                break
            await asyncio.sleep(0.01)
        renders = generator.calls
        await stream.close()
        return idle_renders, renders, rec

    idle_renders, renders, rec = asyncio.run(run())
    # warm-up (2) + the store (24 frames) + the queues between the stages (a few one-frame windows)
    assert idle_renders <= 40, f"{idle_renders} windows rendered with nobody watching"
    assert len(rec.frames) >= 48 and renders > idle_renders + 24
    assert not rec.frames[-1].repeated


def test_pacer_and_session_counters_have_distinct_names() -> None:
    # stream.info() merges both into one dict for /metrics: a shared name would silently hide one of them.
    assert not set(PacerMetrics().as_dict()) & set(SessionMetrics().as_dict())
