// The player page: sign in with a player token, the login history (paged, newest first), the
// security settings of guard, and unlock with the code. Served by history (GET /), calls history
// and guard (their addresses come from config.json). Everything is built with DOM calls and
// textContent: no inline script or style, no HTML from data.
import { t, applyStatic, setLang, currentLang, countryName, formatTime } from './i18n.js';
import { api, loadConfig, session, saveSession, clearSession, tokenClaims } from './api.js';

const PAGE_SIZE = 10;
const POLICIES = ['none', 'notify', 'kick', 'block_abroad', 'lock'];
const $ = (id) => document.getElementById(id);

const state = {
  account: null,
  cursors: [null], // cursor of each page visited; the last is the current page's
  next: null,
  logins: [],
  status: null,
  policy: null,
};

// ---- small helpers ----

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k in e) e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// IPv4: the last octet hidden (203.0.113.*); IPv6: only the first 48 bits shown
// (2001:db8:85a3:*:*:*:*:*). What remains tells a country and a provider, not a household.
export function maskIp(ip) {
  if (!ip) return '';
  const v4 = ip.match(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/);
  if (v4) return `${v4[1]}.${v4[2]}.${v4[3]}.*`;
  if (ip.includes(':')) {
    const [head, tail = ''] = ip.split('::');
    const h = head ? head.split(':') : [];
    const tl = ip.includes('::') && tail ? tail.split(':') : [];
    const groups = ip.includes('::') ? [...h, ...Array(8 - h.length - tl.length).fill('0'), ...tl] : h;
    return groups.slice(0, 3).map((g) => g.replace(/^0+(?=.)/, '').toLowerCase()).join(':') + ':*:*:*:*:*';
  }
  return '*';
}

function showAlert(text, kind = 'error') {
  const a = $('alert');
  a.textContent = text;
  a.className = kind === 'info' ? 'alert info' : 'alert';
  a.hidden = !text;
}

function setMsg(id, text, kind) {
  const m = $(id);
  m.textContent = text || '';
  m.className = `msg ${kind || ''}`;
}

function apiError(r) {
  if (r.status === 503) return t('err_unavailable');
  return t('err_generic', { msg: (r.body && r.body.message) || `HTTP ${r.status}` });
}

// 401 and 403 on the account's own data end the session: the token is wrong for this page.
function handleAuthFailure(r) {
  if (r.status === 401) {
    signOut(t('err_token'));
    return true;
  }
  if (r.status === 403) {
    signOut(t('err_other_account', { id: state.account }));
    return true;
  }
  return false;
}

async function guarded(fn) {
  try {
    return await fn();
  } catch (e) {
    showAlert(t('err_network'));
    return null;
  }
}

// ---- sign in / out ----

function showSignin() {
  $('signin').hidden = false;
  $('app').hidden = true;
  $('signout').hidden = true;
  $('token').value = '';
  $('token').focus();
}

function signOut(message) {
  clearSession();
  // This tab forgets the player: the language chosen here goes with the token.
  sessionStorage.removeItem('player.lang.chosen');
  state.account = null;
  showSignin();
  showAlert(message || '', 'error');
}

async function onSignin(ev) {
  ev.preventDefault();
  const token = $('token').value.trim();
  const claims = tokenClaims(token);
  if (!claims || !claims.sub || claims.role !== 'player') {
    showAlert(t('err_token_format'));
    return;
  }
  const account = $('account').value.trim() || claims.sub;
  saveSession(token, account);
  showAlert('');
  await enter();
}

async function enter() {
  const { account } = session();
  state.account = account;
  state.cursors = [null];
  $('who').textContent = account;
  $('signin').hidden = true;
  $('app').hidden = false;
  $('signout').hidden = false;
  // The policy read proves the token is the account's; the rest follows only then.
  const ok = await loadSettings();
  if (!ok) return;
  await Promise.all([loadStatus(), loadHistory(), loadEvents()]);
}

// ---- status and unlock ----

async function loadStatus() {
  const r = await guarded(() => api.status(state.account));
  if (!r) return;
  if (r.status !== 200) {
    showAlert(apiError(r));
    return;
  }
  state.status = r.body;
  renderStatus();
}

function renderStatus() {
  const s = state.status;
  if (!s) return;
  $('locked').hidden = !s.locked;
  const badge = $('state-badge');
  badge.textContent = s.locked ? t('state_locked') : t('state_ok');
  badge.className = s.locked ? 'badge locked' : 'badge ok';
  const home = (s.home_countries || []).map((c) => `${countryName(c)} (${c})`).join(', ');
  $('home-note').textContent = home ? t('home_note', { list: home }) : '';
}

async function onUnlock(ev) {
  ev.preventDefault();
  const code = $('code').value.trim();
  if (!code) {
    setMsg('unlock-msg', t('err_code_required'), 'error');
    return;
  }
  const r = await guarded(() => api.unlock(state.account, code));
  if (!r) return;
  const err = r.body && r.body.error;
  if (r.status === 200) {
    $('code').value = '';
    setMsg('unlock-msg', '');
    showAlert(t('unlocked'), 'info');
    await loadStatus();
    await refreshAfterUnlock();
    return;
  }
  if (r.status === 403 && err === 'wrong_code') {
    setMsg('unlock-msg', t('err_wrong_code', { n: r.body.attempts_left }), 'error');
  } else if (r.status === 423) {
    setMsg('unlock-msg', t('err_attempts'), 'error');
  } else if (r.status === 410) {
    setMsg('unlock-msg', t('err_expired'), 'error');
  } else if (r.status === 409) {
    setMsg('unlock-msg', t('err_no_code'), 'error');
  } else if (!handleAuthFailure(r)) {
    setMsg('unlock-msg', apiError(r), 'error');
  }
}

// ---- history ----

async function loadHistory() {
  const cursor = state.cursors[state.cursors.length - 1];
  const r = await guarded(() => api.logins(state.account, PAGE_SIZE, cursor));
  if (!r) return;
  if (r.status !== 200) {
    if (!handleAuthFailure(r)) showAlert(apiError(r));
    return;
  }
  state.logins = r.body.logins || [];
  state.next = r.body.next_cursor || null;
  renderHistory();
}

function renderHistory() {
  const rows = $('rows');
  rows.replaceChildren();
  for (const l of state.logins) {
    const action = l.action || null;
    rows.append(el('tr', {},
      el('td', { text: formatTime(l.ts) }),
      el('td', { text: `${countryName(l.country)}${l.country && l.country !== 'ZZ' ? ` (${l.country})` : ''}` }),
      el('td', { class: 'mono', text: maskIp(l.ip) }),
      el('td', { text: l.server || '—' }),
      el('td', {}, loginAction(l))));
  }
  $('empty').hidden = state.logins.length > 0;
  $('newer').disabled = state.cursors.length <= 1;
  $('older').disabled = !state.next;
  $('page-no').textContent = t('page', { n: state.cursors.length });
}

// What guard did for a login and why (reason codes, in the reader's language); a lock that was
// lifted since says when, instead of "Account locked" for ever.
function loginAction(l) {
  const action = l.action || null;
  const lifted = action === 'lock' && l.unlocked_at;
  const badge = el('span', {
    class: lifted ? 'badge none' : `badge ${action || 'none'}`,
    text: lifted ? t('action_lock_lifted', { date: formatTime(l.unlocked_at) })
      : t(action ? `action_${action}` : 'action_null') });
  const reasons = (l.reasons || []).map((c) => known(`reason_${c}`, c)).join(', ');
  return reasons ? el('span', {}, badge, el('span', { class: 'reasons', text: reasons })) : badge;
}

// The text of key, or fallback when the page has none (a code newer than the page).
function known(key, fallback) {
  const text = t(key);
  return text === key ? fallback : text;
}

// ---- account activity: locks, unlocks (by whom), settings changes ----

// The unlock reaches history through the bus a moment later: the activity is read again (a few
// times, a second apart) until it shows, then the lock's login with it.
async function refreshAfterUnlock() {
  const before = (state.events || []).filter((e) => e.kind === 'unlocked').length;
  for (let i = 0; i < 8; i++) {
    await new Promise((resolve) => { setTimeout(resolve, 1000); });
    await loadEvents();
    if ((state.events || []).filter((e) => e.kind === 'unlocked').length > before) break;
  }
  await loadHistory();
}

async function loadEvents() {
  const r = await guarded(() => api.events(state.account, 10));
  if (!r) return;
  if (r.status !== 200) {
    if (!handleAuthFailure(r)) showAlert(apiError(r));
    return;
  }
  state.events = r.body.events || [];
  renderEvents();
}

function renderEvents() {
  const list = $('events');
  const evs = state.events || [];
  list.replaceChildren(...evs.map((e) => {
    const what = e.kind === 'settings_changed'
      ? t('ev_settings_changed', { change: known(`change_${e.change}`, e.change || '') })
      : t(`ev_${e.kind}`);
    return el('li', {}, el('span', { class: 'when', text: formatTime(e.ts) }),
      el('span', { class: e.kind === 'locked' ? 'badge locked' : 'badge none', text: what }),
      el('span', { class: 'by', text: t(`by_${e.by}`) }));
  }));
  $('events-empty').hidden = evs.length > 0;
}

// ---- settings ----

async function loadSettings() {
  const r = await guarded(() => api.policy(state.account));
  if (!r) return false;
  if (r.status !== 200) {
    if (!handleAuthFailure(r)) showAlert(apiError(r));
    return false;
  }
  state.policy = r.body;
  renderSettings();
  return true;
}

function renderPolicies(selected) {
  const box = $('policies');
  box.replaceChildren();
  for (const p of POLICIES) {
    const input = el('input', { type: 'radio', name: 'policy', value: p, id: `policy-${p}` });
    input.checked = p === selected;
    box.append(el('label', { htmlFor: `policy-${p}` }, input,
      el('span', {}, el('strong', { text: t(`policy_${p}`) }), ' ',
        el('span', { class: 'desc', text: t(`policy_${p}_desc`) }))));
  }
}

function allowedRow(country = '', until = '') {
  const cc = el('input', { type: 'text', class: 'cc', maxLength: 2, value: country,
    'aria-label': t('col_country_code') });
  const name = el('td', { class: 'cname' });
  const date = el('input', { type: 'date', value: until ? until.slice(0, 10) : '',
    'aria-label': t('col_until') });
  const remove = el('button', { type: 'button', class: 'secondary', text: t('remove') });
  const tr = el('tr', {}, el('td', {}, cc), name, el('td', {}, date), el('td', {}, remove));
  const refresh = () => {
    const v = cc.value.trim().toUpperCase();
    name.textContent = /^[A-Z]{2}$/.test(v) ? countryName(v) : (v ? t('bad_country') : '');
  };
  cc.addEventListener('input', refresh);
  remove.addEventListener('click', () => tr.remove());
  refresh();
  return tr;
}

function renderSettings() {
  const p = state.policy;
  renderPolicies(p.action);
  for (const box of document.querySelectorAll('input[name=channel]')) {
    box.checked = (p.channels || []).includes(box.value);
  }
  const body = $('allowed');
  body.replaceChildren(...(p.allowed_countries || []).map((a) => allowedRow(a.country, a.until || '')));
  $('email').value = (p.contacts && p.contacts.email) || '';
  $('phone').value = (p.contacts && p.contacts.phone) || '';
}

async function onSave(ev) {
  ev.preventDefault();
  setMsg('settings-msg', '');
  const chosen = document.querySelector('input[name=policy]:checked');
  const channels = [...document.querySelectorAll('input[name=channel]:checked')].map((c) => c.value);
  const allowed = [];
  for (const tr of $('allowed').querySelectorAll('tr')) {
    const [cc, date] = tr.querySelectorAll('input');
    const country = cc.value.trim().toUpperCase();
    if (!country) continue;
    if (!/^[A-Z]{2}$/.test(country)) {
      setMsg('settings-msg', `${country}: ${t('bad_country')}`, 'error');
      cc.focus();
      return;
    }
    // The end date is inclusive: allowed until the end of that day (UTC).
    allowed.push({ country, until: date.value ? `${date.value}T23:59:59Z` : null });
  }
  const policy = { action: chosen ? chosen.value : 'none', channels, allowed_countries: allowed };
  const r = await guarded(() => api.putPolicy(state.account, policy));
  if (!r) return;
  if (r.status !== 200) {
    if (!handleAuthFailure(r)) setMsg('settings-msg', settingsError(r), 'error');
    return;
  }
  const email = $('email').value.trim();
  const phone = $('phone').value.trim();
  const old = r.body.contacts || {};
  let final = r.body;
  let pending = [];
  if (email !== (old.email || '') || phone !== (old.phone || '')) {
    // A new contact takes effect only once confirmed with the code sent to it (202).
    const c = await guarded(() => api.putContacts(state.account,
      { email: email || null, phone: phone || null }));
    if (!c) return;
    if (c.status !== 200 && c.status !== 202) {
      if (!handleAuthFailure(c)) setMsg('settings-msg', settingsError(c), 'error');
      return;
    }
    if (c.status === 202) {
      pending = c.body.pending || [];
      final = { ...r.body, contacts: c.body.contacts };
    } else {
      final = c.body;
    }
  }
  state.policy = final;
  state.pending = pending;
  renderSettings();
  renderPending(email, phone);
  setMsg('settings-msg', t(pending.length ? 'saved_pending' : 'saved'), 'ok');
  await loadStatus();
}

function settingsError(r) {
  const err = r.body && r.body.error;
  if (r.status === 423 && err === 'locked') return t('err_locked_settings');
  if (r.status === 422 && err === 'channel_unverified') {
    return t('err_channel_unverified', { missing: (r.body.missing || []).join(', ') });
  }
  return apiError(r);
}

// The confirmation form, for the first contact still waiting for its code.
function renderPending(email, phone) {
  const next = (state.pending || [])[0];
  $('confirm-form').hidden = !next;
  if (!next) return;
  $('confirm-to').textContent = next === 'email' ? email : phone;
  $('confirm-code').value = '';
  setMsg('confirm-msg', '');
}

async function onConfirm(ev) {
  ev.preventDefault();
  const channel = (state.pending || [])[0];
  const code = $('confirm-code').value.trim();
  if (!channel) return;
  if (!code) {
    setMsg('confirm-msg', t('err_code_required'), 'error');
    return;
  }
  const r = await guarded(() => api.confirmContact(state.account, channel, code));
  if (!r) return;
  const err = r.body && r.body.error;
  if (r.status === 200) {
    state.pending = state.pending.slice(1);
    state.policy = r.body;
    renderSettings();
    renderPending(r.body.contacts.email || '', r.body.contacts.phone || '');
    setMsg('settings-msg', t('confirmed'), 'ok');
    return;
  }
  if (r.status === 403 && err === 'wrong_code') {
    setMsg('confirm-msg', t('err_wrong_code', { n: r.body.attempts_left }), 'error');
  } else if (r.status === 410) {
    setMsg('confirm-msg', t('err_expired'), 'error');
  } else if (r.status === 409 || r.status === 423) {
    setMsg('confirm-msg', settingsError(r), 'error');
  } else if (!handleAuthFailure(r)) {
    setMsg('confirm-msg', apiError(r), 'error');
  }
}

// ---- "was it you?" (the link of an alert: #answer=<token>) ----

const answer = { token: null, q: null, done: false };
const ALLOW_DAYS = [0, 1, 3, 7, 14, 30];

function answerToken() {
  const m = window.location.hash.match(/^#answer=([0-9a-f]{64})$/);
  return m ? m[1] : null;
}

function answerGone(r) {
  const code = r.body && r.body.error;
  if (r.status === 410) return t(code === 'link_expired' ? 'err_answer_expired' : 'err_answer_gone');
  if (r.status === 404) return t('err_answer_unknown');
  if (r.status === 423) return t('err_answer_locked');
  return apiError(r);
}

function renderAnswer() {
  const q = answer.q;
  if (!q) return;
  const dl = $('answer-login');
  dl.replaceChildren();
  const fact = (k, v) => dl.append(el('dt', { text: t(k) }), el('dd', { text: v }));
  fact('answer_when', q.login.local_time || formatTime(q.login.ts));
  fact('answer_where', `${countryName(q.login.country)} (${maskIp(q.login.ip)})`);
  if (q.login.server) fact('answer_server', q.login.server);
  const max = q.choices.allow_days_max;
  $('allow-label').textContent = t('answer_allow', { country: countryName(q.login.country) });
  const sel = $('allow-days');
  const chosen = sel.value;
  sel.replaceChildren(...ALLOW_DAYS.filter((d) => d <= max).map((d) =>
    el('option', { value: String(d), text: d ? t('allow_days', { n: d }) : t('allow_none') })));
  if (chosen) sel.value = chosen;
  $('allow-label').hidden = sel.hidden = max === 0 || q.locked;
}

async function showAnswer(tok) {
  answer.token = tok;
  $('answer').hidden = false;
  $('signin').hidden = true;
  $('app').hidden = true;
  const r = await api.question(tok);
  if (r.status !== 200) {
    $('answer-forms').hidden = true;
    setMsg('answer-msg', answerGone(r), 'error');
    return;
  }
  answer.q = r.body;
  if (!sessionStorage.getItem('player.lang.chosen')) setLang(r.body.lang);
  renderLang();
}

async function onAnswer(body, button) {
  button.disabled = true;
  const r = await api.answer(answer.token, body);
  button.disabled = false;
  if (r.status !== 200) {
    if (r.status === 410 || r.status === 404) $('answer-forms').hidden = true;
    setMsg('answer-msg', answerGone(r), 'error');
    return;
  }
  $('answer-forms').hidden = true;
  let text;
  if (r.body.answer === 'not_me') text = t(r.body.secured === 'lock' ? 'answered_locked' : 'answered_ended');
  else if (r.body.allowed_days > 0) {
    text = t('answered_me_allowed', { country: countryName(r.body.country), n: r.body.allowed_days });
  } else text = t('answered_me');
  setMsg('answer-msg', text, 'ok');
}

// ---- language ----

function renderLang() {
  applyStatic();
  renderAnswer();
  $('lang').textContent = t('lang_other');
  $('lang').setAttribute('aria-label', currentLang() === 'en' ? 'Language: 한국어' : '언어: English');
  if (state.account && state.policy) {
    const chosen = document.querySelector('input[name=policy]:checked');
    renderPolicies(chosen ? chosen.value : state.policy.action);
    for (const tr of $('allowed').querySelectorAll('tr')) {
      tr.querySelector('input.cc').dispatchEvent(new Event('input'));
      tr.querySelector('input.cc').setAttribute('aria-label', t('col_country_code'));
      tr.querySelector('input[type=date]').setAttribute('aria-label', t('col_until'));
      tr.querySelector('button').textContent = t('remove');
    }
    renderHistory();
    renderEvents();
    renderStatus();
  }
}

// ---- start ----

async function main() {
  renderLang();
  $('lang').addEventListener('click', () => {
    setLang(currentLang() === 'en' ? 'ko' : 'en');
    sessionStorage.setItem('player.lang.chosen', '1');
    renderLang();
  });
  $('answer-me').addEventListener('submit', (e) => {
    e.preventDefault();
    onAnswer({ answer: 'me', allow_days: Number($('allow-days').value || 0) }, $('answer-me-btn'));
  });
  $('answer-not-me').addEventListener('submit', (e) => {
    e.preventDefault();
    const secure = document.querySelector('input[name=secure]:checked').value;
    onAnswer({ answer: 'not_me', secure }, $('answer-not-me-btn'));
  });
  $('signin-form').addEventListener('submit', onSignin);
  $('signout').addEventListener('click', () => signOut(''));
  $('unlock-form').addEventListener('submit', onUnlock);
  $('settings-form').addEventListener('submit', onSave);
  $('confirm-form').addEventListener('submit', onConfirm);
  $('add-country').addEventListener('click', () => {
    const tr = allowedRow();
    $('allowed').append(tr);
    tr.querySelector('input').focus();
  });
  $('older').addEventListener('click', async () => {
    if (!state.next) return;
    state.cursors.push(state.next);
    await loadHistory();
  });
  $('newer').addEventListener('click', async () => {
    if (state.cursors.length <= 1) return;
    state.cursors.pop();
    await loadHistory();
  });
  try {
    await loadConfig();
  } catch (e) {
    showAlert(t('err_network'));
    return;
  }
  const tok = answerToken();
  if (tok) await showAnswer(tok);
  else if (session().token) await enter();
  else showSignin();
}

main();
