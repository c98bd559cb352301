"""Avatar preparation: real photos in any orientation and format; every bad input named at prepare time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from engine.generator.avatar import AvatarError, prepare_avatar
from tests.conftest import REPO, prepared_fresh


def save(tmp: Path, name: str, rgb: np.ndarray, **kw: object) -> Path:
    path = tmp / name
    Image.fromarray(rgb).save(path, **kw)
    return path


def test_exif_rotated_jpeg_is_turned_upright(tmp_path: Path) -> None:
    upright = data.astronaut()
    # Stored sideways, with the EXIF tag that tells viewers to rotate it back (orientation 6).
    sideways = np.ascontiguousarray(np.rot90(upright, k=1))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path, "sideways.jpg", sideways, exif=exif, quality=92)
    avatar = prepare_avatar(path, cache_dir=None)
    assert avatar.size == (512, 512)
    reference = prepared_fresh()
    # Same face, same place: the landmarks agree within a few pixels (JPEG noise).
    assert np.abs(avatar.landmarks - reference.landmarks).mean() < 3.0


def test_large_webp_is_scaled_to_the_output_size(tmp_path: Path) -> None:
    big = np.asarray(Image.fromarray(data.astronaut()).resize((1600, 1600)))
    path = save(tmp_path, "big.webp", big, quality=90)
    avatar = prepare_avatar(path, max_side_px=720, cache_dir=None)
    assert avatar.size == (720, 720)


def test_second_prepare_comes_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save(tmp_path, "me.png", data.astronaut())
    steps: list[str] = []
    first = prepare_avatar(path, cache_dir=tmp_path / "cache", on_step=steps.append)
    assert "finding the face" in steps
    steps.clear()
    second = prepare_avatar(path, cache_dir=tmp_path / "cache", on_step=steps.append)
    assert "finding the face" not in steps
    np.testing.assert_array_equal(first.rgb, second.rgb)
    np.testing.assert_array_equal(first.landmarks, second.landmarks)
    # The key is the content: the same bytes under another name hit the cache, other bytes do not.
    (tmp_path / "copy.png").write_bytes(path.read_bytes())
    steps.clear()
    prepare_avatar(tmp_path / "copy.png", cache_dir=tmp_path / "cache", on_step=steps.append)
    assert "finding the face" not in steps
    # Other generator code (a changed plate or matte, PREP_VERSION not bumped) prepares again.
    from engine.generator import avatar as avatar_module

    key = avatar_module.cache_key(path, 720)
    monkeypatch.setattr(avatar_module, "source_digest", lambda: b"edited plate")
    assert avatar_module.cache_key(path, 720) != key, "edited preparation code would load what older code made"


def make_bad_portrait(kind: str, tmp: Path) -> Path:
    astronaut = data.astronaut()
    if kind == "missing":
        return tmp / "missing.jpg"
    if kind == "not-an-image":
        (tmp / "notes.jpg").write_text("just text")
        return tmp / "notes.jpg"
    if kind == "truncated":
        whole = save(tmp, "whole.jpg", astronaut).read_bytes()
        (tmp / "cut.jpg").write_bytes(whole[:3000])
        return tmp / "cut.jpg"
    if kind == "no-face":
        return save(tmp, "coffee.png", data.coffee())
    if kind == "face-too-small":  # the astronaut's face shrinks to ~35 px
        return save(tmp, "small.png", np.asarray(Image.fromarray(astronaut).resize((200, 200))))
    if kind == "decompression-bomb":  # 64 megapixels in a few kilobytes of PNG
        return save(tmp, "bomb.png", np.zeros((8000, 8000, 3), np.uint8))
    raise ValueError(kind)


@pytest.mark.parametrize(("kind", "message"), [
    ("missing", "not found"), ("not-an-image", "not an image"), ("truncated", "corrupt"), ("no-face", "no face"),
    ("face-too-small", r"face too small: the face is \d+ px wide; at least 48 px needed"),
    ("decompression-bomb", "pixel limit"),
])
def test_bad_portraits_are_refused_with_a_clear_message(tmp_path: Path, kind: str, message: str) -> None:
    path = make_bad_portrait(kind, tmp_path)
    with pytest.raises(AvatarError, match=message) as err:
        prepare_avatar(path, cache_dir=None)
    assert path.name in str(err.value)


def test_prepare_command_reports_problems_and_exits_2(tmp_path: Path) -> None:
    path = save(tmp_path, "coffee.jpg", data.coffee())
    result = subprocess.run([sys.executable, str(REPO / "server.py"), "prepare", str(path)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2
    assert "coffee.jpg" in result.stderr and "no face" in result.stderr
