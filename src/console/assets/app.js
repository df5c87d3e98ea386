// The console's shell: hash routes, the navigation, who is signed in,
// sign out, and (for the operator) the account picker.

import { api, session, whenUnauthorized } from './api.js';
import { h, fill, errorBox } from './ui.js';
import { signIn } from './signin.js';
import { triggersPage, triggerPage } from './triggers.js';
import { queuePage } from './queue.js';
import { deliveriesPage } from './deliveries.js';
import { activityPage } from './activity.js';
import { accountsPage, keysPage } from './operator.js';

const ACCOUNT_PAGES = [
  ['#/triggers', 'Triggers'],
  ['#/queue', 'Queue'],
  ['#/deliveries', 'Delivery log'],
  ['#/activity', 'Activity'],
];
const OPERATOR_PAGES = [['#/accounts', 'Accounts']];

/** [pattern, role, render(main, ...captures)] */
const ROUTES = [
  [/^#\/triggers$/, 'account', triggersPage],
  [/^#\/triggers\/([A-Z]+)$/, 'account', triggerPage],
  [/^#\/queue$/, 'account', queuePage],
  [/^#\/deliveries$/, 'account', deliveriesPage],
  [/^#\/activity$/, 'account', activityPage],
  [/^#\/accounts$/, 'operator', accountsPage],
  [/^#\/accounts\/(\d+)$/, 'operator', keysPage],
];

function home() { return session.role === 'operator' ? '#/accounts' : '#/triggers'; }

let pendingMessage;

function signOut(message) {
  session.clear();
  pendingMessage = message;
  if (location.hash !== '#/signin') location.hash = '#/signin';
  else render();
}

whenUnauthorized(() => signOut('Your key is no longer valid (revoked?). Sign in again.'));

async function accountPicker(current) {
  const picker = h('select', { id: 'account-picker', 'aria-label': 'Account' },
    h('option', { value: '' }, 'Choose an account…'));
  picker.addEventListener('change', () => {
    if (picker.value) location.hash = '#/accounts/' + picker.value;
  });
  try {
    const { accounts } = await api('GET', '/v1/accounts');
    for (const a of accounts) {
      picker.append(h('option', { value: a.id, selected: String(a.id) === current }, a.name + ' (#' + a.id + ')'));
    }
  } catch (_) { /* the page itself shows the error */ }
  return h('div', { class: 'picker' }, h('label', { for: 'account-picker' }, 'Account'), picker);
}

async function shell(hash) {
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  if (!session.key) {
    fill(nav);
    fill(who);
    return;
  }
  const pages = session.role === 'operator' ? OPERATOR_PAGES : ACCOUNT_PAGES;
  fill(nav, h('ul', {}, pages.map(([href, text]) => h('li', {},
    h('a', { href, 'aria-current': hash.startsWith(href) ? 'page' : null }, text)))));
  const label = session.role === 'operator' ? 'Operator' : 'Account key ' + session.key.slice(0, 8) + '…';
  const out = h('button', { type: 'button', class: 'secondary', id: 'sign-out', onclick: () => signOut() }, 'Sign out');
  const parts = [h('span', { class: 'role' }, label)];
  if (session.role === 'operator') {
    const m = hash.match(/^#\/accounts\/(\d+)$/);
    parts.unshift(await accountPicker(m ? m[1] : ''));
  }
  fill(who, ...parts, out);
}

async function render() {
  const message = pendingMessage;
  pendingMessage = undefined;
  let hash = location.hash || '';
  const main = document.getElementById('main');
  if (!session.key) {
    if (hash !== '#/signin') history.replaceState(null, '', '#/signin');
    await shell('#/signin');
    signIn(main, message, (role) => { location.hash = role === 'operator' ? '#/accounts' : '#/triggers'; });
    return;
  }
  const route = ROUTES.find(([re]) => re.test(hash));
  if (!route || route[1] !== session.role) {
    history.replaceState(null, '', home());
    pendingMessage = message;
    return render();
  }
  await shell(hash);
  document.getElementById('toast').classList.remove('show');
  fill(main);
  try {
    await route[2](main, ...hash.match(route[0]).slice(1));
  } catch (e) {
    main.append(errorBox(e));
  }
  const heading = main.querySelector('h1');
  if (heading) document.title = heading.textContent + ' · eventd console';
  main.focus({ preventScroll: true });
}

window.addEventListener('hashchange', () => render());
// An account was created: the picker lists it.
document.addEventListener('accounts-changed', () => shell(location.hash));
render();
