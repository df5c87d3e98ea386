// Operator pages: accounts (list, create) and one account's API keys
// (list, create with the key shown once, revoke).

import { api, session } from './api.js';
import { h, fill, time, toast, errorBox, shownOnce, confirmButton, table, input } from './ui.js';

/** "Use this key": the tab signs in as that account (the operator signs in again later). */
function useKey(key) {
  return h('button', { type: 'button', class: 'secondary', onclick: () => {
    session.start(key, 'account');
    location.hash = '#/triggers';
  } }, 'Sign in with this key');
}

export async function accountsPage(main) {
  const result = h('div', { id: 'account-result', 'aria-live': 'polite' });
  const list = h('div', { id: 'accounts' });
  const form = h('form', { class: 'inline', novalidate: true, 'aria-label': 'New account' },
    input('New account name', 'name', '', { autocomplete: 'off', required: true }),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create account')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    result.replaceChildren();
    const name = new FormData(form).get('name').trim();
    try {
      const a = await api('POST', '/v1/accounts', { name });
      form.reset();
      result.append(shownOnce('API key of ' + a.name, a.api_key, useKey(a.api_key)));
      document.dispatchEvent(new CustomEvent('accounts-changed'));
      await load();
    } catch (e) { result.append(errorBox(e)); }
  });
  fill(main, h('h1', {}, 'Accounts'),
    h('p', { class: 'lead' }, 'Choose an account to manage its API keys.'), form, result, list);
  async function load() {
    const { accounts } = await api('GET', '/v1/accounts');
    fill(list, table('Accounts', ['Name', 'Id', 'Created', 'Keys'], accounts.map((a) => [
      a.name, String(a.id), time(a.created_at), h('a', { href: '#/accounts/' + a.id }, 'Keys of ' + a.name)]),
    { id: 'accounts-table' }));
  }
  await load();
}

export async function keysPage(main, accountId) {
  const { accounts } = await api('GET', '/v1/accounts');
  const account = accounts.find((a) => String(a.id) === accountId);
  if (!account) {
    fill(main, h('h1', {}, 'Unknown account'), errorBox({ message: 'No account has the id ' + accountId + '.' }));
    return;
  }
  const result = h('div', { id: 'key-result', 'aria-live': 'polite' });
  const list = h('div', { id: 'keys' });
  const base = '/v1/accounts/' + account.id + '/keys';
  const create = h('button', { type: 'button', id: 'create-key', onclick: async () => {
    result.replaceChildren();
    try {
      const k = await api('POST', base);
      result.append(shownOnce('New API key ' + k.id, k.key, useKey(k.key)));
      await load();
    } catch (e) { result.append(errorBox(e)); }
  } }, 'Create a key');
  fill(main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/accounts' }, '← All accounts')),
    h('h1', {}, 'Keys of ' + account.name),
    h('p', { class: 'lead' }, 'A key is shown once, when created. Revoking one refuses it at once.'),
    h('div', { class: 'actions' }, create), result, list);
  async function load() {
    const { keys } = await api('GET', base);
    fill(list, table('API keys', ['Key', 'Created', 'State', 'Action'], keys.map((k) => [
      h('code', {}, k.prefix + '…'), time(k.created_at),
      k.revoked_at ? 'revoked ' + time(k.revoked_at) : h('span', { class: 'badge ok' }, 'active'),
      k.revoked_at ? '' : confirmButton('Revoke', 'Confirm: revoke ' + k.prefix + '…', async () => {
        try {
          await api('DELETE', base + '/' + encodeURIComponent(k.id));
          toast('Key ' + k.prefix + '… revoked.');
          await load();
        } catch (e) { result.replaceChildren(errorBox(e)); }
      }),
    ]), { id: 'keys-table' }));
  }
  await load();
}
