/**
 * One benchmark role per child process (`node dist/bench/worker.js`, forked by run.ts with IPC).
 * The parent sends `{ task, ...options }`; the worker answers with messages and exits when told
 * (servers) or when done (measurements). Every loop is bounded in count and time.
 */
import { createReadStream, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import http from 'node:http';
import net from 'node:net';
import { createInterface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import autocannon from 'autocannon';
import { alertFromJson, formatTimeNs, withEnrichment, type Alert } from '../src/alert.js';
import { ManualClock, systemClock } from '../src/clock.js';
import { configSchema, type Config } from '../src/config/schema.js';
import { loadConfig } from '../src/config/validate.js';
import { ContainerEnricher } from '../src/enrich/container.js';
import { DockerClient, type DockerContainer, type DockerHistoryEntry, type DockerImage, type WatchEventsOptions } from '../src/enrich/docker-client.js';
import { EgressEnricher } from '../src/enrich/egress.js';
import { ReverseDns, type PtrResolver } from '../src/enrich/rdns.js';
import { FalcoGrpcEmulator } from '../src/emulator/falco-grpc.js';
import { parse } from '../src/json/lossless.js';
import { createLogger, silentLogger, type Logger } from '../src/logger.js';
import { Metrics } from '../src/metrics.js';
import { MemoryIntake } from '../src/pipeline/intake.js';
import { Pipeline } from '../src/pipeline/pipeline.js';
import { Router } from '../src/pipeline/router.js';
import type { Enricher } from '../src/pipeline/types.js';
import { loadFalcoProtos } from '../src/proto-path.js';
import { openStateDb } from '../src/store/db.js';
import { buildApp, type App } from '../src/wiring.js';
import { MetricsSource } from '../src/sources/metrics.js';
import { benchEngine } from './detectors.js';
import { floodAlert, outboundAlert } from './inputs.js';
import { fullStates } from './checkpoint.js';
import { decodeState, encodeState, encodeStateSliced, restoreInto } from '../src/detect/codec.js';
import { SLICE_MS } from '../src/detect/checkpoint.js';
import { BoundedMap } from '../src/detect/detectors/kit.js';
import { buildDetectors } from '../src/detect/registry.js';
import { loadRulesFile } from '../src/detect/rules/load.js';
import { DetectStateStore } from '../src/store/detect-state.js';

type Msg = Record<string, unknown>;

function send(m: Msg): void {
  process.send?.(m);
}

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Peak RSS sampler (every 20 ms). */
class RssPeak {
  peak = process.memoryUsage().rss;
  private readonly t = setInterval(() => this.sample(), 20);
  constructor() {
    this.t.unref();
  }
  sample(): number {
    const r = process.memoryUsage().rss;
    if (r > this.peak) this.peak = r;
    return r;
  }
  reset(): void {
    this.peak = process.memoryUsage().rss;
  }
  stop(): void {
    clearInterval(this.t);
  }
}

const str = (m: Msg, k: string): string => String(m[k]);
const num = (m: Msg, k: string): number => Number(m[k]);
const bool = (m: Msg, k: string): boolean => m[k] === true;

function companionConfig(overrides: Record<string, unknown>): Config {
  return loadConfig<Config>(configSchema, {
    file: null,
    env: {},
    overrides: {
      'http.enabled': false,
      // No listener of its own for /metrics in the gRPC and file runs (the HTTP run shares the input's).
      'ops.enabled': false,
      'enrich.enabled': false,
      'detect.enabled': false,
      'spool.enabled': false,
      // Not sampling this machine's containers while other paths are measured (its own row: resource).
      'metrics.enabled': false,
      'log.level': 'info',
      ...overrides,
    },
  });
}

/** The companion's logger as the daemon has it (pino JSON at info on stderr; the parent discards stderr). */
function daemonLogger(): Logger {
  return createLogger({ level: 'info' });
}

/** A server under load: answers `mark` (reset counters), `stats`, `stop`. */
function serveControl(counted: () => number, onStop: () => Promise<void>): void {
  const rss = new RssPeak();
  let cpu0 = cpuMs();
  let n0 = counted();
  let t0 = performance.now();
  process.on('message', (raw: unknown) => {
    const m = raw as Msg;
    if (m['cmd'] === 'mark') {
      cpu0 = cpuMs();
      n0 = counted();
      t0 = performance.now();
      rss.reset();
      send({ cmd: 'marked' });
    } else if (m['cmd'] === 'stats') {
      rss.sample();
      send({ cmd: 'stats', cpuMs: cpuMs() - cpu0, alerts: counted() - n0, wallMs: performance.now() - t0, peakRss: rss.peak });
    } else if (m['cmd'] === 'stop') {
      rss.stop();
      void onStop().then(() => process.exit(0));
    }
  });
}

async function serverCompanion(m: Msg): Promise<void> {
  let forwarded = 0;
  const spool = bool(m, 'spool');
  // `full`: the daemon's default pipeline (enrichment and detection on), without what would leave
  // the machine (reverse DNS) or is absent here (a container runtime socket).
  const full = bool(m, 'full') ? { 'enrich.enabled': true, 'enrich.container.runtime': 'none', 'enrich.egress.rdns.enabled': false, 'detect.enabled': true } : {};
  const config = companionConfig({ 'http.enabled': true, 'http.listen': '127.0.0.1:0', 'ops.enabled': true, 'spool.enabled': spool, state_dir: str(m, 'stateDir'), ...full });
  const metrics = new Metrics();
  const app: App = buildApp(config, { logger: daemonLogger(), metrics, clock: systemClock, onForwarded: () => forwarded++ });
  await app.start();
  const addr = app.httpAddress();
  serveControl(
    () => forwarded,
    async () => {
      await app.stop(Date.now() + 5000);
    },
  );
  let spoolFiles: string[] = [];
  try {
    spoolFiles = readdirSync(str(m, 'stateDir'));
  } catch {
    spoolFiles = [];
  }
  send({ cmd: 'ready', port: addr?.port ?? 0, stateFiles: spoolFiles });
}

async function serverBare(): Promise<void> {
  let n = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        JSON.parse(Buffer.concat(chunks).toString('utf8'));
        n++;
        // The companion's answer: 200, empty body.
        res.writeHead(200, { 'Content-Length': '0' }).end();
      } catch {
        res.writeHead(400).end();
      }
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  serveControl(
    () => n,
    async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  );
  send({ cmd: 'ready', port: typeof a === 'object' && a ? a.port : 0 });
}

async function loadgen(m: Msg): Promise<void> {
  const bodies = readFileSync(str(m, 'bodies'), 'utf8').split('\n').filter((l) => l !== '');
  const rate = num(m, 'rate');
  const result = await autocannon({
    url: `http://127.0.0.1:${num(m, 'port')}/`,
    connections: num(m, 'connections'),
    duration: num(m, 'seconds'),
    pipelining: 1,
    timeout: 10,
    ...(rate > 0 ? { overallRate: rate } : {}),
    requests: bodies.map((body) => ({ method: 'POST' as const, path: '/', headers: { 'content-type': 'application/json' }, body })),
  });
  send({
    cmd: 'result',
    ok: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    seconds: result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    p999: result.latency.p99_9,
    max: result.latency.max,
  });
  process.exit(0);
}

/**
 * Fixed-rate load with microsecond latencies (autocannon reports whole milliseconds): keep-alive
 * node:http agent with `connections` sockets; each request's latency runs from its scheduled
 * send time to the end of the response, so queueing behind a slow answer counts.
 */
async function rategen(m: Msg): Promise<void> {
  const bodies = readFileSync(str(m, 'bodies'), 'utf8').split('\n').filter((l) => l !== '').map((b) => Buffer.from(b));
  const rate = num(m, 'rate');
  const seconds = num(m, 'seconds');
  const port = num(m, 'port');
  const agent = new http.Agent({ keepAlive: true, maxSockets: num(m, 'connections') });
  const total = Math.floor(rate * seconds);
  const lat = new Float64Array(total);
  let sent = 0;
  let done = 0;
  let ok = 0;
  let errors = 0;
  const t0 = performance.now();
  const fire = (i: number, at: number): void => {
    const body = bodies[i % bodies.length] as Buffer;
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/', agent, headers: { 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
      res.resume();
      res.on('end', () => {
        lat[i] = performance.now() - at;
        if (res.statusCode === 200) ok++;
        done++;
      });
    });
    req.on('error', () => {
      lat[i] = performance.now() - at;
      errors++;
      done++;
    });
    req.end(body);
  };
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      const due = Math.min(total, Math.floor(((now - t0) / 1000) * rate));
      while (sent < due) {
        // scheduled time of request `sent`
        fire(sent, t0 + (sent / rate) * 1000);
        sent++;
      }
      if (sent >= total) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  await until(() => done >= total, 10_000);
  const wall = (performance.now() - t0) / 1000;
  agent.destroy();
  const sorted = Array.from(lat.subarray(0, done)).sort((a, b) => a - b);
  const pct = (p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
  send({ cmd: 'result', ok, non2xx: done - ok - errors, errors, timeouts: total - done, seconds: wall, p50: pct(50), p99: pct(99), p999: pct(99.9), max: sorted[sorted.length - 1] ?? 0 });
  process.exit(0);
}

/**
 * Falco's `http_output`, as it sends (libcurl, one easy handle, `keep_alive: true`): one
 * keep-alive TCP connection (TCP_NODELAY, as libcurl sets it), one POST per alert with libcurl's
 * headers (`Host`, `User-Agent: falcosecurity/falco`, `Accept`, `Content-Type: application/json`,
 * `Content-Length`), the bodies byte for byte as given, and the next request only after the
 * previous response ended (Falco's outputs run serially on one thread). `rate` 0: as fast as the
 * answers come; else requests are due at fixed times (`rate` per second) and one that is due while
 * the previous answer is still awaited goes out right after it (`late`: answers slower than the interval). Ack latency =
 * end of the response − first byte of the request written, per request (µs resolution).
 */
async function falcoSerial(m: Msg): Promise<void> {
  const port = num(m, 'port');
  const seconds = num(m, 'seconds');
  const rate = num(m, 'rate');
  const bodies = readFileSync(str(m, 'bodies'), 'utf8').split('\n').filter((l) => l !== '');
  const reqs = bodies.map((b) => {
    const body = Buffer.from(b, 'utf8');
    const head = `POST / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUser-Agent: falcosecurity/falco\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    return Buffer.concat([Buffer.from(head, 'latin1'), body]);
  });
  const cap = rate > 0 ? Math.ceil(rate * seconds) : 4_000_000;
  const lat = new Float64Array(cap);
  let n = 0;
  let ok = 0;
  let non2xx = 0;
  let late = 0;
  const sock = net.connect({ port, host: '127.0.0.1', noDelay: true });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let sentAt = 0;
  let pending: Buffer | null = null;
  let timer: NodeJS.Timeout | null = null;
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  const sendNext = (): void => {
    timer = null;
    const now = performance.now();
    if (now >= end || n >= cap) {
      finish();
      return;
    }
    if (rate > 0) {
      const due = t0 + (n * 1000) / rate;
      if (due > now) {
        timer = setTimeout(sendNext, Math.max(0, due - now - 0.05));
        return;
      }
    }
    sentAt = performance.now();
    sock.write(reqs[n % reqs.length] as Buffer);
  };
  /** One complete response in `buf` from offset 0: its length, or 0 when more bytes are needed. */
  const complete = (buf: Buffer): number => {
    const h = buf.indexOf('\r\n\r\n');
    if (h < 0) return 0;
    const head = buf.toString('latin1', 0, h);
    const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    let total: number;
    if (cl) {
      total = h + 4 + Number(cl[1]);
      if (buf.length < total) return 0;
    } else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
      // Chunks: size line, data, CRLF; the last one has size 0 (no trailers from these servers).
      let at = h + 4;
      for (;;) {
        const eol = buf.indexOf('\r\n', at);
        if (eol < 0) return 0;
        const size = parseInt(buf.toString('latin1', at, eol), 16);
        if (size === 0) {
          if (buf.length < eol + 4) return 0;
          total = eol + 4;
          break;
        }
        at = eol + 2 + size + 2;
        if (buf.length < at) return 0;
      }
    } else throw new Error(`response without a length: ${head.slice(0, 200)}`);
    if (head.startsWith('HTTP/1.1 2')) ok++;
    else non2xx++;
    return total;
  };
  sock.on('data', (chunk: Buffer) => {
    let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
    pending = null;
    for (;;) {
      const used = complete(buf);
      if (used === 0) {
        if (buf.length > 0) pending = buf;
        return;
      }
      const took = performance.now() - sentAt;
      lat[n++] = took;
      // An answer slower than the interval held Falco's output thread past the next alert's time.
      if (rate > 0 && took > 1000 / rate) late++;
      buf = buf.subarray(used);
      if (buf.length === 0) break;
    }
    sendNext();
  });
  sock.on('error', () => finish());
  sock.on('close', () => finish());
  sendNext();
  await finished;
  if (timer) clearTimeout(timer);
  const wall = (performance.now() - t0) / 1000;
  sock.destroy();
  const sorted = lat.slice(0, n).sort();
  const pct = (p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
  send({ cmd: 'result', ok, non2xx, errors: 0, timeouts: 0, late, seconds: wall, p50: pct(50), p99: pct(99), p999: pct(99.9), max: sorted[sorted.length - 1] ?? 0 });
  process.exit(0);
}

async function grpcEmulator(m: Msg): Promise<void> {
  const emu = new FalcoGrpcEmulator({ address: `unix://${str(m, 'socket')}`, maxQueued: 2_000_000 });
  const lines = readFileSync(str(m, 'input'), 'utf8').split('\n').filter((l) => l !== '');
  for (const l of lines) emu.push(l);
  await emu.start();
  process.on('message', (raw: unknown) => {
    if ((raw as Msg)['cmd'] === 'stop') void emu.stop().then(() => process.exit(0));
  });
  send({ cmd: 'ready', queued: emu.queued() });
}

/** Run until `n` alerts were counted or `limitMs` passed. */
function until(n: () => boolean, limitMs: number): Promise<boolean> {
  const end = Date.now() + limitMs;
  return new Promise((resolve) => {
    const tick = (): void => {
      if (n()) resolve(true);
      else if (Date.now() > end) resolve(false);
      else setTimeout(tick, 2);
    };
    tick();
  });
}

async function grpcConsumer(m: Msg): Promise<void> {
  const n = num(m, 'n');
  const limit = num(m, 'limitMs');
  const rss = new RssPeak();
  let count = 0;
  const cpu0 = cpuMs();
  const t0 = performance.now();
  let stop: () => Promise<void>;
  if (str(m, 'kind') === 'companion') {
    const config = companionConfig({ 'grpc.enabled': true, 'grpc.address': `unix://${str(m, 'socket')}`, state_dir: str(m, 'stateDir') });
    const app = buildApp(config, { logger: daemonLogger(), metrics: new Metrics(), clock: systemClock, onForwarded: () => count++ });
    await app.start();
    stop = () => app.stop(Date.now() + 2000);
  } else {
    const protos = loadFalcoProtos();
    const client = new grpc.Client(`unix://${str(m, 'socket')}`, grpc.credentials.createInsecure());
    const md = protos.sub;
    const call = client.makeBidiStreamRequest(md.path, md.requestSerialize, (b: Buffer) => md.responseDeserialize(b), {}) as grpc.ClientDuplexStream<object, object>;
    call.on('data', () => count++);
    call.on('error', () => undefined);
    call.write({});
    const t = setInterval(() => call.write({}), 100);
    stop = async () => {
      clearInterval(t);
      call.cancel();
      client.close();
    };
  }
  const done = await until(() => count >= n, limit);
  const wallMs = performance.now() - t0;
  const cpu = cpuMs() - cpu0;
  rss.stop();
  await stop();
  send({ cmd: 'result', alerts: count, complete: done, wallMs, cpuMs: cpu, peakRss: rss.peak });
  process.exit(0);
}

/**
 * JSON-lines replay throughput, both sides timed from their first alert (line) to their last: the
 * companion's start-up (modules, state database, components) and the baseline's stream set-up are
 * not replay. CPU over the same span.
 */
async function fileReplay(m: Msg): Promise<void> {
  const n = num(m, 'n');
  const path = str(m, 'input');
  const rss = new RssPeak();
  let count = 0;
  let t0 = 0;
  let cpu0 = 0;
  const first = (): void => {
    if (count === 1) {
      t0 = performance.now();
      cpu0 = cpuMs();
    }
  };
  let end = 0;
  let cpu = 0;
  if (str(m, 'kind') === 'companion') {
    const config = companionConfig({ state_dir: str(m, 'stateDir') });
    const app = buildApp(config, {
      logger: daemonLogger(),
      metrics: new Metrics(),
      clock: systemClock,
      onForwarded: () => {
        count++;
        first();
        if (count === n) {
          end = performance.now();
          cpu = cpuMs() - cpu0;
        }
      },
      replay: { path },
    });
    await app.start();
    await app.inputDone();
    await until(() => count >= n, num(m, 'limitMs'));
    if (count < n) {
      end = performance.now();
      cpu = cpuMs() - cpu0;
    }
    await app.stop(Date.now() + 2000);
  } else {
    const rl = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
    for await (const line of rl) {
      if (line === '') continue;
      JSON.parse(line);
      count++;
      first();
    }
    end = performance.now();
    cpu = cpuMs() - cpu0;
  }
  rss.stop();
  // The first alert starts the clock: the span covers the other count - 1.
  send({ cmd: 'result', alerts: Math.max(0, count - 1), complete: count >= n, wallMs: end - t0, cpuMs: cpu, peakRss: rss.peak });
  process.exit(0);
}

function parseAlerts(lines: readonly string[]): Alert[] {
  return lines.map((l) => alertFromJson(parse(l), { kind: 'replay', component: 'bench' }));
}

/**
 * The detection stage alone, in steady state: one untimed warm-up pass (JIT, detector state),
 * then `rounds` timed passes. Every pass is the same alerts shifted forward in event time (shallow
 * copies built before timing), so windows, dedup and learning see time move on as in the daemon
 * instead of jumping back to the start. "signals" is what the engine mapped during the timed
 * passes (its `signals_total` counter); the baseline iterates the same alerts of the same passes.
 */
async function detect(m: Msg): Promise<void> {
  const lines = readFileSync(str(m, 'input'), 'utf8').split('\n').filter((l) => l !== '');
  const alerts = parseAlerts(lines);
  const metrics = new Metrics({ collectDefault: false });
  const engine = benchEngine({ logger: silentLogger(), metrics, clock: systemClock });
  const counter = metrics.registry.getSingleMetric('falco_companion_signals_total');
  const countSignals = async (): Promise<number> => (counter ? (await counter.get()).values.reduce((s, v) => s + v.value, 0) : 0);
  const rounds = num(m, 'rounds');
  const first = alerts[0]?.timeNs ?? 0n;
  const last = alerts[alerts.length - 1]?.timeNs ?? 0n;
  const span = last - first + 1_000_000_000n;
  const shifted = (r: number): Alert[] =>
    r === 0
      ? alerts
      : alerts.map((a) => {
          const ns = a.timeNs + BigInt(r) * span;
          return Object.freeze({ ...a, time: formatTimeNs(ns), timeNs: ns });
        });
  for (const a of alerts) engine.process(a); // warm-up pass (untimed)
  const passes: Alert[][] = [];
  for (let r = 1; r <= rounds; r++) passes.push(shifted(r));
  const signals0 = await countSignals();
  let detections = 0;
  let bestPassMs = Infinity;
  const t0 = performance.now();
  const c0 = cpuMs();
  for (const pass of passes) {
    const p0 = performance.now();
    for (const a of pass) detections += engine.process(a).detections.length;
    bestPassMs = Math.min(bestPassMs, performance.now() - p0);
  }
  const engineMs = performance.now() - t0;
  const engineCpu = cpuMs() - c0;
  const signals = (await countSignals()) - signals0;
  // Baseline: iterate the same alerts of the same passes and touch what the mapping reads first (rule and one field).
  let touched = 0;
  const t1 = performance.now();
  for (const pass of passes)
    for (const a of pass) {
      if (a.rule.length > 0 && a.outputFields?.['evt.type'] !== undefined) touched++;
    }
  const baseMs = performance.now() - t1;
  send({ cmd: 'result', alerts: alerts.length * rounds, signals, detections, engineMs, engineCpu, bestPassMs, baseMs, touched });
  process.exit(0);
}

/** A Docker client answering from memory (there is no dockerd socket on the bench machine). */
class FakeDocker extends DockerClient {
  constructor() {
    super({ socketPath: '/nonexistent/docker.sock', timeoutMs: 1000, apiVersion: '1.41' });
  }
  override async containerInspect(id: string): Promise<DockerContainer> {
    return { Id: id.padEnd(64, '0'), Image: `sha256:${'ab'.repeat(32)}`, Name: `/c-${id}`, Created: '2026-07-29T09:00:00Z', Config: { Image: 'registry.example.com/shop/web:1.4.2', Labels: {} } };
  }
  override async imageInspect(ref: string): Promise<DockerImage> {
    return { Id: ref.startsWith('sha256:') ? ref : `sha256:${'ab'.repeat(32)}`, RepoTags: ['registry.example.com/shop/web:1.4.2'], RepoDigests: [`registry.example.com/shop/web@sha256:${'cd'.repeat(32)}`], Created: '2026-07-01T00:00:00Z', RootFS: { Layers: [`sha256:${'ef'.repeat(32)}`] } };
  }
  override async imageHistory(): Promise<DockerHistoryEntry[]> {
    return [{ Id: `sha256:${'ab'.repeat(32)}`, Created: 1_782_864_000, CreatedBy: '/bin/sh -c #(nop) CMD ["nginx"]', Size: 0, Tags: ['registry.example.com/shop/web:1.4.2'] }];
  }
  override async watchEvents(o: WatchEventsOptions): Promise<void> {
    o.onState?.(true, null);
    await new Promise<void>((r) => o.signal.addEventListener('abort', () => r(), { once: true }));
  }
}

/** A PTR resolver answering at once from memory. */
function fakeResolver(): PtrResolver {
  return { setServers: () => undefined, reverse: async (ip: string) => [`host-${ip.replaceAll('.', '-')}.example.net`], cancel: () => undefined };
}

async function enrich(m: Msg): Promise<void> {
  const on = bool(m, 'on');
  const n = num(m, 'n');
  const stateDir = str(m, 'stateDir');
  const metrics = new Metrics({ collectDefault: false });
  const logger = silentLogger();
  const config = companionConfig({ 'enrich.enabled': true, state_dir: stateDir, 'enrich.egress.cluster_pod_cidrs': ['10.42.0.0/16'] });
  // A working set: 500 containers × 40 destinations (caches warm after the first pass).
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const c = i % 500;
    const cid = (0x3f2a9c000000 + c).toString(16);
    lines.push(outboundAlert(1_785_316_800_000_000_000n + BigInt(i) * 1_000_003n, cid, 'registry.example.com/shop/web', 'shop', `web-${c}`, `198.51.100.${1 + (i % 40)}`, 443, 30_000 + (i % 30_000)));
  }
  const alerts = parseAlerts(lines);
  const enrichers: Enricher[] = [];
  const components: { start(): Promise<void>; stop(d: number): Promise<void> }[] = [];
  if (on) {
    const db = openStateDb(stateDir);
    const e = config.enrich.egress;
    const resolver = new ReverseDns({ servers: [], timeoutMs: e.rdns.timeout, cacheSize: e.rdns.cache_size, positiveTtlMs: e.rdns.positive_ttl, negativeTtlMs: e.rdns.negative_ttl, errorTtlMs: e.rdns.error_ttl, maxInflight: e.rdns.max_inflight, clock: systemClock, metrics, logger, newResolver: fakeResolver });
    const egress = new EgressEnricher({ config: e, db, logger, metrics, clock: systemClock, resolver });
    const container = new ContainerEnricher({ config: { ...config.enrich.container, runtime: 'docker' }, db, logger, metrics, clock: systemClock, docker: new FakeDocker() });
    enrichers.push(egress, container);
    components.push(egress, container);
  }
  for (const c of components) await c.start();
  const pass = async (): Promise<{ ms: number; cpu: number }> => {
    const intake = new MemoryIntake(10_000, metrics);
    let forwarded = 0;
    const pipeline = new Pipeline({ intake, enrichers, enrichBudgetMs: config.enrich.budget, detect: null, router: new Router(config.route, metrics), sinks: [], concurrency: config.queue.concurrency, logger, metrics, onForwarded: () => forwarded++ });
    await pipeline.start();
    const t0 = performance.now();
    const c0 = cpuMs();
    for (const a of alerts) {
      if (intake.full) await intake.whenNotFull();
      await intake.submit(a);
    }
    await until(() => forwarded >= alerts.length, 120_000);
    const r = { ms: performance.now() - t0, cpu: cpuMs() - c0 };
    await pipeline.stop(Date.now() + 1000);
    return r;
  };
  await pass(); // warm the caches (and the JIT) with the same alerts
  await new Promise((r) => setTimeout(r, 100)); // background lookups settle
  const timed = await pass();
  for (const c of components) await c.stop(Date.now() + 2000);
  send({ cmd: 'result', alerts: alerts.length, wallMs: timed.ms, cpuMs: timed.cpu });
  process.exit(0);
}

async function sumMetrics(metrics: Metrics, match: RegExp): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const mm of await metrics.registry.getMetricsAsJSON()) {
    if (!match.test(mm.name)) continue;
    for (const v of mm.values) {
      const label = Object.values(v.labels).join('/') || '-';
      const key = `${mm.name.replace('falco_companion_', '')}{${label}}`;
      out[key] = (out[key] ?? 0) + v.value;
    }
  }
  return out;
}

async function flood(m: Msg): Promise<void> {
  const n = num(m, 'n');
  const stateDir = str(m, 'stateDir');
  const metrics = new Metrics({ collectDefault: false });
  const logger = silentLogger();
  const config = companionConfig({ 'enrich.enabled': true, state_dir: stateDir, 'enrich.egress.cluster_pod_cidrs': ['10.42.0.0/16'] });
  const db = openStateDb(stateDir);
  const e = config.enrich.egress;
  const resolver = new ReverseDns({ servers: [], timeoutMs: e.rdns.timeout, cacheSize: e.rdns.cache_size, positiveTtlMs: e.rdns.positive_ttl, negativeTtlMs: e.rdns.negative_ttl, errorTtlMs: e.rdns.error_ttl, maxInflight: e.rdns.max_inflight, clock: systemClock, metrics, logger, newResolver: fakeResolver });
  const egress = new EgressEnricher({ config: e, db, logger, metrics, clock: systemClock, resolver });
  await egress.start();
  const engine = benchEngine({ logger, metrics, clock: systemClock });
  const intake = new MemoryIntake(16, metrics); // the dedup of ids (companion.alert_id) as in the daemon
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  await new Promise((r) => setTimeout(r, 200));
  const idleRss = process.memoryUsage().rss;
  const rss = new RssPeak();
  const t0 = performance.now();
  const c0 = cpuMs();
  const ac = new AbortController();
  let detections = 0;
  let i = 0;
  const deadline = Date.now() + num(m, 'limitMs');
  for (; i < n && Date.now() < deadline; i++) {
    const a = alertFromJson(parse(floodAlert(i)), { kind: 'http', component: 'bench' });
    await intake.submit(a);
    const taken = (await intake.take()) as Alert;
    const add = await egress.enrich(taken, ac.signal);
    detections += engine.process(withEnrichment(taken, add)).detections.length;
    if ((i & 1023) === 0) {
      rss.sample();
      await new Promise((r) => setImmediate(r)); // timers run as in the daemon (baseline flush, sweeps)
    }
  }
  const wallMs = performance.now() - t0;
  const cpu = cpuMs() - c0;
  rss.sample();
  rss.stop();
  const evictions = await sumMetrics(metrics, /evict/);
  // Live heap at the end (after a full GC): the bounded state plus everything else.
  gc?.();
  gc?.();
  const liveHeap = process.memoryUsage().heapUsed;
  await egress.stop(Date.now() + 5000);
  db.close();
  send({ cmd: 'result', flows: i, complete: i >= n, idleRss, peakRss: rss.peak, endRss: process.memoryUsage().rss, evictions, detections, wallMs, cpuMs: cpu, liveHeap });
  process.exit(0);
}

/**
 * Detection state checkpoint at full budgets (bench/checkpoint.ts fills every detector and the
 * incidents): encode every part (the codec, src/detect/codec.ts), write them in one transaction to
 * a real state database, read, decode and restore them into fresh states. Baseline, same data:
 * `JSON.stringify` with a replacer for Map / Set / BoundedMap / bigint (what one would write
 * without a codec; it loses shared references and LRU bounds, so it is a speed and size yardstick).
 */
async function checkpoint(m: Msg): Promise<void> {
  const full = fullStates();
  (globalThis as { gc?: () => void }).gc?.();
  const heapUsed = process.memoryUsage().heapUsed;
  // As the periodic checkpoint does it: each part in slices of SLICE_MS, a turn of the event loop
  // between slices; the longest slice is the longest the event loop is blocked.
  const per: { id: string; bytes: number; encodeMs: number; longestMs: number; longestCpuMs: number; slices: number; wholeMs: number }[] = [];
  const encoded: { id: string; version: number; state: Buffer }[] = [];
  let encodeMs = 0;
  for (const p of full.parts) {
    const steps = encodeStateSliced(p.state, SLICE_MS);
    let ms = 0;
    let longest = 0;
    let longestCpu = 0;
    let slices = 0;
    let state: Buffer;
    for (;;) {
      const t = performance.now();
      const c = process.cpuUsage();
      const r = steps.next();
      const d = performance.now() - t;
      const cu = process.cpuUsage(c);
      ms += d;
      slices++;
      if (d > longest) longest = d;
      // CPU time tells this process's own block from time the shared machine gave to others.
      longestCpu = Math.max(longestCpu, (cu.user + cu.system) / 1000);
      if (r.done) {
        state = r.value;
        break;
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    // The same part in one go (what the checkpoint did before, and does at stop).
    const t1 = performance.now();
    encodeState(p.state);
    per.push({ id: p.id, bytes: state.length, encodeMs: ms, longestMs: longest, longestCpuMs: longestCpu, slices, wholeMs: performance.now() - t1 });
    encoded.push({ id: p.id, version: 1, state });
    encodeMs += ms;
  }
  const db = openStateDb(str(m, 'stateDir'));
  const store = new DetectStateStore(db);
  const w0 = performance.now();
  store.save(encoded, Date.now());
  const writeMs = performance.now() - w0;
  const r0 = performance.now();
  const rows = store.load();
  const fresh = new Map(buildDetectors(loadRulesFile(null)).map((d) => [d.id, d]));
  for (const row of rows) {
    const decoded = decodeState(row.state);
    const det = fresh.get(row.id);
    if (det) restoreInto(det.init(), decoded);
  }
  const restoreMs = performance.now() - r0;
  db.close();
  const replacer = (_k: string, v: unknown): unknown => {
    if (typeof v === 'bigint') return v.toString();
    if (v instanceof BoundedMap) return [...(v as BoundedMap<unknown, unknown>).entries()];
    if (v instanceof Map) return [...(v as Map<unknown, unknown>).entries()];
    if (v instanceof Set) return [...(v as Set<unknown>)];
    return v;
  };
  const j0 = performance.now();
  let jsonBytes = 0;
  for (const p of full.parts) jsonBytes += Buffer.byteLength(JSON.stringify(p.state, replacer));
  const jsonMs = performance.now() - j0;
  send({ cmd: 'result', signals: full.signals, fillMs: full.fillMs, per, encodeMs, writeMs, restoreMs, jsonMs, jsonBytes, heapUsed });
  process.exit(0);
}

/**
 * Resource sampling cost: `n` containers laid out as cgroup v2 + /proc files (bench/tmp), `ticks`
 * timed ticks after a warm-up. `companion`: the metrics source's tick (index, reads, parsing,
 * rates, baselines, verdicts); `baseline`: a bare loop reading and parsing the same five files per
 * container. Only the ticks are timed (the counters are rewritten between them, untimed).
 */
async function resource(m: Msg): Promise<void> {
  const n = num(m, 'n');
  const ticks = num(m, 'ticks');
  const dir = str(m, 'stateDir');
  const kind = str(m, 'kind');
  const root = join(dir, 'cgroup');
  const proc = join(dir, 'proc');
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, 'cgroup.controllers'), 'cpu io memory pids\n');
  const ids = Array.from({ length: n }, (_, i) => i.toString(16).padStart(4, '0').repeat(16));
  const dirs = ids.map((id) => join(root, 'kubepods.slice', 'kubepods-burstable.slice', `cri-containerd-${id}.scope`));
  const head = 'Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n';
  const write = (t: number): void => {
    ids.forEach((_id, i) => {
      const d = dirs[i] as string;
      if (t === 0) {
        mkdirSync(d, { recursive: true });
        mkdirSync(join(proc, String(10_000 + i), 'net'), { recursive: true });
        writeFileSync(join(d, 'memory.current'), `${90_000_000 + i}\n`);
        writeFileSync(join(d, 'memory.stat'), `anon 80000000\nfile 10000000\nkernel 1000000\nsock 0\nshmem 0\nfile_mapped 100000\nfile_dirty 0\nactive_anon 0\ninactive_anon 80000000\nactive_file 4000000\ninactive_file 6000000\nunevictable 0\n`);
        writeFileSync(join(d, 'pids.current'), '12\n');
        writeFileSync(join(d, 'cgroup.procs'), `${10_000 + i}\n`);
      }
      const cpu = Math.round(t * 10 * 0.1 * 1e6 + i);
      writeFileSync(join(d, 'cpu.stat'), `usage_usec ${cpu}\nuser_usec ${cpu >> 1}\nsystem_usec ${cpu >> 1}\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n`);
      const b = t * 10 * 50_000;
      writeFileSync(join(proc, String(10_000 + i), 'net', 'dev'), `${head}    lo: ${b} ${b >> 9} 0 0 0 0 0 0 ${b} ${b >> 9} 0 0 0 0 0 0\n  eth0: ${b} ${b >> 9} 0 0 0 0 0 0 ${b * 2} ${b >> 8} 0 0 0 0 0 0\n`);
    });
  };
  write(0);
  const clock = new ManualClock(Date.UTC(2026, 2, 2));
  let step: () => Promise<void>;
  if (kind === 'companion') {
    const cfg = companionConfig({ 'metrics.enabled': true, 'enrich.container.runtime': 'none', 'metrics.cgroup_root': root, 'metrics.proc_root': proc, 'metrics.warmup': 0, 'metrics.baseline.learning_period': 30_000, 'metrics.baseline.min_samples': 6, 'metrics.max_containers': Math.max(500, n) });
    const metrics = new Metrics({ collectDefault: false });
    const src = new MetricsSource({ config: cfg.metrics, runtime: cfg.enrich.container, intake: new MemoryIntake(1000, metrics), db: null, logger: silentLogger(), metrics, clock, hostname: null });
    ids.forEach((id, i) => src.seen.enrichSync(alertFromJson(parse(`{"rule":"r","priority":"Notice","time":"2026-03-02T00:00:00.000000000Z","output":"","output_fields":{"container.id":"${id.slice(0, 12)}","container.image.repository":"bench/app${i % 10}","k8s.ns.name":"bench","k8s.pod.name":"app${i % 10}-6b8f9d7c5-x7k2${'bcdfghjklm'[Math.floor(i / 10) % 10]}"}}`), { kind: 'test', component: 'bench' })));
    step = async () => {
      await src.tick();
    };
  } else {
    const pids = ids.map((_id, i) => Number(readFileSync(join(dirs[i] as string, 'cgroup.procs'), 'utf8').split('\n')[0]));
    let sink = 0;
    step = async () => {
      for (let i = 0; i < n; i++) {
        const d = dirs[i] as string;
        const cpu = readFileSync(join(d, 'cpu.stat'), 'utf8');
        sink += Number(cpu.slice(cpu.indexOf(' ') + 1, cpu.indexOf('\n')));
        sink += Number(readFileSync(join(d, 'memory.current'), 'utf8'));
        const st = readFileSync(join(d, 'memory.stat'), 'utf8');
        const k = st.indexOf('inactive_file ');
        sink += Number(st.slice(k + 14, st.indexOf('\n', k)));
        sink += Number(readFileSync(join(d, 'pids.current'), 'utf8'));
        const net = readFileSync(join(proc, String(pids[i]), 'net', 'dev'), 'utf8').split('\n');
        for (const line of net.slice(2)) if (line) sink += Number(line.slice(line.indexOf(':') + 1).trim().split(/\s+/)[0]);
      }
      if (sink < 0) throw new Error('unreachable');
    };
  }
  const warm = 10;
  let cpu = 0;
  let wall = 0;
  for (let t = 1; t <= warm + ticks; t++) {
    write(t);
    clock.advance(10_000);
    const c0 = cpuMs();
    const w0 = performance.now();
    await step();
    if (t > warm) {
      cpu += cpuMs() - c0;
      wall += performance.now() - w0;
    }
  }
  send({ cmd: 'result', n, ticks, cpuMsPerTick: cpu / ticks, wallMsPerTick: wall / ticks, kernelMsPer100: kind === 'baseline' ? kernelReads(100) : null });
  process.exit(0);
}

/**
 * CPU ms to read the same five kinds of files `n` times from the kernel itself (this process's own
 * cgroup, v2 or v1, and /proc/self/net/dev): cgroupfs and procfs generate them on each read, which
 * the temp-file layout above does not show. null when they are not readable here.
 */
function kernelReads(n: number): number | null {
  try {
    const lines = readFileSync('/proc/self/cgroup', 'utf8').split('\n');
    const path = (ctrl: string): string | null => {
      const l = lines.find((x) => x.split(':')[1]?.split(',').includes(ctrl));
      return l ? l.slice(l.indexOf(':', l.indexOf(':') + 1) + 1) : null;
    };
    const v2 = lines.find((x) => x.startsWith('0::'))?.slice(3) ?? '/';
    const files = readdirSync('/sys/fs/cgroup').includes('cgroup.controllers')
      ? ['cpu.stat', 'memory.current', 'memory.stat', 'pids.current'].map((f) => join('/sys/fs/cgroup', v2, f))
      : [join('/sys/fs/cgroup/cpuacct', path('cpuacct') ?? '/', 'cpuacct.usage'), join('/sys/fs/cgroup/memory', path('memory') ?? '/', 'memory.usage_in_bytes'), join('/sys/fs/cgroup/memory', path('memory') ?? '/', 'memory.stat')];
    files.push('/proc/self/net/dev');
    for (const f of files) readFileSync(f, 'utf8');
    const c0 = cpuMs();
    for (let i = 0; i < n; i++) for (const f of files) readFileSync(f, 'utf8');
    return cpuMs() - c0;
  } catch {
    return null;
  }
}

const TASKS: Record<string, (m: Msg) => Promise<void>> = {
  'server-companion': serverCompanion,
  'server-bare': serverBare,
  loadgen,
  rategen,
  'falco-serial': falcoSerial,
  'grpc-emulator': grpcEmulator,
  'grpc-consumer': grpcConsumer,
  file: fileReplay,
  detect,
  enrich,
  flood,
  checkpoint,
  resource,
};

process.once('message', (raw: unknown) => {
  const m = raw as Msg;
  const task = TASKS[str(m, 'task')];
  if (!task) {
    send({ cmd: 'error', error: `unknown task ${str(m, 'task')}` });
    process.exit(2);
  }
  task(m).catch((err: unknown) => {
    send({ cmd: 'error', error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    process.exit(1);
  });
});

