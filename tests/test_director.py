"""Directors: host commands and persona (rule director), scripted shows (--storyline)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.director.base import DirectorContext
from engine.director.rules import RuleDirector, command_beats, persona_mood
from engine.director.script import load_script
from tests.conftest import REPO, write_wav


def test_commands_become_beats() -> None:
    beats = command_beats("Smile and nod, then look left", 100)
    kinds = {(b.expression, b.head_motion, b.gaze) for b in beats}
    assert ("smile", "idle", "camera") in kinds and ("neutral", "nod", "camera") in kinds
    assert ("neutral", "idle", "left") in kinds
    assert all(b.start_frame == 100 and b.end_frame > 100 for b in beats)
    assert command_beats("tell them about the price", 0) == []


def test_persona_sets_the_mood_and_commands_persist_across_replans() -> None:
    assert persona_mood("an energetic skincare seller") == ("excited", 0.35)
    assert persona_mood("a calm late-night host")[0] == "calm"
    director = RuleDirector(seed=1)
    first = director.plan_now(DirectorContext(0, 192, persona="friendly", new_instructions=["nod"]))
    again = director.plan_now(DirectorContext(24, 216, persona="friendly"))  # re-plan: no new commands
    assert first.beats[0].emotion == "happy"
    assert [b.head_motion for b in again.beats].count("nod") == 1, "a command survives a re-plan once"
    later = director.plan_now(DirectorContext(200, 392))
    assert "nod" not in [b.head_motion for b in later.beats], "and ends when its beat is over"


def test_scripts_are_validated_whole(tmp_path: Path) -> None:
    good = tmp_path / "show.json"
    good.write_text(json.dumps({"beats": [{"start_s": 1, "end_s": 2.5, "emotion": "happy", "head_motion": "nod"}]}))
    (beat,) = load_script(good)
    assert (beat.start_frame, beat.end_frame, beat.emotion, beat.head_motion) == (48, 120, "happy", "nod")
    for bad, message in ((b"{not json", "cannot read"), (json.dumps({"beats": [{"start_s": 2, "end_s": 1}]}), "after"),
                         (json.dumps({"beats": [{"start_s": 0, "end_s": 1, "emotion": "furious"}]}), "emotion"),
                         (json.dumps({"beats": [], "extra": 1}), "invalid storyline")):
        path = tmp_path / "bad.json"
        path.write_bytes(bad if isinstance(bad, bytes) else bad.encode())
        with pytest.raises(ValueError, match=message):
            load_script(path)


def test_render_takes_a_storyline_and_instructions(tmp_path: Path) -> None:
    import numpy as np

    wav = write_wav(tmp_path / "quiet.wav", np.zeros(48000, np.float32))
    show = tmp_path / "show.json"
    show.write_text(json.dumps({"beats": [{"start_s": 0.2, "end_s": 0.8, "expression": "smile"}]}))
    run = [sys.executable, str(REPO / "server.py"), "render", "--audio", str(wav), "--out", str(tmp_path / "o.mp4"),
           "--storyline", str(show), "--instructions", "a cheerful host; nod"]
    result = subprocess.run(run, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    show.write_text("[]")
    result = subprocess.run(run, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2 and "invalid storyline" in result.stderr
