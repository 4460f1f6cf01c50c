// Calls to the history and guard APIs. The token lives in sessionStorage (this tab only) and goes
// out as Authorization: Bearer, never in a URL.
const TOKEN_KEY = 'player.token';
const ACCOUNT_KEY = 'player.account';

let config = { history_url: '', guard_url: '' };

// Reads config.json (served by history: where guard is).
export async function loadConfig() {
  const r = await fetch('config.json', { cache: 'no-store' });
  if (!r.ok) throw new Error(`config.json: HTTP ${r.status}`);
  config = await r.json();
  config.history_url = config.history_url || window.location.origin;
  config.guard_url = config.guard_url || window.location.origin;
}

export function session() {
  return { token: sessionStorage.getItem(TOKEN_KEY), account: sessionStorage.getItem(ACCOUNT_KEY) };
}

export function saveSession(token, account) {
  sessionStorage.setItem(TOKEN_KEY, token);
  sessionStorage.setItem(ACCOUNT_KEY, account);
}

export function clearSession() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(ACCOUNT_KEY);
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
  logins: (id, limit, cursor) => call(config.history_url, 'GET',
    `/v1/accounts/${enc(id)}/logins?limit=${limit}${cursor ? `&cursor=${enc(cursor)}` : ''}`),
  status: (id) => call(config.guard_url, 'GET', `/v1/accounts/${enc(id)}/status`),
  policy: (id) => call(config.guard_url, 'GET', `/v1/accounts/${enc(id)}/policy`),
  putPolicy: (id, p) => call(config.guard_url, 'PUT', `/v1/accounts/${enc(id)}/policy`, p),
  putContacts: (id, c) => call(config.guard_url, 'PUT', `/v1/accounts/${enc(id)}/contacts`, c),
  unlock: (id, code) => call(config.guard_url, 'POST', `/v1/accounts/${enc(id)}/unlock`, { code }),
};
