"""The blueprint turns features and the storyline into rig controls."""

from __future__ import annotations

import numpy as np

from engine.blueprint import LIPS_TOGETHER_JAW, Blueprint, idle_head_deg
from engine.idle import IdleMotion
from engine.types import FPS, Control, FeatureFrame, StoryBeat, Storyline


def frame(k: int, db: float, voiced: bool, vowel: int = 0) -> FeatureFrame:
    visemes = np.zeros(5, np.float32)
    visemes[vowel] = 1.0
    return FeatureFrame(k, 10 ** (db / 20), db, 1.0 if voiced else 0.0, np.zeros(1000, np.float32),
                        visemes=visemes)


def controls_for(frames: list[FeatureFrame], beats: list[StoryBeat] | None = None) -> np.ndarray:
    bp = Blueprint()
    bp.update(Storyline(0, len(frames) + 8, beats or []))
    out = []
    for i in range(0, len(frames), 4):
        out.append(bp.window(frames[i : i + 4], frames[i + 4 : i + 5]).controls)
    return np.concatenate(out)


def test_stressed_syllables_nod_and_silence_does_not() -> None:
    # 1 s of silence, then speech at -30 dB with one syllable 10 dB louder at frame 80.
    frames = [frame(k, -90, False) for k in range(48)]
    frames += [frame(k, -30 + 2 * np.sin(k), True) for k in range(48, 120)]
    frames[80] = frame(80, -18, True)
    c = controls_for(frames)
    nod = c[:, Control.HEAD_PITCH] - idle_head_deg(np.arange(len(frames)))[:, 1]
    assert np.abs(nod[:48]).max() < 1e-4
    assert nod[82:90].max() > 1.0, "no emphasis nod after the stressed syllable"
    assert nod[80:96].argmax() + 80 > 80, "the nod peaks after its syllable starts"


def test_jaw_opens_with_loudness_and_closes_in_silence() -> None:
    frames = [frame(k, -90, False) for k in range(20)] + [frame(k, -20, True) for k in range(20, 40)]
    frames += [frame(k, -90, False) for k in range(40, 60)]
    jaw = controls_for(frames)[:, Control.JAW_OPEN]
    assert jaw[:20].max() == 0.0, "from closed lips the jaw waits for the sound (no anticipation in silence)"
    assert jaw[20] > 0.3
    assert jaw[25:40].min() > 0.5
    assert jaw[48:].max() < 0.02, "the lips must close within a few frames of silence"


def jaw_without_lookahead(frames: list[FeatureFrame]) -> np.ndarray:
    alone = Blueprint(lookahead_frames=0)
    alone.update(Storyline(0, len(frames) + 8, []))
    return np.concatenate([alone.window(frames[i : i + 4], frames[i + 4 : i + 5]).controls[:, Control.JAW_OPEN]
                           for i in range(0, len(frames), 4)])


def test_from_closed_lips_the_jaw_waits_for_the_sound_and_inside_speech_it_anticipates() -> None:
    # The frame before a loud onset is silent: from lips together the jaw does not drop there (on a small face the
    # face mesh reads any drop as lips apart: tests/test_mouth.py); inside speech the anticipation is whole.
    frames = [frame(k, -90, False) for k in range(20)] + [frame(k, -20, True) for k in range(20, 30)]
    frames += [frame(k, -40, True) for k in range(30, 40)] + [frame(k, -14, True) for k in range(40, 48)]
    jaw = controls_for(frames)[:, Control.JAW_OPEN]
    assert jaw[19] == 0.0, jaw[18:21]
    assert jaw[20] > 0.3, "the lips must part with the sound"
    late = jaw_without_lookahead(frames)
    assert jaw[39] > late[39] + 0.1, "inside speech the jaw anticipates a louder syllable in full"


def test_a_jaw_still_closing_in_a_pause_does_not_anticipate_once_the_lips_are_together() -> None:
    # A pause just long enough for the lips to meet (the jaw under LIPS_TOGETHER_JAW but not yet 0) before the next
    # onset: that silent frame gets no anticipation either, whatever the jaw's own value (a cap applied only while
    # the jaw is below it would let a jaw at 0.03-0.08 anticipate in full: 0.2 on a silent frame).
    frames = [frame(k, -20, True) for k in range(12)] + [frame(k, -90, False) for k in range(12, 17)]
    frames += [frame(k, -20, True) for k in range(17, 24)]
    jaw = controls_for(frames)[:, Control.JAW_OPEN]
    late = jaw_without_lookahead(frames)
    assert 0.0 < jaw[15] < LIPS_TOGETHER_JAW, jaw[12:18]  # the case: lips together, the jaw not yet at rest
    assert jaw[16] <= late[16] + 1e-6, (jaw[12:18], late[12:18])
    assert jaw[17] > 0.3, "the lips must part with the sound"


def test_vowels_shape_the_mouth() -> None:
    def shape(vowel: int) -> np.ndarray:
        c = controls_for([frame(k, -20, True, vowel) for k in range(24)])
        return c[-4:, [Control.MOUTH_WIDTH, Control.MOUTH_ROUND]].mean(axis=0)

    a, i, u = shape(0), shape(1), shape(2)
    assert i[0] > a[0] > u[0], "I spreads the lips, U draws them in"
    assert u[1] > 0.5 and i[1] < 0.1


def test_storyline_blinks_and_emotions_reach_the_controls() -> None:
    beats = [StoryBeat(0, 48, emotion="happy", intensity=1.0), StoryBeat(10, 18, blink=True)]
    c = controls_for([frame(k, -90, False) for k in range(48)], beats)
    assert c[15, Control.BLINK_LEFT] == 1.0 and c[15, Control.BLINK_RIGHT] == 1.0
    assert c[0, Control.BLINK_LEFT] == 0.0 and c[9, Control.BLINK_LEFT] == 0.0
    assert c[-1, Control.SMILE] > 0.5, "a happy beat eases into a smile"


def test_head_gestures_and_gaze_follow_their_beats() -> None:
    beats = [StoryBeat(48, 96, head_motion="nod", intensity=1.0), StoryBeat(144, 192, head_motion="shake"),
             StoryBeat(192, 288, head_motion="tilt", gaze="left")]
    c = controls_for([frame(k, -90, False) for k in range(300)], beats)
    idle = idle_head_deg(np.arange(300))
    pitch = c[:, Control.HEAD_PITCH] - idle[:, 1]
    yaw = c[:, Control.HEAD_YAW] - idle[:, 0]
    roll = c[:, Control.HEAD_ROLL] - idle[:, 2]
    assert np.abs(pitch[:48]).max() < 0.5 and pitch[48:96].max() > 3.0, "nod"
    assert yaw[144:192].max() > 2.0 and yaw[144:192].min() < -2.0, "shake goes both ways"
    assert roll[220:260].min() > 2.0 and abs(roll[-5:]).max() < 1e-3, "tilt holds, then returns"
    idle_gaze = IdleMotion().controls(np.arange(300))[:, Control.GAZE_X]
    assert c[230, Control.GAZE_X] < -0.5 and c[100, Control.GAZE_X] == idle_gaze[100], "without a beat: idle eyes"
    # Eased: no frame-to-frame jump larger than a degree anywhere.
    assert np.abs(np.diff(c[:, [Control.HEAD_YAW, Control.HEAD_PITCH, Control.HEAD_ROLL]], axis=0)).max() < 1.0


def test_replans_leave_the_committed_span_as_it_was() -> None:
    frames = [frame(k, -90, False) for k in range(200)]
    bp = Blueprint()
    bp.update(Storyline(0, 200, [StoryBeat(0, 200, head_motion="turn", intensity=1.0)]))
    before = bp._targets.copy()
    # A re-plan at frame 40 with nothing in it, committed until frame 64: frames 40..63 keep the turn.
    bp.update(Storyline(40, 240, []), keep_until_frame=64)
    c = np.concatenate([bp.window(frames[i : i + 4], frames[i + 4 : i + 5]).controls for i in range(40, 96, 4)])
    yaw = c[:, Control.HEAD_YAW] - idle_head_deg(np.arange(40, 96))[:, 0]
    np.testing.assert_allclose(yaw[:24], before[40:64, Control.HEAD_YAW] - idle_head_deg(np.arange(40, 64))[:, 0],
                               atol=1e-5)
    assert np.abs(yaw[24:]).max() < 1e-4, "after the committed span the new plan rules"


def test_a_grin_widens_and_a_pout_rounds_the_mouth_in_silence_and_while_speaking() -> None:
    vowels = [0, 2, 4, 3, 1]  # A U O E I, a few frames each
    frames = [frame(k, -90, False) for k in range(48)]
    frames += [frame(k, -20, True, vowels[(k // 6) % 5]) for k in range(48, 144)]
    plain = controls_for(frames)
    silence, speech = slice(30, 48), slice(60, 144)
    for expression, control, lo, hi in (("grin", Control.MOUTH_WIDTH, -1.0, 1.0),
                                        ("pout", Control.MOUTH_ROUND, 0.0, 1.0)):
        c = controls_for(frames, [StoryBeat(0, 152, emotion="happy", intensity=0.8, expression=expression)])
        more = c[:, control] - plain[:, control]
        assert more[silence].min() > 0.25, f"{expression}: no change in silence"
        unclipped = plain[speech, control] < hi - 0.4  # where the speech shape leaves room under the limit
        assert unclipped.sum() > 20 and more[speech][unclipped].min() > 0.25, f"{expression}: lost while speaking"
        assert c[:, control].min() >= lo and c[:, control].max() <= hi
        np.testing.assert_array_equal(c[:, Control.JAW_OPEN], plain[:, Control.JAW_OPEN])
    # The speech shape still shapes the mouth under a grin: I spreads, U draws in.
    grin = controls_for(frames, [StoryBeat(0, 152, emotion="happy", intensity=0.8, expression="grin")])
    i_frames = [k for k in range(60, 144) if vowels[(k // 6) % 5] == 1 and k % 6 == 5]
    u_frames = [k for k in range(60, 144) if vowels[(k // 6) % 5] == 2 and k % 6 == 5]
    assert grin[i_frames, Control.MOUTH_WIDTH].mean() > grin[u_frames, Control.MOUTH_WIDTH].mean() + 0.5


def test_a_blink_closes_fast_holds_and_opens_slower() -> None:
    """Cubism / Trutoiu timing at 48 fps: closed within ~0.10 s, held ~0.05 s, open again over ~0.15 s; and
    about one blink in seven is double, the same ones on every plan."""
    from engine.blueprint import BLINK_CURVE, blink_curve

    closed = np.flatnonzero(BLINK_CURVE >= 0.99)
    close_s, hold_s, open_s = (closed[0] + 1) / FPS, len(closed) / FPS, (len(BLINK_CURVE) - closed[-1] - 1) / FPS
    assert 0.08 <= close_s <= 0.12 and 0.04 <= hold_s <= 0.07 and 0.13 <= open_s <= 0.17, (close_s, hold_s, open_s)
    assert (np.diff(BLINK_CURVE[: closed[0] + 1]) > 0).all() and (np.diff(BLINK_CURVE[closed[-1]:]) < 0).all()
    curves = [blink_curve(f) for f in range(0, 48 * 600, 97)]
    double = [c for c in curves if len(c) > len(BLINK_CURVE)]
    assert 0.08 <= len(double) / len(curves) <= 0.22
    reopened = double[0][closed[-1] : closed[-1] + 10]  # between the two holds the lid lifts again
    assert double[0].max() == 1.0 and (double[0] >= 0.99).sum() == 2 * len(closed) and reopened.min() < 0.8
    assert all(np.array_equal(blink_curve(f), blink_curve(f)) for f in range(0, 4800, 97))


def test_consonants_inside_speech_ease_the_jaw_and_a_pause_shuts_it() -> None:
    """Co-articulation: a 4-frame consonant (-45 dB, still voice) between loud vowels lowers the jaw part way, as a
    talker's does, not shut like a puppet's; a pause (no sound) shuts it within a few frames. A conversational
    voice opens the jaw about half way, not to a shout."""
    frames = [frame(k, -90, False) for k in range(24)]
    for _ in range(4):  # vowel, consonant
        frames += [frame(len(frames) + j, -16, True) for j in range(10)]
        frames += [frame(len(frames) + j, -45, True) for j in range(4)]
    pause = len(frames)
    frames += [frame(len(frames) + j, -90, False) for j in range(24)]
    jaw = controls_for(frames)[:, Control.JAW_OPEN]
    speech = jaw[24:pause]
    assert 0.45 < speech.max() < 0.9, "a conversational voice opens the jaw part way, not to a shout"
    dips = [jaw[24 + 14 * s + 10 : 24 + 14 * s + 14].min() for s in range(1, 3)]
    assert min(dips) > 0.3 * speech.max(), f"the jaw shuts on every syllable: {dips}"
    assert jaw[pause + 5 :].max() < 0.05, "the lips must close in a pause"


def test_a_held_vowel_keeps_the_mouth_steady_and_an_onset_is_still_fast() -> None:
    wobble = [frame(k, -90, False) for k in range(12)]
    wobble += [frame(k, -22 + 2.5 * (-1) ** k, True) for k in range(12, 72)]  # +-2.5 dB frame to frame
    jaw = controls_for(wobble)[:, Control.JAW_OPEN]
    assert jaw[13] > 0.5 * jaw[40:72].mean(), "the onset lags"
    # +-2.5 dB moves the jaw target ~0.18: a jaw that held it would step 0.15 a frame; it moves ~4% of its level.
    assert np.abs(np.diff(jaw[40:72])).max() < 0.05 * jaw[40:72].mean(), "the mouth shakes on a held vowel"


def test_the_head_rises_with_the_voice_and_settles_after_it() -> None:
    """Munhall et al. (2004): head motion follows the voice's pitch. At steady loudness, F0 gliding up 5
    semitones lifts the head (pitch < 0: up) by a fraction of a degree; after the voice stops it settles back."""
    frames = [frame(k, -90, False) for k in range(24)]
    for k in range(24, 168):
        f = frame(k, -22, True)
        f.pitch_hz = 120.0 * 2 ** (5 / 12 * min(1.0, max(0.0, (k - 72) / 48)))
        frames.append(f)
    frames += [frame(k, -90, False) for k in range(168, 360)]
    c = controls_for(frames)
    lift = c[:, Control.HEAD_PITCH] - idle_head_deg(np.arange(len(frames)))[:, 1]
    assert np.abs(lift[:24]).max() < 1e-4
    assert lift[130:168].min() < -0.4, "the head ignores the rising voice"
    assert np.abs(lift[-24:]).max() < 0.05, "the head does not settle after speech"
    assert np.abs(np.diff(lift)).max() < 0.1, "the head jumps with the voice"
