// Calls to the history and guard APIs. The token lives in sessionStorage (this tab only) and goes
// out as Authorization: Bearer, never in a URL.
const TOKEN_KEY = 'support.token';

let config = { history_url: '', guard_url: '' };

// Reads config.json (served by guard: where history is).
export async function loadConfig() {
  const r = await fetch('config.json', { cache: 'no-store' });
  if (!r.ok) throw new Error(`config.json: HTTP ${r.status}`);
  config = await r.json();
  config.history_url = config.history_url || window.location.origin;
  config.guard_url = config.guard_url || window.location.origin;
}

export function session() {
  return { token: sessionStorage.getItem(TOKEN_KEY) };
}

export function saveSession(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearSession() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// The claims of a JWT (not verified here: the services verify it), or null.
export function tokenClaims(token) {
  const parts = String(token || '').split('.');
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(Array.from(atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, '=')),
      (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
    const claims = JSON.parse(json);
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

// One request; resolves {status, body} (body: parsed JSON or null). Rejects only when the service
// cannot be reached.
async function call(base, method, path, body) {
  const headers = {};
  const { token } = session();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(base + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer',
  });
  let data = null;
  try { data = await r.json(); } catch { data = null; }
  return { status: r.status, body: data };
}

const enc = encodeURIComponent;

export const api = {
  find: (prefix, locked) => call(config.guard_url, 'GET',
    `/v1/support/accounts?limit=20${prefix ? `&prefix=${enc(prefix)}` : ''}${locked ? '&locked=true' : ''}`),
  account: (id) => call(config.guard_url, 'GET', `/v1/support/accounts/${enc(id)}`),
  locks: (id) => call(config.guard_url, 'GET', `/v1/support/accounts/${enc(id)}/locks?limit=50`),
  audit: (id) => call(config.guard_url, 'GET', `/v1/support/audit?account_id=${enc(id)}`),
  logins: (id) => call(config.history_url, 'GET', `/v1/accounts/${enc(id)}/logins?limit=20`),
  unlock: (id, reason) => call(config.guard_url, 'POST', `/v1/support/accounts/${enc(id)}/unlock`,
    { reason }),
};
