import { afterEach, describe, expect, it } from 'vitest';
import { Pool } from 'undici';
import { alertFromJson, createAlert, type Alert } from '../../src/alert.js';
import type { Config } from '../../src/config/schema.js';
import { StoppedError } from '../../src/errors.js';
import { LosslessNumber, parse } from '../../src/json/lossless.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { MemoryDeliveryQueue } from '../../src/sinks/delivery-queue.js';
import { FalcosidekickSink } from '../../src/sinks/falcosidekick.js';
import { classifyStatus, parseRetryAfter, sendToSidekick, sidekickBody } from '../../src/sinks/sidekick-client.js';
import { FakeSidekick, sidekickRejects } from '../support/sidekick.js';
import { until } from '../support/wait.js';

type SidekickConfig = Config['sinks']['falcosidekick'];

function cfg(url: string, over: Partial<SidekickConfig> = {}): SidekickConfig {
  return {
    url,
    timeout: 2000,
    concurrency: 4,
    max_queue: 100,
    retry_initial: 10,
    retry_max: 50,
    max_elapsed: 0,
    ca: null,
    client_cert: null,
    client_key: null,
    insecure: false,
    ...over,
  };
}

const RAW =
  '{"hostname":"node-1","output":"Shell","output_fields":{"evt.time":1700000000123456789,"container.start_ts":1699999999000000001,"proc.name":"bash","fd.num":-1,"ratio":0.25,"ok":true,"nothing":null},"priority":"Warning","rule":"Terminal shell in container","source":"syscall","tags":["shell"],"time":"2023-11-14T22:13:20.123456789Z"}';

function alert(i = 0): Alert {
  return createAlert({
    time: '2023-11-14T22:13:20.123456789Z',
    rule: 'Test rule',
    priority: 'Notice',
    outputFields: { seq: i, 'evt.time': new LosslessNumber(`17000000001234567${String(i).padStart(2, '0')}`) },
    origin: { kind: 'test', component: 'test' },
  });
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function setup(over: Partial<SidekickConfig> = {}) {
  const fake = await new FakeSidekick().start();
  const metrics = new Metrics({ collectDefault: false });
  const config = cfg(fake.url, over);
  const queue = new MemoryDeliveryQueue({ id: 'sink/falcosidekick', maxQueue: config.max_queue, maxElapsedMs: config.max_elapsed, metrics, logger: silentLogger() });
  const sink = new FalcosidekickSink({ queue, config, logger: silentLogger(), metrics, random: () => 0.5 });
  await sink.start();
  cleanup.push(() => fake.close());
  cleanup.push(() => sink.stop(Date.now() + 1000));
  return { fake, metrics, sink };
}

async function value(m: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = await m.registry.getSingleMetric(name)?.get();
  return (metric?.values ?? []).filter((x) => Object.entries(labels).every(([k, v]) => x.labels[k] === v)).reduce((s, x) => s + x.value, 0);
}

describe('classification helpers', () => {
  it('sorts statuses into ok / retryable / permanent', () => {
    expect(classifyStatus(200)).toBe('ok');
    for (const s of [408, 429, 500, 502, 503, 504]) expect(classifyStatus(s)).toBe('retryable');
    for (const s of [400, 401, 403, 404, 413, 422]) expect(classifyStatus(s)).toBe('permanent');
  });

  it('parses Retry-After in seconds and as an HTTP date', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', now)).toBe(5000);
    expect(parseRetryAfter('soon')).toBeNull();
    expect(parseRetryAfter(undefined)).toBeNull();
  });

  it('adds companion.forwarded_by when output_fields would be empty (sidekick requires them)', () => {
    const bare = createAlert({ time: '2023-11-14T22:13:20Z', rule: 'r', priority: 'Informational', origin: { kind: 'test', component: 't' } });
    expect(sidekickRejects(serialize(bare))).toBe('empty output_fields');
    const body = sidekickBody(bare);
    expect(sidekickRejects(body)).toBeNull();
    expect(body).toContain('"companion.forwarded_by":"falco-companion"');
    expect(sidekickBody(alert())).not.toContain('forwarded_by');
  });

  it('sendToSidekick classifies a refused connection as retryable', async () => {
    const fake = await new FakeSidekick().start();
    const url = new URL(fake.url);
    await fake.close();
    const pool = new Pool(url.origin);
    const r = await sendToSidekick(pool, { origin: url.origin, path: '/' }, sidekickBody(alert()), 1000);
    await pool.close();
    expect(r.kind).toBe('retryable');
    if (r.kind === 'retryable') expect(r.code).toBe('ECONNREFUSED');
  });
});

function serialize(a: Alert): string {
  return JSON.stringify({ output: a.output, priority: a.priority, rule: a.rule, time: a.time, output_fields: a.outputFields ?? {} });
}

describe('FalcosidekickSink', () => {
  it('delivers one alert per POST with every digit of big integers exact', async () => {
    const { fake, sink, metrics } = await setup();
    const a = alertFromJson(parse(RAW), { kind: 'http', component: 'source/http' });
    await sink.write(a);
    await fake.waitForAccepted(1);
    const got = fake.accepted[0];
    expect(got?.raw).toContain('"evt.time":1700000000123456789');
    expect(got?.raw).toContain('"container.start_ts":1699999999000000001');
    expect(String((got?.parsed['output_fields'] as Record<string, unknown>)['evt.time'])).toBe('1700000000123456789');
    expect(got?.raw).toBe(RAW);
    await until(() => sink.pending() === 0);
    expect(await value(metrics, 'falco_companion_sent_total', { component: 'sink/falcosidekick' })).toBe(1);
    expect(sink.health().ready).toBe(true);
  });

  it('honours Retry-After on 429 and 503, then delivers', async () => {
    const { fake, sink, metrics } = await setup({ retry_initial: 5000, retry_max: 5000 });
    fake.failNext(1, 429, { retryAfter: '1' });
    fake.failNext(1, 503, { retryAfter: new Date(Date.now() + 1000).toUTCString() });
    const t0 = Date.now();
    await sink.write(alert(1));
    await fake.waitForAccepted(1, 8000);
    const took = Date.now() - t0;
    // The 5 s backoff was replaced by Retry-After: two waits of at most ~1 s each.
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(4500);
    expect(fake.attempts.length).toBe(3);
    expect(await value(metrics, 'falco_companion_sink_retries_total')).toBe(2);
    expect(await value(metrics, 'falco_companion_errors_total', { code: 'http_429' })).toBe(1);
    expect(await value(metrics, 'falco_companion_errors_total', { code: 'http_503' })).toBe(1);
  });

  it('retries 500 with backoff and never retries 400 (counted, discarded)', async () => {
    const { fake, sink, metrics } = await setup();
    fake.failNext(2, 500);
    await sink.write(alert(1));
    await fake.waitForAccepted(1);
    expect(fake.attempts.length).toBe(3);
    fake.failNext(1, 400, { body: '{"error":"bad"}' });
    await sink.write(alert(2));
    await until(() => sink.pending() === 0);
    await new Promise((r) => setTimeout(r, 200));
    expect(fake.attempts.length).toBe(4);
    expect(fake.accepted.length).toBe(1);
    expect(await value(metrics, 'falco_companion_errors_total', { code: 'http_400' })).toBe(1);
    expect(await value(metrics, 'falco_companion_discarded_total', { component: 'sink/falcosidekick', reason: 'permanent' })).toBe(1);
  });

  it('down then up: delivers everything exactly once', async () => {
    const { fake, sink, metrics } = await setup({ concurrency: 2 });
    await fake.down();
    const n = 30;
    for (let i = 0; i < n; i++) await sink.write(alert(i));
    await until(() => (sink.health().ready === false), 5000);
    expect(sink.health().detail).toMatch(/ECONNREFUSED/);
    await fake.up();
    await fake.waitForAccepted(n, 10_000);
    await until(() => sink.pending() === 0);
    await new Promise((r) => setTimeout(r, 200));
    const seqs = fake.accepted.map((a) => Number((a.parsed['output_fields'] as Record<string, number>)['seq'])).sort((x, y) => x - y);
    expect(seqs).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(await value(metrics, 'falco_companion_sent_total', { component: 'sink/falcosidekick' })).toBe(n);
    expect(sink.health().ready).toBe(true);
  });

  it('bounded queue: write waits while full (back-pressure)', async () => {
    const { fake, sink } = await setup({ concurrency: 1, max_queue: 2 });
    fake.delay(300);
    await sink.write(alert(0)); // taken by the worker
    await until(() => sink.pending() === 1 && fake.attempts.length === 1);
    await sink.write(alert(1));
    await sink.write(alert(2));
    let fourthDone = false;
    const fourth = sink.write(alert(3)).then(() => (fourthDone = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(fourthDone).toBe(false);
    expect(sink.pending()).toBe(3);
    await fourth;
    await fake.waitForAccepted(4, 5000);
  });

  it('graceful stop drains the queue, then refuses writes', async () => {
    const { fake, sink } = await setup({ concurrency: 2 });
    fake.delay(50);
    for (let i = 0; i < 10; i++) await sink.write(alert(i));
    await sink.stop(Date.now() + 5000);
    expect(fake.accepted.length).toBe(10);
    expect(sink.pending()).toBe(0);
    await expect(sink.write(alert(99))).rejects.toBeInstanceOf(StoppedError);
  });

  it('stop at the deadline reports what is left undelivered', async () => {
    const { fake, sink, metrics } = await setup({ concurrency: 1 });
    await fake.down();
    for (let i = 0; i < 5; i++) await sink.write(alert(i));
    const t0 = Date.now();
    await sink.stop(Date.now() + 300);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(await value(metrics, 'falco_companion_discarded_total', { reason: 'shutdown' })).toBe(5);
  });

  it('gives up after max_elapsed', async () => {
    const { fake, sink, metrics } = await setup({ max_elapsed: 200, retry_initial: 20, retry_max: 40 });
    fake.failNext(1000, 503);
    await sink.write(alert(0));
    await until(() => sink.pending() === 0, 5000);
    expect(await value(metrics, 'falco_companion_discarded_total', { reason: 'max_elapsed' })).toBe(1);
    expect(fake.attempts.length).toBeGreaterThan(1);
  });

  it('times out a hung attempt and retries', async () => {
    const { fake, sink, metrics } = await setup({ timeout: 100 });
    fake.delay(400);
    await sink.write(alert(0));
    await until(() => fake.attempts.length >= 2, 5000);
    fake.delay(0);
    await until(() => sink.pending() === 0, 5000);
    expect(await value(metrics, 'falco_companion_errors_total', { code: 'timeout' })).toBeGreaterThanOrEqual(1);
  });
});
