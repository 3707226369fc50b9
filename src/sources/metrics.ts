/**
 * `source/metrics`: resource usage of every container on the node, every `metrics.interval`.
 *
 * - Which containers: the runtime's list (Docker or CRI, the runtime of enrich.container), else
 *   the containers alerts named in the last `seen_ttl` (recorded by {@link SeenContainers}, an
 *   enricher that adds no keys). At most `max_containers` per tick (the rest counted, first next
 *   tick).
 * - The numbers: cgroup and /proc files (src/resource/files.ts) when readable, else the runtime's
 *   stats API (src/resource/runtime.ts), per `metrics.source`.
 * - What they mean: src/resource/analyser.ts against baselines kept in the state database
 *   (src/resource/baseline.ts); each deviation held `hold` is submitted to the intake as a
 *   `Companion signal: resource usage deviation` alert (src/resource/signal.ts), so it reaches the
 *   detection engine like a Falco signal.
 *
 * Best effort: a container that stops mid-sample, a runtime that goes away, a missing or
 * malformed file are counted (`resource_sampling_errors_total{source,code}`, `errors_total`) and
 * logged once per code and minute; sampling goes on. Never makes the companion unready.
 */
import { existsSync } from 'node:fs';
import { fieldString, type Alert, type EnrichValue } from '../alert.js';
import type { Clock } from '../clock.js';
import type { Component, ComponentHealth } from '../component.js';
import type { Config } from '../config/schema.js';
import { labelList } from '../detect/mapping.js';
import { CriClient } from '../enrich/cri-client.js';
import { DockerClient } from '../enrich/docker-client.js';
import { errorCode, errorMessage, QueueFullError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Enricher, Intake } from '../pipeline/types.js';
import { ResourceAnalyser, type AnalyserSettings, type Reading } from '../resource/analyser.js';
import { ResourceBaselines } from '../resource/baseline.js';
import { resourceReplica } from '../cluster/replicas.js';
import type { ClusterStore } from '../cluster/wiring.js';
import { detectCgroups, FileReader } from '../resource/files.js';
import { CriRuntime, DockerRuntime, isGone, type RuntimeAdapter } from '../resource/runtime.js';
import { deviationAlert } from '../resource/signal.js';
import { emptyMeta, RESOURCE_METRICS, type ContainerMeta, type ResourceMetric, type SampleSource } from '../resource/types.js';
import type { Db } from '../store/db.js';

export type MetricsConfig = Config['metrics'];

export const METRICS_SOURCE_ID = 'source/metrics';
const NONE_RECHECK_MS = 30_000;
const LOG_EVERY_MS = 60_000;
const MAX_SEEN = 10_000;

/** Analyser settings from the config section. */
export function analyserSettings(c: MetricsConfig): AnalyserSettings {
  const d = c.deviation;
  const minDelta = {} as Record<ResourceMetric, number>;
  for (const m of RESOURCE_METRICS) minDelta[m] = d.min_delta[m];
  return {
    warmupMs: c.warmup,
    timeOfDayBuckets: c.baseline.time_of_day_buckets,
    adaptAfterMs: c.baseline.adapt_after,
    maxContainers: c.max_containers * 2,
    deviation: { minRatio: d.min_ratio, minZ: d.min_z, abovePeak: d.above_peak, holdMs: d.hold, endAfterMs: d.end_after, loadFraction: d.load_fraction, siblingShare: d.sibling_share, minDelta },
  };
}

/**
 * The containers alerts named (id, image, pod), for sampling without a runtime list and for
 * metadata the runtime does not give (pod labels). Adds no keys to alerts.
 */
export class SeenContainers implements Enricher {
  readonly id = 'enrich/metrics-seen';
  private readonly seen = new Map<string, { meta: ContainerMeta; lastMs: number }>();
  private static readonly NONE: Readonly<Record<string, EnrichValue>> = Object.freeze({});
  constructor(private readonly clock: Clock) {}

  enrichSync(alert: Alert): Readonly<Record<string, EnrichValue>> {
    if (alert.origin.kind === 'detector' || alert.origin.kind === 'metrics') return SeenContainers.NONE;
    const raw = fieldString(alert, 'container.id');
    if (raw === null || !/^[0-9a-f]{12,64}$/.test(raw)) return SeenContainers.NONE;
    const prev = this.seen.get(raw);
    const now = this.clock.now();
    if (prev && now - prev.lastMs < 1000) return SeenContainers.NONE; // cheap on bursts
    const labels = Object.fromEntries(labelList(alert.outputFields?.['k8s.pod.labels']));
    const meta: ContainerMeta = {
      ...emptyMeta(raw),
      name: fieldString(alert, 'container.name'),
      image: fieldString(alert, 'container.image.repository'),
      tag: fieldString(alert, 'container.image.tag'),
      namespace: fieldString(alert, 'k8s.ns.name'),
      pod: fieldString(alert, 'k8s.pod.name'),
      podLabels: labels,
    };
    this.seen.delete(raw);
    this.seen.set(raw, { meta, lastMs: now });
    while (this.seen.size > MAX_SEEN) {
      const k = this.seen.keys().next();
      if (k.done) break;
      this.seen.delete(k.value);
    }
    return SeenContainers.NONE;
  }

  async enrich(alert: Alert): Promise<Readonly<Record<string, EnrichValue>>> {
    return this.enrichSync(alert);
  }

  /** Seen within `ttlMs`, newest last. */
  recent(ttlMs: number): ContainerMeta[] {
    const now = this.clock.now();
    const out: ContainerMeta[] = [];
    for (const [k, v] of this.seen) {
      if (now - v.lastMs > ttlMs) this.seen.delete(k);
      else out.push(v.meta);
    }
    return out;
  }

  /** What alerts said about a container (any id form: full or 12-hex short). */
  lookup(id: string): ContainerMeta | undefined {
    return this.seen.get(id)?.meta ?? this.seen.get(id.slice(0, 12))?.meta;
  }
}

export interface MetricsSourceDeps {
  readonly config: MetricsConfig;
  /** The runtime settings (runtime, sockets, timeout, API version) of enrich.container. */
  readonly runtime: Config['enrich']['container'];
  readonly intake: Intake;
  readonly db: Db | null;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock: Clock;
  readonly hostname: string | null;
  /** Injected runtime (tests); otherwise built from the sockets. */
  readonly runtimeAdapter?: RuntimeAdapter | null;
  /** Called with every tick's readings (recordings, tests). */
  readonly onTick?: (tNs: bigint, readings: readonly Reading[]) => void;
  /** The cluster store (`store.backend: redis`): the baselines become cluster-wide; absent: this node only. */
  readonly cluster?: ClusterStore | null;
}

type Inc = { inc(n?: number): void };

export class MetricsSource implements Component {
  readonly id = METRICS_SOURCE_ID;
  readonly seen: SeenContainers;
  private readonly cfg: MetricsConfig;
  private readonly log: Logger;
  private readonly baselines: ResourceBaselines;
  private readonly analyser: ResourceAnalyser;
  private runtime: RuntimeAdapter | null | undefined;
  private runtimeCheckedMs = -Infinity;
  private files: FileReader | null | undefined;
  private timer: NodeJS.Timeout | null = null;
  private flushTimer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private readonly stopper = new AbortController();
  /** Containers from the last good runtime list (kept while the runtime is unreachable). */
  private lastList: ContainerMeta[] = [];
  private runtimeError: string | null = null;
  private readonly details = new Map<string, { pid: number | null; startedNs: bigint | null; hostNetwork: boolean | null }>();
  /** Round-robin start for the per-tick cap. */
  private cursor = 0;
  private lastTick = { containers: 0, ms: 0, events: 0 };
  private readonly lastLog = new Map<string, number>();
  private readonly m;
  private readonly counters = new Map<string, Inc>();

  constructor(private readonly d: MetricsSourceDeps) {
    this.cfg = d.config;
    this.log = d.logger.child({ component: this.id });
    this.seen = new SeenContainers(d.clock);
    const mx = d.metrics;
    this.m = {
      samples: mx.counter<'source'>('resource_samples_total', 'Container resource samples taken, by source (cgroup_v1, cgroup_v2, docker, cri)', ['source']),
      errors: mx.counter<'source' | 'code'>('resource_sampling_errors_total', 'Container samples that failed, by source and stable code (E_CGROUP_GONE: the container stopped mid-sample)', ['source', 'code']),
      capped: mx.counter('resource_capped_total', 'Containers not sampled in a tick because metrics.max_containers was reached'),
      deviations: mx.counter<'metric' | 'verdict'>('resource_deviations_total', 'Deviations held long enough to be signalled, by metric and verdict (lone, load, single)', ['metric', 'verdict']),
      exemptions: mx.counter<'reason'>('resource_exemptions_total', 'Container samples not judged, by reason (warmup, learning, host_network: network not judged, restart)', ['reason']),
      tick: mx.histogram('resource_tick_seconds', 'Duration of one sampling tick (all containers)', [], [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]),
      containers: mx.gauge('resource_containers', 'Containers sampled in the last tick'),
    };
    this.baselines = new ResourceBaselines({
      settings: {
        windowMs: this.cfg.baseline.window,
        slots: this.cfg.baseline.slots,
        learningPeriodMs: this.cfg.baseline.learning_period,
        minSamples: this.cfg.baseline.min_samples,
        maxKeys: this.cfg.baseline.max_keys,
      },
      db: d.db,
      logger: this.log,
      metrics: mx,
      cluster: d.cluster?.sync ?? null,
    });
    d.cluster?.sync.register(resourceReplica(this.baselines, d.cluster.specs.resources));
    this.analyser = new ResourceAnalyser(analyserSettings(this.cfg), this.baselines, {
      exempt: (reason) => this.count(`x|${reason}`, () => this.m.exemptions.labels({ reason })).inc(),
      deviation: (metric, verdict) => this.count(`d|${metric}|${verdict}`, () => this.m.deviations.labels({ metric, verdict })).inc(),
    });
    this.runtime = d.runtimeAdapter;
  }

  private count(key: string, make: () => Inc): Inc {
    let c = this.counters.get(key);
    if (!c) this.counters.set(key, (c = make()));
    return c;
  }

  // ------------------------------------------------------------------------------------------
  // Component

  async start(): Promise<void> {
    if (!this.cfg.enabled || this.timer || this.running) return;
    this.baselines.load();
    this.resolveFiles();
    const rt = this.resolveRuntime();
    this.log.info({ status: `runtime ${rt?.kind ?? 'none'}, files ${this.files?.source ?? 'none'}`, source: this.cfg.source }, 'resource sampling started');
    this.schedule(0);
    this.flushTimer = setInterval(() => this.baselines.flush(), this.cfg.baseline.flush_interval);
    this.flushTimer.unref();
  }

  async stop(deadlineMs: number): Promise<void> {
    this.stopped = true;
    this.stopper.abort();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.flushTimer) clearInterval(this.flushTimer);
    this.flushTimer = null;
    if (this.running) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([this.running, new Promise<void>((r) => (t = setTimeout(r, Math.max(0, deadlineMs - Date.now()))))]);
      clearTimeout(t);
    }
    this.baselines.flush();
    if (!this.d.runtimeAdapter) this.runtime?.close();
  }

  health(): ComponentHealth {
    if (!this.cfg.enabled) return { ready: true, detail: 'disabled' };
    const rt = this.runtime ? this.runtime.kind : 'no runtime';
    const files = this.files ? this.files.source : 'no cgroup files';
    const err = this.runtimeError ? `; runtime failing: ${this.runtimeError}` : '';
    const flush = this.baselines.flushError ? `; baseline flush failing: ${this.baselines.flushError}` : '';
    return { ready: true, detail: `${rt}, ${files}, ${this.lastTick.containers} containers in ${this.lastTick.ms.toFixed(1)} ms${err}${flush}`.slice(0, 300) };
  }

  // ------------------------------------------------------------------------------------------
  // Ticks

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.running = this.tick()
        .then(() => undefined)
        .catch((err: unknown) => {
          // A bug, not a sampling failure: counted and logged; sampling goes on.
          this.d.metrics.errors.inc({ component: this.id, code: errorCode(err) });
          this.log.error({ error: errorMessage(err) }, 'resource sampling tick failed');
        })
        .finally(() => {
          this.running = null;
          this.schedule(this.cfg.interval);
        });
    }, delayMs);
    this.timer.unref?.();
  }

  /** One tick now (tests drive it directly). Never throws for sampling failures. */
  async tick(): Promise<number> {
    const started = this.d.clock.monotonic();
    const tNs = BigInt(this.d.clock.now()) * 1_000_000n;
    const signal = this.stopper.signal;
    this.baselines.load();
    this.resolveFiles();
    const containers = await this.containers(signal);
    if (signal.aborted) return 0;
    const picked = this.cap(containers);
    await this.fetchDetails(picked, signal);
    const readings = await this.sample(picked, signal);
    this.d.onTick?.(tNs, readings);
    const events = this.analyser.tick(tNs, readings);
    let submitted = 0;
    for (const ev of events) {
      const alert = deviationAlert(ev, { hostname: this.d.hostname, origin: { kind: 'metrics', component: this.id }, receivedAtMs: this.d.clock.now() });
      try {
        await this.d.intake.submit(alert);
        this.d.metrics.sent.inc({ component: this.id });
        submitted++;
      } catch (err) {
        this.d.metrics.discarded.inc({ component: this.id, reason: err instanceof QueueFullError ? 'queue_full' : 'stopped' });
        this.warnOnce(`submit|${errorCode(err)}`, { error: errorMessage(err) }, 'resource deviation signal not accepted by the intake');
      }
    }
    const ms = this.d.clock.monotonic() - started;
    this.lastTick = { containers: readings.length, ms, events: submitted };
    this.m.containers.set(readings.length);
    this.m.tick.observe(ms / 1000);
    return submitted;
  }

  /** Running containers: the runtime's list, else (no runtime, or it failed) the last list and the containers alerts named. */
  private async containers(signal: AbortSignal): Promise<ContainerMeta[]> {
    const rt = this.resolveRuntime();
    if (rt) {
      try {
        const list = await rt.list(signal);
        if (this.runtimeError) this.log.info({ status: 'reachable' }, `${rt.kind} runtime reachable again`);
        this.runtimeError = null;
        this.lastList = list;
        const ids = new Set(list.map((c) => c.id));
        for (const id of [...this.details.keys()]) if (!ids.has(id)) this.details.delete(id);
        this.analyser.retainOnly(ids);
        return list.map((c) => this.withSeen(c));
      } catch (err) {
        if (signal.aborted) return [];
        const code = errorCode(err);
        this.d.metrics.errors.inc({ component: this.id, code });
        this.count(`e|runtime|${code}`, () => this.m.errors.labels({ source: rt.kind, code })).inc();
        if (this.runtimeError === null) this.log.warn({ error: errorMessage(err), status: code }, `${rt.kind} runtime unreachable: sampling the last known containers from files`);
        this.runtimeError = `${code} ${errorMessage(err)}`.slice(0, 160);
      }
    }
    const byId = new Map<string, ContainerMeta>();
    const short = new Set<string>();
    for (const c of this.lastList) {
      byId.set(c.id, this.withSeen(c));
      short.add(c.id.slice(0, 12));
    }
    for (const c of this.seen.recent(this.cfg.seen_ttl)) if (!short.has(c.id.slice(0, 12))) byId.set(c.id, c);
    return [...byId.values()];
  }

  /** Runtime metadata completed by what alerts said (pod labels, and names when the runtime has none). */
  private withSeen(c: ContainerMeta): ContainerMeta {
    const s = this.seen.lookup(c.id);
    const det = this.details.get(c.id);
    let out = c;
    if (s) out = { ...out, podLabels: Object.keys(out.podLabels).length ? out.podLabels : s.podLabels, image: out.image ?? s.image, tag: out.tag ?? s.tag, namespace: out.namespace ?? s.namespace, pod: out.pod ?? s.pod };
    if (det) out = { ...out, pid: det.pid ?? out.pid, startedNs: det.startedNs ?? out.startedNs, hostNetwork: det.hostNetwork ?? out.hostNetwork };
    return out;
  }

  /** At most max_containers, round robin so every container gets its turn. */
  private cap(all: ContainerMeta[]): ContainerMeta[] {
    const max = this.cfg.max_containers;
    if (all.length <= max) return all;
    this.m.capped.inc(all.length - max);
    this.warnOnce('cap', { status: `${all.length} containers, cap ${max}` }, 'more containers than metrics.max_containers: the rest are sampled in later ticks');
    const start = this.cursor % all.length;
    this.cursor = start + max;
    const rotated = [...all.slice(start), ...all.slice(0, start)];
    return rotated.slice(0, max);
  }

  /** Host pid and start time of containers new to us (the file reader needs a pid when cgroup.procs shows none). */
  private async fetchDetails(picked: ContainerMeta[], signal: AbortSignal): Promise<void> {
    const rt = this.runtime;
    if (!rt || !this.files || this.runtimeError) return;
    const fresh = picked.filter((c) => !this.details.has(c.id)).slice(0, 32);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < fresh.length && !signal.aborted) {
        const c = fresh[next++] as ContainerMeta;
        try {
          this.details.set(c.id, await rt.details(c.id, signal));
        } catch (err) {
          // Gone already, or the runtime cannot say: sample without (cgroup.procs gives a pid on the host).
          this.details.set(c.id, { pid: null, startedNs: null, hostNetwork: null });
          if (!isGone(err)) this.warnOnce(`details|${errorCode(err)}`, { error: errorMessage(err) }, 'container details not available');
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.cfg.max_inflight, fresh.length) }, worker));
    for (let i = 0; i < picked.length; i++) picked[i] = this.withSeen(picked[i] as ContainerMeta);
  }

  /** Read every picked container: files first (auto, cgroup), the runtime's stats for the rest (auto, docker, cri). */
  private async sample(picked: ContainerMeta[], signal: AbortSignal): Promise<Reading[]> {
    const readings: Reading[] = [];
    const viaRuntime: ContainerMeta[] = [];
    const src = this.cfg.source;
    const files = src === 'auto' || src === 'cgroup' ? this.files : null;
    const nowMs = this.d.clock.now();
    let n = 0;
    for (const meta of picked) {
      if (files && files.has(meta.id, nowMs)) {
        try {
          const s = files.sample(meta, nowMs, BigInt(this.d.clock.now()) * 1_000_000n);
          readings.push({ meta, sample: s });
          this.countSample(s.source);
        } catch (err) {
          this.sampleFailed(meta.id, files.source, err);
          if (isGone(err)) files.forget(meta.id);
        }
        // Keep the event loop responsive on large nodes.
        if (++n % 64 === 0) await new Promise((r) => setImmediate(r));
      } else if (src !== 'cgroup') viaRuntime.push(meta);
      else this.sampleFailed(meta.id, files?.source ?? 'cgroup_v2', Object.assign(new Error(`no cgroup for ${meta.id.slice(0, 12)} under ${this.cfg.cgroup_root}`), { code: 'E_CGROUP_NOT_FOUND' }));
    }
    const rt = this.runtime;
    if (viaRuntime.length > 0 && rt && !this.runtimeError && !signal.aborted && (src === 'auto' || src === rt.kind)) {
      try {
        const res = await rt.stats(viaRuntime, signal, this.cfg.max_inflight, () => BigInt(this.d.clock.now()) * 1_000_000n);
        const metas = new Map(viaRuntime.map((m) => [m.id, m]));
        for (const s of res.samples) {
          const meta = metas.get(s.id);
          if (!meta) continue;
          readings.push({ meta, sample: s });
          this.countSample(s.source);
        }
        for (const e of res.errors) this.sampleFailed(e.id, rt.kind, e.err);
      } catch (err) {
        if (!signal.aborted) for (const m of viaRuntime) this.sampleFailed(m.id, rt.kind, err);
      }
    }
    return readings;
  }

  private countSample(source: SampleSource): void {
    this.count(`s|${source}`, () => this.m.samples.labels({ source })).inc();
  }

  private sampleFailed(id: string, source: string, err: unknown): void {
    const code = errorCode(err);
    this.count(`e|${source}|${code}`, () => this.m.errors.labels({ source, code })).inc();
    this.d.metrics.errors.inc({ component: this.id, code });
    if (isGone(err)) {
      this.analyser.forget(id);
      this.log.debug({ error: errorMessage(err), status: code }, 'container gone mid-sample');
      return;
    }
    this.warnOnce(`sample|${source}|${code}`, { error: errorMessage(err), status: code, source }, 'container sample failed');
  }

  private warnOnce(key: string, fields: Record<string, unknown>, msg: string): void {
    const now = this.d.clock.monotonic();
    const last = this.lastLog.get(key);
    if (last !== undefined && now - last < LOG_EVERY_MS) return;
    this.lastLog.set(key, now);
    this.log.warn(fields, msg);
  }

  // ------------------------------------------------------------------------------------------
  // Runtime and files

  private resolveRuntime(): RuntimeAdapter | null {
    if (this.runtime !== undefined && (this.runtime !== null || this.d.clock.now() - this.runtimeCheckedMs < NONE_RECHECK_MS)) return this.runtime;
    this.runtimeCheckedMs = this.d.clock.now();
    const rc = this.d.runtime;
    const want = this.cfg.source === 'docker' || this.cfg.source === 'cri' ? this.cfg.source : rc.runtime;
    const docker = (): RuntimeAdapter => new DockerRuntime(new DockerClient({ socketPath: rc.docker_socket, timeoutMs: rc.request_timeout, apiVersion: rc.docker_api_version }));
    const cri = (): RuntimeAdapter => new CriRuntime(new CriClient({ socketPath: rc.cri_socket, timeoutMs: rc.request_timeout }));
    if (want === 'docker') this.runtime = docker();
    else if (want === 'cri') this.runtime = cri();
    else if (want === 'auto' && existsSync(rc.docker_socket)) this.runtime = docker();
    else if (want === 'auto' && existsSync(rc.cri_socket)) this.runtime = cri();
    else this.runtime = null;
    return this.runtime;
  }

  private resolveFiles(): void {
    if (this.files !== undefined) return;
    if (this.cfg.source === 'docker' || this.cfg.source === 'cri') {
      this.files = null;
      return;
    }
    const layout = detectCgroups(this.cfg.cgroup_root);
    if (!layout) {
      this.files = null;
      const msg = `no cgroup v2 (cgroup.controllers) or v1 (cpuacct and memory hierarchies) under ${this.cfg.cgroup_root}; mount the host's /sys/fs/cgroup read-only (docs/detections-resource.md)`;
      if (this.cfg.source === 'cgroup') {
        this.d.metrics.errors.inc({ component: this.id, code: 'E_CGROUP_LAYOUT' });
        this.log.error({ status: 'E_CGROUP_LAYOUT' }, msg);
      } else this.log.info({ status: 'runtime stats' }, `${msg}; using the runtime's stats API`);
      return;
    }
    this.files = new FileReader(layout, { cgroupRoot: this.cfg.cgroup_root, procRoot: this.cfg.proc_root, includeLoopback: this.cfg.include_loopback, minRescanMs: Math.max(1000, this.cfg.interval) });
  }
}
