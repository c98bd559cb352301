"""What the tests and the benchmarks share: a real server process on 127.0.0.1 (server), speech made
by espeak-ng (speech), a real aiortc peer (webrtc_client), headless Chromium (browser) and where the
default avatar's mouth is (faces). Nothing here is part of the engine."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
