// A route's parked events (GET /api/relays/{name}/parked): error, attempts,
// when; retry and drop for one, a selection or all (POST
// /api/relays/{name}/parked/retry|drop), each after a confirmation, each
// outcome shown per event. A partial success is shown as such, never as a
// success. Actions need the admin scope: without it they are not shown.
import { call, get } from './api.js';
import { can } from './session.js';
import { badge, confirmAction, h, notice, num, short, table, time } from './util.js';

export function renderParked(main, route) {
  document.title = `Parked on ${route} · herald console`;
  const admin = can('admin');
  const outcome = h('div', { id: 'outcome', 'aria-live': 'polite' });
  const listEl = h('div', { id: 'parked-list' });
  const selCount = h('span', { class: 'muted', id: 'sel-count' }, '0 selected');
  const btn = (label, id, onclick, danger) => h('button', { type: 'button', id, class: danger ? 'danger' : null, onclick }, label);
  const actions = admin
    ? h(
        'div',
        { class: 'row', role: 'group', 'aria-label': 'Actions on parked events' },
        btn('Retry selected', 'retry-selected', () => run('retry', selected())),
        btn('Drop selected', 'drop-selected', () => run('drop', selected()), true),
        btn('Retry all', 'retry-all', () => run('retry', null)),
        btn('Drop all', 'drop-all', () => run('drop', null), true),
        selCount,
      )
    : h('p', { class: 'muted', id: 'read-only-note' }, 'Your token has no admin scope: retry and drop are not available.');
  main.replaceChildren(
    h(
      'section',
      { 'aria-labelledby': 'pk-title' },
      h('h1', { id: 'pk-title' }, 'Parked on ', h('span', { class: 'mono' }, route)),
      h('p', {}, h('a', { href: '#/routes' }, '← Routes')),
      actions,
      outcome,
      listEl,
    ),
  );
  let rows = [];

  function selected() {
    return [...listEl.querySelectorAll('input[type=checkbox][data-id]:checked')].map((c) => c.dataset.id);
  }
  function updateCount() {
    const n = selected().length;
    selCount.textContent = `${n} selected`;
    for (const id of ['retry-selected', 'drop-selected']) {
      const b = document.getElementById(id);
      if (b) b.disabled = n === 0;
    }
  }

  async function load() {
    let list;
    try {
      list = await get(`/api/relays/${encodeURIComponent(route)}/parked?limit=1000`);
    } catch (e) {
      listEl.replaceChildren(notice('bad', `Could not read the parked events: ${e.message}`));
      return;
    }
    rows = list.parked;
    const parkedCount = rows.filter((p) => p.state === 'parked').length;
    const cols = [];
    if (admin) cols.push({ label: 'Select' });
    cols.push(
      { label: 'Position', cls: 'num' },
      { label: 'Event' },
      { label: 'Stream' },
      { label: 'Type' },
      { label: 'State' },
      { label: 'Attempts', cls: 'num' },
      { label: 'Error' },
      { label: 'First failure' },
      { label: 'Last failure (parked)' },
    );
    if (admin) cols.push({ label: 'Actions' });
    const trs = rows.map((p) =>
      h(
        'tr',
        { 'data-id': p.event.id, 'data-state': p.state },
        admin
          ? h(
              'td',
              {},
              p.state === 'parked'
                ? h('input', { type: 'checkbox', 'data-id': p.event.id, 'aria-label': `select event ${p.event.id}`, onchange: updateCount })
                : '',
            )
          : null,
        h('td', { class: 'num' }, num(p.event.position)),
        h('td', { class: 'mono' }, h('a', { href: `#/events/${p.event.id}`, 'aria-label': `event ${p.event.id}` }, short(p.event.id))),
        h('td', {}, h('a', { href: `#/streams/${encodeURIComponent(p.event.stream)}` }, p.event.stream)),
        h('td', {}, p.event.type),
        h('td', {}, badge(p.state)),
        h('td', { class: 'num' }, p.attempts),
        h('td', { class: 'err' }, p.error),
        h('td', {}, time(p.first_failed_at)),
        h('td', {}, time(p.parked_at)),
        admin
          ? h(
              'td',
              {},
              p.state === 'parked'
                ? [btn('Retry', null, () => run('retry', [p.event.id])), ' ', btn('Drop', null, () => run('drop', [p.event.id]), true)]
                : '',
            )
          : null,
      ),
    );
    listEl.replaceChildren(
      rows.length
        ? table(`${parkedCount} parked, ${rows.length - parkedCount} held or waiting to be retried`, cols, trs, { stack: true })
        : h('p', { class: 'muted', id: 'none-parked' }, 'No parked events on this route.'),
    );
    if (admin) {
      document.getElementById('retry-all').disabled = parkedCount === 0;
      document.getElementById('drop-all').disabled = parkedCount === 0;
      updateCount();
    }
  }

  // ids: a list, or null for every parked event.
  async function run(action, ids) {
    const n = ids ? ids.length : rows.filter((p) => p.state === 'parked').length;
    if (n === 0) return;
    const what = ids ? (n === 1 ? `event ${ids[0]}` : `${n} selected events`) : `all ${n} parked events`;
    const ok = await confirmAction(
      action === 'retry' ? `Retry ${what}?` : `Drop ${what}?`,
      action === 'retry'
        ? `Route ${route} sends ${what} again, each followed by the events held behind it.`
        : `Route ${route} gives up on ${what}; the events held behind them flow on. This cannot be undone.`,
      action === 'retry' ? 'Retry' : 'Drop',
    );
    if (!ok) return;
    outcome.replaceChildren(h('p', { class: 'muted' }, 'Working…'));
    let r;
    try {
      r = await call('POST', `/api/relays/${encodeURIComponent(route)}/parked/${action}`, ids ? { ids } : { all: true });
    } catch (e) {
      outcome.replaceChildren(notice('bad', `${action === 'retry' ? 'Retry' : 'Drop'} refused: ${e.message}`));
      return;
    }
    const verb = action === 'retry' ? 'retried' : 'dropped';
    const summary =
      r.failed === 0
        ? notice('ok', `All ${r.succeeded} ${verb}.`)
        : r.succeeded === 0
          ? notice('bad', `None ${verb}: ${r.failed} failed.`)
          : notice('warn', `Partly done: ${r.succeeded} ${verb}, ${r.failed} failed.`);
    const items = r.results.map((x) =>
      h(
        'tr',
        { 'data-outcome': x.result, 'data-id': x.id },
        h('td', { class: 'mono' }, h('a', { href: `#/events/${x.id}` }, x.id)),
        h('td', {}, h('span', { class: `badge b-${x.result === 'failed' ? 'failed' : 'ok'}` }, x.result)),
        h('td', { class: 'err' }, x.error ? x.error.message : ''),
      ),
    );
    outcome.replaceChildren(
      summary,
      items.length ? table('Outcome per event', [{ label: 'Event' }, { label: 'Outcome' }, { label: 'Error' }], items, { stack: true }) : null,
    );
    summary.id = 'outcome-summary';
    await load();
  }
  load();
  return null;
}
