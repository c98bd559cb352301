// The watch page: a WHEP client (POST the offer as application/sdp, 201 with the answer and a Location to
// DELETE). It only watches: no microphone. Open it as /watch/STREAM_ID?token=VIEW_TOKEN (a view token for
// that stream, minted on POST /tokens); add &muted=0 where the player may play sound without a click (OBS).
// &key=green (or &key=%2300FF00, any #RRGGBB) keys that colour out (a stream with --background green or alpha):
// the page draws the person over a transparent page, so an OBS browser source shows them over the scene.
'use strict';

const TOKEN_KEY = 'avatar-engine-watch-token';
const STREAM_ID = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
const PARAMS = new URLSearchParams(location.search);
const START_MUTED = PARAMS.get('muted') !== '0';
const TOKEN = readPageToken();
const ICE_GATHER_TIMEOUT_MS = 5000;
const OFFER_TIMEOUT_MS = 30000;
const STATS_INTERVAL_MS = 500;
const FPS_WINDOW_MS = 2000;
const RETRY_MS = [2000, 4000, 8000, 15000];  // a browser source runs for hours: it reconnects, backing off

const KEY_COLOURS = { green: '#00B140' };  // streaming/keying.py KEY_GREEN
const KEY = parseKey(PARAMS.get('key'));

const video = document.getElementById('video');
const unmute = document.getElementById('unmute');
const status = document.getElementById('status');

// For tests: what the page receives.
window.watchStats = { state: 'connecting', framesDecoded: 0, fps: null, width: 0, height: 0,
  audioPacketsReceived: 0, codec: null, muted: true, attempts: 0 };

// The token is moved out of the address bar (history, anything copied from there) and kept for this tab,
// so that a reload still works.
function readPageToken() {
  const fromUrl = PARAMS.get('token');
  if (!fromUrl) return sessionStorage.getItem(TOKEN_KEY);
  sessionStorage.setItem(TOKEN_KEY, fromUrl);
  const rest = new URLSearchParams(PARAMS);
  rest.delete('token');
  const query = rest.toString();
  history.replaceState(null, '', location.pathname + (query ? `?${query}` : '') + location.hash);
  return fromUrl;
}

function authHeaders() {
  return TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};
}

function setState(state, text) {
  window.watchStats.state = state;
  status.dataset.state = state;
  status.textContent = text || state;
}

function iceGatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') { clearTimeout(timer); resolve(); }
    });
  });
}

let current = null;  // { pc, location, timer, samples }
let failures = 0;

async function watch() {
  const run = { pc: null, location: null, timer: null, samples: [], ended: false };
  current = run;
  window.watchStats.attempts += 1;
  setState('connecting', 'connecting…');
  try {
    const pc = run.pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const stream = new MediaStream();
    pc.ontrack = (e) => {
      stream.addTrack(e.track);
      if (video.srcObject !== stream) video.srcObject = stream;
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed' || pc.connectionState === 'closed') retry(run, 'connection lost');
    };
    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc, ICE_GATHER_TIMEOUT_MS);
    const res = await fetch(`/streams/${encodeURIComponent(STREAM_ID)}/whep`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', ...authHeaders() },
      body: pc.localDescription.sdp,
      signal: AbortSignal.timeout(OFFER_TIMEOUT_MS),
    });
    if (res.status !== 201) {
      const body = await res.json().catch(() => ({}));
      throw new Error(body.error || `server answered HTTP ${res.status}`);
    }
    run.location = res.headers.get('Location');
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    play();
    pollStats(run);
  } catch (err) {
    retry(run, err.message || String(err));
  }
}

function play() {
  video.muted = START_MUTED;
  video.play().catch(() => {
    // Sound without a click is refused here: play muted, and offer the button.
    video.muted = true;
    video.play().catch(() => {});
  }).finally(showUnmute);
}

function showUnmute() {
  window.watchStats.muted = video.muted;
  unmute.hidden = !video.muted;
}

unmute.addEventListener('click', () => {
  video.muted = false;
  video.play().catch(() => {});
  showUnmute();
});

function end(run) {
  run.ended = true;
  clearTimeout(run.timer);
  if (run.location) {
    // keepalive: it still goes out while the page unloads; DELETE frees the viewer at once.
    fetch(run.location, { method: 'DELETE', keepalive: true, headers: authHeaders() }).catch(() => {});
  }
  if (run.pc) run.pc.close();
}

function retry(run, reason) {
  if (run !== current || run.ended) return;
  end(run);
  const wait = RETRY_MS[Math.min(failures, RETRY_MS.length - 1)];
  failures += 1;
  setState('retrying', `${reason}; retrying in ${Math.round(wait / 1000)} s`);
  setTimeout(() => { if (current === run) watch(); }, wait);
}

async function pollStats(run) {
  if (run.ended) return;
  try {
    applyStats(run, await run.pc.getStats());
  } catch (err) {
    console.warn('getStats failed:', err);
  }
  if (!run.ended) run.timer = setTimeout(() => pollStats(run), STATS_INTERVAL_MS);
}

function applyStats(run, report) {
  let inVideo = null, inAudio = null;
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') inVideo = s;
    else if (s.type === 'inbound-rtp' && s.kind === 'audio') inAudio = s;
  });
  const stats = window.watchStats;
  if (inVideo) {
    stats.framesDecoded = inVideo.framesDecoded || 0;
    stats.width = inVideo.frameWidth || 0;
    stats.height = inVideo.frameHeight || 0;
    const codec = inVideo.codecId && report.get(inVideo.codecId);
    stats.codec = codec ? codec.mimeType : null;
    run.samples.push({ t: inVideo.timestamp, frames: stats.framesDecoded });
    while (run.samples.length > 2 && run.samples[run.samples.length - 1].t - run.samples[1].t >= FPS_WINDOW_MS) {
      run.samples.shift();
    }
    const first = run.samples[0], last = run.samples[run.samples.length - 1];
    if (last.t > first.t) stats.fps = Math.round(((last.frames - first.frames) * 10000) / (last.t - first.t)) / 10;
  }
  if (inAudio) stats.audioPacketsReceived = inAudio.packetsReceived || 0;
  if (stats.framesDecoded > 0 && stats.state !== 'playing') {
    failures = 0;
    setState('playing');
  }
}

function parseKey(text) {
  if (!text) return null;
  const hex = (KEY_COLOURS[text.toLowerCase()] || text).replace(/^#/, '');
  if (!/^[0-9a-fA-F]{6}$/.test(hex)) return null;
  return [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255);
}

// Chroma key in WebGL: alpha from the distance to the key in the colour-difference plane (Cb, Cr: independent of
// brightness), the colour un-mixed from the key with that alpha, then the key's own channel held to the larger of
// the other two (spill suppression: the video's 4:2:0 edge blocks are part key), premultiplied.
const KEY_SHADER = `
precision mediump float;
uniform sampler2D frame;
uniform vec3 key;
uniform vec3 spill;
varying vec2 uv;
vec2 chroma(vec3 c) { return vec2(dot(c, vec3(-0.1687, -0.3313, 0.5)), dot(c, vec3(0.5, -0.4187, -0.0813))); }
void main() {
  vec3 c = texture2D(frame, uv).rgb;
  float a = smoothstep(0.08, 0.22, distance(chroma(c), chroma(key)));
  vec3 p = a > 0.0 ? clamp((c - (1.0 - a) * key) / a, 0.0, 1.0) : vec3(0.0);
  float others = spill.r > 0.5 ? max(p.g, p.b) : (spill.g > 0.5 ? max(p.r, p.b) : max(p.r, p.g));
  p = mix(p, min(p, vec3(others)), spill);
  gl_FragColor = vec4(p * a, a);
}`;

function startKeying(key) {
  const canvas = document.createElement('canvas');
  canvas.id = 'keyed';
  document.body.classList.add('keyed');
  document.body.insertBefore(canvas, video.nextSibling);
  const gl = canvas.getContext('webgl', { premultipliedAlpha: true, alpha: true, preserveDrawingBuffer: true });
  window.watchStats.keyed = gl ? 'webgl' : 'unavailable';
  window.watchStats.keyedFrames = 0;
  if (!gl) return;  // the video shows unkeyed
  const program = gl.createProgram();
  for (const [type, source] of [[gl.VERTEX_SHADER,
    'attribute vec2 p; varying vec2 uv; void main() { uv = vec2(p.x + 1.0, 1.0 - p.y) / 2.0; gl_Position = vec4(p, 0, 1); }'],
  [gl.FRAGMENT_SHADER, KEY_SHADER]]) {
    const shader = gl.createShader(type);
    gl.shaderSource(shader, source);
    gl.compileShader(shader);
    gl.attachShader(program, shader);
  }
  gl.linkProgram(program);
  gl.useProgram(program);
  gl.bindBuffer(gl.ARRAY_BUFFER, gl.createBuffer());
  gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
  const at = gl.getAttribLocation(program, 'p');
  gl.enableVertexAttribArray(at);
  gl.vertexAttribPointer(at, 2, gl.FLOAT, false, 0, 0);
  gl.uniform3fv(gl.getUniformLocation(program, 'key'), key);
  const strongest = key.indexOf(Math.max(...key));
  gl.uniform3fv(gl.getUniformLocation(program, 'spill'), [0, 1, 2].map((i) => (i === strongest ? 1 : 0)));
  gl.bindTexture(gl.TEXTURE_2D, gl.createTexture());
  for (const [name, value] of [[gl.TEXTURE_MIN_FILTER, gl.LINEAR], [gl.TEXTURE_MAG_FILTER, gl.LINEAR],
    [gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE], [gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE]]) {
    gl.texParameteri(gl.TEXTURE_2D, name, value);
  }
  const draw = () => {
    if (video.videoWidth && video.readyState >= 2) {
      if (canvas.width !== video.videoWidth || canvas.height !== video.videoHeight) {
        canvas.width = video.videoWidth;
        canvas.height = video.videoHeight;
        gl.viewport(0, 0, canvas.width, canvas.height);
      }
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB, gl.RGB, gl.UNSIGNED_BYTE, video);
      gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
      window.watchStats.keyedFrames += 1;
    }
    next();
  };
  // Once per decoded frame where the browser says when (OBS' Chromium does), else once per display refresh.
  const next = () => (video.requestVideoFrameCallback ? video.requestVideoFrameCallback(draw)
    : requestAnimationFrame(draw));
  next();
}

window.addEventListener('pagehide', () => { if (current) end(current); current = null; });
if (!STREAM_ID) setState('error', 'no stream id: open /watch/STREAM_ID');
else {
  if (KEY) startKeying(KEY);
  watch();
}
