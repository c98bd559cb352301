"""`avatar-engine live`: one stream on the media clock, from an audio file (looped for a 24/7 show, or played once),
to the outputs given (RTMP, a recording, a canvas), until the audio ends, --duration passes, or Ctrl-C / SIGTERM.

Stopping closes the stream: every sink is closed (a recording is finished, an RTMP push ends its stream) before
the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from engine.generator import PreparedAvatar
from engine.types import SAMPLE_RATE_HZ
from streaming.config import ServerConfig
from streaming.live_stream import OutputsUnavailable, build_session, live_stream, outputs_module, start_live_stream
from streaming.sources import FileSource
from streaming.webrtc import new_session_id

log = logging.getLogger(__name__)
REPORT_EVERY_S = 10.0
TAIL_S = 0.5  # after the audio ends, the last frames (pipeline delay) still go out


def outputs_from_args(args: argparse.Namespace) -> Any:
    """The OutputsSpec of --rtmp/--record/--size/--fit/--background, or None when none is given (ValueError when
    one is wrong, or when this build has no outputs)."""
    given = {"rtmp": args.rtmp or None, "record_dir": args.record, "size": args.size, "fit": args.fit,
             "background": args.background}
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        log.warning("no outputs (--rtmp, --record): the stream runs, but nothing leaves this process")
        return None
    try:
        spec = outputs_module().OutputsSpec.model_validate(given)
        outputs_module().check_files(spec)
        return spec
    except OutputsUnavailable as e:
        raise ValueError(str(e)) from e
    except Exception as e:  # pydantic's ValidationError: name the flag's problem
        raise ValueError(f"bad output options: {e}") from e


class LiveShow:
    def __init__(self, config: ServerConfig, audio: str, *, loop: bool = False, outputs: Any = None,
                 duration_s: float | None = None) -> None:
        self.config, self.audio, self.loop = config, audio, loop
        self.outputs, self.duration_s = outputs, duration_s
        self.source = FileSource(audio, loop=loop)  # decoded now: an unreadable file is refused at once

    async def run(self, avatar: PreparedAvatar) -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        session = await build_session(avatar, self.config, new_session_id())
        live = live_stream(session, self.config, self.source, self.outputs)
        await start_live_stream(live)
        t0 = time.monotonic()
        log.info("live: stream %s on its clock (%s%s)", live.id, self.audio, ", looped" if self.loop else "")
        reason = await self._wait(live, stop, t0)
        await live.stream.close()  # sinks closed: recordings finished, pushes ended
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        metrics = live.stream.pacer.metrics
        return {"frames_sent": metrics.frames_sent, "frames_repeated": metrics.frames_repeated,
                "seconds": time.monotonic() - t0, "reason": reason, "id": live.id}

    async def _wait(self, live: Any, stop: asyncio.Event, t0: float) -> str:
        ring = live.stream.session.ring
        while True:
            timeout = REPORT_EVERY_S
            if self.duration_s is not None:
                timeout = min(timeout, max(0.0, t0 + self.duration_s - time.monotonic()))
            waits = [asyncio.ensure_future(stop.wait())]
            if not self.loop:
                waits.append(asyncio.ensure_future(live.audio_done.wait()))
            done, pending = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            if stop.is_set():
                return "stopped by a signal"
            if live.stream.state == "closed":
                return "the stream failed; see the log"
            if self.duration_s is not None and time.monotonic() - t0 >= self.duration_s:
                return f"--duration {self.duration_s:g} s"
            if live.audio_done.is_set() and not self.loop:
                # The file is all in the session; its last sample goes out when the clock says it is due.
                end_sample, clock = ring.write_cursor, live.stream.session.clock
                while not stop.is_set() and (left_s := clock.sample_due_s(end_sample) + TAIL_S - time.monotonic()) > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), left_s)  # the delay may grow meanwhile: look again
                return "stopped by a signal" if stop.is_set() else "the audio ended"
            if not done:
                m = live.stream.pacer.metrics
                log.info("live: %.0f s, %d frames sent (%d repeated), %.1f s of audio queued", time.monotonic() - t0,
                         m.frames_sent, m.frames_repeated, ring.backlog_samples / SAMPLE_RATE_HZ)
