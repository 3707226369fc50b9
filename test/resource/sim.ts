/**
 * A deterministic fleet of simulated containers for the analyser tests: each container has a
 * usage function of the tick (cores, bytes, bytes/s) turned into the cumulative counters a cgroup
 * would show; restarts reset them. No wall clock, no randomness beyond the seeded jitter.
 */
import { silentLogger } from '../../src/logger.js';
import { Metrics } from '../../src/metrics.js';
import { ResourceAnalyser, type AnalyserSettings, type ExemptReason } from '../../src/resource/analyser.js';
import { ResourceBaselines, type BaselineSettings } from '../../src/resource/baseline.js';
import { emptyMeta, RESOURCE_METRICS, type ContainerMeta, type DeviationEvent, type RawSample, type ResourceMetric, type Verdict } from '../../src/resource/types.js';

export const T0 = BigInt(Date.UTC(2026, 2, 2, 0, 0, 0)) * 1_000_000n;

export interface Usage {
  cpu?: number;
  memory?: number;
  pids?: number;
  rx?: number;
  tx?: number;
  rxp?: number;
  txp?: number;
}

export interface SimContainer {
  readonly meta: ContainerMeta;
  /** Usage during tick `i` (seconds since T0: `t`). */
  usage: (i: number, t: number) => Usage;
  cpuNs: number;
  rx: number;
  tx: number;
  rxp: number;
  txp: number;
  /** Ticks at which it restarts (counters back to zero). */
  restarts: Set<number>;
}

/** Small deterministic jitter in [-1, 1]. */
export function jitter(i: number, seed = 1): number {
  const x = Math.sin(i * 12.9898 + seed * 78.233) * 43758.5453;
  return (x - Math.floor(x)) * 2 - 1;
}

export const TEST_BASELINE: BaselineSettings = { windowMs: 3_600_000, slots: 6, learningPeriodMs: 600_000, minSamples: 20, maxKeys: 1000 };

export function testSettings(over: Partial<AnalyserSettings> = {}): AnalyserSettings {
  return {
    warmupMs: 0,
    timeOfDayBuckets: 0,
    adaptAfterMs: 3_600_000,
    maxContainers: 1000,
    deviation: {
      minRatio: 3,
      minZ: 5,
      abovePeak: 1.25,
      holdMs: 30_000,
      endAfterMs: 60_000,
      loadFraction: 0.5,
      siblingShare: 0.5,
      minDelta: { cpu: 0.2, memory: 128 * 1024 * 1024, pids: 20, net_rx_bytes: 512 * 1024, net_tx_bytes: 512 * 1024, net_rx_packets: 500, net_tx_packets: 500 },
    },
    ...over,
  };
}

export class Sim {
  readonly containers: SimContainer[] = [];
  readonly events: { tick: number; ev: DeviationEvent }[] = [];
  readonly exempt = new Map<ExemptReason, number>();
  readonly deviations = new Map<string, number>();
  readonly baselines: ResourceBaselines;
  readonly analyser: ResourceAnalyser;
  tickIndex = 0;

  constructor(
    readonly intervalS = 10,
    settings: AnalyserSettings = testSettings(),
    baseline: BaselineSettings = TEST_BASELINE,
    readonly metrics = new Metrics({ collectDefault: false }),
  ) {
    this.baselines = new ResourceBaselines({ settings: baseline, db: null, logger: silentLogger(), metrics });
    this.analyser = new ResourceAnalyser(settings, this.baselines, {
      exempt: (r) => this.exempt.set(r, (this.exempt.get(r) ?? 0) + 1),
      deviation: (m: ResourceMetric, v: Verdict) => this.deviations.set(`${m}|${v}`, (this.deviations.get(`${m}|${v}`) ?? 0) + 1),
    });
  }

  add(id: string, image: string, usage: (i: number, t: number) => Usage, meta: Partial<ContainerMeta> = {}): SimContainer {
    const c: SimContainer = { meta: { ...emptyMeta(id.padEnd(64, '0')), image, name: id, ...meta }, usage, cpuNs: 0, rx: 0, tx: 0, rxp: 0, txp: 0, restarts: new Set() };
    this.containers.push(c);
    return c;
  }

  remove(id: string): void {
    const i = this.containers.findIndex((c) => c.meta.name === id);
    if (i >= 0) this.containers.splice(i, 1);
  }

  /** Run `n` ticks; returns the events of these ticks. */
  run(n: number): { tick: number; ev: DeviationEvent }[] {
    const out: { tick: number; ev: DeviationEvent }[] = [];
    for (let k = 0; k < n; k++) {
      const i = this.tickIndex++;
      const t = i * this.intervalS;
      const tNs = T0 + BigInt(t) * 1_000_000_000n;
      const readings = this.containers.map((c) => {
        if (c.restarts.has(i)) {
          c.cpuNs = c.rx = c.tx = c.rxp = c.txp = 0;
        }
        const u = c.usage(i, t);
        c.cpuNs += (u.cpu ?? 0) * this.intervalS * 1e9;
        c.rx += (u.rx ?? 0) * this.intervalS;
        c.tx += (u.tx ?? 0) * this.intervalS;
        c.rxp += (u.rxp ?? 0) * this.intervalS;
        c.txp += (u.txp ?? 0) * this.intervalS;
        const sample: RawSample = { id: c.meta.id, timeNs: tNs, source: 'recording', cpuNs: c.cpuNs, memoryBytes: u.memory ?? 50e6, pids: u.pids ?? 5, rxBytes: c.rx, txBytes: c.tx, rxPackets: c.rxp, txPackets: c.txp };
        return { meta: c.meta, sample };
      });
      for (const ev of this.analyser.tick(tNs, readings)) {
        out.push({ tick: i, ev });
        this.events.push({ tick: i, ev });
      }
    }
    return out;
  }
}

/** Ordinary usage of a small web service with jitter. */
export function idle(seed: number): (i: number) => Usage {
  return (i) => ({ cpu: 0.05 + 0.01 * jitter(i, seed), memory: 80e6 + 2e6 * jitter(i, seed + 1), pids: 8, tx: 20_000 + 5000 * jitter(i, seed + 2), rx: 30_000 + 5000 * jitter(i, seed + 3), txp: 40, rxp: 50 });
}

export const ALL_METRICS: readonly ResourceMetric[] = RESOURCE_METRICS;
