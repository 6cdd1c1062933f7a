// The shell: hash routes (#/tasks, #/task/12, ...), the login form, and the life of a
// view (its event streams and timers end when another view opens).

import { h, replace } from './dom.js';
import * as api from './api.js';
import * as dashboard from './dashboard.js';
import * as workers from './workers.js';
import * as tasks from './tasks.js';
import * as task from './task.js';
import * as job from './job.js';
import * as submit from './submit.js';
import * as policy from './policy.js';

const main = document.getElementById('main');
const logoutButton = document.getElementById('logout');

// Each route: a pattern on the path part of the hash, and the view rendering it.
const ROUTES = [
  [/^\/?$/, 'dashboard', (ctx) => dashboard.render(ctx)],
  [/^\/workers$/, 'workers', (ctx) => workers.renderList(ctx)],
  [/^\/worker\/(\d+)$/, 'workers', (ctx, m) => workers.renderOne(ctx, m[1])],
  [/^\/tasks$/, 'tasks', (ctx) => tasks.render(ctx)],
  [/^\/task\/([^/]+)$/, 'tasks', (ctx, m) => task.render(ctx, decodeURIComponent(m[1]))],
  [/^\/job\/(\d+)$/, 'tasks', (ctx, m) => job.render(ctx, m[1])],
  [/^\/submit$/, 'submit', (ctx) => submit.render(ctx)],
  [/^\/policy$/, 'policy', (ctx) => policy.render(ctx)],
  [/^\/login$/, null, (ctx) => renderLogin(ctx)],
];

let current = null;

// What a view gets: the main element, the query of the hash, and ways to register
// what must stop when the view goes away.
function makeContext(query) {
  const cleanups = [];
  return {
    main,
    query,
    alive: true,
    onCleanup(f) { cleanups.push(f); },
    events(q, handlers) { cleanups.push(api.events(q, handlers)); },
    every(ms, f) { const t = setInterval(f, ms); cleanups.push(() => clearInterval(t)); },
    close() { this.alive = false; for (const f of cleanups.splice(0)) f(); },
  };
}

function route() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = raw.split('?');
  if (current) current.close();
  const ctx = makeContext(new URLSearchParams(qs || ''));
  current = ctx;
  for (const [re, nav, view] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll('#nav a')) {
      if (a.dataset.route === nav) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    replace(main);
    Promise.resolve(view(ctx, m)).then(() => {
      // For keyboard and screen-reader users: the new page, unless the view focused
      // one of its own fields.
      if (ctx.alive && !main.contains(document.activeElement)) main.focus({ preventScroll: true });
    }).catch((e) => {
      if (ctx.alive && e.status !== 401) replace(main, h('p', { class: 'error', role: 'alert' }, e.message || String(e)));
    });
    return;
  }
  replace(main, h('h1', {}, 'Not found'), h('p', {}, 'No page at this address. '), h('a', { href: '#/' }, 'Dashboard'));
}

// Where to go back to after logging in.
let afterLogin = '#/';

api.setUnauthorizedHandler(() => {
  if (location.hash.startsWith('#/login')) return;
  afterLogin = location.hash || '#/';
  logoutButton.hidden = true;
  location.hash = '#/login';
});

function renderLogin(ctx) {
  logoutButton.hidden = true;
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true, 'aria-describedby': 'token-error' });
  const err = h('p', { id: 'token-error', class: 'field-error', role: 'alert' });
  const form = h('form', { class: 'login', id: 'login-form' },
    h('h1', {}, 'Log in'),
    h('p', {}, 'Paste the cluster token (the file ', h('code', {}, 'server/token'), ' in the server\'s data directory).'),
    h('label', { for: 'token' }, 'Cluster token'), input, err,
    h('button', { type: 'submit', id: 'login-submit' }, 'Log in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    try {
      await api.login(input.value);
      logoutButton.hidden = false;
      location.hash = afterLogin.startsWith('#/login') ? '#/' : afterLogin;
    } catch (e) {
      err.textContent = e.message;
    }
  });
  replace(ctx.main, form);
  input.focus();
}

logoutButton.addEventListener('click', async () => {
  await api.logout();
  afterLogin = '#/';
  location.hash = '#/login';
});

window.addEventListener('hashchange', route);
// Whether the cookie (HttpOnly, so unseen here) still opens the API.
api.get('/v1/health').then(() => api.get('/v1/policy')).then(() => { logoutButton.hidden = false; }).catch(() => {});
route();
