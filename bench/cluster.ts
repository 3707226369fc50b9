/**
 * `npm run bench:cluster [-- --nodes 50 --images 1000 --dests 100 --replicas 3 --minutes 30]`
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
 *    pulled; Redis CPU.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RedisSharedStore, redisStoreOptions } from '../src/cluster/redis-store.js';
import { egressReplica, imageReplica } from '../src/cluster/replicas.js';
import { ClusterSync } from '../src/cluster/sync.js';
import { namespaceSpecs } from '../src/cluster/wiring.js';
import { ManualClock } from '../src/clock.js';
import { configSchema, type Config } from '../src/config/schema.js';
import { loadConfig } from '../src/config/validate.js';
import { EgressBaseline } from '../src/enrich/baseline.js';
import { ImageStore } from '../src/enrich/image-store.js';
import { silentLogger } from '../src/logger.js';
import { Metrics } from '../src/metrics.js';
import { openStateDb } from '../src/store/db.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : def;
  return Number.isFinite(v) && v > 0 ? v : def;
}

const NODES = arg('nodes', 50);
const IMAGES = arg('images', 1000);
const DESTS = arg('dests', 100);
const REPLICAS = Math.min(arg('replicas', 3), NODES);
const MINUTES = arg('minutes', 30);

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

async function main(): Promise<void> {
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
    const work = (placement[n] ?? []).map((image) => ({ image, dests: Array.from({ length: DESTS }, (_, d) => d).filter(() => rnd() < 0.6) }));
    nodes.push({ baseline, images, sync, metrics, clock, work });
    await sync.start();
  }
  for (let i = 0; i < 200 && !nodes.every((n) => n.sync.isConnected); i++) await new Promise((r) => setTimeout(r, 50));
  const raw = admin.raw;
  if (!raw) throw new Error('no admin connection');
  for (let i = 0; i < 100 && raw.status !== 'ready'; i++) await new Promise((r) => setTimeout(r, 50));
  const round = async (): Promise<void> => {
    for (const n of nodes) n.baseline.flush();
    for (let i = 0; i < nodes.length; i += 10) await Promise.all(nodes.slice(i, i + 10).map((n) => n.sync.syncNow()));
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
  const stats0 = info(await raw.info('stats'));
  const cpu0 = info(await raw.info('cpu'));
  const pushed0 = await Promise.all(nodes.map((n) => counter(n.metrics, 'store_batches_total', 'op="push",result="ok"')));
  const entries0 = await Promise.all(nodes.map((n) => counter(n.metrics, 'store_entries_total', 'op="push"')));
  const pulled0 = await Promise.all(nodes.map((n) => counter(n.metrics, 'store_entries_total', 'op="pull"')));
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
  const stats1 = info(await raw.info('stats'));
  const cpu1 = info(await raw.info('cpu'));
  const sum = async (name: string, label: string, before: number[]): Promise<number> => (await Promise.all(nodes.map((n) => counter(n.metrics, name, label)))).reduce((s, v, i) => s + v - (before[i] ?? 0), 0);
  const calls = await sum('store_batches_total', 'op="push",result="ok"', pushed0);
  const written = await sum('store_entries_total', 'op="push"', entries0);
  const pulled = await sum('store_entries_total', 'op="pull"', pulled0);
  const resyncs = (await Promise.all(nodes.map(async (n) => (await counter(n.metrics, 'store_resyncs_total', 'reason="overflow"')) + (await counter(n.metrics, 'store_resyncs_total', 'reason="epoch"'))))).reduce((a, b) => a + b, 0);
  const per = (x: number): string => (x / NODES / MINUTES).toFixed(1);
  const mb = (b: number): string => (b / 1_048_576).toFixed(1);
  const memPerDest = (mem1 - mem0) / Math.max(1, destinations);
  const lines = [
    `cluster store simulation: ${NODES} nodes, ${IMAGES} images × ${DESTS} destinations (${REPLICAS} replicas per image, each sees 60 %), redis-server ${(await raw.info('server')).match(/redis_version:(\S+)/)?.[1] ?? '?'}; ${((Date.now() - started) / 1000).toFixed(0)} s`,
    `learning: ${destinations} destinations and ${IMAGES} images in Redis: ${keys} keys, ${mb(mem1 - mem0)} MiB (${memPerDest.toFixed(0)} B per destination incl. image history); per node ${perNodeDests.toFixed(0)} destinations held locally (its own and pulled)`,
    `  → per 1 000 images with 100 destinations each (100 000 destinations): ≈ ${((memPerDest * 100_000) / 1_048_576).toFixed(0)} MiB, ≈ ${Math.round((keys / IMAGES) * 1000)} keys`,
    `steady state, ${MINUTES} min of event time: per node and minute ${per(calls)} script calls, ${per(written)} entries written, ${per(pulled)} entries pulled; ` +
      `${(((stats1['total_net_input_bytes'] ?? 0) - (stats0['total_net_input_bytes'] ?? 0)) / NODES / MINUTES / 1024).toFixed(1)} KiB to Redis, ${(((stats1['total_net_output_bytes'] ?? 0) - (stats0['total_net_output_bytes'] ?? 0)) / NODES / MINUTES / 1024).toFixed(1)} KiB from Redis; ` +
      `${(((stats1['total_commands_processed'] ?? 0) - (stats0['total_commands_processed'] ?? 0)) / NODES / MINUTES).toFixed(1)} commands run by Redis (inside scripts included)`,
    `  Redis CPU: ${(((cpu1['used_cpu_user'] ?? 0) + (cpu1['used_cpu_sys'] ?? 0) - (cpu0['used_cpu_user'] ?? 0) - (cpu0['used_cpu_sys'] ?? 0)) / NODES / MINUTES * 1000).toFixed(2)} ms per node and minute; ${fresh} new destinations during the run; ${resyncs} resyncs (${NODES} expected: each node joining)`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  for (const n of nodes) await n.sync.stop(Date.now() + 1000);
  await admin.close();
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:cluster failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
