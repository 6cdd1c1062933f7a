// The cluster at a glance: capacity vs allocation vs usage, tasks by state,
// throughput, workers, leader.

import { h, s, replace, bar, stateBadge, fmtCpu, fmtBytes, STATES, FINAL } from './dom.js';
import { get, throttle } from './api.js';

// Tasks that reached a final state, per 10 s bucket of the log's time, kept across
// views. On a small cluster the stream starts from the oldest event the server retains
// (since=0-0), so the chart shows the last minutes at once; past HISTORY_MAX tasks that
// replay (up to the server's whole buffer, 100,000 events by default) costs more than
// it shows, and the chart counts from the page's opening instead.
const HISTORY_MAX = 20000;
const BUCKET_MS = 10000;
const BUCKETS = 30; // five minutes
const finished = new Map(); // bucket start -> count
let counting = null;

function startCounting(totalTasks) {
  // A stream refused (401 before logging in) is closed for good: open a new one.
  if (counting && counting.readyState !== EventSource.CLOSED) return;
  finished.clear();
  counting = new EventSource(`/v1/events?type=task${totalTasks <= HISTORY_MAX ? '&since=0-0' : ''}`);
  counting.addEventListener('task', (m) => {
    let e;
    try { e = JSON.parse(m.data); } catch { return; }
    if (!FINAL.includes(e.state)) return;
    const oldest = Date.now() - BUCKET_MS * (BUCKETS + 1);
    if (e.at < oldest) return;
    const b = Math.floor(e.at / BUCKET_MS) * BUCKET_MS;
    finished.set(b, (finished.get(b) || 0) + 1);
    for (const k of finished.keys()) if (k < oldest) finished.delete(k);
  });
}

function chart() {
  const now = Math.floor(Date.now() / BUCKET_MS) * BUCKET_MS;
  const values = [];
  for (let i = BUCKETS - 1; i >= 0; i--) values.push(finished.get(now - i * BUCKET_MS) || 0);
  const max = Math.max(1, ...values);
  const W = 1200, H = 120, bw = W / BUCKETS;
  const total = values.reduce((a, b) => a + b, 0);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H + 16}`, class: 'chart', role: 'img', 'aria-label': `${total} tasks finished in the last five minutes` });
  values.forEach((v, i) => {
    const bh = (H * v) / max;
    svg.append(s('rect', { x: i * bw + 1, y: H - bh, width: bw - 2, height: bh, class: 'chart-bar' }, s('title', {}, `${v} finished`)));
  });
  svg.append(s('line', { x1: 0, y1: H, x2: W, y2: H, class: 'chart-axis' }));
  svg.append(s('text', { x: 0, y: H + 14, class: 'chart-label' }, '−5 min'));
  svg.append(s('text', { x: W, y: H + 14, class: 'chart-label', 'text-anchor': 'end' }, 'now'));
  svg.append(s('text', { x: 4, y: 12, class: 'chart-label' }, `max ${max} per 10 s`));
  return svg;
}

function resourceRow(name, cap, alloc, used, fmt) {
  return h('div', { class: 'res' },
    h('div', { class: 'res-head' }, h('strong', {}, name), ` capacity ${fmt(cap)} · allocated ${fmt(alloc)} · in use on the hosts ${fmt(used)}`),
    bar(cap, [{ value: alloc, class: 'alloc', label: `allocated ${fmt(alloc)}` }], `${name} allocated ${fmt(alloc)} of ${fmt(cap)}`),
    bar(cap, [{ value: used, class: 'used', label: `in use ${fmt(used)}` }], `${name} in use ${fmt(used)} of ${fmt(cap)}`));
}

export async function render(ctx) {
  const body = h('div', { class: 'grid' });
  replace(ctx.main, h('h1', {}, 'Dashboard'), body);
  const refresh = async () => {
    const [cl, ws] = await Promise.all([get('/v1/cluster'), get('/v1/workers')]);
    if (!ctx.alive) return;
    const live = ws.filter((w) => w.state !== 'lost');
    const sum = (f) => live.reduce((a, w) => a + f(w), 0);
    const totalTasks = STATES.reduce((a, st) => a + (cl.tasks[st] || 0), 0);
    startCounting(totalTasks);
    replace(body,
      h('section', { class: 'card', id: 'card-cluster' },
        h('h2', {}, 'Cluster'),
        h('dl', {},
          h('dt', {}, 'Leader'), h('dd', { id: 'leader' }, cl.leader === null ? 'none (election)' : `node ${cl.leader}`),
          h('dt', {}, 'Term'), h('dd', {}, String(cl.term)),
          h('dt', {}, 'This server'), h('dd', {}, `node ${cl.node_id}, version ${cl.version}`),
          h('dt', {}, 'Workers up'), h('dd', { id: 'workers-up' }, String(cl.workers_active + cl.workers_draining), cl.workers_draining ? ` (${cl.workers_draining} draining)` : ''),
          h('dt', {}, 'Workers lost'), h('dd', { id: 'workers-lost' }, String(cl.workers_lost)),
          h('dt', {}, 'Policy'), h('dd', {}, `${cl.policy.queue.kind}, ${cl.policy.placement}`))),
      h('section', { class: 'card', id: 'card-resources' },
        h('h2', {}, 'Resources'),
        resourceRow('CPU', sum((w) => w.capacity.cpu_milli), sum((w) => w.allocated.cpu_milli), sum((w) => w.usage.cpu_milli), fmtCpu),
        resourceRow('Memory', sum((w) => w.capacity.memory_bytes), sum((w) => w.allocated.memory_bytes), sum((w) => w.usage.memory_bytes), fmtBytes),
        h('p', { class: 'legend' }, h('span', { class: 'swatch alloc' }), ' allocated ', h('span', { class: 'swatch used' }), ' in use')),
      h('section', { class: 'card', id: 'card-states' },
        h('h2', {}, `Tasks (${totalTasks})`),
        h('table', { class: 'compact' },
          h('tbody', {}, STATES.map((st) => h('tr', {},
            h('td', {}, h('a', { href: `#/tasks?state=${st}` }, stateBadge(st))),
            h('td', { class: 'num', id: `count-${st}` }, String(cl.tasks[st] || 0))))))),
      h('section', { class: 'card wide', id: 'card-throughput' },
        h('h2', {}, 'Throughput'),
        h('p', { class: 'legend' }, totalTasks <= HISTORY_MAX ? 'Tasks finished per 10 seconds over the last five minutes, live.' : 'Tasks finished per 10 seconds, counted live since this page was opened.'),
        chart()));
  };
  await refresh();
  const soon = throttle(() => refresh().catch(() => {}), 1000);
  ctx.events('type=task,worker,policy,leader', { open: soon, task: soon, worker: soon, policy: soon, leader: soon });
  // Usage samples are not events: refreshed every 2 s.
  ctx.every(2000, soon);
}
