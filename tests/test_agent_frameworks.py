"""The agent-framework adapters with the REAL frameworks (issue 14): pipecat's pipeline and runner drive
streaming/pipecat_service.py; LiveKit Agents' VideoGenerator contract, AvatarRunner, AVSynchronizer and
QueueAudioOutput drive streaming/livekit_avatar.py (no LiveKit server: only the room is a stand-in).

The frameworks need protobuf >= 5 where mediapipe 0.10.21 declares < 5, so they live in a venv of their own
over this environment's packages (harness/agent_venv.py: built once, ~20 s, then reused; .ci/run builds it
first). Each run is a script in that venv (tests/agents/*_run.py) that prints its measurements as JSON; the
judging is here. Set AVATAR_ENGINE_AGENT_TEST=0 to skip them on a machine without PyPI access.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.agent_venv import AgentVenvUnavailable, ensure_agent_venv, run_in_agent_venv

ROOT = Path(__file__).resolve().parent.parent
FPS_RANGE = (46.0, 50.0)  # 48 fps on the media clock, measured over a few seconds of a loaded 2-core machine
# Frames from the interrupt to a closed mouth: what was rendered ahead (the pipeline delay, 80 ms = 4 frames unless a
# busy machine raised it, + pushed audio fed 60 ms = 3 frames ahead) and two windows (1 frame each unless the
# session lengthened them), with 3 frames of slack: 12 at the defaults.
FED_AHEAD_FRAMES, CLOSE_SLACK_FRAMES = 3, 3
# Sound and picture in step: sound at most 45 ms ahead of its picture (ITU-R BT.1359's threshold of detection for
# sound leading) and 60 ms behind it.
AV_SKEW_S = (-0.045, 0.06)
PAD_SAMPLES = 5_000  # silence PushedAudio may write into an utterance whose TTS stalls (a ran-dry pause)


@pytest.fixture(scope="module")
def agent_venv() -> Path:
    if os.environ.get("AVATAR_ENGINE_AGENT_TEST", "1") == "0":
        pytest.skip("AVATAR_ENGINE_AGENT_TEST=0")
    t0 = time.monotonic()
    try:
        python = ensure_agent_venv()
    except AgentVenvUnavailable as e:
        pytest.fail(f"the agent-framework venv could not be built: {e}")
    print(f"\n[agents] venv ready in {time.monotonic() - t0:.1f} s")
    return python


def run(module: str) -> dict[str, Any]:
    t0 = time.monotonic()
    done = run_in_agent_venv(module, timeout_s=150)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    shown = {k: v for k, v in result.items() if k != "landmarks"}
    print(f"\n[{module}] {time.monotonic() - t0:.1f} s: {json.dumps(shown)}")
    return result


def judge_stream(r: dict[str, Any], segments_ended: int) -> None:
    """What both frameworks must see: 48 fps pictures of every frame slot, sound in step with them, the short
    segment's end after all its sound, and the interrupt honoured (sound cut, mouth closed)."""
    assert FPS_RANGE[0] <= r["fps"] <= FPS_RANGE[1], r["fps"]
    assert r["index_steps"] == [1], r["index_steps"]  # every frame slot, in order
    assert r["sizes"] == [[320, 320]]
    assert r["av_skew_s"] is not None and AV_SKEW_S[0] <= r["av_skew_s"][0] and r["av_skew_s"][1] <= AV_SKEW_S[1], \
        r["av_skew_s"]
    assert len(r["ends"]) == segments_ended, r["ends"]  # the interrupted segment's end never comes
    assert r["short_samples"] - 1000 <= r["ends"][0][1] <= r["short_samples"] + PAD_SAMPLES, r["ends"]
    assert r["jaw_at_interrupt"] is not None and r["jaw_at_interrupt"] > 0.3  # cut mid-word, the mouth open
    stats = r["stats"]
    close_within = (stats["delay_frames_at_interrupt"] + FED_AHEAD_FRAMES + 2 * stats["window_frames_at_interrupt"]
                    + CLOSE_SLACK_FRAMES)
    assert r["interrupt_to_closed_frames"] is not None and r["interrupt_to_closed_frames"] <= close_within, \
        (r["interrupt_to_closed_frames"], stats)
    assert r["sound_after_interrupt_s"] == 0.0
    assert r["stats"]["dropped"] == 0 and r["stats"]["interrupts"] == 1


def test_mediapipe_gives_the_same_answers_under_the_venvs_protobuf(agent_venv: Path) -> None:
    here = subprocess.run([sys.executable, "-m", "tests.agents.mediapipe_run"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert here.returncode == 0, here.stderr[-3000:]
    ours, venv = json.loads(here.stdout.strip().splitlines()[-1]), run("tests.agents.mediapipe_run")
    assert venv["protobuf"].startswith("6.") and ours["protobuf"].startswith("4."), (ours["protobuf"], venv["protobuf"])
    assert len(venv["landmarks"]) == 478 and venv["landmarks"] == ours["landmarks"]
    assert venv["matte_mean"] == pytest.approx(ours["matte_mean"], abs=1e-4) and venv["matte_person"] > 0.2


def test_pipecat_service_in_pipecats_own_pipeline(agent_venv: Path) -> None:
    r = run("tests.agents.pipecat_run")
    judge_stream(r, segments_ended=2)
    # An EndFrame queued right after a goodbye: the goodbye plays out in full (its TTSStoppedFrame after all its
    # sound), then the stream closes.
    assert r["bye_samples"] - 1000 <= r["bye_sound"] <= r["bye_samples"] + PAD_SAMPLES, r
    assert r["last_frame_after_bye_s"] >= r["bye_samples"] / 48000 - 0.05, r  # played on the clock, not cut
    assert r["interrupt_seen_after_s"] < 0.5  # the InterruptionFrame itself passed through the avatar
    assert r["late_frames"]["frames_resynced"] == 0


def test_livekit_video_generator_under_avatar_runner(agent_venv: Path) -> None:
    r = run("tests.agents.livekit_run")
    judge_stream(r, segments_ended=1)
    runner = r["runner"]
    assert runner["published"] == ["avatar_audio", "avatar_video"]
    # The agent's audio output hears that the sentence played to its end, at its length ...
    position, interrupted = runner["first_playback"]
    assert not interrupted and abs(position - runner["short_s"]) < 0.1, runner
    assert runner["first_after_s"] > runner["short_s"] - 0.1  # played on the clock, not as fast as it was pushed
    # ... and that the long one was cut by clear_buffer, at once, 1.5 s into it.
    position, interrupted = runner["second_playback"]
    assert interrupted and 0.8 < position < 2.5 and runner["second_after_clear_s"] < 0.5, runner
    for fps in (runner["av_sync_fps_speaking"], runner["av_sync_fps_idle"]):  # LiveKit's own measure
        assert FPS_RANGE[0] <= fps <= FPS_RANGE[1], runner
