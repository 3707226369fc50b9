/**
 * The HTTP input as the wiring builds it by default: the Falco receiver (source/http) with the
 * operations endpoints (server/ops) served on its listener, a memory intake, real sockets on
 * 127.0.0.1:0. Shared by the receiver and the ops tests.
 */
import { rmSync } from 'node:fs';
import { afterEach } from 'vitest';
import { createAlert, type Alert } from '../../src/alert.js';
import type { Config } from '../../src/config/schema.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { MemoryIntake } from '../../src/pipeline/intake.js';
import { HttpServer } from '../../src/server/http.js';
import { OpsServer, testAlertRoute, type Readiness } from '../../src/server/ops.js';

export type HttpConfig = Config['http'];

export function httpConfig(over: Partial<HttpConfig> = {}): HttpConfig {
  return {
    enabled: true,
    listen: '127.0.0.1:0',
    max_body_bytes: 64 * 1024,
    header_timeout: 10_000,
    request_timeout: 30_000,
    keep_alive_timeout: 5_000,
    retry_after: 1000,
    tls: { cert: null, key: null, client_ca: null },
    ...over,
  };
}

export const ALERT =
  '{"hostname":"node-1","output":"09:20:49.259268899: Warning Shell spawned (user=root)","output_fields":{"evt.time":1700000000123456789,"proc.name":"bash","container.id":"host"},"priority":"Warning","rule":"Terminal shell in container","source":"syscall","tags":["container","shell"],"time":"2023-11-14T22:13:20.123456789Z"}';

export function testAlert(): Alert {
  return createAlert({
    time: new Date().toISOString(),
    rule: 'Falco companion test alert',
    priority: 'Debug',
    outputFields: { 'companion.test': true },
    origin: { kind: 'test', component: 'server/ops' },
  });
}

export interface Harness {
  server: HttpServer;
  ops: OpsServer;
  intake: MemoryIntake;
  metrics: Metrics;
  base: string;
  ready: { value: boolean };
}

const open: { stop(deadlineMs: number): Promise<void> }[] = [];
export const dirs: string[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.stop(Date.now() + 2000);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Stop `c` after the test. */
export function stopAfter(c: { stop(deadlineMs: number): Promise<void> }): void {
  open.push(c);
}

/** The `ops.test_token` of the harness's POST /test (send {@link TEST_AUTH}). */
export const TEST_TOKEN = 'harness-test-token-0123456789';
export const TEST_AUTH = { authorization: `Bearer ${TEST_TOKEN}` };

/** The ops component with the readiness of one fake sink (`ready.value`) and POST /test (token {@link TEST_TOKEN}). */
export function opsServer(listen: string | null, intake: MemoryIntake, metrics: Metrics, ready: { value: boolean }, retryAfterMs = 1000): OpsServer {
  const readiness = (): Readiness => ({ ready: ready.value, components: { 'sink/x': ready.value ? { ready: true } : { ready: false, detail: 'down' } } });
  const ops = new OpsServer({ listen, config: httpConfig(), logger: silentLogger(), metrics, readiness });
  ops.route(testAlertRoute({ intake, alert: testAlert, retryAfterMs, token: TEST_TOKEN, logger: silentLogger(), metrics }));
  stopAfter(ops);
  return ops;
}

export async function harness(over: Partial<HttpConfig> = {}, capacity = 100): Promise<Harness> {
  const metrics = new Metrics({ collectDefault: false });
  const intake = new MemoryIntake(capacity, metrics);
  const ready = { value: true };
  const config = httpConfig(over);
  const ops = opsServer(null, intake, metrics, ready, config.retry_after);
  const server = new HttpServer({ config, intake, logger: silentLogger(), metrics, ops });
  await ops.start();
  await server.start();
  stopAfter(server);
  const a = server.address();
  return { server, ops, intake, metrics, ready, base: `http://127.0.0.1:${a.port}` };
}

export async function post(url: string, body: string | Buffer, headers: Record<string, string> = { 'content-type': 'application/json' }) {
  const res = await fetch(url, { method: 'POST', body, headers });
  const text = await res.text();
  return { status: res.status, text, headers: res.headers, json: () => JSON.parse(text) as Record<string, unknown> };
}

export async function counter(m: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const metric = await m.registry.getSingleMetric(name)?.get();
  const v = metric?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}
