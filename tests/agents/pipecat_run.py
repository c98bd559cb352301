"""AvatarVideoService in a real pipecat pipeline, run by pipecat's own runner: a TTS-like source, the avatar,
a sink that notes what comes out. Prints one JSON line (tests/agents/common.report plus pipecat's counts).

    python -m tests.agents.pipecat_run      # in the agent venv: python -m harness.agent_venv

The source speaks a short sentence (TTSStartedFrame, 24 kHz int16 audio faster than real time,
TTSStoppedFrame), waits for its TTSStoppedFrame to come out of the avatar (after its sound), then a long one,
which it interrupts a second or more into its sound, mid-word (the mouth open in the newest picture), the
way pipecat's turn-taking does (broadcast_interruption); a second later it says goodbye, and the pipeline
is ended right after that with an EndFrame queued on the worker: the goodbye still plays out in full.
"""

from __future__ import annotations

import asyncio
import time

from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from streaming.pipecat_service import AvatarVideoService
from tests.agents.common import (
    BYE,
    LONG,
    SHORT,
    TTS_RATE_HZ,
    JawProbe,
    Seen,
    emit,
    report,
    samples_48k,
    setup,
    tts_chunks,
    until_mouth_open,
)


class Sink(FrameProcessor):
    def __init__(self) -> None:
        super().__init__(name="sink")
        self.seen = Seen()
        self.stopped = asyncio.Event()
        self.t_interrupt = float("inf")
        self.sound_started = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        now = time.monotonic()
        if isinstance(frame, OutputImageRawFrame):
            self.seen.frames.append((now, int(frame.metadata["frame_index"])))
            self.seen.sizes.add(tuple(frame.size))
        elif isinstance(frame, TTSAudioRawFrame):
            n = len(frame.audio) // 2
            self.seen.sounds.append((now, int(frame.metadata["start_sample"]), n, 0.0))
            self.sound_started.set()
        elif isinstance(frame, TTSStoppedFrame):
            self.seen.ends.append((now, self.seen.sound_out()))
            self.stopped.set()
        elif isinstance(frame, InterruptionFrame) and direction == FrameDirection.DOWNSTREAM:
            self.t_interrupt = min(self.t_interrupt, now)
        await self.push_frame(frame, direction)


class Tts(FrameProcessor):
    """Speaks like a TTS service: started, audio faster than real time, stopped."""

    def __init__(self, sink: Sink, probe: JawProbe) -> None:
        super().__init__(name="tts")
        self.sink, self.probe = sink, probe
        self.script: asyncio.Task[None] | None = None
        self.timeline: dict[str, float] = {}
        self.worker: PipelineWorker | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, StartFrame):
            self.script = self.create_task(self._speak())

    async def _say(self, text: str) -> int:
        chunks = tts_chunks(text)
        await self.push_frame(TTSStartedFrame())
        for pcm in chunks:
            await self.push_frame(TTSAudioRawFrame(audio=pcm.tobytes(), sample_rate=TTS_RATE_HZ, num_channels=1))
            await asyncio.sleep(0.005)  # ~8x real time
        await self.push_frame(TTSStoppedFrame())
        return samples_48k(chunks)

    async def _speak(self) -> None:
        await asyncio.sleep(1.0)  # the avatar idles first
        self.timeline["short_samples"] = await self._say(SHORT)
        self.timeline["short_pushed_t"] = time.monotonic()
        await asyncio.wait_for(self.sink.stopped.wait(), 10.0)
        self.sink.sound_started.clear()
        self.timeline["long_samples"] = await self._say(LONG)
        await asyncio.wait_for(self.sink.sound_started.wait(), 5.0)
        await asyncio.sleep(1.0)
        await until_mouth_open(self.sink.seen, self.probe)  # mid-word
        self.timeline["interrupt_t"] = time.monotonic()
        await self.broadcast_interruption()
        await asyncio.sleep(1.0)
        self.timeline["sound_before_bye"] = self.sink.seen.sound_out()
        self.timeline["bye_start_t"] = time.monotonic()
        self.timeline["bye_samples"] = await self._say(BYE)
        self.timeline["end_queued_t"] = time.monotonic()
        assert self.worker is not None
        await self.worker.queue_frame(EndFrame())  # at once, as a bot that says goodbye and hangs up


async def main() -> None:
    avatar, config, probe = setup()
    sink = Sink()
    tts = Tts(sink, probe)
    service = AvatarVideoService(avatar, config, generator=probe)
    worker = PipelineWorker(Pipeline([tts, service, sink]), params=PipelineParams(audio_out_sample_rate=48000),
                            idle_timeout_secs=None, enable_rtvi=False)
    tts.worker = worker
    t0 = time.monotonic()
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(runner.run(), 60.0)
    seen = sink.seen
    extra = {"run_s": round(time.monotonic() - t0, 2), **tts.timeline,
             "interrupt_seen_after_s": round(sink.t_interrupt - tts.timeline.get("interrupt_t", 0.0), 4),
             "sound_before_interrupt": seen.sound_out(0.0, sink.t_interrupt),
             "bye_sound": seen.ends[-1][1] - tts.timeline.get("sound_before_bye", 0) if len(seen.ends) > 1 else None,
             "last_frame_after_bye_s": round(seen.frames[-1][0] - tts.timeline.get("bye_start_t", 0.0), 3),
             "stats": vars(service.avatar.stats), "pushed": service.avatar.pushed.stats.as_dict(),
             "late_frames": service.avatar.stream.pacer.metrics.as_dict()}
    emit(report(seen, probe, sink.t_interrupt, extra, until_t=tts.timeline.get("bye_start_t", float("inf"))))


if __name__ == "__main__":
    asyncio.run(main())
