// What the pages share to call the product's APIs (lib/web, served under <page>/common/). The
// bearer token lives in sessionStorage (this tab only) and goes out as Authorization: Bearer,
// never in a URL.

// A tab-scoped store of the named values (e.g. token, account) under prefix.<name>.
export function createSession(prefix, names) {
  const key = (n) => `${prefix}.${n}`;
  return {
    get() {
      const s = {};
      for (const n of names) s[n] = sessionStorage.getItem(key(n));
      return s;
    },
    save(values) {
      for (const n of names) if (values[n] != null) sessionStorage.setItem(key(n), values[n]);
    },
    clear() {
      for (const n of names) sessionStorage.removeItem(key(n));
    },
  };
}

// Reads the page's config.json ({"<service>_url": "..."}, "" = this page's origin) and fills
// the empty URLs with the page's origin.
export async function loadServiceUrls() {
  const r = await fetch('config.json', { cache: 'no-store' });
  if (!r.ok) throw new Error(`config.json: HTTP ${r.status}`);
  const urls = await r.json();
  for (const k of Object.keys(urls)) urls[k] = urls[k] || window.location.origin;
  return urls;
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

// One request with the token; resolves {status, body} (body: parsed JSON or null). Rejects only
// when the service cannot be reached.
export async function call(token, base, method, path, body) {
  const headers = {};
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
