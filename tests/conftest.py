"""Shared fixtures: a real server process on 127.0.0.1 and speech made by espeak-ng at test time.

The helpers themselves live in harness/ (the benchmarks use them too); the test files import them
from here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import REPO
from harness.faces import mouth_box
from harness.server import ServerProcess, start_server, stop_server
from harness.speech import espeak, speech_then_silence, write_wav

__all__ = ["REPO", "ServerProcess", "espeak", "mouth_box", "speech_then_silence", "start_server", "stop_server",
           "write_wav"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s silence, 4 s speech, 4 s silence, 48 kHz mono WAV."""
    return write_wav(tmp_path_factory.mktemp("audio") / "speech.wav", speech_then_silence(2.0, 4.0, 4.0))
