// Triggers: the fifteen destinations with their state, and one trigger's
// page (state, delivery actions: test, resume, http secret rotation; the
// editor).

import { api } from './api.js';
import { h, fill, time, num, toast, errorBox, shownOnce, table } from './ui.js';
import { editor } from './editor.js';

/** Push health in words: active, paused until …, suspended. */
export function stateText(push) {
  if (!push) return 'active';
  if (push.state === 'suspended') {
    return 'suspended since ' + time(push.suspended_at || push.last_error_at)
      + (push.last_error ? ': ' + push.last_error : '');
  }
  if (push.paused_until && new Date(push.paused_until) > new Date()) {
    return 'paused until ' + time(push.paused_until);
  }
  return 'active';
}

function stateBadge(push) {
  const suspended = push && push.state === 'suspended';
  const paused = !suspended && push && push.paused_until && new Date(push.paused_until) > new Date();
  const cls = suspended ? 'bad' : paused ? 'warn' : 'ok';
  return h('span', { class: 'badge ' + cls }, stateText(push));
}

/** The delivered destinations: each has a push state, a test and a log. */
const DELIVERED = {
  http: { title: 'HTTP push', test: 'Send test event', accepted: 'The receiver accepted the test event.',
    failed: 'The test event failed.', target: 'URL' },
  email: { title: 'Email delivery', test: 'Send test mail', accepted: 'The SMTP relay accepted the test mail.',
    failed: 'The test mail was not accepted.', target: 'Relay and recipients' },
  ftp: { title: 'FTP uploads', test: 'Upload test file', accepted: 'The FTP server stored the test file.',
    failed: 'The test file could not be uploaded.', target: 'File' },
};

function destinationText(t) {
  const http = t.http;
  if (t.destination === 'http' && http) return 'http → ' + (http.method || 'POST') + ' ' + http.url;
  if (t.destination === 'email' && t.email && t.email.to) return 'email → ' + t.email.to.join(', ');
  if (t.destination === 'ftp' && t.ftp) return 'ftp → ' + t.ftp.host + (t.ftp.directory || '');
  return t.destination;
}

export async function triggersPage(main) {
  fill(main, h('h1', {}, 'Triggers'), h('p', { class: 'lead' },
    'Where the events of each trigger go. Open a trigger to change its destination.'));
  const { triggers } = await api('GET', '/v1/triggers');
  // Push health is per trigger: asked for the http, email and ftp ones.
  const details = await Promise.all(triggers.map((t) => t.destination in DELIVERED
    ? api('GET', '/v1/triggers/' + t.trigger).catch(() => t) : Promise.resolve(t)));
  const rows = details.map((t) => [
    h('a', { href: '#/triggers/' + t.trigger, class: 'trigger-link' }, t.trigger),
    h('span', { class: 'dest' }, destinationText(t)),
    t.destination in DELIVERED ? stateBadge(t.push) : h('span', { class: 'muted' }, '–'),
    t.push ? num(t.push.pending) + ' pending · ' + num(t.push.dead) + ' dead' : '',
  ]);
  main.append(table('Destinations of the 15 triggers', ['Trigger', 'Destination', 'Push state', 'Deliveries'], rows,
    { id: 'triggers-table' }));
}

function pushPanel(trigger, t, refresh) {
  const push = t.push;
  // pull and none show the health of the trigger's earlier http push.
  const kind = DELIVERED[t.destination] ? t.destination : 'http';
  const words = DELIVERED[kind];
  const result = h('div', { id: 'push-result', 'aria-live': 'polite' });
  const act = async (f) => {
    result.replaceChildren();
    try { await f(); } catch (e) { result.append(errorBox(e)); }
  };
  const test = h('button', { type: 'button', onclick: () => act(async () => {
    const r = await api('POST', '/v1/triggers/' + trigger + '/test');
    result.append(h('div', { class: r.success ? 'ok-box' : 'error', id: 'test-result' },
      h('p', {}, h('strong', {}, r.success ? words.accepted : words.failed)),
      h('dl', { class: 'facts' },
        h('dt', {}, words.target), h('dd', {}, r.url),
        h('dt', {}, 'Status'), h('dd', {}, r.status_code ?? 'no answer'),
        h('dt', {}, 'Latency'), h('dd', {}, r.latency_ms + ' ms'),
        r.error ? [h('dt', {}, 'Error'), h('dd', {}, r.error)] : null,
        h('dt', {}, 'Response'), h('dd', {}, h('pre', {}, r.response || '(empty)')))));
  }) }, words.test);
  const resume = h('button', { type: 'button', class: 'secondary', onclick: () => act(async () => {
    await api('POST', '/v1/triggers/' + trigger + '/resume');
    toast(trigger + ' resumed.');
    await refresh();
  }) }, 'Resume');
  const rotate = h('button', { type: 'button', class: 'secondary', onclick: () => act(async () => {
    const r = await api('POST', '/v1/triggers/' + trigger + '/secret');
    result.append(shownOnce('New signing secret', r.secret,
      h('p', {}, 'Requests are also signed with the previous secret until ' + time(r.previous_secret_valid_until) + '.')));
  }) }, 'Rotate signing secret');
  return h('section', { class: 'panel', 'aria-labelledby': 'push-h' },
    h('h2', { id: 'push-h' }, words.title),
    push ? h('dl', { class: 'facts', id: 'push-facts' },
      h('dt', {}, 'State'), h('dd', { id: 'push-state' }, stateBadge(push)),
      h('dt', {}, 'Consecutive failures'), h('dd', {}, num(push.consecutive_failures)),
      push.last_error ? [h('dt', {}, 'Last error'), h('dd', {}, push.last_error + ' (' + time(push.last_error_at) + ')')] : null,
      h('dt', {}, 'Pending deliveries'), h('dd', {}, num(push.pending)),
      push.collecting ? [h('dt', {}, 'Waiting for their period'),
        h('dd', { id: 'push-collecting' }, num(push.collecting) + ' events')] : null,
      h('dt', {}, 'Dead deliveries'), h('dd', {}, num(push.dead), ' ',
        push.dead ? h('a', { href: '#/deliveries' }, 'see the log') : null)) : null,
    h('div', { class: 'actions' }, t.destination in DELIVERED ? test : null,
      push && stateText(push) !== 'active' ? resume : null, push && kind === 'http' ? rotate : null),
    result);
}

export async function triggerPage(main, trigger) {
  const load = () => api('GET', '/v1/triggers/' + trigger);
  let t = await load();
  const status = h('div', { id: 'trigger-status' });
  const refresh = async () => {
    t = await load();
    fill(status, h('p', {}, 'Destination: ', h('strong', { id: 'current-destination' }, destinationText(t))),
      (t.push || t.destination in DELIVERED) ? pushPanel(trigger, t, refresh) : null);
  };
  fill(main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/triggers' }, '← All triggers')),
    h('h1', {}, trigger),
    status);
  await refresh();
  main.append(editor(trigger, t, async (saved) => {
    await refresh();
    return saved;
  }));
}
