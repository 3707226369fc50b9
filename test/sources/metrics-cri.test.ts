/**
 * The CRI side of the metrics source. ListContainers and ListContainerStats against a real
 * containerd with its CRI plugin (temp socket): the requests built from proto/cri/api.proto are
 * accepted and the answers decode. Running a CRI container needs a pod sandbox (pause image, CNI),
 * which this machine cannot provide, so the sampling itself runs against a small CRI server built
 * from the same proto that answers like containerd does for two pods of one Deployment (stated
 * here because it stands in for the real runtime), including going away and coming back.
 */
import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Alert } from '../../src/alert.js';
import { ManualClock } from '../../src/clock.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/validate.js';
import { CriClient, loadCriMethods } from '../../src/enrich/cri-client.js';
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { MemoryIntake } from '../../src/pipeline/intake.js';
import { MetricsSource } from '../../src/sources/metrics.js';
import { containerdSkipReason, startContainerd, type Containerd } from '../support/containerd.js';
import { until } from '../support/wait.js';

const skip = containerdSkipReason();
if (skip) console.warn(`skipping real containerd CRI stats test: ${skip}`);

describe.skipIf(skip !== null)('CRI ListContainers / ListContainerStats with a real containerd', () => {
  let ctd: Containerd;
  let cri: CriClient;
  beforeAll(async () => {
    ctd = await startContainerd();
    cri = new CriClient({ socketPath: ctd.socket, timeoutMs: 5000 });
  });
  afterAll(async () => {
    cri?.close();
    await ctd?.close();
  });

  it('answers both calls (no pods on this node: empty lists)', async () => {
    await expect(cri.listContainers()).resolves.toEqual([]);
    await expect(cri.listContainerStats()).resolves.toEqual([]);
  });
});

const POD = (n: string, pod: string) => ({ 'io.kubernetes.pod.namespace': 'shop', 'io.kubernetes.pod.name': pod, 'io.kubernetes.container.name': n });
const IDS = ['c1'.repeat(32), 'c2'.repeat(32)];
const T0_MS = Date.UTC(2026, 2, 2, 10, 0, 0);

describe('metrics source over CRI (ListContainers, ListContainerStats)', () => {
  let tmp: string;
  let sock: string;
  let server: grpc.Server | null = null;
  const clock = new ManualClock(T0_MS);
  const cpuNs = [0, 0];
  let burn = false;

  async function serve(): Promise<void> {
    const m = loadCriMethods();
    const s = new grpc.Server();
    s.addService(m.runtimeService as unknown as grpc.ServiceDefinition, {
      ListContainers: (call: grpc.ServerUnaryCall<{ filter?: { state?: { state?: number } } }, object>, cb: grpc.sendUnaryData<object>) => {
        // The source asks for running containers only.
        expect(call.request.filter?.state?.state).toBe(1);
        cb(null, {
          containers: IDS.map((id, i) => ({
            id,
            pod_sandbox_id: `sb${i}`,
            metadata: { name: 'api', attempt: 0 },
            image: { image: 'registry.example.com/shop/api:3.1' },
            image_ref: `sha256:${'ab'.repeat(32)}`,
            state: 1,
            created_at: String(BigInt(T0_MS - 3_600_000) * 1_000_000n),
            labels: POD('api', i === 0 ? 'api-6b8f9d7c5-x7k2p' : 'api-6b8f9d7c5-q9zt2'),
          })),
        });
      },
      ListContainerStats: (_call: grpc.ServerUnaryCall<object, object>, cb: grpc.sendUnaryData<object>) => {
        const ts = String(BigInt(clock.now()) * 1_000_000n);
        cb(null, {
          stats: IDS.map((id, i) => ({
            attributes: { id, metadata: { name: 'api', attempt: 0 }, labels: POD('api', 'x') },
            cpu: { timestamp: ts, usage_core_nano_seconds: { value: String(cpuNs[i]) } },
            memory: { timestamp: ts, working_set_bytes: { value: String(80_000_000 + i) } },
          })),
        });
      },
    });
    await new Promise<void>((resolve, reject) => s.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
    server = s;
  }

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'fc-metrics-cri-'));
    sock = join(tmp, 'cri.sock');
    await serve();
  });
  afterAll(async () => {
    await new Promise<void>((r) => (server ? server.tryShutdown(() => r()) : r()));
    rmSync(tmp, { recursive: true, force: true });
  });

  it('samples CPU and working set per container, judges them per workload, survives the runtime going away', async () => {
    const cfg = loadConfig<Config>(configSchema, {
      file: null,
      env: {},
      overrides: {
        'enrich.container.runtime': 'cri',
        'enrich.container.cri_socket': sock,
        'enrich.container.request_timeout': 1000,
        'metrics.source': 'cri',
        'metrics.interval': 10_000,
        'metrics.warmup': 0,
        'metrics.baseline.learning_period': 60_000,
        'metrics.baseline.min_samples': 6,
        'metrics.deviation.hold': 20_000,
      },
    });
    const metrics = new Metrics({ collectDefault: false });
    const intake = new MemoryIntake(10, metrics);
    const src = new MetricsSource({ config: cfg.metrics, runtime: cfg.enrich.container, intake, db: null, logger: silentLogger(), metrics, clock, hostname: 'node-1' });
    const tick = async (): Promise<void> => {
      cpuNs[0] = (cpuNs[0] ?? 0) + (burn ? 1.5 : 0.05) * 10e9;
      cpuNs[1] = (cpuNs[1] ?? 0) + 0.05 * 10e9;
      await src.tick();
      clock.advance(10_000);
    };
    for (let i = 0; i < 10; i++) await tick();
    expect(intake.depth).toBe(0);
    burn = true;
    for (let i = 0; i < 4; i++) await tick();
    expect(intake.depth).toBe(1);
    const sig = (await intake.take()) as Alert;
    expect(sig.outputFields).toMatchObject({
      'container.id': IDS[0]?.slice(0, 12),
      'container.image.repository': 'registry.example.com/shop/api',
      'container.image.tag': '3.1',
      'k8s.ns.name': 'shop',
      'k8s.pod.name': 'api-6b8f9d7c5-x7k2p',
      'resource.metric': 'cpu',
      'resource.verdict': 'lone',
      'resource.group': 'workload:shop/api/api',
      'resource.source': 'cri',
    });
    const text = await metrics.text();
    expect(text).toContain('falco_companion_resource_samples_total{source="cri"} 28');

    // The runtime goes away: counted, health says so; it comes back: sampling resumes.
    await new Promise<void>((r) => (server as grpc.Server).tryShutdown(() => r()));
    server = null;
    await src.tick();
    expect(await metrics.text()).toMatch(/falco_companion_resource_sampling_errors_total\{source="cri",code="E_CRI_UNAVAILABLE"\} [1-9]/);
    expect(src.health().detail).toMatch(/runtime failing: E_CRI_UNAVAILABLE/);
    await serve();
    // grpc-js reconnects with backoff (200 ms, growing): a few ticks, with real time between them.
    await until(
      async () => {
        clock.advance(10_000);
        await src.tick();
        return /^cri, no cgroup files, 2 containers/.test(src.health().detail ?? '');
      },
      10_000,
      'sampling over the CRI socket again',
      200,
    );
    expect(src.health().detail).not.toMatch(/failing/);
    await src.stop(Date.now() + 2000);
  });
});
