"""Prosody for the director: what the recent speech sounds like, from the per-frame features.

Syllable nuclei are local loudness peaks while voiced; a stressed syllable is a nucleus clearly
louder than the recent speech (and usually higher in pitch): good moments for an emphasis nod.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.types import FPS, FeatureFrame

SYLLABLE_DIP_DB = 3.0  # how far loudness falls between two syllables


@dataclass
class Prosody:
    from_frame: int
    to_frame: int
    speaking: bool  # voice activity in the last quarter second
    speaking_ratio: float  # share of voiced frames
    syllables_per_s: float  # over the voiced time
    pauses: int  # silent stretches of >= 0.25 s between voiced ones
    longest_pause_s: float
    loudness_db: list[float] = field(default_factory=list)  # mean per 0.25 s, oldest first
    pitch_hz: list[float] = field(default_factory=list)  # mean voiced pitch per 0.25 s (0 if none)
    stressed_frames: list[int] = field(default_factory=list)  # frame indices of stressed syllables

    def summary(self) -> str:
        """One line for logs and for a text-only director prompt."""
        state = "speaking" if self.speaking else "silent"
        return (f"{state}, voiced {self.speaking_ratio:.0%}, {self.syllables_per_s:.1f} syll/s, "
                f"{self.pauses} pauses, {len(self.stressed_frames)} stressed syllables")


def analyse(frames: Sequence[FeatureFrame], min_pause_s: float = 0.25, stress_db: float = 4.0) -> Prosody:
    if not frames:
        return Prosody(0, 0, False, 0.0, 0.0, 0, 0.0)
    voiced = np.array([f.voice_activity > 0.5 for f in frames])
    db = np.array([f.energy_db for f in frames])
    pitch = np.array([f.pitch_hz for f in frames])
    # Syllable nuclei: voiced local maxima of loudness, at least 3 frames (60 ms) apart, with a dip of
    # SYLLABLE_DIP_DB between them (as de Jong & Wempe 2009): without the dip, the wiggles of one vowel
    # and the bumps of its consonants counted as syllables too, nearly twice the true number for espeak.
    peaks = [i for i in range(1, len(frames) - 1)
             if voiced[i] and db[i] >= db[i - 1] and db[i] > db[i + 1] and db[i] > -40]
    nuclei: list[int] = []
    for i in peaks:
        last = nuclei[-1] if nuclei else None
        if last is not None and (i - last < 3 or db[last : i + 1].min() > min(db[i], db[last]) - SYLLABLE_DIP_DB):
            if db[i] > db[last]:
                nuclei[-1] = i
            continue
        nuclei.append(i)
    speech_db = db[voiced]
    reference = float(np.median(speech_db)) if len(speech_db) else -100.0
    stressed = [frames[i].frame_index for i in nuclei if db[i] >= reference + stress_db]
    # Pauses: runs of unvoiced frames between voiced ones.
    pauses, longest, run = 0, 0, 0
    seen_voice = False
    for v in voiced:
        if v:
            if seen_voice and run >= min_pause_s * FPS:
                pauses += 1
                longest = max(longest, run)
            seen_voice, run = True, 0
        else:
            run += 1
    step = FPS // 4
    chunks = [slice(i, i + step) for i in range(0, len(frames), step)]
    return Prosody(
        from_frame=frames[0].frame_index, to_frame=frames[-1].frame_index + 1,
        speaking=bool(voiced[-FPS // 4 :].any()), speaking_ratio=float(voiced.mean()),
        syllables_per_s=len(nuclei) / max(voiced.sum() / FPS, 0.25), pauses=pauses, longest_pause_s=longest / FPS,
        loudness_db=[round(float(db[c].mean()), 1) for c in chunks],
        pitch_hz=[round(float(pitch[c][pitch[c] > 0].mean()), 1) if (pitch[c] > 0).any() else 0.0 for c in chunks],
        stressed_frames=stressed,
    )
