// Sign in with an account API key or the operator token. Which one it is
// is asked of the API: an account endpoint answers 200 for a key and 403
// (account_key_required) for the operator token.

import { api, session, ApiError } from './api.js';
import { h, fill } from './ui.js';

async function roleOf(key) {
  try {
    await api('GET', '/v1/triggers', undefined, key);
    return 'account';
  } catch (e) {
    if (!(e instanceof ApiError) || e.code !== 'account_key_required') throw e;
  }
  await api('GET', '/v1/accounts', undefined, key);
  return 'operator';
}

export function signIn(main, message, done) {
  const error = h('div', { id: 'signin-error', class: 'error', role: 'alert', hidden: !message }, message || '');
  const key = h('input', {
    id: 'key', name: 'key', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true,
    'aria-describedby': 'key-hint signin-error',
  });
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'signin', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'key' }, 'API key or operator token'),
      key,
      h('p', { class: 'hint', id: 'key-hint' },
        'Kept in this browser tab only (sessionStorage) until you sign out or close the tab.')),
    button, error);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const value = key.value.trim();
    if (!value) {
      error.hidden = false;
      error.textContent = 'Enter an account API key (evk_…) or the operator token.';
      key.focus();
      return;
    }
    button.disabled = true;
    try {
      const role = await roleOf(value);
      session.start(value, role);
      done(role);
    } catch (e) {
      error.hidden = false;
      error.textContent = e.status === 401
        ? 'This key is not valid: it is wrong or was revoked.'
        : 'Cannot sign in: ' + e.message;
      key.setAttribute('aria-invalid', 'true');
      key.focus();
    } finally {
      button.disabled = false;
    }
  });
  fill(main,
    h('h1', {}, 'Sign in'),
    h('p', {}, 'The console does what the eventd JSON API lets this key do, and nothing else.'),
    form);
  document.title = 'Sign in · eventd console';
  key.focus();
}
