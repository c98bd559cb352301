"""Glass-to-glass latency over real WebRTC on 127.0.0.1.

    python -m benchmarks.latency [--bursts 20] [--env AVATAR_ENGINE_PIPELINE_DELAY_S=0.12 ...] [--out latency]

An aiortc peer sends silence with short speech bursts at known times (espeak-ng syllables);
the server is started as a user would (`python server.py`, environment overrides allowed). For
each burst the peer notes when its first sample left, when the mouth starts to open in the
received, decoded video, and when the burst comes back in the received audio:
glass-to-glass = mouth moving - burst sent; A/V offset = mouth moving - burst heard.
The per-stage split comes from the session's own counters (/api/sessions).
"""

from __future__ import annotations

import asyncio
import fractions
import json
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from rich.console import Console
from rich.table import Table

from benchmarks.cli import burst_benchmark_args
from benchmarks.plots import histograms
from harness.faces import mouth_box
from harness.server import start_server, stop_server
from harness.speech import espeak
from harness.webrtc_client import post_json
from streaming.patches import release_frames_promptly

PERIOD_S = 1.5  # a burst every 1.5 s: the mouth closes fully in between


class BurstTrack(MediaStreamTrack):
    """Microphone stand-in: 20 ms frames of silence, with a speech burst every PERIOD_S."""

    kind = "audio"

    def __init__(self, burst: np.ndarray, bursts: int) -> None:
        super().__init__()
        period = int(PERIOD_S * 48000)
        self.signal = np.zeros(period * (bursts + 1), np.float32)
        self.burst_starts = [period // 2 + i * period for i in range(bursts)]
        for s in self.burst_starts:
            self.signal[s : s + len(burst)] = burst[: period // 2]
        self.sent_at: dict[int, float] = {}  # burst start sample -> wall time its frame was handed to aiortc
        self._sample = 0
        self._t0: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self._t0 is None:
            self._t0 = time.monotonic()
        # Pace like a microphone: a frame is ready when its last sample has been "spoken".
        await asyncio.sleep(max(0.0, self._t0 + (self._sample + 960) / 48000 - time.monotonic()))
        chunk = self.signal[self._sample : self._sample + 960]
        if len(chunk) < 960:
            chunk = np.pad(chunk, (0, 960 - len(chunk)))
        for s in self.burst_starts:
            if self._sample <= s < self._sample + 960:
                self.sent_at[s] = time.monotonic() - (self._sample + 960 - s) / 48000  # when its first sample existed
        frame = av.AudioFrame.from_ndarray((chunk * 32767).astype(np.int16).reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self._sample, fractions.Fraction(1, 48000)
        self._sample += 960
        return frame


async def measure(url: str, bursts: int) -> tuple[Result, dict]:
    burst = np.clip(espeak("ba ba") * 1.5, -1, 1)[:24000]
    mic = BurstTrack(burst, bursts)
    pc = RTCPeerConnection()
    pc.addTrack(mic)
    pc.addTransceiver("video", direction="recvonly")
    box = mouth_box()
    video: list[tuple[float, int, np.ndarray]] = []  # (wall time decoded, pts, mouth region luma)
    audio: list[tuple[float, float]] = []  # (wall time received, rms)

    async def read_video(track: MediaStreamTrack) -> None:
        while True:
            frame = await track.recv()
            x0, y0, x1, y1 = box
            crop = frame.to_ndarray(format="gray")[y0:y1, x0:x1].astype(np.float32)
            video.append((time.monotonic(), frame.pts, crop))

    async def read_audio(track: MediaStreamTrack) -> None:
        while True:
            frame = await track.recv()
            pcm = frame.to_ndarray().astype(np.float32) / 32768
            audio.append((time.monotonic(), float(np.sqrt(np.mean(pcm**2)))))

    tasks: list[asyncio.Task[None]] = []

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        # Like a browser, decode a frame once its last packet is in (aiortc waits for the next one).
        for receiver in pc.getReceivers():
            if receiver.track is track:
                release_frames_promptly(receiver)
        tasks.append(asyncio.create_task(read_video(track) if track.kind == "video" else read_audio(track)))

    await pc.setLocalDescription(await pc.createOffer())
    loop = asyncio.get_running_loop()
    status, answer = await loop.run_in_executor(None, post_json, url + "/offer",
                                                {"sdp": pc.localDescription.sdp, "type": "offer"})
    if status != 200:
        raise RuntimeError(f"offer refused: {answer}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    await asyncio.sleep(PERIOD_S * (bursts + 1) + 1.0)
    counters = await loop.run_in_executor(None, session_counters, url)
    for t in tasks:
        t.cancel()
    await pc.close()

    v_t = np.array([t for t, _, _ in video])
    crops = np.stack([c for _, _, c in video])
    # Frame indices from RTP timestamps (the server's pts is k * 1875 from its first sent frame), and
    # each frame's due time on the server's clock: time.monotonic is shared on one machine.
    pts = np.array([p for _, p, _ in video], np.int64)
    k_video = counters["first_sent_frame"] + np.round((pts - pts[0]) / 1875).astype(np.int64)
    clock0 = counters["clock_start_s"] + counters["pipeline_delay_s"]
    due = clock0 + k_video / 48
    a_t, a_r = np.array([t for t, _ in audio]), np.array([r for _, r in audio])
    r = Result(to_peer=list(v_t - due))
    for s in mic.burst_starts:
        sent = mic.sent_at.get(s)
        if sent is None:
            continue
        # The closed mouth just before the burst is the reference; "moving" is a clear change from it.
        before = crops[(v_t > sent - 0.25) & (v_t <= sent)]
        if not len(before):
            continue
        change = np.abs(crops - before.mean(axis=0)).mean(axis=(1, 2))
        quiet = change[(v_t > sent - 0.25) & (v_t <= sent)]
        threshold = max(1.5, 3 * float(quiet.max()))
        moving = np.nonzero((v_t > sent) & (v_t < sent + PERIOD_S * 0.9) & (change > threshold))[0]
        heard = np.nonzero((a_t > sent) & (a_t < sent + PERIOD_S * 0.9) & (a_r > 0.02))[0]
        if len(heard):
            r.returned.append(a_t[heard[0]] - sent)
        if not len(moving):
            continue
        i = moving[0]
        r.g2g.append(v_t[i] - sent)
        # Where the server put the burst's first sample: the mic's pts (its sample count, first
        # packet 0) plus the server's input offset; then that frame's due time.
        placed = s + counters["mic_offset_samples"]
        r.mic.append(counters["clock_start_s"] + placed / 48000 - sent)
        burst_due = clock0 + (placed // 1000) / 48
        r.to_due.append(burst_due - sent)
        r.lip.append(due[i] - burst_due)
        r.peer.append(v_t[i] - due[i])
        if len(heard):
            r.offsets.append(v_t[i] - a_t[heard[0]])
    return r, counters


@dataclass
class Result:
    """Seconds per burst; g2g = to_due + lip + peer exactly (the split of each burst's latency);
    to_due = mic path + pipeline delay - the burst's position inside its frame."""

    to_peer: list[float]  # every frame: due on the server -> decoded by the peer
    g2g: list[float] = field(default_factory=list)  # burst sent -> mouth moving in the decoded video
    mic: list[float] = field(default_factory=list)  # burst sent -> its place on the server's clock
    to_due: list[float] = field(default_factory=list)  # burst sent -> the frame holding its start is due
    lip: list[float] = field(default_factory=list)  # that frame -> the first visibly moving frame (on the clock)
    peer: list[float] = field(default_factory=list)  # the moving frame: due -> decoded by the peer
    returned: list[float] = field(default_factory=list)  # burst sent -> heard in the received audio
    offsets: list[float] = field(default_factory=list)  # mouth moving - burst heard


def session_counters(url: str) -> dict:
    with urllib.request.urlopen(url + "/api/sessions", timeout=5) as r:
        reply = json.loads(r.read())
    return reply["sessions"][0] | reply["server"]


def pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1000:.0f}" if values else "-"


def row(table: Table, name: str, values: list[float]) -> None:
    table.add_row(name, pct(values, 50), pct(values, 95), pct(values, 99))


def main() -> None:
    args = burst_benchmark_args(__doc__, "latency")
    server = start_server(Path(tempfile.mkdtemp(prefix="latency-")))
    try:
        r, c = asyncio.run(measure(server.url, args.bursts))
    finally:
        stop_server(server)
    settings = ", ".join(args.env) or "embedded defaults"
    console = Console(width=140)
    table = Table(title=f"glass-to-glass over WebRTC on 127.0.0.1 ({settings}), {len(r.g2g)}/{args.bursts} bursts")
    for col in ("measure", "p50 (ms)", "p95 (ms)", "p99 (ms)"):
        table.add_column(col, justify="right")
    row(table, "burst sent -> mouth moving in received video", r.g2g)
    row(table, "  = burst sent -> the frame holding its start is due", r.to_due)
    row(table, "    of which: sent -> placed on the server's clock (mic path)", r.mic)
    row(table, "  + that frame -> first visibly moving frame (lip response, on the clock)", r.lip)
    row(table, "  + moving frame due -> decoded by the peer (encode, RTP, decode)", r.peer)
    row(table, "every frame: due -> decoded by the peer", r.to_peer)
    row(table, "burst sent -> burst in received audio", r.returned)
    row(table, "A/V offset: mouth moving - burst heard (aiortc peer: no A/V sync)", r.offsets)
    console.print(table)
    stages = Table(title=f"inside the pipeline delay ({c['pipeline_delay_s'] * 1000:.0f} ms): the session's counters")
    for col in ("stage", "mean (ms)", "worst (ms)"):
        stages.add_column(col, justify="right")
    stages.add_row("audio path: a frame's last sample in -> its features and lookahead ready",
                   f"{c['audio_path_delay_ms_mean']:.1f}", f"{c['audio_path_delay_ms_max']:.1f}")
    stages.add_row("render, per window", f"{c['render_ms_total'] / max(1, c['windows_rendered']):.1f}",
                   f"{c['render_ms_max']:.1f}")
    stages.add_row("slack: window rendered -> its first frame due", f"{c['window_slack_ms_mean']:.1f}",
                   f"{c['window_slack_ms_min']:.1f}")
    stages.add_row("frames repeated (late) / sent", f"{c['frames_repeated']} / {c['frames_sent']}", "")
    stages.add_row("server event loop: worst wake-up lag / lags over 10 ms / over 30 ms",
                   f"{c['event_loop_lag_ms_max']:.1f}",
                   f"{c['event_loop_lags_over_10ms']} / {c['event_loop_lags_over_30ms']}")
    stages.add_row("pipeline delay raised / lowered (adapting to the machine), delay at the end (ms)",
                   f"{c['pipeline_delay_raises']} / {c['pipeline_delay_lowers']}",
                   f"{c['pipeline_delay_s'] * 1000:.0f}")
    stages.add_row("audio samples late (silence stood in) / in", f"{c['audio_samples_filled']} / "
                   f"{c['audio_samples_in']}", "")
    console.print(stages)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"settings": args.env, **asdict(r), "counters": c}, indent=1))
    histograms(out.with_suffix(".png"), {"burst sent -> mouth moving": [x * 1000 for x in r.g2g],
                                         "burst sent -> burst heard": [x * 1000 for x in r.returned]},
               "ms", f"glass-to-glass on 127.0.0.1 ({settings})")
    print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
