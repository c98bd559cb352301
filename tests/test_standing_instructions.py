"""Standing instructions: "keep smiling the whole time" holds until replaced; a one-off "smile" is a beat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.blueprint import Blueprint
from engine.director.base import DirectorContext
from engine.director.rules import RuleDirector, persona_standing, read_instruction
from engine.types import FPS, Control, FeatureFrame, Storyline
from engine.vocabulary import Emotion, Expression

HORIZON = 4 * FPS  # the scheduler's default plan_horizon_s
KEEP_SMILING = "Keep a big warm smile the whole time."


def plans_over(seconds: int, instructions: dict[float, str], persona: str = "") -> list[Storyline]:
    """The rule director re-planning once a second, as the scheduler does; instructions by arrival second."""
    director = RuleDirector(seed=3)
    plans = []
    for second in range(seconds):
        start = second * FPS
        new = [text for at, text in instructions.items() if second <= at < second + 1]
        plans.append(director.plan_now(DirectorContext(start, start + HORIZON, persona=persona, new_instructions=new)))
    return plans


def shown(plans: list[Storyline]) -> np.ndarray:
    """The controls a silent session shows: each plan committed at once for its first second (N, N_CONTROLS)."""
    bp = Blueprint()
    silent = [FeatureFrame(k, 0.0, -100.0, 0.0, np.zeros(1000, np.float32)) for k in range(len(plans) * FPS + 8)]
    out = []
    for plan in plans:
        bp.update(plan)
        start = plan.planned_from_frame
        out += [bp.window(silent[k : k + 4], silent[k + 4 : k + 5]).controls for k in range(start, start + FPS, 4)]
    return np.concatenate(out)


@pytest.mark.parametrize("how", ["instruction", "persona"])
def test_keep_smiling_holds_in_every_plan_for_30_s(how: str) -> None:
    plans = (plans_over(30, {0: KEEP_SMILING}) if how == "instruction"
             else plans_over(30, {}, persona=KEEP_SMILING))
    for plan in plans:
        start, end = plan.planned_from_frame, plan.planned_to_frame
        held = [b for b in plan.beats if b.expression == Expression.SMILE and b.emotion == Emotion.HAPPY
                and b.start_frame <= start and b.end_frame >= end]
        assert held, f"the plan from {start / FPS:.0f} s does not carry the smile: {[str(b) for b in plan.beats]}"
    smile = shown(plans)[:, Control.SMILE]
    assert smile[FPS:].min() > 0.9, "the smile eases in within a second, then holds for the whole 30 s"


def test_a_one_off_smile_ends_after_its_beat() -> None:
    plans = plans_over(30, {0: "smile"})
    smile = shown(plans)[:, Control.SMILE]
    assert smile[FPS : 2 * FPS].min() > 0.5, "the command shows at once"
    assert smile[5 * FPS :].max() < 0.05, "and is gone two seconds after its 3 s beat"
    assert all(b.expression != Expression.SMILE for plan in plans[4:] for b in plan.beats)


def test_a_new_standing_instruction_replaces_the_old_and_a_release_ends_it() -> None:
    plans = plans_over(30, {0: "Keep smiling the whole time", 8: "From now on, look serious", 12: "smile",
                            20: "Always grin", 25: "Stop smiling."})
    c = shown(plans)
    smile, brow, width = c[:, Control.SMILE], c[:, Control.BROW_RAISE], c[:, Control.MOUTH_WIDTH]
    assert smile[2 * FPS : 8 * FPS].min() > 0.9
    assert smile[10 * FPS : 12 * FPS].max() < 0.1 and brow[10 * FPS : 12 * FPS].max() < -0.2, "serious replaced it"
    assert smile[13 * FPS : 15 * FPS].min() > 0.5, "a one-off smile over the standing mood ..."
    assert smile[17 * FPS : 20 * FPS].max() < 0.1 and brow[17 * FPS : 20 * FPS].max() < -0.2, "... ends in it"
    assert smile[22 * FPS : 25 * FPS].min() > 0.9 and width[22 * FPS : 25 * FPS].min() > 0.2, "the grin holds"
    assert np.abs(c[27 * FPS :, [Control.SMILE, Control.BROW_RAISE, Control.MOUTH_WIDTH]]).max() < 0.05, "released"


@pytest.mark.parametrize("text", ["Keep smiling", "Always smile at them", "Smile the whole time",
                                  "From now on, smile", "Smile all the time", "Smile throughout the show",
                                  "Stay happy", "Remain cheerful"])
def test_standing_words(text: str) -> None:
    reading = read_instruction(text, 96)
    assert reading.mood is not None and reading.mood.expression == Expression.SMILE and not reading.beats
    assert not reading.release


@pytest.mark.parametrize(("text", "mood"), [("Smile!", None), ("nod and keep going", None),
                                            ("Stop smiling", Emotion.NEUTRAL), ("neutral face please", Emotion.NEUTRAL),
                                            ("Relax.", Emotion.NEUTRAL), ("Stay relaxed from now on", Emotion.CALM)])
def test_one_offs_and_releases(text: str, mood: Emotion | None) -> None:
    reading = read_instruction(text, 96)
    assert (reading.mood.emotion if reading.mood else None) == mood
    if mood is not None:
        assert reading.release or mood != Emotion.NEUTRAL
        assert all(b.expression == Expression.NEUTRAL for b in reading.beats), "a release starts no smile"
    else:
        assert reading.beats and all(b.end_frame - b.start_frame <= 3 * FPS for b in reading.beats)


def test_a_persona_without_standing_words_keeps_its_mild_mood() -> None:
    assert persona_standing("a cheerful host") == persona_standing("a friendly host")
    mild = persona_standing("a cheerful host")
    assert (mild.emotion, mild.intensity, mild.expression) == (Emotion.HAPPY, 0.4, Expression.NEUTRAL)
    keep = persona_standing("a calm host who keeps a big smile the whole time")
    assert (keep.emotion, keep.expression) == (Emotion.HAPPY, Expression.SMILE)


def test_keep_smiling_lifts_the_mouth_corners_over_a_whole_rendered_speech(tmp_path: Path) -> None:
    from benchmarks.grounding import STANDING_LIFT_MIN, standing_smile

    # 8 s: its last 3 s start at 5 s, where a one-off smile's 3 s beat has eased out (test_a_one_off_smile_ends_...).
    measured = standing_smile(seconds=8.0, tmp=tmp_path)
    assert measured["tracked"] > 0.95 and measured["frames"] >= 8 * FPS - 10
    assert measured["lift"] >= STANDING_LIFT_MIN, measured
    # Held to the end, not a 3 s beat over a mild persona mood (before standing instructions: 0.024 whole,
    # 0.049 in 1-3 s, 0.015 in the last 3 s).
    assert measured["lift_last_3s"] >= 0.8 * measured["lift_1_3s"], measured
