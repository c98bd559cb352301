"""Calibrate the viseme templates on espeak-ng vowels in several languages.

    python -m benchmarks.calibrate_visemes [--write]

For each language, each of the five open vowels is spoken by espeak-ng; the mean MFCCs of its
loud frames, minus that language's mean over its five vowels, are averaged over languages into
engine/audio/viseme_templates.json (with --write). Prints a leave-one-language-out table: how
often each language's vowels are recognised by templates made from the other languages.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import wave

import numpy as np
from rich.console import Console
from rich.table import Table

from engine.audio.spectral import ANALYSIS_RATE_HZ, WINDOW, log_mel, mfcc
from engine.audio.visemes import TEMPLATES_PATH, VOWELS

# Words or letters that espeak-ng reads as the plain vowel in each language (A, I, U, E, O).
SPEECH = {
    "es": ("a", "i", "u", "e", "o"),
    "it": ("a", "i", "u", "e", "o"),
    "ko": ("아", "이", "우", "에", "오"),
    "de": ("ah", "ih", "uh", "eh", "oh"),
    "pt": ("á", "i", "u", "é", "ó"),
    "fr": ("ah", "il", "ou", "é", "eau"),
    "en-us": ("ah", "ee", "oo", "eh", "awe"),
}


def speak(text: str, voice: str) -> np.ndarray:
    raw = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(raw)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
    n = int(len(pcm) * ANALYSIS_RATE_HZ / rate)
    return np.interp(np.arange(n) * rate / ANALYSIS_RATE_HZ, np.arange(len(pcm)), pcm).astype(np.float32)


def vowel_mfcc(x16: np.ndarray) -> np.ndarray:
    """Mean MFCC (without c0) over the loud part of a spoken vowel."""
    hop = 160
    starts = range(0, len(x16) - WINDOW, hop)
    energy = np.array([np.sum(x16[i : i + WINDOW] ** 2) for i in starts])
    loud = [i for i, e in zip(starts, energy, strict=True) if e > 0.4 * energy.max()]
    return np.mean([mfcc(log_mel(x16[i : i + WINDOW]))[1:] for i in loud], axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help=f"write {TEMPLATES_PATH}")
    args = ap.parse_args()
    raw = {lang: np.array([vowel_mfcc(speak(w, lang)) for w in words]) for lang, words in SPEECH.items()}
    normalised = {lang: m - m.mean(axis=0) for lang, m in raw.items()}
    table = Table(title="leave-one-language-out vowel recognition (templates from the other languages)")
    table.add_column("language")
    for v in VOWELS:
        table.add_column(v, justify="center")
    table.add_column("correct", justify="right")
    total = 0
    for lang in SPEECH:
        templates = np.mean([normalised[o] for o in SPEECH if o != lang], axis=0)
        guesses = [VOWELS[int(np.argmin(np.linalg.norm(templates - row, axis=1)))] for row in normalised[lang]]
        ok = sum(g == v for g, v in zip(guesses, VOWELS, strict=True))
        total += ok
        table.add_row(lang, *[g if g == v else f"[red]{g}[/red]" for g, v in zip(guesses, VOWELS, strict=True)],
                      f"{ok}/5")
    Console().print(table)
    print(f"overall {total}/{5 * len(SPEECH)}")
    templates = np.mean(list(normalised.values()), axis=0)
    pair = [np.linalg.norm(templates[i] - templates[j]) for i in range(5) for j in range(i + 1, 5)]
    result = {
        "about": "mean-normalised MFCC[1:13] templates of A I U E O; made by benchmarks/calibrate_visemes.py",
        "languages": list(SPEECH),
        "templates": {v: [round(float(x), 4) for x in templates[i]] for i, v in enumerate(VOWELS)},
        "global_mean": [round(float(x), 4) for x in np.mean([m.mean(axis=0) for m in raw.values()], axis=0)],
        "scale": round(float(np.mean(pair)), 4),
    }
    if args.write:
        TEMPLATES_PATH.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {TEMPLATES_PATH}")


if __name__ == "__main__":
    main()
