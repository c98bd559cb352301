"""AvatarVideoGenerator under LiveKit Agents' own classes, without a LiveKit server. Prints one JSON line.

    python -m tests.agents.livekit_run      # in the agent venv: python -m harness.agent_venv

1. The VideoGenerator contract, driven directly: rtc.AudioFrames of a short sentence (24 kHz, 40 ms, faster
   than real time) and AudioSegmentEnd; then a long one, cut by clear_buffer()
   a second or more into its sound, mid-word (the mouth open in the newest picture).
   What the iteration yields is noted (tests/agents/common.report).
2. The package's AvatarRunner with its AVSynchronizer, rtc.AudioSource and rtc.VideoSource (the native
   FFI, no server), fed by its QueueAudioOutput as an agent's audio output: capture_frame + flush for a
   sentence -> playback_finished (not interrupted, at the sentence's length); then a long one cut by
   clear_buffer() -> playback_finished (interrupted). Only the room is a stand-in (a LiveKit server
   cannot run here): it says it is connected and publishes tracks to nowhere.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, AvatarRunner, QueueAudioOutput

from engine.types import SAMPLE_RATE_HZ
from streaming.livekit_avatar import AvatarVideoGenerator, avatar_options
from streaming.sinks import PacedFrame
from tests.agents.common import (
    LONG,
    SHORT,
    TTS_RATE_HZ,
    Seen,
    emit,
    report,
    samples_48k,
    setup,
    tts_chunks,
    until_mouth_open,
)


def audio_frames(text: str) -> tuple[list[rtc.AudioFrame], int]:
    chunks = tts_chunks(text)
    return [rtc.AudioFrame(c.tobytes(), TTS_RATE_HZ, 1, len(c)) for c in chunks], samples_48k(chunks)


class NotedGenerator(AvatarVideoGenerator):
    """Notes which stream frame each yielded rtc.VideoFrame is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.indices: list[int] = []

    def video_frame(self, frame: PacedFrame) -> rtc.VideoFrame:
        self.indices.append(frame.frame_index)
        return super().video_frame(frame)


async def contract(avatar: Any, config: Any, probe: Any) -> dict[str, Any]:
    gen = NotedGenerator(avatar, config, generator=probe)
    seen = Seen()
    segment_ended = asyncio.Event()
    sounding = asyncio.Event()

    async def read() -> None:
        async for item in gen:
            now = time.monotonic()
            if isinstance(item, rtc.VideoFrame):
                seen.frames.append((now, gen.indices[-1]))
                seen.sizes.add((item.width, item.height))
            elif isinstance(item, rtc.AudioFrame):
                seen.sounds.append((now, int(item.userdata["start_sample"]), item.samples_per_channel, 0.0))
                sounding.set()
            elif isinstance(item, AudioSegmentEnd):
                seen.ends.append((now, seen.sound_out()))
                segment_ended.set()

    reader = asyncio.create_task(read())
    await asyncio.sleep(1.0)
    short, short_samples = audio_frames(SHORT)
    for f in short:
        await gen.push_audio(f)
        await asyncio.sleep(0.005)
    await gen.push_audio(AudioSegmentEnd())
    await asyncio.wait_for(segment_ended.wait(), 10.0)
    sounding.clear()
    long, _ = audio_frames(LONG)
    for f in long:
        await gen.push_audio(f)
    await gen.push_audio(AudioSegmentEnd())
    await asyncio.wait_for(sounding.wait(), 5.0)
    await asyncio.sleep(1.0)
    await until_mouth_open(seen, probe)  # mid-word
    t_interrupt = time.monotonic()
    gen.clear_buffer()
    await asyncio.sleep(1.5)
    await gen.aclose()
    await asyncio.wait_for(reader, 5.0)
    return report(seen, probe, t_interrupt, {"short_samples": short_samples, "stats": vars(gen.avatar.stats)})


class Publication:
    async def wait_for_subscription(self) -> None:
        return None


class Participant:
    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish_track(self, track: rtc.LocalTrack, options: rtc.TrackPublishOptions) -> Publication:
        self.published.append(track.name)
        return Publication()


class RoomStandIn:
    """What AvatarRunner asks of a room, connected to nothing."""

    def __init__(self) -> None:
        self.local_participant = Participant()

    def isconnected(self) -> bool:
        return True

    def on(self, *_: Any) -> None:
        return None

    def off(self, *_: Any) -> None:
        return None


async def runner(avatar: Any, config: Any, probe: Any) -> dict[str, Any]:
    options = avatar_options(avatar)
    gen = AvatarVideoGenerator(avatar, config, generator=probe)
    agent_output = QueueAudioOutput(sample_rate=SAMPLE_RATE_HZ)
    room = RoomStandIn()
    avatar_runner = AvatarRunner(room, audio_recv=agent_output, video_gen=gen, options=options)  # type: ignore[arg-type]
    finished: list[tuple[float, float, bool]] = []
    agent_output.on("playback_finished",
                    lambda ev: finished.append((time.monotonic(), ev.playback_position, ev.interrupted)))
    await avatar_runner.start()
    await asyncio.sleep(0.5)
    short, short_samples = audio_frames(SHORT)
    t0 = time.monotonic()
    for f in short:  # the agent's TTS output, faster than real time
        await agent_output.capture_frame(f)
    agent_output.flush()
    first = await asyncio.wait_for(agent_output.wait_for_playout(), 15.0)
    t_short = time.monotonic() - t0
    fps_speaking = avatar_runner.av_sync.actual_fps
    long, _ = audio_frames(LONG)
    for f in long:
        await agent_output.capture_frame(f)
    agent_output.flush()
    await asyncio.sleep(1.5)
    t_clear = time.monotonic()
    agent_output.clear_buffer()
    second = await asyncio.wait_for(agent_output.wait_for_playout(), 5.0)
    t_second = time.monotonic() - t_clear
    await asyncio.sleep(1.0)
    fps_idle = avatar_runner.av_sync.actual_fps
    await avatar_runner.aclose()
    await gen.aclose()
    return {"published": room.local_participant.published, "short_s": short_samples / SAMPLE_RATE_HZ,
            "first_playback": [round(first.playback_position, 3), first.interrupted],
            "first_after_s": round(t_short, 3),
            "second_playback": [round(second.playback_position, 3), second.interrupted],
            "second_after_clear_s": round(t_second, 4), "finished_events": len(finished),
            "av_sync_fps_speaking": round(fps_speaking, 2), "av_sync_fps_idle": round(fps_idle, 2),
            "stats": vars(gen.avatar.stats)}


async def main() -> None:
    avatar, config, probe = setup()
    result = await contract(avatar, config, probe)
    result["runner"] = await runner(avatar, config, probe)
    emit(result)


if __name__ == "__main__":
    asyncio.run(main())
