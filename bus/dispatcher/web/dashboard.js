// The bus dashboard (served by bus-dispatcher at /): sign in with the admin token, then the
// topology graph and the routes' live figures, polled every few seconds from GET /v1/routes
// (rates are counter deltas between two polls), and a route's dead letters with replay.
// DOM calls and textContent only (never HTML from strings); no inline script or style (the CSP
// forbids them). Every text in the reader's language (i18n.js), switched by the header's button.
import { api, token, saveToken, clearToken } from './api.js';
import { drawGraph, serviceOf, sinceText } from './graph.js';
import { t, applyStatic, setLang, currentLang, fmtNumber, clock, dateTime, stateText, errorText }
  from './i18n.js';

const POLL_MS = 2500;
const TOPOLOGY_EVERY = 12; // polls between topology refreshes (routes change on reload)

const $ = (id) => document.getElementById(id);
const state = {
  topology: null, needTopology: false, prev: null, prevAt: 0, stats: new Map(), timer: null,
  polls: 0,
  selected: null, deadLetters: [], dlqRecords: null, routes: null, alert: null, msg: null,
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

// The alert and the dead letters' message are kept as (key, vars) so a change of language
// redraws them; text given as it is (the dispatcher's own message) stays.
function showAlert(text, kind = 'error') {
  state.alert = text ? { text, kind } : null;
  const a = $('alert');
  a.textContent = text || '';
  a.className = kind === 'info' ? 'alert info' : 'alert';
  a.hidden = !text;
}

function showAlertKey(key, vars = {}) {
  showAlert(t(key, vars));
  state.alert.key = key;
  state.alert.vars = vars;
}

function setMsg(text, kind) {
  state.msg = text ? { text, kind } : null;
  $('dlq-msg').textContent = text || '';
  $('dlq-msg').className = `msg ${kind || ''}`;
}

function setMsgKey(key, vars = {}, kind = '') {
  setMsg(t(key, vars), kind);
  state.msg.key = key;
  state.msg.vars = vars;
}

const fmt = fmtNumber;

// Returns the answer, or null after handling what every call shares (network, token refused).
async function request(fn) {
  let r;
  try {
    r = await fn();
  } catch {
    showAlertKey('err_network');
    return null;
  }
  if (r.status === 401 || r.status === 403) {
    signOut(r.status === 403 ? 'err_not_admin' : 'err_sign_in');
    return null;
  }
  return r;
}

// ---- sign in / out ----

// why: the key of the text shown, or '' for none.
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
  if (why) showAlertKey(why);
  else showAlert('');
  $('token').focus();
}

async function signIn(t) {
  saveToken(t);
  const r = await request(api.topology);
  if (!r) return;
  if (r.status !== 200) {
    showAlertKey('err_status', { status: r.status });
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
    showAlertKey('err_routes_status', { status: r.status });
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
  state.routes = r.body.routes;
  state.updatedAt = new Date();
  renderLive();
}

// The routes' table, the graph and the time of the update, in the reader's language.
function renderLive() {
  if (!state.routes) return;
  renderRoutes(state.routes);
  if (state.topology) drawGraph($('graph'), state.topology, state.stats);
  $('updated').textContent = t('updated', { time: clock(state.updatedAt) });
}

function stateBadge(s) {
  return el('span', { class: `badge ${s}`, text: stateText(s) });
}

// A failing route's last error and since when it fails; a route delivering again keeps its last
// error, dated, in grey. The error is the endpoint's (or the transport's) words: shown verbatim.
function failure(f) {
  if (!f.lastError) return '';
  const error = el('span', { class: 'verbatim', text: errorText(f.lastError) });
  if (f.failingSince) {
    return el('div', { class: 'sub error' }, error, ` · ${t('since', { time: sinceText(f.failingSince) })}`);
  }
  return el('div', { class: 'sub' }, `${t('last_error', { time: sinceText(f.lastErrorAt) })} `, error);
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
  $('dlq-help').hidden = !(conf && conf.dead_letter); // nothing to describe without the topic
  setMsg('');
  if (!conf || !conf.dead_letter) {
    $('dlq-list').replaceChildren();
    state.deadLetters = [];
    state.dlqRecords = 0;
    renderDlqHelp();
    $('dlq-empty').hidden = true;
    setMsgKey('no_dlq_topic');
    return;
  }
  await loadDeadLetters();
  $('dlq').scrollIntoView({ block: 'nearest' });
}

async function loadDeadLetters() {
  const name = state.selected;
  setMsgKey('loading');
  const r = await request(() => api.deadLetters(name));
  if (!r || name !== state.selected) return;
  if (r.status !== 200) {
    if (r.body && r.body.message) setMsg(r.body.message, 'error');
    else setMsgKey('err_status', { status: r.status }, 'error');
    return;
  }
  setMsg('');
  state.deadLetters = r.body.dead_letters;
  state.dlqRecords = r.body.records;
  renderDeadLetters();
}

function renderDlqHelp() {
  $('dlq-help-2').textContent = state.dlqRecords === null ? ''
    : t('dlq_help_2', { n: fmt(state.dlqRecords) });
}

function renderDeadLetters() {
  renderDlqHelp();
  const rows = state.deadLetters.map((d, i) => {
    const show = el('button', { type: 'button', class: 'link mono', text: d.id || `#${d.offset}` });
    show.addEventListener('click', () => showDetail(i));
    const from = d.from && d.from.topic ? `${d.from.topic}[${d.from.partition}]@${d.from.offset}` : '';
    return el('tr', { 'data-id': d.id || '' },
      el('td', { text: d.time ? dateTime(new Date(d.time)) : '' }),
      el('td', {}, show),
      el('td', { class: 'num', text: d.status === null ? '' : String(d.status) }),
      el('td', { class: 'num', text: d.attempts === null ? '' : String(d.attempts) }),
      el('td', { class: 'reason' }, el('span', { class: 'verbatim', text: errorText(d.error || '') }),
        el('div', { class: 'sub mono', text: d.answer || '' })),
      el('td', { class: 'mono', text: from }));
  });
  $('dlq-list').replaceChildren(...rows);
  $('dlq-empty').hidden = rows.length > 0;
}

function showDetail(i) {
  const d = state.deadLetters[i];
  $('detail-id').textContent = d.id || t('event_offset', { n: d.offset });
  $('detail-value').textContent = JSON.stringify(d.value, null, 2);
  $('detail-headers').textContent = JSON.stringify(d.headers, null, 2);
  $('dlq-detail').hidden = false;
}

async function replay() {
  const name = state.selected;
  $('replay').disabled = true;
  setMsgKey('replaying');
  const r = await request(() => api.replay(name));
  $('replay').disabled = false;
  if (!r) return;
  if (r.status !== 200) {
    if (r.body && r.body.message) setMsg(r.body.message, 'error');
    else setMsgKey('err_status', { status: r.status }, 'error');
    return;
  }
  const n = r.body.replayed;
  if (n === 0) setMsgKey('replay_none', {}, 'ok');
  else setMsgKey(n === 1 ? 'replay_one' : 'replay_n', { n, to: r.body.to }, 'ok');
}

// ---- language ----

function renderLang() {
  applyStatic();
  $('lang').textContent = t('lang_other');
  $('lang').setAttribute('aria-label', t('lang_label'));
  if (state.alert && state.alert.key) showAlertKey(state.alert.key, state.alert.vars);
  if (state.msg && state.msg.key) setMsgKey(state.msg.key, state.msg.vars, state.msg.kind);
  renderLive();
  if (state.selected && !$('dlq').hidden) {
    renderDlqHelp();
    if (state.deadLetters.length) renderDeadLetters();
  }
}

// ---- start ----

$('signin-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const t = $('token').value.trim();
  if (!t) {
    showAlertKey('err_paste');
    return;
  }
  $('token').value = '';
  signIn(t);
});
$('signout').addEventListener('click', () => signOut(''));
$('lang').addEventListener('click', () => {
  setLang(currentLang() === 'en' ? 'ko' : 'en');
  renderLang();
});
$('replay').addEventListener('click', replay);
$('dlq-refresh').addEventListener('click', loadDeadLetters);
$('dlq-close').addEventListener('click', () => {
  state.selected = null;
  $('dlq').hidden = true;
  for (const tr of $('routes').querySelectorAll('tr')) tr.classList.remove('selected');
});

renderLang();
if (token()) signIn(token());
else signOut('');
