// One task: spec, state and pending reason, attempts timeline, usage, live
// stdout/stderr, cancel and retry.

import { h, s, replace, stateBadge, fmtTime, fmtDuration, fmtBytes, outcomeText, FINAL } from './dom.js';
import { get, post, followOutput, throttle } from './api.js';

// The attempts on one time axis: a bar per attempt from assignment (light) and start
// to end (or now).
function timeline(t) {
  if (t.attempts.length === 0) return h('p', {}, 'No attempt yet.');
  const now = Date.now();
  const t0 = Math.min(...t.attempts.map((a) => a.assigned_at));
  const t1 = Math.max(now > t0 ? Math.min(now, t.ended_at || now) : t0 + 1, ...t.attempts.map((a) => a.ended_at || a.started_at || a.assigned_at));
  const span = Math.max(1, t1 - t0);
  const W = 600, row = 22;
  const x = (ms) => (W * (ms - t0)) / span;
  const svg = s('svg', { viewBox: `0 0 ${W} ${row * t.attempts.length}`, class: 'timeline', role: 'img', 'aria-label': 'Attempts timeline' });
  t.attempts.forEach((a, i) => {
    const y = i * row + 3;
    const start = a.started_at || a.assigned_at;
    const end = a.ended_at || t1;
    svg.append(s('rect', { x: x(a.assigned_at), y, width: Math.max(1, x(start) - x(a.assigned_at)), height: row - 6, class: 'tl-wait' }));
    const cls = a.outcome ? (a.outcome.kind === 'exited' && a.outcome.code === 0 ? 'tl-ok' : 'tl-bad') : 'tl-run';
    svg.append(s('rect', { x: x(start), y, width: Math.max(2, x(end) - x(start)), height: row - 6, class: cls },
      s('title', {}, `attempt ${a.attempt} on ${a.worker_name}: ${outcomeText(a.outcome)}`)));
  });
  return svg;
}

function usageText(u) {
  if (!u) return '—';
  return `wall ${fmtDuration(u.wall_ms)} · CPU time ${fmtDuration(u.cpu_time_ms)} · peak memory ${fmtBytes(u.peak_memory_bytes)} · read ${fmtBytes(u.read_bytes)} · written ${fmtBytes(u.write_bytes)}`;
}

// A new task with the same spec; its dependencies pinned to the ids this one had (a key
// could name a newer task by now).
function copyOf(t) {
  const spec = JSON.parse(JSON.stringify(t.spec));
  delete spec.array;
  if (t.deps.length > 0) spec.after = t.deps;
  if (t.array_index !== null && t.array_index !== undefined) {
    spec.env = { ...(spec.env || {}), DROVER_TASK_INDEX: String(t.array_index), DROVER_TASK_COUNT: String(t.array_count) };
  }
  return spec;
}

export async function render(ctx, id) {
  const head = h('div');
  const info = h('div');
  const stdout = h('pre', { class: 'output', id: 'stdout', tabindex: 0, 'aria-label': 'stdout' });
  const stderr = h('pre', { class: 'output', id: 'stderr', tabindex: 0, 'aria-label': 'stderr' });
  const outHead = h('p', { class: 'small', id: 'output-attempt' });
  replace(ctx.main, head, info,
    h('section', {}, h('h2', {}, 'Output'), outHead,
      h('div', { class: 'outputs' },
        h('div', {}, h('h3', {}, 'stdout'), stdout),
        h('div', {}, h('h3', {}, 'stderr'), stderr))));

  // Output of the attempt shown, followed live; restarted when a new attempt begins.
  let following = 0;
  let stop = [];
  const follow = (task, attempt) => {
    if (attempt === following || attempt < 1) return;
    following = attempt;
    for (const f of stop) f();
    stdout.replaceChildren();
    stderr.replaceChildren();
    outHead.textContent = `Attempt ${attempt}`;
    stop = [
      followOutput(task, 'stdout', attempt, (t) => { if (t) stdout.append(document.createTextNode(t)); }),
      followOutput(task, 'stderr', attempt, (t) => { if (t) stderr.append(document.createTextNode(t)); }),
    ];
  };
  ctx.onCleanup(() => { for (const f of stop) f(); });

  let t;
  const refresh = async () => {
    t = await get(`/v1/tasks/${encodeURIComponent(id)}`);
    if (!ctx.alive) return;
    const final = FINAL.includes(t.state);
    const msg = h('span', { role: 'alert', class: 'error' });
    const cancel = final ? null : h('button', {
      type: 'button', id: 'cancel', onclick: async (ev) => {
        ev.target.disabled = true;
        try { await post(`/v1/tasks/${t.id}/cancel`); } catch (e) { msg.textContent = e.message; }
        soon();
      },
    }, 'Cancel');
    const retry = !final ? null : h('button', {
      type: 'button', id: 'retry', title: 'Submits a new task with the same spec', onclick: async (ev) => {
        ev.target.disabled = true;
        try {
          const r = await post('/v1/tasks', copyOf(t));
          location.hash = `#/task/${r.first}`;
        } catch (e) { msg.textContent = e.message; ev.target.disabled = false; }
      },
    }, 'Retry as a new task');
    replace(head,
      h('p', { class: 'crumbs' }, h('a', { href: '#/tasks' }, 'Tasks'), ' / ', h('a', { href: `#/job/${t.job}` }, `job ${t.job}`)),
      h('h1', {}, `Task ${t.id} `, h('span', { id: 'task-name' }, t.name || t.key || ''), ' ', stateBadge(t.state, { id: 'task-state' }),
        t.cached_from ? h('span', { class: 'badge cached', id: 'task-cached', title: `result taken from task ${t.cached_from}` }, 'cached') : null),
      h('p', { id: 'task-reason' }, t.reason || ''),
      t.cached_from ? h('p', { id: 'task-cached-from' }, 'Completed from the result cache: the result and output of ', h('a', { href: `#/task/${t.cached_from}` }, `task ${t.cached_from}`), '.') : null,
      h('p', { class: 'actions' }, cancel, retry, msg));
    const command = t.spec.shell ? t.spec.command.join(' ') : JSON.stringify(t.spec.command);
    const labels = Object.entries(t.spec.labels || {}).map(([k, v]) => h('span', { class: 'label' }, `${k}=${v}`));
    replace(info,
      h('div', { class: 'grid' },
        h('section', { class: 'card' }, h('h2', {}, 'Summary'), h('dl', {},
          h('dt', {}, 'Command'), h('dd', {}, h('code', { id: 'task-command' }, command)),
          h('dt', {}, 'Labels'), h('dd', { id: 'task-labels' }, labels.length ? labels : '—'),
          h('dt', {}, 'Worker'), h('dd', {}, t.worker || '—'),
          h('dt', {}, 'Attempt'), h('dd', {}, `${t.attempt} of ${t.max_attempts}`),
          h('dt', {}, 'Submitted'), h('dd', {}, fmtTime(t.submitted_at)),
          h('dt', {}, 'Started'), h('dd', {}, fmtTime(t.started_at)),
          h('dt', {}, 'Ended'), h('dd', {}, fmtTime(t.ended_at)),
          h('dt', {}, 'Duration'), h('dd', {}, fmtDuration(t.duration_ms)),
          h('dt', {}, 'Outcome'), h('dd', {}, outcomeText(t.outcome)),
          h('dt', {}, 'Usage'), h('dd', {}, usageText(t.usage)),
          h('dt', {}, 'Depends on'), h('dd', {}, t.deps.length ? t.deps.map((d) => h('a', { href: `#/task/${d}`, class: 'dep' }, String(d))) : '—'))),
        h('section', { class: 'card' }, h('h2', {}, 'Spec'), h('pre', { class: 'spec', id: 'task-spec' }, JSON.stringify(t.spec, null, 2)))),
      h('section', {}, h('h2', {}, 'Attempts'), timeline(t),
        h('table', { class: 'list', id: 'attempts' },
          h('thead', {}, h('tr', {}, ['Attempt', 'Worker', 'Assigned', 'Started', 'Ended', 'Outcome', 'Usage'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, t.attempts.map((a) => h('tr', {},
            h('td', { class: 'num' }, String(a.attempt)),
            h('td', {}, h('a', { href: `#/worker/${a.worker}` }, a.worker_name)),
            h('td', {}, fmtTime(a.assigned_at)),
            h('td', {}, fmtTime(a.started_at)),
            h('td', {}, fmtTime(a.ended_at)),
            h('td', {}, outcomeText(a.outcome), a.failure ? h('span', { class: 'small' }, ` (${JSON.stringify(a.failure)})`) : ''),
            h('td', {}, usageText(a.usage))))))));
    if (t.cached_from) {
      // Completed from the result cache: the output is that of the run it took.
      if (!following) {
        const o = await get(`/v1/tasks/${t.cached_from}`).catch(() => null);
        if (o && ctx.alive && !following) {
          follow(o.id, o.attempt);
          outHead.textContent = `Task ${o.id}, attempt ${o.attempt} (cached)`;
        }
      }
    } else if (t.started_at || final) follow(t.id, t.attempt);
  };
  await refresh();
  const soon = throttle(() => refresh().catch(() => {}), 500);
  // `open`: what changed between the first read and the stream's start.
  ctx.events(`task=${encodeURIComponent(t.id)}&type=task`, { open: soon, task: soon });
  // Usage of a running attempt is sampled, not an event.
  ctx.every(3000, () => { if (t && !FINAL.includes(t.state)) soon(); });
}
