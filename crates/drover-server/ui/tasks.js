// The task table: filters (state, job, label, name) and a search, cursor paging over
// GET /v1/tasks (each page a range of the id-ordered table, so a page costs the same at
// a million tasks), and live state changes from the event stream.

import { h, replace, stateBadge, fmtTime, STATES, FINAL, errorBox } from './dom.js';
import { get } from './api.js';

const PAGE = 50;

function hashFor(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const qs = q.toString();
  return `#/tasks${qs ? '?' + qs : ''}`;
}

export async function render(ctx) {
  const q = ctx.query;
  const f = { state: q.get('state') || '', job: q.get('job') || '', label: q.get('label') || '', name: q.get('name') || '' };
  // The cursors of the pages before this one, to go back ("prev" is a stack in the URL).
  const cursor = q.get('cursor') || '';
  const prev = (q.get('prev') || '').split(',').filter(Boolean);

  const field = (id, label, el) => h('div', { class: 'field' }, h('label', { for: id }, label), el);
  const state = h('select', { id: 'f-state', name: 'state' }, h('option', { value: '' }, 'any'),
    STATES.map((st) => h('option', { value: st, selected: st === f.state }, st.replace('_', ' '))));
  const job = h('input', { id: 'f-job', name: 'job', inputmode: 'numeric', value: f.job, size: 6 });
  const label = h('input', { id: 'f-label', name: 'label', value: f.label, placeholder: 'key=value', size: 14 });
  const name = h('input', { id: 'f-name', name: 'name', value: f.name, size: 14 });
  const filters = h('form', { class: 'filters', id: 'filters', role: 'search' },
    field('f-state', 'State', state), field('f-job', 'Job', job), field('f-label', 'Label', label), field('f-name', 'Name', name),
    h('button', { type: 'submit' }, 'Filter'), h('a', { href: '#/tasks', class: 'button' }, 'Clear'));
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = hashFor({ state: state.value, job: job.value.trim(), label: label.value.trim(), name: name.value.trim() });
  });

  // Search: an id or a key (KEY, JOB/KEY) opens that task; anything else is a name.
  const search = h('input', { id: 'search', type: 'search', placeholder: 'id, key or name', 'aria-label': 'Search tasks' });
  const searchMsg = h('span', { class: 'field-error', role: 'status' });
  const searchForm = h('form', { class: 'filters', id: 'search-form', role: 'search' }, search, h('button', { type: 'submit' }, 'Go'), searchMsg);
  searchForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = search.value.trim();
    if (!text) return;
    try {
      const t = await get(`/v1/tasks/${encodeURIComponent(text)}`);
      location.hash = `#/task/${t.id}`;
    } catch (e) {
      if (e.status === 404 || e.status === 400) location.hash = hashFor({ name: text });
      else searchMsg.textContent = e.message;
    }
  });

  const tbody = h('tbody');
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  replace(ctx.main, h('h1', {}, 'Tasks'), searchForm, filters,
    h('table', { class: 'list', id: 'tasks' },
      h('thead', {}, h('tr', {}, ['Id', 'Name', 'Job', 'State', 'Priority', 'Attempt', 'Worker', 'Submitted', 'Exit'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody),
    pager);

  const params = new URLSearchParams({ limit: String(PAGE) });
  for (const k of ['state', 'job', 'label', 'name']) if (f[k]) params.set(k, f[k]);
  if (cursor) params.set('cursor', cursor);
  let page;
  try {
    page = await get(`/v1/tasks?${params}`);
  } catch (e) {
    replace(tbody, h('tr', {}, h('td', { colspan: 9 }, errorBox(e))));
    return;
  }
  if (!ctx.alive) return;
  const rows = new Map();
  // A page looks at 100,000 ids at most: an empty page with a cursor means none in
  // this stretch, not none at all.
  const empty = page.next_cursor ? 'None in this stretch of ids; "Next" looks further.' : 'No tasks.';
  replace(tbody, page.tasks.length === 0 ? h('tr', {}, h('td', { colspan: 9 }, empty)) : page.tasks.map((t) => {
    const st = h('td', { class: 'state' }, stateBadge(t.state), t.cached_from ? h('span', { class: 'badge cached', title: `result taken from task ${t.cached_from}` }, 'cached') : null);
    const worker = h('td', {}, t.worker || '—');
    const exit = h('td', { class: 'num' }, t.exit_code === null ? '—' : String(t.exit_code));
    rows.set(t.id, { st, exit });
    return h('tr', { 'data-task': String(t.id) },
      h('td', {}, h('a', { href: `#/task/${t.id}` }, String(t.id))),
      h('td', {}, t.name || '', t.key ? h('span', { class: 'small' }, ` (${t.key})`) : ''),
      h('td', {}, h('a', { href: `#/job/${t.job}` }, String(t.job))),
      st,
      h('td', { class: 'num' }, String(t.priority)),
      h('td', { class: 'num' }, String(t.attempt)),
      worker,
      h('td', {}, fmtTime(t.submitted_at)),
      exit);
  }));
  const base = { ...f };
  if (cursor) {
    const back = prev.slice(0, -1);
    pager.append(h('a', { href: hashFor({ ...base, cursor: prev[prev.length - 1] || '', prev: back.join(',') }), class: 'button', id: 'prev-page' }, '← Previous'));
    pager.append(h('a', { href: hashFor(base), class: 'button' }, 'First'));
  }
  if (page.next_cursor) {
    pager.append(h('a', { href: hashFor({ ...base, cursor: page.next_cursor, prev: [...prev, cursor].join(',') }), class: 'button', id: 'next-page' }, 'Next →'));
  }

  // Live: a row's state follows the task's events.
  const ids = page.tasks.map((t) => t.id);
  if (ids.length > 0) {
    const lo = Math.min(...ids), hi = Math.max(...ids);
    const paint = (task, state, exit) => {
      const r = rows.get(task);
      if (!r) return;
      r.state = state;
      replace(r.st, stateBadge(state));
      if (exit !== null && exit !== undefined) r.exit.textContent = String(exit);
    };
    for (const t of page.tasks) rows.get(t.id).state = t.state;
    ctx.events('type=task', {
      // What changed between the first read and the stream's start; final states are
      // never painted over (a task does not leave one).
      open: async () => {
        try {
          const again = await get(`/v1/tasks?${params}`);
          if (!ctx.alive) return;
          for (const t of again.tasks) {
            const r = rows.get(t.id);
            if (r && !FINAL.includes(r.state)) paint(t.id, t.state, t.exit_code);
          }
        } catch { /* the rows stay as they were */ }
      },
      task: (e) => {
        if (e.task < lo || e.task > hi) return;
        paint(e.task, e.state, e.outcome && e.outcome.kind === 'exited' ? e.outcome.code : null);
      },
    });
  }
}
