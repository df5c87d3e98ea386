// Delivery log: HTTP push deliveries filtered by trigger, status and time,
// newest first, a page at a time (cursor); each one's attempts; retry one
// dead delivery, or every dead delivery of a trigger.

import { api, query } from './api.js';
import { h, fill, time, num, toast, errorBox, select, input, TRIGGERS } from './ui.js';

const PAGE = 25;

function attemptsTable(d) {
  if (!d.attempt_log.length) return h('p', { class: 'muted' }, 'Not tried yet.');
  return h('table', { class: 'attempts stack' },
    h('caption', {}, 'Attempts of delivery ' + d.id),
    h('thead', {}, h('tr', {}, ['Time', 'URL', 'Status', 'Latency', 'Error', 'Response']
      .map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, d.attempt_log.map((a) => h('tr', {},
      h('td', { 'data-label': 'Time' }, time(a.attempted_at)),
      h('td', { 'data-label': 'URL', class: 'url' }, a.url),
      h('td', { 'data-label': 'Status' }, a.status_code ?? '–'),
      h('td', { 'data-label': 'Latency' }, a.latency_ms + ' ms'),
      h('td', { 'data-label': 'Error' }, a.error || ''),
      h('td', { 'data-label': 'Response' }, a.response ? h('pre', {}, a.response) : '')))));
}

function localToIso(v) {
  if (!v) return undefined;
  const d = new Date(v);
  return isNaN(d) ? v : d.toISOString();
}

export async function deliveriesPage(main) {
  const state = { cursors: [], cursor: undefined };
  const status = h('div', { 'aria-live': 'polite', id: 'log-status' });
  const list = h('div', { id: 'log' });
  const form = h('form', { class: 'filters', novalidate: true, 'aria-label': 'Filters' },
    select('Trigger', 'trigger', [['', 'Any trigger'], ...TRIGGERS.map((t) => [t, t])], ''),
    select('Status', 'status', [['', 'Any status'], ['pending', 'pending'], ['delivered', 'delivered'], ['dead', 'dead']], ''),
    input('From', 'since', '', { type: 'datetime-local' }),
    input('To', 'until', '', { type: 'datetime-local' }),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Show')));
  const retryAll = h('button', { type: 'button', class: 'secondary', id: 'retry-all' }, 'Retry all dead deliveries of this trigger');
  const filters = () => {
    const f = new FormData(form);
    return { trigger: f.get('trigger'), status: f.get('status'), since: localToIso(f.get('since')), until: localToIso(f.get('until')) };
  };
  retryAll.addEventListener('click', async () => {
    const { trigger } = filters();
    if (!trigger) {
      fill(status, errorBox({ message: 'Choose a trigger first: retry all works per trigger.' }));
      return;
    }
    try {
      const r = await api('POST', '/v1/deliveries/retry', { trigger });
      toast(num(r.retried) + ' dead deliveries of ' + trigger + ' will be sent again.');
      await load();
    } catch (e) { fill(status, errorBox(e)); }
  });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.cursors = [];
    state.cursor = undefined;
    load();
  });
  fill(main, h('h1', {}, 'Delivery log'),
    h('p', { class: 'lead' }, 'Every HTTP push delivery and its attempts, newest first.'),
    form, h('div', { class: 'actions' }, retryAll), status, list);

  async function retry(d) {
    try {
      await api('POST', '/v1/deliveries/' + d.id + '/retry');
      toast('Delivery ' + d.id + ' will be sent again now.');
      await load();
    } catch (e) { fill(status, errorBox(e)); }
  }

  async function load() {
    let page;
    try {
      page = await api('GET', '/v1/deliveries' + query({ ...filters(), cursor: state.cursor, limit: PAGE }));
    } catch (e) {
      fill(status, errorBox(e));
      return;
    }
    fill(status, page.deliveries.length ? '' : h('p', { class: 'muted' }, 'No deliveries match.'));
    const items = page.deliveries.map((d) => h('li', { class: 'delivery status-' + d.status, 'data-id': d.id },
      h('div', { class: 'row' },
        h('span', { class: 'badge ' + (d.status === 'dead' ? 'bad' : d.status === 'pending' ? 'warn' : 'ok') }, d.status),
        h('strong', {}, d.trigger),
        h('span', {}, time(d.created_at)),
        h('span', { class: 'muted' }, num(d.attempts) + (d.attempts === 1 ? ' attempt' : ' attempts')),
        d.last_status_code || d.last_error
          ? h('span', { class: 'muted' }, 'last: ' + [d.last_status_code, d.last_error].filter((x) => x).join(' · ')) : null,
        d.status === 'pending' && d.next_attempt_at ? h('span', { class: 'muted' }, 'next ' + time(d.next_attempt_at)) : null,
        d.status === 'dead' ? h('button', { type: 'button', class: 'secondary', 'aria-label': 'Retry delivery ' + d.id,
          onclick: () => retry(d) }, 'Retry') : null),
      h('details', {}, h('summary', {}, 'Attempts and event ' + d.event_id), attemptsTable(d))));
    const older = h('button', { type: 'button', class: 'secondary', disabled: !page.next_cursor, onclick: () => {
      state.cursors.push(state.cursor);
      state.cursor = page.next_cursor;
      load();
    } }, 'Older →');
    const newer = h('button', { type: 'button', class: 'secondary', disabled: !state.cursors.length, onclick: () => {
      state.cursor = state.cursors.pop();
      load();
    } }, '← Newer');
    fill(list, h('ul', { class: 'deliveries' }, items),
      h('nav', { class: 'pager', 'aria-label': 'Pages of the log' }, newer, older));
  }
  await load();
}
