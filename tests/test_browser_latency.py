"""benchmarks/browser_latency's page-side probe on the real web client: it finds the bursts and its
times are physically possible (the configured pipeline delay is a floor for glass-to-glass)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.browser_latency import PERIOD_S, measure
from engine.config import EngineConfig
from tests.conftest import ServerProcess

pytestmark = pytest.mark.browser

PIPELINE_DELAY_MS = EngineConfig().pipeline_delay_s * 1000  # a microphone sample -> its frame due for output


def test_probe_finds_the_bursts_in_mic_audio_and_video(server: ServerProcess, tmp_path: Path) -> None:
    result, stats0, stats1, page_errors = measure(server.url, 4, tmp_path)
    assert page_errors == [] and result["page_errors"] == []
    assert result["mic_onsets"] >= 3, f"the microphone tap found {result['mic_onsets']} bursts"
    g2g, heard, offsets = result["glass_to_glass_ms"], result["audio_return_ms"], result["av_offset_ms"]
    assert len(g2g) >= 3 and len(heard) >= 3 and len(offsets) >= 3, result["bursts"]
    assert np.isfinite(g2g + heard + offsets).all()
    # A wrong clock mapping (context time vs performance.now()) would land far outside these bounds.
    assert PIPELINE_DELAY_MS - 50 < np.median(g2g) < 1000, g2g
    assert PIPELINE_DELAY_MS - 50 < np.median(heard) < 1000, heard
    # The returned burst heard through Web Audio (context time mapped to performance.now()) and played by
    # the RTP receiver (epoch ms plus the reported playout delay) are two clocks on one event: they agree
    # within the tap's FIFO and render-ahead however loaded the machine. How far the mouth is from the
    # sound is the benchmark's number: a starved Chromium shows -550..+400 ms (seen in CI and under two
    # CPU burners), so the test holds only that it is within a burst period.
    both = [b["heard_ms"] - b["played_ms"] for b in result["bursts"] if "heard_ms" in b and "played_ms" in b]
    assert len(both) >= 3 and abs(np.median(both)) < 100, both
    assert abs(np.median(offsets)) < PERIOD_S * 1000, offsets
    assert result["clock"]["jitter_ms"] < 10, result["clock"]
    assert result["video"]["frames_shown"] > 0
    # the page's getStats() answered for both inbound streams
    assert stats1["inbound-video"]["framesDecoded"] > stats0["inbound-video"]["framesDecoded"]
    assert stats1["inbound-audio"]["jitterBufferEmittedCount"] > stats0["inbound-audio"]["jitterBufferEmittedCount"]
