"""The storyline vocabulary (engine/vocabulary.py): every word has its picture, and an unknown word is
refused where text enters (storyline files, a model's reply, beats built from strings), naming the allowed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.blueprint import EMOTION_TARGETS, EXPRESSION_TARGETS, GAZE_TARGETS, Blueprint, head_motion_deg
from engine.director.rules import command_beats, persona_mood
from engine.director.schema import StorylineError, parse_reply, to_storyline
from engine.director.script import load_script
from engine.types import FPS, SAMPLES_PER_FRAME, Control, FeatureFrame, StoryBeat, Storyline
from engine.vocabulary import Emotion, Expression, Gaze, HeadMotion
from tests.director_server import valid_reply


def test_every_word_has_a_blueprint_mapping() -> None:
    assert set(EMOTION_TARGETS) == set(Emotion)
    assert set(EXPRESSION_TARGETS) == set(Expression) and EXPRESSION_TARGETS[Expression.NEUTRAL] == {}
    assert set(GAZE_TARGETS) == set(Gaze) and GAZE_TARGETS[Gaze.CAMERA] == (0.0, 0.0)
    t_s = np.arange(48) / FPS
    for motion in HeadMotion:
        _, degrees = head_motion_deg(motion, t_s, 1.0, 1.0)
        assert (np.abs(degrees).max() > 1.0) == (motion != HeadMotion.IDLE), motion


def test_each_word_moves_the_face_its_own_way() -> None:
    """Through the blueprint: distinct words give distinct controls (a word mapped to nothing would not)."""
    silence = [FeatureFrame(k, 0.0, -100.0, 0.0, np.zeros(SAMPLES_PER_FRAME, np.float32)) for k in range(96)]

    def controls(**beat: object) -> np.ndarray:
        blueprint = Blueprint()
        blueprint.update(Storyline(0, 96, [StoryBeat(0, 96, intensity=1.0, **beat)]))  # type: ignore[arg-type]
        return blueprint.window(silence).controls[72]  # late in the beat: the face has eased into it

    for vocabulary, field, controlled in ((Emotion, "emotion", [Control.SMILE, Control.BROW_RAISE]),
                                          (Expression, "expression", list(Control)),
                                          (Gaze, "gaze", [Control.GAZE_X, Control.GAZE_Y])):
        seen = {tuple(np.round(controls(**{field: word})[controlled], 3)) for word in vocabulary}
        assert len(seen) == len(vocabulary), f"two {vocabulary.label()} words look the same"


def test_a_misspelt_word_in_a_storyline_file_names_the_beat_and_the_allowed_words(tmp_path: Path) -> None:
    show = tmp_path / "show.json"
    show.write_text(json.dumps({"beats": [{"start_s": 0, "end_s": 1, "emotion": "happy"},
                                          {"start_s": 1, "end_s": 2, "emotion": "hapy", "gaze": "camera"}]}))
    with pytest.raises(ValueError) as e:
        load_script(show)
    message = str(e.value)
    assert str(show) in message and "beats[1]: emotion:" in message and "(got 'hapy')" in message
    assert all(repr(word.value) in message for word in Emotion)
    show.write_text(json.dumps({"beats": [{"start_s": 0, "end_s": 1, "head_motion": "spin"}]}))
    with pytest.raises(ValueError, match=r"beats\[0\]: head_motion: Input should be 'idle', 'nod', 'shake', 'tilt'"):
        load_script(show)


def test_storyline_files_become_enum_members(tmp_path: Path) -> None:
    show = tmp_path / "show.json"
    show.write_text(json.dumps({"beats": [{"start_s": 0, "end_s": 1, "expression": "raised_brows", "gaze": "left"},
                                          {"start_s": 1, "end_s": 2, "emotion": "", "expression": ""}]}))
    first, second = load_script(show)
    assert first.emotion is None, "an emotion left out keeps the mood under the beat"
    assert (first.expression, first.gaze, first.head_motion) == (Expression.RAISED_BROWS, Gaze.LEFT, HeadMotion.IDLE)
    assert (second.emotion, second.expression) == (None, Expression.NEUTRAL)  # "" as older files wrote it


def test_a_model_reply_with_an_unknown_word_is_rejected_naming_the_allowed_words() -> None:
    beat = valid_reply(1)["beats"][0]
    with pytest.raises(StorylineError, match="emotion 'furious' is not one of: neutral, happy, excited, calm"):
        parse_reply(json.dumps({"beats": [{**beat, "emotion": "furious"}]}))
    with pytest.raises(StorylineError, match="gaze 'ceiling' is not one of: camera, left, right, up, down, product"):
        parse_reply(json.dumps({"beats": [{**beat, "gaze": "ceiling"}]}))
    with pytest.raises(StorylineError, match=r"first at beats\.0\.head_motion"):
        parse_reply(json.dumps({"beats": [{**beat, "head_motion": 3}]}))  # not a word at all
    line = to_storyline(parse_reply(json.dumps({"beats": [{**beat, "emotion": "Surprised", "gaze": " LEFT"}]})), 0, 96)
    mood = next(b for b in line.beats if not b.blink)
    assert (mood.emotion, mood.gaze) == (Emotion.SURPRISED, Gaze.LEFT) and isinstance(mood.emotion, Emotion)


def test_beats_built_from_strings_are_checked_at_once() -> None:
    beat = StoryBeat(0, 48, emotion="happy", head_motion="nod", expression="smile", gaze="product")
    assert (beat.emotion, beat.head_motion, beat.expression, beat.gaze) == ("happy", "nod", "smile", "product")
    assert isinstance(beat.emotion, Emotion) and isinstance(beat.gaze, Gaze)
    assert StoryBeat(0, 48, emotion="").emotion is None and StoryBeat(0, 48, expression="").expression == "neutral"
    with pytest.raises(ValueError, match="emotion 'hapy' is not one of: neutral, happy"):
        StoryBeat(0, 48, emotion="hapy")
    with pytest.raises(ValueError, match="head motion 'spin' is not one of: idle, nod, shake, tilt, turn"):
        StoryBeat(0, 48, head_motion="spin")


def test_the_rule_director_speaks_the_vocabulary() -> None:
    beats = command_beats("grin, look at the product, tilt your head and look surprised", 0)
    assert {(b.emotion, b.expression) for b in beats} >= {(Emotion.HAPPY, Expression.GRIN),
                                                          (Emotion.SURPRISED, Expression.RAISED_BROWS)}
    assert {b.gaze for b in beats} >= {Gaze.PRODUCT} and {b.head_motion for b in beats} >= {HeadMotion.TILT}
    assert all(isinstance(b.expression, Expression) for b in beats)
    assert persona_mood("a calm late-night host") == (Emotion.CALM, 0.5)
