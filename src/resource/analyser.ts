/**
 * The resource analyser: samples of every container, tick by tick → per-second rates → judged
 * against the robust baseline of the container's group (workload when known, else image) →
 * deviation episodes held for `hold` → one {@link DeviationEvent} per container episode, with the
 * verdict of its siblings (the other containers of the group sampled in the same tick):
 *
 * - `load`: at least `load_fraction` of the siblings show it too (a fleet-wide spike);
 * - `lone`: siblings exist and (most) do not show it;
 * - `single`: no sibling on this node; the container is judged against its group's history only.
 * Siblings are the containers of the same group and image tag (a rollout's new version is not the
 * old one's sibling).
 *
 * Deterministic on the sample times it is given (no wall clock): the live source, recordings and
 * the demo run the same code. The detector (src/detect/detectors/resource.ts) decides what a
 * deviation means together with the other signals of the container.
 */
import type { ResourceBaselines, BaselineStats } from './baseline.js';
import { RESOURCE_METRICS, type ContainerMeta, type DeviationEvent, type MetricDeviation, type RawSample, type ResourceMetric, type SampleSource, type Verdict } from './types.js';

export interface DeviationSettings {
  readonly minRatio: number;
  readonly minZ: number;
  readonly abovePeak: number;
  readonly holdMs: number;
  readonly endAfterMs: number;
  readonly loadFraction: number;
  readonly siblingShare: number;
  readonly minDelta: Readonly<Record<ResourceMetric, number>>;
}

export interface AnalyserSettings {
  readonly warmupMs: number;
  /** 0: off; N: also a baseline per N-th of the UTC day. */
  readonly timeOfDayBuckets: number;
  readonly adaptAfterMs: number;
  readonly deviation: DeviationSettings;
  /** Containers tracked at once (state of the least recently sampled dropped beyond). */
  readonly maxContainers: number;
}

export type ExemptReason = 'warmup' | 'learning' | 'host_network' | 'restart';

/** Where the analyser counts what it did (the source binds these to Prometheus counters). */
export interface AnalyserCounters {
  exempt(reason: ExemptReason): void;
  deviation(metric: ResourceMetric, verdict: Verdict): void;
}

const NO_COUNTERS: AnalyserCounters = { exempt: () => {}, deviation: () => {} };

/** One reading with what is known about its container. */
export interface Reading {
  readonly meta: ContainerMeta;
  readonly sample: RawSample;
}

interface Episode {
  /** First deviating tick of the episode (dips shorter than end_after do not end it). */
  readonly sinceNs: bigint;
  /** Start of the current uninterrupted run of deviating ticks (null: not deviating now). */
  runSinceNs: bigint | null;
  lastDevNs: bigint;
  signalled: boolean;
  /** Verdict at the last deviating tick. */
  verdict: Verdict;
}

interface CState {
  meta: ContainerMeta;
  prev: RawSample | null;
  /** Warm-up starts here: the runtime's start time, the first sample, or the last restart. */
  startNs: bigint;
  readonly episodes: Map<ResourceMetric, Episode>;
}

/** A judged value of one container in one tick. */
interface Judged {
  readonly st: CState;
  readonly metric: ResourceMetric;
  readonly value: number;
  readonly stats: BaselineStats;
  readonly threshold: number;
  readonly deviating: boolean;
  readonly ratio: number;
  readonly z: number;
}

const NS_PER_MS = 1_000_000n;
const ms = (x: number): bigint => BigInt(Math.round(x)) * NS_PER_MS;

/** Characters of the random suffixes Kubernetes appends to generated names (no vowels, no 0/1/3). */
const SUFFIX = '[bcdfghjklmnpqrstvwxz24-9]';
const DEPLOYMENT_POD = new RegExp(`^(.+)-${SUFFIX}{6,10}-${SUFFIX}{5}$`);
const GENERATED_POD = new RegExp(`^(.+)-${SUFFIX}{5}$`);

/** k8s owner name from a pod name: Deployment `name-<rs hash>-<5>`, DaemonSet/Job `name-<5>`, StatefulSet `name-<ordinal>`; else the pod name. */
export function ownerOfPod(pod: string): string {
  const m = DEPLOYMENT_POD.exec(pod) ?? GENERATED_POD.exec(pod) ?? /^(.+)-\d+$/.exec(pod);
  return m ? (m[1] as string) : pod;
}

/** The baseline group of a container: its workload when known, else its image repository, else itself. */
export function groupOf(m: ContainerMeta): string {
  if (m.namespace && m.pod) return `workload:${m.namespace}/${ownerOfPod(m.pod)}/${m.containerName ?? '-'}`;
  if (m.image) return `image:${m.image}`;
  return `container:${m.id.slice(0, 12)}`;
}

/** Short label of a container for sibling lists: pod (and container) name, else name, else short id. */
export function labelOf(m: ContainerMeta): string {
  if (m.pod) return m.pod;
  if (m.name) return m.name.replace(/^\//, '');
  return m.id.slice(0, 12);
}

export class ResourceAnalyser {
  private readonly states = new Map<string, CState>();
  private readonly d: DeviationSettings;
  private readonly floors: Readonly<Record<ResourceMetric, number>>;

  constructor(
    private readonly s: AnalyserSettings,
    private readonly baselines: ResourceBaselines,
    private readonly counters: AnalyserCounters = NO_COUNTERS,
  ) {
    this.d = s.deviation;
    const floors = {} as Record<ResourceMetric, number>;
    for (const m of RESOURCE_METRICS) floors[m] = Math.max(1e-9, s.deviation.minDelta[m] / 4);
    this.floors = floors;
  }

  /** Containers tracked. */
  get size(): number {
    return this.states.size;
  }

  /** Forget containers that are gone. */
  forget(id: string): void {
    this.states.delete(id);
  }

  /** Keep only these containers' state (the rest are gone). */
  retainOnly(ids: ReadonlySet<string>): void {
    for (const id of [...this.states.keys()]) if (!ids.has(id)) this.states.delete(id);
  }

  /** Baseline keys a value of `metric` at `tNs` is judged by (time-of-day bucket first when on). */
  private keys(group: string, metric: ResourceMetric, tNs: bigint): string[] {
    const all = `${group}|${metric}`;
    const n = this.s.timeOfDayBuckets;
    if (n <= 0) return [all];
    const minute = Number((tNs / 60_000_000_000n) % 1440n);
    const bucket = Math.floor((minute * n) / 1440);
    return [`${all}|tod${bucket}/${n}`, all];
  }

  /** Per-second rates and gauges from two readings; null when a counter went back (restart). */
  private values(prev: RawSample, cur: RawSample, hostNetwork: boolean): Map<ResourceMetric, number> | null {
    const dtNs = Number(cur.timeNs - prev.timeNs);
    const out = new Map<ResourceMetric, number>();
    if (!(dtNs > 0)) return out;
    const dt = dtNs / 1e9;
    const counters: [ResourceMetric, number | null, number | null, number][] = [
      ['cpu', prev.cpuNs, cur.cpuNs, 1e9],
      ['net_rx_bytes', prev.rxBytes, cur.rxBytes, 1],
      ['net_tx_bytes', prev.txBytes, cur.txBytes, 1],
      ['net_rx_packets', prev.rxPackets, cur.rxPackets, 1],
      ['net_tx_packets', prev.txPackets, cur.txPackets, 1],
    ];
    for (const [metric, a, b, unit] of counters) {
      if (a === null || b === null) continue;
      if (b < a) return null;
      if (hostNetwork && metric !== 'cpu') continue;
      out.set(metric, (b - a) / unit / dt);
    }
    if (cur.memoryBytes !== null) out.set('memory', cur.memoryBytes);
    if (cur.pids !== null) out.set('pids', cur.pids);
    return out;
  }

  /** Judge one value against the first learnt baseline of its keys; null while none has learnt. */
  private judge(st: CState, metric: ResourceMetric, value: number, keys: readonly string[], tNs: bigint): Judged | null {
    let stats: BaselineStats | null = null;
    for (const k of keys) {
      const s = this.baselines.stats(k, tNs);
      if (s?.learnt) {
        stats = s;
        break;
      }
    }
    if (!stats) return null;
    const d = this.d;
    const sigma = Math.max((stats.p75 - stats.p25) / 1.349, this.floors[metric] / 4);
    const threshold = Math.max(stats.median * d.minRatio, stats.median + d.minZ * sigma, stats.p99 * d.abovePeak, stats.median + d.minDelta[metric]);
    const ratio = value / Math.max(stats.median, this.floors[metric]);
    const z = (value - stats.median) / sigma;
    return { st, metric, value, stats, threshold, deviating: value >= threshold, ratio, z };
  }

  /**
   * One sampling tick at event time `tNs`: every container sampled in it, each once. Returns the
   * deviation events that reached `hold` in this tick (one per container at most).
   */
  tick(tNs: bigint, readings: readonly Reading[]): DeviationEvent[] {
    const judged: Judged[] = [];
    const learn: [string[], number, CState, ResourceMetric][] = [];
    const sources = new Map<CState, SampleSource>();
    const warmNs = ms(this.s.warmupMs);
    for (const { meta, sample } of readings) {
      let st = this.states.get(meta.id);
      if (!st) {
        st = { meta, prev: null, startNs: meta.startedNs ?? sample.timeNs, episodes: new Map() };
        this.states.set(meta.id, st);
        this.trim();
      } else {
        this.states.delete(meta.id);
        this.states.set(meta.id, st);
        if (meta.startedNs !== null && meta.startedNs > st.startNs) st.startNs = meta.startedNs; // restarted (runtime says)
        st.meta = meta;
      }
      sources.set(st, sample.source);
      const prev = st.prev;
      st.prev = sample;
      if (prev === null) continue;
      const vals = this.values(prev, sample, meta.hostNetwork);
      if (vals === null) {
        st.startNs = sample.timeNs;
        st.episodes.clear();
        this.counters.exempt('restart');
        continue;
      }
      if (meta.hostNetwork) this.counters.exempt('host_network');
      if (tNs - st.startNs < warmNs) {
        this.counters.exempt('warmup');
        continue;
      }
      const group = groupOf(meta);
      let learning = false;
      for (const [metric, value] of vals) {
        const keys = this.keys(group, metric, tNs);
        const j = this.judge(st, metric, value, keys, tNs);
        if (j) judged.push(j);
        else learning = true;
        learn.push([keys, value, st, metric]);
      }
      if (learning) this.counters.exempt('learning');
    }

    // Siblings: the other containers of the same group judged on the same metric in this tick.
    const byGroup = new Map<string, Judged[]>();
    for (const j of judged) {
      const k = `${groupOf(j.st.meta)}|${j.metric}`;
      let arr = byGroup.get(k);
      if (!arr) byGroup.set(k, (arr = []));
      arr.push(j);
    }
    const verdicts = new Map<Judged, { verdict: Verdict; siblings: Judged[]; showing: number }>();
    for (const j of judged) {
      const ep = j.st.episodes.get(j.metric);
      if (!j.deviating) {
        if (ep) {
          ep.runSinceNs = null;
          if (tNs - ep.lastDevNs >= ms(this.d.endAfterMs)) j.st.episodes.delete(j.metric);
        }
        continue;
      }
      const group = byGroup.get(`${groupOf(j.st.meta)}|${j.metric}`) ?? [];
      // Siblings run the same image version: during a rollout, a new version that simply uses
      // more than the old one is compared with its own kind (or with history alone), not called lone.
      const siblings = group.filter((o) => o !== j && o.st.meta.tag === j.st.meta.tag);
      const showing = siblings.filter((o) => o.value >= o.stats.median + this.d.siblingShare * (o.threshold - o.stats.median)).length;
      const verdict: Verdict = siblings.length === 0 ? 'single' : showing / siblings.length >= this.d.loadFraction ? 'load' : 'lone';
      verdicts.set(j, { verdict, siblings, showing });
      if (ep) {
        ep.lastDevNs = tNs;
        ep.runSinceNs ??= tNs;
        ep.verdict = verdict;
      } else j.st.episodes.set(j.metric, { sinceNs: tNs, runSinceNs: tNs, lastDevNs: tNs, signalled: false, verdict });
    }

    // Learn. A deviating value stays out of the baselines that judge it until its episode is
    // older than adapt_after (whatever the verdict: neither an attacker nor a passing spike
    // teaches them; a lasting change does); baselines still learning take every value.
    const adaptNs = ms(this.s.adaptAfterMs);
    for (const [keys, value, st, metric] of learn) {
      const ep = st.episodes.get(metric);
      const holdBack = ep !== undefined && ep.lastDevNs === tNs && tNs - ep.sinceNs < adaptNs;
      for (const k of keys) if (!holdBack || !this.baselines.stats(k, tNs)?.learnt) this.baselines.add(k, value, tNs);
    }

    // Events: a container with a metric deviating without interruption for `hold`, with every
    // metric deviating now and not yet signalled in its episode.
    const holdNs = ms(this.d.holdMs);
    const byContainer = new Map<CState, Judged[]>();
    for (const j of verdicts.keys()) {
      let arr = byContainer.get(j.st);
      if (!arr) byContainer.set(j.st, (arr = []));
      arr.push(j);
    }
    const events: DeviationEvent[] = [];
    for (const [st, js] of byContainer) {
      const fresh = js.filter((j) => !(st.episodes.get(j.metric)?.signalled ?? true));
      if (!fresh.some((j) => tNs - ((st.episodes.get(j.metric) as Episode).runSinceNs ?? tNs) >= holdNs)) continue;
      const metrics: MetricDeviation[] = fresh
        .map((j) => {
          const ep = st.episodes.get(j.metric) as Episode;
          ep.signalled = true;
          const v = verdicts.get(j) as { verdict: Verdict; siblings: Judged[]; showing: number };
          this.counters.deviation(j.metric, v.verdict);
          return {
            metric: j.metric,
            value: j.value,
            baseline: j.stats.median,
            peak: j.stats.p99,
            ratio: j.ratio,
            z: j.z,
            sinceNs: ep.sinceNs,
            siblings: v.siblings.length,
            siblingsShowing: v.showing,
            siblingValues: v.siblings.slice(0, 5).map((o) => `${labelOf(o.st.meta)}=${fmtValue(o.metric, o.value)}`),
            verdict: v.verdict,
          };
        })
        .sort((a, b) => b.ratio - a.ratio);
      events.push({ timeNs: tNs, meta: st.meta, group: groupOf(st.meta), metrics, source: sources.get(st) ?? 'recording' });
    }
    return events;
  }

  private trim(): void {
    while (this.states.size > this.s.maxContainers) {
      const oldest = this.states.keys().next();
      if (oldest.done) break;
      this.states.delete(oldest.value);
    }
  }
}

/** A value for messages: cores with 2 decimals, bytes in KiB/MiB, counts as integers. */
export function fmtValue(metric: ResourceMetric, v: number): string {
  if (metric === 'cpu') return v.toFixed(2);
  if (metric === 'memory' || metric === 'net_rx_bytes' || metric === 'net_tx_bytes') {
    const suffix = metric === 'memory' ? '' : '/s';
    if (v >= 1024 * 1024 * 1024) return `${(v / (1024 * 1024 * 1024)).toFixed(1)}GiB${suffix}`;
    if (v >= 1024 * 1024) return `${(v / (1024 * 1024)).toFixed(1)}MiB${suffix}`;
    if (v >= 1024) return `${(v / 1024).toFixed(1)}KiB${suffix}`;
    return `${Math.round(v)}B${suffix}`;
  }
  return v >= 100 ? String(Math.round(v)) : v.toFixed(1);
}
