/**
 * The container enricher against a real Docker engine (dockerd on a temp socket, images from
 * `docker import`, a real pull from Debian's docker-registry on 127.0.0.1).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Alert, EnrichValue } from '../../src/alert.js';
import type { Clock } from '../../src/clock.js';
import { defaults } from '../../src/config/dsl.js';
import { containerEnrichSection } from '../../src/config/sections/enrich-container.js';
import { ContainerEnricher, type ContainerEnrichConfig } from '../../src/enrich/container.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { openStateDb, type Db } from '../../src/store/db.js';
import { dockerSkipReason, startDockerd, type Dockerd } from '../support/dockerd.js';
import { falcoAlert } from '../support/falco-alerts.js';
import { until } from '../support/wait.js';

const skip = dockerSkipReason();
if (skip) console.warn(`skipping real Docker tests: ${skip}`);

const alertFor = (containerId: string): Alert => falcoAlert({ fields: { 'container.id': containerId } });

/** The wall clock, which the test can move ahead (to end the enricher's error_ttl without sleeping). */
let skewMs = 0;
const clock: Clock = { now: () => Date.now() + skewMs, monotonic: () => performance.now() + skewMs };
/** Long enough that no scheduling delay ends the "runtime down" window before the test looks at it. */
const ERROR_TTL = 60_000;

async function enrichWithin(e: ContainerEnricher, a: Alert, budgetMs: number): Promise<{ keys: Readonly<Record<string, EnrichValue>>; ms: number }> {
  const t0 = performance.now();
  const keys = await e.enrich(a, AbortSignal.timeout(budgetMs));
  return { keys, ms: performance.now() - t0 };
}

describe.skipIf(skip !== null)('ContainerEnricher with a real dockerd', () => {
  let d: Dockerd;
  let stateDir: string;
  let db: Db;
  let enricher: ContainerEnricher;
  let metrics: Metrics;
  let imageA: string;
  let containerA: string;

  beforeAll(async () => {
    d = await startDockerd();
    imageA = await d.importImage('demo/app:1.0', 'a');
    containerA = await d.runContainer('demo/app:1.0');
    stateDir = mkdtempSync(join(tmpdir(), 'fc-images-'));
    db = openStateDb(stateDir);
    metrics = new Metrics({ collectDefault: false });
    const config: ContainerEnrichConfig = {
      ...(defaults(containerEnrichSection) as ContainerEnrichConfig),
      runtime: 'docker',
      docker_socket: d.socket,
      request_timeout: 1500,
      error_ttl: ERROR_TTL,
      negative_ttl: 1000,
    };
    enricher = new ContainerEnricher({ config, db, logger: silentLogger(), metrics, clock });
    await enricher.start();
    await until(() => enricher.health().detail?.includes('events connected') ?? false, 10_000, 'event stream');
  });

  afterAll(async () => {
    await enricher?.stop(Date.now() + 3000);
    db?.close();
    await d?.close();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  it('adds the real image history for a running container (12-char container.id)', async () => {
    const { keys } = await enrichWithin(enricher, alertFor(containerA.slice(0, 12)), 3000);
    expect(keys['enrich_error']).toBeUndefined();
    expect(keys['container.runtime']).toBe('docker');
    expect(keys['image.registry']).toBe('docker.io');
    expect(keys['image.repository']).toBe('demo/app');
    expect(keys['image.tag']).toBe('1.0');
    // Imported, never pushed: no manifest digest, so the local image ID stands in.
    expect(keys['image.digest']).toBe(imageA);
    expect(keys['image.layers']).toBe(1);
    expect(typeof keys['image.created']).toBe('string');
    expect(Math.abs(Date.parse(keys['image.created'] as string) - Date.now())).toBeLessThan(10 * 60_000);
    expect(Date.parse(keys['image.first_seen'] as string)).toBeGreaterThan(Date.now() - 60_000);
    expect(keys['image.newest_layer_created']).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(keys['image.tag_mutated']).toBe(false);
    expect(keys['image.pulled_at']).toBeUndefined();
    for (const v of Object.values(keys)) if (typeof v === 'string') expect(v.length).toBeLessThan(512);
    // A second alert is answered from the cache, well inside a tight budget.
    const again = await enrichWithin(enricher, alertFor(containerA.slice(0, 12)), 50);
    expect(again.keys).toEqual(keys);
  });

  it('ignores host events and reports unknown containers', async () => {
    expect(await enricher.enrich(alertFor('host'), AbortSignal.timeout(100))).toEqual({});
    expect(await enricher.enrich(alertFor(''), AbortSignal.timeout(100))).toEqual({});
    const { keys } = await enrichWithin(enricher, alertFor('0123456789ab'), 3000);
    expect(keys['enrich_error']).toBe('container: not found in docker');
  });

  let registry = '';
  let firstDigest = '';

  it('records a real pull from the local registry as image.pulled_at', async () => {
    registry = await d.startRegistry();
    const ref = `${registry}/demo/app:1.0`;
    await d.docker('tag', 'demo/app:1.0', ref);
    const pushOut = await d.docker('push', ref);
    firstDigest = /digest: (sha256:[0-9a-f]{64})/.exec(pushOut)?.[1] ?? '';
    expect(firstDigest).not.toBe('');
    await d.docker('rmi', ref);
    const before = Date.now();
    await d.docker('pull', ref);
    await until(() => (enricher.store.get(imageA, { registry, repository: 'demo/app', tag: '1.0', digest: null })?.pulledAtMs ?? 0) >= before - 2000, 10_000, 'pull recorded');
    const c = await d.runContainer(ref);
    const { keys } = await enrichWithin(enricher, alertFor(c.slice(0, 12)), 3000);
    expect(keys['enrich_error']).toBeUndefined();
    expect(keys['image.registry']).toBe(registry);
    expect(keys['image.repository']).toBe('demo/app');
    expect(keys['image.digest']).toBe(firstDigest);
    const pulledAt = Date.parse(keys['image.pulled_at'] as string);
    expect(pulledAt).toBeGreaterThanOrEqual(before - 2000);
    expect(pulledAt).toBeLessThanOrEqual(Date.now());
    expect(keys['image.tag_mutated']).toBe(false);
  });

  it('shows tag mutation when the same tag is pulled with a new digest', async () => {
    expect(registry).not.toBe('');
    const ref = `${registry}/demo/app:1.0`;
    const imageB = await d.importImage('demo/app:2.0', 'b');
    expect(imageB).not.toBe(imageA);
    await d.docker('tag', 'demo/app:2.0', ref);
    const pushOut = await d.docker('push', ref);
    const secondDigest = /digest: (sha256:[0-9a-f]{64})/.exec(pushOut)?.[1] ?? '';
    expect(secondDigest).not.toBe(firstDigest);
    await d.docker('rmi', ref);
    await d.docker('pull', ref);
    const refObj = { registry, repository: 'demo/app', tag: '1.0', digest: null };
    await until(() => enricher.store.get(imageB, refObj)?.digest === secondDigest, 10_000, 'pull of the new digest recorded');
    const c = await d.runContainer(ref);
    const { keys } = await enrichWithin(enricher, alertFor(c.slice(0, 12)), 3000);
    expect(keys['enrich_error']).toBeUndefined();
    expect(keys['image.digest']).toBe(secondDigest);
    expect(keys['image.tag_mutated']).toBe(true);
    expect(keys['image.previous_digest']).toBe(firstDigest);
    expect(typeof keys['image.pulled_at']).toBe('string');
  });

  it('answers enrich_error within the budget when dockerd hangs or is stopped', async () => {
    // Hung runtime: requests get no answer; the enricher must return when the budget aborts.
    await d.pause(); // returns once every dockerd thread has stopped: no request can be answered
    try {
      const budget = 100;
      const { keys, ms } = await enrichWithin(enricher, alertFor('aaaaaaaaaaaa'), budget);
      expect(ms).toBeLessThan(budget + 400);
      expect(String(keys['enrich_error'])).toMatch(/^container: docker lookup slower than the enrichment budget/);
      // The background lookup hits its hard timeout; after that, alerts get the error at once.
      await until(() => enricher.health().detail?.includes('runtime failing') ?? false, 5000, 'runtime marked down');
      const fast = await enrichWithin(enricher, alertFor('bbbbbbbbbbbb'), budget);
      expect(fast.ms).toBeLessThan(budget);
      expect(String(fast.keys['enrich_error'])).toMatch(/^container: docker unavailable/);
      // Cached containers still get their history while the runtime is down.
      const cached = await enrichWithin(enricher, alertFor(containerA.slice(0, 12)), budget);
      expect(cached.keys['image.repository']).toBe('demo/app');
    } finally {
      d.resume();
    }
    // Stopped runtime: the socket is gone; the error names what failed, quickly.
    await d.stopDaemon();
    skewMs += ERROR_TTL + 1; // error_ttl is over for the enricher
    const { keys, ms } = await enrichWithin(enricher, alertFor('cccccccccccc'), 200);
    expect(ms).toBeLessThan(600);
    expect(String(keys['enrich_error'])).toMatch(/^container: docker (lookup failed|unavailable)/);
    expect(String(keys['enrich_error'])).toMatch(/ENOENT|ECONNREFUSED/);
  });
});
