"""Glass-to-glass latency and A/V sync as a user sees them: the real web client in headless Chromium.

    python -m benchmarks.browser_latency [--bursts 20] [--env AVATAR_ENGINE_PIPELINE_DELAY_S=0.12 ...]
                                         [--out browser_latency]

Chromium's fake microphone plays a WAV: silence with a short espeak-ng burst ("ba ba") every 1.5 s.
The real server is started as a user would (`python server.py`, environment overrides allowed) and
the real page (`/`, client.js unchanged) is opened and Start pressed. A script injected before the
page's own (Playwright `add_init_script`) wraps getUserMedia and RTCPeerConnection to get hold of
the microphone stream and the remote tracks, and measures on the page's performance.now() clock:

- mic burst: an AudioWorklet in one AudioContext sees the local microphone track (128-sample
  blocks, the first sample over the threshold); its context time is mapped to performance.now()
  with AudioContext.getOutputTimestamp() and taken back by the context's render-ahead (the time
  from a block being processed to it being output), i.e. when the sample reached the audio graph.
- burst heard: the same worklet on the remote audio track (which the page plays through its
  <audio> element); the block's output time on performance.now() (getOutputTimestamp).
- mouth moving on screen: requestVideoFrameCallback on the page's <video>; each frame's mouth
  region is drawn to a canvas and its luma kept; "moving" is a clear change from the closed mouth
  just before the burst (the rule of benchmarks/latency.py); the time is the frame's
  expectedDisplayTime.

- cross-check of the audio: getSynchronizationSources() of the audio receiver, polled every few ms,
  gives the time each packet is pulled from the jitter buffer and its audio level (the sender's
  RFC 6464 header extension); the first loud packet plus the playout delay the browser reports
  (media-playout stats) is a second "heard" time, what the <audio> element plays (+-10 ms: 20 ms
  packets, 10 ms pulls). The Web Audio tap reads later than it: it sits behind a FIFO between the
  WebRTC renderer and the AudioContext, and the context's own render-ahead.

Both Web Audio onsets are taken back by the lead of the first over-threshold sample inside the burst
(known from the WAV), so they mean "the burst's first sample", as in benchmarks/latency.py.
glass-to-glass = mouth moving on screen - mic burst; A/V offset = mouth moving - burst heard
(positive: the picture is late). The browser synchronises the two remote tracks (one msid stream)
with RTCP sender reports, which the aiortc peer of benchmarks/latency.py does not.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks.cli import burst_benchmark_args
from benchmarks.plots import histograms
from harness.browser import chromium_page
from harness.faces import mouth_box
from harness.server import start_server, stop_server
from harness.speech import espeak, write_wav

RATE_HZ = 48_000
PERIOD_S = 1.5  # a burst every 1.5 s: the mouth closes fully in between
BURST_AT_S = 0.75  # where the burst sits inside each period of the WAV
THRESHOLD = 0.05  # |sample| over this starts a burst (the same for the microphone and the returned audio)
QUIET_S = 0.4  # ...after at least this long under it
WARMUP_S = 1.5  # after the first frames: the jitter buffers and A/V sync settle

# Injected before client.js runs. Wraps getUserMedia and RTCPeerConnection (client.js is unchanged)
# and records, on performance.now(): audio blocks of the microphone and of the returned audio (from an
# AudioWorklet), the clock mapping samples of the AudioContext, and every displayed video frame's
# mouth region (requestVideoFrameCallback).
PROBE_JS = r"""
(() => {
  const BOX = __BOX__;  // x0, y0, x1, y1 in the avatar's pixels
  const THRESHOLD = __THRESHOLD__;
  const P = window.__probe = {
    mic: {frame: [], rms: [], peak: [], first: []},
    remote: {frame: [], rms: [], peak: [], first: []},
    clock: [],   // [performance.now(), ctx.currentTime, outputTimestamp.contextTime, .performanceTime]
    video: [],   // [expectedDisplayTime, presentationTime, presentedFrames, width, height, rtpTimestamp,
                 //  receiveTime, captureTime, processingDuration, mediaTime]
    crops: [],   // base64 of each frame's mouth luma (row-major, BOX size)
    sources: [],  // [performance.now(), Date.now(), timestamp, audioLevel, rtpTimestamp] of the audio receiver
    errors: [], trackStreams: [], ctx: null, micStream: null, pc: null, remoteAudio: null, videoSeen: false,
    sampleRate: 0, baseLatency: null, outputLatency: [],
  };
  const WORKLET = `
    class Probe extends AudioWorkletProcessor {
      constructor() { super(); this.buf = [[], [], [], []]; }
      process(inputs) {
        const ch = inputs[0] && inputs[0][0];
        let sum = 0, peak = 0, first = -1;
        if (ch) {
          for (let i = 0; i < ch.length; i++) {
            const v = Math.abs(ch[i]);
            sum += v * v;
            if (v > peak) peak = v;
            if (first < 0 && v > ${THRESHOLD}) first = i;
          }
        }
        const b = this.buf;
        b[0].push(currentFrame); b[1].push(ch ? Math.sqrt(sum / ch.length) : 0); b[2].push(peak); b[3].push(first);
        if (b[0].length >= 64) { this.port.postMessage(b); this.buf = [[], [], [], []]; }
        return true;
      }
    }
    registerProcessor('probe', Probe);`;
  let ready = null;
  function context() {
    if (ready) return ready;
    const ctx = P.ctx = new AudioContext({latencyHint: 'interactive', sampleRate: 48000});
    P.sampleRate = ctx.sampleRate;
    P.baseLatency = ctx.baseLatency;
    const url = URL.createObjectURL(new Blob([WORKLET], {type: 'application/javascript'}));
    ready = ctx.audioWorklet.addModule(url).then(() => ctx.resume()).then(() => {
      setInterval(() => {  // clock mapping samples: context time -> performance.now()
        const ts = ctx.getOutputTimestamp();
        P.clock.push([performance.now(), ctx.currentTime, ts.contextTime, ts.performanceTime]);
        P.outputLatency.push(ctx.outputLatency);
      }, 100);
      return ctx;
    });
    return ready;
  }
  function tap(stream, into) {
    context().then((ctx) => {
      const node = new AudioWorkletNode(ctx, 'probe', {numberOfOutputs: 1, outputChannelCount: [1]});
      node.port.onmessage = (e) => {
        for (let k = 0; k < 4; k++) into[['frame', 'rms', 'peak', 'first'][k]].push(...e.data[k]);
      };
      ctx.createMediaStreamSource(stream).connect(node);
      node.connect(ctx.destination);  // writes nothing: silence, but it keeps the node pulled
    }).catch((err) => P.errors.push('audio probe: ' + err));
  }

  const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    context();  // inside the click's user activation: the context may start
    const stream = await gum(constraints);
    P.micStream = stream;
    tap(stream, P.mic);
    return stream;
  };

  const [w, h] = [BOX[2] - BOX[0], BOX[3] - BOX[1]];
  const canvas = document.createElement('canvas');
  canvas.width = w; canvas.height = h;
  const g = canvas.getContext('2d', {willReadFrequently: true});
  function watchVideo(el) {
    const onFrame = (now, m) => {
      try {
        g.drawImage(el, BOX[0], BOX[1], w, h, 0, 0, w, h);
        const px = g.getImageData(0, 0, w, h).data;
        const luma = new Uint8Array(w * h);
        for (let i = 0, j = 0; j < luma.length; i += 4, j++) {
          luma[j] = (77 * px[i] + 150 * px[i + 1] + 29 * px[i + 2]) >> 8;
        }
        let s = '';
        for (let i = 0; i < luma.length; i += 8192) s += String.fromCharCode(...luma.subarray(i, i + 8192));
        P.crops.push(btoa(s));
        P.video.push([m.expectedDisplayTime, m.presentationTime, m.presentedFrames, m.width, m.height,
                      m.rtpTimestamp ?? null, m.receiveTime ?? null, m.captureTime ?? null,
                      m.processingDuration ?? null, m.mediaTime]);
      } catch (err) {
        if (P.errors.length < 20) P.errors.push('video probe: ' + err);
      }
      el.requestVideoFrameCallback(onFrame);
    };
    el.requestVideoFrameCallback(onFrame);
  }

  // The returned audio as the RTP receiver delivers it to the track (each 10 ms pull from the jitter
  // buffer): getSynchronizationSources() gives its time, the packet's audio level (RFC 6464 header
  // extension, set by the sender) and RTP timestamp; a cross-check of the Web Audio "heard" time.
  function pollSources(receiver) {
    let last = null;
    setInterval(() => {
      for (const s of receiver.getSynchronizationSources()) {
        if (s.timestamp !== last) {
          last = s.timestamp;
          P.sources.push([performance.now(), Date.now(), s.timestamp, s.audioLevel ?? -1, s.rtpTimestamp]);
        }
      }
    }, 2);
  }

  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      P.pc = this;
      this.addEventListener('track', (e) => {
        P.trackStreams.push([e.track.kind, e.streams.map((st) => st.id)]);
        if (e.track.kind === 'audio') {
          P.remoteAudio = e.track;
          pollSources(e.receiver);
          tap(new MediaStream([e.track]), P.remote);
        } else if (!P.videoSeen) {
          P.videoSeen = true;
          // client.js sets video.srcObject in its own ontrack; watch the element it plays in.
          watchVideo(document.getElementById('video'));
        }
      });
    }
  };

  P.stats = async () => {  // the inbound streams, their playout and the transport, as plain objects
    const out = {};
    if (!P.pc) return out;
    (await P.pc.getStats()).forEach((s) => {
      const key = s.type === 'inbound-rtp' ? 'inbound-' + s.kind
        : s.type === 'remote-outbound-rtp' ? 'remote-outbound-' + s.kind
        : s.type === 'media-playout' ? 'media-playout'
        : (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') ? 'candidate-pair' : null;
      if (key) out[key] = {...s};
    });
    return out;
  };
  P.drain = () => {  // hand over what was recorded (crops as base64) and forget it
    const out = {mic: P.mic, remote: P.remote, clock: P.clock, video: P.video, crops: P.crops,
                 errors: P.errors, sampleRate: P.sampleRate, baseLatency: P.baseLatency,
                 outputLatency: P.outputLatency, trackStreams: P.trackStreams,
                 sources: P.sources, timeOrigin: performance.timeOrigin,
                 answerSdp: P.pc && P.pc.remoteDescription ? P.pc.remoteDescription.sdp : null};
    P.crops = [];
    return out;
  };
})();
"""


def burst_wav(path: Path, periods: int) -> tuple[Path, float]:
    """The fake microphone's WAV (Chromium loops it) and the lead of the burst's first sample over
    THRESHOLD, in seconds from the burst's first sample."""
    burst = np.clip(espeak("ba ba") * 1.5, -1, 1)[: int(PERIOD_S * RATE_HZ) // 3]
    lead_s = float(np.argmax(np.abs(burst) > THRESHOLD)) / RATE_HZ
    period = np.zeros(int(PERIOD_S * RATE_HZ), np.float32)
    at = int(BURST_AT_S * RATE_HZ)
    period[at : at + len(burst)] = burst
    return write_wav(path, np.tile(period, periods)), lead_s


def onsets_s(blocks: dict, rate: int) -> np.ndarray:
    """Context times (s) of the first over-threshold sample after at least QUIET_S under it."""
    frame = np.asarray(blocks["frame"], np.int64)
    first = np.asarray(blocks["first"], np.int64)
    out, last_loud = [], -np.inf
    for f, i in zip(frame, first, strict=True):
        if i < 0:
            continue
        t = (f + i) / rate
        if t - last_loud >= QUIET_S:
            out.append(t)
        last_loud = t + 128 / rate
    return np.asarray(out)


def clock_map(clock: list[list[float]]):
    """Context time (s) -> performance.now() (ms) from getOutputTimestamp samples (every 100 ms).

    A loaded machine makes the context clock glitch against performance.now() (steps, drift), so the
    mapping is local: the median offset of the samples within +-0.5 s of the event. Returns the map,
    the local jitter (ms, median absolute deviation around it), the spread of the offset over the run
    (ms) and the render-ahead (ms, median): from a block being processed (currentTime, at
    performance.now()) to its output time."""
    c = np.asarray([row for row in clock if row[3] > 0], np.float64)
    if len(c) < 5:
        raise RuntimeError(f"AudioContext.getOutputTimestamp gave {len(c)} usable samples: {clock[:5]}")
    ctx_t, offset = c[:, 2], c[:, 3] - c[:, 2] * 1000

    def local(t: float) -> float:
        near = np.abs(ctx_t - t) < 0.5
        return float(np.median(offset[near] if near.any() else offset[np.argmin(np.abs(ctx_t - t))]))

    def to_perf(t):
        return np.asarray([tt * 1000 + local(tt) for tt in np.atleast_1d(t)])

    jitter = float(np.median([abs(o - local(t)) for t, o in zip(ctx_t, offset, strict=True)]))
    ahead = float(np.median(to_perf(c[:, 1]) - c[:, 0]))
    return to_perf, jitter, float(np.ptp(offset)), ahead


def analyse(data: dict, lead_s: float, t_from: float, t_to: float, playout_ms: float | None) -> dict:
    rate = int(data["sampleRate"])
    to_perf, jitter_ms, spread_ms, ahead_ms = clock_map(data["clock"])
    # "burst's first sample": the over-threshold onset taken back by its known lead inside the burst
    mic = to_perf(onsets_s(data["mic"], rate)) - ahead_ms - lead_s * 1000  # reached the audio graph
    heard = to_perf(onsets_s(data["remote"], rate)) - lead_s * 1000  # output time of that block
    # Cross-check: the first loud packet as the RTP receiver hands it to the track (10 ms pulls from
    # the jitter buffer) plus the playout delay the browser reports; 20 ms packets, so +-10 ms.
    src = np.asarray(data["sources"], np.float64).reshape(-1, 5)
    played = np.zeros(0)
    if playout_ms is not None and len(src) and (src[:, 3] >= 0).all():
        t_src = src[:, 2] - data["timeOrigin"]  # epoch ms -> performance.now()
        loud = src[:, 3] > 0.01
        starts = [i for i in range(len(src)) if loud[i] and not loud[(t_src >= t_src[i] - QUIET_S * 1000)
                                                                     & (t_src < t_src[i])].any()]
        played = t_src[starts] + playout_ms
    video = np.asarray(data["video"], dtype=object)
    shown = np.asarray([row[0] for row in video], np.float64)  # expectedDisplayTime
    box = mouth_box()
    w, h = box[2] - box[0], box[3] - box[1]
    crops = np.stack([np.frombuffer(base64.b64decode(s), np.uint8).reshape(h, w) for s in data["crops"]])
    crops = crops.astype(np.float32)
    period_ms = PERIOD_S * 1000
    bursts = []
    for sent in mic[(mic >= t_from) & (mic <= t_to)]:
        row: dict = {"mic_ms": float(sent)}
        near = np.nonzero((heard > sent) & (heard < sent + 0.9 * period_ms))[0]
        if len(near):
            row["heard_ms"] = float(heard[near[0]])
        near = np.nonzero((played > sent) & (played < sent + 0.9 * period_ms))[0]
        if len(near):
            row["played_ms"] = float(played[near[0]])
        quiet_win = (shown > sent - 250) & (shown <= sent)
        if quiet_win.any():
            change = np.abs(crops - crops[quiet_win].mean(axis=0)).mean(axis=(1, 2))
            threshold = max(1.5, 3 * float(change[quiet_win].max()))
            moving = np.nonzero((shown > sent) & (shown < sent + 0.9 * period_ms) & (change > threshold))[0]
            if len(moving):
                row["mouth_ms"] = float(shown[moving[0]])
                row["mouth_change"] = float(change[moving[0]])
                row["threshold"] = threshold
        bursts.append(row)
    g2g = [b["mouth_ms"] - b["mic_ms"] for b in bursts if "mouth_ms" in b]
    returned = [b["heard_ms"] - b["mic_ms"] for b in bursts if "heard_ms" in b]
    offsets = [b["mouth_ms"] - b["heard_ms"] for b in bursts if "mouth_ms" in b and "heard_ms" in b]
    played_ms = [b["played_ms"] - b["mic_ms"] for b in bursts if "played_ms" in b]
    offsets_played = [b["mouth_ms"] - b["played_ms"] for b in bursts if "mouth_ms" in b and "played_ms" in b]
    in_window = (shown >= t_from) & (shown <= t_to)
    gaps = np.diff(shown[in_window])
    extra = {
        "frames_shown": int(in_window.sum()),
        "shown_fps": float((in_window.sum() - 1) / (np.ptp(shown[in_window]) / 1000)) if in_window.sum() > 1 else 0,
        "frame_gap_ms_p50_max": [float(np.median(gaps)), float(gaps.max())] if len(gaps) else None,
        "presented_frames_skipped": int(np.sum(np.diff([r[2] for r in video]) - 1)) if len(video) > 1 else 0,
    }
    # The video's own sender-report view: captureTime (RTP timestamp -> the sender's NTP clock via
    # RTCP SR -> this clock) to the frame's expected display.
    cap = np.asarray([row[7] if row[7] is not None else np.nan for row in video], np.float64)
    capture_to_display = (shown - cap)[in_window & np.isfinite(cap)]
    recv = np.asarray([row[6] if row[6] is not None else np.nan for row in video], np.float64)
    receive_to_display = (shown - recv)[in_window & np.isfinite(recv)]
    return {"bursts": bursts, "glass_to_glass_ms": g2g, "audio_return_ms": returned, "av_offset_ms": offsets,
            "audio_played_ms": played_ms, "av_offset_played_ms": offsets_played, "playout_delay_ms": playout_ms,
            "mic_onsets": int(((mic >= t_from) & (mic <= t_to)).sum()),
            "clock": {"jitter_ms": jitter_ms, "offset_spread_ms": spread_ms, "render_ahead_ms": ahead_ms,
                      "base_latency_s": data["baseLatency"],
                      "output_latency_s": float(np.median(data["outputLatency"])) if data["outputLatency"] else None,
                      "burst_lead_ms": lead_s * 1000},
            "video": extra,
            "capture_to_display_ms": capture_to_display.tolist(),
            "receive_to_display_ms": receive_to_display.tolist()}


def measure(url: str, bursts: int, work: Path) -> tuple[dict, dict, dict, list[str]]:
    wav, lead_s = burst_wav(work / "mic.wav", bursts + 12)
    box = mouth_box()
    script = PROBE_JS.replace("__BOX__", json.dumps(list(box))).replace("__THRESHOLD__", repr(THRESHOLD))
    page_errors: list[str] = []
    with chromium_page(work / "profile", wav) as page:
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.add_init_script(script)
        page.goto(url + "/", timeout=15_000)
        page.click("#start")
        page.wait_for_function("() => window.avatarStats.state === 'streaming' && window.__probe.video.length > 0",
                               timeout=30_000)
        page.wait_for_timeout(WARMUP_S * 1000)
        t_from = page.evaluate("performance.now()")
        stats0 = page.evaluate("window.__probe.stats()")
        # one burst period per burst, plus one for the last burst's answer; bounded
        end = time.monotonic() + bursts * PERIOD_S + 1.2
        while time.monotonic() < end:
            page.wait_for_timeout(500)
        t_to = page.evaluate("performance.now()") - 1.0 * 1000  # the last burst's answer still inside
        stats1 = page.evaluate("window.__probe.stats()")
        data = page.evaluate("window.__probe.drain()")
        page.click("#stop")
        page.wait_for_function("() => window.avatarStats.state === 'closed'", timeout=10_000)
    d_delay = stats1.get("media-playout", {}).get("totalPlayoutDelay", 0) - stats0.get("media-playout", {}).get(
        "totalPlayoutDelay", 0)
    d_count = stats1.get("media-playout", {}).get("totalSamplesCount", 0) - stats0.get("media-playout", {}).get(
        "totalSamplesCount", 0)
    result = analyse(data, lead_s, t_from, t_to, d_delay / d_count * 1000 if d_count else None)
    result["page_errors"] = data["errors"]
    result["track_streams"] = data["trackStreams"]  # [kind, [msid stream ids]] per remote track
    result["answer_sdp"] = data["answerSdp"]
    return result, stats0, stats1, page_errors


def pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.0f}" if values else "-"


def per(stats0: dict, stats1: dict, key: str, num: str, den: str, scale: float = 1000) -> str:
    """Δnum/Δden over the measurement window, times scale, or '-' when the browser did not report it."""
    a, b = stats0.get(key, {}), stats1.get(key, {})
    if num not in b or den not in b:
        return "-"
    d = b[den] - a.get(den, 0)
    return f"{(b[num] - a.get(num, 0)) / d * scale:.1f}" if d else "-"


def stats_table(stats0: dict, stats1: dict) -> Table:
    t = Table(title="browser getStats() over the measured window (inbound streams)")
    t.add_column("stat")
    t.add_column("video", justify="right")
    t.add_column("audio", justify="right")
    v, a = "inbound-video", "inbound-audio"
    for what, stat in (("delay per emitted frame/sample", "jitterBufferDelay"),
                       ("target delay per emitted", "jitterBufferTargetDelay"),
                       ("minimum delay per emitted", "jitterBufferMinimumDelay")):
        t.add_row(f"jitter buffer {what} (ms)", per(stats0, stats1, v, stat, "jitterBufferEmittedCount"),
                  per(stats0, stats1, a, stat, "jitterBufferEmittedCount"))
    t.add_row("processing delay per frame/sample (ms, receive -> decoded)",
              per(stats0, stats1, v, "totalProcessingDelay", "framesDecoded"),
              per(stats0, stats1, a, "totalProcessingDelay", "jitterBufferEmittedCount"))
    t.add_row("decode time per frame (ms)", per(stats0, stats1, v, "totalDecodeTime", "framesDecoded"), "-")
    t.add_row("playout delay per sample (ms, media-playout)", "-",
              per(stats0, stats1, "media-playout", "totalPlayoutDelay", "totalSamplesCount"))
    sv, sa = stats1.get(v, {}), stats1.get(a, {})
    t.add_row("framesPerSecond (browser's own)", str(sv.get("framesPerSecond", "-")), "-")

    def delta(key: str, name: str) -> str:
        if name not in stats1.get(key, {}):
            return "-"
        return str(stats1[key][name] - stats0.get(key, {}).get(name, 0))

    t.add_row("framesDecoded / framesDropped (window)", f"{delta(v, 'framesDecoded')} / {delta(v, 'framesDropped')}",
              "-")
    t.add_row("freezeCount / keyFramesDecoded (window)", f"{delta(v, 'freezeCount')} / {delta(v, 'keyFramesDecoded')}",
              "-")
    t.add_row("packets lost (total)", str(sv.get("packetsLost", "-")), str(sa.get("packetsLost", "-")))
    t.add_row("concealed / received samples (window)", "-",
              f"{delta(a, 'concealedSamples')} / {delta(a, 'totalSamplesReceived')}")
    t.add_row("samples inserted / removed by time stretch (window)", "-",
              f"{delta(a, 'insertedSamplesForDeceleration')} / {delta(a, 'removedSamplesForAcceleration')}")
    rtt = stats1.get("candidate-pair", {}).get("currentRoundTripTime")
    t.add_row("round trip (ms, candidate pair)", f"{rtt * 1000:.1f}" if rtt is not None else "-", "")
    return t


def main() -> None:
    args = burst_benchmark_args(__doc__, "browser_latency")
    work = Path(tempfile.mkdtemp(prefix="browser-latency-"))
    server = start_server(work)
    try:
        result, stats0, stats1, page_errors = measure(server.url, args.bursts, work)
    finally:
        stop_server(server)
    g2g, returned, offsets = result["glass_to_glass_ms"], result["audio_return_ms"], result["av_offset_ms"]
    settings = ", ".join(args.env) or "embedded defaults"
    console = Console(width=150)
    table = Table(title=f"glass-to-glass in headless Chromium, web client over WebRTC on 127.0.0.1 ({settings}); "
                        f"{len(g2g)} of {result['mic_onsets']} mic bursts matched ({args.bursts} asked)")
    for col in ("measure", "n", "p50 (ms)", "p95 (ms)", "p99 (ms)", "min", "max"):
        table.add_column(col, justify="right")
    for name, vals in (("mic burst -> mouth moving on screen (glass-to-glass)", g2g),
                       ("mic burst -> burst heard (Web Audio tap on the returned track)", returned),
                       ("A/V offset: mouth moving on screen - burst heard", offsets),
                       ("cross-check: mic burst -> burst played (RTP receiver + playout delay)",
                        result["audio_played_ms"]),
                       ("cross-check: A/V offset vs burst played", result["av_offset_played_ms"])):
        table.add_row(name, str(len(vals)), pct(vals, 50), pct(vals, 95), pct(vals, 99),
                      f"{min(vals):.0f}" if vals else "-", f"{max(vals):.0f}" if vals else "-")
    console.print(table)
    clock, video = result["clock"], result["video"]
    ctd, rtd = result["capture_to_display_ms"], result["receive_to_display_ms"]
    ctx = Table(title="clocks and video timing (all on the page's performance.now())")
    ctx.add_column("what")
    ctx.add_column("value", justify="right")
    ctx.add_row("AudioContext baseLatency / outputLatency (ms)",
                f"{(clock['base_latency_s'] or 0) * 1000:.1f} / {(clock['output_latency_s'] or 0) * 1000:.1f}")
    ctx.add_row("render-ahead: block processed -> output (getOutputTimestamp), median ms",
                f"{clock['render_ahead_ms']:.1f}")
    ctx.add_row("context -> performance clock: local jitter / drift+steps over the run (ms)",
                f"{clock['jitter_ms']:.2f} / {clock['offset_spread_ms']:.1f}")
    gap = [b["heard_ms"] - b["played_ms"] for b in result["bursts"] if "heard_ms" in b and "played_ms" in b]
    ctx.add_row("burst heard (Web Audio tap) - burst played (RTP receiver + playout delay), median ms",
                f"{np.median(gap):.1f}" if gap else "-")
    ctx.add_row("playout delay the browser reports (media-playout), ms",
                f"{result['playout_delay_ms']:.1f}" if result["playout_delay_ms"] is not None else "-")
    ctx.add_row("burst's first sample -> first sample over threshold (ms, from the WAV)",
                f"{clock['burst_lead_ms']:.1f}")
    ctx.add_row("video frames shown in window / rate (fps)", f"{video['frames_shown']} / {video['shown_fps']:.1f}")
    if video["frame_gap_ms_p50_max"]:
        ctx.add_row("gap between shown frames p50 / max (ms)",
                    f"{video['frame_gap_ms_p50_max'][0]:.1f} / {video['frame_gap_ms_p50_max'][1]:.1f}")
    ctx.add_row("frames presented without a callback (whole run)", str(video["presented_frames_skipped"]))
    ctx.add_row("video: sender capture (RTCP SR) -> expected display, p50 / p95 (ms)",
                f"{np.percentile(ctd, 50):.1f} / {np.percentile(ctd, 95):.1f}" if ctd else "-")
    ctx.add_row("video: last packet received -> expected display, p50 / p95 (ms)",
                f"{np.percentile(rtd, 50):.1f} / {np.percentile(rtd, 95):.1f}" if rtd else "-")
    console.print(ctx)
    console.print(stats_table(stats0, stats1))
    console.print(
        "How the times are taken (all on performance.now()): mic = when the burst's first sample reached the "
        "page's Web Audio graph (capture is earlier by the fake device's buffer and the source node's FIFO, "
        "~10-20 ms, which Web Audio does not report: glass-to-glass and mic->heard may read that much short); "
        "heard = the output time (getOutputTimestamp) of the render block in which the returned burst reached "
        "the graph (± one render buffer, and late by the renderer->Web Audio FIFO: see the row above); played = "
        "the first loud packet's jitter-buffer pull (getSynchronizationSources) + the reported playout delay "
        "(±10 ms); mouth = the frame's expectedDisplayTime, only for frames whose requestVideoFrameCallback ran "
        "(a skipped frame delays the detection by one frame). A/V offset < 0: the mouth moves before the sound. "
        "Shared 2-core machine: expect noise.")
    if page_errors or result["page_errors"]:
        console.print(f"[red]page errors: {page_errors + result['page_errors']}[/red]")
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"settings": args.env, **result, "stats_start": stats0,
                                                    "stats_end": stats1}, indent=1))
    histograms(out.with_suffix(".png"), {"mic burst -> mouth moving on screen": g2g,
                                         "mic burst -> burst heard": returned,
                                         "A/V offset (mouth - heard)": offsets},
               "ms", f"glass-to-glass in headless Chromium ({settings})")
    print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
