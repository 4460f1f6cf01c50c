// Calls to the dispatcher's admin API (docs/bus.md, "Admin API"). The admin token lives in
// sessionStorage (this tab only) and goes out as Authorization: Bearer, never in a URL.
const TOKEN_KEY = 'bus.admin.token';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function saveToken(t) {
  sessionStorage.setItem(TOKEN_KEY, t);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// One request; resolves {status, body} (body: parsed JSON or null). Rejects only when the
// dispatcher cannot be reached.
async function call(method, path) {
  const headers = {};
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const r = await fetch(path, {
    method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer',
  });
  let body = null;
  try { body = await r.json(); } catch { body = null; }
  return { status: r.status, body };
}

const enc = encodeURIComponent;

export const api = {
  topology: () => call('GET', '/v1/topology'),
  routes: () => call('GET', '/v1/routes'),
  deadLetters: (route, limit = 50) =>
    call('GET', `/v1/routes/${enc(route)}/dead-letters?limit=${limit}`),
  replay: (route) => call('POST', `/v1/routes/${enc(route)}/dead-letters/replay`),
};
