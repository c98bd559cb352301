"""The session's counters: what a rendered window adds up to."""

from __future__ import annotations

import numpy as np
import pytest

from engine.metrics import SessionMetrics
from engine.types import RenderedWindow


def rendered(n: int, render_ms: float) -> RenderedWindow:
    return RenderedWindow(0, np.zeros((n, 2, 2, 3), np.uint8), np.zeros(n * 1000, np.float32), render_ms)


def test_rendered_windows_add_up_and_late_ones_are_counted() -> None:
    m = SessionMetrics()
    m.note_rendered(rendered(4, 8.0), audio_to_window_s=0.03, slack_s=0.02)
    m.note_rendered(rendered(4, 12.0), audio_to_window_s=0.05, slack_s=-0.004)
    m.note_rendered(rendered(4, 10.0), audio_to_window_s=0.01, slack_s=0.03)
    assert (m.windows_rendered, m.frames_rendered, m.windows_late) == (3, 12, 1)
    assert m.render_ms_max == 12.0 and m.render_ms_per_frame == pytest.approx(2.5)
    assert m.audio_to_window_ms_max == pytest.approx(50.0)
    assert m.window_slack_ms_min == pytest.approx(-4.0)
    assert m.as_dict()["window_slack_ms_mean"] == pytest.approx(46 / 3, abs=1e-3)


def test_offline_windows_have_no_slack() -> None:
    m = SessionMetrics()
    m.note_rendered(rendered(8, 5.0), audio_to_window_s=0.0, slack_s=None)
    assert m.windows_late == 0 and m.window_slack_ms_total == 0.0 and m.windows_rendered == 1


def test_audio_written_and_dropped() -> None:
    m = SessionMetrics()
    m.note_audio_written(960, 0)
    m.note_audio_written(960, 200)
    assert (m.audio_samples_in, m.audio_samples_dropped) == (1920, 200)
