// The console's calls to herald's HTTP API. The bearer token lives in this
// tab's sessionStorage and travels only in the Authorization header, never
// in a URL; live events come over SSE read with fetch (EventSource cannot
// send a header).
const KEY = 'herald.token';

export function token() {
  return sessionStorage.getItem(KEY) || '';
}
export function setToken(t) {
  if (t) sessionStorage.setItem(KEY, t);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra = {}) {
  const h = { ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

// fetch + JSON; throws ApiError with the server's error message.
export async function call(method, path, body) {
  const init = { method, headers: headers(), cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'unreachable', `the server does not answer (${e.message})`);
  }
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!r.ok) {
    // A token the server no longer knows: the page asks for one again.
    if (r.status === 401 && path !== '/api/whoami') window.dispatchEvent(new Event('herald-unauthorized'));
    const err = json && json.error ? json.error : { code: String(r.status), message: text || r.statusText };
    throw new ApiError(r.status, err.code, err.message);
  }
  return json;
}

export const get = (path) => call('GET', path);

export async function getText(path) {
  const r = await fetch(path, { headers: headers(), cache: 'no-store' });
  if (!r.ok) throw new ApiError(r.status, String(r.status), `${path} answered ${r.status}`);
  return r.text();
}

// Follows GET /api/events/stream from `offset`, calling onEvent(event) per
// event and onState('open'|'retrying'|'closed'). `query` narrows the stream
// on the server (type globs, an exact stream). Reconnects after a drop
// from the last position seen. Returns a function that stops it.
export function follow(offset, query, onEvent, onState) {
  const ctl = { stopped: false, abort: null };
  let next = offset;
  (async () => {
    while (!ctl.stopped) {
      const ac = new AbortController();
      ctl.abort = ac;
      try {
        const q = new URLSearchParams(query);
        q.set('offset', String(next));
        const r = await fetch(`/api/events/stream?${q}`, {
          headers: headers({ Accept: 'text/event-stream' }),
          signal: ac.signal,
          cache: 'no-store',
        });
        if (!r.ok) throw new ApiError(r.status, String(r.status), 'stream refused');
        onState('open');
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let end;
          while ((end = buf.indexOf('\n\n')) >= 0) {
            const frame = buf.slice(0, end);
            buf = buf.slice(end + 2);
            const data = frame
              .split('\n')
              .filter((l) => l.startsWith('data:'))
              .map((l) => l.slice(l.startsWith('data: ') ? 6 : 5))
              .join('\n');
            if (!data) continue;
            const e = JSON.parse(data);
            next = e.position + 1;
            onEvent(e);
          }
        }
      } catch (e) {
        if (ctl.stopped) break;
        if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
          onState('closed');
          return;
        }
      }
      if (ctl.stopped) break;
      onState('retrying');
      await new Promise((res) => setTimeout(res, 1000));
    }
    onState('closed');
  })();
  return () => {
    ctl.stopped = true;
    if (ctl.abort) ctl.abort.abort();
  };
}
