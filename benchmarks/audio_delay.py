"""Audio path delay: a frame's last sample arrives -> its features (and lookahead) are ready.

    python -m benchmarks.audio_delay [--seconds 6]

A live session gets espeak-ng speech in real time as a WebRTC peer sends it (20 ms s16 stereo
frames with pts); the session's own timestamps give the delay per frame, for each lookahead.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions

import av
import numpy as np
from rich.console import Console
from rich.table import Table

from engine.config import EngineConfig
from engine.generator import prepare_avatar
from engine.session import AvatarSession
from harness.speech import speech_then_silence


async def run(lookahead: int, seconds: float, speech: np.ndarray) -> dict[str, float]:
    session = AvatarSession(prepare_avatar(), EngineConfig(lookahead_frames=lookahead), live=True, session_id="d")
    await session.start()
    consumer = asyncio.create_task(_drain(session))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(int(seconds * 50)):
        pcm = (np.repeat(speech[i * 960 : (i + 1) * 960, None], 2, axis=1) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, i * 960, fractions.Fraction(1, 48000)
        await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 - loop.time()))  # sent when its last sample exists
        session.push_audio_frame(frame)
    consumer.cancel()
    await session.aclose()
    return session.metrics.as_dict()


async def _drain(session: AvatarSession) -> None:
    async for _ in session.windows():
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=6.0)
    args = ap.parse_args()
    speech = speech_then_silence(0.5, args.seconds - 1.0, 0.5)
    table = Table(title="audio path delay (sample arrives -> features ready), live session, real-time input")
    for col in ("lookahead (frames)", "mean (ms)", "max (ms)", "max (frames)", "target"):
        table.add_column(col, justify="right")
    for lookahead in (0, 1, 2):
        m = asyncio.run(run(lookahead, args.seconds, speech))
        worst = m["audio_path_delay_ms_max"]
        table.add_row(str(lookahead), f"{m['audio_path_delay_ms_mean']:.1f}", f"{worst:.1f}",
                      f"{worst / (1000 / 48):.2f}", "<= 2 frames" + (" PASS" if worst <= 2000 / 48 else " FAIL"))
    Console().print(table)


if __name__ == "__main__":
    main()
