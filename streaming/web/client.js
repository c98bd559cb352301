// Avatar engine web client: sends the microphone over WebRTC, plays the avatar back and shows
// live receive statistics. Plain JS, no build step; it only talks to the page's own origin.
'use strict';

// Access control: where the server has an operator token, the page is opened as /?token=... (the
// operator secret or a publish token). The token is moved out of the address bar at once (it would
// otherwise sit in history and in anything copied from there) and kept for this tab only. Without it
// the page sends no credential, as a server on loopback without a token expects.
const TOKEN_KEY = 'avatar-engine-token';
const PAGE_TOKEN = readPageToken();

function readPageToken() {
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get('token');
  if (!fromUrl) return sessionStorage.getItem(TOKEN_KEY);
  sessionStorage.setItem(TOKEN_KEY, fromUrl);
  params.delete('token');
  const rest = params.toString();
  history.replaceState(null, '', location.pathname + (rest ? `?${rest}` : '') + location.hash);
  return fromUrl;
}

function authHeaders(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

const STATS_INTERVAL_MS = 500;
const FPS_WINDOW_MS = 2000;          // fps over the last ~2 s: steady to read, quick to follow
const ICE_GATHER_TIMEOUT_MS = 5000;  // then send the candidates we have rather than hang
const OFFER_TIMEOUT_MS = 30000;
const CLOSE_TIMEOUT_MS = 5000;

const $ = (id) => document.getElementById(id);
const ui = {
  start: $('start'), stop: $('stop'), video: $('video'), audio: $('audio'), screen: $('screen'),
  state: $('stat-state'), fps: $('stat-fps'), resolution: $('stat-resolution'), rtt: $('stat-rtt'),
  frames: $('stat-frames'), audioPackets: $('stat-audio'), session: $('stat-session'),
};

// The panel's numbers, also for tests (they read these instead of scraping the text).
window.avatarStats = freshStats('idle');

// The live run, or null. Each Start makes a new run object, so callbacks of an old run that
// resolve late (after Stop, or after an error) can tell they are stale and do nothing.
let current = null;

function freshStats(state) {
  return { fps: null, width: 0, height: 0, rttMs: null, state, framesDecoded: 0, audioPacketsReceived: 0 };
}

function setState(state) {
  window.avatarStats.state = state;
  ui.state.textContent = state;
  // data-state drives the colours; 'error: ...' is styled as 'error'
  const kind = state.startsWith('error') ? 'error' : state;
  ui.state.dataset.state = kind;
  ui.screen.dataset.state = kind;
}

function setRunning(running) {
  ui.start.disabled = running;
  ui.stop.disabled = !running;
}

function render() {
  const s = window.avatarStats;
  ui.fps.textContent = s.fps === null ? '–' : s.fps.toFixed(1);
  ui.resolution.textContent = s.width ? `${s.width}x${s.height}` : '–';
  ui.rtt.textContent = s.rttMs === null ? '–' : s.rttMs.toFixed(1);
  ui.frames.textContent = s.framesDecoded ? String(s.framesDecoded) : '–';
  ui.audioPackets.textContent = s.audioPacketsReceived ? String(s.audioPacketsReceived) : '–';
}

// The server does not trickle ICE: the offer it gets must already hold every candidate.
function iceGatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

async function start() {
  if (current) return;
  // run.token: the page's token until the server hands back one for this session alone.
  const run = { pc: null, mic: null, sessionId: null, token: PAGE_TOKEN, stopped: false, samples: [], timer: null };
  current = run;
  window.avatarStats = freshStats('connecting');
  setState('connecting');
  render();
  ui.session.textContent = '–';
  setRunning(true);
  try {
    run.mic = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    if (run.stopped) return teardown(run);

    const pc = run.pc = new RTCPeerConnection();
    // addTrack makes the audio transceiver sendrecv: the microphone goes up, the avatar's
    // (delayed, in-sync) audio comes back on the same m-line. Video only comes down.
    for (const track of run.mic.getAudioTracks()) pc.addTrack(track, run.mic);
    pc.addTransceiver('video', { direction: 'recvonly' });

    pc.ontrack = (e) => {
      const el = e.track.kind === 'video' ? ui.video : ui.audio;
      el.srcObject = new MediaStream([e.track]);
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed') fail(run, 'connection failed (ICE/DTLS)');
    };

    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringComplete(pc, ICE_GATHER_TIMEOUT_MS);
    if (run.stopped) return teardown(run);

    const res = await fetch('/offer', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...authHeaders(run.token) },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
      signal: AbortSignal.timeout(OFFER_TIMEOUT_MS),
    });
    const answer = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(answer.error || `server answered HTTP ${res.status}`);
    run.sessionId = answer.session_id;
    if (answer.session_token) run.token = answer.session_token;  // close and direct this session only
    if (run.stopped) {  // Stop was pressed while the server was answering: free its session too
      closeOnServer(run);
      return teardown(run);
    }
    ui.session.textContent = run.sessionId;
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
    shareWatchLink(run);
    openControl(run);
    pollStats(run);
  } catch (err) {
    fail(run, err.message || String(err));
  }
}

async function stop() {
  const run = current;
  if (!run) return;
  current = null;
  run.stopped = true;
  clearTimeout(run.timer);
  ui.stop.disabled = true;
  // Tell the server first so it frees the session at once, instead of waiting ~30 s for
  // ICE consent to fail; then close our side.
  if (run.sessionId) await closeOnServer(run);
  teardown(run);
  setState('closed');
  setRunning(false);
}

function fail(run, message) {
  if (run !== current) return;  // a stale run: it was stopped already
  current = null;
  run.stopped = true;
  if (run.sessionId) closeOnServer(run);
  teardown(run);
  setState(`error: ${message}`);
  setRunning(false);
}

async function closeOnServer(run) {
  const sessionId = run.sessionId;
  try {
    const res = await fetch(`/sessions/${encodeURIComponent(sessionId)}/close`, {
      method: 'POST', headers: authHeaders(run.token), signal: AbortSignal.timeout(CLOSE_TIMEOUT_MS),
    });
    if (!res.ok) console.warn('close session', sessionId, 'answered', res.status);
  } catch (err) {
    console.warn('close session', sessionId, 'failed:', err);  // our pc.close() still ends it
  }
}

// The audience's link: the watch page of this session. With access control on it needs a view token, which
// only the operator may mint: the page tries with its own token and otherwise says where one comes from.
async function shareWatchLink(run) {
  const link = $('watch-link'), note = $('share-note');
  const url = `${location.origin}/watch/${encodeURIComponent(run.sessionId)}`;
  let token = null;
  if (PAGE_TOKEN) {
    try {
      const res = await fetch('/tokens', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', ...authHeaders(PAGE_TOKEN) },
        body: JSON.stringify({ stream: run.sessionId, role: 'view', ttl_s: 12 * 3600 }),
      });
      if (res.ok) token = (await res.json()).token;
    } catch (err) {
      console.warn('minting a view token failed:', err);
    }
  }
  if (run !== current) return;
  link.href = link.textContent = token ? `${url}?token=${encodeURIComponent(token)}` : url;
  note.textContent = PAGE_TOKEN && !token
    ? 'viewers need a view token for this session (the operator mints one: POST /tokens) as ?token='
    : 'WHEP: POST an SDP offer to ' + `/streams/${run.sessionId}/whep`;
}

// The control channel: instructions and persona go to the session's director as data.
function openControl(run) {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  // Browsers cannot set headers on a WebSocket upgrade: the token goes as the `token` query parameter.
  const query = run.token ? `?token=${encodeURIComponent(run.token)}` : '';
  const ws = new WebSocket(`${scheme}://${location.host}/sessions/${encodeURIComponent(run.sessionId)}/control${query}`);
  run.control = ws;
  ws.onopen = () => { $('control-state').textContent = 'ready'; };
  ws.onclose = () => { if (run === current) $('control-state').textContent = 'control channel closed'; };
  ws.onmessage = (event) => {
    const reply = JSON.parse(event.data);
    $('control-state').textContent = reply.ok ? `sent (${reply.type})` : `refused: ${reply.error}`;
  };
}

function sendControl(type, text) {
  const ws = current && current.control;
  if (!ws || ws.readyState !== WebSocket.OPEN || !text.trim()) return;
  ws.send(JSON.stringify({ type, text }));
}

document.querySelectorAll('[data-say]').forEach((button) => {
  button.addEventListener('click', () => sendControl('instruction', button.dataset.say));
});
$('instruct').addEventListener('submit', (event) => {
  event.preventDefault();
  sendControl('instruction', $('instruction').value);
  $('instruction').value = '';
});
$('persona-form').addEventListener('submit', (event) => {
  event.preventDefault();
  sendControl('persona', $('persona').value);
});

// Idempotent: safe to call from any path that ends a run.
function teardown(run) {
  run.stopped = true;
  if (run.control) run.control.close();
  clearTimeout(run.timer);
  if (run.mic) run.mic.getTracks().forEach((t) => t.stop());
  if (run.pc) run.pc.close();
  ui.video.srcObject = null;
  ui.audio.srcObject = null;
}

// setTimeout after each read, not setInterval: a slow getStats() never piles up calls.
async function pollStats(run) {
  if (run.stopped) return;
  try {
    const report = await run.pc.getStats();
    if (!run.stopped) applyStats(run, report);
  } catch (err) {
    console.warn('getStats failed:', err);  // a closing pc may reject; the next tick settles it
  }
  if (!run.stopped) run.timer = setTimeout(() => pollStats(run), STATS_INTERVAL_MS);
}

function applyStats(run, report) {
  let video = null, audio = null, selectedPairId = null, nominatedPair = null;
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') video = s;
    else if (s.type === 'inbound-rtp' && s.kind === 'audio') audio = s;
    else if (s.type === 'transport' && s.selectedCandidatePairId) selectedPairId = s.selectedCandidatePairId;
    else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') nominatedPair = s;
  });
  const pair = (selectedPairId && report.get(selectedPairId)) || nominatedPair;
  const stats = window.avatarStats;

  if (video) {
    stats.framesDecoded = video.framesDecoded || 0;
    stats.width = video.frameWidth || 0;
    stats.height = video.frameHeight || 0;
    // fps from the framesDecoded delta over the report timestamps: framesPerSecond is coarse
    // (integer, its own window) and missing until frames flow.
    const samples = run.samples;
    samples.push({ t: video.timestamp, frames: stats.framesDecoded });
    while (samples.length > 2 && samples[samples.length - 1].t - samples[1].t >= FPS_WINDOW_MS) samples.shift();
    const first = samples[0], last = samples[samples.length - 1];
    if (last.t > first.t) stats.fps = Math.round(((last.frames - first.frames) * 10000) / (last.t - first.t)) / 10;
  }
  if (audio) stats.audioPacketsReceived = audio.packetsReceived || 0;
  if (pair && typeof pair.currentRoundTripTime === 'number') stats.rttMs = pair.currentRoundTripTime * 1000;

  if (stats.state === 'connecting' && stats.framesDecoded > 0) setState('streaming');
  render();
}

ui.start.addEventListener('click', start);
ui.stop.addEventListener('click', stop);
// Closing the tab: a beacon still gets out while the page unloads, where a plain fetch may not. A beacon
// cannot carry a header, so with a token the same is done by a keepalive fetch, which outlives the page too.
window.addEventListener('pagehide', () => {
  const run = current;
  if (!run) return;
  current = null;
  if (run.sessionId) {
    const url = `/sessions/${encodeURIComponent(run.sessionId)}/close`;
    if (run.token) {
      fetch(url, { method: 'POST', keepalive: true, headers: authHeaders(run.token) }).catch(() => {});
    } else {
      navigator.sendBeacon(url);
    }
  }
  teardown(run);
});
render();
