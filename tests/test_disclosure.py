"""The AI disclosure: the visible label from the first frame of every output (render, recording, WHEP viewer), the
cn preset's 5% glyph height, the label-off audit line and count, the AIGC hidden label in file metadata, and C2PA
credentials that validate with c2pa-python's reader (a CA and signing certificate made at test time)."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import av
import cv2
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.config import EngineConfig
from engine.generator import PreparedAvatar, prepare_avatar
from harness.nginx_rtmp import NginxRtmp
from harness.nginx_rtmp import available as nginx_missing
from harness.server import running
from harness.webrtc_client import stream_session
from harness.whep_client import WhepViewer
from streaming import disclosure
from streaming.aigc import read_aigc
from streaming.app import build_app
from streaming.c2pa_sign import AI_SOURCE_TYPE, AIGC_ASSERTION, read_manifest
from streaming.config import ServerConfig, load_config
from streaming.disclosure import DisclosureLabel, LabelSpec, label_for
from streaming.egress_file import render_to_file
from streaming.live_stream import live_stream, parse_outputs, start_live_stream
from streaming.patches import use_fixed_bitrate, use_ice_addresses
from streaming.provenance import Provenance
from tests.conftest import REPO, write_wav


@pytest.fixture(scope="module")
def avatar() -> PreparedAvatar:
    return prepare_avatar(max_side_px=320)


@pytest.fixture(scope="module")
def short_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tone = 0.2 * np.sin(2 * np.pi * 220 * np.arange(24000) / 48000)
    return write_wav(tmp_path_factory.mktemp("audio") / "tone.wav", tone.astype(np.float32))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """A root CA and a signing certificate it issued (EC P-256), with the extensions C2PA asks of a signer."""
    tmp = tmp_path_factory.mktemp("c2pa")
    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                                                                           "avatar-engine tests")])

    def builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=7))
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (builder("Test Root CA", name("Test Root CA"), ca_key)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (builder("Test Signer", ca.subject, key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (tmp / "chain.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (tmp / "key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    return {"cert": tmp / "chain.pem", "key": tmp / "key.pem", "anchor": ca.public_bytes(pem).decode()}


def label_box(preset: str, width: int, height: int) -> tuple[int, int, int, int]:
    p = DisclosureLabel(preset).patch(width, height)
    return p.x, p.y, p.alpha.shape[1], p.alpha.shape[0]


def region_change(frame: np.ndarray, reference: np.ndarray, box: tuple[int, int, int, int]) -> float:
    x, y, w, h = box
    return float(np.abs(frame[y:y + h, x:x + w].astype(np.float32) - reference[y:y + h, x:x + w]).mean())


def first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="gray")


def ink_height(gray_with: np.ndarray, gray_without: np.ndarray) -> int:
    """Rows holding the label's text: pixels the label made much brighter (white glyphs on a darkened box)."""
    rows = np.nonzero(((gray_with.astype(np.int16) - gray_without) > 60).any(axis=1))[0]
    return int(rows[-1] - rows[0] + 1) if len(rows) else 0


# ---- the label itself -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(720, 1280), (1280, 720), (320, 240)])
def test_cn_glyphs_are_at_least_5_percent_of_the_short_side(size: tuple[int, int]) -> None:
    width, height = size
    grey = np.full((height, width, 3), 110, np.uint8)
    drawn = DisclosureLabel("cn")(grey, 0)
    gray = cv2.cvtColor(drawn, cv2.COLOR_RGB2GRAY)
    x, y, w, h = label_box("cn", width, height)
    assert (gray[:y].astype(int) == 110).all() and (gray[y + h:].astype(int) == 110).all()  # only its box changed
    assert x + w <= width and x >= width // 2 and y < height // 10, "top-right corner"
    assert ink_height(gray, cv2.cvtColor(grey, cv2.COLOR_RGB2GRAY)) >= 0.05 * min(width, height)
    # The same in I420 (what the encoders take), and the input is never written.
    i420 = cv2.cvtColor(grey, cv2.COLOR_RGB2YUV_I420)
    out = DisclosureLabel("cn")(i420, 0)
    assert (i420 == cv2.cvtColor(grey, cv2.COLOR_RGB2YUV_I420)).all()
    assert ink_height(out[:height], i420[:height]) >= 0.05 * min(width, height)


def test_bad_label_settings_are_refused_with_the_rule() -> None:
    with pytest.raises(ValueError, match="at least 5%"):
        load_config(overrides={"label": "cn", "label_height": 0.04})
    with pytest.raises(ValueError, match="生成 or 合成"):
        load_config(overrides={"label": "cn", "label_text": "AI"})
    with pytest.raises(ValueError, match="no glyph"):
        LabelSpec("en", text="AI 製作").resolved()
    with pytest.raises(ValueError, match="one of cn, eu, en, off"):
        load_config(environ={"AVATAR_ENGINE_LABEL": "none"})
    assert load_config(overrides={"label": "cn", "label_height": 0.08, "label_position": "bottom-left"}).label == "cn"


def test_a_c2pa_certificate_that_cannot_sign_is_refused_at_start(certs: dict, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(ValueError, match="not the key"):
        load_config(overrides={"c2pa_cert": str(certs["cert"]), "c2pa_key": str(other)})
    with pytest.raises(ValueError, match="not a PEM"):
        load_config(overrides={"c2pa_cert": str(other), "c2pa_key": str(certs["key"])})
    with pytest.raises(ValueError, match="go together"):
        load_config(overrides={"c2pa_cert": str(certs["cert"])})
    assert load_config(overrides={"c2pa_cert": str(certs["cert"]), "c2pa_key": str(certs["key"])}).c2pa_cert


def test_eu_icon_shows_first_then_again_after_a_pause_in_speech() -> None:
    label = DisclosureLabel(LabelSpec("eu", show_s=1.0, pause_s=2.0, repeat_s=600))
    voice, quiet = np.full(1000, 0.1, np.float32), np.zeros(1000, np.float32)
    shown = []
    for k in range(48 * 12):  # speech 0-3 s, silence 3-6 s, speech 6-12 s
        label.hear(k, voice if k < 144 or k >= 288 else quiet)
        shown.append(label.visible(k))
    assert all(shown[:48]) and not any(shown[48:288]), "from the first frame, for show_s"
    assert all(shown[288:336]) and not any(shown[336:]), "again when speech resumes after the pause"
    frame = np.zeros((48, 64, 3), np.uint8)
    assert label(frame, 300) is not frame and label(frame, 400) is frame  # hidden: untouched, not even copied


def test_label_off_is_logged_with_the_stream_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    before = disclosure.unlabelled_streams_total
    with caplog.at_level(logging.WARNING, logger="streaming.disclosure"):
        assert label_for(LabelSpec("off"), "stream-42") is None
    assert disclosure.unlabelled_streams_total == before + 1
    assert any(r.levelno == logging.WARNING and "stream-42" in r.getMessage() and "OFF" in r.getMessage()
               for r in caplog.records)


# ---- outputs ------------------------------------------------------------------------------------------------
async def test_render_labelled_from_the_first_frame_with_aigc_and_c2pa(avatar: PreparedAvatar, short_wav: Path,
                                                                        certs: dict, tmp_path: Path) -> None:
    config = ServerConfig(label="cn", label_producer="Example Studio", c2pa_cert=str(certs["cert"]),
                          c2pa_key=str(certs["key"]))
    engine = EngineConfig(max_side_px=320)
    out, plain = tmp_path / "labelled.mp4", tmp_path / "plain.mp4"
    await render_to_file(avatar, short_wav, out, engine, label=DisclosureLabel("cn"),
                         provenance=Provenance.from_config(config))
    await render_to_file(avatar, short_wav, plain, engine)
    labelled, reference = first_frame(out), first_frame(plain)
    height, width = labelled.shape
    box = label_box("cn", width, height)
    assert region_change(labelled, reference, box) > 25, "the label is in the first frame"
    x, y, w, h = box
    assert ink_height(labelled[y:y + h, x:x + w], reference[y:y + h, x:x + w]) >= 0.05 * min(width, height) - 1
    outside = labelled.copy()
    outside[y:y + h, x:x + w] = reference[y:y + h, x:x + w]
    assert np.abs(outside.astype(np.float32) - reference).mean() < 1.0, "nothing else changed"

    with av.open(str(out)) as c:
        aigc = read_aigc(c.metadata)
    assert aigc is not None and aigc["Label"] == "1" and aigc["ContentProducer"] == "Example Studio"
    assert set(aigc) == {"Label", "ContentProducer", "ProduceID", "ReservedCode1", "ContentPropagator",
                         "PropagateID", "ReservedCode2"}
    if shutil.which("ffprobe"):
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-of", "json", str(out)],  # noqa: ASYNC221
                               capture_output=True, text=True, check=True)
        assert json.loads(json.loads(probe.stdout)["format"]["tags"]["AIGC"]) == aigc

    state, manifest = read_manifest(out, trust_anchors_pem=certs["anchor"])
    assert state == "Trusted", state  # signature and hashes valid, and the chain ends at the test root
    assert read_manifest(out)[0] == "Valid"  # without the test root: valid, not trusted
    assert manifest is not None
    labels = {a["label"]: a["data"] for a in manifest["assertions"]}
    assert labels[AIGC_ASSERTION] == aigc
    actions = next(v for k, v in labels.items() if k.startswith("c2pa.actions"))["actions"]
    assert actions[0]["digitalSourceType"] == AI_SOURCE_TYPE


async def test_recording_whep_and_offer_viewers_labelled_from_the_first_frame(avatar: PreparedAvatar, certs: dict,
                                                                              short_wav: Path, tmp_path: Path) -> None:
    config = ServerConfig(label="cn", recordings_dir=str(tmp_path), c2pa_cert=str(certs["cert"]),
                          c2pa_key=str(certs["key"]), engine=EngineConfig(max_side_px=320))
    use_ice_addresses(["127.0.0.1"])
    use_fixed_bitrate(config.video_bitrate_bps)
    height, width = avatar.rgb.shape[:2]
    box = label_box("cn", width, height)
    x, y, w, h = box
    reference = cv2.cvtColor(avatar.rgb, cv2.COLOR_RGB2GRAY)
    async with running(build_app(config, avatar)) as base, aiohttp.ClientSession() as http:
        async with http.post(f"{base}/streams", json={"outputs": {"record_dir": "rec"}}) as r:
            assert r.status == 201, await r.text()
            sid = (await r.json())["id"]
        viewer = WhepViewer(crop_box=(x, y, x + w, y + h))
        await viewer.start(f"{base}/streams/{sid}/whep")
        for _ in range(200):  # bounded: up to 20 s on a loaded machine
            if len(viewer.got.crops) >= 5:
                break
            await asyncio.sleep(0.1)
        await viewer.stop()
        async with http.delete(f"{base}/streams/{sid}") as r:
            assert r.status == 200
        async with http.get(f"{base}/metrics") as r:
            assert "avatar_unlabelled_streams_total" in await r.text()
        offered, _ = await stream_session(base, short_wav, 1.5, crop_box=(x, y, x + w, y + h))  # POST /offer
    assert offered.crops, "the /offer viewer decoded no picture"
    assert np.abs(offered.crops[0] - reference[y:y + h, x:x + w]).mean() > 25, "the /offer viewer's first picture"
    assert viewer.got.crops, "the viewer decoded no picture"
    first = viewer.got.crops[0]
    assert np.abs(first - reference[y:y + h, x:x + w]).mean() > 25, "the viewer's first picture has the label"

    recording = next((tmp_path / "rec").glob("*.mp4"))
    frame = first_frame(recording)
    assert region_change(frame, reference, box) > 25, "the recording's first frame has the label"
    with av.open(str(recording)) as c:
        aigc = read_aigc(c.metadata)
    assert aigc is not None and aigc["Label"] == "1" and aigc["ProduceID"] == recording.stem
    assert read_manifest(recording, trust_anchors_pem=certs["anchor"])[0] == "Trusted"


async def test_a_stream_with_the_label_off_has_none_and_is_counted(avatar: PreparedAvatar,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from engine.session import AvatarSession

    config = ServerConfig(engine=EngineConfig(max_side_px=320))
    before = disclosure.unlabelled_streams_total
    session = AvatarSession(avatar, config.engine, live=True, session_id="unlabelled")
    with caplog.at_level(logging.WARNING, logger="streaming.disclosure"):
        live = live_stream(session, config, None, parse_outputs({"label": "off"}))
    assert live.stream.pacer.metrics.labelled == 0 and disclosure.unlabelled_streams_total == before + 1
    assert any("unlabelled" in r.getMessage() for r in caplog.records)
    await start_live_stream(live)
    await live.stream.close()
    labelled = live_stream(AvatarSession(avatar, config.engine, live=True, session_id="labelled"), config)
    assert labelled.stream.pacer.metrics.labelled == 1  # the default: on
    await labelled.stream.close()


def test_the_rtmp_push_carries_the_aigc_label_in_onmetadata(tmp_path: Path) -> None:
    """The push's child process (streaming/rtmp_push.py) with the label RtmpSink hands it, writing its FLV to a file
    instead of an ingest: the onMetaData it sends carries the AIGC JSON."""
    source = tmp_path / "in.flv"
    with av.open(str(source), "w", format="flv") as c:
        video = c.add_stream("libx264", rate=48, options={"g": "48"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = c.add_stream("aac", rate=48000, layout="mono")
        for i in range(24):
            c.mux(video.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * i, np.uint8), format="rgb24")))
        c.mux(video.encode(None))
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 48000
        c.mux(audio.encode(frame))
        c.mux(audio.encode(None))
    metadata = Provenance(producer="Example Studio").metadata("stream-7")
    pushed = tmp_path / "pushed.flv"
    with source.open("rb") as stdin:
        result = subprocess.run([sys.executable, "-m", "streaming.rtmp_push", str(pushed), json.dumps(metadata)],
                                stdin=stdin, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert "connected" in result.stdout and "error" not in result.stdout, result.stdout
    with av.open(str(pushed)) as c:
        aigc = read_aigc(c.metadata)
    assert aigc is not None and aigc["ContentProducer"] == "Example Studio" and aigc["ProduceID"] == "stream-7"


async def test_pictures_rendered_before_the_label_was_set_are_labelled_too(avatar: PreparedAvatar) -> None:
    """A live stream's store fills before any sink comes; a label set then still reaches its first picture."""
    from engine.session import AvatarSession
    from streaming.stream import AvatarStream
    from tests.fakes import FakeGenerator
    from tests.test_pacer import Recorder

    session = AvatarSession(avatar, EngineConfig(), live=True, session_id="early",
                            generator=FakeGenerator((320, 240), colour=(90, 90, 90)))
    stream = AvatarStream(session)
    await stream.start()
    try:
        for _ in range(200):  # bounded: the store fills within a few windows
            if stream.pacer._video:
                break
            await asyncio.sleep(0.05)
        assert stream.pacer._video, "nothing was rendered before a sink came"
        stream.pacer.set_label(DisclosureLabel("cn"))
        stored = list(stream.pacer._video.values())
        recorder = Recorder()
        stream.add_sink(recorder)
        for _ in range(200):
            if recorder.frames:
                break
            await asyncio.sleep(0.05)
    finally:
        await stream.close()
    for picture, what in [*((p, "a picture stored before the label") for p in stored),
                          (recorder.frames[0].picture, "the first picture out")]:
        gray = picture[:240] if picture.ndim == 2 else cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)
        plain = np.full_like(gray, int(gray[-1, 0]))
        assert ink_height(gray, plain) >= 0.05 * 240, f"{what} has the label"


@pytest.mark.skipif(nginx_missing() is not None, reason=f"RTMP server: {nginx_missing()}")
async def test_an_rtmp_push_is_labelled_from_its_first_frame(avatar: PreparedAvatar, tmp_path: Path) -> None:
    """What nginx-rtmp recorded of a push (a real ingest): its first frame has the label."""
    from engine.session import AvatarSession

    config = ServerConfig(label="cn", engine=EngineConfig(max_side_px=320))
    height, width = avatar.rgb.shape[:2]
    box = label_box("cn", width, height)
    with NginxRtmp(tmp_path / "nginx") as ingest:
        session = AvatarSession(avatar, config.engine, live=True, session_id="pushed")
        live = live_stream(session, config, None, parse_outputs({"rtmp": [ingest.url("labelled")]}))
        await start_live_stream(live)
        try:
            for _ in range(300):  # bounded: up to 30 s for the child to connect and push a second
                if live.stream.pacer.metrics.frames_sent > 96 and any(
                        r["state"] == "live" for r in live.describe()["outputs"]["rtmp"]):
                    break
                await asyncio.sleep(0.1)
        finally:
            await live.stream.close()
        [recording] = ingest.recordings("labelled")
        frame = first_frame(recording)
    reference = cv2.cvtColor(avatar.rgb, cv2.COLOR_RGB2GRAY)
    assert region_change(frame, reference, box) > 25, "the push's first frame has the label"
