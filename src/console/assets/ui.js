// Small DOM helpers shared by the pages. Everything is built with DOM
// calls and textContent: no HTML strings, so no data can inject markup.

/** h('p', {class: 'x', onclick: f}, 'text', child, ...) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's content. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
/** A fresh id for label/description links. */
export function id(prefix) { uid += 1; return prefix + '-' + uid; }

/** Local date and time of an RFC 3339 string (or '' for null). */
export function time(s) {
  if (!s) return '';
  const d = new Date(s);
  return isNaN(d) ? s : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

/** "3 s", "4 min", "2 h 5 min", "3 d 4 h". */
export function age(seconds) {
  if (seconds === null || seconds === undefined) return '–';
  const s = Math.round(seconds);
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min';
  if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
}

export function num(n) { return Number(n || 0).toLocaleString(); }

/** Announces a short message in the polite live region. */
export function toast(message) {
  const t = document.getElementById('toast');
  t.textContent = message;
  t.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('show'), 6000);
}

/** An error message block (role=alert so it is read at once). */
export function errorBox(e) {
  const code = e && e.code && e.code !== 'network' ? ' (' + e.code + ')' : '';
  return h('div', { class: 'error', role: 'alert' }, (e && e.message ? e.message : String(e)) + code);
}

/** A secret shown once: the value, a copy button and a warning. */
export function shownOnce(label, value, ...extra) {
  const out = h('output', { class: 'secret-value', 'data-secret': '' }, value);
  const status = h('span', { class: 'copied', role: 'status' });
  const copy = h('button', {
    type: 'button',
    class: 'secondary',
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(value);
        status.textContent = 'Copied.';
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(out);
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        status.textContent = 'Selected: press Ctrl+C to copy.';
      }
    },
  }, 'Copy');
  return h('div', { class: 'once', role: 'region', 'aria-label': label },
    h('p', {}, h('strong', {}, label), ' (shown only this once: store it now)'),
    h('div', { class: 'secret' }, out, copy, status),
    ...extra);
}

/** A button that asks for a second click before `action` runs. */
export function confirmButton(label, confirmLabel, action, cls = 'danger') {
  let armed = false;
  const b = h('button', { type: 'button', class: cls }, label);
  b.addEventListener('click', async () => {
    if (!armed) {
      armed = true;
      b.textContent = confirmLabel;
      b.classList.add('armed');
      return;
    }
    b.disabled = true;
    try { await action(); } finally { b.disabled = false; }
  });
  b.addEventListener('blur', () => {
    armed = false;
    b.textContent = label;
    b.classList.remove('armed');
  });
  return b;
}

/** A table with a caption, header cells and rows of cells; each cell is
 * a value or a Node. On narrow screens CSS shows each row as a card with
 * the header as label (data-label). */
export function table(caption, headers, rows, attrs = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'stack', ...attrs },
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((r) => r instanceof Node ? r
        : h('tr', {}, r.map((c, i) => h('td', { 'data-label': headers[i] }, c)))))));
}

/** A select with a visible label. options: [[value, text], ...] */
export function select(label, name, options, value, attrs = {}) {
  const sid = id(name);
  return h('div', { class: 'field' },
    h('label', { for: sid }, label),
    h('select', { id: sid, name, ...attrs },
      options.map(([v, t]) => h('option', { value: v, selected: String(v) === String(value ?? '') }, t))));
}

/** A text-like input with a visible label and an optional hint. */
export function input(label, name, value, attrs = {}, hint) {
  const iid = id(name);
  const hid = hint ? iid + '-hint' : undefined;
  return h('div', { class: 'field' },
    h('label', { for: iid }, label),
    h('input', { id: iid, name, value: value ?? '', 'aria-describedby': hid, ...attrs }),
    hint ? h('p', { class: 'hint', id: hid }, hint) : null);
}

/** The fifteen triggers, in the API's order. */
export const TRIGGERS = ['DELIVERYSTART', 'DELIVERY', 'SENT', 'FAILED', 'OPEN', 'CLICK', 'BOUNCE', 'SOFTBOUNCE',
  'BLOCKED', 'COMPLAINT', 'OPTIN', 'OPTOUT', 'RESUBSCRIBE', 'SMSOPTOUT', 'SMSFAILED'];
