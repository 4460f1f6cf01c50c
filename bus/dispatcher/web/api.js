// The dashboard's calls to the dispatcher's admin API (docs/bus.md, "Admin API"); the shared
// part is common/api.js.
import { createSession, call } from './common/api.js';

const store = createSession('bus.admin', ['token']);

export const token = () => store.get().token;
export const saveToken = (t) => store.save({ token: t });
export const clearToken = () => store.clear();

const admin = (method, path) => call(token(), '', method, path);
const enc = encodeURIComponent;

export const api = {
  topology: () => admin('GET', '/v1/topology'),
  routes: () => admin('GET', '/v1/routes'),
  deadLetters: (route, limit = 50) => admin('GET', `/v1/routes/${enc(route)}/dead-letters?limit=${limit}`),
  replay: (route) => admin('POST', `/v1/routes/${enc(route)}/dead-letters/replay`),
};
