"""The test portraits: each is the file SOURCES.md describes (its sha256), and each kind of face issue 13
asks the contact sheet to show is either shown by a portrait or listed with the reason it is not."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from benchmarks.contact_sheet import part_path
from benchmarks.portraits import EXTRA_KINDS, ISSUE_KINDS, NOT_COVERED_WHY, PORTRAIT_KINDS, coverage_lines
from benchmarks.quality import EMBEDDED, PORTRAIT_DIR, default_portraits

SOURCES = PORTRAIT_DIR / "SOURCES.md"


def listed_sha256() -> dict[str, str]:
    return {m[2]: m[1] for m in re.finditer(r"^([0-9a-f]{64})  (\S+)$", SOURCES.read_text(), re.M)}


def test_every_portrait_file_matches_the_sha256_in_sources() -> None:
    files = sorted(p for p in PORTRAIT_DIR.rglob("*.jpg"))
    listed = listed_sha256()
    assert len(files) >= 10
    for path in files:
        name = str(path.relative_to(PORTRAIT_DIR))
        assert name in listed, f"{name} has no sha256 in SOURCES.md"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == listed[name], f"{name} differs from SOURCES.md"
    assert set(listed) == {str(p.relative_to(PORTRAIT_DIR)) for p in files}, "SOURCES.md lists a missing file"


def test_every_portrait_has_its_kinds_and_every_kind_is_known() -> None:
    stems = {Path(p).stem for p in default_portraits() if p != EMBEDDED} | {"astronaut"}
    assert stems == set(PORTRAIT_KINDS)
    for kinds in PORTRAIT_KINDS.values():
        assert kinds and set(kinds) <= set(ISSUE_KINDS + EXTRA_KINDS)


def test_a_kind_no_portrait_shows_is_printed_with_its_reason() -> None:
    lines = coverage_lines(default_portraits())
    for kind in ISSUE_KINDS:
        shown = any(kind in kinds for kinds in PORTRAIT_KINDS.values())
        line = next(line for line in lines if f"{kind}:" in line)
        assert line.startswith("not covered") != shown, line
        if not shown:
            assert NOT_COVERED_WHY[kind] in line
    assert any("beard" in kinds for kinds in PORTRAIT_KINDS.values())
    # a run on one portrait says which portraits show the kinds it leaves out
    one = coverage_lines([EMBEDDED])
    assert any(line.startswith("not in this run: beard: ") and "giunchedi_beard" in line for line in one)


def test_a_sheet_split_in_parts_numbers_the_later_ones() -> None:
    out = Path("docs/contact_sheet.png")
    assert [part_path(out, k).name for k in range(3)] == ["contact_sheet.png", "contact_sheet_2.png",
                                                           "contact_sheet_3.png"]
