// Checks docs/openapi.yaml and live answers of `herald serve` against it.
//
//   node check_live.js SPEC BASE_URL [FILL_PATH]
//
// The spec must validate (swagger-parser). Then each request of the corpus
// below is sent to the server, and its answer must be described by the
// spec: the status listed on the operation (path template and method), the
// media type among the response's content types (no body when it has
// none; never a body for HEAD), and the JSON body valid against the
// response's schema (ajv), and the headers the spec marks required are
// there. Every error code of docs/http-api.md's table must
// be seen at least once (`unavailable` only when FILL_PATH is given: a file
// on a small tmpfs holding the store, filled to make appends fail).
'use strict';
const fs = require('fs');
const net = require('net');
const SwaggerParser = require('@apidevtools/swagger-parser');
const Ajv = require('ajv');
const addFormats = require('ajv-formats');

const [specPath, base, fillPath] = process.argv.slice(2);
const R = {Authorization: 'Bearer read-token'};
const W = {Authorization: 'Bearer append-token'};
const A = {Authorization: 'Bearer admin-token'};
const JSON_W = {...W, 'Content-Type': 'application/json'};

let spec;
const ajv = new Ajv({strict: false, allErrors: true});
addFormats(ajv);
const compiled = new Map();
const failures = [];
const seenCodes = new Set();
let checked = 0;

function fail(what, why) {
  failures.push(`${what}: ${why}`);
}

function validate(schema, value) {
  let v = compiled.get(schema);
  if (!v) {
    v = ajv.compile(schema);
    compiled.set(schema, v);
  }
  return v(value) ? null : ajv.errorsText(v.errors);
}

// Checks one answer against operation `method` of `template`.
function check(what, method, template, res) {
  checked++;
  const item = spec.paths[template];
  const op = item && item[method.toLowerCase()];
  if (!op) return fail(what, `no operation ${method} ${template} in the spec`);
  const r = op.responses[String(res.status)];
  if (!r) {
    return fail(what, `status ${res.status} not listed on ${method} ${template}` +
                          ` (body ${res.body.slice(0, 200)})`);
  }
  for (const [name, h] of Object.entries(r.headers || {})) {
    if (h.required && res.headers && !res.headers.get(name)) {
      fail(what, `status ${res.status} lacks its required ${name} header`);
    }
  }
  const type = (res.type || '').split(';')[0].trim();
  if (method === 'HEAD') {
    if (res.body.length) fail(what, 'HEAD answered a body');
    return;
  }
  if (!r.content) {
    if (res.body.length) fail(what, `status ${res.status} has no body in the spec, got one`);
    return;
  }
  const media = r.content[type];
  if (!media) {
    return fail(what, `media type '${type}' not among ${Object.keys(r.content)}`);
  }
  if (type === 'application/json') {
    let doc;
    try {
      doc = JSON.parse(res.body);
    } catch (e) {
      return fail(what, `body is not JSON: ${res.body.slice(0, 200)}`);
    }
    if (doc && doc.error && doc.error.code) seenCodes.add(doc.error.code);
    const err = media.schema && validate(media.schema, doc);
    if (err) fail(what, `body does not match the schema: ${err}: ${res.body.slice(0, 300)}`);
  }
}

async function call(method, path, {headers = {}, body, stream = false} = {}) {
  const ctl = new AbortController();
  const res = await fetch(base + path, {method, headers, body, signal: ctl.signal});
  let text = '';
  if (stream) {
    // The first chunk of a stream, then hang up.
    const reader = res.body.getReader();
    const {value} = await reader.read();
    text = Buffer.from(value || []).toString();
    ctl.abort();
  } else {
    text = await res.text();
  }
  return {status: res.status, type: res.headers.get('content-type'), headers: res.headers, body: text};
}

// Sends raw bytes; answers the status, media type and body of the reply.
function raw(bytes) {
  return new Promise((resolve, reject) => {
    const u = new URL(base);
    const s = net.connect(Number(u.port), u.hostname, () => s.write(bytes));
    let data = '';
    s.on('data', (d) => (data += d));
    s.on('error', () => {});
    s.on('close', () => {
      const [head, ...rest] = data.split('\r\n\r\n');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      if (!m) return reject(new Error(`no HTTP answer to raw request: ${JSON.stringify(data)}`));
      const ct = /\r\ncontent-type: ([^\r]*)/i.exec(head);
      resolve({status: Number(m[1]), type: ct ? ct[1] : '', body: rest.join('\r\n\r\n')});
    });
    s.setTimeout(5000, () => s.destroy());
  });
}

async function waitFor(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const uuid = (n) => `0190a000-0000-7000-8000-${String(n).padStart(12, '0')}`;

async function main() {
  await SwaggerParser.validate(specPath);
  spec = await SwaggerParser.dereference(specPath);
  await waitFor('the server', async () => {
    try {
      return (await fetch(base + '/health')).status === 200;
    } catch (e) {
      return false;
    }
  });

  // ---- health, metrics, OPTIONS, HEAD
  check('GET /health', 'GET', '/health', await call('GET', '/health'));
  check('HEAD /health', 'HEAD', '/health', await call('HEAD', '/health'));
  check('GET /health?x=1', 'GET', '/health', await call('GET', '/health?x=1'));
  check('GET /metrics', 'GET', '/metrics', await call('GET', '/metrics', {headers: R}));
  check('HEAD /metrics', 'HEAD', '/metrics', await call('HEAD', '/metrics', {headers: R}));
  for (const [p, t] of [['/api/events', '/api/events'], ['/api/events/stream', '/api/events/stream'],
                        [`/api/events/${uuid(1)}`, '/api/events/{id}'], ['/api/streams/s', '/api/streams/{stream}'],
                        ['/api/relays', '/api/relays'], ['/api/relays/hook/parked', '/api/relays/{name}/parked'],
                        [`/api/relays/hook/parked/${uuid(1)}/retry`, '/api/relays/{name}/parked/{id}/retry'],
                        [`/api/relays/hook/parked/${uuid(1)}`, '/api/relays/{name}/parked/{id}'],
                        ['/health', '/health'], ['/metrics', '/metrics']]) {
    check(`OPTIONS ${p}`, 'OPTIONS', t, await call('OPTIONS', p));
  }

  // ---- tokens
  check('GET /api/events, no token', 'GET', '/api/events', await call('GET', '/api/events'));
  check('GET /api/events, unknown token', 'GET', '/api/events',
        await call('GET', '/api/events', {headers: {Authorization: 'Bearer nope'}}));
  check('GET /metrics, no token', 'GET', '/metrics', await call('GET', '/metrics'));
  check('POST /api/events, read token', 'POST', '/api/events',
        await call('POST', '/api/events', {headers: {...R, 'Content-Type': 'application/json'}, body: '{}'}));
  check('DELETE parked, append token', 'DELETE', '/api/relays/{name}/parked/{id}',
        await call('DELETE', `/api/relays/hook/parked/${uuid(1)}`, {headers: W}));

  // ---- appends
  const one = await call('POST', '/api/events', {headers: JSON_W,
    body: JSON.stringify({id: uuid(10), stream: 'order-1', type: 'order.placed', payload: {n: 1}})});
  check('POST one event', 'POST', '/api/events', one);
  if (one.status !== 201 || one.headers.get('location') !== `/api/events/${uuid(10)}`) {
    fail('POST one event', `want 201 with Location, got ${one.status} ${one.headers.get('location')}`);
  }
  check('POST it again', 'POST', '/api/events', await call('POST', '/api/events', {headers: JSON_W,
    body: JSON.stringify({id: uuid(10), stream: 'order-1', type: 'order.placed', payload: {n: 1}})}));
  const arr = await call('POST', '/api/events', {headers: JSON_W, body: JSON.stringify([
    {stream: 'order-2', type: 'order.placed', payload: 'text', content_type: 'text/plain'},
    {id: uuid(20), stream: 'park-1', type: 'park.me'},
    {id: uuid(21), stream: 'park-2', type: 'park.me'}])});
  check('POST an array', 'POST', '/api/events', arr);
  if (arr.status !== 201) fail('POST an array', `want 201, got ${arr.status}`);
  check('POST invalid JSON', 'POST', '/api/events', await call('POST', '/api/events', {headers: JSON_W, body: '{"stream":'}));
  check('POST without type', 'POST', '/api/events',
        await call('POST', '/api/events', {headers: JSON_W, body: '{"stream":"s"}'}));
  check('POST empty array', 'POST', '/api/events', await call('POST', '/api/events', {headers: JSON_W, body: '[]'}));
  check('POST text/plain', 'POST', '/api/events',
        await call('POST', '/api/events', {headers: {...W, 'Content-Type': 'text/plain'}, body: '{}'}));
  check('POST expected_version mismatch', 'POST', '/api/events', await call('POST', '/api/events?expected_version=0',
    {headers: JSON_W, body: JSON.stringify({stream: 'order-1', type: 'order.placed'})}));
  check('POST expected_version=x', 'POST', '/api/events', await call('POST', '/api/events?expected_version=x',
    {headers: JSON_W, body: JSON.stringify({stream: 'order-1', type: 'order.placed'})}));
  const many = JSON.stringify(Array.from({length: 10001}, () => ({stream: 's', type: 't'})));
  check('POST 10,001 events', 'POST', '/api/events', await call('POST', '/api/events', {headers: JSON_W, body: many}));

  // ---- reads
  check('GET /api/events', 'GET', '/api/events', await call('GET', '/api/events?offset=0&limit=2', {headers: R}));
  const all = await call('GET', '/api/events?limit=100', {headers: R});
  check('GET /api/events (payload_base64)', 'GET', '/api/events', all);
  if (!/"payload_base64":"/.test(all.body)) fail('GET /api/events', 'no payload_base64 for the binary payload');
  const full = await call('GET', '/api/events?offset=1&limit=1', {headers: R});
  check('GET a full page', 'GET', '/api/events', full);
  const etag = full.headers.get('etag');
  if (!etag) fail('GET a full page', 'no ETag');
  check('GET If-None-Match', 'GET', '/api/events',
        await call('GET', '/api/events?offset=1&limit=1', {headers: {...R, 'If-None-Match': etag}}));
  check('HEAD /api/events', 'HEAD', '/api/events', await call('HEAD', '/api/events?offset=1&limit=1', {headers: R}));
  check('HEAD If-None-Match', 'HEAD', '/api/events',
        await call('HEAD', '/api/events?offset=1&limit=1', {headers: {...R, 'If-None-Match': etag}}));
  check('HEAD /api/events, no token', 'HEAD', '/api/events', await call('HEAD', '/api/events'));
  check('GET offset=-1', 'GET', '/api/events', await call('GET', '/api/events?offset=-1', {headers: R}));
  check('GET unknown parameter', 'GET', '/api/events', await call('GET', '/api/events?bogus=1', {headers: R}));
  check('GET wait=1000', 'GET', '/api/events', await call('GET', '/api/events?wait=1000', {headers: R}));
  check('GET stream', 'GET', '/api/events/stream',
        await call('GET', '/api/events/stream?offset=1', {headers: R, stream: true}));
  check('HEAD stream', 'HEAD', '/api/events/stream', await call('HEAD', '/api/events/stream', {headers: R}));
  check('GET stream offset=x', 'GET', '/api/events/stream', await call('GET', '/api/events/stream?offset=x', {headers: R}));
  check('GET stream, bad Last-Event-ID', 'GET', '/api/events/stream',
        await call('GET', '/api/events/stream', {headers: {...R, 'Last-Event-ID': 'x'}}));
  check('GET event', 'GET', '/api/events/{id}', await call('GET', `/api/events/${uuid(10)}`, {headers: R}));
  check('HEAD event', 'HEAD', '/api/events/{id}', await call('HEAD', `/api/events/${uuid(10)}`, {headers: R}));
  check('GET unknown event', 'GET', '/api/events/{id}', await call('GET', `/api/events/${uuid(99)}`, {headers: R}));
  check('GET event, not a UUID', 'GET', '/api/events/{id}', await call('GET', '/api/events/nope', {headers: R}));
  check('GET stream order-1', 'GET', '/api/streams/{stream}', await call('GET', '/api/streams/order-1', {headers: R}));
  check('HEAD stream order-1', 'HEAD', '/api/streams/{stream}', await call('HEAD', '/api/streams/order-1', {headers: R}));
  check('GET stream from_version=-1', 'GET', '/api/streams/{stream}',
        await call('GET', '/api/streams/order-1?from_version=-1', {headers: R}));

  // ---- relays and parked events
  check('GET /api/relays', 'GET', '/api/relays', await call('GET', '/api/relays', {headers: R}));
  check('HEAD /api/relays', 'HEAD', '/api/relays', await call('HEAD', '/api/relays', {headers: R}));
  check('GET /api/relays?x=1', 'GET', '/api/relays', await call('GET', '/api/relays?x=1', {headers: R}));
  const parked = await waitFor('two parked events', async () => {
    const r = await call('GET', '/api/relays/hook/parked', {headers: R});
    return JSON.parse(r.body).parked?.length >= 2 ? r : null;
  });
  check('GET parked', 'GET', '/api/relays/{name}/parked', parked);
  check('HEAD parked', 'HEAD', '/api/relays/{name}/parked', await call('HEAD', '/api/relays/hook/parked', {headers: R}));
  check('GET parked state=x', 'GET', '/api/relays/{name}/parked',
        await call('GET', '/api/relays/hook/parked?state=x', {headers: R}));
  check('GET parked, unknown route', 'GET', '/api/relays/{name}/parked',
        await call('GET', '/api/relays/nope/parked', {headers: R}));
  check('retry, read token', 'POST', '/api/relays/{name}/parked/{id}/retry',
        await call('POST', `/api/relays/hook/parked/${uuid(20)}/retry`, {headers: R}));
  check('retry', 'POST', '/api/relays/{name}/parked/{id}/retry',
        await call('POST', `/api/relays/hook/parked/${uuid(20)}/retry`, {headers: A}));
  check('retry, not a UUID', 'POST', '/api/relays/{name}/parked/{id}/retry',
        await call('POST', '/api/relays/hook/parked/nope/retry', {headers: A}));
  check('retry, unknown id', 'POST', '/api/relays/{name}/parked/{id}/retry',
        await call('POST', `/api/relays/hook/parked/${uuid(98)}/retry`, {headers: A}));
  check('drop', 'DELETE', '/api/relays/{name}/parked/{id}',
        await call('DELETE', `/api/relays/hook/parked/${uuid(21)}`, {headers: A}));
  check('drop, unknown id', 'DELETE', '/api/relays/{name}/parked/{id}',
        await call('DELETE', `/api/relays/hook/parked/${uuid(21)}`, {headers: A}));

  // ---- the console's endpoints: newest first, whoami, bulk actions, assets
  const JSON_A = {...A, 'Content-Type': 'application/json'};
  check('GET newest', 'GET', '/api/events/newest', await call('GET', '/api/events/newest?limit=2', {headers: R}));
  check('GET newest, globs', 'GET', '/api/events/newest',
        await call('GET', '/api/events/newest?stream=order-*&type=order.*&before=5', {headers: R}));
  check('HEAD newest', 'HEAD', '/api/events/newest', await call('HEAD', '/api/events/newest', {headers: R}));
  check('GET newest before=0', 'GET', '/api/events/newest', await call('GET', '/api/events/newest?before=0', {headers: R}));
  check('GET newest, no token', 'GET', '/api/events/newest', await call('GET', '/api/events/newest'));
  check('GET newest, append token', 'GET', '/api/events/newest', await call('GET', '/api/events/newest', {headers: W}));
  check('GET whoami', 'GET', '/api/whoami', await call('GET', '/api/whoami', {headers: A}));
  check('GET whoami, no token', 'GET', '/api/whoami', await call('GET', '/api/whoami'));
  check('GET whoami, unknown token', 'GET', '/api/whoami',
        await call('GET', '/api/whoami', {headers: {Authorization: 'Bearer nope'}}));
  check('GET whoami?x=1', 'GET', '/api/whoami', await call('GET', '/api/whoami?x=1'));
  check('HEAD whoami', 'HEAD', '/api/whoami', await call('HEAD', '/api/whoami'));
  check('bulk drop, one unknown id', 'POST', '/api/relays/{name}/parked/drop',
        await call('POST', '/api/relays/hook/parked/drop', {headers: JSON_A, body: JSON.stringify({ids: [uuid(97)]})}));
  check('bulk retry all', 'POST', '/api/relays/{name}/parked/retry',
        await call('POST', '/api/relays/hook/parked/retry', {headers: JSON_A, body: '{"all":true}'}));
  check('bulk drop, bad body', 'POST', '/api/relays/{name}/parked/drop',
        await call('POST', '/api/relays/hook/parked/drop', {headers: JSON_A, body: '{"ids":["x"]}'}));
  check('bulk drop, not JSON', 'POST', '/api/relays/{name}/parked/drop',
        await call('POST', '/api/relays/hook/parked/drop', {headers: JSON_A, body: '{'}));
  check('bulk drop, text/plain', 'POST', '/api/relays/{name}/parked/drop',
        await call('POST', '/api/relays/hook/parked/drop', {headers: {...A, 'Content-Type': 'text/plain'}, body: '{}'}));
  check('bulk retry, read token', 'POST', '/api/relays/{name}/parked/retry',
        await call('POST', '/api/relays/hook/parked/retry', {headers: {...R, 'Content-Type': 'application/json'}, body: '{"all":true}'}));
  check('bulk retry, unknown route', 'POST', '/api/relays/{name}/parked/retry',
        await call('POST', '/api/relays/nope/parked/retry', {headers: JSON_A, body: '{"all":true}'}));
  check('GET /', 'GET', '/', await call('GET', '/'));
  check('HEAD /', 'HEAD', '/', await call('HEAD', '/'));
  check('GET /console/app.js', 'GET', '/console/{file}', await call('GET', '/console/app.js'));
  check('GET /console/style.css', 'GET', '/console/{file}', await call('GET', '/console/style.css'));
  check('GET /console/index.html', 'GET', '/console/{file}', await call('GET', '/console/index.html'));
  for (const [p, t] of [['/api/events/newest', '/api/events/newest'], ['/api/whoami', '/api/whoami'],
                        ['/api/relays/hook/parked/retry', '/api/relays/{name}/parked/retry'],
                        ['/api/relays/hook/parked/drop', '/api/relays/{name}/parked/drop'],
                        ['/', '/'], ['/console/app.js', '/console/{file}']]) {
    check(`OPTIONS ${p}`, 'OPTIONS', t, await call('OPTIONS', p));
  }

  // ---- not an operation: 404 and 405 answer the Error body
  for (const [what, res] of [['GET /nope', await call('GET', '/nope', {headers: R})],
                             ['PUT /api/events', await call('PUT', '/api/events', {headers: A})]]) {
    checked++;
    const doc = JSON.parse(res.body);
    seenCodes.add(doc.error?.code);
    const err = validate(spec.components.schemas.Error, doc);
    if (err || ![404, 405].includes(res.status)) fail(what, `${res.status} ${err || ''}`);
    if (res.status === 405 && !res.headers.get('allow')) fail(what, 'no Allow header');
  }

  // ---- malformed HTTP, limits of the transport
  check('raw: garbage', 'GET', '/health', await raw('GARBAGE\r\n\r\n'));
  check('raw: bad %-escape', 'GET', '/api/events/{id}',
        await raw('GET /api/events/%zz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'));
  check('raw: headers too large', 'GET', '/health',
        await raw(`GET /health HTTP/1.1\r\nHost: t\r\nX-Big: ${'b'.repeat(20000)}\r\n\r\n`));
  check('raw: body too large', 'POST', '/api/events',
        await raw('POST /api/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer append-token\r\n' +
                  'Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n'));

  // ---- the store refuses writes: 503, and /health says so
  if (fillPath) {
    const block = Buffer.alloc(1 << 16, 102);
    const fd = fs.openSync(fillPath, 'w');
    try {
      for (;;) fs.writeSync(fd, block);
    } catch (e) {
      if (e.code !== 'ENOSPC') throw e;
    } finally {
      fs.closeSync(fd);
    }
    const big = JSON.stringify({stream: 'big', type: 'big.one', payload: 'p'.repeat(600000)});
    const res = await call('POST', '/api/events', {headers: JSON_W, body: big});
    check('POST on a full disk', 'POST', '/api/events', res);
    if (res.status !== 503) fail('POST on a full disk', `want 503, got ${res.status}`);
    const h = await call('GET', '/health');
    check('GET /health while appends fail', 'GET', '/health', h);
    if (!/"status":"degraded"/.test(h.body)) fail('GET /health while appends fail', h.body);
    fs.unlinkSync(fillPath);
  }

  const want = ['invalid_argument', 'invalid_json', 'bad_request', 'unauthorized', 'forbidden', 'not_found',
                'method_not_allowed', 'conflict', 'payload_too_large', 'too_many_events',
                'unsupported_media_type', 'headers_too_large'];
  if (fillPath) want.push('unavailable');
  for (const c of want) {
    if (!seenCodes.has(c)) fail('corpus', `error code '${c}' of docs/http-api.md never answered`);
  }
  if (failures.length) {
    console.error(`openapi: ${failures.length} of ${checked} answers disagree with the spec:`);
    for (const f of failures) console.error('  ' + f);
    process.exit(1);
  }
  console.log(`openapi: spec valid; ${checked} live answers match it`);
}

main().catch((e) => {
  console.error('openapi: ' + (e.stack || e));
  process.exit(1);
});
