// Submitting a task from a form, or a job from a JSON file. The form turns what was
// typed into the API's TaskSpec and lets the API judge it: an error names the field
// (`resources.cpu_milli`), and the message is shown next to that field's input. What
// cannot be converted is sent as typed, so that the API's message is the one shown.

import { h, replace } from './dom.js';
import { post } from './api.js';

// Words of a command line: quotes group, nothing is expanded (as `drover submit`).
export function splitWords(text) {
  const words = [];
  let cur = null;
  let quote = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < text.length) cur += text[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c; cur = cur ?? '';
    } else if (/\s/.test(c)) {
      if (cur !== null) { words.push(cur); cur = null; }
    } else if (c === '\\' && i + 1 < text.length) {
      cur = (cur ?? '') + text[++i];
    } else {
      cur = (cur ?? '') + c;
    }
  }
  if (cur !== null) words.push(cur);
  return words;
}

const UNITS = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4 };
function size(text) {
  const m = text.trim().match(/^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/);
  if (!m || UNITS[m[2].toLowerCase()] === undefined) return text;
  return Math.round(parseFloat(m[1]) * UNITS[m[2].toLowerCase()]);
}

const DUR = { ms: 1, s: 1000, '': 1000, m: 60000, min: 60000, h: 3600000, d: 86400000 };
function duration(text) {
  const m = text.trim().match(/^(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|)$/);
  if (!m) return text;
  return Math.round(parseFloat(m[1]) * DUR[m[2]]);
}

function number(text) {
  const t = text.trim();
  return /^-?\d+(\.\d+)?$/.test(t) ? Number(t) : t;
}

// Which input an API field path belongs to (the longest matching prefix).
const FIELDS = [
  ['command', 'command'], ['shell', 'command'], ['name', 'name'], ['key', 'key'],
  ['resources.cpu_milli', 'cpus'], ['resources.memory_bytes', 'memory'], ['resources', 'cpus'],
  ['priority', 'priority'], ['after', 'after'], ['array', 'array'],
  ['max_runtime_ms', 'timeout'], ['retry', 'retries'], ['labels', 'labels'],
];

function inputFor(field) {
  if (!field) return null;
  let best = null;
  for (const [prefix, input] of FIELDS) {
    if ((field === prefix || field.startsWith(prefix + '.') || field.startsWith(prefix + '[')) && (!best || prefix.length > best[0].length)) best = [prefix, input];
  }
  return best ? best[1] : null;
}

function spec(v) {
  const t = { command: v.shell ? [v.command] : splitWords(v.command) };
  if (v.shell) t.shell = true;
  if (v.name.trim()) t.name = v.name.trim();
  if (v.key.trim()) t.key = v.key.trim();
  const res = {};
  if (v.cpus.trim()) { const c = number(v.cpus); res.cpu_milli = typeof c === 'number' ? Math.round(c * 1000) : c; }
  if (v.memory.trim()) res.memory_bytes = size(v.memory);
  if (Object.keys(res).length) t.resources = { cpu_milli: 1000, ...res };
  if (v.priority.trim()) t.priority = number(v.priority);
  if (v.after.trim()) t.after = v.after.split(/[\s,]+/).filter(Boolean).map((a) => (/^\d+$/.test(a) ? Number(a) : a));
  if (v.array.trim()) {
    const m = v.array.trim().match(/^(\d+)\s*-\s*(\d+)$/);
    t.array = m ? { start: Number(m[1]), end: Number(m[2]) } : v.array.trim();
  }
  if (v.timeout.trim()) t.max_runtime_ms = duration(v.timeout);
  if (v.retries.trim()) {
    const r = number(v.retries);
    t.retry = { max_attempts: typeof r === 'number' ? r + 1 : r };
  }
  if (v.labels.trim()) {
    t.labels = {};
    for (const pair of v.labels.split(/[\n,]+/).map((x) => x.trim()).filter(Boolean)) {
      const i = pair.indexOf('=');
      t.labels[i < 0 ? pair : pair.slice(0, i).trim()] = i < 0 ? '' : pair.slice(i + 1).trim();
    }
  }
  return t;
}

export function render(ctx) {
  const inputs = {};
  const errors = {};
  const row = (id, label, input, hint) => {
    inputs[id] = input;
    input.id = `s-${id}`;
    input.name = id;
    errors[id] = h('p', { class: 'field-error', id: `s-${id}-error`, role: 'alert' });
    input.setAttribute('aria-describedby', `s-${id}-error${hint ? ` s-${id}-hint` : ''}`);
    return h('div', { class: 'form-row' },
      h('label', { for: `s-${id}` }, label), input,
      hint ? h('p', { class: 'hint', id: `s-${id}-hint` }, hint) : null, errors[id]);
  };
  const shell = h('input', { type: 'checkbox', id: 's-shell', name: 'shell' });
  const general = h('p', { class: 'error', id: 'submit-error', role: 'alert' });
  const form = h('form', { id: 'submit-form', class: 'form', novalidate: true },
    row('command', 'Command', h('input', { type: 'text', required: true, autocomplete: 'off', placeholder: 'python3 work.py --n 10' }), 'Split into words as a shell would (quotes respected, nothing expanded).'),
    h('div', { class: 'form-row check' }, shell, h('label', { for: 's-shell' }, 'Run through /bin/sh -c')),
    row('name', 'Name', h('input', { type: 'text' })),
    row('key', 'Key', h('input', { type: 'text' }), 'Names the task within its job, for dependencies.'),
    h('div', { class: 'form-cols' },
      row('cpus', 'CPUs', h('input', { type: 'text', inputmode: 'decimal', placeholder: '1' })),
      row('memory', 'Memory', h('input', { type: 'text', placeholder: '512M' })),
      row('priority', 'Priority', h('input', { type: 'text', inputmode: 'numeric', placeholder: '0' }))),
    h('div', { class: 'form-cols' },
      row('timeout', 'Time limit', h('input', { type: 'text', placeholder: '30m' })),
      row('retries', 'Retries', h('input', { type: 'text', inputmode: 'numeric', placeholder: '0' })),
      row('array', 'Array', h('input', { type: 'text', placeholder: '0-9' }))),
    row('after', 'After', h('input', { type: 'text', placeholder: '12, fetch, nightly/report' }), 'Dependencies: ids or keys, separated by commas.'),
    row('labels', 'Labels', h('textarea', { rows: 2, placeholder: 'team=data' }), 'key=value, one per line or separated by commas.'),
    h('button', { type: 'submit', id: 'submit-task' }, 'Submit task'), general);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const e of Object.values(errors)) e.textContent = '';
    for (const i of Object.values(inputs)) i.removeAttribute('aria-invalid');
    general.textContent = '';
    const v = Object.fromEntries(Object.entries(inputs).map(([k, i]) => [k, i.value]));
    v.shell = shell.checked;
    try {
      const r = await post('/v1/tasks', spec(v));
      location.hash = r.count > 1 ? `#/job/${r.job}` : `#/task/${r.first}`;
    } catch (e) {
      const which = inputFor(e.field);
      if (which) {
        errors[which].textContent = `${e.message} (${e.field})`;
        inputs[which].setAttribute('aria-invalid', 'true');
        inputs[which].focus();
      } else {
        general.textContent = e.field ? `${e.field}: ${e.message}` : e.message;
      }
    }
  });

  // A job file: the API's JobSpec as JSON (YAML job files go through `drover submit -f`,
  // which reads YAML; the browser has no YAML reader and nothing is loaded from elsewhere).
  const file = h('input', { type: 'file', id: 'job-file', name: 'job', accept: '.json,application/json', 'aria-describedby': 'job-file-error' });
  const fileError = h('p', { class: 'field-error', id: 'job-file-error', role: 'alert' });
  const upload = h('form', { id: 'job-form', class: 'form' },
    h('div', { class: 'form-row' }, h('label', { for: 'job-file' }, 'Job file (JSON)'), file,
      h('p', { class: 'hint' }, 'A job as the API takes it: {"name": "...", "tasks": [{"key": "a", "command": ["..."]}, ...]}.'), fileError),
    h('button', { type: 'submit', id: 'submit-job' }, 'Submit job'));
  upload.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    fileError.textContent = '';
    const f = file.files && file.files[0];
    if (!f) { fileError.textContent = 'Choose a file first.'; return; }
    let job;
    try { job = JSON.parse(await f.text()); } catch (e) { fileError.textContent = `Not JSON: ${e.message}`; return; }
    try {
      const r = await post('/v1/jobs', job);
      location.hash = `#/job/${r.job}`;
    } catch (e) {
      fileError.textContent = e.field ? `${e.field}: ${e.message}` : e.message;
    }
  });

  replace(ctx.main, h('h1', {}, 'Submit'), h('section', { class: 'card' }, h('h2', {}, 'A task'), form),
    h('section', { class: 'card' }, h('h2', {}, 'A job file'), upload));
  inputs.command.focus();
}
