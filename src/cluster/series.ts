/**
 * Beacon series pooled by image across nodes (namespace `bs`): the store side of
 * {@link ClusterSeries}. Each node writes its own connection counts per second of a series
 * (field `<second>|<node>`, tuple `>>` = second, count: its count only grows, so the maximum is
 * idempotent); the pooled series is the union of the seconds with the counts summed over nodes.
 *
 * Bounded: at most `maxSeries` series and `maxPoints` seconds per series in each direction (own
 * points kept for a resync, remote points waiting for the detector); the oldest go first, counted.
 */
import type { Metrics } from '../metrics.js';
import { mergeGroups, type Tuple } from './tuple.js';
import { NS, type ChangeSink, type ClusterSeries, type Entry, type NamespaceSpec, type RemoteSeries, type Replica } from './types.js';

export const SERIES_OPS = '>>';

export interface SeriesOptions {
  readonly node: string;
  readonly spec: NamespaceSpec;
  readonly sink: ChangeSink;
  readonly maxSeries: number;
  readonly maxPoints: number;
  readonly metrics: Metrics;
}

/** A pooled series: (second, node) → count. */
export type SeriesPoints = Map<string, Tuple>;

/**
 * Merge two views of one series (CRDT: per (second, node) the larger count; bounded to the
 * `max` most recent seconds). Commutative, associative and idempotent.
 */
export function mergeSeries(a: ReadonlyMap<string, Tuple>, b: ReadonlyMap<string, Tuple>, max: number): SeriesPoints {
  return mergeGroups(SERIES_OPS, 0, max, a, b);
}

/**
 * The pooled view: seconds ascending with counts summed over nodes, the contributing nodes, and
 * the latest second each contributed.
 */
export function pooled(points: ReadonlyMap<string, Tuple>): { points: { sec: number; count: number }[]; nodes: string[]; last: Map<string, number> } {
  const bySec = new Map<number, number>();
  const last = new Map<string, number>();
  for (const [field, t] of points) {
    const bar = field.indexOf('|');
    const sec = Number(t[0]);
    if (bar <= 0 || !Number.isFinite(sec)) continue;
    const node = field.slice(bar + 1);
    last.set(node, Math.max(last.get(node) ?? -Infinity, sec));
    bySec.set(sec, (bySec.get(sec) ?? 0) + Number(t[1] ?? 0));
  }
  const nodes = [...last.keys()].sort();
  return { points: [...bySec].sort((x, y) => x[0] - y[0]).map(([sec, count]) => ({ sec, count })), nodes, last: new Map(nodes.map((n) => [n, last.get(n) as number])) };
}

/** FNV-1a, 32 bits. */
function fnv(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * The node that reports a pooled series (rendezvous hashing over the contributing nodes): every
 * node with the same view picks the same one, so a beacon seen from several nodes is one detection.
 */
export function seriesOwner(key: string, nodes: readonly string[]): string | null {
  let best: string | null = null;
  let bestScore = -1;
  for (const n of nodes) {
    const score = fnv(`${key}\u0000${n}`);
    if (score > bestScore || (score === bestScore && best !== null && n < best)) {
      best = n;
      bestScore = score;
    }
  }
  return best;
}

export class PooledSeries implements ClusterSeries, Replica {
  readonly spec: NamespaceSpec;
  readonly node: string;
  private readonly o: SeriesOptions;
  /** Own points per series (recent first out), for a resync. */
  private readonly own = new Map<string, Map<number, number>>();
  /** Remote points waiting for the detector. */
  private readonly inbox = new Map<string, SeriesPoints>();
  private readonly dropped;

  constructor(o: SeriesOptions) {
    this.o = o;
    this.spec = o.spec;
    this.node = o.node;
    this.dropped = o.metrics.counter<'reason'>('store_series_dropped_total', 'Pooled beacon series points dropped to stay within bounds (own: kept for a resync; remote: waiting for the detector)', ['reason']);
  }

  opsOf(field: string): string | null {
    return field.includes('|') ? SERIES_OPS : null;
  }

  record(key: string, sec: number): void {
    if (!Number.isInteger(sec)) return;
    let s = this.own.get(key);
    if (s) {
      this.own.delete(key);
      this.own.set(key, s); // most recently used last
    } else {
      s = new Map();
      this.own.set(key, s);
      if (this.own.size > this.o.maxSeries) {
        const oldest = this.own.keys().next().value as string;
        this.dropped.inc({ reason: 'own' }, this.own.get(oldest)?.size ?? 0);
        this.own.delete(oldest);
      }
    }
    const count = (s.get(sec) ?? 0) + 1;
    s.set(sec, count);
    if (s.size > this.o.maxPoints) {
      const oldest = Math.min(...s.keys());
      s.delete(oldest);
      this.dropped.inc({ reason: 'own' });
    }
    this.o.sink.put(NS.series, key, `${sec}|${this.node}`, SERIES_OPS, [sec, count]);
  }

  applyRemote(entries: readonly Entry[]): void {
    const byKey = new Map<string, Map<string, Tuple>>();
    for (const e of entries) {
      const bar = e.field.indexOf('|');
      if (bar <= 0 || e.field.slice(bar + 1) === this.node) continue;
      let m = byKey.get(e.group);
      if (!m) byKey.set(e.group, (m = new Map()));
      m.set(e.field, e.tuple);
    }
    for (const [key, pts] of byKey) {
      const old = this.inbox.get(key);
      const merged = mergeSeries(old ?? new Map(), pts, this.o.maxPoints);
      const lost = (old?.size ?? 0) + pts.size - merged.size;
      if (lost > 0 && old) this.dropped.inc({ reason: 'remote' }, Math.max(0, lost - countShared(old, pts)));
      this.inbox.delete(key);
      this.inbox.set(key, merged);
      if (this.inbox.size > this.o.maxSeries) {
        const oldest = this.inbox.keys().next().value as string;
        this.dropped.inc({ reason: 'remote' }, this.inbox.get(oldest)?.size ?? 0);
        this.inbox.delete(oldest);
      }
    }
  }

  drain(max: number): RemoteSeries[] {
    const out: RemoteSeries[] = [];
    for (const [key, pts] of this.inbox) {
      if (out.length >= max) break;
      this.inbox.delete(key);
      out.push({ key, ...pooled(pts) });
    }
    return out;
  }

  *snapshot(): Generator<Entry> {
    for (const [key, s] of this.own) for (const [sec, count] of s) yield { group: key, field: `${sec}|${this.node}`, tuple: [sec, count] };
  }
}

function countShared(a: ReadonlyMap<string, unknown>, b: ReadonlyMap<string, unknown>): number {
  let n = 0;
  for (const k of b.keys()) if (a.has(k)) n++;
  return n;
}
