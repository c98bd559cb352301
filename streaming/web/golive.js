// Go live: the host's workflow for a stream without this tab's microphone. Choose or upload a portrait
// (POST /portraits), write the persona, start a stream (POST /streams), copy its watch/WHEP/TTS/RTMP details and
// follow its viewers and outputs (GET /streams/{id}). Loaded after client.js, whose PAGE_TOKEN (the token this
// page was opened with, the operator's: these routes are the operator's) and authHeaders it uses.
'use strict';

const HEALTH_INTERVAL_MS = 1000;
const PREPARE_TIMEOUT_MS = 120000;  // a portrait is prepared in seconds; a busy server may queue it
const REQUEST_TIMEOUT_MS = 30000;

const live = {
  form: $('live-form'), select: $('portrait-select'), file: $('portrait-file'), preview: $('portrait-preview'),
  portraitState: $('portrait-state'), persona: $('live-persona'), audioFile: $('live-audio-file'),
  loop: $('live-loop'), size: $('live-size'), rtmp: $('live-rtmp'), record: $('live-record'),
  start: $('live-start'), stop: $('live-stop'), state: $('live-state'), onAir: $('on-air'),
};

// For tests and for anyone scripting the page: where the workflow stands.
window.goLive = { portrait: null, stream: null, health: null, state: 'idle' };

async function api(method, path, { json, body, headers = {}, timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
  const init = { method, headers: { ...authHeaders(PAGE_TOKEN), ...headers }, signal: AbortSignal.timeout(timeoutMs) };
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  const res = await fetch(path, init);
  const data = await res.json().catch(() => ({}));
  return { ok: res.ok, status: res.status, data };
}

function refusal(r) {
  if (r.status === 401 || r.status === 403) return `${r.data.error || r.status}: open this page as /?token=OPERATOR_TOKEN`;
  return r.data.error || `HTTP ${r.status}`;
}

function say(el, state, text) {
  el.dataset.state = state;
  el.textContent = text;
}

function describePortrait(p) {
  const notes = p.notes && p.notes.length ? ` (${p.notes.join('; ')})` : '';
  return `${p.name}, ${p.width}x${p.height}${notes}`;
}

// The portraits a stream may name: the server's own, those prepared (uploads), the portraits folder's files.
async function loadPortraits(select) {
  let r;
  try {
    r = await api('GET', '/portraits');
  } catch (err) {
    return say(live.portraitState, 'error', `could not list portraits: ${err.message || err}`);
  }
  if (!r.ok) return say(live.portraitState, 'error', refusal(r));
  const keep = select === undefined ? live.select.value : select;
  live.select.replaceChildren();
  for (const p of r.data.portraits) {
    const label = p.id === 'default' ? `the server's own (${p.name})` : `${p.name} (${p.width}x${p.height})`;
    live.select.append(new Option(label, p.id === 'default' ? '' : p.id));
  }
  for (const name of r.data.files) live.select.append(new Option(`file: ${name}`, name));
  live.select.value = [...live.select.options].some((o) => o.value === keep) ? keep : '';
}

async function upload(file) {
  if (!file) return;
  if (!['image/jpeg', 'image/png'].includes(file.type)) {
    return say(live.portraitState, 'error', `${file.name}: choose a JPEG or PNG`);
  }
  live.preview.src = URL.createObjectURL(file);
  live.preview.hidden = false;
  window.goLive.portrait = null;
  live.start.disabled = true;  // a stream started now would not have this portrait
  say(live.portraitState, 'preparing', `preparing ${file.name}… (finding the face: a few seconds)`);
  try {
    const r = await api('POST', `/portraits?name=${encodeURIComponent(file.name)}`,
      { body: file, headers: { 'Content-Type': file.type }, timeoutMs: PREPARE_TIMEOUT_MS });
    if (!r.ok) return say(live.portraitState, 'error', `${file.name}: ${refusal(r)}`);
    window.goLive.portrait = r.data;
    await loadPortraits(r.data.id);
    say(live.portraitState, 'ready', `ready: ${describePortrait(r.data)}`);
  } catch (err) {
    say(live.portraitState, 'error', `${file.name}: ${err.message || err}`);
  } finally {
    live.start.disabled = Boolean(window.goLive.stream);
  }
}

function streamRequest() {
  const body = {};
  if (live.select.value) body.avatar = live.select.value;
  if (live.persona.value.trim()) body.persona = live.persona.value.trim();
  const voice = live.form.querySelector('input[name="voice"]:checked').value;
  if (voice === 'file') {
    body.audio_file = live.audioFile.value.trim();
    body.loop = live.loop.checked;
  }
  const outputs = {};
  if (live.size.value) outputs.size = live.size.value;
  const rtmp = live.rtmp.value.split(/\s+/).filter(Boolean);
  if (rtmp.length) outputs.rtmp = rtmp;
  if (live.record.value.trim()) outputs.record_dir = live.record.value.trim();
  if (Object.keys(outputs).length) body.outputs = outputs;
  return body;
}

function withToken(url, token, extra = '') {
  const query = [token ? `token=${encodeURIComponent(token)}` : '', extra].filter(Boolean).join('&');
  return query ? `${url}?${query}` : url;
}

async function startStream(event) {
  event.preventDefault();
  if (window.goLive.stream) return;
  live.start.disabled = true;
  say(live.state, 'starting', 'starting… (a portrait of the folder not prepared yet takes a few seconds)');
  window.goLive.state = 'starting';
  let r;
  try {
    r = await api('POST', '/streams', { json: streamRequest(), timeoutMs: PREPARE_TIMEOUT_MS });
  } catch (err) {
    r = { ok: false, status: 0, data: { error: err.message || String(err) } };
  }
  if (!r.ok) {
    live.start.disabled = false;
    window.goLive.state = 'error';
    return say(live.state, 'error', `not started: ${refusal(r)}`);
  }
  const made = r.data;
  const tokens = made.tokens || {};
  const stream = {
    id: made.id, urls: made.urls, tokens, avatar: made.avatar,
    watch: withToken(made.urls.watch, tokens.view),
    obs: withToken(made.urls.watch, tokens.view, 'muted=0'),
  };
  window.goLive.stream = stream;
  window.goLive.state = 'live';
  showOnAir(stream);
  live.stop.disabled = false;
  say(live.state, 'live', `live: stream ${made.id}`);
  pollHealth(stream);
}

function showOnAir(stream) {
  const watch = $('live-watch');
  watch.href = watch.textContent = watch.title = stream.watch;
  for (const [id, text] of [['live-obs', stream.obs], ['live-whep', stream.urls.whep], ['live-audio', stream.urls.audio]]) {
    $(id).textContent = $(id).title = text;
  }
  $('live-id').textContent = stream.id;
  $('live-portrait').textContent = stream.avatar ? stream.avatar.name : '–';
  const tokens = $('live-tokens');
  tokens.replaceChildren();
  if (!stream.tokens.view) {
    tokens.textContent = 'none needed (access control is off)';
  } else {
    for (const [role, use] of [['view', 'WHEP and the watch page'], ['publish', 'the audio WebSocket and WHIP']]) {
      const line = document.createElement('div');
      const code = document.createElement('code');
      code.id = `live-token-${role}`;
      code.textContent = code.title = stream.tokens[role];
      const copy = document.createElement('button');
      copy.type = 'button';
      copy.className = 'copy';
      copy.dataset.copy = code.id;
      copy.textContent = 'Copy';
      line.append(`${role} (${use})`, copy, code);
      tokens.append(line);
    }
  }
  live.onAir.hidden = false;
}

function rtmpText(pushes) {
  if (!pushes || !pushes.length) return 'none';
  return pushes.map((p) => `${p.url}: ${p.state}` + (p.last_error ? ` (${p.last_error})` : '')
    + `, ${p.packets_sent} packets` + (p.reconnects ? `, ${p.reconnects} reconnects` : '')).join('\n');
}

function showHealth(h) {
  $('live-health-state').textContent = h.state;
  $('live-frames').textContent = String(h.frames_sent);
  $('live-viewers').textContent = String(h.viewers);
  const outputs = h.outputs || {};
  $('live-canvas').textContent = outputs.size || 'the portrait\'s own';
  $('live-rtmp-state').textContent = rtmpText(outputs.rtmp);
  const rec = outputs.recording;
  $('live-recording').textContent = rec ? `${rec.path}: ${rec.bytes === null ? '–' : (rec.bytes / 1048576).toFixed(1)} MiB`
    : 'none';
}

// setTimeout after each answer, not setInterval: a slow answer never piles up requests.
async function pollHealth(stream) {
  if (window.goLive.stream !== stream) return;
  try {
    const r = await api('GET', `/streams/${encodeURIComponent(stream.id)}`);
    if (window.goLive.stream !== stream) return;
    if (r.status === 404) return ended(stream, 'the stream has ended');
    if (r.ok) {
      window.goLive.health = r.data;
      showHealth(r.data);
    }
  } catch (err) {
    console.warn('stream health:', err);
  }
  stream.timer = setTimeout(() => pollHealth(stream), HEALTH_INTERVAL_MS);
}

function ended(stream, why) {
  if (window.goLive.stream !== stream) return;
  clearTimeout(stream.timer);
  window.goLive.stream = null;
  window.goLive.state = 'ended';
  live.stop.disabled = true;
  live.start.disabled = false;
  $('live-health-state').textContent = 'closed';
  say(live.state, 'ended', why);
}

async function stopStream() {
  const stream = window.goLive.stream;
  if (!stream) return;
  live.stop.disabled = true;
  try {
    const r = await api('DELETE', `/streams/${encodeURIComponent(stream.id)}`);
    if (!r.ok && r.status !== 404) {
      live.stop.disabled = false;
      return say(live.state, 'error', `not ended: ${refusal(r)}`);
    }
  } catch (err) {
    live.stop.disabled = false;
    return say(live.state, 'error', `not ended: ${err.message || err}`);
  }
  ended(stream, `ended stream ${stream.id}`);
}

async function copyFrom(button) {
  const text = $(button.dataset.copy).textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = 'Copied';
  } catch {  // no clipboard (an insecure origin): select it for Ctrl+C instead
    getSelection().selectAllChildren($(button.dataset.copy));
    button.textContent = 'Selected';
  }
  setTimeout(() => { button.textContent = 'Copy'; }, 1500);
}

document.addEventListener('click', (event) => {
  const button = event.target.closest('button.copy');
  if (button) copyFrom(button);
});
live.file.addEventListener('change', () => upload(live.file.files[0]));
live.select.addEventListener('change', () => {
  live.preview.hidden = true;
  say(live.portraitState, 'idle', live.select.value ? `chosen: ${live.select.selectedOptions[0].text}`
    : 'the server\'s own portrait');
});
live.form.addEventListener('submit', startStream);
live.stop.addEventListener('click', stopStream);
loadPortraits();
