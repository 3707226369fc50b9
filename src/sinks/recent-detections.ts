/**
 * The last N detections the companion made, as compact summaries, for the read-only ops endpoint
 * `GET /detections` (what `falco-companion emulate run --verify URL` asks). A bounded ring: the
 * oldest summary is overwritten and counted (`discarded_total{component="detect/recent",
 * reason="evicted"}`). Only detections (the detectors' own alerts) are recorded, before routing:
 * a detection the route drops still happened. Holds no alert payload beyond the summary.
 *
 *   GET /detections?container=ID&pod=NAME&pid=1,2&since=RFC3339&detector=ID&limit=N
 *
 * Every filter is optional; `container` matches Falco's 12-character id or a longer one by prefix
 * (`host` for host processes); `pid` matches the pids of the detection's evidence lineage.
 */
import { parseTime, type Alert, type Priority } from '../alert.js';
import { DETECTION_SOURCE } from '../detect/finding-to-alert.js';
import type { Metrics } from '../metrics.js';
import type { DetectStage } from '../pipeline/types.js';
import { AlertIdGenerator } from '../store/alert-id.js';

export const RECENT_DETECTIONS_PATH = '/detections';
export const RECENT_DETECTIONS_CAPACITY = 1000;

export interface DetectionSummary {
  readonly id: string | null;
  readonly time: string;
  readonly rule: string;
  readonly priority: Priority;
  readonly detector: string | null;
  /** MITRE technique ids (T1205.002, ...). */
  readonly mitre: readonly string[];
  readonly tags: readonly string[];
  readonly container_id: string | null;
  readonly k8s_ns: string | null;
  readonly k8s_pod: string | null;
  readonly hostname: string | null;
  /** proc.pid and the pids of the evidence lineage. */
  readonly pids: readonly number[];
  readonly incident: string | null;
  readonly output: string;
}

export interface DetectionsAnswer {
  readonly status: number;
  readonly body: unknown;
}

const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);

/** `kworker[13924<13892] > sh[13925]` → [13924, 13925] (the `<ppid` part is the parent). */
export function lineagePids(text: string | null): number[] {
  if (!text) return [];
  return [...text.matchAll(/\[(\d+)(?:<\d+)?\]/g)].map((m) => Number(m[1]));
}

export function summarize(a: Alert): DetectionSummary {
  const f = a.outputFields ?? {};
  const c = a.companion;
  const pid = f['proc.pid'];
  const pids = new Set<number>(lineagePids(str(c['lineage'])));
  if (typeof pid === 'number') pids.add(pid);
  const mitre = str(c['mitre'])?.split(',').filter(Boolean) ?? (a.tags ?? []).filter((t) => /^T\d/.test(t));
  return {
    id: str(c['alert_id']),
    time: a.time,
    rule: a.rule,
    priority: a.priority,
    detector: str(c['detector']),
    mitre,
    tags: a.tags ?? [],
    container_id: str(f['container.id']),
    k8s_ns: str(f['k8s.ns.name']),
    k8s_pod: str(f['k8s.pod.name']),
    hostname: a.hostname,
    pids: [...pids],
    incident: str(c['incident']),
    output: a.output.slice(0, 500),
  };
}

interface Query {
  container: string | null;
  pod: string | null;
  pids: Set<number> | null;
  sinceNs: bigint | null;
  detector: string | null;
  limit: number;
}

export class RecentDetections {
  private readonly ring: ({ ns: bigint; s: DetectionSummary } | undefined)[];
  private next = 0;
  private total = 0;
  private evicted = 0;

  constructor(
    readonly capacity: number = RECENT_DETECTIONS_CAPACITY,
    private readonly metrics?: Metrics,
  ) {
    this.ring = new Array<{ ns: bigint; s: DetectionSummary } | undefined>(Math.max(1, capacity));
  }

  /** Record a detection (other alerts are ignored). */
  record(a: Alert): void {
    if (a.source !== DETECTION_SOURCE && a.origin.kind !== 'detector') return;
    if (this.ring[this.next] !== undefined) {
      this.evicted++;
      this.metrics?.discarded.inc({ component: 'detect/recent', reason: 'evicted' });
    }
    this.ring[this.next] = { ns: a.timeNs, s: summarize(a) };
    this.next = (this.next + 1) % this.ring.length;
    this.total++;
  }

  /** Oldest first. */
  all(): DetectionSummary[] {
    const out: DetectionSummary[] = [];
    for (let i = 0; i < this.ring.length; i++) {
      const e = this.ring[(this.next + i) % this.ring.length];
      if (e) out.push(e.s);
    }
    return out;
  }

  private parse(url: string): Query | string {
    const q = new URL(url, 'http://x').searchParams;
    const known = new Set(['container', 'pod', 'pid', 'since', 'detector', 'limit']);
    for (const k of q.keys()) if (!known.has(k)) return `unknown parameter ${k} (use ${[...known].join(', ')})`;
    const container = q.get('container');
    if (container !== null && !/^([0-9a-f]{12,64}|host)$/i.test(container)) return 'container must be a container id (12 to 64 hex characters) or host';
    let pids: Set<number> | null = null;
    const pidText = q.get('pid');
    if (pidText !== null) {
      const parts = pidText.split(',');
      if (parts.length > 1000 || parts.some((p) => !/^\d{1,10}$/.test(p))) return 'pid must be a comma-separated list of process ids';
      pids = new Set(parts.map(Number));
    }
    let sinceNs: bigint | null = null;
    const since = q.get('since');
    if (since !== null) {
      const t = parseTime(since);
      if (!t) return 'since must be an RFC 3339 time, e.g. 2026-12-03T06:42:00Z';
      sinceNs = t.ns;
    }
    const limitText = q.get('limit');
    const limit = limitText === null ? Math.min(100, this.capacity) : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > this.capacity) return `limit must be an integer from 1 to ${this.capacity}`;
    const pod = q.get('pod');
    if (pod !== null && (pod.length === 0 || pod.length > 253)) return 'pod must be a pod name';
    return { container: container?.toLowerCase() ?? null, pod, pids, sinceNs, detector: q.get('detector'), limit };
  }

  /** The ops endpoint: a pure function of the URL (path and query). */
  handle(url: string): DetectionsAnswer {
    const q = this.parse(url);
    if (typeof q === 'string') return { status: 400, body: { error: 'bad_request', reason: q } };
    const hits: DetectionSummary[] = [];
    for (let i = 0; i < this.ring.length; i++) {
      const e = this.ring[(this.next + i) % this.ring.length];
      if (!e) continue;
      const s = e.s;
      if (q.sinceNs !== null && e.ns < q.sinceNs) continue;
      if (q.detector !== null && s.detector !== q.detector) continue;
      if (q.pod !== null && s.k8s_pod !== q.pod) continue;
      if (q.container !== null) {
        const c = (s.container_id ?? '').toLowerCase();
        const match = q.container === 'host' ? c === 'host' : c.length >= 12 && (q.container.startsWith(c) || c.startsWith(q.container));
        if (!match) continue;
      }
      if (q.pids !== null && !s.pids.some((p) => q.pids?.has(p))) continue;
      hits.push(s);
    }
    return { status: 200, body: { detections: hits.slice(-q.limit), matched: hits.length, recorded: this.total, capacity: this.capacity, evicted: this.evicted } };
  }
}

/**
 * The detection stage, recording every detection it returns (and flushes). Detections get their
 * `companion.alert_id` here (the pipeline keeps an id that is already set), so a summary's `id`
 * is the id the delivered alert carries.
 */
export function recordingStage(stage: DetectStage, recent: RecentDetections, ids = new AlertIdGenerator()): DetectStage {
  const keep = (list: readonly Alert[]): Alert[] =>
    list.map((d) => {
      const withId = ids.ensure(d);
      recent.record(withId);
      return withId;
    });
  const wrapped: DetectStage = {
    process(alert) {
      const r = stage.process(alert);
      return r.detections.length === 0 ? r : { forward: r.forward, detections: keep(r.detections) };
    },
  };
  if (stage.flush) {
    const flush = stage.flush.bind(stage);
    return { ...wrapped, flush: () => keep(flush()) };
  }
  return wrapped;
}
