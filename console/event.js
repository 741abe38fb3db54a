// One event (GET /api/events/{id}: payload, metadata, position, stream
// version and its status on every route) and one stream in order
// (GET /api/streams/{stream}).
import { call, get } from './api.js';
import { can } from './session.js';
import { badge, confirmAction, h, hashQuery, notice, num, short, table, time } from './util.js';

function isJson(ct) {
  const base = (ct || '').split(';')[0].trim().toLowerCase();
  return base === 'application/json' || (base.startsWith('application/') && base.endsWith('+json'));
}

function hexDump(bytes) {
  const lines = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const chunk = bytes.slice(i, i + 16);
    const hex = Array.from(chunk, (b) => b.toString(16).padStart(2, '0')).join(' ');
    const text = Array.from(chunk, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${i.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${text}`);
  }
  return lines.join('\n');
}

export function payloadView(e) {
  if (e.payload_base64 !== undefined) {
    const raw = atob(e.payload_base64);
    const bytes = Uint8Array.from(raw, (c) => c.charCodeAt(0));
    return [h('p', { class: 'muted' }, `${bytes.length} bytes, not UTF-8 text: hex`), h('pre', { id: 'payload', tabindex: '0' }, hexDump(bytes))];
  }
  if (isJson(e.content_type)) {
    return [h('pre', { id: 'payload', tabindex: '0' }, JSON.stringify(e.payload, null, 2))];
  }
  return [h('pre', { id: 'payload', tabindex: '0' }, String(e.payload))];
}

export function renderEvent(main, id) {
  document.title = `Event ${short(id)} · herald console`;
  const root = h('section', { 'aria-labelledby': 'ev-title' }, h('h1', { id: 'ev-title' }, 'Event ', h('span', { class: 'mono' }, id)));
  main.replaceChildren(root);
  const results = h('div', { 'aria-live': 'polite' });

  async function load() {
    let e;
    try {
      e = await get(`/api/events/${encodeURIComponent(id)}`);
    } catch (err) {
      root.append(notice('bad', err.status === 404 ? 'No event with this id.' : `Could not read the event: ${err.message}`));
      return;
    }
    const routes = e.routes || [];
    const admin = can('admin');
    const routeRows = routes.map((r) =>
      h(
        'tr',
        { 'data-route': r.route },
        h('td', {}, h('a', { href: `#/routes/${encodeURIComponent(r.route)}/parked` }, r.route)),
        h('td', {}, badge(r.status)),
        h('td', { class: 'num' }, r.attempts ?? ''),
        h('td', { class: 'err' }, r.error || ''),
        h('td', {}, time(r.first_failed_at)),
        h('td', {}, time(r.parked_at)),
        admin
          ? h(
              'td',
              {},
              r.status === 'parked'
                ? [
                    h('button', { type: 'button', onclick: () => act(r.route, 'retry') }, 'Retry'),
                    ' ',
                    h('button', { type: 'button', class: 'danger', onclick: () => act(r.route, 'drop') }, 'Drop'),
                  ]
                : '',
            )
          : null,
      ),
    );
    const cols = [{ label: 'Route' }, { label: 'Status' }, { label: 'Attempts', cls: 'num' }, { label: 'Last error' }, { label: 'First failure' }, { label: 'Last failure' }];
    if (admin) cols.push({ label: 'Actions' });
    root.replaceChildren(
      root.firstChild,
      h(
        'div',
        { class: 'grid2' },
        h(
          'div',
          {},
          h('h2', {}, 'Event'),
          h(
            'dl',
            { class: 'kv' },
            h('dt', {}, 'Position'),
            h('dd', {}, num(e.position)),
            h('dt', {}, 'Stream'),
            h('dd', {}, h('a', { href: `#/streams/${encodeURIComponent(e.stream)}` }, e.stream)),
            h('dt', {}, 'Stream version'),
            h('dd', {}, e.stream_version),
            h('dt', {}, 'Type'),
            h('dd', {}, e.type),
            h('dt', {}, 'Content type'),
            h('dd', {}, e.content_type),
            h('dt', {}, 'Occurred'),
            h('dd', {}, time(e.occurred_at)),
          ),
          h('h2', {}, 'Metadata'),
          h('pre', { id: 'metadata', tabindex: '0' }, JSON.stringify(e.metadata, null, 2)),
        ),
        h('div', {}, h('h2', {}, 'Payload'), ...payloadView(e)),
      ),
      h('h2', {}, 'Delivery'),
      routes.length
        ? table('Status on every route that selects this event', cols, routeRows, { stack: true })
        : h('p', { class: 'muted' }, 'No route of this server selects this event.'),
      results,
    );
  }

  async function act(route, action) {
    const ok = await confirmAction(
      action === 'retry' ? 'Retry this event?' : 'Drop this event?',
      action === 'retry'
        ? `Route ${route} sends event ${id} again, then the events held behind it.`
        : `Route ${route} gives up on event ${id}; the events held behind it flow on.`,
      action === 'retry' ? 'Retry' : 'Drop',
    );
    if (!ok) return;
    try {
      const r = await call('POST', `/api/relays/${encodeURIComponent(route)}/parked/${action}`, { ids: [id] });
      const one = r.results[0];
      results.replaceChildren(
        one.result === 'failed'
          ? notice('bad', `${action} failed: ${one.error.message}`)
          : notice('ok', action === 'retry' ? 'Asked the route to send it again.' : 'Dropped.'),
      );
    } catch (err) {
      results.replaceChildren(notice('bad', `${action} refused: ${err.message}`));
    }
    load();
  }
  load();
  return null;
}

export function renderStream(main, stream) {
  document.title = `Stream ${stream} · herald console`;
  const from = Number(hashQuery().get('from_version') || 1);
  const root = h('section', { 'aria-labelledby': 'st-title' }, h('h1', { id: 'st-title' }, 'Stream ', h('span', { class: 'mono' }, stream)));
  main.replaceChildren(root);
  (async () => {
    let page;
    try {
      page = await get(`/api/streams/${encodeURIComponent(stream)}?from_version=${from}&limit=100`);
    } catch (err) {
      root.append(notice('bad', `Could not read the stream: ${err.message}`));
      return;
    }
    const rows = page.events.map((e) =>
      h(
        'tr',
        {},
        h('td', { class: 'num' }, e.stream_version),
        h('td', { class: 'num' }, num(e.position)),
        h('td', {}, e.type),
        h('td', { class: 'hide-narrow' }, time(e.occurred_at)),
        h('td', { class: 'mono' }, h('a', { href: `#/events/${e.id}`, 'aria-label': `event ${e.id}` }, short(e.id))),
      ),
    );
    const base = `#/streams/${encodeURIComponent(stream)}`;
    root.append(
      page.events.length
        ? table(
            `Events of ${stream} in order, from version ${from}`,
            [{ label: 'Version', cls: 'num' }, { label: 'Position', cls: 'num' }, { label: 'Type' }, { label: 'Occurred', cls: 'hide-narrow' }, { label: 'Event' }],
            rows,
          )
        : h('p', { class: 'muted' }, from > 1 ? 'No more events.' : 'This stream has no events.'),
      h(
        'div',
        { class: 'pager' },
        from > 1 ? h('a', { href: `${base}?from_version=${Math.max(1, from - 100)}` }, '← Earlier') : null,
        page.events.length === 100 ? h('a', { href: `${base}?from_version=${page.next_version}` }, 'Later →') : null,
      ),
    );
  })();
  return null;
}
