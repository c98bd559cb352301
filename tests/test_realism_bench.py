"""The realism benchmark's own parts, without rendering: the real voice it reads, the lag search it
reports, and the contact sheet's mouth crop (benchmarks/realism.py, benchmarks/contact_sheet.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.contact_sheet import mouth_box
from benchmarks.quality import EMBEDDED, PORTRAIT_DIR
from benchmarks.realism import (
    VOICE,
    LipRead,
    best_lag,
    loudness_db,
    main,
    read_voice,
    resolve_portraits,
    results_path,
)
from engine.generator import prepare_avatar
from engine.generator.rig import MOUTH_LEFT, MOUTH_RIGHT
from engine.types import FPS, SAMPLE_RATE_HZ


def test_the_real_voice_is_listed_and_reads_as_speech_with_pauses() -> None:
    sources = (VOICE.parent / "SOURCES.md").read_text()
    for f in VOICE.parent.glob("*.wav"):
        assert f.name in sources
    voice = read_voice()
    assert 14.5 < len(voice) / SAMPLE_RATE_HZ < 16.0
    db = loudness_db(voice, len(voice) // (SAMPLE_RATE_HZ // FPS))
    assert (db > -30).mean() > 0.5, "mostly speech"
    assert (db < db.max() - 30).any(), "with pauses between phrases"


def test_a_shortened_voice_ends_in_a_pause() -> None:
    full, short = read_voice(), read_voice(6.0)
    assert 6.0 <= len(short) / SAMPLE_RATE_HZ <= 7.6
    tail = loudness_db(short[-SAMPLE_RATE_HZ // 20 :], 2)
    assert tail.max() < loudness_db(full, len(full) // 1000).max() - 20


def test_the_lag_search_finds_a_known_delay() -> None:
    rng = np.random.default_rng(0)
    loud = np.convolve(rng.normal(size=400), np.ones(5) / 5, "same")
    for delay in (-2, 0, 1, 3):
        mouth = np.roll(loud, delay) + 0.05 * rng.normal(size=400)  # the mouth `delay` frames after the sound
        r, lag = best_lag(mouth, loud)
        assert lag == delay and r > 0.9


def test_the_mouth_crop_holds_the_mouth_inside_the_picture() -> None:
    avatar = prepare_avatar()
    x0, y0, x1, y1 = mouth_box(avatar.landmarks, *avatar.size)
    w, h = avatar.size
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    for corner in (MOUTH_LEFT, MOUTH_RIGHT):
        x, y = avatar.landmarks[corner]
        assert x0 < x < x1 and y0 < y < y1


def test_portraits_by_name_and_partial_runs_keep_the_tracked_results(tmp_path: Path) -> None:
    hopper = str(PORTRAIT_DIR / "hopper.jpg")
    assert resolve_portraits(["hopper", "astronaut", hopper]) == [hopper, EMBEDDED, hopper]
    with pytest.raises(ValueError, match="hopper_lowres_160"):  # an unknown name lists the portraits
        resolve_portraits(["hoper"])
    tracked = results_path(None, quick=False, partial=False, tmp=tmp_path)
    assert tracked.parts[-3:] == ("docs", "bench", "realism.json")
    assert results_path(None, quick=False, partial=True, tmp=tmp_path) == tmp_path / "realism.json"
    assert results_path(tmp_path / "x.json", quick=True, partial=True, tmp=tmp_path) == tmp_path / "x.json"


def test_the_closed_share_counts_silent_frames_only_and_seeds_must_be_positive() -> None:
    gap = np.array([0.01, 0.05, 0.02, 0.04, 0.2])
    silent = np.array([True, True, True, False, False])  # the two open frames outside silence do not count
    read = LipRead(gap, np.ones(5, bool), silent, np.zeros(5), closed_max=0.03, photo_gap=0.0)
    assert read.closed == 2 / 3
    with pytest.raises(SystemExit):
        main(["--seeds", "0", "--avatar", "hopper"])
