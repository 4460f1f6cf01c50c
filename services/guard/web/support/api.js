// The support console's calls to the guard and history APIs (the shared part is common/api.js).
import { createSession, loadServiceUrls, tokenClaims, call } from './common/api.js';

export { tokenClaims };

const store = createSession('support', ['token']);
let urls = { guard_url: '', history_url: '' };

// Reads config.json (served by guard: where history is).
export async function loadConfig() {
  urls = await loadServiceUrls();
}

export const session = () => store.get();
export const saveSession = (token) => store.save({ token });
export const clearSession = () => store.clear();

const guard = (method, path, body) => call(store.get().token, urls.guard_url, method, path, body);
const history = (method, path, body) => call(store.get().token, urls.history_url, method, path, body);
const enc = encodeURIComponent;

export const api = {
  find: (prefix, locked) =>
    guard('GET', `/v1/support/accounts?limit=20${prefix ? `&prefix=${enc(prefix)}` : ''}${locked ? '&locked=true' : ''}`),
  account: (id) => guard('GET', `/v1/support/accounts/${enc(id)}`),
  locks: (id) => guard('GET', `/v1/support/accounts/${enc(id)}/locks?limit=50`),
  audit: (id) => guard('GET', `/v1/support/audit?account_id=${enc(id)}`),
  logins: (id) => history('GET', `/v1/accounts/${enc(id)}/logins?limit=20`),
  unlock: (id, reason, ticket) =>
    guard('POST', `/v1/support/accounts/${enc(id)}/unlock`, { reason, ticket: ticket || null }),
  lock: (id, reason, ticket) =>
    guard('POST', `/v1/support/accounts/${enc(id)}/lock`, { reason, ticket: ticket || null }),
  reset: (id, what, reason, ticket) =>
    guard('POST', `/v1/support/accounts/${enc(id)}/reset`, { what, reason, ticket: ticket || null }),
};
