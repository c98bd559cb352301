"""A headless Chromium (Debian's build; never `playwright install`) whose fake microphone plays a WAV."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def chromium_args(wav: Path) -> list[str]:
    """Flags that work headless as root with every packet on 127.0.0.1 (media-stack.md)."""
    return [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--allow-loopback-in-peer-connection",  # else Chromium offers no loopback ICE candidate
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",  # the fake microphone plays this WAV, looped
    ]


@contextlib.contextmanager
def chromium_page(user_data_dir: Path, wav: Path, viewport: tuple[int, int] = (1000, 720)) -> Iterator:
    """A Playwright page in a fresh headless Chromium whose microphone plays `wav`."""
    from playwright.sync_api import sync_playwright  # a test extra: only what drives a browser needs it

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(user_data_dir), executable_path=CHROMIUM, headless=True, args=chromium_args(wav),
            viewport={"width": viewport[0], "height": viewport[1]}, timeout=60_000,
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()
