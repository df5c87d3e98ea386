// A small SVG bar chart (stacked series over time buckets), drawn with DOM
// calls: no library, no inline style (colours come from CSS classes).

const NS = 'http://www.w3.org/2000/svg';
const W = 560;
const H = 200;
const PAD = { left: 48, right: 8, top: 10, bottom: 26 };

function s(tag, attrs, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function niceMax(v) {
  if (v <= 4) return 4;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function label(iso, stepSeconds) {
  const d = new Date(iso);
  return stepSeconds >= 3600
    ? d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit' })
    : d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/**
 * buckets: [{start, <key>: n, ...}]; series: [{key, label, cls}], stacked.
 * Returns a <figure> whose SVG has a text alternative with the totals.
 */
export function barChart({ id, title, buckets, series, stepSeconds }) {
  const totals = series.map((se) => buckets.reduce((a, b) => a + (b[se.key] || 0), 0));
  const peak = Math.max(0, ...buckets.map((b) => series.reduce((a, se) => a + (b[se.key] || 0), 0)));
  const max = niceMax(peak);
  const iw = W - PAD.left - PAD.right;
  const ih = H - PAD.top - PAD.bottom;
  const bw = iw / Math.max(1, buckets.length);
  const summary = title + ': ' + series.map((se, i) => se.label + ' ' + totals[i].toLocaleString()).join(', ')
    + ' in ' + buckets.length + ' buckets; highest bucket ' + peak.toLocaleString() + '.';
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': summary, class: 'chart', id });
  for (const f of [0, 0.5, 1]) {
    const y = PAD.top + ih - f * ih;
    svg.append(s('line', { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: 'grid' }));
    svg.append(s('text', { x: PAD.left - 6, y: y + 4, class: 'tick', 'text-anchor': 'end' }, (f * max).toLocaleString()));
  }
  buckets.forEach((b, i) => {
    let y = PAD.top + ih;
    for (const se of series) {
      const v = b[se.key] || 0;
      if (!v) continue;
      const bh = (v / max) * ih;
      y -= bh;
      const rect = s('rect', {
        x: PAD.left + i * bw + bw * 0.1, y, width: Math.max(1, bw * 0.8), height: bh,
        class: 'bar ' + se.cls, 'data-series': se.key, 'data-value': v,
      });
      rect.append(s('title', {}, label(b.start, stepSeconds) + ': ' + v.toLocaleString() + ' ' + se.label));
      svg.append(rect);
    }
  });
  const n = buckets.length;
  for (const i of n > 1 ? [0, Math.floor(n / 2), n - 1] : [0]) {
    const anchor = i === 0 ? 'start' : i === n - 1 ? 'end' : 'middle';
    const x = i === n - 1 ? W - PAD.right : PAD.left + i * bw;
    svg.append(s('text', { x, y: H - 6, class: 'tick', 'text-anchor': anchor }, n ? label(buckets[i].start, stepSeconds) : ''));
  }
  const legend = document.createElement('ul');
  legend.className = 'legend';
  series.forEach((se, i) => {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = 'swatch ' + se.cls;
    sw.setAttribute('aria-hidden', 'true');
    li.append(sw, se.label + ': ' + totals[i].toLocaleString());
    li.dataset.total = String(totals[i]);
    li.dataset.series = se.key;
    legend.append(li);
  });
  const fig = document.createElement('figure');
  fig.className = 'chart-box';
  const cap = document.createElement('figcaption');
  cap.textContent = title;
  fig.append(cap, svg, legend);
  return fig;
}
