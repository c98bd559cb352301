"""The visible AI disclosure label, drawn into every picture of a stream before any sink or encoder sees it.

    label = DisclosureLabel(LabelSpec("cn"))      # "AI生成", top-right, glyphs >= 5% of the frame's short side
    picture = label(picture, frame_index)          # RGB (h, w, 3), RGBA (h, w, 4) or I420 (h * 3 // 2, w)

The text (or icon) is drawn once per frame size with Pillow, from a CJK font that ships with the project
(streaming/assets/: no download, and a machine without CJK fonts draws it the same), into an RGBA patch; a
frame then costs one copy of the picture and an alpha blend of the patch's few thousand pixels, in the
frame's own format (I420 planes for the encoders: no colour conversion per frame).

Presets (the rules they follow are in the README's "Disclosure" section):
- `cn`: "AI生成" at a corner, glyph height at least 5% of the short side (GB 45438-2025), on for the whole
  stream (the livestream e-commerce rules ask for a continuous reminder). A smaller height is refused.
- `eu`: an "AI" icon top-right (the EU Code of Practice's suggestion under AI Act Art. 50), shown from the
  first frame for `show_s`, again for `show_s` whenever speech resumes after `pause_s` of silence, and at
  least every `repeat_s` (a viewer who joins mid-stream sees it within that).
- `en`: "AI-generated" at a corner, sized and shown as `cn`.
- `off`: no label; only by an explicit setting, and each stream without one is logged (WARNING, with its
  id) and counted (`unlabelled_streams_total`, in /metrics).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import resources
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from engine.types import FPS
from streaming.keying import i420_planes

log = logging.getLogger(__name__)

Preset = Literal["cn", "eu", "en", "off"]
PRESETS: tuple[str, ...] = ("cn", "eu", "en", "off")
POSITIONS: tuple[str, ...] = ("top-left", "top-right", "bottom-left", "bottom-right")
MIN_CN_HEIGHT = 0.05  # GB 45438-2025: text height at least 5% of the picture's shortest side
FONT = "NotoSansCJKsc-Bold-subset.otf"
SPEECH_DB = -40.0  # a frame's audio louder than this (dBFS RMS) is speech, for the eu preset's pauses
_TEXTS = {"cn": "AI生成", "eu": "AI", "en": "AI-generated"}

unlabelled_streams_total = 0  # streams started with the label off, since this process started (/metrics)


@dataclass(frozen=True)
class LabelSpec:
    """What to draw, where, and when. None: the preset's default."""

    preset: str = "en"
    text: str | None = None
    position: str | None = None  # top-left, top-right, bottom-left, bottom-right
    height: float | None = None  # glyph height (ink of the capitals / CJK glyphs) as a fraction of the short side
    # eu: visible for show_s from the first frame, after a pause in speech of pause_s, and every repeat_s
    show_s: float = 5.0
    pause_s: float = 2.0
    repeat_s: float = 30.0

    @property
    def off(self) -> bool:
        return self.preset == "off"

    def resolved(self) -> LabelSpec:
        """The preset's defaults filled in, checked (ValueError naming the setting)."""
        if self.preset not in PRESETS:
            raise ValueError(f"label {self.preset!r}: one of {', '.join(PRESETS)}")
        spec = replace(self, text=self.text or _TEXTS.get(self.preset, ""), position=self.position or "top-right",
                       height=self.height or MIN_CN_HEIGHT)
        if spec.off:
            return spec
        if spec.position not in POSITIONS:
            raise ValueError(f"label_position {spec.position!r}: one of {', '.join(POSITIONS)}")
        assert spec.height is not None and spec.text is not None
        if not 0 < spec.height <= 0.25:
            raise ValueError(f"label_height {spec.height}: a fraction of the frame's short side, above 0 and at most "
                             "0.25")
        if spec.preset == "cn":
            if spec.height < MIN_CN_HEIGHT:
                raise ValueError(f"label_height {spec.height}: the cn preset (GB 45438-2025) needs glyphs at least "
                                 f"{MIN_CN_HEIGHT:.0%} of the frame's short side")
            if "AI" not in spec.text.upper() or not any(w in spec.text for w in ("生成", "合成")):
                raise ValueError(f"label_text {spec.text!r}: the cn preset's text must contain \"AI\" and 生成 or 合成")
        if not spec.text.strip() or len(spec.text) > 40:
            raise ValueError(f"label_text {spec.text!r}: 1 to 40 characters")
        missing = sorted(set(spec.text) - _font_characters())
        if missing:
            raise ValueError(f"label_text {spec.text!r}: the bundled font has no glyph for {''.join(missing)!r} "
                             "(streaming/assets/README.md says how to add some)")
        for name in ("show_s", "pause_s", "repeat_s"):
            if not getattr(spec, name) > 0:
                raise ValueError(f"label_{name} must be greater than 0")
        return spec


def _font_path() -> str:
    return str(resources.files("streaming") / "assets" / FONT)


_chars: set[str] | None = None


def _font_characters() -> set[str]:
    global _chars
    if _chars is None:
        from fontTools.ttLib import TTFont

        _chars = {chr(c) for c in TTFont(_font_path())["cmap"].getBestCmap()} | {" "}
    return _chars


@dataclass(frozen=True)
class _Patch:
    """The label at one frame size: where it goes and its pixels, premultiplied, in RGB and in I420."""

    x: int
    y: int  # top-left on the frame (even: chroma is half size)
    alpha: np.ndarray  # (h, w) float32 0..1
    rgb: np.ndarray  # (h, w, 3) float32, premultiplied by alpha
    alpha_c: np.ndarray  # (h / 2, w / 2) chroma-size alpha
    yuv: tuple[np.ndarray, np.ndarray, np.ndarray]  # premultiplied Y (h, w), U and V (h / 2, w / 2)
    glyph_px: int  # the ink height it was sized to


def render_label(text: str, glyph_px: int, icon: bool = False) -> tuple[np.ndarray, int]:
    """The label as an RGBA image (white text on a translucent dark rounded box; an icon: a white outline too),
    with the font sized so the ink of its capitals and CJK glyphs is glyph_px tall. Returns (rgba, glyph_px)."""
    path = _font_path()
    probe = "".join(c for c in text if c.isupper() or c.isdigit() or ord(c) > 0x2E80) or text
    size, ink = glyph_px, 0
    for _ in range(8):  # the ink height is near-proportional to the font size: converge in a step or two
        ink = _ink_rows(ImageFont.truetype(path, size), probe)
        if ink >= glyph_px:
            break
        size = max(size + 1, math.ceil(size * glyph_px / max(ink, 1)))
    font = ImageFont.truetype(path, size)
    left, top, right, bottom = font.getbbox(text)
    pad_x, pad_y = max(2, round(glyph_px * 0.45)), max(2, round(glyph_px * 0.3))
    w, h = right - left + 2 * pad_x, bottom - top + 2 * pad_y
    w, h = w + w % 2, h + h % 2
    image = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    radius = max(2, round(glyph_px * 0.3))
    outline = max(1, round(glyph_px * 0.08)) if icon else 0
    draw.rounded_rectangle((0, 0, w - 1, h - 1), radius=radius, fill=(0, 0, 0, 150),
                           outline=(255, 255, 255, 235) if icon else None, width=outline)
    draw.text((pad_x - left, pad_y - top), text, font=font, fill=(255, 255, 255, 255))
    return np.asarray(image), ink


def _ink_rows(font: ImageFont.FreeTypeFont, text: str) -> int:
    """How many rows the text's ink covers, counting a row where some pixel is at least 3/4 covered: what a viewer
    (or a measurement on the decoded picture) sees as the glyphs' height, anti-aliased edges left out."""
    left, top, right, bottom = font.getbbox(text)
    mask = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(mask).text((1 - left, 1 - top), text, font=font, fill=255)
    rows = np.nonzero((np.asarray(mask) >= 192).any(axis=1))[0]
    return int(rows[-1] - rows[0] + 1) if len(rows) else 0


class DisclosureLabel:
    """label(picture, frame_index) -> the picture with the label drawn in (a copy; the input is never written)."""

    def __init__(self, spec: LabelSpec | str = "en") -> None:
        spec = LabelSpec(spec) if isinstance(spec, str) else spec
        self.spec = spec.resolved()
        if self.spec.off:
            raise ValueError("label off draws nothing: use no DisclosureLabel (streaming.disclosure.apply_label)")
        self._patches: dict[tuple[int, int], _Patch] = {}
        # Per I420 frame size, the last region under the label and what the label made of it (Y, U, V): a region
        # that has not changed (a still corner of the photo, a background picture, the key) is given the same bytes
        # by a copy rather than the blend again
        self._drawn: dict[tuple[int, int], tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self._last_voiced: int | None = None
        self._shown_from = 0  # eu: the frame its current showing began
        self.frames_labelled = 0

    @property
    def always(self) -> bool:
        return self.spec.preset != "eu"

    def hear(self, frame_index: int, samples: np.ndarray) -> None:
        """The audio of frame frame_index (eu: speech after a pause shows the icon again). In frame order."""
        if self.always or not len(samples):
            return
        level = 10 * math.log10(float(np.mean(np.square(samples, dtype=np.float32))) + 1e-12)
        if level < SPEECH_DB:
            return
        pause = round(self.spec.pause_s * FPS)
        if self._last_voiced is None or frame_index - self._last_voiced >= pause:
            self._shown_from = frame_index
        self._last_voiced = frame_index

    def visible(self, frame_index: int) -> bool:
        if self.always:
            return True
        show, repeat = round(self.spec.show_s * FPS), max(1, round(self.spec.repeat_s * FPS))
        return (frame_index < show or self._shown_from <= frame_index < self._shown_from + show
                or frame_index % repeat < show)

    def patch(self, width: int, height: int) -> _Patch:
        """The label laid out for a width x height frame (made once per size)."""
        found = self._patches.get((width, height))
        if found is None:
            found = self._patches[(width, height)] = self._layout(width, height)
        return found

    def _layout(self, width: int, height: int) -> _Patch:
        spec = self.spec
        assert spec.height is not None and spec.text is not None and spec.position is not None
        short = min(width, height)
        glyph_px = max(4, math.ceil(spec.height * short))
        rgba, ink = render_label(spec.text, glyph_px, icon=spec.preset == "eu")
        margin = max(2, round(0.03 * short))
        h, w = rgba.shape[:2]
        if w + 2 * margin > width or h + 2 * margin > height:  # a long text on a small frame: shrink to fit
            scale = min((width - 2 * margin) / w, (height - 2 * margin) / h)
            # Shrunk rather than refused: this runs in the pacer, and a stream must not end over its label.
            log.warning("label %r with %d px glyphs is larger than a %dx%d frame: glyphs shrunk to %.1f px%s",
                        spec.text, ink, width, height, ink * scale,
                        " (below the cn preset's 5%: use a shorter label_text)" if spec.preset == "cn" else "")
            w, h = max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2)
            rgba = cv2.resize(rgba, (w, h), interpolation=cv2.INTER_AREA)
        x = margin if spec.position.endswith("left") else width - margin - w
        y = margin if spec.position.startswith("top") else height - margin - h
        x, y = x // 2 * 2, y // 2 * 2
        alpha = rgba[..., 3].astype(np.float32) / 255
        rgb = rgba[..., :3].astype(np.float32) * alpha[..., None]
        yuv = cv2.cvtColor(np.ascontiguousarray(rgba[..., :3]), cv2.COLOR_RGB2YUV_I420).reshape(-1)
        y_plane = yuv[:w * h].reshape(h, w).astype(np.float32)
        u = yuv[w * h:w * h + w * h // 4].reshape(h // 2, w // 2).astype(np.float32)
        v = yuv[w * h + w * h // 4:].reshape(h // 2, w // 2).astype(np.float32)
        alpha_c = cv2.resize(alpha, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        return _Patch(x, y, alpha, rgb, alpha_c, (y_plane * alpha, u * alpha_c, v * alpha_c), ink)

    def __call__(self, picture: np.ndarray, frame_index: int, *, in_place: bool = False) -> np.ndarray:
        """The picture with the label drawn in: into a copy, since sinks keep what they were handed and a window's
        frame may condition the next one, unless the caller says the picture is its own (`in_place`: the canvas
        just made it), which saves copying a whole frame (~0.05-0.1 ms at 720x1280)."""
        if not self.visible(frame_index):
            return picture
        out = picture if in_place else picture.copy()
        if picture.ndim == 3:
            height, width = picture.shape[:2]
            p = self.patch(width, height)
            h, w = p.alpha.shape
            region = out[p.y:p.y + h, p.x:p.x + w]
            rgb = region[..., :3].astype(np.float32)
            region[..., :3] = (rgb * (1 - p.alpha[..., None]) + p.rgb + 0.5).astype(np.uint8)
            if picture.shape[2] == 4:  # a keyed picture: the label is opaque where it is drawn
                a = region[..., 3].astype(np.float32)
                region[..., 3] = (a + (255 - a) * p.alpha + 0.5).astype(np.uint8)
        else:
            height, width = picture.shape[0] * 2 // 3, picture.shape[1]
            p = self.patch(width, height)
            regions = []
            for i, plane in enumerate(i420_planes(out, width, height)):
                h, w = (p.alpha if i == 0 else p.alpha_c).shape
                d = 1 if i == 0 else 2
                regions.append(plane[p.y // d:p.y // d + h, p.x // d:p.x // d + w])
            drawn = self._drawn.get((width, height))
            if drawn is not None and all(cv2.norm(r, before, cv2.NORM_INF) == 0
                                         for r, before in zip(regions, drawn[0], strict=True)):
                for region, after in zip(regions, drawn[1], strict=True):
                    region[:] = after
            else:
                before = [r.copy() for r in regions]
                for i, (region, pm) in enumerate(zip(regions, p.yuv, strict=True)):
                    a = p.alpha if i == 0 else p.alpha_c
                    region[:] = (region.astype(np.float32) * (1 - a) + pm + 0.5).astype(np.uint8)
                self._drawn[(width, height)] = before, [r.copy() for r in regions]
            person = getattr(out, "_alpha", None)
            if person is not None:  # an alpha-mode picture (streaming/keying.py): the label is opaque in its file too
                out = type(out).wrap(np.asarray(out), functools.partial(_with_label_alpha, person, p))
        self.frames_labelled += 1
        return out


def label_for(spec: LabelSpec, stream_id: str) -> DisclosureLabel | None:
    """The stream's label, or None when the spec turns it off: then an audit line (WARNING, naming the stream) and
    unlabelled_streams_total counts it."""
    global unlabelled_streams_total
    if spec.off:
        unlabelled_streams_total += 1
        log.warning("stream %s: AI disclosure label OFF by explicit setting (label = \"off\"): its pictures carry no "
                    "visible AI label; the operator is responsible for disclosing it", stream_id)
        return None
    return DisclosureLabel(spec)


def spec_from_config(config: object, preset: str | None = None) -> LabelSpec:
    """The LabelSpec of a ServerConfig's label_* settings (preset: a per-stream override of `label`)."""
    return LabelSpec(preset or getattr(config, "label", "en"), text=getattr(config, "label_text", None) or None,
                     position=getattr(config, "label_position", None) or None,
                     height=getattr(config, "label_height", 0.0) or None)


def _with_label_alpha(person: np.ndarray | Callable[[], np.ndarray], patch: _Patch) -> np.ndarray:
    """The person's alpha with the label's drawn over it: made where the alpha is read (the file sink's thread)."""
    alpha = np.array(person() if callable(person) else person, copy=True)
    h, w = patch.alpha.shape
    region = alpha[patch.y:patch.y + h, patch.x:patch.x + w]
    np.maximum(region, (patch.alpha * (255.0 if alpha.dtype == np.uint8 else 1.0)).astype(alpha.dtype), out=region)
    return alpha
