"""Shared fixtures: a real server process on 127.0.0.1 and speech made by espeak-ng at test time.

The helpers themselves live in harness/ (the benchmarks use them too); the test files import them
from here."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from engine.generator import PreparedAvatar, prepare_avatar
from harness import REPO
from harness.faces import mouth_box
from harness.server import ServerProcess, start_server, stop_server
from harness.speech import espeak, speech_then_silence, write_wav

__all__ = ["REPO", "ServerProcess", "espeak", "mouth_box", "prepared_fresh", "speech_then_silence", "start_server",
           "stop_server", "write_wav"]


@cache
def prepared_fresh(path: Path | None = None) -> PreparedAvatar:
    """A portrait (None: the astronaut) prepared at 720 px by this checkout's code, not read from the disk cache
    (another checkout's code may have filled it): once per test session, since several test files animate the
    same portraits (2-8 s each). Shared: read it, never write into it."""
    return prepare_avatar(path, max_side_px=720, cache_dir=None)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s silence, 4 s speech, 4 s silence, 48 kHz mono WAV."""
    return write_wav(tmp_path_factory.mktemp("audio") / "speech.wav", speech_then_silence(2.0, 4.0, 4.0))
