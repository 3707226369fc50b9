/**
 * `npm run bench [-- --quick] [--only serial,http,grpc,file,detect,enrich,spool,flood,checkpoint,resource] [--out FILE] [--profile DIR]`
 *
 * Every figure is measured next to its baseline in the same run, each side in a fresh child
 * process (bench/worker.ts), loopback only, bounded in time. Prints the report and writes
 * docs/benchmarks.md (or --out).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { falcoLines, recordedSignalBodies, repoRoot, signalLines } from './inputs.js';
import { SLICE_MS } from '../src/detect/checkpoint.js';

type Msg = Record<string, unknown>;

export interface Row {
  readonly path: string;
  readonly metric: string;
  readonly companion: string;
  readonly baseline: string;
  readonly ratio: number | null;
  readonly target: string;
  readonly met: boolean | null;
  /** CPU seconds per 1000 alerts (= cores busy at 1 k alerts/s), companion side. */
  readonly cpuPer1k: number | null;
  /** The same for the baseline. */
  readonly baseCpuPer1k?: number | null;
  readonly note?: string;
}

export interface Report {
  readonly machine: Record<string, string>;
  readonly mode: 'quick' | 'full';
  readonly rows: Row[];
  readonly notes: string[];
  readonly seconds: number;
}

const WORKER = join(dirname(fileURLToPath(import.meta.url)), 'worker.js');
/** V8 heap cap of the flood child: what docs/operations.md sets for a 256 MiB container (NODE_OPTIONS). */
const FLOOD_HEAP_MB = 160;

class Child {
  private readonly inbox: Msg[] = [];
  private waiting: ((m: Msg) => void) | null = null;
  readonly exited: Promise<number | null>;
  constructor(readonly proc: ChildProcess) {
    proc.on('message', (raw: unknown) => {
      const m = raw as Msg;
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w(m);
      } else this.inbox.push(m);
    });
    this.exited = new Promise((r) => proc.once('exit', (code) => r(code)));
  }
  /** Next message (rejects on an error message, an exit or after `ms`). */
  next(ms: number): Promise<Msg> {
    const m = this.inbox.shift();
    const p = m
      ? Promise.resolve(m)
      : new Promise<Msg>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`worker ${this.proc.pid}: no answer within ${ms} ms`)), ms);
          this.waiting = (x) => {
            clearTimeout(t);
            resolve(x);
          };
          void this.exited.then((code) => {
            clearTimeout(t);
            reject(new Error(`worker ${this.proc.pid} exited (${code})`));
          });
        });
    return p.then((x) => {
      if (x['cmd'] === 'error') throw new Error(`worker failed: ${String(x['error'])}`);
      return x;
    });
  }
  send(m: Msg): void {
    this.proc.send(m);
  }
  kill(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
  }
}

const children = new Set<Child>();

function spawn(task: string, opts: Msg, execArgv: string[] = []): Child {
  const proc = fork(WORKER, [], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'], execArgv });
  const c = new Child(proc);
  children.add(c);
  void c.exited.then(() => children.delete(c));
  c.send({ task, ...opts });
  return c;
}

async function once(task: string, opts: Msg, limitMs: number, execArgv: string[] = []): Promise<Msg> {
  const c = spawn(task, opts, execArgv);
  try {
    return await c.next(limitMs);
  } finally {
    // Let it exit by itself (a --cpu-prof profile is written at exit), then make sure.
    await Promise.race([c.exited, sleep(15_000)]);
    c.kill();
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const n = (m: Msg, k: string): number => Number(m[k]);
const fmt = (x: number, d = 0): string => x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const mb = (b: number): string => `${fmt(b / 1048576, 0)} MB`;

export interface Options {
  readonly quick: boolean;
  readonly only: ReadonlySet<string> | null;
  readonly out: string | null;
  readonly profileDir: string | null;
  readonly log: (s: string) => void;
}

interface HttpRun {
  rate: number;
  /** Fixed-rate serial runs: requests that went out later than one interval after they were due. */
  late: number;
  p50: number;
  p99: number;
  cpuPer1k: number;
  non2xx: number;
  errors: number;
  peakRss: number;
}

async function httpRun(server: Child, port: number, bodies: string, seconds: number, connections: number, rate: number, gen?: string): Promise<HttpRun> {
  server.send({ cmd: 'mark' });
  await server.next(5000);
  const lg = await once(gen ?? (rate > 0 ? 'rategen' : 'loadgen'), { port, bodies, seconds, connections, rate }, (seconds + 30) * 1000);
  server.send({ cmd: 'stats' });
  const s = await server.next(5000);
  const ok = n(lg, 'ok');
  const alerts = Math.max(1, n(s, 'alerts'));
  return {
    late: Number(lg['late'] ?? 0),
    rate: ok / n(lg, 'seconds'),
    p50: n(lg, 'p50'),
    p99: n(lg, 'p99'),
    cpuPer1k: n(s, 'cpuMs') / alerts,
    non2xx: n(lg, 'non2xx'),
    errors: n(lg, 'errors') + n(lg, 'timeouts'),
    peakRss: n(s, 'peakRss'),
  };
}

async function httpServer(task: string, opts: Msg, bodies: string, o: Options, seconds: number, rateSeconds: number, profile: string | null): Promise<{ max: HttpRun; fixed: HttpRun; stateFiles: string[] }> {
  const server = spawn(task, opts, profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : []);
  try {
    const ready = await server.next(30_000);
    const port = n(ready, 'port');
    await httpRun(server, port, bodies, o.quick ? 1 : 2, 8, 0); // warm-up (JIT, connections)
    const max = await httpRun(server, port, bodies, seconds, 8, 0);
    await sleep(300);
    const fixed = await httpRun(server, port, bodies, rateSeconds, 8, 5000);
    server.send({ cmd: 'stop' });
    await Promise.race([server.exited, sleep(8000)]);
    return { max, fixed, stateFiles: (ready['stateFiles'] as string[] | undefined) ?? [] };
  } finally {
    server.kill();
  }
}

/** Falco's http_output shape: one keep-alive connection, serial POSTs (bench/worker.ts falcoSerial), as fast as answered and at 1 000/s. */
async function serialServer(task: string, opts: Msg, bodies: string, seconds: number, rateSeconds: number, profile: string | null): Promise<{ max: HttpRun; fixed: HttpRun }> {
  const server = spawn(task, opts, profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : []);
  try {
    const ready = await server.next(30_000);
    const port = n(ready, 'port');
    await httpRun(server, port, bodies, 2, 1, 0, 'falco-serial'); // warm-up (JIT, the connection's first requests)
    const max = await httpRun(server, port, bodies, seconds, 1, 0, 'falco-serial');
    await sleep(300);
    const fixed = await httpRun(server, port, bodies, rateSeconds, 1, SERIAL_RATE, 'falco-serial');
    server.send({ cmd: 'stop' });
    await Promise.race([server.exited, sleep(8000)]);
    return { max, fixed };
  } finally {
    server.kill();
  }
}

/** The fixed rate of the single-connection latency run (alerts/s). */
const SERIAL_RATE = 1000;

function machine(): Record<string, string> {
  const cpus = os.cpus();
  return {
    CPU: cpus[0]?.model.trim() ?? 'unknown',
    cores: String(cpus.length),
    memory: `${fmt(os.totalmem() / 1073741824, 1)} GiB`,
    OS: `${os.type()} ${os.release()} ${os.arch()}`,
    Node: process.version,
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  };
}

/** Top self-time functions of the .cpuprofile files in a directory. */
export function summariseProfiles(dir: string, top = 15): string[] {
  interface Node {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }
  const lines: string[] = [];
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.cpuprofile'))) {
    const p = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
    const byId = new Map(p.nodes.map((x) => [x.id, x]));
    const self = new Map<string, number>();
    let total = 0;
    p.samples.forEach((id, i) => {
      const node = byId.get(id);
      const dt = p.timeDeltas[i] ?? 0;
      total += dt;
      if (!node) return;
      const cf = node.callFrame;
      const key = `${cf.functionName || '(anonymous)'} ${cf.url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${cf.lineNumber + 1}`;
      self.set(key, (self.get(key) ?? 0) + dt);
    });
    lines.push(`${f} (${fmt(total / 1000, 0)} ms sampled):`);
    for (const [k, v] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)) lines.push(`  ${fmt((100 * v) / total, 1).padStart(5)}%  ${k}`);
  }
  return lines;
}

export async function runBench(o: Options): Promise<Report> {
  const started = Date.now();
  const tmp = mkdtempSync(join(os.tmpdir(), 'fc-bench-'));
  const rows: Row[] = [];
  const notes: string[] = [];
  const want = (p: string): boolean => o.only === null || o.only.has(p);
  const q = o.quick;
  /** Noisy shared machines: alternate baseline and companion, keep each side's best round. */
  const rounds = q ? 1 : 2;
  const best = (a: Msg | undefined, b: Msg): Msg => (a === undefined || n(b, 'alerts') / n(b, 'wallMs') > n(a, 'alerts') / n(a, 'wallMs') ? b : a);
  const profile = (name: string): string | null => (o.profileDir ? resolve(o.profileDir, name) : null);
  try {
    const bodies = join(tmp, 'bodies.jsonl');
    writeFileSync(bodies, `${falcoLines(300, 7).join('\n')}\n`);

    if (want('serial')) {
      const rec = recordedSignalBodies();
      const serialBodies = join(tmp, 'falco-bodies.jsonl');
      writeFileSync(serialBodies, `${rec.bodies.join('\n')}\n`);
      const secs = q ? 3 : 10;
      const rateSecs = q ? 3 : 10;
      type Kind = 'bare' | 'off' | 'on' | 'e2e';
      const kinds: [Kind, string, Msg][] = [
        ['bare', 'server-bare', {}],
        ['off', 'server-companion', { spool: false }],
        ['on', 'server-companion', { spool: true }],
        ['e2e', 'server-companion', { spool: true, full: true }],
      ];
      const res: Partial<Record<Kind, { max: HttpRun; fixed: HttpRun }>> = {};
      const better = (a: { max: HttpRun; fixed: HttpRun } | undefined, b: { max: HttpRun; fixed: HttpRun }): { max: HttpRun; fixed: HttpRun } =>
        a === undefined ? b : { max: b.max.rate > a.max.rate ? b.max : a.max, fixed: b.fixed.p99 < a.fixed.p99 ? b.fixed : a.fixed };
      for (let round = 0; round < rounds; round++)
        for (const [kind, task, opts] of kinds) {
          o.log(`serial: ${kind}, one keep-alive connection, ${secs} s as fast as answered + ${rateSecs} s at ${SERIAL_RATE}/s, round ${round + 1}/${rounds}`);
          const prof = kind === 'on' && round === 0 ? profile('serial') : null;
          res[kind] = better(res[kind], await serialServer(task, { ...opts, stateDir: join(tmp, `serial-${kind}-${round}`) }, serialBodies, secs, rateSecs, prof));
        }
      const r = res as Record<Kind, { max: HttpRun; fixed: HttpRun }>;
      const path = 'HTTP, one connection (Falco http_output: serial keep-alive POSTs)';
      const label: Record<Kind, string> = { bare: 'bare node:http', off: 'spool off', on: 'spool on (default)', e2e: 'end-to-end: spool, enrichment, detection' };
      const lat = (x: HttpRun): string => `${fmt(x.p50, 3)} / ${fmt(x.p99, 3)}`;
      rows.push({ path, metric: 'alerts/s, spool off (no sinks, no detection)', companion: fmt(r.off.max.rate), baseline: `${fmt(r.bare.max.rate)} (${label.bare})`, ratio: r.off.max.rate / r.bare.max.rate, target: '≥ 0.7 × baseline', met: r.off.max.rate / r.bare.max.rate >= 0.7, cpuPer1k: r.off.max.cpuPer1k, baseCpuPer1k: r.bare.max.cpuPer1k });
      rows.push({ path, metric: 'alerts/s, spool on (default)', companion: fmt(r.on.max.rate), baseline: `${fmt(r.off.max.rate)} (${label.off})`, ratio: r.on.max.rate / r.off.max.rate, target: '≥ 0.8 × baseline', met: r.on.max.rate / r.off.max.rate >= 0.8, cpuPer1k: r.on.max.cpuPer1k, baseCpuPer1k: r.off.max.cpuPer1k, note: `${fmt(r.on.max.rate / r.bare.max.rate, 2)} × the bare server` });
      rows.push({ path, metric: 'alerts/s, end-to-end (spool, enrichment, detection)', companion: fmt(r.e2e.max.rate), baseline: `${fmt(r.bare.max.rate)} (${label.bare})`, ratio: r.e2e.max.rate / r.bare.max.rate, target: 'context', met: null, cpuPer1k: r.e2e.max.cpuPer1k, baseCpuPer1k: r.bare.max.cpuPer1k });
      rows.push({ path, metric: 'ack p50 / p99 as fast as answered (ms): spool off / on / end-to-end', companion: `${lat(r.off.max)} · ${lat(r.on.max)} · ${lat(r.e2e.max)}`, baseline: `${lat(r.bare.max)} (${label.bare})`, ratio: null, target: 'context', met: null, cpuPer1k: null });
      for (const k of ['on', 'off', 'e2e'] as const) {
        const x = r[k].fixed;
        rows.push({ path, metric: `ack p50 / p99 at ${fmt(SERIAL_RATE)} alerts/s (ms), ${label[k]}`, companion: lat(x), baseline: `${lat(r.bare.fixed)} (${label.bare})`, ratio: null, target: k === 'e2e' ? 'context' : 'p99 ≤ 1 ms', met: k === 'e2e' ? null : x.p99 <= 1, cpuPer1k: x.cpuPer1k, baseCpuPer1k: r.bare.fixed.cpuPer1k, note: `achieved ${fmt(x.rate)} alerts/s, ${fmt(x.late)} answers slower than the interval` });
      }
      notes.push(`Single connection: bodies are the ${rec.source}, sent in a loop; requests carry libcurl's headers (User-Agent falcosecurity/falco, Content-Type application/json) on one TCP_NODELAY connection; ack = end of the response − request written, measured by the load generator in its own process. Rounds alternate the four servers; each keeps its best run.`);
      for (const k of ['bare', 'off', 'on', 'e2e'] as const) if (r[k].max.non2xx + r[k].fixed.non2xx > 0) notes.push(`Single connection, ${label[k]}: ${r[k].max.non2xx + r[k].fixed.non2xx} non-2xx answers.`);
    }

    if (want('http') || want('spool')) {
      const secs = q ? 3 : 10;
      const rateSecs = q ? 3 : 8;
      o.log(`http: bare node:http baseline (${secs} s + ${rateSecs} s at 5 k/s)`);
      const bare = await httpServer('server-bare', {}, bodies, o, secs, rateSecs, null);
      o.log(`http: companion (spool off, no sinks)`);
      const comp = await httpServer('server-companion', { spool: false, stateDir: join(tmp, 'state-off') }, bodies, o, secs, rateSecs, profile('http'));
      if (want('http')) {
        const ratio = comp.max.rate / bare.max.rate;
        rows.push({ path: 'HTTP ingest, no sinks', metric: 'alerts/s (8 connections, keep-alive)', companion: fmt(comp.max.rate), baseline: fmt(bare.max.rate), ratio, target: '≥ 0.6 × baseline', met: ratio >= 0.6, cpuPer1k: comp.max.cpuPer1k, baseCpuPer1k: bare.max.cpuPer1k });
        rows.push({ path: 'HTTP ingest, no sinks', metric: 'ack latency p50 / p99 at max rate (ms)', companion: `${comp.max.p50} / ${comp.max.p99}`, baseline: `${bare.max.p50} / ${bare.max.p99}`, ratio: null, target: 'context', met: null, cpuPer1k: null });
        rows.push({ path: 'HTTP ingest, no sinks', metric: 'ack latency p50 / p99 at 5 k alerts/s (ms)', companion: `${fmt(comp.fixed.p50, 2)} / ${fmt(comp.fixed.p99, 2)}`, baseline: `${fmt(bare.fixed.p50, 2)} / ${fmt(bare.fixed.p99, 2)}`, ratio: null, target: 'p99 ≤ 2 ms', met: comp.fixed.p99 <= 2, cpuPer1k: comp.fixed.cpuPer1k, baseCpuPer1k: bare.fixed.cpuPer1k, note: `achieved ${fmt(comp.fixed.rate)} alerts/s` });
        if (comp.max.non2xx + comp.max.errors > 0) notes.push(`HTTP companion: ${comp.max.non2xx} non-2xx answers and ${comp.max.errors} errors at max rate (503 = intake full back-pressure).`);
      }
      if (want('spool')) {
        o.log('spool: companion with spool.enabled=true');
        const sp = await httpServer('server-companion', { spool: true, stateDir: join(tmp, 'state-on') }, bodies, o, secs, rateSecs, null);
        const wired = existsSync(join(tmp, 'state-on')) && readdirSync(join(tmp, 'state-on')).length > 0;
        const ratio = sp.max.rate / comp.max.rate;
        rows.push({ path: 'Durable spool on', metric: 'HTTP alerts/s', companion: fmt(sp.max.rate), baseline: `${fmt(comp.max.rate)} (spool off)`, ratio, target: '≥ 0.5 × baseline', met: wired ? ratio >= 0.5 : null, cpuPer1k: sp.max.cpuPer1k, baseCpuPer1k: comp.max.cpuPer1k, ...(wired ? {} : { note: 'spool not wired into buildApp yet: both sides ran without it' }) });
        rows.push({ path: 'Durable spool on', metric: 'ack p99 at 5 k alerts/s (ms)', companion: fmt(sp.fixed.p99, 2), baseline: `${fmt(comp.fixed.p99, 2)} (spool off)`, ratio: null, target: 'context', met: null, cpuPer1k: null });
        if (!wired) notes.push('Spool: `spool.enabled: true` left no state database behind, i.e. buildApp did not wire the spool when this ran; the spool row compares two spool-less runs and is not a result.');
      }
    }

    if (want('grpc')) {
      const count = q ? 20_000 : 100_000;
      const input = join(tmp, 'grpc.jsonl');
      writeFileSync(input, `${falcoLines(count, 11).join('\n')}\n`);
      const res: Record<string, Msg> = {};
      for (let round = 0; round < rounds; round++)
        for (const kind of ['baseline', 'companion']) {
          o.log(`grpc: ${kind} (${count} alerts from the emulator's sub stream), round ${round + 1}/${rounds}`);
          const socket = join(tmp, `falco-${kind}.sock`);
          const emu = spawn('grpc-emulator', { socket, input });
          try {
            await emu.next(120_000);
            res[kind] = best(res[kind], await once('grpc-consumer', { kind, socket, n: count, limitMs: q ? 30_000 : 90_000, stateDir: join(tmp, `grpc-${kind}-${round}`) }, 150_000));
          } finally {
            emu.kill();
          }
        }
      const c = res['companion'] as Msg;
      const b = res['baseline'] as Msg;
      const cr = (n(c, 'alerts') / n(c, 'wallMs')) * 1000;
      const br = (n(b, 'alerts') / n(b, 'wallMs')) * 1000;
      rows.push({ path: 'gRPC sub stream (emulator, unix socket)', metric: 'alerts/s', companion: fmt(cr), baseline: fmt(br), ratio: cr / br, target: '≥ 0.5 × baseline', met: cr / br >= 0.5 && c['complete'] === true, cpuPer1k: n(c, 'cpuMs') / Math.max(1, n(c, 'alerts')), baseCpuPer1k: n(b, 'cpuMs') / Math.max(1, n(b, 'alerts')) });
    }

    if (want('file')) {
      const count = q ? 30_000 : 200_000;
      const input = join(tmp, 'alerts.jsonl');
      writeFileSync(input, `${falcoLines(count, 13).join('\n')}\n`);
      const res: Record<string, Msg> = {};
      for (let round = 0; round < rounds; round++)
        for (const kind of ['baseline', 'companion']) {
          o.log(`file: ${kind} (${count} lines), round ${round + 1}/${rounds}`);
          const prof = kind === 'companion' && round === 0 && profile('file') ? ['--cpu-prof', `--cpu-prof-dir=${profile('file') as string}`] : [];
          res[kind] = best(res[kind], await once('file', { kind, input, n: count, limitMs: 120_000, stateDir: join(tmp, `file-${kind}-${round}`) }, 150_000, prof));
        }
      const c = res['companion'] as Msg;
      const b = res['baseline'] as Msg;
      const cr = (n(c, 'alerts') / n(c, 'wallMs')) * 1000;
      const br = (n(b, 'alerts') / n(b, 'wallMs')) * 1000;
      rows.push({ path: 'JSON-lines file replay', metric: 'alerts/s', companion: fmt(cr), baseline: `${fmt(br)} (readline + JSON.parse)`, ratio: cr / br, target: '≥ 0.5 × baseline', met: cr / br >= 0.5 && c['complete'] === true, cpuPer1k: n(c, 'cpuMs') / Math.max(1, n(c, 'alerts')), baseCpuPer1k: n(b, 'cpuMs') / Math.max(1, n(b, 'alerts')) });
    }

    if (want('detect')) {
      const count = q ? 21_000 : 42_000;
      const input = join(tmp, 'signals.jsonl');
      writeFileSync(input, `${signalLines(count).join('\n')}\n`);
      o.log(`detect: ${count} signal alerts × 2 rounds through the engine`);
      const r = await once('detect', { input, rounds: 2 }, 180_000);
      const sps = (n(r, 'signals') / n(r, 'engineMs')) * 1000;
      const aps = (n(r, 'alerts') / n(r, 'engineMs')) * 1000;
      const base = (n(r, 'alerts') / Math.max(0.001, n(r, 'baseMs'))) * 1000;
      rows.push({ path: 'Detection stage alone (7 detectors, built-in rules)', metric: 'signals/s (alerts/s)', companion: `${fmt(sps)} (${fmt(aps)})`, baseline: `${fmt(base)} alerts/s iterated`, ratio: null, target: '≥ 500 k signals/s on one core', met: sps >= 500_000, cpuPer1k: n(r, 'engineCpu') / Math.max(1, n(r, 'alerts')), note: `${fmt(n(r, 'detections'))} detections emitted` });
    }

    if (want('enrich')) {
      const count = q ? 10_000 : 50_000;
      const res: Record<string, Msg> = {};
      for (let round = 0; round < rounds; round++)
        for (const on of [false, true]) {
          o.log(`enrich: ${on ? 'on' : 'off'} (${count} alerts, second pass, warm caches), round ${round + 1}/${rounds}`);
          res[String(on)] = best(res[String(on)], await once('enrich', { on, n: count, stateDir: join(tmp, `enrich-${String(on)}-${round}`) }, 180_000));
        }
      const c = res['true'] as Msg;
      const b = res['false'] as Msg;
      const cr = (n(c, 'alerts') / n(c, 'wallMs')) * 1000;
      const br = (n(b, 'alerts') / n(b, 'wallMs')) * 1000;
      rows.push({ path: 'Enrichment, warm caches (egress + container, fake Docker runtime)', metric: 'pipeline alerts/s', companion: fmt(cr), baseline: `${fmt(br)} (enrichment off)`, ratio: cr / br, target: '≥ 0.7 × baseline', met: cr / br >= 0.7, cpuPer1k: n(c, 'cpuMs') / Math.max(1, n(c, 'alerts')), baseCpuPer1k: n(b, 'cpuMs') / Math.max(1, n(b, 'alerts')) });
      notes.push('Enrichment: no dockerd socket on the bench machine, so the container enricher talks to an in-memory fake Docker client (bench/worker.ts FakeDocker); reverse DNS answers from an in-memory resolver. With warm caches neither is asked during the timed pass.');
    }

    if (want('checkpoint')) {
      o.log('checkpoint: every detector and the incidents filled to their bounds, then encoded, written, restored');
      const r = await once('checkpoint', { stateDir: join(tmp, 'checkpoint') }, 600_000, ['--expose-gc']);
      const per = (r['per'] as { id: string; bytes: number; encodeMs: number; longestMs: number; longestCpuMs: number; slices: number; wholeMs: number }[]) ?? [];
      const bytes = per.reduce((s, p) => s + p.bytes, 0);
      const ms = n(r, 'encodeMs') + n(r, 'writeMs');
      const longest = per.reduce((a, p) => (p.longestMs > a.longestMs ? p : a), { id: '-', longestMs: 0 });
      const longestCpu = per.reduce((a, p) => (p.longestCpuMs > a.longestCpuMs ? p : a), { id: '-', longestCpuMs: 0 });
      const whole = per.reduce((a, p) => (p.wholeMs > a.wholeMs ? p : a), { id: '-', wholeMs: 0 });
      rows.push({
        path: 'Detection state checkpoint, full budgets (all detectors + 10 k incidents)',
        metric: 'encode + write (ms) / size',
        companion: `${fmt(ms)} ms / ${mb(bytes)}`,
        baseline: `${fmt(n(r, 'jsonMs'))} ms / ${mb(n(r, 'jsonBytes'))} (JSON.stringify, encode only)`,
        ratio: ms / Math.max(1, n(r, 'jsonMs')),
        target: 'context (every checkpoint_interval while the state changes)',
        met: null,
        cpuPer1k: null,
        note: `encoded in ${fmt(per.reduce((s, p) => s + p.slices, 0))} slices of ${SLICE_MS} ms; encode ${fmt(n(r, 'encodeMs'))} ms, SQLite write ${fmt(n(r, 'writeMs'))} ms, read + decode + restore ${fmt(n(r, 'restoreMs'))} ms; ${fmt(n(r, 'signals'))} signals to fill, heap ${mb(n(r, 'heapUsed'))}`,
      });
      rows.push({
        path: 'Detection state checkpoint, full budgets',
        metric: 'longest event-loop block while encoding (ms): CPU / wall',
        companion: `${fmt(longestCpu.longestCpuMs, 1)} (${longestCpu.id}) / ${fmt(longest.longestMs, 1)} (${longest.id})`,
        baseline: `${fmt(whole.wholeMs, 1)} (${whole.id} in one go, wall)`,
        ratio: longestCpu.longestCpuMs / Math.max(0.001, whole.wholeMs),
        target: `≤ 20 ms CPU (a ${SLICE_MS} ms slice plus the entry in hand)`,
        met: longestCpu.longestCpuMs <= 20,
        cpuPer1k: null,
        note: 'wall above CPU is time the shared machine gave to other processes; the SQLite write of all parts is one more block (see above)',
      });
      notes.push(`Checkpoint sizes per part: ${per.map((p) => `${p.id} ${mb(p.bytes)} (${fmt(p.encodeMs)} ms in ${fmt(p.slices)} slices, longest ${fmt(p.longestCpuMs, 1)} ms CPU / ${fmt(p.longestMs, 1)} ms wall; ${fmt(p.wholeMs)} ms in one go)`).join(', ')}.`);
    }
    if (want('resource')) {
      const count = 100;
      const ticks = q ? 20 : 60;
      const res: Record<string, Msg> = {};
      const lower = (a: Msg | undefined, b: Msg): Msg => (a === undefined || n(b, 'cpuMsPerTick') < n(a, 'cpuMsPerTick') ? b : a);
      for (let round = 0; round < rounds + 1; round++)
        for (const kind of ['baseline', 'companion']) {
          o.log(`resource: ${kind} (${count} containers, cgroup v2 + /proc files, ${ticks} ticks), round ${round + 1}/${rounds + 1}`);
          res[kind] = lower(res[kind], await once('resource', { kind, n: count, ticks, stateDir: join(tmp, `resource-${kind}-${round}`) }, 120_000));
        }
      const c = res['companion'] as Msg;
      const b = res['baseline'] as Msg;
      const per100 = (x: Msg): number => (n(x, 'cpuMsPerTick') * 100) / n(x, 'n');
      rows.push({
        path: 'Resource sampling (metrics source, 100 containers, cgroup v2 + /proc files)',
        metric: 'CPU ms per 100 containers per sample',
        companion: fmt(per100(c), 2),
        baseline: `${fmt(per100(b), 2)} (bare loop reading the same 5 files)`,
        ratio: per100(c) / per100(b),
        target: '≤ 20 ms (0.2 % of a core at 10 s)',
        met: per100(c) <= 20,
        cpuPer1k: null,
        note: `wall ${fmt(n(c, 'wallMsPerTick'), 1)} ms per tick; ratio = cost over the bare reads (reads, parsing, rates, baselines, verdicts)`,
      });
      const k = b['kernelMsPer100'];
      notes.push(
        `Resource sampling: the 100 containers' files are a cgroup v2 + /proc layout in a temp directory (the machine has one cgroup per running container at most); reading the same kinds of files from the kernel itself (this process's own cgroup and /proc/self/net/dev) 100 times costs ${typeof k === 'number' ? `${fmt(k, 2)} ms CPU` : 'n/a (not readable here)'}, to add to both columns for a real node.`,
      );
    }

    if (want('flood')) {
      const count = q ? 100_000 : 1_000_000;
      o.log(`flood: ${fmt(count)} distinct (container, destination, port) flows`);
      // Run as deployed for a 256 MiB memory limit: heap capped with --max-old-space-size (docs/operations.md, sizing).
      const r = await once('flood', { n: count, limitMs: q ? 25_000 : 180_000, stateDir: join(tmp, 'flood') }, 300_000, ['--expose-gc', `--max-old-space-size=${FLOOD_HEAP_MB}`]);
      const ev = r['evictions'] as Record<string, number>;
      const evText = Object.entries(ev).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${fmt(v)}`).join(', ') || 'none';
      rows.push({ path: `Cardinality flood (${fmt(n(r, 'flows'))} flows${r['complete'] === true ? '' : `, time limit hit before ${fmt(count)}`})`, metric: 'peak RSS', companion: mb(n(r, 'peakRss')), baseline: `${mb(n(r, 'idleRss'))} (idle)`, ratio: n(r, 'peakRss') / n(r, 'idleRss'), target: 'peak ≤ 250 MB', met: n(r, 'peakRss') <= 250 * 1048576 && r['complete'] === true, cpuPer1k: n(r, 'cpuMs') / Math.max(1, n(r, 'flows')), note: `evictions: ${evText}; ${fmt((n(r, 'flows') / n(r, 'wallMs')) * 1000)} flows/s; node --max-old-space-size=${FLOOD_HEAP_MB}` });
      notes.push(`Cardinality flood: live heap at the end (after a full GC) ${mb(n(r, 'liveHeap'))}, end RSS ${mb(n(r, 'endRss'))}. Peak RSS above idle + live heap is V8 heap headroom (old-generation growth between major GCs), which --max-old-space-size=${FLOOD_HEAP_MB} bounds.`);
    }
  } finally {
    for (const c of children) c.kill();
    rmSync(tmp, { recursive: true, force: true });
  }
  if (o.profileDir) for (const d of readdirSync(o.profileDir)) o.log(summariseProfiles(join(o.profileDir, d)).join('\n'));
  return { machine: machine(), mode: q ? 'quick' : 'full', rows, notes, seconds: (Date.now() - started) / 1000 };
}

export function renderReport(r: Report, extra: string): string {
  const yes = (m: boolean | null): string => (m === null ? '—' : m ? '**met**' : '**not met**');
  const out: string[] = [];
  out.push('# Benchmarks', '');
  out.push(`Generated by \`npm run bench${r.mode === 'quick' ? ' -- --quick' : ''}\` (bench/run.ts) in ${fmt(r.seconds)} s. Every companion figure sits next to its baseline measured in the same run, each side in a fresh child process, loopback only. These machines are noisy: the ratio is the result, absolute numbers are context.`, '');
  out.push('## Machine', '');
  for (const [k, v] of Object.entries(r.machine)) out.push(`- ${k}: ${v}`);
  out.push('', '## Results', '');
  out.push('| path | metric | companion | baseline (same run) | ratio | target | | CPU-s per 1 k alerts: companion / baseline |');
  out.push('|---|---|---|---|---|---|---|---|');
  for (const x of r.rows) {
    out.push(`| ${x.path} | ${x.metric} | ${x.companion} | ${x.baseline} | ${x.ratio === null ? '—' : fmt(x.ratio, 2)} | ${x.target} | ${yes(x.met)}${x.note ? ` (${x.note})` : ''} | ${x.cpuPer1k === null ? '—' : fmt(x.cpuPer1k, 3)}${x.baseCpuPer1k == null ? '' : ` / ${fmt(x.baseCpuPer1k, 3)}`} |`);
  }
  out.push('', 'CPU-s per 1 k alerts = process CPU time (user + system) / alerts × 1000, on the companion side: the fraction of one core the companion needs per 1 000 alerts/s. Size for the peak rate with headroom.', '');
  if (r.notes.length > 0) {
    out.push('## Notes from this run', '');
    for (const n2 of r.notes) out.push(`- ${n2}`);
    out.push('');
  }
  out.push(extra.trim(), '');
  return out.join('\n');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const val = (flag: string): string | null => {
    const i = args.findIndex((a) => a === flag || a.startsWith(`${flag}=`));
    if (i < 0) return null;
    const a = args[i] as string;
    return a.includes('=') ? a.slice(a.indexOf('=') + 1) : (args[i + 1] ?? null);
  };
  const quick = args.includes('--quick');
  const onlyArg = val('--only');
  const outArg = val('--out');
  const o: Options = {
    quick,
    only: onlyArg ? new Set(onlyArg.split(',')) : null,
    out: outArg ?? (onlyArg ? null : resolve(repoRoot(), 'docs', 'benchmarks.md')),
    profileDir: val('--profile'),
    log: (s) => process.stderr.write(`[bench] ${s}\n`),
  };
  const cleanup = (): void => {
    for (const c of children) c.kill();
    process.exit(130);
  };
  process.on('SIGINT', cleanup);
  process.on('SIGTERM', cleanup);
  const report = await runBench(o);
  const notesPath = resolve(repoRoot(), 'bench', 'NOTES.md');
  const extra = existsSync(notesPath) ? readFileSync(notesPath, 'utf8') : '';
  const md = renderReport(report, extra);
  process.stdout.write(`${md}\n`);
  if (o.out) {
    writeFileSync(o.out, md);
    o.log(`wrote ${o.out}`);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    for (const c of children) c.kill();
    process.exit(1);
  });
}
