// A job: progress, and its tasks' DAG drawn as a graph whose nodes take the colour of
// their state, live.

import { h, s, replace, bar, stateBadge, FINAL, STATES } from './dom.js';
import { get, post, throttle } from './api.js';

// Nodes drawn at most: past this the page lists the tasks instead (a graph of
// thousands of nodes is not readable anyway).
const MAX_NODES = 300;

// Columns by depth (longest chain of dependencies inside the job), rows in id order.
function layout(tasks) {
  const byId = new Map(tasks.map((t) => [t.id, t]));
  const depth = new Map();
  const depthOf = (t) => {
    if (depth.has(t.id)) return depth.get(t.id);
    depth.set(t.id, 0); // ids only go back, so there is no cycle; this guards anyway
    let d = 0;
    for (const p of t.deps) if (byId.has(p)) d = Math.max(d, depthOf(byId.get(p)) + 1);
    depth.set(t.id, d);
    return d;
  };
  const cols = [];
  for (const t of tasks) {
    const d = depthOf(t);
    (cols[d] = cols[d] || []).push(t);
  }
  return cols;
}

async function fetchAll(ids, each) {
  const out = [];
  for (let i = 0; i < ids.length; i += 8) {
    out.push(...(await Promise.all(ids.slice(i, i + 8).map(each))));
  }
  return out;
}

function drawDag(tasks, nodes) {
  const cols = layout(tasks);
  const NW = 150, NH = 34, GX = 70, GY = 14, PAD = 10;
  const rows = Math.max(...cols.map((c) => c.length));
  const W = PAD * 2 + cols.length * NW + (cols.length - 1) * GX;
  const H = PAD * 2 + rows * NH + (rows - 1) * GY;
  const pos = new Map();
  cols.forEach((col, ci) => col.forEach((t, ri) => {
    const offset = ((rows - col.length) * (NH + GY)) / 2;
    pos.set(t.id, { x: PAD + ci * (NW + GX), y: PAD + offset + ri * (NH + GY) });
  }));
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: 'dag', id: 'dag', role: 'group', 'aria-label': 'Dependency graph' },
    s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      s('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'dag-arrow' }))));
  for (const t of tasks) {
    for (const p of t.deps) {
      const a = pos.get(p), b = pos.get(t.id);
      if (!a || !b) continue;
      const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2, mx = (x1 + x2) / 2;
      svg.append(s('path', { d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`, class: 'dag-edge', 'marker-end': 'url(#arrow)' }));
    }
  }
  for (const t of tasks) {
    const p = pos.get(t.id);
    const label = t.key ? (t.array_index !== null && t.array_index !== undefined ? `${t.key}[${t.array_index}]` : t.key) : (t.name || `task ${t.id}`);
    const rect = s('rect', { x: p.x, y: p.y, width: NW, height: NH, rx: 6, class: `dag-node st-${t.state}` });
    const text = s('text', { x: p.x + 8, y: p.y + 14, class: 'dag-label' }, label.length > 20 ? label.slice(0, 19) + '…' : label);
    const sub = s('text', { x: p.x + 8, y: p.y + 28, class: 'dag-sub' }, `#${t.id} ${t.state.replace('_', ' ')}`);
    const link = s('a', { href: `#/task/${t.id}`, 'data-task': String(t.id), 'aria-label': `task ${t.id} ${label}: ${t.state}` }, s('title', {}, `${label} (task ${t.id}): ${t.state}`), rect, text, sub);
    nodes.set(t.id, { rect, sub, link, label, state: t.state });
    svg.append(link);
  }
  return svg;
}

export async function render(ctx, id) {
  const head = h('div');
  const graph = h('div', { class: 'dag-wrap' });
  replace(ctx.main, head, h('h2', {}, 'Graph'), graph);
  const nodes = new Map();

  const refreshHead = async () => {
    const j = await get(`/v1/jobs/${id}`);
    if (!ctx.alive) return;
    const done = FINAL.reduce((a, st) => a + (j.states[st] || 0), 0);
    const ok = j.states.succeeded || 0;
    const msg = h('span', { role: 'alert', class: 'error' });
    replace(head,
      h('p', { class: 'crumbs' }, h('a', { href: '#/tasks' }, 'Tasks'), ' / ', h('a', { href: `#/tasks?job=${j.id}` }, 'its tasks')),
      h('h1', {}, `Job ${j.id} `, j.name),
      h('p', { id: 'job-progress' }, `${done} of ${j.count} tasks done (${ok} succeeded)`, j.finished ? (j.succeeded ? ' — finished, all succeeded' : ' — finished') : ''),
      bar(j.count, [{ value: ok, class: 'ok', label: 'succeeded' }, { value: done - ok, class: 'bad', label: 'failed or cancelled' }], 'progress'),
      h('p', {}, STATES.filter((st) => j.states[st]).map((st) => h('span', { class: 'state-count' }, stateBadge(st), ` ${j.states[st]} `))),
      j.finished ? null : h('p', {}, h('button', {
        type: 'button', id: 'cancel-job', onclick: async (ev) => {
          ev.target.disabled = true;
          try { await post(`/v1/jobs/${j.id}/cancel`); } catch (e) { msg.textContent = e.message; }
        },
      }, 'Cancel job'), msg));
    return j;
  };
  const j = await refreshHead();
  if (!ctx.alive) return;
  if (j.count > MAX_NODES) {
    replace(graph, h('p', {}, `This job has ${j.count} tasks; the graph is drawn for jobs of up to ${MAX_NODES}. `, h('a', { href: `#/tasks?job=${j.id}` }, 'List its tasks')));
  } else {
    const ids = Array.from({ length: j.count }, (_, i) => j.first + i);
    const tasks = (await fetchAll(ids, (t) => get(`/v1/tasks/${t}`).catch(() => null))).filter(Boolean);
    if (!ctx.alive) return;
    replace(graph, drawDag(tasks, nodes));
  }
  const soon = throttle(() => refreshHead().catch(() => {}), 500);
  const paint = (task, state) => {
    const n = nodes.get(task);
    if (!n) return;
    n.state = state;
    n.rect.setAttribute('class', `dag-node st-${state}`);
    n.sub.textContent = `#${task} ${state.replace('_', ' ')}`;
    n.link.setAttribute('aria-label', `task ${task} ${n.label}: ${state}`);
  };
  // What changed between drawing and the stream's start: read the states again once it
  // is open. A final state is never painted over (a task does not leave one), so an
  // event that arrived before this answer is not undone by it.
  const catchUp = async () => {
    if (nodes.size === 0) return;
    const page = await get(`/v1/tasks?job=${encodeURIComponent(id)}&limit=1000`);
    if (!ctx.alive) return;
    for (const t of page.tasks) {
      const n = nodes.get(t.id);
      if (n && !FINAL.includes(n.state)) paint(t.id, t.state);
    }
    soon();
  };
  ctx.events(`job=${encodeURIComponent(id)}&type=task,job`, {
    open: () => { catchUp().catch(() => {}); },
    task: (e) => { paint(e.task, e.state); soon(); },
    job: soon,
  });
}
