import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { alertFromJson, fieldString, type Alert } from '../../src/alert.js';
import type { Config } from '../../src/config/schema.js';
import { FalcoGrpcEmulator } from '../../src/emulator/falco-grpc.js';
import { ConfigError } from '../../src/errors.js';
import { parse } from '../../src/json/lossless.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { MemoryIntake } from '../../src/pipeline/intake.js';
import { GrpcSource } from '../../src/sources/grpc.js';
import { makeTestCerts, type TestCerts } from '../support/certs.js';
import { shellAlertJson } from '../support/falco-alerts.js';
import { until as untilTrue, wait } from '../support/wait.js';

const alert = (id: number): string => shellAlertJson(id);

function cfg(over: Partial<Config['grpc']>): Config['grpc'] {
  return {
    enabled: true,
    address: 'unix:///nonexistent/falco.sock',
    mode: 'sub',
    request_interval: 30,
    reconnect_initial: 20,
    reconnect_max: 200,
    tls: { ca: null, cert: null, key: null, server_name: null },
    ...over,
  };
}

const until = (cond: () => boolean, ms = 8000): Promise<void> => untilTrue(cond, ms);

async function metric(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = metrics.registry.getSingleMetric(`falco_companion_${name}`);
  if (!m) return 0;
  const v = await m.get();
  return v.values.filter((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val)).reduce((s, x) => s + x.value, 0);
}

/** Drain an intake into `out`, optionally slowly. Returns a stopper. */
function consume(intake: MemoryIntake, out: Alert[], delayMs = 0): () => void {
  void (async () => {
    for (;;) {
      const a = await intake.take();
      if (!a) return;
      out.push(a);
      if (delayMs) await wait(delayMs);
    }
  })();
  return () => intake.close();
}

const ids = (as: readonly Alert[]): number[] => as.map((a) => Number(fieldString(a, 'test.id')));

interface Rig {
  source: GrpcSource;
  intake: MemoryIntake;
  metrics: Metrics;
  out: Alert[];
  stopConsumer: () => void;
}

describe('GrpcSource against the Falco emulator (unix socket)', () => {
  let dir: string;
  let sock: string;
  let emu: FalcoGrpcEmulator;
  const rigs: Rig[] = [];

  function rig(over: Partial<Config['grpc']>, capacity = 1000, consumeDelay: number | null = 0): Rig {
    const metrics = new Metrics({ collectDefault: false });
    const intake = new MemoryIntake(capacity, metrics);
    const source = new GrpcSource({ config: cfg({ address: sock, ...over }), intake, logger: silentLogger(), metrics, random: () => 0.5 });
    const out: Alert[] = [];
    const stopConsumer = consumeDelay === null ? () => intake.close() : consume(intake, out, consumeDelay);
    const r = { source, intake, metrics, out, stopConsumer };
    rigs.push(r);
    return r;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fc-grpc-src-'));
    sock = `unix://${join(dir, 'falco.sock')}`;
    emu = new FalcoGrpcEmulator({ address: sock, version: '0.40.3' });
    await emu.start();
  });
  afterEach(async () => {
    for (const r of rigs.splice(0)) {
      await r.source.stop(Date.now() + 2000);
      r.stopConsumer();
    }
    // Leave the shared queue empty for the next test.
    await emu.stop();
    await emu.start();
  });
  afterAll(async () => {
    await emu.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('delivers alerts in order, equal to the JSON path; version gauge, connected gauge, health', async () => {
    const r = rig({ request_interval: 100 });
    expect(r.source.health().ready).toBe(false);
    await r.source.start();
    await until(() => r.source.health().ready);
    expect(r.source.falcoVersion()).toBe('0.40.3');
    expect(await metric(r.metrics, 'falco_version')).toBe(4003);
    expect(await metric(r.metrics, 'grpc_connected')).toBe(1);
    for (let i = 0; i < 20; i++) emu.push(alert(i));
    await until(() => r.out.length === 20);
    expect(ids(r.out)).toEqual([...Array(20).keys()]);
    const viaJson = alertFromJson(parse(alert(0)), { kind: 'grpc', component: 'source/grpc' }, 0);
    // The intake may stamp companion keys (alert_id): compare what the source produced.
    expect({ ...r.out[0], receivedAtMs: 0, companion: {} }).toEqual({ ...viaJson, receivedAtMs: 0, companion: {} });
    expect(r.out[0]?.origin).toEqual({ kind: 'grpc', component: 'source/grpc' });
    expect(await metric(r.metrics, 'received_total', { component: 'source/grpc' })).toBe(20);
    expect(await metric(r.metrics, 'sent_total', { component: 'source/grpc' })).toBe(20);
  });

  it('sub latency is bounded by request_interval', async () => {
    const interval = 200;
    const r = rig({ request_interval: interval });
    await r.source.start();
    await until(() => r.source.health().ready);
    await wait(interval + 50); // the initial request has been consumed
    const before = r.source.requestCount();
    const t0 = Date.now();
    emu.push(alert(1));
    await until(() => r.out.length === 1);
    const latency = Date.now() - t0;
    // Up to one interval plus scheduling slack on a loaded machine.
    expect(latency).toBeLessThan(interval + 1500);
    expect(r.source.requestCount()).toBeGreaterThan(before);
  });

  it('stops requesting while the intake is full (Falco keeps the alerts), then drains', async () => {
    const r = rig({ request_interval: 20 }, 5, null);
    await r.source.start();
    await until(() => r.source.health().ready);
    for (let i = 0; i < 5; i++) emu.push(alert(i));
    await until(() => r.intake.depth === 5);
    await wait(100); // let any request already on the wire be served
    const requests = emu.stats().requests;
    for (let i = 5; i < 15; i++) emu.push(alert(i));
    await wait(400); // ~20 intervals
    expect(emu.queued()).toBe(10);
    expect(emu.stats().requests).toBe(requests);
    expect(r.intake.depth).toBe(5);
    // Room again: requests resume and everything arrives, in order.
    r.stopConsumer = consume(r.intake, r.out);
    await until(() => r.out.length === 15);
    expect(ids(r.out)).toEqual([...Array(15).keys()]);
    expect(emu.queued()).toBe(0);
    expect(await metric(r.metrics, 'discarded_total', { component: 'source/grpc' })).toBe(0);
  });

  it('never drops a batch larger than the intake: waits for room and retries', async () => {
    for (let i = 0; i < 40; i++) emu.push(alert(i));
    const r = rig({}, 3, 3);
    await r.source.start();
    await until(() => r.out.length === 40);
    expect(ids(r.out)).toEqual([...Array(40).keys()]);
    expect(await metric(r.metrics, 'discarded_total', { component: 'source/grpc' })).toBe(0);
  });

  it('reconnects after Falco restarts on the same socket path and keeps delivering', async () => {
    const r = rig({});
    await r.source.start();
    await until(() => r.source.health().ready);
    emu.push(alert(1));
    await until(() => r.out.length === 1);
    await emu.stop();
    await until(() => !r.source.health().ready);
    expect(await metric(r.metrics, 'grpc_connected')).toBe(0);
    await wait(100); // a few failed reconnects while Falco is down
    await emu.start();
    await until(() => r.source.health().ready);
    emu.push(alert(2));
    emu.push(alert(3));
    await until(() => r.out.length === 3);
    expect(ids(r.out)).toEqual([1, 2, 3]);
    expect(await metric(r.metrics, 'grpc_reconnects_total')).toBeGreaterThan(0);
    expect(await metric(r.metrics, 'errors_total', { component: 'source/grpc' })).toBeGreaterThan(0);
  });

  it('aborted streams mid-flight: everything handed over is kept, once, in order', async () => {
    const r = rig({ request_interval: 10 }, 4, 1);
    const writtenBefore = emu.stats().written;
    await r.source.start();
    await until(() => r.source.health().ready);
    let next = 0;
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 30; i++) emu.push(alert(next++));
      await wait(40);
      emu.abortStreams(grpc.status.UNAVAILABLE);
    }
    for (let i = 0; i < 10; i++) emu.push(alert(next++));
    const lastId = next - 1;
    await until(() => emu.queued() === 0 && r.out.length > 0 && ids(r.out).at(-1) === lastId, 15_000);
    await wait(50);
    const got = ids(r.out);
    // Exactly what the source read off the wire reached the intake: no loss after hand-over, no duplicates.
    expect(await metric(r.metrics, 'received_total', { component: 'source/grpc' })).toBe(got.length);
    expect(new Set(got).size).toBe(got.length);
    expect(got).toEqual([...got].sort((a, b) => a - b));
    // The emulator ends aborted streams with a status after the written messages (no reset), so
    // every message it wrote was handed over and must be here.
    expect(got.length).toBe(emu.stats().written - writtenBefore);
    expect(got.length).toBe(next);
    // The alerts pushed after the last abort all arrive.
    for (let id = lastId - 9; id <= lastId; id++) expect(got).toContain(id);
    expect(await metric(r.metrics, 'grpc_reconnects_total')).toBeGreaterThanOrEqual(1);
  });

  it('two sources share Falco’s queue: each alert reaches exactly one', async () => {
    const a = rig({ request_interval: 10 });
    const b = rig({ request_interval: 10 });
    await a.source.start();
    await b.source.start();
    await until(() => a.source.health().ready && b.source.health().ready);
    for (let i = 0; i < 60; i++) {
      emu.push(alert(i));
      if (i % 10 === 0) await wait(15);
    }
    await until(() => a.out.length + b.out.length === 60);
    await wait(100);
    const all = [...ids(a.out), ...ids(b.out)];
    expect(all).toHaveLength(60);
    expect(new Set(all).size).toBe(60);
  });

  it('get mode polls and drains the queue', async () => {
    const r = rig({ mode: 'get', request_interval: 30 });
    await r.source.start();
    await until(() => r.source.health().ready);
    for (let i = 0; i < 10; i++) emu.push(alert(i));
    await until(() => r.out.length === 10);
    emu.push(alert(10));
    await until(() => r.out.length === 11);
    expect(ids(r.out)).toEqual([...Array(11).keys()]);
    expect(emu.stats().streams).toBeGreaterThan(2);
  });

  it('counts and skips bad messages; invalid UTF-8 never crashes', async () => {
    const r = rig({});
    await r.source.start();
    await until(() => r.source.health().ready);
    emu.pushResponse({ time: { seconds: '1', nanos: 0 }, priority: 42, rule: 'bad priority' });
    const bad = Buffer.from([0xff, 0xc3, 0x28]);
    emu.pushResponse(Buffer.concat([Buffer.from([0x0a, 0x02, 0x08, 0x01, 0x10, 0x03, 0x22, 0x01, 0x72, 0x2a, bad.length]), bad]));
    emu.pushResponse(Buffer.from([0x2a, 0xff])); // truncated: undecodable
    emu.push(alert(5));
    await until(() => r.out.length === 2);
    expect(r.out[0]?.rule).toBe('r');
    expect(ids(r.out.slice(1))).toEqual([5]);
    expect(await metric(r.metrics, 'discarded_total', { component: 'source/grpc', reason: 'invalid' })).toBe(2);
    expect(await metric(r.metrics, 'errors_total', { component: 'source/grpc', code: 'E_INVALID_ALERT' })).toBe(2);
    expect(r.source.health().ready).toBe(true);
  });

  it('stop is idempotent, safe before start, and returns by the deadline while blocked on a full intake', async () => {
    const idle = rig({});
    await idle.source.stop(Date.now() + 100);
    await idle.source.stop(Date.now() + 100);
    await idle.source.start(); // after stop: stays stopped
    expect(idle.source.health().ready).toBe(false);

    const r = rig({}, 1, null);
    for (let i = 0; i < 5; i++) emu.push(alert(i));
    await r.source.start();
    await until(() => r.intake.full);
    const t0 = Date.now();
    await r.source.stop(Date.now() + 300);
    expect(Date.now() - t0).toBeLessThan(2000);
    await r.source.stop(Date.now() + 300);
    expect(r.source.health()).toMatchObject({ ready: false });
    expect(await metric(r.metrics, 'grpc_connected')).toBe(0);
    expect(await metric(r.metrics, 'discarded_total', { component: 'source/grpc', reason: 'shutdown' })).toBeGreaterThanOrEqual(1);
  });

  it('keeps retrying while Falco is absent, never throws from start', async () => {
    const metrics = new Metrics({ collectDefault: false });
    const intake = new MemoryIntake(10, metrics);
    const s = new GrpcSource({ config: cfg({ address: `unix://${join(dir, 'absent.sock')}`, reconnect_initial: 10, reconnect_max: 20 }), intake, logger: silentLogger(), metrics });
    await s.start();
    await until(() => true);
    await wait(150);
    expect(s.health().ready).toBe(false);
    expect(s.health().detail).toMatch(/absent\.sock/);
    expect(await metric(metrics, 'grpc_reconnects_total')).toBeGreaterThan(1);
    expect(await metric(metrics, 'falco_version')).toBe(0);
    await s.stop(Date.now() + 500);
  });
});

describe('GrpcSource over TCP with mTLS', () => {
  let certs: TestCerts;
  let emu: FalcoGrpcEmulator;
  let address: string;

  beforeAll(async () => {
    certs = makeTestCerts();
    emu = new FalcoGrpcEmulator({ address: '127.0.0.1:0', tls: { ca: certs.caCert, cert: certs.serverCert, key: certs.serverKey }, version: '0.42.1' });
    ({ address } = await emu.start());
  }, 30_000);
  afterAll(async () => {
    await emu?.stop();
    certs?.cleanup();
  });

  it('connects with client certificate and server_name override', async () => {
    const metrics = new Metrics({ collectDefault: false });
    const intake = new MemoryIntake(100, metrics);
    const out: Alert[] = [];
    const stopConsumer = consume(intake, out);
    const s = new GrpcSource({
      config: cfg({ address, tls: { ca: certs.caCert, cert: certs.clientCert, key: certs.clientKey, server_name: 'localhost' } }),
      intake,
      logger: silentLogger(),
      metrics,
    });
    try {
      await s.start();
      await until(() => s.health().ready);
      expect(s.falcoVersion()).toBe('0.42.1');
      expect(await metric(metrics, 'falco_version')).toBe(4201);
      emu.push(alert(9));
      await until(() => out.length === 1);
      expect(ids(out)).toEqual([9]);
    } finally {
      await s.stop(Date.now() + 1000);
      stopConsumer();
    }
  });

  it('refuses a TCP address without client certificate settings (config error at start)', async () => {
    const metrics = new Metrics({ collectDefault: false });
    const s = new GrpcSource({ config: cfg({ address, tls: { ca: certs.caCert, cert: null, key: null, server_name: null } }), intake: new MemoryIntake(1, metrics), logger: silentLogger(), metrics });
    await expect(s.start()).rejects.toBeInstanceOf(ConfigError);
    await expect(s.start()).rejects.toThrow(/grpc\.tls\.cert, grpc\.tls\.key/); // a failed start can be retried, and fails the same way
    await s.stop(Date.now() + 100);
  });
});
