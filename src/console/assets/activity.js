// Activity: events ingested, pulled (deleted) and pushed (delivered /
// failed) over the last hour, day or week, for all triggers or one, from
// GET /v1/stats.

import { api, query } from './api.js';
import { h, fill, errorBox, select, TRIGGERS } from './ui.js';
import { barChart } from './chart.js';

const RANGES = {
  hour: { label: 'Last hour', seconds: 3600, step: 60, per: 'per minute' },
  day: { label: 'Last day', seconds: 86400, step: 900, per: 'per 15 minutes' },
  week: { label: 'Last week', seconds: 604800, step: 3600, per: 'per hour' },
};

export async function activityPage(main) {
  const charts = h('div', { id: 'charts', 'aria-live': 'polite' });
  const form = h('form', { class: 'filters', novalidate: true, 'aria-label': 'Range' },
    select('Range', 'range', Object.entries(RANGES).map(([k, r]) => [k, r.label]), 'hour'),
    select('Trigger', 'trigger', [['', 'All triggers'], ...TRIGGERS.map((t) => [t, t])], ''),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Show')));
  form.addEventListener('submit', (ev) => { ev.preventDefault(); load(); });
  form.addEventListener('change', () => load());
  fill(main, h('h1', {}, 'Activity'),
    h('p', { class: 'lead' }, 'What happened to the account\'s events over time.'), form, charts);

  async function load() {
    const f = new FormData(form);
    const range = RANGES[f.get('range')] || RANGES.hour;
    const trigger = f.get('trigger');
    const to = new Date();
    const from = new Date(to.getTime() - range.seconds * 1000);
    let stats;
    try {
      stats = await api('GET', '/v1/stats' + query({ from: from.toISOString(), to: to.toISOString(), step: range.step }));
    } catch (e) {
      fill(charts, errorBox(e));
      return;
    }
    const buckets = trigger ? (stats.triggers[trigger] || stats.buckets.map((b) => ({ start: b.start }))) : stats.buckets;
    const who = trigger || 'all triggers';
    const chart = (id, title, series) => barChart({ id, title: title + ' ' + range.per + ', ' + who, buckets, series,
      stepSeconds: stats.step_seconds });
    fill(charts,
      chart('chart-ingested', 'Events ingested', [{ key: 'ingested', label: 'ingested', cls: 's-ingested' }]),
      chart('chart-pulled', 'Events pulled (deleted)', [{ key: 'pulled', label: 'pulled', cls: 's-pulled' }]),
      chart('chart-pushed', 'Events pushed', [
        { key: 'delivered', label: 'delivered', cls: 's-delivered' },
        { key: 'failed', label: 'failed', cls: 's-failed' },
      ]));
  }
  await load();
}
