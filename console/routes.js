// Routes: each route's checkpoint, head, lag (events and seconds), delivery
// rate over the last minutes (a small chart, from the per-route delivered
// counter of /metrics sampled while the page is open), last error and when,
// lease holder, parked and held counts; and hold-ups (a long PostgreSQL
// transaction holding positions back: backend pid, since when).
import { get, getText } from './api.js';
import { ago, badge, h, notice, num, seconds, table, time } from './util.js';

const EVERY_MS = 2000;
const KEEP = 150; // samples: 5 minutes at EVERY_MS

// Per route: [{t, delivered}], kept across visits of the page.
const samples = new Map();

// Prometheus text -> [{name, labels, value}].
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) {
      for (const l of m[3].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = JSON.parse(`"${l[2]}"`);
    }
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

function rateOf(list) {
  if (!list || list.length < 2) return null;
  const a = list[Math.max(0, list.length - 6)];
  const b = list[list.length - 1];
  const dt = (b.t - a.t) / 1000;
  return dt > 0 ? Math.max(0, (b.delivered - a.delivered) / dt) : null;
}

function sparkline(list, name) {
  const w = 120;
  const hgt = 28;
  const rates = [];
  for (let i = 1; i < (list || []).length; ++i) {
    const dt = (list[i].t - list[i - 1].t) / 1000;
    rates.push(dt > 0 ? Math.max(0, (list[i].delivered - list[i - 1].delivered) / dt) : 0);
  }
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`);
  svg.setAttribute('role', 'img');
  const max = Math.max(1, ...rates);
  const label = rates.length
    ? `Delivery rate of ${name} over the last ${Math.round((rates.length * EVERY_MS) / 1000)} s, up to ${max.toFixed(1)} events/s`
    : `Delivery rate of ${name}: measuring`;
  svg.setAttribute('aria-label', label);
  const title = document.createElementNS('http://www.w3.org/2000/svg', 'title');
  title.textContent = label;
  svg.append(title);
  const base = document.createElementNS('http://www.w3.org/2000/svg', 'line');
  for (const [k, v] of [['x1', 0], ['y1', hgt - 1], ['x2', w], ['y2', hgt - 1]]) base.setAttribute(k, v);
  svg.append(base);
  if (rates.length) {
    // The samples so far, across the whole width.
    const pts = rates.map((r, i) => `${(i / Math.max(1, rates.length - 1)) * w},${hgt - 2 - (r / max) * (hgt - 4)}`);
    const pl = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    pl.setAttribute('points', pts.join(' '));
    svg.append(pl);
  }
  return svg;
}

export function renderRoutes(main) {
  document.title = 'Routes · herald console';
  const body = h('div', { id: 'routes-body' });
  const holdups = h('div', { id: 'holdups' });
  const err = h('div', { 'aria-live': 'polite' });
  main.replaceChildren(
    h(
      'section',
      { 'aria-labelledby': 'rt-title' },
      h('h1', { id: 'rt-title' }, 'Routes'),
      h('p', { class: 'muted' }, `Refreshed every ${EVERY_MS / 1000} s. Rates are measured while this page is open.`),
      err,
      body,
      h('h2', {}, 'Hold-ups'),
      holdups,
    ),
  );
  let timer = null;
  let stopped = false;

  async function tick() {
    let relays;
    let metrics = [];
    try {
      const [r, m] = await Promise.all([get('/api/relays'), getText('/metrics').catch(() => '')]);
      relays = r;
      metrics = parseMetrics(m);
      err.replaceChildren();
    } catch (e) {
      err.replaceChildren(notice('bad', `Could not read the routes: ${e.message}`));
      if (!stopped) timer = setTimeout(tick, EVERY_MS);
      return;
    }
    const now = Date.now();
    const delivered = new Map();
    for (const m of metrics) {
      if (m.name === 'herald_route_delivered_total') delivered.set(m.labels.route, m.value);
    }
    for (const r of relays.routes) {
      if (!delivered.has(r.name)) continue;
      const list = samples.get(r.name) || [];
      list.push({ t: now, delivered: delivered.get(r.name) });
      while (list.length > KEEP) list.shift();
      samples.set(r.name, list);
    }
    const rows = relays.routes.map((r) => {
      const rate = rateOf(samples.get(r.name));
      const state = r.blocked ? 'blocked' : r.running ? 'running' : r.state || 'stopped';
      return h(
        'tr',
        { 'data-route': r.name },
        h('th', { scope: 'row' }, r.name, h('div', { class: 'muted mono sender' }, r.sender)),
        h('td', {}, badge(state === 'running' || state === 'blocked' ? state : 'waiting'), h('div', { class: 'muted' }, r.state)),
        h('td', { class: 'num' }, num(r.checkpoint)),
        h('td', { class: 'num' }, num(r.head)),
        h('td', { class: 'num' }, num(r.lag_events)),
        h('td', { class: 'num' }, seconds(r.lag_seconds)),
        h('td', {}, sparkline(samples.get(r.name), r.name), h('div', { class: 'muted' }, rate === null ? 'measuring…' : `${rate.toFixed(1)} events/s`)),
        h(
          'td',
          { class: 'num' },
          r.parked || r.held || r.retry
            ? h('a', { href: `#/routes/${encodeURIComponent(r.name)}/parked` }, `${num(r.parked)} / ${num(r.held)}`)
            : h('a', { href: `#/routes/${encodeURIComponent(r.name)}/parked` }, '0 / 0'),
        ),
        h(
          'td',
          { class: 'err' },
          r.blocked ? `blocked on position ${r.blocked.position}: ${r.blocked.error}` : r.last_error || '',
          r.last_error_at ? h('div', { class: 'muted' }, time(r.last_error_at), ` (${ago(r.last_error_at)})`) : null,
        ),
        h('td', { class: 'lease' }, r.lease_owner || h('span', { class: 'muted' }, 'none'), r.holding_lease ? h('div', { class: 'muted' }, 'this server') : null),
      );
    });
    body.replaceChildren(
      relays.routes.length
        ? table(
            'Routes of this server',
            [
              { label: 'Route' },
              { label: 'State' },
              { label: 'Checkpoint (next)', cls: 'num' },
              { label: 'Head', cls: 'num' },
              { label: 'Lag (events)', cls: 'num' },
              { label: 'Lag (time)', cls: 'num' },
              { label: 'Delivery rate' },
              { label: 'Parked / held', cls: 'num' },
              { label: 'Last error' },
              { label: 'Lease holder' },
            ],
            rows,
            { stack: true },
          )
        : h('p', { class: 'muted' }, 'This server runs no route ([[route]] in its config).'),
    );
    const held = metrics.find((m) => m.name === 'herald_store_holdup');
    const info = metrics.find((m) => m.name === 'herald_store_holdup_info');
    const secs = metrics.find((m) => m.name === 'herald_store_holdup_seconds');
    if (held && held.value > 0) {
      const since = secs ? new Date(now - secs.value * 1000).toISOString() : null;
      holdups.replaceChildren(
        notice(
          'warn',
          info
            ? `A transaction holds positions back: PostgreSQL backend pid ${info.labels.pid}, open ${seconds(secs ? secs.value : 0)} (since ${since}). Its streams wait until it ends.`
            : 'Something holds positions back (see /health).',
        ),
      );
    } else {
      holdups.replaceChildren(h('p', { class: 'muted' }, 'None: no transaction holds positions back.'));
    }
    if (!stopped) timer = setTimeout(tick, EVERY_MS);
  }
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
