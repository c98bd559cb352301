"""The browser session of POST /offer gets the outputs of POST /streams (issue 14): a recording (and the output
size) asked for on the offer, from a real aiortc peer to the real app on 127.0.0.1, read back with PyAV."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import av
import pytest

from engine.config import EngineConfig
from engine.generator import PreparedAvatar, prepare_avatar
from harness.offer_seeds import aiortc_offer
from harness.server import running
from harness.webrtc_client import stream_session
from streaming.app import REGISTRY, build_app
from streaming.config import ServerConfig


@pytest.fixture(scope="module")
def avatar() -> PreparedAvatar:
    return prepare_avatar(None, 320)


async def test_an_offer_session_records_at_its_output_size_only_inside_the_recordings_folder(
        avatar: PreparedAvatar, tmp_path: Path, speech_wav: Path) -> None:
    cfg = ServerConfig(engine=EngineConfig(max_side_px=320), recordings_dir=str(tmp_path), offer_burst=20)
    app = build_app(cfg, avatar)
    async with running(app) as base, aiohttp.ClientSession() as http:
        sdp = await aiortc_offer()
        for outputs, status, words in (({"record_dir": "../outside"}, 400, "not inside"),
                                       ({"rtmp": ["http://not-rtmp"]}, 400, "rtmp"),
                                       ({"size": "huge"}, 400, "size"),
                                       ({"colour": "red"}, 400, "colour")):
            async with http.post(f"{base}/offer", json={"sdp": sdp, "type": "offer", "outputs": outputs}) as r:
                error = (await r.json())["error"]
                assert r.status == status and words in error, (outputs, r.status, error)
        assert not app[REGISTRY].active, "a refused offer left a session behind"
        described: list[dict] = []

        async def look(sid: str) -> None:
            await asyncio.sleep(2.0)
            async with http.get(f"{base}/streams/{sid}") as r:
                described.append(await r.json())

        got, sid = await stream_session(base, speech_wav, 3.0, during=look,
                                        extra={"outputs": {"record_dir": "rec", "size": "360x640"}})
    assert got.video_size == (360, 640), "the peer's picture is not on the canvas asked for"
    outputs = described[0]["outputs"]
    assert described[0]["kind"] == "webrtc" and outputs["size"] == "360x640" and outputs["recording"] is not None
    files = list((tmp_path / "rec").glob("*.mp4"))
    assert len(files) == 1 and files[0].name.startswith(sid)
    with av.open(str(files[0])) as container:
        frames = list(container.decode(video=0))
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
    print(f"recorded {len(frames)} frames, audio {audio}")
    assert len(frames) >= 48 * 2 and (frames[0].width, frames[0].height) == (360, 640)
    assert audio == "aac"
