// The support console: sign in with a staff token, find an account, see its state, recent logins
// (what guard did and why), lock history and settings changes; unlock it, lock it now, reset its
// contacts or policy, each with a reason and a ticket reference. Served by guard (GET /support/), calls
// guard and history (history's address comes from config.json). DOM calls and textContent only.
import { t, applyStatic, setLang, currentLang, countryName, formatTime } from './i18n.js';
import { api, loadConfig, session, saveSession, clearSession, tokenClaims } from './api.js';

const $ = (id) => document.getElementById(id);
const state = { staff: null, results: null, query: '', account: null, detail: null, logins: [],
  locks: [], audit: [] };

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

function showAlert(text, kind = 'error') {
  const a = $('alert');
  a.textContent = text;
  a.className = kind === 'info' ? 'alert info' : 'alert';
  a.hidden = !text;
}

function setMsg(id, text, kind) {
  $(id).textContent = text || '';
  $(id).className = `msg ${kind || ''}`;
}

function apiError(r) {
  if (r.status === 503) return t('err_unavailable');
  return t('err_generic', { msg: (r.body && r.body.message) || `HTTP ${r.status}` });
}

// Returns the response, or null after showing why (network, token refused).
async function request(fn) {
  let r;
  try {
    r = await fn();
  } catch {
    showAlert(t('err_network'));
    return null;
  }
  if (r.status === 401) {
    signOut(t('err_token'));
    return null;
  }
  if (r.status === 403 && r.body && r.body.error === 'forbidden') {
    signOut(t('err_forbidden'));
    return null;
  }
  return r;
}

// ---- sign in / out ----

function showSignin() {
  $('signin').hidden = false;
  $('app').hidden = true;
  $('signout').hidden = true;
  $('staff-name').textContent = '';
  $('token').value = '';
  $('token').focus();
}

function signOut(message) {
  clearSession();
  Object.assign(state, { staff: null, account: null, detail: null, results: null });
  $('account').hidden = true;
  $('results').replaceChildren();
  setMsg('find-msg', '');
  showSignin();
  showAlert(message || '');
}

function enter() {
  const claims = tokenClaims(session().token);
  state.staff = claims && claims.sub;
  $('staff-name').textContent = t('signed_in_as', { name: state.staff || '?' });
  $('signin').hidden = true;
  $('app').hidden = false;
  $('signout').hidden = false;
  $('query').focus();
}

function onSignin(ev) {
  ev.preventDefault();
  const token = $('token').value.trim();
  const claims = tokenClaims(token);
  if (!claims || claims.role !== 'staff') {
    showAlert(t('err_not_staff'));
    return;
  }
  saveSession(token);
  showAlert('');
  enter();
}

// ---- find ----

async function find(prefix, lockedOnly) {
  setMsg('find-msg', '');
  const r = await request(() => api.find(prefix, lockedOnly));
  if (!r) return;
  if (r.status !== 200) {
    setMsg('find-msg', apiError(r), 'error');
    return;
  }
  state.results = r.body.accounts || [];
  state.query = lockedOnly ? '' : prefix;
  renderResults();
}

function renderResults() {
  const list = $('results');
  list.replaceChildren();
  if (!state.results) return;
  const exact = state.query && !state.results.some((a) => a.account_id === state.query);
  setMsg('find-msg', state.results.length ? t('found', { n: state.results.length })
    : (state.query ? t('found_none') : t('none_yet')));
  const item = (id, label, badge) => {
    const b = el('button', { type: 'button', class: 'secondary' }, el('span', { class: 'mono', text: label }));
    if (badge) b.append(badge);
    b.addEventListener('click', () => openAccount(id));
    return el('li', {}, b);
  };
  // The state (locked or not) is the one colored badge; the policy is a neutral label, so an
  // unlocked account whose policy is "lock" shows no red.
  for (const a of state.results) {
    list.append(item(a.account_id, a.account_id, el('span', { class: 'badges' },
      el('span', { class: a.locked ? 'badge locked' : 'badge ok',
        text: a.locked ? t('state_locked') : t('state_ok') }),
      el('span', { class: 'badge policy', text: t('policy_label', { policy: t(`policy_${a.policy}`) }) }))));
  }
  // An account that never changed its settings has no row in guard but may have logins.
  if (exact) list.append(item(state.query, t('open_exact', { id: state.query })));
}

async function onFind(ev) {
  ev.preventDefault();
  const q = $('query').value.trim();
  if (!q) {
    setMsg('find-msg', t('err_query'), 'error');
    return;
  }
  await find(q, false);
}

// ---- one account ----

async function openAccount(id) {
  state.account = id;
  showAlert('');
  setMsg('unlock-msg', '');
  setMsg('action-msg', '');
  $('reason').value = '';
  $('action-reason').value = '';
  $('action-ticket').value = '';
  await loadAccount();
}

async function loadAccount() {
  const id = state.account;
  const [d, l, k, a] = await Promise.all([
    request(() => api.account(id)), request(() => api.logins(id)),
    request(() => api.locks(id)), request(() => api.audit(id))]);
  if (!d || !l || !k || !a) return;
  for (const r of [d, l, k, a]) {
    if (r.status !== 200) {
      showAlert(apiError(r));
      return;
    }
  }
  state.detail = d.body;
  // the list shows what the account is now (after an unlock, a lock or a reset)
  for (const a of state.results || []) {
    if (a.account_id === id && d.body.known) {
      a.locked = d.body.locked;
      a.policy = d.body.policy;
    }
  }
  renderResults();
  state.logins = l.body.logins || [];
  state.locks = k.body.events || [];
  state.audit = a.body.entries || [];
  renderAccount();
}

function fact(label, ...value) {
  return [el('dt', { text: label }), el('dd', {}, ...value)];
}

function renderAccount() {
  const d = state.detail;
  if (!d) return;
  $('account').hidden = false;
  $('acct-id').textContent = d.account_id;
  const st = $('acct-state');
  st.textContent = d.locked ? t('state_locked') : t('state_ok');
  st.className = d.locked ? 'badge locked' : 'badge ok';
  $('unlock').hidden = !d.locked;

  const allowed = (d.allowed_countries || []).map((c) => `${countryName(c.country)} (${c.country}) — ${
    c.until ? t('until', { date: formatTime(c.until) }) : t('forever')}`).join('; ') || '—';
  let code = t('code_none');
  if (d.pending_code) {
    const pc = d.pending_code;
    code = pc.expired ? t('code_expired', { date: formatTime(pc.expires_at) })
      : t('code_pending', { date: formatTime(pc.expires_at), n: pc.attempts, max: pc.attempts_max });
  }
  const contacts = [d.contacts && d.contacts.email, d.contacts && d.contacts.phone].filter(Boolean)
    .join(', ') || '—';
  $('facts').replaceChildren(
    ...fact(t('f_policy'), el('span', { class: 'badge policy', text: t(`policy_${d.policy}`) }),
      d.blocked_abroad ? ` ${t('blocked_abroad')}` : ''),
    ...fact(t('f_channels'), channelNames(d.channels || []) || '—'),
    ...fact(t('f_contacts'), contacts),
    ...fact(t('f_allowed'), allowed),
    ...fact(t('f_home'), (d.home_countries || []).map((c) => `${countryName(c)} (${c})`).join(', ')),
    ...fact(t('f_code'), code),
    ...fact(t('f_updated'), d.known ? formatTime(d.updated_at) : t('known_no')));

  $('logins').replaceChildren(...state.logins.map((l) => el('tr', {},
    el('td', { text: formatTime(l.ts) }),
    el('td', { text: `${countryName(l.country)} (${l.country || '?'})` }),
    el('td', { class: 'mono', text: l.ip || '' }),
    el('td', { text: l.server || '—' }),
    el('td', {}, loginAction(l)))));
  $('logins-empty').hidden = state.logins.length > 0;

  $('locks').replaceChildren(...state.locks.map((e) => {
    const by = e.actor === 'staff' ? t('by_staff', { name: e.staff || '?' }) : t(`by_${e.actor}`);
    const details = e.event === 'locked' && e.country
      ? t('login_from', { country: `${countryName(e.country)} (${e.country})`, ip: e.ip || '?' })
      : (e.reason || '');
    return el('tr', {},
      el('td', { text: formatTime(e.ts) }),
      el('td', {}, el('span', { class: e.event === 'locked' ? 'badge locked' : 'badge ok',
        text: t(`ev_${e.event}`) })),
      el('td', { text: by }),
      el('td', { text: details }));
  }));
  $('locks-empty').hidden = state.locks.length > 0;

  $('audit').replaceChildren(...state.audit.map((e) => el('tr', {},
    el('td', { text: formatTime(e.ts) }),
    // staff actions, and the player's own settings changes (contacts, policy)
    el('td', { text: e.actor === 'player' ? t('by_player') : e.staff }),
    el('td', { text: auditAction(e.action) }),
    el('td', { text: e.actor === 'player' ? playerReason(e.reason) : e.reason }),
    el('td', { class: 'mono', text: e.ticket || '—' }))));
  $('audit-empty').hidden = state.audit.length > 0;
}

// What guard did for a login and why; a lock that was lifted since says so (not "locked" forever).
function loginAction(l) {
  const lifted = l.action === 'lock' && l.unlocked_at;
  const badge = el('span', { class: lifted ? 'badge policy' : `badge ${l.action || 'none'}`,
    text: lifted ? t('action_lock_lifted', { date: formatTime(l.unlocked_at) })
      : t(l.action ? `action_${l.action}` : 'action_null') });
  const reasons = (l.reasons || []).map(reasonName).join(', ');
  return reasons ? el('span', {}, badge, el('span', { class: 'reasons', text: reasons })) : badge;
}

// A reason code in the reader's language (a code the page does not know: as it is).
function reasonName(code) {
  const key = `reason_${code}`;
  const text = t(key);
  return text === key ? code : text;
}

function channelNames(list) {
  return list.map((c) => t(`ch_${c}`)).join(', ');
}

// An audit action code in the reader's language (a code the page does not know: as it is).
function auditAction(code) {
  const key = `audit_${code}`;
  const text = t(key);
  return text === key ? code : text;
}

// The reasons guard writes for a player's own settings changes (services/guard: "policy lock,
// channels [\"ingame\"], allowed JP until ..." and the contact changes), in the reader's
// language; anything else (a staff member's words) as it was written.
function playerReason(reason) {
  const r = reason || '';
  let m = /^policy (\w+), channels (\[.*\]), allowed (.*)$/.exec(r);
  if (m) {
    let channels = [];
    try { channels = JSON.parse(m[2]); } catch { return r; }
    const allowed = m[3] === 'none' ? t('r_none')
      : m[3].split(' ').filter(Boolean).map((w) => (/^[A-Z]{2}$/.test(w) ? countryName(w) : w))
        .join(' ');
    return t('r_policy', { policy: t(`policy_${m[1]}`), channels: channelNames(channels) || t('r_none'),
      allowed });
  }
  m = /^(email|phone) removed$/.exec(r);
  if (m) return t('r_contact_removed', { channel: t(`c_${m[1]}`) });
  m = /^(email|phone) change to (.+) requested \(code sent to it\)$/.exec(r);
  if (m) return t('r_contact_requested', { channel: t(`c_${m[1]}`), value: m[2] });
  m = /^(email|phone) changed to (.+) \(confirmed with its code\)$/.exec(r);
  if (m) return t('r_contact_confirmed', { channel: t(`c_${m[1]}`), value: m[2] });
  return r;
}

async function onUnlock(ev) {
  ev.preventDefault();
  const reason = $('reason').value.trim();
  if (!reason) {
    setMsg('unlock-msg', t('err_reason'), 'error');
    $('reason').focus();
    return;
  }
  const r = await request(() => api.unlock(state.account, reason, $('unlock-ticket').value.trim()));
  if (!r) return;
  if (r.status !== 200) {
    setMsg('unlock-msg', noteError(r), 'error');
    return;
  }
  $('reason').value = '';
  $('unlock-ticket').value = '';
  for (const a of state.results || []) {
    if (a.account_id === state.account) a.locked = false;
  }
  renderResults();
  await loadAccount();
  showAlert(t('unlocked'), 'info');
}

function noteError(r) {
  const code = r.body && r.body.error;
  if (code === 'reason_required') return t('err_reason');
  if (code === 'bad_ticket') return t('err_ticket');
  return apiError(r);
}

// Lock now, reset contacts, reset the policy: each with a reason and a ticket reference.
async function onAction(ev) {
  ev.preventDefault();
  const what = $('action-what').value;
  const reason = $('action-reason').value.trim();
  const ticket = $('action-ticket').value.trim();
  if (!reason) {
    setMsg('action-msg', t('err_reason'), 'error');
    $('action-reason').focus();
    return;
  }
  const r = await request(() => (what === 'lock' ? api.lock(state.account, reason, ticket)
    : api.reset(state.account, what, reason, ticket)));
  if (!r) return;
  if (r.status !== 200) {
    setMsg('action-msg', r.status === 404 ? t('err_no_settings') : noteError(r), 'error');
    return;
  }
  $('action-reason').value = '';
  $('action-ticket').value = '';
  setMsg('action-msg', t(`done_${what}`), 'ok');
  for (const a of state.results || []) {
    if (a.account_id === state.account && what === 'lock') a.locked = true;
  }
  renderResults();
  await loadAccount();
}

// ---- language ----

function renderLang() {
  applyStatic();
  $('lang').textContent = t('lang_other');
  $('lang').setAttribute('aria-label', currentLang() === 'en' ? 'Language: 한국어' : '언어: English');
  if (state.staff) $('staff-name').textContent = t('signed_in_as', { name: state.staff });
  renderResults();
  renderAccount();
}

async function main() {
  renderLang();
  $('lang').addEventListener('click', () => {
    setLang(currentLang() === 'en' ? 'ko' : 'en');
    renderLang();
  });
  $('signin-form').addEventListener('submit', onSignin);
  $('signout').addEventListener('click', () => signOut(''));
  $('find-form').addEventListener('submit', onFind);
  $('list-locked').addEventListener('click', () => find('', true));
  $('unlock-form').addEventListener('submit', onUnlock);
  $('action-form').addEventListener('submit', onAction);
  try {
    await loadConfig();
  } catch {
    showAlert(t('err_network'));
    return;
  }
  if (session().token) enter();
  else showSignin();
}

main();
