"""Lip sync measured on rendered video: espeak-ng speech in several languages through
`avatar-engine render`, the mouth measured back with mediapipe's face mesh.

    python -m benchmarks.lipsync [--json out.json]

Per language: Pearson r between the measured mouth opening and the audio's loudness envelope at
the best lag (target r >= 0.6 with |lag| <= 1 frame); lips closed in silence (target >= 95% of
silent frames); and mouth shape on sustained vowels: width / height is lower for rounded /u/ /o/
than for spread /i/ /e/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks.quality import inter_ocular, lip_gap, pearson, track
from engine.generator import prepare_avatar
from harness import REPO
from harness.speech import espeak, write_wav

SENTENCES = {
    "en": ("Hello everyone, welcome back to the show.", "Today I have a new camera for you."),
    "ko": ("안녕하세요 여러분, 방송에 오신 것을 환영합니다.", "오늘은 새로운 카메라를 소개할게요."),
    "es": ("Hola a todos, bienvenidos de nuevo.", "Hoy les traigo una cámara nueva."),
}
VOWELS = {"es": ("u", "o", "i", "e"), "ko": ("우", "오", "이", "에")}
MOUTH_LEFT, MOUTH_RIGHT, OUTER_TOP, OUTER_BOTTOM = 61, 291, 0, 17
MAX_LAG = 6


def render(audio: np.ndarray, tmp: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """audio -> (frames (N, H, W, 3) decoded from the MP4, the input audio)."""
    wav = write_wav(tmp / f"{name}.wav", audio)
    out = tmp / f"{name}.mp4"
    subprocess.run([sys.executable, str(REPO / "server.py"), "render", "--audio", str(wav), "--out", str(out)],
                   check=True, capture_output=True, cwd=REPO)
    with av.open(str(out)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    return frames, audio


def loudness_db(audio: np.ndarray, n_frames: int) -> np.ndarray:
    blocks = np.pad(audio, (0, max(0, n_frames * 1000 - len(audio))))[: n_frames * 1000].reshape(n_frames, 1000)
    return 20 * np.log10(np.sqrt(np.mean(blocks**2, axis=1)) + 1e-5)


def best_lag(mouth: np.ndarray, loud: np.ndarray) -> tuple[float, int]:
    """r(lag) correlates mouth[k] with loudness[k - lag]: a positive lag means the mouth trails the sound."""
    best = (-1.0, 0)
    for lag in range(-MAX_LAG, MAX_LAG + 1):
        m = mouth[max(lag, 0) : len(mouth) + min(lag, 0)]
        a = loud[max(-lag, 0) : len(loud) - max(lag, 0)]
        r = pearson(m, a)
        if r > best[0]:
            best = (r, lag)
    return best


def measure_language(lang: str, tmp: Path, portrait: np.ndarray) -> dict[str, float]:
    a, b = (espeak(s, lang) for s in SENTENCES[lang])
    pause = np.zeros(int(0.6 * 48000), np.float32)
    audio = np.concatenate([np.zeros(48000, np.float32), a, pause, b, np.zeros(48000, np.float32)])
    frames, _ = render(audio, tmp, lang)
    t = track(portrait, frames)
    scale = inter_ocular(t.reference)
    opening = (lip_gap(t.frames) - lip_gap(t.reference)) / scale
    loud = np.clip(loudness_db(audio, len(frames)), -50, None)
    ok = t.found
    mouth = np.where(ok, opening, np.nanmean(opening))
    r, lag = best_lag(mouth, loud)
    # Stricter, for information: inside the utterances only, where silence cannot carry the correlation.
    speaking = np.convolve(loud > -45, np.ones(9), "same") > 0
    r_speech, lag_speech = best_lag(mouth[speaking], loud[speaking])
    # Silent frames: quiet themselves and in the 4 frames before (the jaw's release has settled).
    quiet = loudness_db(audio, len(frames)) < -55
    settled = np.array([quiet[max(0, k - 4) : k + 1].all() for k in range(len(frames))])
    closed = (opening[settled & ok] < 0.03).mean()
    return {"r_best": r, "best_lag_frames": lag, "r_speech_only": r_speech, "lag_speech_only": lag_speech,
            "closed_in_silence": float(closed),
            "silent_frames": int((settled & ok).sum()), "face_found": float(ok.mean())}


def measure_vowels(lang: str, tmp: Path, portrait: np.ndarray) -> dict[str, float]:
    ratios = {}
    for v in VOWELS[lang]:
        speech = espeak(v, lang)
        audio = np.concatenate([np.zeros(24000, np.float32), speech, np.zeros(24000, np.float32)])
        frames, _ = render(audio, tmp, f"{lang}-{v}")
        t = track(portrait, frames)
        loud = loudness_db(audio, len(frames)) > -35
        lm = t.frames[loud & t.found]
        width = np.linalg.norm(lm[:, MOUTH_LEFT] - lm[:, MOUTH_RIGHT], axis=-1)
        height = np.linalg.norm(lm[:, OUTER_TOP] - lm[:, OUTER_BOTTOM], axis=-1)
        ratios[v] = float(np.mean(width / height))
    rounded, spread = VOWELS[lang][:2], VOWELS[lang][2:]
    return {"ratio_" + k: v for k, v in ratios.items()} | {
        "rounded_mean": float(np.mean([ratios[v] for v in rounded])),
        "spread_mean": float(np.mean([ratios[v] for v in spread]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args()
    portrait = prepare_avatar().rgb
    tmp = Path(tempfile.mkdtemp(prefix="lipsync-"))
    results: dict[str, dict[str, float]] = {}
    table = Table(title="lip sync on rendered video (mediapipe face mesh), embedded avatar")
    for col in ("language", "metric", "value", "target", ""):
        table.add_column(col)
    for lang in SENTENCES:
        m = results[lang] = measure_language(lang, tmp, portrait)
        table.add_row(lang, "r(mouth opening, loudness) at best lag", f"{m['r_best']:.3f}", ">= 0.6",
                      "PASS" if m["r_best"] >= 0.6 else "FAIL")
        table.add_row("", "best lag (frames, + = mouth later)", str(m["best_lag_frames"]), "|lag| <= 1",
                      "PASS" if abs(m["best_lag_frames"]) <= 1 else "FAIL")
        table.add_row("", "r inside utterances only (information)", f"{m['r_speech_only']:.3f} "
                      f"(lag {m['lag_speech_only']})", "", "")
        table.add_row("", f"lips closed in silence ({m['silent_frames']} frames)", f"{m['closed_in_silence']:.1%}",
                      ">= 95%", "PASS" if m["closed_in_silence"] >= 0.95 else "FAIL")
    for lang in VOWELS:
        m = measure_vowels(lang, tmp, portrait)
        results[lang].update(m)
        table.add_row(lang, "mouth width/height: rounded (u, o) vs spread (i, e)",
                      f"{m['rounded_mean']:.2f} vs {m['spread_mean']:.2f}", "rounded < spread",
                      "PASS" if m["rounded_mean"] < m["spread_mean"] else "FAIL")
    Console(width=140).print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
