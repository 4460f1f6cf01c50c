// The bus dashboard (served by bus-dispatcher at /): sign in with the admin token, then the
// topology graph and the routes' live figures, polled every few seconds from GET /v1/routes
// (rates are counter deltas between two polls), and a route's dead letters with replay.
// DOM calls and textContent only (never HTML from strings); no inline script or style (the CSP
// forbids them).
import { api, token, saveToken, clearToken } from './api.js';
import { drawGraph, serviceOf, sinceText } from './graph.js';

const POLL_MS = 2500;
const TOPOLOGY_EVERY = 12; // polls between topology refreshes (routes change on reload)

const $ = (id) => document.getElementById(id);
const state = {
  topology: null, needTopology: false, prev: null, prevAt: 0, stats: new Map(), timer: null,
  polls: 0,
  selected: null, deadLetters: [],
};

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

function showAlert(text, kind = 'error') {
  const a = $('alert');
  a.textContent = text || '';
  a.className = kind === 'info' ? 'alert info' : 'alert';
  a.hidden = !text;
}

function setMsg(text, kind) {
  $('dlq-msg').textContent = text || '';
  $('dlq-msg').className = `msg ${kind || ''}`;
}

function fmt(n) {
  return Number.isFinite(n) ? n.toLocaleString('en-US') : '–';
}

// Returns the answer, or null after handling what every call shares (network, token refused).
async function request(fn) {
  let r;
  try {
    r = await fn();
  } catch {
    showAlert('The dispatcher does not answer. Retrying…');
    return null;
  }
  if (r.status === 401 || r.status === 403) {
    signOut(r.status === 403 ? 'This is not the admin token.' : 'Sign in with the admin token.');
    return null;
  }
  return r;
}

// ---- sign in / out ----

function signOut(why) {
  clearToken();
  clearInterval(state.timer);
  state.timer = null;
  state.topology = null;
  state.prev = null;
  $('app').hidden = true;
  $('signout').hidden = true;
  $('updated').textContent = '';
  $('signin').hidden = false;
  showAlert(why || '');
  $('token').focus();
}

async function signIn(t) {
  saveToken(t);
  const r = await request(api.topology);
  if (!r) return;
  if (r.status !== 200) {
    showAlert(`The dispatcher answered ${r.status}.`);
    return;
  }
  state.topology = r.body;
  showAlert('');
  $('signin').hidden = true;
  $('app').hidden = false;
  $('signout').hidden = false;
  await poll();
  clearInterval(state.timer);
  state.timer = setInterval(poll, POLL_MS);
}

// ---- live figures ----

function routeFigures(r) {
  const c = r.counters || {};
  return { delivered: c.delivered ?? 0, retried: c.retried ?? 0, failed: c.failed ?? 0,
    dead: c.dead_lettered ?? 0, inFlight: r.in_flight ?? 0, lag: r.lag ?? 0,
    state: r.state || 'unknown', lastError: r.last_error || null,
    lastErrorAt: r.last_error_at || null, failingSince: r.failing_since || null };
}

async function poll() {
  state.polls += 1;
  if (state.needTopology || state.polls % TOPOLOGY_EVERY === 0) {
    const t = await request(api.topology);
    if (t && t.status === 200) {
      state.topology = t.body;
      state.needTopology = false;
    }
  }
  const r = await request(api.routes);
  if (!r) return;
  if (r.status !== 200) {
    showAlert(`GET /v1/routes answered ${r.status}.`);
    return;
  }
  showAlert('');
  const now = performance.now();
  const dt = state.prev ? (now - state.prevAt) / 1000 : 0;
  const stats = new Map();
  for (const route of r.body.routes) {
    const f = routeFigures(route);
    const before = state.prev && state.prev.get(route.name);
    f.rate = before && dt > 0 ? Math.max(0, (f.delivered - before.delivered) / dt) : NaN;
    stats.set(route.name, f);
  }
  // a route the topology does not know yet (reloaded): fetch the topology again next time
  if (state.topology && r.body.routes.some((x) => !state.topology.routes.find((t) => t.name === x.name))) {
    state.needTopology = true;
  }
  state.prev = stats;
  state.prevAt = now;
  state.stats = stats;
  renderRoutes(r.body.routes);
  if (state.topology) drawGraph($('graph'), state.topology, stats);
  $('updated').textContent = `Updated ${new Date().toLocaleTimeString('en-GB')}`;
}

function stateBadge(s) {
  const text = { running: 'running', retrying: 'retrying', 'breaker-open': 'breaker open' }[s] || s;
  return el('span', { class: `badge ${s}`, text });
}

// A failing route's last error and since when it fails; a route delivering again keeps its last
// error, dated, in grey.
function failure(f) {
  if (!f.lastError) return '';
  if (f.failingSince) {
    return el('div', { class: 'sub error', text: `${f.lastError} · since ${sinceText(f.failingSince)}` });
  }
  return el('div', { class: 'sub', text: `last error ${sinceText(f.lastErrorAt)}: ${f.lastError}` });
}

function renderRoutes(routes) {
  const body = $('routes');
  const rows = [...routes].sort((a, b) => a.name.localeCompare(b.name)).map((route) => {
    const f = state.stats.get(route.name);
    const open = el('button', { type: 'button', class: 'link route-name', text: route.name,
      title: `${route.topic} → ${route.endpoint}` });
    open.addEventListener('click', () => openDeadLetters(route.name));
    const where = el('div', { class: 'sub mono', text: `${route.topic} → ${serviceOf(routeConf(route.name) || route)}` });
    const num = (cls, v) => el('td', { class: `num ${cls}`, text: v });
    const tr = el('tr', { 'data-route': route.name, class: route.name === state.selected ? 'selected' : '' },
      el('td', {}, open, where),
      el('td', {}, stateBadge(f.state), failure(f)),
      num('rate', Number.isFinite(f.rate) ? f.rate.toFixed(1) : '–'),
      num('delivered', fmt(f.delivered)),
      num('retried', fmt(f.retried)),
      num('failed', fmt(f.failed)),
      num('dead', route.dead_letter ? fmt(f.dead) : '–'),
      num('in-flight', fmt(f.inFlight)),
      num('lag', fmt(f.lag)));
    return tr;
  });
  body.replaceChildren(...rows);
  $('routes-empty').hidden = routes.length > 0;
}

// ---- dead letters ----

function routeConf(name) {
  return state.topology && state.topology.routes.find((r) => r.name === name);
}

async function openDeadLetters(name) {
  state.selected = name;
  for (const tr of $('routes').querySelectorAll('tr')) {
    tr.classList.toggle('selected', tr.dataset.route === name);
  }
  $('dlq').hidden = false;
  $('dlq-route').textContent = name;
  $('dlq-detail').hidden = true;
  const conf = routeConf(name);
  $('dlq-topic').textContent = conf && conf.dead_letter ? conf.dead_letter : '–';
  $('replay').disabled = !(conf && conf.dead_letter);
  setMsg('');
  if (!conf || !conf.dead_letter) {
    $('dlq-list').replaceChildren();
    $('dlq-records').textContent = '0';
    $('dlq-empty').hidden = true;
    setMsg('This route has no dead-letter topic: refused events are logged and skipped.');
    return;
  }
  await loadDeadLetters();
  $('dlq').scrollIntoView({ block: 'nearest' });
}

async function loadDeadLetters() {
  const name = state.selected;
  setMsg('Loading…');
  const r = await request(() => api.deadLetters(name));
  if (!r || name !== state.selected) return;
  if (r.status !== 200) {
    setMsg((r.body && r.body.message) || `The dispatcher answered ${r.status}.`, 'error');
    return;
  }
  setMsg('');
  state.deadLetters = r.body.dead_letters;
  $('dlq-records').textContent = fmt(r.body.records);
  const rows = state.deadLetters.map((d, i) => {
    const show = el('button', { type: 'button', class: 'link mono', text: d.id || `#${d.offset}` });
    show.addEventListener('click', () => showDetail(i));
    const from = d.from && d.from.topic ? `${d.from.topic}[${d.from.partition}]@${d.from.offset}` : '';
    return el('tr', { 'data-id': d.id || '' },
      el('td', { text: d.time ? new Date(d.time).toLocaleString('en-GB') : '' }),
      el('td', {}, show),
      el('td', { class: 'num', text: d.status === null ? '' : String(d.status) }),
      el('td', { class: 'num', text: d.attempts === null ? '' : String(d.attempts) }),
      el('td', { class: 'reason', text: d.error || '' },
        el('div', { class: 'sub mono', text: d.answer || '' })),
      el('td', { class: 'mono', text: from }));
  });
  $('dlq-list').replaceChildren(...rows);
  $('dlq-empty').hidden = rows.length > 0;
}

function showDetail(i) {
  const d = state.deadLetters[i];
  $('detail-id').textContent = d.id || `offset ${d.offset}`;
  $('detail-value').textContent = JSON.stringify(d.value, null, 2);
  $('detail-headers').textContent = JSON.stringify(d.headers, null, 2);
  $('dlq-detail').hidden = false;
}

async function replay() {
  const name = state.selected;
  $('replay').disabled = true;
  setMsg('Replaying…');
  const r = await request(() => api.replay(name));
  $('replay').disabled = false;
  if (!r) return;
  if (r.status !== 200) {
    setMsg((r.body && r.body.message) || `The dispatcher answered ${r.status}.`, 'error');
    return;
  }
  const n = r.body.replayed;
  setMsg(n === 0 ? 'Nothing to replay: every dead letter was replayed before.'
    : `Replayed ${n} dead letter${n === 1 ? '' : 's'} to ${r.body.to}.`, 'ok');
}

// ---- start ----

$('signin-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const t = $('token').value.trim();
  if (!t) {
    showAlert('Paste the admin token first.');
    return;
  }
  $('token').value = '';
  signIn(t);
});
$('signout').addEventListener('click', () => signOut(''));
$('replay').addEventListener('click', replay);
$('dlq-refresh').addEventListener('click', loadDeadLetters);
$('dlq-close').addEventListener('click', () => {
  state.selected = null;
  $('dlq').hidden = true;
  for (const tr of $('routes').querySelectorAll('tr')) tr.classList.remove('selected');
});

if (token()) signIn(token());
else signOut('');
