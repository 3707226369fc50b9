/**
 * `npm run bench:cluster [-- --nodes 50 --images 1000 --dests 100 --replicas 3 --minutes 30
 *   --workloads-per-image 2 --tod 0 --rb-minutes 10 --beacon-share 0.2 --series-per-image 2
 *   --beacon-period 60 --bs-minutes 10]` (`--workloads-per-image 0` / `--beacon-share 0` turn a
 * part off)
 *
 * Sizing of the cluster store (docs/operations.md): a simulation of many nodes sharing one real
 * redis-server (started here on a loopback port, no persistence, stopped at the end). Each node is
 * a real EgressBaseline + ImageStore + ClusterSync (in-memory SQLite), as the daemon wires them.
 * `images` images with `dests` destinations each are spread over the nodes (`replicas` nodes run
 * each image); every replica sees a random 60 % of its image's destinations.
 *
 * 1. Learning: every node learns its images' destinations, then all nodes sync until quiet.
 *    Measured: Redis keys and memory per 1 000 images and per 100 000 destinations.
 * 2. Steady state, `minutes` of event time: each minute every node sees a fifth of its known
 *    destinations again and one image in ten gets a new destination on one of its replicas.
 *    Measured per node and minute: script calls, entries written, bytes to and from Redis, entries
 *    pulled; Redis CPU. (One sync round per simulated minute: the entries are those of the daemon,
 *    the script calls fewer: the daemon pushes at every `store.sync.flush_interval`.)
 * 3. Resource baselines (namespace `rb`), `rb-minutes` of event time: each image runs as
 *    `workloads-per-image` workloads (pods on the image's nodes), each node has a real
 *    ResourceBaselines wired to its sync (resourceReplica, as src/sources/metrics.ts does) and adds
 *    one value per workload and metric (the 7 the metrics source samples; also the time-of-day key
 *    with `--tod N`, as the analyser does) every `metrics.interval` of event time; sync rounds at
 *    the daemon's cadence (a push after each sampling, a pull every `store.sync.pull_interval`).
 * 4. Beacon series pooled by image (namespace `bs`, detector `group_by: image`), `bs-minutes` of
 *    event time: a `beacon-share` of the images each make `series-per-image` periodic outbound
 *    connections (every `beacon-period` s ±10 %, each replica on its own timer); each connection
 *    is recorded per second into the node's real PooledSeries (as the detector does), pushed every
 *    `flush_interval`, pulled every `pull_interval` and drained (as the engine does).
 *    Both: Redis keys and memory per 1 000 workloads / pooled series, writes and pulls per node and
 *    minute, Redis CPU, measured over that phase alone.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RedisSharedStore, redisStoreOptions } from '../src/cluster/redis-store.js';
import { egressReplica, imageReplica, resourceReplica } from '../src/cluster/replicas.js';
import { PooledSeries } from '../src/cluster/series.js';
import { ClusterSync } from '../src/cluster/sync.js';
import { namespaceSpecs } from '../src/cluster/wiring.js';
import { ManualClock } from '../src/clock.js';
import { configSchema, type Config } from '../src/config/schema.js';
import { loadConfig } from '../src/config/validate.js';
import { EgressBaseline } from '../src/enrich/baseline.js';
import { ImageStore } from '../src/enrich/image-store.js';
import { silentLogger } from '../src/logger.js';
import { Metrics } from '../src/metrics.js';
import { ResourceBaselines } from '../src/resource/baseline.js';
import { RESOURCE_METRICS } from '../src/resource/types.js';
import { openStateDb } from '../src/store/db.js';

function arg(name: string, def: number, zero = false): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : def;
  return Number.isFinite(v) && (v > 0 || (zero && v === 0)) ? v : def;
}

const NODES = arg('nodes', 50);
const IMAGES = arg('images', 1000);
const DESTS = arg('dests', 100);
const REPLICAS = Math.min(arg('replicas', 3), NODES);
const MINUTES = arg('minutes', 30);
const WORKLOADS = Math.floor(arg('workloads-per-image', 2, true));
const TOD = Math.floor(arg('tod', 0, true));
const RB_MINUTES = arg('rb-minutes', 10);
const BEACON_SHARE = Math.min(1, arg('beacon-share', 0.2, true));
const SERIES_PER_IMAGE = Math.floor(arg('series-per-image', 2));
const BEACON_PERIOD = arg('beacon-period', 60);
const BS_MINUTES = arg('bs-minutes', 10);

/** Deterministic pseudo-random numbers (the same run every time). */
let seed = 42;
const rnd = (): number => ((seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0) / 2 ** 32);

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function startRedis(dir: string, port: number): Promise<{ stop: () => Promise<void> }> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', ''], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`redis-server not ready:\n${log}`)), 10_000);
    child.stdout.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.includes('Ready to accept connections')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (c) => reject(new Error(`redis-server exited ${c}:\n${log}`)));
  });
  return {
    stop: async () => {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

interface SimNode {
  readonly baseline: EgressBaseline;
  readonly images: ImageStore;
  readonly resources: ResourceBaselines;
  readonly series: PooledSeries;
  readonly sync: ClusterSync;
  readonly metrics: Metrics;
  readonly clock: ManualClock;
  /** (image, destination indexes this node sees) */
  readonly work: { image: number; dests: number[] }[];
}

async function counter(m: Metrics, name: string, label: string): Promise<number> {
  const line = (await m.text()).split('\n').find((l) => l.startsWith(`falco_companion_${name}{${label}}`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

function info(raw: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of raw.split('\r\n')) {
    const [k, v] = l.split(':');
    if (k && v !== undefined && /^[0-9.]+$/.test(v)) out[k] = Number(v);
  }
  return out;
}

type Raw = NonNullable<RedisSharedStore['raw']>;

/** Redis and node counters at one moment (a phase is measured between two of them). */
interface Snapshot {
  readonly stats: Record<string, number>;
  readonly cpuS: number;
  readonly memory: number;
  readonly calls: number;
  readonly written: number;
  readonly pulled: number;
}

async function snapshot(raw: Raw, nodes: readonly SimNode[]): Promise<Snapshot> {
  const cpu = info(await raw.info('cpu'));
  const sum = async (name: string, label: string): Promise<number> => (await Promise.all(nodes.map((n) => counter(n.metrics, name, label)))).reduce((a, b) => a + b, 0);
  return {
    stats: info(await raw.info('stats')),
    cpuS: (cpu['used_cpu_user'] ?? 0) + (cpu['used_cpu_sys'] ?? 0),
    memory: info(await raw.info('memory'))['used_memory'] ?? 0,
    calls: await sum('store_batches_total', 'op="push",result="ok"'),
    written: await sum('store_entries_total', 'op="push"'),
    pulled: await sum('store_entries_total', 'op="pull"'),
  };
}

/** What a phase cost, per node and minute of event time. */
function perNodeMinute(a: Snapshot, b: Snapshot, nodes: number, minutes: number) {
  const per = (x: number): number => x / nodes / minutes;
  const stat = (k: string): number => per((b.stats[k] ?? 0) - (a.stats[k] ?? 0));
  return {
    calls: per(b.calls - a.calls),
    written: per(b.written - a.written),
    pulled: per(b.pulled - a.pulled),
    kibIn: stat('total_net_input_bytes') / 1024,
    kibOut: stat('total_net_output_bytes') / 1024,
    commands: stat('total_commands_processed'),
    cpuMs: per(b.cpuS - a.cpuS) * 1000,
  };
}

function costLine(c: ReturnType<typeof perNodeMinute>): string {
  return (
    `per node and minute ${c.calls.toFixed(1)} script calls, ${c.written.toFixed(1)} entries written, ${c.pulled.toFixed(1)} entries pulled; ` +
    `${c.kibIn.toFixed(1)} KiB to Redis, ${c.kibOut.toFixed(1)} KiB from Redis; ${c.commands.toFixed(1)} commands run by Redis (inside scripts included); Redis CPU ${c.cpuMs.toFixed(2)} ms`
  );
}

/** Keys of a namespace and the fields of its hashes. */
async function census(raw: Raw, ns: string): Promise<{ keys: number; groups: number; fields: number }> {
  let cursor = '0';
  let keys = 0;
  let groups = 0;
  let fields = 0;
  do {
    const [next, batch] = await raw.scan(cursor, 'MATCH', `{bench}:${ns}:*`, 'COUNT', 1000);
    cursor = next;
    keys += batch.length;
    for (const k of batch) {
      if (!k.startsWith(`{bench}:${ns}:h:`)) continue;
      groups++;
      fields += Number(await raw.hlen(k));
    }
  } while (cursor !== '0');
  return { keys, groups, fields };
}

/** One sync round of every node (ten at a time, as in parallel on their own machines). */
async function everyNode(nodes: readonly SimNode[], f: (n: SimNode) => Promise<void>): Promise<void> {
  for (let i = 0; i < nodes.length; i += 10) await Promise.all(nodes.slice(i, i + 10).map(f));
}

const mb = (b: number): string => (b / 1_048_576).toFixed(1);

async function main(): Promise<void> {
  if (TOD > 0 && 24 % TOD !== 0) throw new Error(`--tod ${TOD}: must divide 24 (as metrics.baseline.time_of_day_buckets)`);
  const dir = mkdtempSync(join(tmpdir(), 'fc-bench-cluster-'));
  const port = await freePort();
  const redis = await startRedis(dir, port);
  const started = Date.now();
  const store = (): RedisSharedStore => new RedisSharedStore(redisStoreOptions({ addresses: [`127.0.0.1:${port}`], keyPrefix: 'bench', commandTimeoutMs: 10_000, reconnectInitialMs: 100, reconnectMaxMs: 1000 }));
  const cfg = loadConfig<Config>(configSchema, { file: null, env: {} });
  const specs = namespaceSpecs(cfg.store);
  const admin = store();
  admin.connect(() => undefined);
  const T0 = 1_750_000_000_000;
  const nodes: SimNode[] = [];
  // Image i runs on nodes i, i+1, ... (REPLICAS of them).
  const placement: number[][] = Array.from({ length: NODES }, () => []);
  for (let i = 0; i < IMAGES; i++) for (let r = 0; r < REPLICAS; r++) placement[(i + r) % NODES]?.push(i);
  const rbSettings = { windowMs: cfg.metrics.baseline.window, slots: cfg.metrics.baseline.slots, learningPeriodMs: cfg.metrics.baseline.learning_period, minSamples: cfg.metrics.baseline.min_samples, maxKeys: cfg.metrics.baseline.max_keys };
  for (let n = 0; n < NODES; n++) {
    const db = openStateDb(':memory:');
    const metrics = new Metrics({ collectDefault: false });
    const clock = new ManualClock(T0);
    const sync = new ClusterSync({ store: store(), db, node: `node-${n}`, flushIntervalMs: 3_600_000, pullIntervalMs: 3_600_000, batchSize: cfg.store.sync.batch_size, maxPending: cfg.store.sync.max_pending, maxPull: cfg.store.sync.max_pull, logger: silentLogger(), metrics });
    const baseline = new EgressBaseline({ db, learningPeriodMs: 3_600_000, maxPerImage: 1000, maxTotal: 500_000, maxImages: 20_000, flushIntervalMs: 3_600_000, maxPending: 1_000_000, logger: silentLogger(), metrics, cluster: sync });
    baseline.load();
    const images = new ImageStore({ db, maxImages: 20_000, maxTags: 20_000, metrics, clock, cluster: sync });
    sync.register(egressReplica(baseline, specs.egress));
    sync.register(imageReplica(images, specs.images));
    // As the daemon wires them: the pooled series by buildClusterStore, the resource baselines by the metrics source.
    const series = new PooledSeries({ node: sync.node, spec: specs.series, sink: sync, maxSeries: cfg.store.limits.series_max, maxPoints: cfg.store.limits.series_max_points, metrics });
    sync.register(series);
    const resources = new ResourceBaselines({ settings: rbSettings, db, cluster: sync, logger: silentLogger(), metrics });
    resources.load();
    sync.register(resourceReplica(resources, specs.resources));
    const work = (placement[n] ?? []).map((image) => ({ image, dests: Array.from({ length: DESTS }, (_, d) => d).filter(() => rnd() < 0.6) }));
    nodes.push({ baseline, images, resources, series, sync, metrics, clock, work });
    await sync.start();
  }
  for (let i = 0; i < 200 && !nodes.every((n) => n.sync.isConnected); i++) await new Promise((r) => setTimeout(r, 50));
  const raw = admin.raw;
  if (!raw) throw new Error('no admin connection');
  for (let i = 0; i < 100 && raw.status !== 'ready'; i++) await new Promise((r) => setTimeout(r, 50));
  const round = async (): Promise<void> => {
    for (const n of nodes) n.baseline.flush();
    await everyNode(nodes, (n) => n.sync.syncNow());
  };
  const ip = (image: number, d: number): string => `203.0.${(image * DESTS + d) >> 8}.${(image * DESTS + d) & 255}`;
  await round(); // joins (epoch), empty
  const mem0 = info(await raw.info('memory'))['used_memory'] ?? 0;

  // 1. Learning
  for (const [ni, n] of nodes.entries()) {
    const t = BigInt(T0 + ni) * 1_000_000n;
    for (const w of n.work) {
      n.images.observe({ imageId: `sha256:${w.image.toString(16).padStart(64, '0')}`, ref: { registry: 'registry.example', repository: `team${w.image % 50}/app${w.image}`, tag: 'v1', digest: null }, digest: `sha256:d${w.image}`, created: '2025-01-01T00:00:00.000Z', layers: 8, newestLayerCreated: '2025-01-01T00:00:00.000Z', newestLayerCmd: 'COPY . /app' });
      for (const d of w.dests) n.baseline.isNew(`team${w.image % 50}/app${w.image}`, ip(w.image, d), 443, t);
    }
  }
  for (let i = 0; i < 6; i++) await round();
  const mem1 = info(await raw.info('memory'))['used_memory'] ?? 0;
  const keys = Number(await raw.dbsize());
  let destinations = 0;
  for (let i = 0; i < IMAGES; i++) destinations += Number(await raw.hlen(`{bench}:eg:h:team${i % 50}/app${i}`)) - 1;
  const perNodeDests = nodes.reduce((s, n) => s + n.baseline.size, 0) / NODES;

  // 2. Steady state
  const s0 = await snapshot(raw, nodes);
  let fresh = 0;
  for (let m = 1; m <= MINUTES; m++) {
    const tMs = T0 + m * 60_000;
    for (const [ni, n] of nodes.entries()) {
      const t = BigInt(tMs + ni) * 1_000_000n;
      n.clock.set(tMs);
      for (const w of n.work) for (const d of w.dests) if (rnd() < 0.2) n.baseline.isNew(`team${w.image % 50}/app${w.image}`, ip(w.image, d), 443, t);
    }
    for (let i = 0; i < IMAGES / 10; i++) {
      const image = Math.floor(rnd() * IMAGES);
      const n = nodes[(image + Math.floor(rnd() * REPLICAS)) % NODES] as SimNode;
      n.baseline.isNew(`team${image % 50}/app${image}`, `198.51.${m}.${i & 255}`, 8443, BigInt(tMs) * 1_000_000n);
      fresh++;
    }
    await round();
  }
  const s1 = await snapshot(raw, nodes);
  const eg = perNodeMinute(s0, s1, NODES, MINUTES);
  const resyncs = (await Promise.all(nodes.map(async (n) => (await counter(n.metrics, 'store_resyncs_total', 'reason="overflow"')) + (await counter(n.metrics, 'store_resyncs_total', 'reason="epoch"'))))).reduce((a, b) => a + b, 0);
  const memPerDest = (mem1 - mem0) / Math.max(1, destinations);
  const lines = [
    `cluster store simulation: ${NODES} nodes, ${IMAGES} images × ${DESTS} destinations (${REPLICAS} replicas per image, each sees 60 %), redis-server ${(await raw.info('server')).match(/redis_version:(\S+)/)?.[1] ?? '?'}`,
    `learning: ${destinations} destinations and ${IMAGES} images in Redis: ${keys} keys, ${mb(mem1 - mem0)} MiB (${memPerDest.toFixed(0)} B per destination incl. image history); per node ${perNodeDests.toFixed(0)} destinations held locally (its own and pulled)`,
    `  → per 1 000 images with 100 destinations each (100 000 destinations): ≈ ${((memPerDest * 100_000) / 1_048_576).toFixed(0)} MiB, ≈ ${Math.round((keys / IMAGES) * 1000)} keys`,
    `steady state, ${MINUTES} min of event time (one sync round per minute): ${costLine(eg)}`,
    `  ${fresh} new destinations during the run; ${resyncs} resyncs (${NODES} expected: each node joining)`,
  ];
  process.stdout.write(lines.join('\n') + '\n');

  // The daemon's cadence for the phases below (event time in steps of one second).
  const flushS = Math.max(1, Math.round(cfg.store.sync.flush_interval / 1000));
  const pullS = Math.max(1, Math.round(cfg.store.sync.pull_interval / 1000));
  let tNow = T0 + (MINUTES + 1) * 60_000;

  // 3. Resource baselines
  if (WORKLOADS > 0) {
    const everyS = Math.max(1, Math.round(cfg.metrics.interval / 1000));
    const rbFlushS = Math.max(1, Math.round(cfg.metrics.baseline.flush_interval / 1000));
    // Workload w of image i: its pods run on the image's nodes; a typical level per metric.
    const level = new Map<string, number[]>();
    const scale = [1, 1e8, 30, 1e5, 1e5, 300, 300]; // cpu cores, memory bytes, pids, net bytes/s, net packets/s
    const groupOf = (image: number, w: number): string => `workload:team${image % 50}/app${image}-${w}/main`;
    for (let i = 0; i < IMAGES; i++) for (let w = 0; w < WORKLOADS; w++) level.set(groupOf(i, w), RESOURCE_METRICS.map((_, k) => (scale[k] ?? 1) * (0.05 + rnd())));
    const a = await snapshot(raw, nodes);
    const steps = RB_MINUTES * 60;
    let half: Snapshot | null = null;
    for (let s = 1; s <= steps; s++) {
      if (s === Math.floor(steps / 2) + 1) half = await snapshot(raw, nodes);
      tNow += 1000;
      const sampling = s % everyS === 0;
      if (sampling) {
        const tNs = BigInt(tNow) * 1_000_000n;
        const minute = Math.floor(tNow / 60_000) % 1440;
        const tod = TOD > 0 ? `|tod${Math.floor((minute * TOD) / 1440)}/${TOD}` : null;
        for (const n of nodes) {
          for (const w of n.work) {
            for (let k = 0; k < WORKLOADS; k++) {
              const g = groupOf(w.image, k);
              const lv = level.get(g) as number[];
              RESOURCE_METRICS.forEach((metric, mi) => {
                const v = (lv[mi] ?? 0) * (0.8 + 0.4 * rnd());
                if (tod) n.resources.add(`${g}|${metric}${tod}`, v, tNs);
                n.resources.add(`${g}|${metric}`, v, tNs);
              });
            }
          }
        }
      }
      // The metrics source flushes its baselines (and hands their merged samples to the store) every
      // metrics.baseline.flush_interval; the last one at the end of the phase, as at a stop.
      const last = s === steps;
      if (s % rbFlushS === 0 || last) for (const n of nodes) n.resources.flush();
      if (s % pullS === 0 || last) await everyNode(nodes, (n) => n.sync.syncNow());
      else if (s % flushS === 0 && (sampling || s % rbFlushS === 0)) await everyNode(nodes, (n) => n.sync.flush());
    }
    const b = await snapshot(raw, nodes);
    const c = await census(raw, 'rb');
    const rb = perNodeMinute(a, b, NODES, RB_MINUTES);
    const workloads = IMAGES * WORKLOADS;
    const fieldsPerWorkload = RESOURCE_METRICS.length * (TOD > 0 ? 1 + TOD : 1);
    const bytesPerField = (b.memory - a.memory) / Math.max(1, c.fields);
    const perNodeWorkloads = nodes.reduce((x, n) => x + n.work.length, 0) * WORKLOADS / NODES;
    process.stdout.write(
      [
        `resource baselines: ${workloads} workloads (${WORKLOADS} per image, pods on the image's ${REPLICAS} nodes: ${perNodeWorkloads.toFixed(0)} per node), ${RESOURCE_METRICS.length} metrics${TOD > 0 ? ` + time-of-day buckets (${TOD})` : ''}, a sample every ${everyS} s, ${RB_MINUTES} min of event time`,
        `  Redis: ${c.keys} keys, ${c.groups} groups, ${c.fields} baselines, ${mb(b.memory - a.memory)} MiB (${bytesPerField.toFixed(0)} B per baseline)`,
        `  → per 1 000 workloads: ≈ ${Math.round((c.keys / Math.max(1, c.groups)) * 1000)} keys, ≈ ${((bytesPerField * fieldsPerWorkload * 1000) / 1_048_576).toFixed(1)} MiB once every ${fieldsPerWorkload} baselines of a workload exist`,
        `  ${costLine(rb)}`,
        ...(half ? [`  second half alone (peaks settled: fewer announced): ${costLine(perNodeMinute(half, b, NODES, RB_MINUTES - Math.floor(steps / 2) / 60))}`] : []),
        `  (last seen is re-announced hourly: each node then also pulls ≈ ${((workloads * fieldsPerWorkload) / 60).toFixed(0)} entries per minute, all baselines of the cluster once an hour; not in a run under an hour)`,
      ].join('\n') + '\n',
    );
  }

  // 4. Beacon series pooled by image
  if (BEACON_SHARE > 0) {
    const beaconing = [...Array(IMAGES).keys()].filter(() => rnd() < BEACON_SHARE);
    const keyOf = (image: number, j: number): string => `registry.example/team${image % 50}/app${image}|/app/agent|api${j}.saas${image}.example|443`;
    // Per node: (series key, next connection second), each replica on its own timer.
    const t0s = Math.floor(tNow / 1000);
    const timers = nodes.map((n) =>
      n.work.filter((w) => beaconing.includes(w.image)).flatMap((w) => Array.from({ length: SERIES_PER_IMAGE }, (_, j) => ({ key: keyOf(w.image, j), next: t0s + rnd() * BEACON_PERIOD }))),
    );
    const a = await snapshot(raw, nodes);
    let recorded = 0;
    let drained = 0;
    const steps = BS_MINUTES * 60;
    for (let s = 1; s <= steps; s++) {
      tNow += 1000;
      const sec = Math.floor(tNow / 1000);
      for (const [ni, n] of nodes.entries()) {
        for (const t of timers[ni] ?? []) {
          if (t.next > sec) continue;
          n.series.record(t.key, sec);
          recorded++;
          t.next += BEACON_PERIOD * (0.9 + 0.2 * rnd());
        }
      }
      if (s % pullS === 0) {
        await everyNode(nodes, (n) => n.sync.syncNow());
        for (const n of nodes) drained += n.series.drain(Number.MAX_SAFE_INTEGER).length;
      } else if (s % flushS === 0) await everyNode(nodes, (n) => n.sync.flush());
    }
    const b = await snapshot(raw, nodes);
    const c = await census(raw, 'bs');
    const bs = perNodeMinute(a, b, NODES, BS_MINUTES);
    const bytesPerPoint = (b.memory - a.memory) / Math.max(1, c.fields);
    const cap = cfg.store.limits.series_max_points;
    const pointsPerDay = Math.min(cap, (REPLICAS * 86_400) / BEACON_PERIOD);
    process.stdout.write(
      [
        `pooled beacon series: ${beaconing.length} images of ${IMAGES} (${(BEACON_SHARE * 100).toFixed(0)} %) × ${SERIES_PER_IMAGE} periodic destinations = ${c.groups} series, every ${BEACON_PERIOD} s ±10 % from each of ${REPLICAS} replicas, ${BS_MINUTES} min of event time: ${recorded} connections recorded`,
        `  Redis: ${c.keys} keys, ${c.fields} points (second|node), ${mb(b.memory - a.memory)} MiB (${bytesPerPoint.toFixed(0)} B per point)`,
        `  → per 1 000 pooled series: ≈ ${Math.round((c.keys / Math.max(1, c.groups)) * 1000)} keys; points held per series ≈ ${pointsPerDay.toFixed(0)} (a day, capped by store.limits.series_max_points ${cap} + 10 % before a trim): ≈ ${((bytesPerPoint * pointsPerDay * 1000) / 1_048_576).toFixed(0)} MiB`,
        `  ${costLine(bs)}; ${(drained / NODES / BS_MINUTES).toFixed(1)} pooled series handed to the detector`,
      ].join('\n') + '\n',
    );
  }
  process.stdout.write(`(${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
  for (const n of nodes) await n.sync.stop(Date.now() + 1000);
  await admin.close();
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:cluster failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
