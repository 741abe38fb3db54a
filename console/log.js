// The log, newest first: pages by position (GET /api/events/newest, which
// never loads the whole log), filters by type and stream glob, and a live
// tail over SSE that can be paused.
import { follow, get } from './api.js';
import { globMatch, h, hashQuery, notice, num, short, time } from './util.js';

const LIMIT = 50;

export function renderLog(main) {
  document.title = 'Log · herald console';
  const q = hashQuery();
  const filter = { type: q.get('type') || '', stream: q.get('stream') || '' };
  const before = q.get('before') ? Number(q.get('before')) : 0;

  const typeInput = h('input', { type: 'search', id: 'f-type', name: 'type', value: filter.type, placeholder: 'order.*' });
  const streamInput = h('input', { type: 'search', id: 'f-stream', name: 'stream', value: filter.stream, placeholder: 'order-4*' });
  const form = h(
    'form',
    {
      class: 'row',
      role: 'search',
      'aria-label': 'Filter the log',
      onsubmit: (ev) => {
        ev.preventDefault();
        const p = new URLSearchParams();
        if (typeInput.value.trim()) p.set('type', typeInput.value.trim());
        if (streamInput.value.trim()) p.set('stream', streamInput.value.trim());
        location.hash = `#/log${p.toString() ? `?${p}` : ''}`;
      },
    },
    h('label', { for: 'f-type' }, 'Type (glob)', typeInput),
    h('label', { for: 'f-stream' }, 'Stream (glob)', streamInput),
    h('button', { type: 'submit', class: 'primary' }, 'Filter'),
    filter.type || filter.stream ? h('a', { href: '#/' }, 'Clear filters') : null,
  );

  const dot = h('span', { class: 'dot', 'aria-hidden': 'true' });
  const liveText = h('span', {}, 'Live: off');
  const liveBtn = h('button', { type: 'button', id: 'live-toggle', 'aria-pressed': 'false' }, 'Pause');
  const status = h('div', { 'aria-live': 'polite', class: 'muted', id: 'log-status' });
  const tbody = h('tbody', { id: 'log-rows' });
  const tableEl = h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { id: 'log-table' },
      h('caption', {}, 'Events, newest first'),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', { scope: 'col', class: 'num' }, 'Position'),
          h('th', { scope: 'col' }, 'Type'),
          h('th', { scope: 'col' }, 'Stream'),
          h('th', { scope: 'col', class: 'num hide-narrow' }, 'Version'),
          h('th', { scope: 'col', class: 'hide-narrow' }, 'Occurred'),
          h('th', { scope: 'col' }, 'Event'),
        ),
      ),
      tbody,
    ),
  );
  const older = h('a', { id: 'older', href: '#' }, 'Older →');
  const posInput = h('input', { type: 'text', inputmode: 'numeric', id: 'goto', name: 'position', size: '10', pattern: '[0-9]+' });
  const gotoForm = h(
    'form',
    {
      class: 'row',
      onsubmit: (ev) => {
        ev.preventDefault();
        const n = Number(posInput.value.trim());
        if (!Number.isInteger(n) || n < 1) return;
        const p = new URLSearchParams();
        if (filter.type) p.set('type', filter.type);
        if (filter.stream) p.set('stream', filter.stream);
        p.set('before', String(n + 1));
        location.hash = `#/log?${p}`;
      },
    },
    h('label', { for: 'goto' }, 'From position', posInput),
    h('button', { type: 'submit' }, 'Go'),
  );
  const pager = h('div', { class: 'pager' }, before ? h('a', { href: newestHref(filter) }, '← Newest') : null, older, gotoForm);
  const root = h(
    'section',
    { 'aria-labelledby': 'log-title' },
    h('h1', { id: 'log-title' }, 'Log'),
    form,
    h('div', { class: 'row' }, h('span', { class: 'live' }, dot, liveText), liveBtn, status),
    tableEl,
    pager,
  );
  main.replaceChildren(root);

  let nextBefore = null;
  let stop = null;
  let head = 0;
  let paused = before !== 0; // an older page is not live

  function row(e, fresh) {
    return h(
      'tr',
      { class: fresh ? 'fresh' : null, 'data-position': e.position },
      h('td', { class: 'num' }, num(e.position)),
      h('td', {}, e.type),
      h('td', {}, h('a', { href: `#/streams/${encodeURIComponent(e.stream)}` }, e.stream)),
      h('td', { class: 'num hide-narrow' }, e.stream_version),
      h('td', { class: 'hide-narrow' }, time(e.occurred_at)),
      h('td', { class: 'mono' }, h('a', { href: `#/events/${e.id}`, 'aria-label': `event ${e.id}` }, short(e.id))),
    );
  }
  function setOlder() {
    if (nextBefore) {
      const p = new URLSearchParams();
      if (filter.type) p.set('type', filter.type);
      if (filter.stream) p.set('stream', filter.stream);
      p.set('before', nextBefore);
      older.setAttribute('href', `#/log?${p}`);
      older.hidden = false;
    } else {
      older.hidden = true;
    }
  }
  function setLive(on) {
    dot.classList.toggle('on', on);
    liveText.textContent = on ? 'Live: on' : paused ? 'Live: paused' : 'Live: off';
  }
  function startTail() {
    if (stop) return;
    // The server filters what it can: type globs, an exact stream name.
    const query = {};
    if (filter.type) query.type = filter.type;
    if (filter.stream && !/[*?]/.test(filter.stream)) query.stream = filter.stream;
    stop = follow(
      head + 1,
      query,
      (e) => {
        head = Math.max(head, e.position);
        if (filter.type && !globMatch(filter.type, e.type)) return;
        if (filter.stream && !globMatch(filter.stream, e.stream)) return;
        tbody.prepend(row(e, true));
        while (tbody.children.length > LIMIT) tbody.lastElementChild.remove();
        // The oldest row shown is where the next older page starts.
        const last = tbody.lastElementChild;
        if (last && tbody.children.length >= LIMIT) {
          nextBefore = Number(last.dataset.position);
          setOlder();
        }
        status.textContent = '';
      },
      (state) => setLive(state === 'open'),
    );
  }
  function stopTail() {
    if (stop) stop();
    stop = null;
    setLive(false);
  }
  liveBtn.addEventListener('click', () => {
    if (before) {
      location.hash = newestHref(filter);
      return;
    }
    paused = !paused;
    liveBtn.textContent = paused ? 'Resume' : 'Pause';
    liveBtn.setAttribute('aria-pressed', paused ? 'true' : 'false');
    if (paused) {
      stopTail();
    } else {
      load();
    }
  });
  if (before) {
    liveBtn.textContent = 'Go live';
  }

  async function load() {
    const p = new URLSearchParams({ limit: String(LIMIT) });
    if (before) p.set('before', before);
    if (filter.type) p.set('type', filter.type);
    if (filter.stream) p.set('stream', filter.stream);
    const t0 = performance.now();
    try {
      const page = await get(`/api/events/newest?${p}`);
      stopTail();
      head = page.head;
      nextBefore = page.next_before;
      tbody.replaceChildren(...page.events.map((e) => row(e, false)));
      setOlder();
      const ms = Math.round(performance.now() - t0);
      root.dataset.loadedMs = String(ms);
      status.textContent =
        page.events.length === 0
          ? nextBefore
            ? `No match among the newest positions looked at; try "Older".`
            : 'No events.'
          : `Head ${num(page.head)} · ${page.events.length} shown`;
      if (!paused) startTail();
      else setLive(false);
    } catch (e) {
      root.append(notice('bad', `Could not read the log: ${e.message}`));
    }
  }
  load();
  return () => stopTail();
}

function newestHref(filter) {
  const p = new URLSearchParams();
  if (filter.type) p.set('type', filter.type);
  if (filter.stream) p.set('stream', filter.stream);
  return `#/log${p.toString() ? `?${p}` : ''}`;
}
