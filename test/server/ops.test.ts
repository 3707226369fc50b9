/**
 * The operations endpoints (server/ops): served on the HTTP input's listener (the default), on a
 * listener of their own, with routes other components register; and as the wiring places them:
 * a gRPC-only companion (HTTP input off) still serves /metrics and /readyz, the input on means
 * one port, and ops.listen elsewhere means two. Real sockets on 127.0.0.1, a real gRPC server
 * (the Falco emulator) on a unix socket.
 */
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { Alert } from '../../src/alert.js';
import { systemClock } from '../../src/clock.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/validate.js';
import { FalcoGrpcEmulator } from '../../src/emulator/falco-grpc.js';
import { createLogger, silentLogger, type Logger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { MemoryIntake } from '../../src/pipeline/intake.js';
import { isLoopbackListen, OPS_LOOPBACK_DEFAULT, OpsServer, opsPlacement, testAlertRoute, type Readiness } from '../../src/server/ops.js';
import { buildApp, type App } from '../../src/wiring.js';
import { freeTcpPort } from '../support/net.js';
import { ALERT, dirs, harness, opsServer, post, stopAfter, TEST_AUTH, TEST_TOKEN, testAlert } from './harness.js';

describe('OpsServer on the HTTP input listener (the default: one port)', () => {
  it('serves /healthz, /ping, /readyz (200 and 503), /metrics', async () => {
    const h = await harness();
    const hz = await fetch(h.base + '/healthz');
    expect(hz.status).toBe(200);
    expect(await hz.json()).toEqual({ status: 'ok' });
    expect(await (await fetch(h.base + '/ping')).text()).toBe('pong');
    const r1 = await fetch(h.base + '/readyz');
    expect(r1.status).toBe(200);
    expect(((await r1.json()) as Readiness).components['sink/x']?.ready).toBe(true);
    h.ready.value = false;
    const r2 = await fetch(h.base + '/readyz');
    expect(r2.status).toBe(503);
    expect(await r2.json()).toEqual({ ready: false, components: { 'sink/x': { ready: false, detail: 'down' } } });
    await post(h.base, ALERT);
    const m = await fetch(h.base + '/metrics');
    expect(m.status).toBe(200);
    const text = await m.text();
    expect(text).toMatch(/falco_companion_received_total\{component="source\/http"\} 1/);
    expect(text).toMatch(/falco_companion_http_ack_seconds_bucket/);
  });

  it('POST /test submits the test alert end to end into the intake', async () => {
    const h = await harness({}, 1);
    const r = await fetch(h.base + '/test', { method: 'POST', headers: TEST_AUTH });
    expect(r.status).toBe(200);
    const a = (await h.intake.take()) as Alert;
    expect(a.rule).toBe('Falco companion test alert');
    expect((await fetch(h.base + '/test', { method: 'POST', headers: TEST_AUTH })).status).toBe(200);
    const full = await fetch(h.base + '/test', { method: 'POST', headers: TEST_AUTH });
    expect(full.status).toBe(503);
    expect(full.headers.get('retry-after')).toBe('1');
  });

  it('404/405 with a JSON reason for other methods and paths', async () => {
    const h = await harness();
    const g = await fetch(h.base + '/nope');
    expect(g.status).toBe(404);
    expect(((await g.json()) as { error: string }).error).toBe('not_found');
    const p = await fetch(h.base + '/healthz', { method: 'POST', body: '{}' });
    expect(p.status).toBe(405);
    expect(p.headers.get('allow')).toBe('GET, HEAD');
    const d = await fetch(h.base + '/', { method: 'DELETE' });
    expect(d.status).toBe(405);
    expect(((await d.json()) as { error: string }).error).toBe('method_not_allowed');
    expect((await fetch(h.base + '/test')).status).toBe(405);
  });
});

describe('OpsServer with a listener of its own', () => {
  async function own(): Promise<{ base: string; intake: MemoryIntake; ready: { value: boolean } }> {
    const metrics = new Metrics({ collectDefault: false });
    const intake = new MemoryIntake(10, metrics);
    const ready = { value: true };
    const ops = opsServer('127.0.0.1:0', intake, metrics, ready);
    await ops.start();
    const a = ops.address();
    expect(a).not.toBeNull();
    return { base: `http://127.0.0.1:${a?.port ?? 0}`, intake, ready };
  }

  it('serves the same endpoints, and no Falco receiver: POST / is a 404 naming the endpoints', async () => {
    const o = await own();
    expect(await (await fetch(o.base + '/healthz')).json()).toEqual({ status: 'ok' });
    expect(await (await fetch(o.base + '/ping')).text()).toBe('pong');
    expect((await fetch(o.base + '/readyz')).status).toBe(200);
    o.ready.value = false;
    expect((await fetch(o.base + '/readyz')).status).toBe(503);
    expect(await (await fetch(o.base + '/metrics')).text()).toMatch(/falco_companion_queue_depth/);
    const r = await post(o.base + '/', ALERT);
    expect(r.status).toBe(404);
    expect(r.json()['error']).toBe('not_found');
    expect(r.json()['endpoints']).toEqual(['/healthz', '/readyz', '/metrics', '/ping', 'POST /test']);
    expect(o.intake.depth).toBe(0);
    const t = await fetch(o.base + '/test', { method: 'POST', headers: TEST_AUTH });
    expect(t.status).toBe(200);
    expect(((await o.intake.take()) as Alert).rule).toBe('Falco companion test alert');
    const wrong = await fetch(o.base + '/metrics', { method: 'DELETE' });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('GET, HEAD');
  });

  it('takes routes from other components: exact and prefix paths, query, HEAD; a duplicate is refused', async () => {
    const metrics = new Metrics({ collectDefault: false });
    const ops = opsServer('127.0.0.1:0', new MemoryIntake(1, metrics), metrics, { value: true });
    ops.route({ method: 'GET', path: '/detections/', prefix: true, handle: (r) => ({ status: r.rest === '' ? 404 : 200, json: { id: r.rest, view: r.query.get('view') } }) });
    ops.route({ method: 'GET', path: '/verify', handle: () => ({ status: 200, text: 'checked\n', contentType: 'text/plain' }) });
    expect(() => ops.route({ method: 'GET', path: '/verify', handle: () => ({ status: 200 }) })).toThrow(/GET \/verify is already registered/);
    await ops.start();
    const base = `http://127.0.0.1:${ops.address()?.port ?? 0}`;
    const d = await fetch(base + '/detections/01JABC?view=full');
    expect(d.status).toBe(200);
    expect(await d.json()).toEqual({ id: '01JABC', view: 'full' });
    expect((await fetch(base + '/detections/')).status).toBe(404);
    expect(await (await fetch(base + '/verify')).text()).toBe('checked\n');
    const head = await fetch(base + '/verify', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
    expect((await fetch(base + '/detections/x', { method: 'POST' })).status).toBe(405);
    expect(ops.endpoints()).toEqual(['/healthz', '/readyz', '/metrics', '/ping', 'POST /test', '/verify', '/detections/…']);
  });

  it('binding a taken port fails with a clear error', async () => {
    const h = await harness();
    const metrics = new Metrics({ collectDefault: false });
    const ops = opsServer(`127.0.0.1:${h.server.address().port}`, h.intake, metrics, { value: true });
    await expect(ops.start()).rejects.toThrow(/ops: cannot listen on 127\.0\.0\.1:\d+/);
  });
});

/** A logger that keeps every line (parsed) in `into`. */
function captureLogger(into: Record<string, unknown>[]): Logger {
  return createLogger({ level: 'info', destination: { write: (line: string) => void into.push(JSON.parse(line) as Record<string, unknown>) } });
}

/** Whether HOST:PORT can be bound right now. */
function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

describe('POST /test: off without ops.test_token, else a bearer token', () => {
  function route(token: string | null): { metrics: Metrics; intake: MemoryIntake; ops: ReturnType<typeof opsServer> } {
    const metrics = new Metrics({ collectDefault: false });
    const intake = new MemoryIntake(10, metrics);
    const ops = new OpsServer({ listen: '127.0.0.1:0', config: { header_timeout: 1000, request_timeout: 1000, keep_alive_timeout: 1000 }, logger: silentLogger(), metrics, readiness: () => ({ ready: true, components: {} }) });
    ops.route(testAlertRoute({ intake, alert: testAlert, retryAfterMs: 1000, token, logger: silentLogger(), metrics }));
    stopAfter(ops);
    return { metrics, intake, ops };
  }
  const base = (o: OpsServer): string => `http://127.0.0.1:${o.address()?.port ?? 0}`;

  it('no token configured: 403 with the key to set, nothing submitted, counted', async () => {
    const { metrics, intake, ops } = route(null);
    await ops.start();
    for (const headers of [{}, TEST_AUTH]) {
      const r = await fetch(base(ops) + '/test', { method: 'POST', headers });
      expect(r.status).toBe(403);
      expect(await r.json()).toMatchObject({ error: 'forbidden', hint: expect.stringMatching(/ops\.test_token/) });
    }
    expect(intake.depth).toBe(0);
    expect(await metrics.text()).toMatch(/falco_companion_errors_total\{component="server\/ops",code="test_disabled"\} 2/);
  });

  it('with a token: 401 + WWW-Authenticate when missing or wrong, 200 with the right one (scheme case-insensitive)', async () => {
    const { metrics, intake, ops } = route(TEST_TOKEN);
    await ops.start();
    const wrongs: Record<string, string>[] = [{}, { authorization: 'Bearer nope' }, { authorization: `Basic ${TEST_TOKEN}` }, { authorization: `Bearer ${TEST_TOKEN}x` }, { authorization: `Bearer ${TEST_TOKEN.slice(1)}` }, { authorization: 'Bearer' }];
    for (const headers of wrongs) {
      const r = await fetch(base(ops) + '/test', { method: 'POST', headers });
      expect(r.status, JSON.stringify(headers)).toBe(401);
      expect(r.headers.get('www-authenticate')).toBe('Bearer realm="falco-companion"');
      // the answer never echoes the token
      expect(await r.text()).not.toContain(TEST_TOKEN);
    }
    expect(intake.depth).toBe(0);
    expect(await metrics.text()).toMatch(new RegExp(`falco_companion_errors_total\\{component="server/ops",code="unauthorized"\\} ${wrongs.length}`));
    expect((await fetch(base(ops) + '/test', { method: 'POST', headers: TEST_AUTH })).status).toBe(200);
    expect((await fetch(base(ops) + '/test', { method: 'POST', headers: { authorization: `bearer   ${TEST_TOKEN}` } })).status).toBe(200);
    expect(intake.depth).toBe(2);
  });

  it('ops.test_token must be a real secret: short or spaced values are refused at start', () => {
    const load = (v: string): Config => loadConfig<Config>(configSchema, { file: null, env: { FALCO_COMPANION_OPS_TEST_TOKEN: v } });
    expect(load('0123456789abcdef').ops.test_token).toBe('0123456789abcdef');
    expect(() => load('short')).toThrow(/ops\.test_token: must be 16 to 512 printable characters/);
    expect(() => load('0123456789 abcdef')).toThrow(/ops\.test_token/);
    // the refused value is not repeated in the error
    let message = '';
    try {
      load('secret-but-has a space');
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/ops\.test_token/);
    expect(message).not.toContain('secret-but-has');
    expect(loadConfig<Config>(configSchema, { file: null, env: {} }).ops.test_token).toBeNull();
  });
});

describe('opsPlacement: never reachable from other hosts unless ops.listen says so', () => {
  const cases: [string, string | null, boolean, { shared: boolean; listen: string; why: string }][] = [
    ['0.0.0.0:2804', null, true, { shared: false, listen: OPS_LOOPBACK_DEFAULT, why: 'loopback-default' }],
    ['[::]:2804', null, true, { shared: false, listen: OPS_LOOPBACK_DEFAULT, why: 'loopback-default' }],
    ['10.1.2.3:2804', null, true, { shared: false, listen: OPS_LOOPBACK_DEFAULT, why: 'loopback-default' }],
    ['0.0.0.0:2804', null, false, { shared: false, listen: OPS_LOOPBACK_DEFAULT, why: 'loopback-default' }],
    ['127.0.0.1:2804', null, true, { shared: true, listen: '127.0.0.1:2804', why: 'loopback' }],
    ['127.0.0.1:0', null, false, { shared: false, listen: '127.0.0.1:0', why: 'loopback' }],
    ['[::1]:2804', null, true, { shared: true, listen: '[::1]:2804', why: 'loopback' }],
    ['localhost:2804', null, true, { shared: true, listen: 'localhost:2804', why: 'loopback' }],
    ['127.9.9.9:2804', null, true, { shared: true, listen: '127.9.9.9:2804', why: 'loopback' }],
    ['0.0.0.0:2804', '0.0.0.0:2804', true, { shared: true, listen: '0.0.0.0:2804', why: 'configured' }],
    ['0.0.0.0:2804', '0.0.0.0:2804', false, { shared: false, listen: '0.0.0.0:2804', why: 'configured' }],
    ['0.0.0.0:2804', '0.0.0.0:2805', true, { shared: false, listen: '0.0.0.0:2805', why: 'configured' }],
    ['127.0.0.1:2804', '127.0.0.1:9000', true, { shared: false, listen: '127.0.0.1:9000', why: 'configured' }],
  ];
  it.each(cases)('http.listen %s, ops.listen %s, input on %s', (httpListen, opsListen, httpOn, want) => {
    expect(opsPlacement({ http: { listen: httpListen }, ops: { listen: opsListen } }, httpOn)).toEqual(want);
  });
  it('loopback means 127/8, ::1 and localhost only', () => {
    for (const l of ['127.0.0.1:1', '[::1]:1', 'localhost:1', 'LOCALHOST:1', '[::ffff:127.0.0.1]:1']) expect(isLoopbackListen(l), l).toBe(true);
    for (const l of ['0.0.0.0:1', '[::]:1', '128.0.0.1:1', '127.0.0.1.example:1', 'localhost.example:1', '192.0.2.1:1', '[::2]:1']) expect(isLoopbackListen(l), l).toBe(false);
  });
});

describe('wiring: where the operations endpoints listen', () => {
  function config(over: Record<string, unknown>): Config {
    const dir = mkdtempSync(join(tmpdir(), 'fc-ops-'));
    dirs.push(dir);
    return loadConfig<Config>(configSchema, {
      file: null,
      env: {},
      overrides: { state_dir: join(dir, 'state'), 'log.level': 'silent', 'enrich.enabled': false, 'detect.enabled': false, 'sinks.stdout.enabled': true, ...over },
    });
  }
  async function app(over: Record<string, unknown>): Promise<App> {
    const a = buildApp(config(over), { logger: silentLogger(), metrics: new Metrics({ collectDefault: false }), clock: systemClock, stdout: new PassThrough() });
    stopAfter(a);
    await a.start();
    return a;
  }
  const url = (a: { host: string; port: number } | null, path: string): string => `http://127.0.0.1:${a?.port ?? 0}${path}`;

  it('gRPC only (HTTP input off): /metrics and /readyz are served on http.listen by a listener of their own', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fc-ops-grpc-'));
    dirs.push(dir);
    const sock = `unix://${join(dir, 'falco.sock')}`;
    const emulator = new FalcoGrpcEmulator({ address: sock, version: '0.40.0', jsonOutput: true });
    await emulator.start();
    stopAfter({ stop: () => emulator.stop() });
    const a = await app({ 'http.enabled': false, 'http.listen': '127.0.0.1:0', 'grpc.enabled': true, 'grpc.address': sock, 'grpc.request_interval': 20 });
    expect(a.httpAddress()).toBeNull();
    const ops = a.opsAddress();
    expect(ops).not.toBeNull();
    // Ready once the gRPC stream is up (bounded poll).
    let ready: Readiness | null = null;
    for (const end = Date.now() + 10_000; ready === null && Date.now() < end; ) {
      const r = await fetch(url(ops, '/readyz'));
      if (r.status === 200) ready = (await r.json()) as Readiness;
      else await new Promise((res) => setTimeout(res, 50));
    }
    expect(ready?.components['source/grpc']?.ready).toBe(true);
    expect(ready?.components['server/ops']?.detail).toMatch(/^listening on 127\.0\.0\.1:\d+$/);
    const metrics = await (await fetch(url(ops, '/metrics'))).text();
    expect(metrics).toMatch(/falco_companion_grpc_connected 1/);
    expect((await post(url(ops, '/'), ALERT)).status).toBe(404);
  });

  it('HTTP input on, ops.listen empty: one port serves the receiver and the endpoints', async () => {
    const a = await app({ 'http.listen': '127.0.0.1:0' });
    expect(a.opsAddress()).toEqual(a.httpAddress());
    const base = url(a.httpAddress(), '');
    expect((await post(base + '/', ALERT)).status).toBe(200);
    expect(await (await fetch(base + '/metrics')).text()).toMatch(/falco_companion_received_total\{component="source\/http"\} 1/);
    const ready = (await (await fetch(base + '/readyz')).json()) as Readiness;
    expect(ready.components['server/ops']?.detail).toMatch(/HTTP input listener/);
  });

  it('ops.listen set to another address: two ports, each serving only its own part', async () => {
    const port = await freeTcpPort();
    const a = await app({ 'http.listen': '127.0.0.1:0', 'ops.listen': `127.0.0.1:${port}` });
    expect(a.opsAddress()?.port).toBe(port);
    expect(a.httpAddress()?.port).not.toBe(port);
    const input = url(a.httpAddress(), '');
    const ops = url(a.opsAddress(), '');
    expect((await post(input + '/', ALERT)).status).toBe(200);
    expect((await fetch(input + '/metrics')).status).toBe(404);
    expect((await post(ops + '/', ALERT)).status).toBe(404);
    expect(await (await fetch(ops + '/metrics')).text()).toMatch(/falco_companion_received_total\{component="source\/http"\} 1/);
    expect((await fetch(ops + '/test', { method: 'POST' })).status).toBe(403); // ops.test_token empty: off
  });

  it('HTTP input on 0.0.0.0, ops.listen empty: the receiver answers only alerts, the endpoints listen on 127.0.0.1:2805 and say so', async (ctx) => {
    const [h, p] = OPS_LOOPBACK_DEFAULT.split(':');
    if (!(await portFree(String(h), Number(p)))) ctx.skip(); // another companion runs here: the default address is taken
    const logs: Record<string, unknown>[] = [];
    const a = buildApp(config({ 'http.listen': '0.0.0.0:0' }), { logger: captureLogger(logs), metrics: new Metrics({ collectDefault: false }), clock: systemClock, stdout: new PassThrough() });
    stopAfter(a);
    await a.start();
    expect(a.opsAddress()).toEqual({ host: '127.0.0.1', port: Number(p) });
    const input = url(a.httpAddress(), '');
    expect((await post(input + '/', ALERT)).status).toBe(200);
    for (const path of ['/metrics', '/readyz', '/healthz', '/detections']) expect((await fetch(input + path)).status, path).toBe(404);
    expect(await (await fetch(url(a.opsAddress(), '/metrics'))).text()).toMatch(/falco_companion_received_total\{component="source\/http"\} 1/);
    const line = logs.find((l) => l['component'] === 'server/ops' && l['msg'] === 'listening');
    expect(line).toMatchObject({ host: '127.0.0.1', port: Number(p), exposure: expect.stringMatching(/loopback only.*ops\.listen/) });
  });
});
