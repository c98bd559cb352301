"""A viewer run inside a network namespace (tests/test_netem.py): waits for the server, streams, and cuts its
own network for a while (an nftables table that drops everything in and out), then writes what it got.

    ip netns exec NS python -m harness.netem_client URL TOKEN WAV OUT.json [--seconds 10] [--burst-at 4]
        [--burst-s 1] [--crop X0 Y0 X1 Y1]

OUT.json: {"frames": [t, ...], "keyframes": [t, ...], "burst": [t_start, t_end], "connected": t, "first_frame": t,
"error": ..., "mouth_motion": [[t, mean abs change of the cropped region since the last picture], ...], "mic_start": t
(the looped WAV's first sound)}, times from
time.monotonic (system-wide: comparable with the test's). The burst and the end are timed from the first decoded
frame, not the connection: a loaded machine once took 3 s from one to the other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request
from pathlib import Path

import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs import vpx
from aiortc.contrib.media import MediaPlayer
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError
from av.frame import Frame

from harness.webrtc_client import post_json
from streaming.webrtc import NO_ICE_SERVERS

CUT = ("add table inet cut; add chain inet cut i { type filter hook input priority 0; policy drop; }; "
       "add chain inet cut o { type filter hook output priority 0; policy drop; }")


VIDEO_BUFFER_PACKETS = 128  # ~0.7 s of the 1.5 Mbit/s stream


def give_up_on_gaps_sooner(pc: RTCPeerConnection) -> None:
    """aiortc's video receiver waits behind a lost packet until 512 more have come (about 3 s of this stream)
    before it moves on and asks for a keyframe; a browser gives up within a fraction of a second. The
    receiver gets aiortc's own buffer with room for VIDEO_BUFFER_PACKETS instead (a private attribute,
    as streaming/patches.py release_frames_promptly swaps it)."""
    for receiver in pc.getReceivers():
        if receiver.track is not None and receiver.track.kind == "video":
            attr = "_RTCRtpReceiver__jitter_buffer"
            if isinstance(getattr(receiver, attr, None), JitterBuffer):
                setattr(receiver, attr, JitterBuffer(capacity=VIDEO_BUFFER_PACKETS, is_video=True))


def note_keyframes(times: list[float]) -> None:
    """Record when a VP8 keyframe reaches the decoder (a VP8 frame's first bit is 0 on keyframes, RFC 6386
    9.1): decoded frames do not say which were keyframes."""
    decode = vpx.Vp8Decoder.decode

    def noting(self: vpx.Vp8Decoder, encoded_frame: vpx.JitterFrame) -> list:
        if encoded_frame.data and not encoded_frame.data[0] & 1:
            times.append(time.monotonic())
        return decode(self, encoded_frame)

    vpx.Vp8Decoder.decode = noting  # type: ignore[method-assign]


async def ask_for_keyframes(pc: RTCPeerConnection, frames: list[float], keyframes: list[float],
                            stalled_s: float = 0.25) -> None:
    """As a browser does when its picture broke off: once frames flow again after a stall of stalled_s
    (the frames since reference ones that never came), a Picture Loss Indication every 100 ms until a
    keyframe comes (at most 2 s). aiortc's own receiver asks only when its 128-packet buffer overflows
    or its decoder fails, and VP8 decodes on over a gap without failing."""
    stalled_at: float | None = None
    while True:
        await asyncio.sleep(0.05)
        now = time.monotonic()
        if frames and now - frames[-1] >= stalled_s and stalled_at is None:
            stalled_at = now
        if stalled_at is None or not frames or frames[-1] <= stalled_at:
            continue
        if (keyframes and keyframes[-1] > stalled_at) or now - stalled_at > 2.0 + stalled_s:
            stalled_at = None
            continue
        for receiver in pc.getReceivers():
            if receiver.track is not None and receiver.track.kind == "video":
                for source in receiver.getSynchronizationSources():
                    await receiver._send_rtcp_pli(source.source)
        await asyncio.sleep(0.05)


def wait_for(url: str, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


async def nft(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec("nft", *args)
    if await proc.wait() != 0:
        raise RuntimeError(f"nft {' '.join(args)} failed")


async def view(url: str, token: str, wav: Path, seconds: float, burst_at_s: float, burst_s: float,
               crop: tuple[int, int, int, int] | None = None) -> dict:
    out: dict = {"frames": [], "keyframes": [], "burst": None, "connected": None, "first_frame": None, "error": None,
                 "mouth_motion": [], "mic_start": None}
    note_keyframes(out["keyframes"])
    pc = RTCPeerConnection(NO_ICE_SERVERS)  # as the server: no STUN server off the machine
    player = MediaPlayer(str(wav), loop=True)
    pc.addTrack(player.audio)
    # The microphone's first sound: the player paces the file in real time from its first read (the sender's, once
    # connected), which a loaded machine may start well after the connection.
    first_read = player.audio.recv

    async def recv() -> Frame:
        if out["mic_start"] is None:
            out["mic_start"] = time.monotonic()
        return await first_read()

    player.audio.recv = recv  # type: ignore[method-assign]
    pc.addTransceiver("video", direction="recvonly")
    connected, pictured = asyncio.Event(), asyncio.Event()
    readers: list[asyncio.Task[None]] = []

    async def read(track: MediaStreamTrack) -> None:
        last = None
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    out["frames"].append(now := time.monotonic())
                    pictured.set()
                    if crop is not None:  # how much the mouth region changed since the last decoded picture
                        x0, y0, x1, y1 = crop
                        region = frame.to_ndarray(format="gray")[y0:y1, x0:x1].astype(np.float32)
                        if last is not None and last.shape == region.shape:
                            out["mouth_motion"].append((now, float(np.abs(region - last).mean())))
                        last = region
        except MediaStreamError:
            pass

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        give_up_on_gaps_sooner(pc)
        readers.append(asyncio.create_task(read(track)))

    @pc.on("connectionstatechange")
    def changed() -> None:
        if pc.connectionState == "connected":
            connected.set()

    loop = asyncio.get_running_loop()
    try:
        await pc.setLocalDescription(await pc.createOffer())
        status, answer = await loop.run_in_executor(
            None, post_json, url + "/offer", {"sdp": pc.localDescription.sdp, "type": "offer"}, 30.0, token)
        if status != 200:
            raise RuntimeError(f"offer refused: {status} {answer}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        await asyncio.wait_for(connected.wait(), 20)
        out["connected"] = time.monotonic()
        readers.append(asyncio.create_task(ask_for_keyframes(pc, out["frames"], out["keyframes"])))
        await asyncio.wait_for(pictured.wait(), 30)
        out["first_frame"] = t0 = out["frames"][0]
        await asyncio.sleep(max(0.0, t0 + burst_at_s - time.monotonic()))
        await nft(CUT)
        start = time.monotonic()
        await asyncio.sleep(burst_s)
        await nft("delete", "table", "inet", "cut")
        out["burst"] = (start, time.monotonic())
        await asyncio.sleep(max(0.0, t0 + seconds - time.monotonic()))
        await loop.run_in_executor(None, post_json, f"{url}/sessions/{answer['session_id']}/close", {}, 10.0,
                                   answer.get("session_token", token))
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        for t in readers:
            t.cancel()
        await asyncio.wait_for(pc.close(), 10)
        player.audio.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("token")
    ap.add_argument("wav", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--burst-at", type=float, default=4.0)
    ap.add_argument("--burst-s", type=float, default=1.0)
    ap.add_argument("--crop", type=int, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                    help="record the motion of this region of the picture (the mouth)")
    args = ap.parse_args()
    try:
        wait_for(args.url, 120.0)
        result = asyncio.run(view(args.url, args.token, args.wav, args.seconds, args.burst_at, args.burst_s,
                                  tuple(args.crop) if args.crop else None))
    except Exception as e:
        result = {"frames": [], "burst": None, "connected": None, "first_frame": None,
                  "error": f"{type(e).__name__}: {e}"}
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
