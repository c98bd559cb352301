"""Which kinds of face the test portraits cover, against the kinds issue 13 asks the sheets and tables to show.

The kinds are judged by eye and, for the angles, by the engine's own estimate at prepare time (yaw from
`engine.generator.faces.estimate_yaw_deg`, roll from the eye line); tests/data/portraits/SOURCES.md has
each photo's source and licence. A kind no portrait covers is listed with the reason, so the contact
sheet and the realism tables say what they do not show.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.quality import EMBEDDED

# The kinds issue 13 lists for the contact sheet, in its order.
ISSUE_KINDS: tuple[str, ...] = (
    "smiling with teeth", "closed lips", "tilted head", "three-quarter view", "glasses", "beard",
    "darker skin", "lighter skin", "small face", "low-resolution photo",
)
# Kinds the issue's own tries used (not in its list for the sheet), shown when covered.
EXTRA_KINDS: tuple[str, ...] = ("lips apart", "eyes cast down", "hand near the face", "older face", "EXIF rotation")

# Keyed by the portrait's file stem ("astronaut" for the embedded default).
PORTRAIT_KINDS: dict[str, tuple[str, ...]] = {
    "astronaut": ("smiling with teeth", "lighter skin"),
    "anne_helene_sunglasses_small": ("smiling with teeth", "glasses", "small face", "lighter skin"),
    "beard_smile_darker_skin": ("darker skin", "beard", "smiling with teeth"),  # lips 28% apart, roll about 9
    "darker_skin_frontal": ("darker skin", "closed lips"),  # yaw about 7 degrees
    "giunchedi_beard": ("beard", "closed lips", "lighter skin"),
    "guido_grey_beard_glasses": ("three-quarter view", "beard", "glasses", "closed lips", "older face",
                                 "lighter skin"),  # yaw about 39 degrees
    "hand_chin_darker_skin": ("darker skin", "hand near the face", "closed lips"),  # on a black background
    "henner_glasses": ("glasses", "closed lips", "lighter skin"),  # yaw about 18 degrees, stubble
    "hopper": ("closed lips", "older face", "lighter skin"),
    "hopper_lowres_160": ("low-resolution photo", "small face", "closed lips", "lighter skin"),
    "hopper_tall_exif6": ("EXIF rotation", "closed lips", "lighter skin"),
    "luispedro": ("three-quarter view", "lighter skin"),  # yaw about 33 degrees
    "maher_teeth": ("smiling with teeth", "lighter skin"),
    # yaw about 35 degrees, looking down at a laptop; lips a little apart (8% of the mouth's width)
    "meeting_darker_skin": ("darker skin", "three-quarter view", "eyes cast down"),
    "pedersen_open_mouth": ("lips apart", "lighter skin"),
    "pedersen_tilted": ("tilted head", "closed lips", "lighter skin"),  # roll about 21 degrees
    "pedersen_young_teeth": ("smiling with teeth", "lighter skin"),
    "shenk": ("smiling with teeth", "low-resolution photo", "lighter skin"),
    # yaw about -36 degrees, roll about 15, lids lowered: looking down and away
    "woman_eyes_down": ("eyes cast down", "three-quarter view", "tilted head", "closed lips", "lighter skin"),
}

NOT_IN_RUN = "not in this run; shown by"
_NO_PHOTO = "no photo with a licence we could verify (PyPI, Debian, npm, public repositories) was found"
NOT_COVERED_WHY: dict[str, str] = {}


def stem(portrait: str) -> str:
    return "astronaut" if portrait == EMBEDDED else Path(portrait).stem


def kinds_of(portrait: str) -> tuple[str, ...]:
    """The kinds of face a portrait shows (empty for a photo not in the table: a user's own)."""
    return PORTRAIT_KINDS.get(stem(portrait), ())


def coverage(portraits: list[str]) -> list[tuple[str, list[str], str]]:
    """(kind, the given portraits that show it, why none does) for each kind the issue lists, then the
    extra kinds that are covered or have a reason."""
    rows = []
    for kind in ISSUE_KINDS + EXTRA_KINDS:
        names = [stem(p) for p in portraits if kind in kinds_of(p)]
        if names:
            why = ""
        elif others := [name for name, kinds in PORTRAIT_KINDS.items() if kind in kinds]:
            why = f"{NOT_IN_RUN} {', '.join(others)} (run without --avatar)"
        else:
            why = NOT_COVERED_WHY.get(kind, _NO_PHOTO)
        if kind in ISSUE_KINDS or names or kind in NOT_COVERED_WHY:
            rows.append((kind, names, why))
    return rows


def coverage_lines(portraits: list[str]) -> list[str]:
    """One line per kind: `kind: portraits`, `not in this run: kind: portraits` or `not covered: kind: why`."""
    return [f"{kind}: {', '.join(names)}" if names
            else f"not in this run: {kind}: {why.removeprefix(NOT_IN_RUN).strip()}" if why.startswith(NOT_IN_RUN)
            else f"not covered: {kind}: {why}"
            for kind, names, why in coverage(portraits)]
