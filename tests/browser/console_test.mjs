// The operator console (issue #18) in headless Chromium (Debian's
// /usr/bin/chromium driven by puppeteer-core), against a real `herald serve`
// with a real webhook receiver (tests/support/receiver.cc):
//   - the page asks for a token, keeps it in session storage (never in a
//     URL) and shows what its scopes allow;
//   - the log shows appended events and new ones arriving live; pause
//     stops the tail; filtering by stream works;
//   - an event's page shows its status on every route;
//   - a receiver answering 400 parks an event, the page shows it with its
//     error, and "retry" after the receiver is fixed delivers it and then
//     its held events, which the receiver sees in order;
//   - bulk drop reports each outcome (a partial success as partial);
//   - a read-only token sees no retry or drop control and a forced request
//     is refused; every action is in the server's log with the token's name;
//   - with 1,000,000 events in the store the first page renders in under
//     one second;
//   - axe-core finds no serious or critical violation on any page; no
//     console error; no horizontal overflow at 1280x800 and 390x844;
//   - `[server] console = false` serves no console;
//   - on PostgreSQL (HERALD_TEST_PG_URL, required under CI), the routes
//     page names a transaction holding positions back by its backend pid.
// Screenshots of each page go to $SCREENSHOTS (tests/browser/run_console.sh
// passes docs/console when asked to refresh them).
//
// Usage: HERALD_BIN=... HERALD_TEST_RECEIVER=... NPM_DEPS=DIR
//        node console_test.mjs   (run_console.sh does this)
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

// The npm test tools live in $NPM_DEPS (tests/aws/npm_deps.sh installs them).
const require = createRequire(path.join(process.env.NPM_DEPS || path.dirname(new URL(import.meta.url).pathname), 'package.json'));
const puppeteer = require('puppeteer-core');
const axeSource = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const herald = process.env.HERALD_BIN;
const receiverBin = process.env.HERALD_TEST_RECEIVER;
const chromium = process.env.CHROMIUM || '/usr/bin/chromium';
const shots = process.env.SCREENSHOTS || '';
const bigEvents = Number(process.env.BIG_EVENTS || 1000000);
if (!herald || !receiverBin) throw new Error('HERALD_BIN and HERALD_TEST_RECEIVER must be set');

let failures = 0;
function check(ok, message) {
  if (!ok) {
    console.error(`FAIL: ${message}`);
    failures++;
  } else {
    console.log(`ok: ${message}`);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitFor(pred, ms, what) {
  const until = Date.now() + ms;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-console-'));
const children = [];
function start(bin, args, name) {
  const err = fs.openSync(path.join(dir, `${name}.err`), 'a');
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', err] });
  children.push(child);
  return child;
}
async function serve(name, config) {
  const port = await freePort();
  const file = path.join(dir, `${name}.toml`);
  fs.writeFileSync(file, config.replace('LISTEN', `127.0.0.1:${port}`));
  start(herald, ['serve', '--config', file], name);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(
    async () => {
      try {
        return (await fetch(`${base}/health`)).status === 200;
      } catch {
        return false;
      }
    },
    20000,
    `${name}: herald serve to answer /health`,
  );
  return base;
}

const ADMIN = 'console-admin-secret-7f3a';
const READER = 'console-read-secret-91c2';
const uuid = (n) => `0190a000-0000-7000-8000-${n.toString(16).padStart(12, '0')}`;

let browser = null;
try {
  // ---- the receiver and the server ---------------------------------------
  const recvPort = await freePort();
  const recvLog = path.join(dir, 'received.log');
  const ready = path.join(dir, 'receiver.ready');
  start(receiverBin, ['--port', String(recvPort), '--log', recvLog, '--ready', ready], 'receiver');
  await waitFor(() => fs.existsSync(ready), 10000, 'the receiver');
  const receiver = `http://127.0.0.1:${recvPort}`;
  async function receiverMode(id, mode) {
    const r = await fetch(`${receiver}/control`, { method: 'POST', headers: { 'x-fail-id': id, 'x-fail-mode': mode } });
    if (!r.ok) throw new Error(`receiver /control answered ${r.status}`);
  }
  // Accepted (status 200) event ids, in the order the receiver saw them.
  function received() {
    if (!fs.existsSync(recvLog)) return [];
    return fs
      .readFileSync(recvLog, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' '))
      .map(([position, stream, id, , status]) => ({ position: Number(position), stream, id, status }));
  }

  const base = await serve(
    'serve',
    `[store]\nurl = "sqlite:${path.join(dir, 'h.db')}"\n[server]\nlisten = "LISTEN"\n` +
      `[[server.tokens]]\nname = "ops"\ntoken = "${ADMIN}"\nscopes = ["admin"]\n` +
      `[[server.tokens]]\nname = "viewer"\ntoken = "${READER}"\nscopes = ["read"]\n` +
      `[[route]]\nname = "hook"\nsender = "${receiver}/events"\non_failure = "park"\nmax_attempts = 1\n`,
  );
  const auth = { Authorization: `Bearer ${ADMIN}` };
  async function api(method, p, body) {
    const r = await fetch(`${base}${p}`, {
      method,
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, json: text ? JSON.parse(text) : null };
  }
  async function append(events) {
    const r = await api('POST', '/api/events', events);
    if (r.status !== 201) throw new Error(`append answered ${r.status}: ${JSON.stringify(r.json)}`);
    return r.json;
  }
  async function parked(state) {
    return (await api('GET', `/api/relays/hook/parked${state ? `?state=${state}` : ''}`)).json.parked;
  }

  // 30 events in streams s-0..s-2.
  const first = [];
  for (let i = 0; i < 30; ++i) first.push({ id: uuid(1000 + i), stream: `s-${i % 3}`, type: i % 2 ? 'shop.paid' : 'shop.placed', payload: { i } });
  first.push({ id: uuid(1100), stream: 'text-1', type: 'note.added', content_type: 'text/plain', payload: 'plain text' });
  await append(first);

  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });

  // One tab per token; console errors are collected per tab.
  const errors = [];
  async function tab(viewport = { width: 1280, height: 800 }) {
    const ctx = await browser.createBrowserContext();
    const page = await ctx.newPage();
    await page.setViewport(viewport);
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(String(e)));
    return page;
  }
  const axeFindings = [];
  async function audit(page, name) {
    if (!(await page.evaluate(() => !!window.axe))) await page.addScriptTag({ content: axeSource });
    const result = await page.evaluate(async () => {
      const r = await window.axe.run(document, { resultTypes: ['violations'] });
      return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length }));
    });
    const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    for (const v of bad) axeFindings.push(`${name}: ${v.id} (${v.impact}): ${v.help} x${v.nodes}`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `${name}: no horizontal overflow of the page (${overflow}px)`);
    if (shots) {
      fs.mkdirSync(shots, { recursive: true });
      await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: false });
    }
  }
  const rowCount = (page) => page.$$eval('#log-rows tr', (rows) => rows.length);
  const positions = (page) => page.$$eval('#log-rows tr', (rows) => rows.map((r) => Number(r.dataset.position)));

  // ---- sign in -------------------------------------------------------------
  const page = await tab();
  await page.goto(`${base}/`);
  await page.waitForSelector('#token');
  await audit(page, 'token');
  await page.type('#token', ADMIN);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#log-rows tr');
  const who = await page.$eval('#who', (e) => e.textContent);
  check(who.includes('ops') && who.includes('admin'), `the header names the token and its scopes ("${who.trim()}")`);
  check(!page.url().includes(ADMIN), 'the token is not in the URL');
  check((await page.evaluate(() => sessionStorage.getItem('herald.token'))) === ADMIN, 'the token is in session storage');

  // ---- the log: appended events, live ones, pause ---------------------------
  await waitFor(async () => (await rowCount(page)) === 31, 10000, '31 rows');
  check(JSON.stringify(await positions(page)) === JSON.stringify(Array.from({ length: 31 }, (_, i) => 31 - i)), 'the log shows appended events newest first');
  await page.waitForSelector('.dot.on');
  await append([{ id: uuid(2000), stream: 's-live', type: 'shop.live', payload: { live: 1 } }]);
  await waitFor(async () => (await positions(page))[0] === 32, 10000, 'the live event at the top');
  check(true, 'a new event arrives live at the top of the log');
  await audit(page, 'log');
  await page.click('#live-toggle');
  await page.waitForFunction(() => !document.querySelector('.dot.on') && document.querySelector('#live-toggle').textContent === 'Resume');
  await append([{ id: uuid(2001), stream: 's-live', type: 'shop.live', payload: { live: 2 } }]);
  await new Promise((r) => setTimeout(r, 700)); // room for it to (wrongly) arrive
  check((await positions(page))[0] === 32, 'while paused, no new event is shown');
  await page.click('#live-toggle');
  await waitFor(async () => (await positions(page))[0] === 33, 10000, 'the event appended while paused, after resume');
  check(true, 'resume shows what arrived meanwhile');

  // ---- filter by stream (a glob) ------------------------------------------
  await page.type('#f-stream', 's-1');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => location.hash.includes('stream=s-1'));
  await waitFor(async () => (await rowCount(page)) === 10, 10000, '10 rows of s-1');
  const streams = await page.$$eval('#log-rows tr td:nth-child(3)', (c) => c.map((x) => x.textContent));
  check(streams.length === 10 && streams.every((s) => s === 's-1'), 'filtering by stream shows that stream only');
  await page.evaluate(() => {
    location.hash = '#/log?stream=s-*&type=shop.paid';
  });
  await waitFor(async () => (await rowCount(page)) === 15, 10000, '15 shop.paid rows in s-*');
  check(true, 'stream and type globs filter together');
  await page.waitForSelector('.dot.on');
  const paidBefore = (await positions(page))[0];
  await append([
    { id: uuid(2100), stream: 's-9', type: 'shop.placed', payload: {} },
    { id: uuid(2101), stream: 'other', type: 'shop.paid', payload: {} },
    { id: uuid(2102), stream: 's-9', type: 'shop.paid', payload: {} },
  ]);
  await waitFor(async () => (await positions(page))[0] !== paidBefore, 10000, 'a live event under the filter');
  const liveRows = await page.$$eval('#log-rows tr', (rows) => rows.slice(0, 2).map((r) => r.textContent));
  check(liveRows[0].includes('s-9') && liveRows[0].includes('shop.paid') && !liveRows[1].includes('s-9'), 'the live tail keeps to the filter');
  // Paging by position: from position 10, then older.
  await page.evaluate(() => {
    location.hash = '#/';
  });
  await page.waitForSelector('#goto');
  await page.type('#goto', '10');
  await page.keyboard.press('Enter');
  await waitFor(async () => (await positions(page))[0] === 10, 10000, 'the page from position 10');
  check(JSON.stringify(await positions(page)) === JSON.stringify([10, 9, 8, 7, 6, 5, 4, 3, 2, 1]), 'a page from a position lists it and the older ones');
  check((await page.$eval('#older', (a) => a.hidden)) === true, 'no older page before position 1');
  // The skip link is the first stop of the keyboard and moves focus to the content.
  await page.reload();
  await page.waitForSelector('#log-rows tr');
  await page.keyboard.press('Tab');
  check((await page.evaluate(() => document.activeElement.className)) === 'skip', 'Tab first reaches "Skip to content"');
  await page.keyboard.press('Enter');
  check((await page.evaluate(() => document.activeElement.id)) === 'main', 'the skip link moves focus to the content');

  // ---- a parked event, its page, retry in order -----------------------------
  const P = uuid(3000);
  const H1 = uuid(3001);
  const H2 = uuid(3002);
  await receiverMode(P, 'reject');
  await append([
    { id: P, stream: 'pay-1', type: 'pay.started', payload: { step: 1 } },
    { id: H1, stream: 'pay-1', type: 'pay.confirmed', payload: { step: 2 } },
    { id: H2, stream: 'pay-1', type: 'pay.settled', payload: { step: 3 } },
  ]);
  await waitFor(async () => (await parked('held')).length === 2 && (await parked('parked')).length === 1, 20000, 'P parked, two held');
  await page.goto(`${base}/#/events/${P}`);
  await page.waitForSelector('tr[data-route="hook"]');
  const routeRow = await page.$eval('tr[data-route="hook"]', (r) => r.textContent);
  check(routeRow.includes('parked') && routeRow.includes('400'), `the event page shows the route status parked with the error (${routeRow})`);
  check((await page.$eval('#payload', (e) => e.textContent)).includes('"step": 1'), 'the event page shows the JSON payload, pretty');
  await audit(page, 'event');
  await page.goto(`${base}/#/events/${H1}`);
  await page.waitForSelector('tr[data-route="hook"]');
  check((await page.$eval('tr[data-route="hook"]', (r) => r.textContent)).includes('held'), 'a held event shows held');
  await page.goto(`${base}/#/events/${uuid(1100)}`);
  await page.waitForSelector('tr[data-route="hook"]');
  check((await page.$eval('tr[data-route="hook"]', (r) => r.textContent)).includes('delivered'), 'a delivered event shows delivered');
  check((await page.$eval('#payload', (e) => e.textContent)) === 'plain text', 'a text payload is shown as text');
  await page.goto(`${base}/#/streams/pay-1`);
  await page.waitForSelector('table tbody tr');
  const versions = await page.$$eval('table tbody tr td:first-child', (c) => c.map((x) => x.textContent));
  check(JSON.stringify(versions) === '["1","2","3"]', 'the stream page lists its events in order');
  await audit(page, 'stream');

  await page.goto(`${base}/#/routes`);
  await page.waitForSelector('tr[data-route="hook"]');
  await waitFor(async () => (await page.$eval('tr[data-route="hook"]', (r) => r.textContent)).includes('1 / 2'), 10000, 'routes: 1 parked / 2 held');
  const routesRow = await page.$eval('tr[data-route="hook"]', (r) => r.textContent);
  check(routesRow.includes('400'), 'the routes page shows the last error');
  // Traffic while the page samples: the rate and its chart move.
  for (let i = 0; i < 16; ++i) {
    await append(Array.from({ length: 25 }, (_, j) => ({ stream: `rate-${j}`, type: 'rate.tick', payload: { i, j } })));
    await new Promise((r) => setTimeout(r, 400));
  }
  await page.waitForFunction(
    () => /[1-9][\d.]* events\/s/.test(document.querySelector('tr[data-route="hook"]').textContent) &&
      document.querySelector('tr[data-route="hook"] svg.spark polyline')?.getAttribute('points').split(' ').length >= 3,
    { timeout: 15000 },
  );
  check(true, 'the routes page shows a delivery rate and its chart while events are delivered');
  check((await page.$eval('#holdups', (e) => e.textContent)).includes('None'), 'the routes page shows no hold-up on SQLite');
  await audit(page, 'routes');

  await page.goto(`${base}/#/routes/hook/parked`);
  await page.waitForSelector(`tr[data-id="${P}"][data-state="parked"]`);
  check((await page.$eval(`tr[data-id="${P}"]`, (r) => r.textContent)).includes('HTTP 400'), 'the parked page shows the error');
  await audit(page, 'parked');
  await receiverMode(P, 'ok');
  await page.$$eval(`tr[data-id="${P}"] button`, (b) => b.find((x) => x.textContent === 'Retry').click());
  await page.waitForSelector('#confirm[open]');
  await audit(page, 'confirm');
  await page.click('#confirm-ok');
  await page.waitForSelector('#outcome-summary');
  check((await page.$eval('#outcome-summary', (e) => e.textContent)).startsWith('All 1 retried'), 'retry reports its outcome');
  await waitFor(() => received().filter((r) => r.stream === 'pay-1' && r.status === '200').length === 3, 20000, 'pay-1 delivered');
  const pay = received().filter((r) => r.stream === 'pay-1');
  check(
    JSON.stringify(pay.map((r) => [r.id, r.status])) === JSON.stringify([[P, '400'], [P, '200'], [H1, '200'], [H2, '200']]),
    `the receiver sees the retried event, then its held events, in order (${JSON.stringify(pay.map((r) => r.status))})`,
  );
  await waitFor(async () => (await parked()).length === 0, 10000, 'nothing parked');

  // ---- bulk drop with a partial failure ---------------------------------------
  const D = [uuid(4000), uuid(4001), uuid(4002)];
  for (const id of D) await receiverMode(id, 'reject');
  await append(D.map((id, i) => ({ id, stream: `drop-${i}`, type: 'drop.me', payload: { i } })));
  await waitFor(async () => (await parked('parked')).length === 3, 20000, 'three parked');
  await page.goto(`${base}/#/routes`);
  await page.goto(`${base}/#/routes/hook/parked`);
  await page.waitForSelector(`input[data-id="${D[2]}"]`);
  for (const id of D) await page.click(`input[data-id="${id}"]`);
  check((await page.$eval('#sel-count', (e) => e.textContent)) === '3 selected', 'three selected');
  // Escape cancels the confirmation: nothing is dropped.
  await page.click('#drop-selected');
  await page.waitForSelector('#confirm[open]');
  await page.keyboard.press('Escape');
  await page.waitForSelector('#confirm:not([open])');
  check((await parked('parked')).length === 3 && (await page.$('#outcome-summary')) === null, 'Escape cancels a drop: nothing dropped');
  // Someone else drops one first: the bulk drop must report it failed.
  check((await api('DELETE', `/api/relays/hook/parked/${D[1]}`)).status === 200, 'a drop through the API');
  await page.click('#drop-selected');
  await page.waitForSelector('#confirm[open]');
  await page.click('#confirm-ok');
  await page.waitForSelector('#outcome-summary');
  const summary = await page.$eval('#outcome-summary', (e) => e.textContent);
  check(summary.includes('Partly done') && summary.includes('2 dropped') && summary.includes('1 failed'), `a partial bulk drop is reported as partial ("${summary}")`);
  const outcomes = await page.$$eval('#outcome tr[data-outcome]', (rows) => rows.map((r) => [r.dataset.id, r.dataset.outcome]));
  check(
    JSON.stringify(outcomes) === JSON.stringify([[D[0], 'dropped'], [D[1], 'failed'], [D[2], 'dropped']]),
    `bulk drop shows each outcome (${JSON.stringify(outcomes)})`,
  );
  await audit(page, 'bulk-drop');

  // ---- a read-only token -------------------------------------------------------
  await receiverMode(uuid(5000), 'reject');
  await append([{ id: uuid(5000), stream: 'ro-1', type: 'ro.parked', payload: {} }]);
  await waitFor(async () => (await parked('parked')).length === 1, 20000, 'one parked for the reader');
  const ro = await tab();
  await ro.goto(`${base}/#/routes/hook/parked`);
  await ro.waitForSelector('#token');
  await ro.type('#token', READER);
  await ro.keyboard.press('Enter');
  await ro.waitForSelector(`tr[data-id="${uuid(5000)}"]`);
  check((await ro.$('#read-only-note')) !== null, 'a read-only token is told that actions need admin');
  check((await ro.$$('main button')).length === 0, 'a read-only token sees no retry or drop control');
  await ro.goto(`${base}/#/events/${uuid(5000)}`);
  await ro.waitForSelector('tr[data-route="hook"]');
  check((await ro.$$('main button')).length === 0, 'no action on the event page for a read-only token');
  const before = errors.length;
  const forced = await ro.evaluate(async (id) => {
    const t = sessionStorage.getItem('herald.token');
    const r = await fetch(`/api/relays/hook/parked/${id}/retry`, { method: 'POST', headers: { Authorization: `Bearer ${t}` } });
    const b = await fetch('/api/relays/hook/parked/drop', {
      method: 'POST',
      headers: { Authorization: `Bearer ${t}`, 'Content-Type': 'application/json' },
      body: '{"all":true}',
    });
    return [r.status, b.status];
  }, uuid(5000));
  check(forced[0] === 403 && forced[1] === 403, `a forced retry and drop with the read-only token are refused (${forced})`);
  // The browser logs the two refused requests; they were expected.
  errors.splice(before, errors.length - before, ...errors.slice(before).filter((e) => !e.includes('403')));
  check((await parked('parked')).length === 1, 'the refused requests changed nothing');

  // ---- the server's log: names, never tokens --------------------------------------
  const log = fs.readFileSync(path.join(dir, 'serve.err'), 'utf8');
  check(log.includes(`audit: token 'ops' retry parked event ${P} on route 'hook': ok`), 'the retry is in the server log with the token name');
  check(log.includes(`audit: token 'ops' drop parked event ${D[1]} on route 'hook': failed (not_found`), 'a failed drop is in the server log');
  check(log.includes(`audit: token 'ops' drop parked event ${D[0]} on route 'hook': ok`), 'a bulk drop is in the server log per event');
  check(!log.includes(ADMIN) && !log.includes(READER), 'no token in the server log');

  // ---- a narrow screen ----------------------------------------------------------
  const narrow = await tab({ width: 390, height: 844 });
  await narrow.goto(`${base}/`);
  await narrow.waitForSelector('#token');
  await narrow.type('#token', ADMIN);
  await narrow.keyboard.press('Enter');
  await narrow.waitForSelector('#log-rows tr');
  await audit(narrow, 'log-narrow');
  await narrow.goto(`${base}/#/routes`);
  await narrow.waitForSelector('tr[data-route="hook"]');
  await audit(narrow, 'routes-narrow');
  await narrow.goto(`${base}/#/events/${P}`);
  await narrow.waitForSelector('tr[data-route="hook"]');
  await audit(narrow, 'event-narrow');

  // ---- [server] console = false ------------------------------------------------
  const off = await serve('off', `[store]\nurl = "sqlite:${path.join(dir, 'off.db')}"\n[server]\nlisten = "LISTEN"\nconsole = false\n`);
  const offStatus = await Promise.all(['/', '/console/', '/console/app.js', '/api/whoami'].map(async (p) => (await fetch(`${off}${p}`)).status));
  check(JSON.stringify(offStatus) === '[404,404,404,200]', `console = false serves no console (${offStatus})`);
  const onStatus = await Promise.all(['/', '/console', '/console/', '/console/app.js'].map(async (p) => (await fetch(`${base}${p}`)).status));
  check(JSON.stringify(onStatus) === '[200,200,200,200]', `the console is at / and /console/ (${onStatus})`);

  // ---- 1,000,000 events: the first page in under a second ----------------------
  const bigDb = path.join(dir, 'big.db');
  execFileSync(herald, ['migrate', '--db', `sqlite:${bigDb}`]);
  execFileSync('sqlite3', [
    bigDb,
    `PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;
     INSERT INTO herald_events (position, id, stream, stream_version, type, content_type, payload, metadata, occurred_at)
     WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${bigEvents})
     SELECT i, printf('0190b000-0000-7000-8000-%012x', i), 'big-' || (i % 1000), i / 1000 + 1,
            CASE i % 3 WHEN 0 THEN 'big.placed' WHEN 1 THEN 'big.paid' ELSE 'big.shipped' END,
            'application/json', '{"n":' || i || '}', '{}', 1764000000000000 + i * 1000
       FROM n;`,
  ]);
  const big = await serve('big', `[store]\nurl = "sqlite:${bigDb}"\n[server]\nlisten = "LISTEN"\n`);
  const bp = await tab();
  await bp.goto(`${big}/`);
  await bp.waitForSelector('#log-rows tr');
  const ms = await bp.evaluate(() => performance.now());
  const loadedMs = await bp.$eval('section', (e) => e.dataset.loadedMs);
  console.log(`note: of which GET /api/events/newest took ${loadedMs} ms`);
  const top = await positions(bp);
  check(top[0] === bigEvents && top.length === 50, `the first page of ${bigEvents} events shows the newest 50 (${top[0]})`);
  check(ms < 1000, `with ${bigEvents} events the first page renders in under one second (${ms.toFixed(0)} ms from navigation)`);
  const filtered = await bp.evaluate(async () => {
    const t0 = performance.now();
    const r = await fetch('/api/events/newest?stream=big-7&limit=50');
    const j = await r.json();
    return { ms: performance.now() - t0, n: j.events.length };
  });
  console.log(`note: newest 50 of one stream in ${bigEvents} events: ${filtered.ms.toFixed(0)} ms (${filtered.n} events)`);
  await audit(bp, 'log-1m');

  // ---- PostgreSQL: a transaction holding positions back, named with its pid --
  const pgBase = process.env.HERALD_TEST_PG_URL;
  if (!pgBase) {
    check(!process.env.CI, 'PostgreSQL hold-up (HERALD_TEST_PG_URL is not set: tests/support/with-postgres.sh sets it)');
  } else {
    const name = `herald_console_${process.pid}`;
    execFileSync('psql', [pgBase, '-qAtc', `CREATE DATABASE ${name}`]);
    const slash = pgBase.lastIndexOf('/');
    const q = pgBase.indexOf('?', slash);
    const pgUrl = pgBase.slice(0, slash + 1) + name + (q >= 0 ? pgBase.slice(q) : '');
    const pg = await serve('pg', `[store]\nurl = "${pgUrl}"\n[server]\nlisten = "LISTEN"\n`);
    // An application transaction appends and stays open.
    const psql = spawn('psql', [pgUrl, '-qAt'], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(psql);
    let psqlOut = '';
    psql.stdout.on('data', (d) => {
      psqlOut += d;
    });
    psql.stdin.write("BEGIN;\nSELECT pg_backend_pid();\nSELECT event_id FROM herald_append('held-stream', 'held.happened', '{}');\n");
    await waitFor(() => psqlOut.trim().split('\n').length >= 2, 10000, 'the open transaction');
    const pid = psqlOut.trim().split('\n')[0];
    const pp = await tab();
    await pp.goto(`${pg}/#/routes`);
    await pp.waitForFunction((p) => document.querySelector('#holdups')?.textContent.includes(`backend pid ${p}`), { timeout: 20000 }, pid);
    check(true, `the routes page names the transaction holding positions back (backend pid ${pid})`);
    await audit(pp, 'holdup');
    psql.stdin.end('COMMIT;\n');
    await pp.waitForFunction(() => document.querySelector('#holdups')?.textContent.includes('None'), { timeout: 20000 });
    check(true, 'the hold-up goes once the transaction commits');
  }

  check(axeFindings.length === 0, `axe-core: no serious or critical violation${axeFindings.length ? `:\n  ${axeFindings.join('\n  ')}` : ''}`);
  check(errors.length === 0, `no console error${errors.length ? `:\n  ${errors.join('\n  ')}` : ''}`);
} catch (e) {
  console.error(`FAIL: ${e.stack || e}`);
  failures++;
} finally {
  if (browser) await browser.close();
  for (const c of children) {
    if (c.exitCode === null) c.kill('SIGTERM');
  }
  await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null)));
  if (failures) {
    for (const f of ['serve.err', 'receiver.err']) {
      const p = path.join(dir, f);
      if (fs.existsSync(p)) console.error(`--- ${f}:\n${fs.readFileSync(p, 'utf8').slice(-3000)}`);
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
}
process.exitCode = failures ? 1 : 0;
