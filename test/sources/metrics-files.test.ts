/**
 * The metrics source on cgroup and /proc files laid out as the kernel shows them (cgroup v2 and
 * v1 trees and /proc/<pid>/net/dev under a temp dir: what a DaemonSet sees with the host's
 * /sys/fs/cgroup and /proc mounted), containers named by alerts (no runtime). Ticks are driven by
 * hand with a manual clock; the real kernel files are read by test/sources/metrics-docker.test.ts.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Alert } from '../../src/alert.js';
import { ManualClock } from '../../src/clock.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/validate.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { MemoryIntake } from '../../src/pipeline/intake.js';
import { parseNetDev } from '../../src/resource/files.js';
import { RESOURCE_SIGNAL_RULE } from '../../src/resource/signal.js';
import { MetricsSource } from '../../src/sources/metrics.js';
import { openStateDb } from '../../src/store/db.js';
import { falcoAlert } from '../support/falco-alerts.js';

const A = 'a1'.repeat(32);
const B = 'b2'.repeat(32);
const T0_MS = Date.UTC(2026, 2, 2, 10, 0, 0);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fc-metrics-files-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

interface Box {
  cpuUsec: number;
  mem: number;
  pids: number;
  tx: number;
  rx: number;
  pid: number;
}

const NET_HEAD = 'Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n';
const netLine = (name: string, rx: number, tx: number): string => `  ${name}: ${rx} ${Math.floor(rx / 1000)} 0 0 0 0 0 0 ${tx} ${Math.floor(tx / 1000)} 0 0 0 0 0 0\n`;

function writeProc(proc: string, b: Box): void {
  mkdirSync(join(proc, String(b.pid), 'net'), { recursive: true });
  writeFileSync(join(proc, String(b.pid), 'net', 'dev'), NET_HEAD + netLine('lo', 999_999, 999_999) + netLine('eth0', b.rx, b.tx));
}

function writeV2(root: string, proc: string, id: string, b: Box): string {
  const d = join(root, 'kubepods.slice', 'kubepods-burstable.slice', `cri-containerd-${id}.scope`);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'cpu.stat'), `usage_usec ${b.cpuUsec}\nuser_usec ${Math.floor(b.cpuUsec / 2)}\nsystem_usec ${Math.floor(b.cpuUsec / 2)}\n`);
  writeFileSync(join(d, 'memory.current'), `${b.mem + 10_000_000}\n`);
  writeFileSync(join(d, 'memory.stat'), `anon ${b.mem}\nfile 10000000\ninactive_file 10000000\nactive_file 0\n`);
  writeFileSync(join(d, 'pids.current'), `${b.pids}\n`);
  writeFileSync(join(d, 'cgroup.procs'), `${b.pid}\n${b.pid + 1}\n`);
  writeProc(proc, b);
  return d;
}

function writeV1(root: string, proc: string, id: string, b: Box): void {
  for (const h of ['cpu,cpuacct', 'memory', 'pids']) mkdirSync(join(root, h, 'docker', id), { recursive: true });
  writeFileSync(join(root, 'cpu,cpuacct', 'docker', id, 'cpuacct.usage'), `${b.cpuUsec * 1000}\n`);
  writeFileSync(join(root, 'memory', 'docker', id, 'memory.usage_in_bytes'), `${b.mem + 5_000_000}\n`);
  writeFileSync(join(root, 'memory', 'docker', id, 'memory.stat'), `cache 5000000\ntotal_inactive_file 5000000\n`);
  writeFileSync(join(root, 'memory', 'docker', id, 'cgroup.procs'), `${b.pid}\n`);
  writeFileSync(join(root, 'pids', 'docker', id, 'pids.current'), `${b.pids}\n`);
  writeProc(proc, b);
}

function config(root: string, proc: string, over: Record<string, unknown> = {}): Config {
  return loadConfig<Config>(configSchema, {
    file: null,
    env: {},
    overrides: {
      'enrich.container.runtime': 'none',
      'metrics.cgroup_root': root,
      'metrics.proc_root': proc,
      'metrics.interval': 10_000,
      'metrics.warmup': 0,
      'metrics.baseline.learning_period': 60_000,
      'metrics.baseline.min_samples': 6,
      'metrics.deviation.hold': 20_000,
      ...over,
    },
  });
}

function make(cfg: Config): { src: MetricsSource; clock: ManualClock; intake: MemoryIntake; metrics: Metrics } {
  const clock = new ManualClock(T0_MS);
  const metrics = new Metrics({ collectDefault: false });
  const intake = new MemoryIntake(100, metrics);
  const src = new MetricsSource({ config: cfg.metrics, runtime: cfg.enrich.container, intake, db: null, logger: silentLogger(), metrics, clock, hostname: 'node-1' });
  return { src, clock, intake, metrics };
}

/** An alert from the container, as Falco would send it (the source learns id and image from it). */
function seenAlert(id: string, pod: string): Alert {
  return falcoAlert({ fields: { 'container.id': id.slice(0, 12), 'container.image.repository': 'registry.example.com/shop/api', 'container.image.tag': '3.1', 'k8s.ns.name': 'shop', 'k8s.pod.name': pod, 'k8s.pod.labels': '[app:api, tier:web]' } });
}

async function drain(intake: MemoryIntake): Promise<Alert[]> {
  const out: Alert[] = [];
  for (let n = intake.depth; n > 0; n--) {
    const a = await intake.take();
    if (a) out.push(a);
  }
  return out;
}

async function value(m: Metrics, name: string, labels: string): Promise<number> {
  const line = (await m.text()).split('\n').find((l) => l.startsWith(`falco_companion_${name}{${labels}}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('metrics source on cgroup v2 and /proc files', () => {
  it('a lone replica burning CPU and sending bytes becomes one resource deviation signal alert; its idle sibling none', async () => {
    const root = join(dir, 'cgroup');
    const proc = join(dir, 'proc');
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, 'cgroup.controllers'), 'cpu io memory pids\n');
    const a: Box = { cpuUsec: 0, mem: 60e6, pids: 6, tx: 0, rx: 0, pid: 4100 };
    const b: Box = { cpuUsec: 0, mem: 61e6, pids: 6, tx: 0, rx: 0, pid: 4200 };
    const { src, clock, intake, metrics } = make(config(root, proc));
    src.seen.enrichSync(seenAlert(A, 'api-6b8f9d7c5-x7k2p'));
    src.seen.enrichSync(seenAlert(B, 'api-6b8f9d7c5-q9zt2'));
    const step = async (burnA: boolean): Promise<Alert[]> => {
      for (const [box, burn] of [[a, burnA], [b, false]] as const) {
        box.cpuUsec += (burn ? 1.5 : 0.04) * 10e6;
        box.tx += (burn ? 8e6 : 2e4) * 10;
        box.rx += 3e4 * 10;
        writeV2(root, proc, box === a ? A : B, box);
      }
      await src.tick();
      clock.advance(10_000);
      return drain(intake);
    };
    for (let i = 0; i < 10; i++) expect(await step(false)).toEqual([]);
    const out: Alert[] = [];
    for (let i = 0; i < 6; i++) out.push(...(await step(true)));
    expect(out).toHaveLength(1);
    const sig = out[0] as Alert;
    expect(sig.rule).toBe(RESOURCE_SIGNAL_RULE);
    expect(sig.origin).toEqual({ kind: 'metrics', component: 'source/metrics' });
    expect(sig.outputFields).toMatchObject({
      'container.id': A.slice(0, 12),
      'container.image.repository': 'registry.example.com/shop/api',
      'k8s.pod.name': 'api-6b8f9d7c5-x7k2p',
      'resource.verdict': 'lone',
      'resource.siblings': 1,
      'resource.siblings_showing': 0,
      'resource.source': 'cgroup_v2',
      // Pod labels from the alerts, for the CI workload selectors of the rules file.
      'k8s.pod.labels': 'app:api,tier:web',
    });
    // CPU, bytes and packets out deviate together: one signal, the strongest first. lo is left
    // out by default: 8 MB/s on eth0 only.
    const all = String(sig.outputFields?.['resource.metrics']);
    expect(all).toMatch(/cpu ×\d+/);
    expect(all).toMatch(/net_tx_bytes ×6\d \(7\.6MiB\/s vs (19|20)\.\dKiB\/s, lone 0\/1\)/);
    expect(all).not.toContain('net_rx');
    expect(await value(metrics, 'resource_samples_total', 'source="cgroup_v2"')).toBe(32);
    expect(await value(metrics, 'resource_deviations_total', 'metric="cpu",verdict="lone"')).toBe(1);
    expect(await value(metrics, 'resource_exemptions_total', 'reason="learning"')).toBeGreaterThan(0);
    expect(src.health().detail).toMatch(/no runtime, cgroup_v2, 2 containers/);
  });

  it('a container whose cgroup disappears mid-run, a missing file and a malformed one: clear codes, counted, sampling goes on', async () => {
    const root = join(dir, 'cgroup');
    const proc = join(dir, 'proc');
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, 'cgroup.controllers'), 'cpu memory pids\n');
    const boxes = [A, B, 'c3'.repeat(32)].map((id, i) => ({ id, b: { cpuUsec: 1000, mem: 5e7, pids: 3, tx: 0, rx: 0, pid: 5000 + i * 10 } }));
    const dirs = boxes.map(({ id, b }) => writeV2(root, proc, id, b));
    const { src, clock, metrics } = make(config(root, proc));
    for (const { id } of boxes) src.seen.enrichSync(seenAlert(id, `api-${id.slice(0, 5)}`));
    await src.tick();
    clock.advance(10_000);
    rmSync(dirs[0] as string, { recursive: true }); // killed: the runtime removed its cgroup
    writeFileSync(join(dirs[1] as string, 'memory.current'), 'garbage\n');
    rmSync(join(dirs[2] as string, 'memory.stat'));
    await expect(src.tick()).resolves.toBe(0);
    expect(await value(metrics, 'resource_sampling_errors_total', 'source="cgroup_v2",code="E_CGROUP_GONE"')).toBe(1);
    expect(await value(metrics, 'resource_sampling_errors_total', 'source="cgroup_v2",code="E_CGROUP_MALFORMED"')).toBe(1);
    expect(await value(metrics, 'resource_sampling_errors_total', 'source="cgroup_v2",code="E_CGROUP_FILE_MISSING"')).toBe(1);
    expect(await value(metrics, 'errors_total', 'component="source/metrics",code="E_CGROUP_MALFORMED"')).toBe(1);
    // Fixed: sampled again.
    writeV2(root, proc, B, { cpuUsec: 2000, mem: 5e7, pids: 3, tx: 0, rx: 0, pid: 5010 });
    clock.advance(10_000);
    await src.tick();
    expect(src.health().detail).toMatch(/ 1 containers/);
  });

  it('reads a cgroup v1 layout (cpu,cpuacct, memory, pids hierarchies) with loopback counted when asked', async () => {
    const root = join(dir, 'cgroup');
    const proc = join(dir, 'proc');
    const b: Box = { cpuUsec: 1_000_000, mem: 40e6, pids: 4, tx: 1000, rx: 2000, pid: 6000 };
    writeV1(root, proc, A, b);
    const readings: { cpu: number | null; mem: number | null; pids: number | null; tx: number | null; source: string }[] = [];
    const cfg = config(root, proc, { 'metrics.include_loopback': true });
    const metrics = new Metrics({ collectDefault: false });
    const src = new MetricsSource({
      config: cfg.metrics,
      runtime: cfg.enrich.container,
      intake: new MemoryIntake(10, metrics),
      db: null,
      logger: silentLogger(),
      metrics,
      clock: new ManualClock(T0_MS),
      hostname: null,
      onTick: (_t, rs) => readings.push(...rs.map((r) => ({ cpu: r.sample.cpuNs, mem: r.sample.memoryBytes, pids: r.sample.pids, tx: r.sample.txBytes, source: r.sample.source }))),
    });
    src.seen.enrichSync(seenAlert(A, 'x'));
    await src.tick();
    expect(readings).toEqual([{ cpu: 1_000_000_000, mem: 40e6, pids: 4, tx: 1000 + 999_999, source: 'cgroup_v1' }]);
  });

  it('at most max_containers per tick, counted, the others first in the next tick (round robin)', async () => {
    const root = join(dir, 'cgroup');
    const proc = join(dir, 'proc');
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, 'cgroup.controllers'), 'cpu memory pids\n');
    const ids = [A, B, 'c3'.repeat(32)];
    ids.forEach((id, i) => writeV2(root, proc, id, { cpuUsec: 1000, mem: 5e7, pids: 3, tx: 0, rx: 0, pid: 7000 + i * 10 }));
    const seen: string[][] = [];
    const cfg = config(root, proc, { 'metrics.max_containers': 2 });
    const metrics = new Metrics({ collectDefault: false });
    const clock = new ManualClock(T0_MS);
    const src = new MetricsSource({ config: cfg.metrics, runtime: cfg.enrich.container, intake: new MemoryIntake(10, metrics), db: null, logger: silentLogger(), metrics, clock, hostname: null, onTick: (_t, rs) => seen.push(rs.map((r) => r.meta.id.slice(0, 2))) });
    for (const id of ids) src.seen.enrichSync(seenAlert(id, `p-${id.slice(0, 4)}`));
    for (let i = 0; i < 3; i++) {
      await src.tick();
      clock.advance(10_000);
    }
    expect(seen.map((t) => t.length)).toEqual([2, 2, 2]);
    expect(new Set(seen.flat())).toEqual(new Set(['a1', 'b2', 'c3']));
    expect((await metrics.text()).split('\n').find((l) => l.startsWith('falco_companion_resource_capped_total '))).toBe('falco_companion_resource_capped_total 3');
  });

  it('baselines are written to the state database at stop and restored by the next start: it judges at once', async () => {
    const root = join(dir, 'cgroup');
    const proc = join(dir, 'proc');
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, 'cgroup.controllers'), 'cpu memory pids\n');
    const box: Box = { cpuUsec: 0, mem: 6e7, pids: 5, tx: 0, rx: 0, pid: 8000 };
    const db = openStateDb(join(dir, 'state'));
    const cfg = config(root, proc);
    const clock = new ManualClock(T0_MS);
    const run = async (ticks: number): Promise<Metrics> => {
      const metrics = new Metrics({ collectDefault: false });
      const src = new MetricsSource({ config: cfg.metrics, runtime: cfg.enrich.container, intake: new MemoryIntake(10, metrics), db, logger: silentLogger(), metrics, clock, hostname: null });
      src.seen.enrichSync(seenAlert(A, 'api-6b8f9d7c5-x7k2p'));
      for (let i = 0; i < ticks; i++) {
        box.cpuUsec += 0.05 * 10e6;
        writeV2(root, proc, A, box);
        await src.tick();
        clock.advance(10_000);
      }
      await src.stop(Date.now() + 1000);
      return metrics;
    };
    const first = await run(10);
    expect(await value(first, 'resource_exemptions_total', 'reason="learning"')).toBeGreaterThan(0);
    const second = await run(3);
    expect(await value(second, 'resource_exemptions_total', 'reason="learning"')).toBe(0);
    expect(await value(second, 'resource_baseline_flushes_total', 'result="ok"')).toBe(1);
    db.close();
  });

  it('no cgroup files and no runtime: idle, and says why', async () => {
    const { src } = make(config(join(dir, 'nothing'), join(dir, 'proc')));
    await src.start();
    src.seen.enrichSync(seenAlert(A, 'x'));
    await expect(src.tick()).resolves.toBe(0);
    expect(src.health()).toEqual({ ready: true, detail: expect.stringMatching(/^no runtime, no cgroup files, 0 containers/) });
    await src.stop(Date.now() + 1000);
  });
});

describe('parseNetDev', () => {
  it('sums interfaces, leaves lo out unless asked, rejects what is not a net/dev table', () => {
    const text = NET_HEAD + netLine('lo', 500, 500) + netLine('eth0', 1000, 2000) + netLine('eth1', 10, 20);
    expect(parseNetDev('/p', text, false)).toMatchObject({ rxBytes: 1010, txBytes: 2020, rxPackets: 1, txPackets: 2, interfaces: ['lo', 'eth0', 'eth1'] });
    expect(parseNetDev('/p', text, true).rxBytes).toBe(1510);
    expect(() => parseNetDev('/p', 'hello\n', false)).toThrow(/E?not a net\/dev table/);
    expect(() => parseNetDev('/p', NET_HEAD + '  eth0: 1 2 3\n', false)).toThrow(/malformed counters for eth0/);
  });
});
