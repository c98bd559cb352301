"""What the tests and the benchmarks share: a real server process on 127.0.0.1 (server), speech made
by espeak-ng (speech), a real aiortc peer (webrtc_client), one in a process of its own
(background_stream), headless Chromium (browser), where the default avatar's mouth is (faces) and
fuzzing inputs (fuzz). Nothing here is part of the engine."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
