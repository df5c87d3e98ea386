// The only way the console talks to eventd: the public JSON API, with the
// key the user signed in with. The key lives in this tab's sessionStorage
// (never in a URL or a cookie) and is sent as a Bearer token.

const KEY = 'eventd.key';
const ROLE = 'eventd.role';

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  /** 'account' or 'operator'. */
  get role() { return sessionStorage.getItem(ROLE); },
  start(key, role) {
    sessionStorage.setItem(KEY, key);
    sessionStorage.setItem(ROLE, role);
  },
  clear() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ROLE);
  },
};

/** An answer other than 2xx: the API's error code, message and details. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** Called when a signed-in request answers 401 (key revoked meanwhile). */
let onUnauthorized = () => {};
export function whenUnauthorized(f) { onUnauthorized = f; }

/**
 * Calls the API. `body` (optional) is sent as JSON. Resolves to the parsed
 * answer (null when empty), rejects with an ApiError.
 */
export async function api(method, path, body, key = session.key) {
  const headers = { Accept: 'application/json' };
  if (key) headers.Authorization = 'Bearer ' + key;
  const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', 'eventd cannot be reached (' + e.message + ')');
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!res.ok) {
    const err = (data && data.error) || {};
    const e = new ApiError(res.status, err.code || 'http_' + res.status, err.message || res.statusText, err.details);
    if (res.status === 401 && key && key === session.key) onUnauthorized(e);
    throw e;
  }
  return data;
}

/** Builds a query string from the defined, non-empty values of `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? '?' + s : '';
}
