"""Portraits chosen per stream: uploaded by the operator or named from the server's portraits folder, prepared
once (seconds of CPU: face landmarks, the person matte) and kept in memory by content hash.

    store = PortraitStore(config, default_avatar)
    portrait = await store.upload(jpeg_bytes, label="me.jpg")   # PortraitRefused(status, reason) when unusable
    avatar = await store.resolve("3f2a...") or store.resolve("hopper.jpg") or store.resolve(None)  # the default

Preparing runs on one thread of its own, off the event loop, one portrait at a time: the streams already
live keep their render threads and their loop, and a burst of uploads queues (a bounded queue: 503 past it)
instead of taking every core. At most `max_portraits` prepared portraits are kept; the least recently used
one is dropped (and its shared generator released; streams that use it keep theirs).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import logging
import tempfile
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from engine.generator import AvatarError, PreparedAvatar, prepare_avatar, release_generator
from engine.generator.avatar import DEFAULT_CACHE_DIR
from streaming.config import ServerConfig

log = logging.getLogger(__name__)
FORMATS = {"JPEG": "jpg", "PNG": "png"}  # what an upload may be (Pillow's format names)
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")  # what a file in the portraits folder may be
MAX_UPLOAD_PIXELS = 25_000_000  # checked on the header, before decoding: a small PNG can inflate to gigabytes
MAX_WAITING = 4  # prepares queued behind the one running; more get 503
MAX_LABEL_CHARS = 80
DEFAULT_ID = "default"


class PortraitRefused(ValueError):
    """A portrait that cannot be used: the HTTP status to answer and the reason, in the client's words."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class Portrait:
    id: str  # the first 16 hex digits of the image's SHA-256 ("default" for the server's own)
    avatar: PreparedAvatar
    source: str  # "upload", "file" (portraits_dir) or "server" (--avatar at start)
    label: str

    def describe(self) -> dict[str, Any]:
        width, height = self.avatar.size
        return {"id": self.id, "name": self.label, "source": self.source, "width": width, "height": height,
                "notes": list(self.avatar.notes)}


def content_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def clean_label(label: str | None, fallback: str) -> str:
    """A display name from a client (an uploaded file's name): printable, short."""
    text = "".join(c for c in (label or "") if c.isprintable()).strip()[:MAX_LABEL_CHARS]
    return text or fallback


def check_image(data: bytes) -> str:
    """The upload's file suffix when it is a whole JPEG or PNG of a sane size; PortraitRefused otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
        with im:
            if im.format not in FORMATS:
                raise PortraitRefused(400, f"the image is {im.format or 'of an unknown format'}: upload a JPEG or PNG")
            if im.width * im.height > MAX_UPLOAD_PIXELS:
                raise PortraitRefused(413, f"the image is {im.width}x{im.height}: at most {MAX_UPLOAD_PIXELS:,} "
                                           "pixels")
            im.load()
            return FORMATS[im.format]
    except UnidentifiedImageError:
        raise PortraitRefused(400, "the body is not an image (upload a JPEG or PNG)") from None
    except Image.DecompressionBombError:
        raise PortraitRefused(413, f"the image is over {MAX_UPLOAD_PIXELS:,} pixels") from None
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's decoders raise these on a corrupt file
        raise PortraitRefused(400, f"the image is corrupt or truncated ({e})") from None


@dataclass
class PortraitStore:
    config: ServerConfig
    default: PreparedAvatar
    _kept: OrderedDict[str, Portrait] = field(default_factory=OrderedDict)
    _preparing: dict[str, asyncio.Future[Portrait]] = field(default_factory=dict)
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "portrait-prepare"))
    prepared: int = 0  # portraits prepared since start (not counting those found in memory)
    refused: int = 0

    def default_portrait(self) -> Portrait:
        return Portrait(DEFAULT_ID, self.default, "server", self.default.name)

    def kept(self) -> list[Portrait]:
        return list(reversed(self._kept.values()))  # most recently used first

    def files(self) -> list[str]:
        """The portraits folder's image files, by name (empty when no folder is set)."""
        folder = self.config.portraits_dir
        if not folder or not Path(folder).is_dir():
            return []
        return sorted(p.name for p in Path(folder).iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())

    async def upload(self, data: bytes, label: str | None = None) -> tuple[Portrait, bool]:
        """The portrait in an uploaded image, prepared (or found prepared); True when it was new."""
        pid = content_id(data)
        if pid in self._kept:
            self._kept.move_to_end(pid)
            return self._kept[pid], False
        return await self._prepare(pid, data, "upload", clean_label(label, f"upload {pid[:8]}"), None), True

    async def resolve(self, ref: str | None) -> Portrait:
        """A stream's portrait: None or "default" (the server's own), an id from upload, or a file's name in the
        portraits folder (its extension may be left out). PortraitRefused(422) when it names none."""
        if ref is None or ref == DEFAULT_ID:
            return self.default_portrait()
        if ref in self._kept:
            self._kept.move_to_end(ref)
            return self._kept[ref]
        path = self._named_file(ref)
        data = await asyncio.get_running_loop().run_in_executor(None, path.read_bytes)
        pid = content_id(data)
        if pid in self._kept:
            self._kept.move_to_end(pid)
            return self._kept[pid]
        return await self._prepare(pid, data, "file", path.name, path)

    def _named_file(self, ref: str) -> Path:
        folder = self.config.portraits_dir
        unknown = (f"avatar {ref!r}: no such portrait: not an id from POST /portraits (uploads are kept in memory, "
                   f"{self.config.max_portraits} at most: upload it again if it was dropped)")
        if not folder:
            raise PortraitRefused(422, unknown + " and this server has no portraits_dir to name files from")
        root = Path(folder).resolve()
        for name in (ref, *(ref + s for s in SUFFIXES)):
            try:
                path = (root / name).resolve()
                if path.is_relative_to(root) and path.is_file() and path.suffix.lower() in SUFFIXES:
                    return path
            except (OSError, ValueError):  # a name no file can have (a NUL, too long): not one of them
                continue
        raise PortraitRefused(422, unknown + " nor an image file in the portraits folder (GET /portraits lists them)")

    async def _prepare(self, pid: str, data: bytes, source: str, label: str, path: Path | None) -> Portrait:
        running = self._preparing.get(pid)
        if running is not None:  # the same image twice at once: prepared once
            return await asyncio.shield(running)
        if len(self._preparing) > MAX_WAITING:
            raise PortraitRefused(503, f"{len(self._preparing)} portraits are being prepared; try again shortly")
        future: asyncio.Future[Portrait] = asyncio.get_running_loop().create_future()
        self._preparing[pid] = future
        try:
            avatar = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._prepare_blocking, data, label, path)
            portrait = Portrait(pid, avatar, source, label)
            self._keep(portrait)
            self.prepared += 1
            future.set_result(portrait)
            return portrait
        except asyncio.CancelledError:  # the asking request went away; its prepare finishes on its thread
            future.cancel()
            raise
        except Exception as e:
            if isinstance(e, PortraitRefused):
                self.refused += 1
            future.set_exception(e)
            future.exception()  # retrieved: nobody else may be waiting for it
            raise
        finally:
            del self._preparing[pid]

    def _prepare_blocking(self, data: bytes, label: str, path: Path | None) -> PreparedAvatar:
        engine = self.config.engine
        cache = {"": DEFAULT_CACHE_DIR, "off": None}.get(engine.avatar_cache_dir, Path(engine.avatar_cache_dir))
        suffix = check_image(data) if path is None else None
        with tempfile.TemporaryDirectory(prefix="portrait-") as tmp:
            if path is None:
                path = Path(tmp) / f"upload.{suffix}"
                path.write_bytes(data)
            try:
                avatar = prepare_avatar(path, engine.max_side_px, cache_dir=cache,
                                        keep_expression=engine.keep_expression)
            except AvatarError as e:  # its message names the server's path: say the client's name instead
                reason = str(e).replace(str(path), label).replace(path.name, label)
                raise PortraitRefused(422, reason) from None
        log.info("portrait %s: prepared (%dx%d)", label, *avatar.size)
        return dataclasses.replace(avatar, name=label)

    def _keep(self, portrait: Portrait) -> None:
        self._kept[portrait.id] = portrait
        self._kept.move_to_end(portrait.id)
        while len(self._kept) > self.config.max_portraits:
            _, dropped = self._kept.popitem(last=False)
            release_generator(dropped.avatar)
            log.info("portrait %s: dropped from memory (%d kept at most)", dropped.label, self.config.max_portraits)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
