// The destination editor of one trigger: a form per destination type.
// The API validates; its message is shown next to the field it names
// ('http.url', 'email.to', 'ftp.host', ...), or above the form otherwise.

import { api } from './api.js';
import { h, id, toast, shownOnce } from './ui.js';

const EVENT_FIELDS = 'id, trigger, occurred_at, received_at, recipient, campaign_id, message_id, list_id, url, '
  + 'bounce_type, bounce_reason, ip, user_agent, external_id, data';

/** Field kinds: text, number, select, check, list (comma separated → array),
 * lines ("Name: value" per line → object). */
const FORMS = {
  http: [
    ['url', 'URL', 'text', { hint: 'http:// or https://; a static token may be part of it.', required: true }],
    ['method', 'Method', 'select', { options: ['POST', 'GET'] }],
    ['format', 'Body format', 'select', { options: ['json', 'form'], hint: 'form: fields form-encoded (POST only).' }],
    ['fields', 'Event fields to send', 'list', { hint: 'Comma separated; empty sends every field: ' + EVENT_FIELDS + '.' }],
    ['batch_size', 'Events per request', 'number', { hint: '1 to 1000; above 1 sends a JSON array.', min: 1, max: 1000 }],
    ['headers', 'Extra request headers', 'lines', { hint: 'One "Name: value" per line.' }],
    ['timeout_seconds', 'Timeout (seconds)', 'number', { hint: '1 to 60, default 15.', min: 1, max: 60 }],
    ['ordered', 'Deliver strictly in event order (a failing event blocks the ones after it)', 'check', {}],
  ],
  email: [
    ['to', 'Recipients', 'list', { hint: 'Comma separated email addresses.', required: true }],
    ['digest_seconds', 'Digest period (seconds)', 'number', { hint: '0: one mail per event; 60 to 86400: one mail per period with a CSV attachment.', min: 0, max: 86400 }],
    ['subject_prefix', 'Subject prefix', 'text', {}],
  ],
  ftp: [
    ['host', 'Host', 'text', { required: true }],
    ['port', 'Port', 'number', { hint: 'Default 21.', min: 1, max: 65535 }],
    ['username', 'User name', 'text', { required: true }],
    ['password', 'Password', 'password', { hint: 'Never shown back; leave empty to keep the saved one.' }],
    ['directory', 'Directory', 'text', { hint: 'Default /.' }],
    ['every_seconds', 'Upload every (seconds)', 'number', { hint: '60 to 86400; default 86400 (daily).', min: 1, max: 86400 }],
    ['format', 'File format', 'select', { options: ['csv', 'jsonl'] }],
    ['tls', 'TLS', 'select', { options: ['explicit', 'none'], hint: 'explicit: FTPS (AUTH TLS).' }],
  ],
};

const DESTINATIONS = [
  ['pull', 'Client pull', 'Queued until a client fetches them (JSON, SOAP, PAINT).'],
  ['http', 'HTTP push', 'POSTed (or GET) to your URL, signed, with retries.'],
  ['email', 'Email', 'Mailed to addresses, one by one or as a digest.'],
  ['ftp', 'FTP', 'Written to a file uploaded periodically.'],
  ['none', 'None', 'Kept in the history only.'],
];

function control(dest, [name, label, kind, opt], current) {
  const cid = 'f-' + dest + '-' + name;
  const eid = cid + '-error';
  const hid = opt.hint ? cid + '-hint' : null;
  const described = [hid, eid].filter(Boolean).join(' ');
  const value = current ? current[name] : undefined;
  let el;
  if (kind === 'select') {
    el = h('select', { id: cid, name, 'aria-describedby': described },
      opt.options.map((o) => h('option', { value: o, selected: value === o }, o)));
  } else if (kind === 'check') {
    el = h('input', { id: cid, name, type: 'checkbox', checked: value === true, 'aria-describedby': described });
  } else if (kind === 'lines') {
    const text = value && typeof value === 'object' ? Object.entries(value).map(([k, v]) => k + ': ' + v).join('\n') : '';
    el = h('textarea', { id: cid, name, rows: 3, 'aria-describedby': described });
    el.value = text;
  } else {
    const shown = Array.isArray(value) ? value.join(', ') : (value ?? '');
    el = h('input', {
      id: cid, name, value: kind === 'password' ? '' : shown, 'aria-describedby': described,
      placeholder: kind === 'password' ? savedNote(current) : null,
      type: kind === 'number' ? 'number' : kind === 'password' ? 'password' : 'text',
      inputmode: kind === 'number' ? 'numeric' : null, min: opt.min, max: opt.max,
      autocomplete: kind === 'password' ? 'new-password' : 'off', 'aria-required': opt.required ? 'true' : null,
    });
  }
  const labelEl = h('label', { for: cid }, label);
  return h('div', { class: kind === 'check' ? 'field check' : 'field', 'data-field': name },
    kind === 'check' ? [el, labelEl] : [labelEl, el],
    hid ? h('p', { class: 'hint', id: hid }, opt.hint) : null,
    h('p', { class: 'field-error', id: eid, hidden: true }));
}

/** What an empty password field means, when a password is saved. */
function savedNote(settings) {
  return settings && settings.password_set ? 'saved: leave empty to keep it' : null;
}

/** The settings object of a form, or throws {field, message}. */
function settingsOf(dest, fieldset) {
  const out = {};
  for (const [name, , kind] of FORMS[dest]) {
    const el = fieldset.querySelector('[name="' + name + '"]');
    if (kind === 'check') { out[name] = el.checked; continue; }
    const raw = el.value.trim();
    if (raw === '') continue;
    if (kind === 'number') out[name] = /^-?\d+$/.test(raw) ? Number(raw) : raw;
    else if (kind === 'list') out[name] = raw.split(',').map((s) => s.trim()).filter(Boolean);
    else if (kind === 'lines') {
      out[name] = {};
      for (const line of raw.split('\n').map((l) => l.trim()).filter(Boolean)) {
        const at = line.indexOf(':');
        if (at < 1) throw { field: name, message: 'Each line must be "Name: value" ("' + line + '" is not).' };
        out[name][line.slice(0, at).trim()] = line.slice(at + 1).trim();
      }
    } else out[name] = raw;
  }
  return out;
}

/** Shows saved settings (as the API normalised them) in a form. */
function showSaved(dest, fieldset, settings) {
  if (!settings) return;
  for (const [name, , kind] of FORMS[dest]) {
    const el = fieldset.querySelector('[name="' + name + '"]');
    const v = settings[name];
    if (kind === 'password') {
      el.value = '';
      el.placeholder = savedNote(settings) || '';
      continue;
    }
    if (v === undefined) continue;
    if (kind === 'check') el.checked = v === true;
    else if (kind === 'lines') el.value = v && typeof v === 'object' ? Object.entries(v).map(([k, x]) => k + ': ' + x).join('\n') : '';
    else el.value = Array.isArray(v) ? v.join(', ') : String(v ?? '');
  }
}

/** Which field of `dest` an API message names, if any. */
function fieldOf(dest, e) {
  if (e.code === 'private_target' || e.code === 'unresolvable_target') {
    return { http: 'url', ftp: 'host' }[dest] || null;
  }
  const m = /'(http|email|ftp)\.([a-z_]+)/.exec(e.message || '');
  return m && m[1] === dest && FORMS[dest].some(([n]) => n === m[2]) ? m[2] : null;
}

export function editor(trigger, current, saved) {
  const formError = h('div', { class: 'error', role: 'alert', id: 'editor-error', hidden: true });
  const result = h('div', { id: 'editor-result', 'aria-live': 'polite' });
  const groupName = id('destination');
  const radios = DESTINATIONS.map(([value, label, hint]) => {
    const rid = 'dest-' + value;
    return h('div', { class: 'radio' },
      h('input', { type: 'radio', id: rid, name: groupName, value, checked: current.destination === value,
        'aria-describedby': rid + '-hint' }),
      h('label', { for: rid }, label),
      h('span', { class: 'hint', id: rid + '-hint' }, ' ' + hint));
  });
  const fieldsets = {};
  for (const dest of Object.keys(FORMS)) {
    fieldsets[dest] = h('fieldset', { class: 'settings', id: 'settings-' + dest, hidden: current.destination !== dest },
      h('legend', {}, DESTINATIONS.find(([v]) => v === dest)[1] + ' settings'),
      FORMS[dest].map((f) => control(dest, f, current[dest])));
  }
  const chosen = () => (form.querySelector('input[name="' + groupName + '"]:checked') || {}).value || 'pull';
  const clearErrors = () => {
    formError.hidden = true;
    for (const p of form.querySelectorAll('.field-error')) { p.hidden = true; p.textContent = ''; }
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  };
  const showError = (dest, e) => {
    const field = dest in FORMS ? (e.field || fieldOf(dest, e)) : null;
    if (field) {
      const el = document.getElementById('f-' + dest + '-' + field);
      const p = document.getElementById('f-' + dest + '-' + field + '-error');
      p.textContent = e.message;
      p.hidden = false;
      el.setAttribute('aria-invalid', 'true');
      el.focus();
    } else {
      formError.textContent = e.message + (e.code ? ' (' + e.code + ')' : '');
      formError.hidden = false;
      formError.focus();
    }
  };
  const form = h('form', { class: 'editor', novalidate: true, 'aria-labelledby': 'editor-h' },
    h('fieldset', { class: 'destinations' }, h('legend', {}, 'Destination'), radios),
    Object.values(fieldsets),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'save' }, 'Save destination')),
    formError);
  formError.tabIndex = -1;
  form.addEventListener('change', (ev) => {
    if (ev.target.name !== groupName) return;
    for (const [dest, fs] of Object.entries(fieldsets)) fs.hidden = dest !== chosen();
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors();
    result.replaceChildren();
    const dest = chosen();
    const body = { destination: dest };
    try {
      if (dest in FORMS) body[dest] = settingsOf(dest, fieldsets[dest]);
    } catch (e) {
      showError(dest, e);
      return;
    }
    try {
      const r = await api('PUT', '/v1/triggers/' + trigger, body);
      toast(trigger + ': destination saved (' + r.destination + ').');
      if (dest in FORMS) showSaved(dest, fieldsets[dest], r[dest]);
      if (r.secret) {
        result.append(shownOnce('Signing secret', r.secret,
          h('p', {}, 'Verify the webhook-signature header with it (Standard Webhooks). '
            + (r.backfilled ?? 0) + ' events of the last days were queued for delivery (backfill).')));
      }
      await saved(r);
    } catch (e) {
      showError(dest, e);
    }
  });
  return h('section', { class: 'panel' }, h('h2', { id: 'editor-h' }, 'Change the destination'), result, form);
}
