"""A portrait per stream (issue 14): POST /portraits uploads one, POST /streams {"avatar": ...} streams it, on the
real app over real sockets of 127.0.0.1 with the real preparation (mediapipe) and the warp generator."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from engine.config import EngineConfig
from engine.generator import PreparedAvatar, prepare_avatar
from harness.server import running
from streaming.app import REGISTRY, build_app
from streaming.auth import POLICY
from streaming.config import ServerConfig
from streaming.portraits_api import PORTRAITS

PORTRAITS_DIR = Path(__file__).parent / "data" / "portraits"
HOPPER = (PORTRAITS_DIR / "hopper.jpg").read_bytes()
JPEG = {"Content-Type": "image/jpeg"}


@pytest.fixture(scope="module")
def avatar() -> PreparedAvatar:
    return prepare_avatar(None, 320)


def config(cache: Path, **kw: object) -> ServerConfig:
    engine = EngineConfig(max_side_px=320, avatar_cache_dir=str(cache))
    return ServerConfig(engine=engine, offer_burst=30, **kw)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def serving(cfg: ServerConfig, avatar: PreparedAvatar) -> AsyncIterator[tuple[str, web.Application]]:
    app = build_app(cfg, avatar)
    async with running(app) as base:
        yield base, app


def png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def test_the_portrait_routes_are_the_operators() -> None:
    """A portrait costs seconds of CPU to prepare and a stream's look: no scoped token reaches them (tests/test_auth.py
    checks that an operator route refuses every other credential)."""
    for key in (("POST", "/portraits"), ("GET", "/portraits"), ("GET", "/streams/{sid}")):
        assert POLICY[key].access == "operator", key


async def test_uploads_are_checked_prepared_once_and_streamed_per_stream(avatar: PreparedAvatar,
                                                                         tmp_path: Path) -> None:
    cfg = config(tmp_path / "cache", portraits_dir=str(PORTRAITS_DIR), max_portraits=2, portrait_max_bytes=100_000,
                 max_sessions=5)
    async with serving(cfg, avatar) as (base, app), aiohttp.ClientSession() as http:
        sky = np.zeros((240, 320, 3), np.uint8)
        sky[...] = np.linspace(90, 200, 320, dtype=np.uint8)[None, :, None]
        refusals = ((HOPPER[:4000], JPEG, 400, "corrupt or truncated"),
                    (b"hello, not a picture", JPEG, 400, "not an image"),
                    (png(sky), {"Content-Type": "image/png"}, 422, "no face"),
                    (HOPPER, {"Content-Type": "text/plain"}, 415, "image/jpeg"),
                    ((PORTRAITS_DIR / "hopper_tall_exif6.jpg").read_bytes(), JPEG, 413, "portrait_max_bytes"))
        for body, headers, status, words in refusals:
            async with http.post(f"{base}/portraits", data=body, headers=headers) as r:
                error = (await r.json())["error"]
                assert r.status == status and words in error, (status, r.status, error)
                assert "/tmp" not in error and "portrait-" not in error, "a refusal names a server path"
        async with http.post(f"{base}/portraits?name=Grace.jpg", data=HOPPER, headers=JPEG) as r:
            assert r.status == 201, await r.text()
            uploaded = await r.json()
        assert uploaded["name"] == "Grace.jpg" and uploaded["source"] == "upload" and len(uploaded["id"]) == 16
        t0 = time.monotonic()
        async with http.post(f"{base}/portraits", data=HOPPER, headers=JPEG) as r:  # the same image: kept
            assert r.status == 200 and (await r.json())["id"] == uploaded["id"]
        assert time.monotonic() - t0 < 1.0
        # A stream per portrait: the upload by id, a file of the portraits folder by name, the server's own.
        made = {}
        for ref in (uploaded["id"], "luispedro", None):
            async with http.post(f"{base}/streams", json={"avatar": ref} if ref else {}) as r:
                assert r.status == 201, await r.text()
                made[ref] = await r.json()
        streams = app[REGISTRY].active
        sizes = {ref: streams[m["id"]].session.avatar.size for ref, m in made.items()}
        assert sizes[uploaded["id"]] != sizes[None] and sizes["luispedro"] != sizes[None], sizes
        assert made["luispedro"]["avatar"]["source"] == "file"
        async with http.get(f"{base}/streams/{made[uploaded['id']]['id']}") as r:
            one = await r.json()
        assert one["avatar"]["id"] == uploaded["id"] and one["viewers"] == 0 and one["state"] == "streaming"
        async with http.get(f"{base}/portraits") as r:
            listed = await r.json()
        assert listed["portraits"][0]["id"] == "default" and "hopper.jpg" in listed["files"]
        # Unknown portraits and paths out of the folder: a clear 422; max_portraits=2 dropped the upload.
        for ref, words in (("0123456789abcdef", "no such portrait"), ("../../../etc/passwd", "no such portrait"),
                           ("limits/three_faces", None)):
            async with http.post(f"{base}/streams", json={"avatar": ref}) as r:
                if words is None:
                    assert r.status == 201, await r.text()
                    continue
                assert r.status == 422 and words in (await r.json())["error"], ref
        assert uploaded["id"] not in app[PORTRAITS]._kept, "more than max_portraits kept"
        async with http.post(f"{base}/streams", json={"avatar": uploaded["id"]}) as r:
            assert r.status == 422 and "upload it again" in (await r.json())["error"]
        assert len(streams) == 4  # the refusals left nothing behind


async def test_a_live_stream_keeps_its_rate_while_a_portrait_is_prepared(avatar: PreparedAvatar,
                                                                         tmp_path: Path) -> None:
    cfg = ServerConfig(engine=EngineConfig(max_side_px=720, avatar_cache_dir="off"))  # the longest prepare
    async with serving(cfg, avatar) as (base, app), aiohttp.ClientSession() as http:
        async with http.post(f"{base}/streams", json={}) as r:
            stream = app[REGISTRY].active[(await r.json())["id"]]
        await asyncio.sleep(1.0)  # past its start
        sent0, t0 = stream.pacer.metrics.frames_sent, time.monotonic()
        async with http.post(f"{base}/portraits", data=HOPPER, headers=JPEG) as r:
            assert r.status == 201, await r.text()
        took = time.monotonic() - t0
        rate = (stream.pacer.metrics.frames_sent - sent0) / took
        print(f"prepare {took:.2f} s; the live stream meanwhile {rate:.1f} fps")
        assert took > 0.3, "the portrait was not prepared (cached?)"
        assert rate >= 40, f"{rate:.1f} fps while a portrait was prepared"
