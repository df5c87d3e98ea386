// Queue: the pull queue's depth per trigger, the oldest pending event's
// age, and the open batches (consumer, lease end) with a release button.

import { api } from './api.js';
import { h, fill, time, age, num, toast, errorBox, table } from './ui.js';

export async function queuePage(main) {
  const body = h('div', { id: 'queue-body' });
  const refresh = h('button', { type: 'button', class: 'secondary', onclick: () => load() }, 'Refresh');
  fill(main, h('h1', {}, 'Queue'),
    h('p', { class: 'lead' }, 'Events of pull triggers waiting to be fetched, and the batches clients hold.'),
    h('div', { class: 'actions' }, refresh), body);

  async function release(batch) {
    try {
      const r = await api('POST', '/v1/batches/' + encodeURIComponent(batch.batch_id) + '/release');
      toast('Batch released: ' + num(r.released) + ' events are back in the queue.');
      await load();
    } catch (e) {
      body.prepend(errorBox(e));
    }
  }

  async function load() {
    const q = await api('GET', '/v1/queue');
    const rows = Object.entries(q.triggers)
      .filter(([, d]) => d.pending || d.in_flight)
      .map(([t, d]) => [t, num(d.pending), num(d.in_flight)]);
    const batches = q.open_batches.map((b) => [
      h('code', {}, b.batch_id), b.consumer, num(b.events), time(b.expires_at),
      h('button', { type: 'button', class: 'secondary', 'aria-label': 'Release batch ' + b.batch_id,
        onclick: () => release(b) }, 'Release'),
    ]);
    fill(body,
      h('dl', { class: 'tiles' },
        h('div', {}, h('dt', {}, 'Pending'), h('dd', { id: 'q-pending' }, num(q.pending))),
        h('div', {}, h('dt', {}, 'In flight'), h('dd', { id: 'q-in-flight' }, num(q.in_flight))),
        h('div', {}, h('dt', {}, 'Oldest pending'), h('dd', {}, age(q.oldest_pending_age_seconds)))),
      rows.length
        ? table('Per trigger', ['Trigger', 'Pending', 'In flight'], rows, { id: 'queue-table' })
        : h('p', { class: 'muted' }, 'No events are waiting.'),
      batches.length
        ? table('Open batches', ['Batch', 'Consumer', 'Events', 'Lease ends', 'Action'], batches, { id: 'batches-table' })
        : h('p', { class: 'muted', id: 'no-batches' }, 'No batch is open.'));
  }
  await load();
}
