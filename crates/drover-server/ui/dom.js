// Building the page. Every string from the cluster (task names, labels, output,
// messages) enters the DOM as a text node or an attribute value, never as markup: that
// is the UI's defence against script injection (the CSP is the second one).

const SVG_NS = 'http://www.w3.org/2000/svg';

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

// h('a', {href: '#/task/1'}, 'text', child, ...)
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

export const FINAL = ['succeeded', 'failed', 'timed_out', 'cancelled', 'dependency_failed'];
export const STATES = ['waiting', 'ready', 'backoff', 'assigned', 'running', ...FINAL];

export function stateBadge(state, attrs = {}) {
  return h('span', { class: `badge st-${state}`, ...attrs }, state.replace('_', ' '));
}

export function fmtTime(ms) {
  if (ms === null || ms === undefined) return '—';
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour12: false }) + (Date.now() - ms > 86400000 ? ' ' + d.toLocaleDateString() : '');
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function fmtBytes(n) {
  if (!n) return '0 B';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
}

export function fmtCpu(milli) {
  return `${((milli || 0) / 1000).toFixed(2).replace(/\.?0+$/, '')} cpu`;
}

export function outcomeText(o) {
  if (!o) return '—';
  if (o.kind === 'exited') return `exit ${o.code}`;
  if (o.kind === 'signaled') return `signal ${o.signal}`;
  return o.kind.replace('_', ' ');
}

// A horizontal bar: parts [{value, class, label}] of a total.
export function bar(total, parts, label) {
  const el = h('div', { class: 'bar', role: 'img', 'aria-label': label });
  for (const p of parts) {
    const pct = total > 0 ? Math.min(100, (100 * p.value) / total) : 0;
    const seg = h('div', { class: `seg ${p.class}`, title: p.label });
    // Through the CSSOM: the CSP refuses style attributes.
    seg.style.width = `${pct.toFixed(1)}%`;
    el.append(seg);
  }
  return el;
}

export function errorBox(err) {
  return h('p', { class: 'error', role: 'alert' }, err && err.message ? err.message : String(err));
}
