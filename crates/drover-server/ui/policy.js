// The scheduling policy: what is in force, and switching it (PUT /v1/policy with the
// current settings changed, so the fields not on this form keep their values).

import { h, replace } from './dom.js';
import { get, put } from './api.js';

const QUEUES = [['fcfs', 'First come, first served'], ['priority', 'Priority (with aging)'], ['shortest_job_first', 'Shortest job first'], ['fair_share', 'Fair share'], ['multifactor', 'Multifactor (weights: drover policy --priority-weights)']];
const PLACEMENTS = [['bin_pack', 'Bin pack'], ['spread', 'Spread'], ['round_robin', 'Round robin']];

export async function render(ctx) {
  const current = h('pre', { class: 'spec', id: 'policy-current' });
  const body = h('div');
  replace(ctx.main, h('h1', {}, 'Policy'), body, h('h2', {}, 'In force'), current);
  let policy;
  const show = (p) => {
    policy = p;
    current.textContent = JSON.stringify(p, null, 2);
  };
  show(await get('/v1/policy'));
  if (!ctx.alive) return;
  const queue = h('select', { id: 'p-queue', name: 'queue' }, QUEUES.map(([v, t]) => h('option', { value: v, selected: v === policy.queue.kind }, t)));
  const placement = h('select', { id: 'p-placement', name: 'placement' }, PLACEMENTS.map(([v, t]) => h('option', { value: v, selected: v === policy.placement }, t)));
  const preemption = h('input', { type: 'checkbox', id: 'p-preemption', name: 'preemption', checked: policy.preemption });
  const prefetch = h('input', { type: 'number', id: 'p-prefetch', name: 'prefetch', min: 0, value: policy.prefetch_per_worker });
  const msg = h('p', { role: 'status', id: 'policy-msg' });
  const form = h('form', { class: 'form', id: 'policy-form' },
    h('div', { class: 'form-cols' },
      h('div', { class: 'form-row' }, h('label', { for: 'p-queue' }, 'Queue'), queue),
      h('div', { class: 'form-row' }, h('label', { for: 'p-placement' }, 'Placement'), placement),
      h('div', { class: 'form-row' }, h('label', { for: 'p-prefetch' }, 'Prefetch per worker'), prefetch)),
    h('div', { class: 'form-row check' }, preemption, h('label', { for: 'p-preemption' }, 'Preemption')),
    h('button', { type: 'submit', id: 'policy-submit' }, 'Switch'), msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.textContent = '';
    const next = { ...policy, placement: placement.value, preemption: preemption.checked };
    const n = Number(prefetch.value);
    next.prefetch_per_worker = Number.isInteger(n) ? n : prefetch.value;
    if (queue.value !== policy.queue.kind) next.queue = { kind: queue.value };
    try {
      show(await put('/v1/policy', next));
      msg.textContent = 'Switched.';
    } catch (e) {
      msg.textContent = e.field ? `${e.field}: ${e.message}` : e.message;
    }
  });
  replace(body, form);
  ctx.events('type=policy', {
    open: () => { get('/v1/policy').then(show).catch(() => {}); },
    policy: (e) => show(e.policy),
  });
}
