// EventSource in headless Chromium, from another origin (issue #12 item 3):
// a page served from origin A (a small static server on its own port)
// opens `new EventSource('http://127.0.0.1:PORT/api/events/stream?offset=1')`
// against `herald serve` configured with `[server] cors_origins = [A]`,
// receives the events, and after the server is restarted resumes by itself
// (Last-Event-ID) with no event twice and none missing.
//
// Usage: HERALD_BIN=/path/to/herald CHROMIUM=/usr/bin/chromium \
//        node eventsource_test.mjs   (tests/browser/run.sh does this)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const herald = process.env.HERALD_BIN;
const chromium = process.env.CHROMIUM || '/usr/bin/chromium';
if (!herald) throw new Error('HERALD_BIN is not set');

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exitCode = 1;
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

// Polls `pred` (async) until true or `ms` pass.
async function waitFor(pred, ms, what) {
  const until = Date.now() + ms;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-browser-'));
const apiPort = await freePort();
const originPort = await freePort();
const origin = `http://127.0.0.1:${originPort}`;
const api = `http://127.0.0.1:${apiPort}`;
const config = path.join(dir, 'herald.toml');
fs.writeFileSync(
  config,
  `[store]\nurl = "sqlite:${path.join(dir, 'h.db')}"\n` +
    `[server]\nlisten = "127.0.0.1:${apiPort}"\n` +
    `cors_origins = ["${origin}"]\n`,
);

let serve = null;
async function startServe() {
  serve = spawn(herald, ['serve', '--config', config], {
    stdio: ['ignore', 'ignore', fs.openSync(path.join(dir, 'serve.err'), 'a')],
  });
  await waitFor(
    async () => {
      try {
        return (await fetch(`${api}/health`)).status === 200;
      } catch {
        return false;
      }
    },
    20000,
    'herald serve to answer /health',
  );
}
async function stopServe() {
  const exited = new Promise((r) => serve.once('exit', r));
  serve.kill('SIGTERM');
  await exited;
}

let next = 0;
async function append(n) {
  const events = [];
  for (let i = 0; i < n; ++i, ++next) {
    events.push({ stream: `s-${next % 3}`, type: 'page.seen', payload: { i: next } });
  }
  const r = await fetch(`${api}/api/events`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(events),
  });
  if (r.status !== 201) throw new Error(`append answered ${r.status}: ${await r.text()}`);
}

// Origin A: one page that streams from the API's origin into window.got.
const page = `<!doctype html><title>herald stream</title><script>
window.got = []; window.errors = 0; window.opens = 0;
const es = new EventSource('${api}/api/events/stream?offset=1');
es.onopen = () => { window.opens++; };
es.onerror = () => { window.errors++; };
es.onmessage = (m) => {
  const e = JSON.parse(m.data);
  window.got.push({ sse_id: m.lastEventId, position: e.position, id: e.id });
};
</script>`;
const site = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/html' });
  res.end(page);
});
await new Promise((r) => site.listen(originPort, '127.0.0.1', r));

let browser = null;
try {
  await startServe();
  await append(20);
  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const tab = await browser.newPage();
  await tab.goto(`${origin}/`);
  const got = () => tab.evaluate(() => window.got);
  await waitFor(async () => (await got()).length >= 20, 20000, '20 events in the page');

  // Restart the server; the page's EventSource reconnects by itself with
  // Last-Event-ID: 20 and must get 21.. only.
  await stopServe();
  await startServe();
  await append(10);
  await waitFor(async () => (await got()).length >= 30, 30000, '30 events after the restart');
  await new Promise((r) => setTimeout(r, 500)); // room for a duplicate to show

  const events = await got();
  const opens = await tab.evaluate(() => window.opens);
  const positions = events.map((e) => e.position);
  const want = Array.from({ length: 30 }, (_, i) => i + 1);
  if (JSON.stringify(positions) !== JSON.stringify(want)) {
    fail(`positions ${JSON.stringify(positions)}, want 1..30 once each, in order`);
  }
  if (new Set(events.map((e) => e.id)).size !== events.length) fail('an event id came twice');
  for (const e of events) {
    if (e.sse_id !== String(e.position)) fail(`SSE id ${e.sse_id} for position ${e.position}`);
  }
  if (opens < 2) fail(`EventSource opened ${opens} time(s), want a reconnect`);
  if (!process.exitCode) {
    console.log(`ok: ${events.length} events from ${origin} to ${api}, ${opens} opens, no duplicate`);
  }
} catch (e) {
  fail(e.stack || String(e));
} finally {
  if (browser) await browser.close();
  if (serve && serve.exitCode === null) serve.kill('SIGKILL');
  site.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
