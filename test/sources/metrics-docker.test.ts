/**
 * The metrics source against a real Docker engine (dockerd on a temp socket, busybox image,
 * `--network none`, `--cpus 0.25`), reading the kernel's own cgroup and /proc files of this host,
 * or Docker's stats API:
 *
 * - two containers of one image; one burns CPU and streams bytes over its loopback while the
 *   other idles: flagged once (through the whole app: intake, engine, detector); then both burn:
 *   load, counted, no detection;
 * - a container killed between the runtime's list and the read of its files: counted, no crash;
 * - the runtime stops and another one comes back on the same socket path: counted, sampling goes on.
 *
 * Small intervals (500 ms) and short learning keep it to seconds; every wait is bounded.
 */
import { mkdtempSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Alert } from '../../src/alert.js';
import { systemClock } from '../../src/clock.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/validate.js';
import { RESOURCE_RULES } from '../../src/detect/detectors/resource.js';
import { DockerClient } from '../../src/enrich/docker-client.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { MemoryIntake } from '../../src/pipeline/intake.js';
import { DockerRuntime } from '../../src/resource/runtime.js';
import { MetricsSource } from '../../src/sources/metrics.js';
import { buildApp, type App } from '../../src/wiring.js';
import { dockerSkipReason, startDockerd, type Dockerd } from '../support/dockerd.js';
import { until, wait } from '../support/wait.js';

const skip = dockerSkipReason();
if (skip) console.warn(`skipping real Docker metrics tests: ${skip}`);

/** Idles until /burn exists, then busy-loops and streams `yes` through nc over lo until it is gone. */
const SCRIPT = [
  'while :; do',
  '  if [ -f /burn ]; then',
  '    busybox nc -ll -p 9000 -e /bin/busybox md5sum &',
  '    sleep 0.2',
  '    busybox yes AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA | busybox nc 127.0.0.1 9000 &',
  '    while [ -f /burn ]; do :; done',
  '    busybox killall yes nc md5sum 2>/dev/null',
  '  fi',
  '  sleep 0.2',
  'done',
].join('\n');

const IMAGE = 'fc/burn:1';

async function runBurner(d: Dockerd, name: string): Promise<string> {
  return d.docker('run', '-d', '--name', name, '--network', 'none', '--cpus', '0.25', IMAGE, '/bin/sh', '-c', SCRIPT);
}

const burn = (d: Dockerd, id: string, on: boolean): Promise<string> => d.docker('exec', id, '/bin/busybox', on ? 'touch' : 'rm', ...(on ? [] : ['-f']), '/burn');

function config(stateDir: string, socket: string, over: Record<string, unknown> = {}): Config {
  return loadConfig<Config>(configSchema, {
    file: null,
    env: {},
    overrides: {
      state_dir: stateDir,
      'http.enabled': false,
      'ops.enabled': false,
      'enrich.container.runtime': 'docker',
      'enrich.container.docker_socket': socket,
      'enrich.container.request_timeout': 1500,
      'enrich.container.events': false,
      'enrich.egress.enabled': false,
      'metrics.interval': 500,
      'metrics.warmup': 0,
      'metrics.include_loopback': true,
      'metrics.baseline.window': 600_000,
      'metrics.baseline.slots': 10,
      'metrics.baseline.learning_period': 3000,
      'metrics.baseline.min_samples': 6,
      // Long enough for both burners of the load phase to start (two docker exec) within it.
      'metrics.deviation.hold': 2500,
      'metrics.deviation.end_after': 1000,
      // The burner is capped at 0.25 core; on a busy shared machine it may get less.
      'metrics.deviation.min_delta.cpu': 0.04,
      ...over,
    },
  });
}

async function counter(m: Metrics, name: string, labels: string): Promise<number> {
  let total = 0;
  for (const l of (await m.text()).split('\n')) if (l.startsWith(`falco_companion_${name}{`) && l.includes(labels)) total += Number(l.split(' ').pop());
  return total;
}

describe.skipIf(skip !== null)('metrics source with a real dockerd', () => {
  let d: Dockerd;
  let tmp: string;
  /** The socket path the companion is configured with: a symlink to the running daemon's socket. */
  let socket: string;
  let a: string;
  let b: string;

  beforeAll(async () => {
    d = await startDockerd();
    tmp = mkdtempSync(join(tmpdir(), 'fc-metrics-docker-'));
    socket = join(tmp, 'docker.sock');
    symlinkSync(d.socket, socket);
    await d.importImage(IMAGE, 'burn');
    a = await runBurner(d, 'burn-a');
    b = await runBurner(d, 'burn-b');
  });

  afterAll(async () => {
    await d?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('reads Docker stats (source: docker) and the cgroup files of this host for the same containers', async () => {
    for (const source of ['docker', 'auto'] as const) {
      const cfg = config(join(tmp, `state-${source}`), socket, { 'metrics.source': source });
      const metrics = new Metrics({ collectDefault: false });
      const seen: { id: string; source: string; cpu: number | null; mem: number | null; pids: number | null }[] = [];
      const src = new MetricsSource({ config: cfg.metrics, runtime: cfg.enrich.container, intake: new MemoryIntake(10, metrics), db: null, logger: silentLogger(), metrics, clock: systemClock, hostname: null, onTick: (_t, rs) => seen.push(...rs.map((r) => ({ id: r.meta.id, source: r.sample.source, cpu: r.sample.cpuNs, mem: r.sample.memoryBytes, pids: r.sample.pids }))) });
      await src.tick();
      await src.stop(Date.now() + 2000);
      expect(seen.map((s) => s.id).sort()).toEqual([a, b].sort());
      for (const s of seen) {
        expect(s.source).toBe(source === 'docker' ? 'docker' : 'cgroup_v1');
        expect(s.cpu).toBeGreaterThan(0);
        expect(s.mem).toBeGreaterThan(0);
        expect(s.pids).toBeGreaterThanOrEqual(1);
      }
    }
  });

  it('a container killed between the runtime list and the read of its files: counted, the others sampled, no crash', async () => {
    const victim = await runBurner(d, 'victim');
    const cfg = config(join(tmp, 'state-kill'), socket);
    const metrics = new Metrics({ collectDefault: false });
    const docker = new DockerRuntime(new DockerClient({ socketPath: socket, timeoutMs: 2000 }));
    let killNow = false;
    // The real runtime, with the kill landing right after it listed the victim as running.
    const runtime = {
      kind: docker.kind,
      list: async (s: AbortSignal) => {
        const l = await docker.list(s);
        if (killNow) await d.docker('rm', '-f', victim);
        return l;
      },
      details: (id: string, s: AbortSignal) => docker.details(id, s),
      stats: docker.stats.bind(docker),
      close: () => docker.close(),
    };
    let sampled = 0;
    const src = new MetricsSource({ config: cfg.metrics, runtime: cfg.enrich.container, runtimeAdapter: runtime, intake: new MemoryIntake(10, metrics), db: null, logger: silentLogger(), metrics, clock: systemClock, hostname: null, onTick: (_t, rs) => (sampled = rs.length) });
    await src.tick();
    expect(sampled).toBe(3);
    killNow = true;
    await expect(src.tick()).resolves.toBe(0);
    expect(sampled).toBe(2);
    expect((await counter(metrics, 'resource_sampling_errors_total', 'code="E_CGROUP_')) + (await counter(metrics, 'resource_sampling_errors_total', 'code="E_DOCKER_NOT_FOUND"'))).toBeGreaterThanOrEqual(1);
    await src.stop(Date.now() + 2000);
    docker.close();
  });

  describe('through the whole app', () => {
    let app: App;
    let metrics: Metrics;
    const forwarded: Alert[] = [];
    const detections = (): Alert[] => forwarded.filter((x) => x.origin.kind === 'detector' && x.companion['repeated'] === undefined);

    beforeAll(async () => {
      metrics = new Metrics({ collectDefault: false });
      app = buildApp(config(join(tmp, 'state-app'), socket), { logger: silentLogger(), metrics, clock: systemClock, onForwarded: (x) => forwarded.push(x) });
      await app.start();
      // Both idle while the baselines learn (3 s, 6 samples).
      await until(async () => (await counter(metrics, 'resource_samples_total', 'source="cgroup_v1"')) >= 20, 20_000, 'baselines learnt', 100);
      expect(forwarded.filter((x) => x.rule.startsWith('Companion signal: resource'))).toEqual([]);
    });

    afterAll(async () => {
      await app?.stop(Date.now() + 5000);
    });

    it('the lone burner is flagged once; then both burn: load, counted, no detection', async () => {
      await burn(d, a, true);
      await until(() => detections().length > 0, 20_000, 'a resource detection', 50);
      const det = detections()[0] as Alert;
      expect(det.rule).toBe(RESOURCE_RULES.lone);
      expect(det.priority).toBe('Warning');
      expect(det.outputFields?.['container.id']).toBe(a.slice(0, 12));
      expect(det.outputFields?.['container.image.repository']).toBe('fc/burn');
      expect(det.companion['resource.verdict']).toBe('lone');
      expect(det.companion['resource.siblings']).toBe(1);
      expect(det.companion['resource.siblings_showing']).toBe(0);
      expect(String(det.companion['resource.metrics'])).toMatch(/cpu ×/);
      expect(String(det.companion['resource.metrics'])).toMatch(/net_tx_bytes ×/);
      expect(det.tags).toEqual(expect.arrayContaining(['T1496']));
      await burn(d, a, false);
      await wait(3000); // back to its baseline: the episode ends (end_after 1 s)
      expect(detections()).toHaveLength(1);

      // Counted per metric: CPU, and bytes and packets in and out of its loopback.
      const lone = await counter(metrics, 'resource_deviations_total', 'verdict="lone"');
      expect(lone).toBeGreaterThanOrEqual(2);
      const loadBefore = await counter(metrics, 'resource_deviations_total', 'verdict="load"');
      await Promise.all([burn(d, a, true), burn(d, b, true)]);
      await until(async () => (await counter(metrics, 'resource_deviations_total', 'verdict="load"')) > loadBefore, 20_000, 'load deviations', 50);
      await wait(2000);
      await Promise.all([burn(d, a, false), burn(d, b, false)]);
      expect(detections()).toHaveLength(1);
      expect(await counter(metrics, 'resource_deviations_total', 'verdict="lone"')).toBe(lone);
      // Not even a folded repeat: no second finding was made.
      expect(await counter(metrics, 'detections_deduplicated_total', 'detector="resource_deviation"')).toBe(0);
      // The load signals reached the engine (and are forwarded as Debug signal alerts).
      expect(forwarded.some((x) => x.rule === 'Companion signal: resource usage deviation' && x.priority === 'Debug' && x.outputFields?.['resource.verdict'] === 'load')).toBe(true);
    });

    it('the runtime disappears and another comes back on the same socket: counted, no crash, sampling goes on', async () => {
      await d.stopDaemon();
      await until(async () => (await counter(metrics, 'resource_sampling_errors_total', 'source="docker",code="E_DOCKER_UNAVAILABLE"')) >= 1, 10_000, 'runtime error counted', 50);
      const comp = app.health().components['source/metrics'];
      expect(comp?.detail).toMatch(/runtime failing: E_DOCKER_UNAVAILABLE/);
      const d2 = await startDockerd();
      try {
        await d2.importImage(IMAGE, 'burn');
        const c = await runBurner(d2, 'burn-c');
        unlinkSync(socket);
        symlinkSync(d2.socket, socket);
        await until(() => /^docker, cgroup_v1, 1 containers/.test(app.health().components['source/metrics']?.detail ?? ''), 15_000, 'sampling the new daemon\'s container', 100);
        expect(app.health().components['source/metrics']?.detail).not.toMatch(/failing/);
        expect(c).toMatch(/^[0-9a-f]{64}$/);
      } finally {
        await d2.close();
      }
    });
  });
});
