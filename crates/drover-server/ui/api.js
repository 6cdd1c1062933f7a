// The JSON API, same origin, authenticated by the session cookie. Every request
// carries X-Drover-CSRF, which the server requires of cookie-authenticated changes.

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || 'http';
    this.field = e.field || null;
  }
}

// Called on a 401: the app shows the login form.
let onUnauthorized = () => {};
export function setUnauthorizedHandler(f) { onUnauthorized = f; }

export async function api(method, path, body) {
  const init = { method, headers: { 'X-Drover-CSRF': '1' }, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 401) {
    onUnauthorized();
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);
export const put = (path, body) => api('PUT', path, body);

export async function login(token) {
  const r = await fetch('/ui/login', {
    method: 'POST',
    headers: { 'X-Drover-CSRF': '1', 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }).toString(),
    credentials: 'same-origin',
  });
  if (!r.ok) {
    let data = null;
    try { data = await r.json(); } catch { data = null; }
    throw new ApiError(r.status, data);
  }
}

export async function logout() {
  await fetch('/ui/logout', { method: 'POST', headers: { 'X-Drover-CSRF': '1' }, credentials: 'same-origin' });
}

// Server-sent events (GET /v1/events) with filters; `handlers` maps a type (task,
// worker, job, policy, leader, reset) to a function of the parsed data. The browser
// reconnects by itself and resumes with Last-Event-ID. Returns a closer.
export function events(query, handlers) {
  const es = new EventSource(`/v1/events${query ? '?' + query : ''}`);
  for (const [type, f] of Object.entries(handlers)) {
    es.addEventListener(type, (m) => {
      let data = null;
      try { data = JSON.parse(m.data); } catch { return; }
      f(data);
    });
  }
  return () => es.close();
}

// Reads a task's output as it is written (follow=true streams until the attempt
// ends), handing each decoded piece to `onText`. Returns an abort function.
export function followOutput(task, stream, attempt, onText, onEnd) {
  const ctl = new AbortController();
  (async () => {
    try {
      const r = await fetch(`/v1/tasks/${encodeURIComponent(task)}/output?stream=${stream}&attempt=${attempt}&follow=true`, {
        headers: { 'X-Drover-CSRF': '1' }, credentials: 'same-origin', signal: ctl.signal,
      });
      if (!r.ok || !r.body) { onEnd && onEnd(); return; }
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        onText(dec.decode(value, { stream: true }));
      }
      onText(dec.decode());
    } catch (e) {
      if (e.name !== 'AbortError') onText('');
    }
    onEnd && onEnd();
  })();
  return () => ctl.abort();
}

// Calls `f` at most once per `ms`, trailing: for refreshing on bursts of events.
export function throttle(f, ms) {
  let timer = null;
  let again = false;
  const run = () => {
    timer = null;
    if (again) { again = false; f(); timer = setTimeout(run, ms); }
  };
  return () => {
    if (timer) { again = true; return; }
    f();
    timer = setTimeout(run, ms);
  };
}
