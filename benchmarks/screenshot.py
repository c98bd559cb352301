"""Screenshot of the web client streaming, for the README.

    python -m benchmarks.screenshot --out docs/screenshot.png

Starts the server on a free 127.0.0.1 port, opens the page in headless Chromium whose fake
microphone plays espeak-ng speech, presses Start, waits, and saves a PNG of the page.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from harness.browser import chromium_page
from harness.server import start_server, stop_server
from harness.speech import speech_then_silence, write_wav


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/screenshot.png", help="PNG to write")
    p.add_argument("--wait", type=float, default=6.0, help="seconds to stream before the shot")
    p.add_argument("--width", type=int, default=960)
    p.add_argument("--height", type=int, default=740)
    args = p.parse_args(argv)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="avatar-shot-") as tmp_name:
        tmp = Path(tmp_name)
        # Speech from the start and looped by Chromium, so the mouth is moving in the shot.
        wav = write_wav(tmp / "mic.wav", speech_then_silence(0.3, 8.0, 0.3))
        server = start_server(tmp)
        try:
            with chromium_page(tmp / "profile", wav, viewport=(args.width, args.height)) as page:
                page.goto(server.url + "/", timeout=15_000)
                page.click("#start")
                page.wait_for_function("() => window.avatarStats.state === 'streaming'", timeout=30_000)
                page.wait_for_timeout(args.wait * 1000)
                stats = page.evaluate("() => ({...window.avatarStats})")
                page.screenshot(path=str(out))
                page.click("#stop")
                page.wait_for_function("() => window.avatarStats.state === 'closed'", timeout=10_000)
        except Exception:
            print(server.log()[-4000:], file=sys.stderr)
            raise
        finally:
            stop_server(server)
    print(f"{out}: {stats['width']}x{stats['height']} at {stats['fps']} fps, "
          f"rtt {stats['rttMs']} ms, state {stats['state']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
