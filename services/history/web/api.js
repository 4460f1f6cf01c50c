// The player page's calls to the history and guard APIs (the shared part is common/api.js).
import { createSession, loadServiceUrls, tokenClaims, call } from './common/api.js';

export { tokenClaims };

const store = createSession('player', ['token', 'account']);
let urls = { history_url: '', guard_url: '' };

// Reads config.json (served by history: where guard is).
export async function loadConfig() {
  urls = await loadServiceUrls();
}

export const session = () => store.get();
export const saveSession = (token, account) => store.save({ token, account });
export const clearSession = () => store.clear();

const history = (method, path, body) => call(store.get().token, urls.history_url, method, path, body);
const guard = (method, path, body) => call(store.get().token, urls.guard_url, method, path, body);
const enc = encodeURIComponent;

export const api = {
  logins: (id, limit, cursor) =>
    history('GET', `/v1/accounts/${enc(id)}/logins?limit=${limit}${cursor ? `&cursor=${enc(cursor)}` : ''}`),
  events: (id, limit) => history('GET', `/v1/accounts/${enc(id)}/events?limit=${limit}`),
  status: (id) => guard('GET', `/v1/accounts/${enc(id)}/status`),
  policy: (id) => guard('GET', `/v1/accounts/${enc(id)}/policy`),
  putPolicy: (id, p) => guard('PUT', `/v1/accounts/${enc(id)}/policy`, p),
  putContacts: (id, c) => guard('PUT', `/v1/accounts/${enc(id)}/contacts`, c),
  confirmContact: (id, channel, code) =>
    guard('POST', `/v1/accounts/${enc(id)}/contacts/confirm`, { channel, code }),
  unlock: (id, code) => guard('POST', `/v1/accounts/${enc(id)}/unlock`, { code }),
  // "was it you?": the link's token is the credential (no player token needed)
  question: (tok) => call(null, urls.guard_url, 'GET', `/v1/answers/${enc(tok)}`),
  answer: (tok, body) => call(null, urls.guard_url, 'POST', `/v1/answers/${enc(tok)}`, body),
};
