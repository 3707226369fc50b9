/**
 * Local-first replication (src/cluster/sync.ts) between simulated nodes in one process: each node
 * its own SQLite state database, egress baseline, image store and pooled series, all sharing one
 * real redis-server. What one node learns reaches the others; outages, a Redis that lost its data,
 * overflow and a Redis that answers nothing never stop a node from answering, and nodes converge.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisSharedStore, redisStoreOptions } from '../../src/cluster/redis-store.js';
import { egressReplica, imageReplica, resourceReplica } from '../../src/cluster/replicas.js';
import { decodeTuple } from '../../src/cluster/tuple.js';
import { RESOURCE_OPS } from '../../src/cluster/types.js';
import { ResourceBaselines } from '../../src/resource/baseline.js';
import { PooledSeries } from '../../src/cluster/series.js';
import { ClusterSync } from '../../src/cluster/sync.js';
import { namespaceSpecs } from '../../src/cluster/wiring.js';
import { ManualClock } from '../../src/clock.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/validate.js';
import { EgressBaseline } from '../../src/enrich/baseline.js';
import { ImageStore } from '../../src/enrich/image-store.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { openStateDb, type Db } from '../../src/store/db.js';
import { poll } from '../support/wait.js';
import { redisSkipReason, startRedis, type RedisServer } from '../support/redis.js';

const skip = redisSkipReason();
const T0 = 1_750_000_000_000_000_000n;
const SEC = 1_000_000_000n;
const HOUR = 3600n * SEC;
const RESOURCE_SETTINGS = { windowMs: 3_600_000, slots: 6, learningPeriodMs: 600_000, minSamples: 20, maxKeys: 100 };
const storeCfg = (): Config['store'] => loadConfig<Config>(configSchema, { file: null, env: {} }).store;

interface Node {
  readonly name: string;
  readonly db: Db;
  readonly baseline: EgressBaseline;
  readonly images: ImageStore;
  readonly series: PooledSeries;
  readonly resources: ResourceBaselines;
  readonly sync: ClusterSync;
  readonly metrics: Metrics;
  readonly clock: ManualClock;
}

describe.skipIf(skip !== null)('ClusterSync: nodes sharing one real Redis', () => {
  let redis: RedisServer;
  let dir: string;
  const nodes: Node[] = [];
  let prefixN = 0;
  let prefix = '';
  beforeAll(async () => {
    redis = await startRedis();
    dir = mkdtempSync(join(tmpdir(), 'fc-sync-'));
  });
  afterEach(async () => {
    for (const n of nodes.splice(0)) {
      await n.sync.stop(Date.now() + 1000);
      n.db.close();
    }
  });
  afterAll(async () => {
    await redis?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function node(name: string, o: { maxPending?: number; commandTimeoutMs?: number; stateDir?: string; intervals?: number } = {}): Node {
    const db = openStateDb(o.stateDir ?? join(dir, `${prefix}-${name}`));
    const metrics = new Metrics({ collectDefault: false });
    const clock = new ManualClock(1_750_000_000_000);
    const store = new RedisSharedStore(redisStoreOptions({ addresses: [redis.address], keyPrefix: prefix, connectTimeoutMs: 1000, commandTimeoutMs: o.commandTimeoutMs ?? 1000, reconnectInitialMs: 50, reconnectMaxMs: 300 }));
    const every = o.intervals ?? 3_600_000; // tests drive syncNow() unless they ask for the loop
    const sync = new ClusterSync({ store, db, node: name, flushIntervalMs: every, pullIntervalMs: every, batchSize: 50, maxPending: o.maxPending ?? 10_000, maxPull: 100, logger: silentLogger(), metrics });
    const specs = namespaceSpecs(storeCfg());
    const baseline = new EgressBaseline({ db, learningPeriodMs: 3_600_000, maxPerImage: 100, maxTotal: 1000, maxImages: 100, flushIntervalMs: 3_600_000, logger: silentLogger(), metrics, cluster: sync });
    baseline.load();
    const images = new ImageStore({ db, maxImages: 100, maxTags: 100, metrics, clock, cluster: sync });
    const series = new PooledSeries({ node: name, spec: specs.series, sink: sync, maxSeries: 100, maxPoints: 100, metrics });
    sync.register(egressReplica(baseline, specs.egress));
    sync.register(imageReplica(images, specs.images));
    sync.register(series);
    const resources = new ResourceBaselines({ settings: RESOURCE_SETTINGS, db, logger: silentLogger(), metrics, cluster: sync });
    resources.load();
    sync.register(resourceReplica(resources, specs.resources));
    const n = { name, db, baseline, images, series, resources, sync, metrics, clock };
    nodes.push(n);
    return n;
  }
  async function up(...ns: Node[]): Promise<void> {
    for (const n of ns) await n.sync.start();
    await poll(() => (ns.every((n) => n.sync.isConnected) ? true : null), { timeoutMs: 10_000, what: 'all nodes connected' });
  }
  /** One round on every node (flush of the local stores, then the sync), twice: writes, then pulls. */
  async function round(...ns: Node[]): Promise<void> {
    for (let i = 0; i < 2; i++) {
      for (const n of ns) {
        n.baseline.flush();
        await n.sync.syncNow();
      }
    }
    for (const n of ns) n.baseline.flush();
  }
  const metric = async (n: Node, line: string): Promise<number> => {
    const l = (await n.metrics.text()).split('\n').find((x) => x.startsWith(line));
    return l ? Number(l.slice(l.lastIndexOf(' ') + 1)) : 0;
  };
  const fresh = (): void => {
    prefix = `sync${++prefixN}`;
  };

  it('a destination learned on node A is not first-seen on node B; the image\'s learning period is the cluster\'s', async () => {
    fresh();
    const [a, b] = [node('a'), node('b')];
    await up(a, b);
    expect(a.baseline.isNew('shop/api', '203.0.113.7', 443, T0)).toEqual({ newForImage: true, learning: true });
    expect(a.baseline.isNew('shop/api', 'c2.example', 8443, T0 + 2n * HOUR)).toEqual({ newForImage: true, learning: false });
    await round(a, b);
    // B never saw shop/api: the pod moved there after A learned it.
    expect(b.baseline.isNew('shop/api', '203.0.113.7', 443, T0 + 3n * HOUR)).toEqual({ newForImage: false, learning: false });
    expect(b.baseline.isNew('shop/api', 'c2.example', 8443, T0 + 3n * HOUR)).toEqual({ newForImage: false, learning: false });
    // Really new on B: new (and out of learning: the image's first seen is A's).
    expect(b.baseline.isNew('shop/api', '198.51.100.9', 22, T0 + 3n * HOUR)).toEqual({ newForImage: true, learning: false });
    const pushedBefore = await metric(b, 'falco_companion_store_entries_total{op="push"}');
    await round(a, b);
    expect(a.baseline.isNew('shop/api', '198.51.100.9', 22, T0 + 4n * HOUR).newForImage).toBe(false);
    // B wrote its own observations (the two known destinations seen again: last seen and counts;
    // the new one; the image's last seen), nothing it only pulled.
    expect(await metric(b, 'falco_companion_store_entries_total{op="push"}')).toBe(pushedBefore + 4);
    await round(a, b);
    await round(a, b);
    expect(await metric(b, 'falco_companion_store_entries_total{op="push"}')).toBe(pushedBefore + 4);
    // and they are persisted in B's own SQLite copy
    expect((b.db.prepare('SELECT COUNT(*) AS n FROM egress_baseline').get() as { n: number }).n).toBe(3);
  });

  it('counts add over nodes; first seen is the minimum and last seen the maximum', async () => {
    fresh();
    const [a, b] = [node('a'), node('b')];
    await up(a, b);
    for (let i = 0n; i < 3n; i++) a.baseline.isNew('db', '192.0.2.1', 5432, T0 + 10n * HOUR + i * SEC);
    for (let i = 0n; i < 2n; i++) b.baseline.isNew('db', '192.0.2.1', 5432, T0 + i * HOUR);
    await round(a, b);
    const raw = redis.cli('HGET', `{${prefix}}:eg:h:db`, '192.0.2.1|5432');
    const [first, last, count] = raw.split('\u001f');
    expect(first).toBe(`<${(T0 / 1_000_000n).toString()}`);
    expect(last).toBe(`>${((T0 + 10n * HOUR + 2n * SEC) / 1_000_000n).toString()}`);
    expect(count).toBe('+5');
  });

  it('Redis lost mid-run: nodes keep answering from local state, then converge on the new (empty) Redis', async () => {
    fresh();
    const [a, b, c] = [node('a', { intervals: 100 }), node('b', { intervals: 100 }), node('c', { intervals: 100 })];
    await up(a, b, c);
    a.baseline.isNew('web', '203.0.113.1', 443, T0);
    a.baseline.flush();
    await poll(() => (b.baseline.size === 1 && c.baseline.size === 1 ? true : null), { timeoutMs: 10_000, what: 'first destination shared' });
    await redis.stop();
    await poll(() => (nodes.every((n) => !n.sync.isConnected) ? true : null), { timeoutMs: 10_000, what: 'all disconnected' });
    // Learning goes on while Redis is away, from local state, without waiting.
    const t0 = performance.now();
    expect(a.baseline.isNew('web', '203.0.113.2', 443, T0 + HOUR).newForImage).toBe(true);
    expect(b.baseline.isNew('web', '203.0.113.3', 443, T0 + HOUR).newForImage).toBe(true);
    expect(c.baseline.isNew('web', '203.0.113.4', 443, T0 + HOUR).newForImage).toBe(true);
    expect(b.baseline.isNew('web', '203.0.113.1', 443, T0 + HOUR).newForImage).toBe(false);
    for (const n of [a, b, c]) n.baseline.flush();
    expect(performance.now() - t0).toBeLessThan(50);
    expect(a.sync.health().detail).toMatch(/disconnected.*answering from local state/);
    await redis.start(); // same port, empty: a new epoch
    await poll(() => (nodes.every((n) => n.baseline.size === 4) ? true : null), { timeoutMs: 20_000, intervalMs: 50, what: 'baselines converged' });
    for (const n of [a, b, c]) expect(await metric(n, 'falco_companion_store_resyncs_total{reason="epoch"}')).toBe(2);
    expect(Number(redis.cli('HLEN', `{${prefix}}:eg:h:web`))).toBe(5); // four destinations and the image
  }, 40_000);

  it('an outbox overflow drops changes (counted) and a resync writes the whole local copy', async () => {
    fresh();
    const [a, b] = [node('a', { maxPending: 100, commandTimeoutMs: 200 }), node('b')];
    await up(a, b);
    await round(a, b);
    redis.pause(); // unreachable while connected: every write times out and goes back to the outbox
    try {
      for (let i = 0; i < 150; i++) a.baseline.isNew(`burst${i % 2}`, `192.0.2.${i}`, 80, T0 + BigInt(i) * SEC);
      a.baseline.flush();
      await expect(a.sync.syncNow()).rejects.toThrow();
    } finally {
      redis.resume();
    }
    expect(await metric(a, 'falco_companion_discarded_total{component="store/redis",reason="outbox_full"}')).toBeGreaterThan(0);
    expect(a.sync.pendingChanges).toBeLessThanOrEqual(100);
    await poll(async () => ((await a.sync.syncNow().then(() => true, () => false)) ? true : null), { timeoutMs: 10_000, intervalMs: 100, what: 'writes resume' });
    await round(a, b);
    expect(await metric(a, 'falco_companion_store_resyncs_total{reason="overflow"}')).toBe(1);
    expect(b.baseline.size).toBe(150);
  }, 30_000);

  it('a Redis that answers nothing adds no latency to the alert path; writes resume after', async () => {
    fresh();
    const [a, b] = [node('a', { commandTimeoutMs: 200 }), node('b')];
    await up(a, b);
    redis.pause();
    try {
      const started = performance.now();
      for (let i = 0; i < 2000; i++) a.baseline.isNew('slow', `198.51.100.${i % 250}`, 1000 + i, T0 + BigInt(i) * SEC);
      a.baseline.flush();
      const took = performance.now() - started;
      expect(took).toBeLessThan(200); // the command timeout alone would be more
      await expect(a.sync.syncNow()).rejects.toThrow(/timed out/i);
      expect(a.sync.pendingChanges).toBeGreaterThan(0);
    } finally {
      redis.resume();
    }
    await poll(async () => ((await a.sync.syncNow().then(() => true, () => false)) ? true : null), { timeoutMs: 10_000, intervalMs: 100, what: 'writes resume' });
    await round(a, b);
    expect(b.baseline.size).toBe(100); // the per-image bound of both nodes
    expect(a.baseline.size).toBe(100);
  }, 30_000);

  it('stops within its deadline while Redis answers nothing, and the next run resyncs what was not written', async () => {
    fresh();
    const stateDir = join(dir, `${prefix}-stop`);
    const a = node('a', { stateDir, commandTimeoutMs: 5000 });
    await up(a);
    await round(a);
    redis.pause();
    try {
      a.baseline.isNew('stuck', '192.0.2.9', 443, T0);
      a.baseline.flush();
      const t0 = Date.now();
      await a.sync.stop(Date.now() + 500);
      expect(Date.now() - t0).toBeLessThan(2500);
    } finally {
      redis.resume();
    }
    nodes.splice(nodes.indexOf(a), 1);
    const clean = (a.db.prepare("SELECT value FROM cluster_sync WHERE key = 'clean'").get() as { value: string }).value;
    a.db.close();
    expect(clean).toBe('0');
  }, 20_000);

  it('image history: first seen is the cluster\'s, and a tag that moved on another node marks the new image', async () => {
    fresh();
    const [a, b] = [node('a'), node('b')];
    await up(a, b);
    const ref = { registry: 'docker.io', repository: 'library/app', tag: '1.0', digest: null };
    const facts = (id: string, digest: string) => ({ imageId: id, ref, digest, created: '2025-01-01T00:00:00.000Z', layers: 3, newestLayerCreated: null, newestLayerCmd: 'COPY app /app' });
    a.clock.set(1_750_000_000_000);
    a.images.observe(facts('sha256:old', 'sha256:d-old'));
    await round(a, b);
    // Hours later the tag is pushed again (new image) and pulled on B only.
    b.clock.set(1_750_000_000_000 + 7_200_000);
    const rec = b.images.observe(facts('sha256:new', 'sha256:d-new'));
    expect(rec).toMatchObject({ tagMutated: true, previousDigest: 'sha256:d-old' });
    // The old image's record on B (pulled) has A's first-seen time.
    expect(b.images.get('sha256:old', ref)?.firstSeenMs).toBe(1_750_000_000_000);
    await round(a, b);
    // A sees the new image later: its first seen is B's, and the move is known there too.
    a.clock.set(1_750_000_000_000 + 9_000_000);
    expect(a.images.observe(facts('sha256:new', 'sha256:d-new'))).toMatchObject({ firstSeenMs: 1_750_000_000_000 + 7_200_000, tagMutated: true });
  });

  it('beacon points of one image from three nodes pool into one series with one owner', async () => {
    fresh();
    const [a, b, c] = [node('a'), node('b'), node('c')];
    await up(a, b, c);
    const key = 'shop/api|/usr/bin/curl|c2.example|443';
    const base = 1_750_000_000;
    for (let i = 0; i < 30; i++) [a, b, c][i % 3]?.series.record(key, base + i * 60);
    await round(a, b, c);
    const views = [a, b, c].map((n) => n.series.drain(10));
    for (const [i, v] of views.entries()) {
      expect(v).toHaveLength(1);
      // each node gets the other two nodes' points (its own it has)
      expect(v[0]?.points).toHaveLength(20);
      expect(v[0]?.nodes).toEqual(['a', 'b', 'c'].filter((_, j) => j !== i));
    }
    const union = new Set(views.flatMap((v) => v[0]?.points.map((p) => p.sec) ?? []));
    expect(union.size).toBe(30);
    expect([...union].sort()).toEqual(Array.from({ length: 30 }, (_, i) => base + i * 60));
    expect(a.series.drain(10)).toEqual([]); // drained
  });

  it('a resource baseline learnt on node A is learnt on node B (a rescheduled pod is not learning again), persisted there', async () => {
    fresh();
    const [a, b] = [node('a'), node('b')];
    await up(a, b);
    // The joining resync first (it pushes sketch estimates of what is there, which would stand in
    // for the exact samples below if it came after them).
    await round(a, b);
    const key = 'workload:shop/api/app|cpu';
    for (let i = 0; i < 70; i++) {
      a.resources.add(key, i % 10 === 0 ? 5 : 1, T0 + BigInt(i) * 10n * SEC);
      a.resources.add('container:0123456789ab|cpu', 1, T0 + BigInt(i) * 10n * SEC);
    }
    expect(a.resources.stats(key, T0 + 700n * SEC)?.learnt).toBe(true);
    expect(b.resources.stats(key, T0 + 700n * SEC)).toBeNull();
    a.resources.flush(); // hands the samples, merged per key, to the store's outbox
    await round(a, b);
    // In Redis: first = min, last = max, peak = max, counts and sums add (values in thousandths).
    const stored = decodeTuple(RESOURCE_OPS, redis.cli('HGET', `{${prefix}}:rb:h:workload:shop/api/app`, 'cpu'));
    expect(stored).toEqual([Number(T0 / 1_000_000n), Number(T0 / 1_000_000n) + 690_000, 5000, 70, 98_000]);
    expect(redis.cli('EXISTS', `{${prefix}}:rb:h:container:0123456789ab`)).toBe('0'); // per-container baselines stay local
    // B never sampled the workload: judged at once, against the cluster's mean and peak.
    const st = b.resources.stats(key, T0 + 710n * SEC);
    expect(st).toMatchObject({ learnt: true, n: 70, median: 1.4, p99: 5 });
    b.resources.add(key, 1.2, T0 + 710n * SEC);
    expect(b.resources.stats(key, T0 + 720n * SEC)?.learnt).toBe(true);
    expect(b.resources.stats('container:0123456789ab|cpu', T0 + 720n * SEC)).toBeNull();
    // B's pulled view survives a restart (its SQLite copy); A's own values were never echoed back.
    b.resources.flush();
    const again = new ResourceBaselines({ settings: RESOURCE_SETTINGS, db: b.db, logger: silentLogger(), metrics: new Metrics({ collectDefault: false }) });
    again.load();
    expect(again.stats(key, T0 + 720n * SEC)?.learnt).toBe(true);
    expect(again.sharedSize).toBe(1);
    // Two more nodes' worth of samples from B add up in the store.
    for (let i = 0; i < 30; i++) b.resources.add(key, 2, T0 + 800n * SEC + BigInt(i) * SEC);
    b.resources.flush();
    await round(a, b);
    const after = decodeTuple(RESOURCE_OPS, redis.cli('HGET', `{${prefix}}:rb:h:workload:shop/api/app`, 'cpu'));
    expect(after?.[3]).toBe(70 + 1 + 30);
    expect(after?.[1]).toBe(Number(T0 / 1_000_000n) + 829_000);
  });

  it('a run that ended with changes not written pushes its whole copy at the next start', async () => {
    fresh();
    const stateDir = join(dir, `${prefix}-restart`);
    const a = node('a', { stateDir });
    await up(a);
    await round(a);
    await redis.stop();
    await poll(() => (!a.sync.isConnected ? true : null), { timeoutMs: 10_000, what: 'disconnected' });
    a.baseline.isNew('late', '192.0.2.50', 443, T0);
    a.baseline.flush();
    await a.sync.stop(Date.now() + 200);
    a.db.close();
    nodes.splice(nodes.indexOf(a), 1);
    await redis.start();
    // Redis was wiped anyway here; make the epoch match so only the "not clean" flag drives the resync.
    const epochRow = openStateDb(stateDir);
    const epoch = (epochRow.prepare("SELECT value FROM cluster_sync WHERE key = 'epoch'").get() as { value: string }).value;
    expect((epochRow.prepare("SELECT value FROM cluster_sync WHERE key = 'clean'").get() as { value: string }).value).toBe('0');
    epochRow.close();
    redis.cli('SET', `{${prefix}}:epoch`, epoch);
    const again = node('a', { stateDir });
    await up(again);
    await round(again);
    expect(redis.cli('HEXISTS', `{${prefix}}:eg:h:late`, '192.0.2.50|443')).toBe('1');
    expect(await metric(again, 'falco_companion_store_resyncs_total{reason="overflow"}')).toBe(1);
  }, 30_000);
});
