// Workers: a table with live usage, a page per worker with its running tasks, drain
// and resume.

import { h, replace, bar, stateBadge, fmtCpu, fmtBytes, fmtDuration, errorBox } from './dom.js';
import { get, post, throttle } from './api.js';

function usageCell(cap, alloc, used, fmt, what) {
  return h('td', {},
    h('div', { class: 'small' }, `${fmt(alloc)} / ${fmt(cap)} alloc · ${fmt(used)} used on the host`),
    bar(cap, [{ value: alloc, class: 'alloc', label: 'allocated' }], `${what} allocated`),
    bar(cap, [{ value: used, class: 'used', label: 'in use' }], `${what} in use`));
}

function drainButton(w, after) {
  const draining = w.state === 'draining';
  if (w.state === 'lost') return null;
  return h('button', {
    type: 'button',
    class: 'drain',
    'data-worker': String(w.id),
    'aria-label': `${draining ? 'Resume' : 'Drain'} worker ${w.name}`,
    onclick: async (ev) => {
      ev.target.disabled = true;
      try {
        await post(`/v1/workers/${w.id}/${draining ? 'resume' : 'drain'}`);
      } catch (e) {
        ev.target.after(errorBox(e));
      }
      after();
    },
  }, draining ? 'Resume' : 'Drain');
}

function labels(map) {
  return Object.entries(map || {}).map(([k, v]) => h('span', { class: 'label' }, `${k}=${v}`));
}

export async function renderList(ctx) {
  const tbody = h('tbody');
  replace(ctx.main, h('h1', {}, 'Workers'),
    h('table', { class: 'list', id: 'workers' },
      h('thead', {}, h('tr', {}, ['Worker', 'State', 'CPU', 'Memory', 'Running', 'Labels', 'Last seen', ''].map((t) => h('th', { scope: 'col' }, t)))),
      tbody));
  const refresh = async () => {
    const ws = await get('/v1/workers');
    if (!ctx.alive) return;
    replace(tbody, ws.length === 0 ? h('tr', {}, h('td', { colspan: 8 }, 'No worker has joined.')) : ws.map((w) => h('tr', { 'data-worker': String(w.id) },
      h('td', {}, h('a', { href: `#/worker/${w.id}` }, `w${w.id} `, w.name)),
      h('td', {}, stateBadge(w.state), w.connected ? '' : h('span', { class: 'small' }, ' disconnected')),
      usageCell(w.capacity.cpu_milli, w.allocated.cpu_milli, w.usage.cpu_milli, fmtCpu, 'CPU'),
      usageCell(w.capacity.memory_bytes, w.allocated.memory_bytes, w.usage.memory_bytes, fmtBytes, 'memory'),
      h('td', { class: 'num' }, String(w.running.length)),
      h('td', {}, labels(w.labels)),
      h('td', {}, w.last_seen_ms_ago === null ? '—' : `${fmtDuration(w.last_seen_ms_ago)} ago`),
      h('td', {}, drainButton(w, refresh)))));
  };
  await refresh();
  const soon = throttle(() => refresh().catch(() => {}), 1000);
  ctx.events('type=worker', { open: soon, worker: soon });
  ctx.every(2000, soon);
}

export async function renderOne(ctx, id) {
  const head = h('div');
  const running = h('tbody');
  replace(ctx.main, head,
    h('h2', {}, 'Running tasks'),
    h('table', { class: 'list', id: 'worker-tasks' },
      h('thead', {}, h('tr', {}, ['Task', 'Name', 'State', 'Started', 'Attempt'].map((t) => h('th', { scope: 'col' }, t)))),
      running));
  const refresh = async () => {
    const ws = await get('/v1/workers');
    const w = ws.find((x) => String(x.id) === String(id));
    if (!ctx.alive) return;
    if (!w) { replace(head, h('h1', {}, `Worker w${id}`), h('p', {}, 'No such worker.')); return; }
    replace(head,
      h('h1', {}, `Worker w${w.id} `, w.name, ' ', stateBadge(w.state)),
      h('table', { class: 'list' }, h('tbody', {},
        h('tr', {}, h('th', { scope: 'row' }, 'CPU'), usageCell(w.capacity.cpu_milli, w.allocated.cpu_milli, w.usage.cpu_milli, fmtCpu, 'CPU')),
        h('tr', {}, h('th', { scope: 'row' }, 'Memory'), usageCell(w.capacity.memory_bytes, w.allocated.memory_bytes, w.usage.memory_bytes, fmtBytes, 'memory')),
        h('tr', {}, h('th', { scope: 'row' }, 'Labels'), h('td', {}, labels(w.labels))),
        h('tr', {}, h('th', { scope: 'row' }, 'Connected'), h('td', {}, w.connected ? 'yes' : 'no')))),
      h('p', {}, drainButton(w, refresh)));
    const infos = await Promise.all(w.running.slice(0, 200).map((t) => get(`/v1/tasks/${t}`).catch(() => null)));
    if (!ctx.alive) return;
    replace(running, infos.filter(Boolean).map((t) => h('tr', {},
      h('td', {}, h('a', { href: `#/task/${t.id}` }, String(t.id))),
      h('td', {}, t.name || t.key || ''),
      h('td', {}, stateBadge(t.state)),
      h('td', {}, t.started_at ? new Date(t.started_at).toLocaleTimeString() : '—'),
      h('td', { class: 'num' }, `${t.attempt} of ${t.max_attempts}`))));
    if (infos.length === 0) replace(running, h('tr', {}, h('td', { colspan: 5 }, 'Nothing running.')));
  };
  await refresh();
  const soon = throttle(() => refresh().catch(() => {}), 1000);
  ctx.events(`worker=${encodeURIComponent(id)}`, { open: soon, worker: soon, task: soon });
  ctx.every(2000, soon);
}
