// The herald console: a page of `herald serve` (docs/console.md). Hash
// routes, one module per page:
//   #/                      the log, newest first (log.js)
//   #/events/ID             one event and its status on every route (event.js)
//   #/streams/NAME          one stream in order (event.js)
//   #/routes                routes: lag, rate, errors, hold-ups (routes.js)
//   #/routes/NAME/parked    a route's parked events and actions (parked.js)
// What the caller's token may do comes from GET /api/whoami; pages hide
// what it does not allow (the server refuses it anyway).
import { ApiError, get, setToken, token } from './api.js';
import { renderLog } from './log.js';
import { renderEvent, renderStream } from './event.js';
import { renderRoutes } from './routes.js';
import { renderParked } from './parked.js';
import { session } from './session.js';
import { h, notice } from './util.js';

const main = document.getElementById('main');
const who = document.getElementById('who');

let cleanup = null; // the current page's stop function (timers, streams)

function showWho() {
  who.replaceChildren();
  if (!session.tokens) {
    who.append(h('span', {}, 'no tokens configured: every action allowed'));
    return;
  }
  if (!session.name && session.scopes.length === 0) return;
  who.append(
    h('span', {}, 'Token ', h('strong', {}, session.name || '(unnamed)'), ': ', session.scopes.join(', ') || 'no scope'),
    h(
      'button',
      {
        type: 'button',
        onclick: () => {
          setToken('');
          start();
        },
      },
      'Sign out',
    ),
  );
}

function askToken(message) {
  if (cleanup) cleanup();
  cleanup = null;
  document.title = 'Token needed · herald console';
  const input = h('input', { type: 'password', id: 'token', name: 'token', autocomplete: 'off', required: true });
  const form = h(
    'form',
    {
      class: 'row',
      onsubmit: (ev) => {
        ev.preventDefault();
        setToken(input.value.trim());
        start();
      },
    },
    h('label', { for: 'token' }, 'Bearer token', input),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
  );
  main.replaceChildren(
    h('h1', {}, 'This server needs a token'),
    h(
      'p',
      {},
      'Paste one of the tokens of the server\u2019s [[server.tokens]]. It is kept in this tab only ' +
        '(session storage) and sent in the Authorization header, never in a URL.',
    ),
    message ? notice('bad', message) : null,
    form,
  );
  input.focus();
}

async function start() {
  try {
    const me = await get('/api/whoami');
    Object.assign(session, me);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      setToken('');
      Object.assign(session, { tokens: true, name: null, scopes: [] });
      showWho();
      askToken('That token is not valid here.');
      return;
    }
    main.replaceChildren(notice('bad', `Cannot reach the server: ${e.message}`));
    return;
  }
  showWho();
  if (session.tokens && !token()) {
    askToken('');
    return;
  }
  route();
}

function route() {
  if (session.tokens && !token()) return askToken('');
  if (cleanup) cleanup();
  cleanup = null;
  const hash = location.hash.replace(/^#/, '') || '/';
  const path = hash.split('?')[0];
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  let page = 'log';
  let render;
  if (parts.length === 0 || parts[0] === 'log') {
    render = () => renderLog(main);
  } else if (parts[0] === 'events' && parts.length === 2) {
    render = () => renderEvent(main, parts[1]);
  } else if (parts[0] === 'streams' && parts.length === 2) {
    render = () => renderStream(main, parts[1]);
  } else if (parts[0] === 'routes' && parts.length === 1) {
    page = 'routes';
    render = () => renderRoutes(main);
  } else if (parts[0] === 'routes' && parts.length === 3 && parts[2] === 'parked') {
    page = 'routes';
    render = () => renderParked(main, parts[1]);
  } else {
    render = () => {
      document.title = 'Not found · herald console';
      main.replaceChildren(h('h1', {}, 'No such page'), h('p', {}, h('a', { href: '#/' }, 'Back to the log')));
      return null;
    };
  }
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.nav === page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  cleanup = render() || null;
}

window.addEventListener('hashchange', () => {
  route();
  main.focus({ preventScroll: true });
});
// A request refused for its token (it expired from the config) asks again.
window.addEventListener('herald-unauthorized', () => {
  setToken('');
  Object.assign(session, { name: null, scopes: [] });
  showWho();
  askToken('The server no longer accepts that token.');
});
start();
