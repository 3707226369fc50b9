/**
 * Robust resource baselines: per key (`<group>|<metric>` or `<group>|<metric>|tod<bucket>/<n>`), a
 * sliding window of `slots` quantile sketches (src/resource/sketch.ts), each covering
 * window/slots of event time; the oldest slot falls out as time moves on. Statistics (median,
 * quartiles, 99th percentile) come from the merged slots; a key judges nothing until it has
 * covered `learningPeriodMs` and holds `minSamples` values.
 *
 * Bounded: at most `maxKeys` keys, the least recently updated evicted first (counted). Persisted in
 * the state database (namespace `resource_baseline`, one row per (key, slot)); only slots changed
 * since the last flush are written, in one transaction; restored by `load()` on start.
 *
 * Shared across nodes (`store.backend: redis`, namespace `rb`, docs/cluster-store.md): the values
 * of a workload or image baseline (not `container:` ones) are reported to the cluster store, merged
 * per key between flushes, as first seen, last seen, peak, samples, their sum; what the cluster learnt comes back per key
 * (first = min, last = max, peak = max, counts and sums add) and is kept here (bounded by
 * `maxKeys`, persisted). A key the cluster has learnt (its span from the earliest first seen
 * covers the learning period, with `minSamples` samples) is not learning on this node: until the
 * local window holds `minSamples` values, it is judged against the cluster's mean (as median and
 * quartiles) and peak (as 99th percentile), which only raises the thresholds.
 */
import type { Logger } from '../logger.js';
import { errorCode, errorMessage } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { migrate, type Db } from '../store/db.js';
import { bucketValue, LogSketch } from './sketch.js';
import { mergeTuple, type Tuple } from '../cluster/tuple.js';
import { NS, RESOURCE_OPS, type ChangeSink, type Entry as StoreEntry } from '../cluster/types.js';

export const RESOURCE_BASELINE_NAMESPACE = 'resource_baseline';

const MIGRATIONS = [
  `CREATE TABLE resource_baseline_keys (
     key TEXT PRIMARY KEY,
     first_ns INTEGER NOT NULL,
     last_ns INTEGER NOT NULL
   );
   CREATE TABLE resource_baseline_slots (
     key TEXT NOT NULL,
     slot INTEGER NOT NULL,
     sketch TEXT NOT NULL,
     PRIMARY KEY (key, slot)
   ) WITHOUT ROWID;`,
  `CREATE TABLE resource_baseline_cluster (
     key TEXT PRIMARY KEY,
     first_ms INTEGER NOT NULL,
     last_ms INTEGER NOT NULL,
     peak REAL NOT NULL,
     count REAL NOT NULL,
     sum REAL NOT NULL
   ) WITHOUT ROWID;`,
];

/** Values go to the cluster store in thousandths (its cells are integers: CPU cores, rates). */
export const RESOURCE_VALUE_SCALE = 1000;

/** What the cluster learnt about one key (values scaled by {@link RESOURCE_VALUE_SCALE}). */
interface ClusterView {
  firstMs: number;
  lastMs: number;
  peak: number;
  count: number;
  sum: number;
}

/** `<group>|<metric>[|tod...]` → the cluster store's group and field; null for per-container keys. */
export function sharedKey(key: string): { group: string; field: string } | null {
  const bar = key.indexOf('|');
  if (bar <= 0 || bar === key.length - 1 || key.startsWith('container:')) return null;
  return { group: key.slice(0, bar), field: key.slice(bar + 1) };
}

export interface BaselineSettings {
  readonly windowMs: number;
  readonly slots: number;
  readonly learningPeriodMs: number;
  readonly minSamples: number;
  readonly maxKeys: number;
}

export interface BaselineStats {
  readonly n: number;
  readonly median: number;
  readonly p25: number;
  readonly p75: number;
  readonly p99: number;
  /** Event time covered, ns. */
  readonly spanNs: bigint;
  /** Covered the learning period with enough samples: may judge. */
  readonly learnt: boolean;
}

interface Slot {
  readonly idx: number;
  readonly sk: LogSketch;
  dirty: boolean;
}

interface Entry {
  readonly key: string;
  firstNs: bigint;
  lastNs: bigint;
  slots: Slot[];
  /** Slots dropped since the last flush (their rows are deleted). */
  dropped: number[];
  stats: BaselineStats | null;
  /** `count` and newest slot when `stats` was computed. */
  statsN: number;
  statsHead: number;
}

export interface BaselineStoreOptions {
  readonly settings: BaselineSettings;
  /** null: in memory only (replays, tests). */
  readonly db: Db | null;
  /** The cluster store's write-behind outbox (`store.backend: redis`); absent: this node only. */
  readonly cluster?: ChangeSink | null;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

export class ResourceBaselines {
  private readonly s: BaselineSettings;
  private readonly slotNs: bigint;
  private readonly learnNs: bigint;
  /** LRU order: least recently updated first. */
  private readonly entries = new Map<string, Entry>();
  private readonly dirty = new Set<Entry>();
  /** Keys evicted since the last flush (rows deleted). */
  private readonly deleted = new Set<string>();
  /** What the cluster learnt per key (LRU: least recently merged first). */
  private readonly shared = new Map<string, ClusterView>();
  private readonly sharedDirty = new Set<string>();
  private readonly sharedDeleted = new Set<string>();
  /**
   * Samples of shared keys not yet handed to the cluster store, merged per key (first min, last
   * max, peak max, counts and sums add): handed over at each {@link flush}, so the store gets one
   * entry per key and flush_interval instead of one per sample (30 times fewer at the defaults).
   * At most maxKeys keys; more hand over early.
   */
  private readonly outbox = new Map<string, { readonly group: string; readonly field: string; t: Tuple }>();
  private loaded = false;
  private lastFlushError: string | null = null;
  private readonly evictions;
  private readonly flushes;

  constructor(private readonly o: BaselineStoreOptions) {
    this.s = o.settings;
    this.slotNs = BigInt(Math.max(1, Math.floor(o.settings.windowMs / o.settings.slots))) * 1_000_000n;
    this.learnNs = BigInt(Math.round(o.settings.learningPeriodMs)) * 1_000_000n;
    this.evictions = o.metrics.counter('resource_baseline_evictions_total', 'Resource baselines evicted to stay within metrics.baseline.max_keys');
    this.flushes = o.metrics.counter<'result'>('resource_baseline_flushes_total', 'Resource baseline writes to the state database by result', ['result']);
    const entries = this.entries;
    o.metrics.gauge('resource_baseline_keys', 'Resource baselines held (workload × metric [× time-of-day bucket])', [], function () {
      this.set(entries.size);
    });
  }

  get size(): number {
    return this.entries.size;
  }

  get flushError(): string | null {
    return this.lastFlushError;
  }

  /** Slot number of an event time. */
  private slotOf(tNs: bigint): number {
    return Number(tNs / this.slotNs);
  }

  /** Drop slots that left the window ending at slot `head`. */
  private expire(e: Entry, head: number): void {
    const oldest = head - this.s.slots + 1;
    if (e.slots.length === 0 || (e.slots[0] as Slot).idx >= oldest) return;
    const keep: Slot[] = [];
    for (const sl of e.slots) {
      if (sl.idx >= oldest) keep.push(sl);
      else e.dropped.push(sl.idx);
    }
    e.slots = keep;
    e.stats = null;
    // The window restarted empty: so does the learning period.
    const first = keep[0];
    if (first) {
      const start = BigInt(first.idx) * this.slotNs;
      if (start > e.firstNs) e.firstNs = start;
    }
    this.dirty.add(e);
  }

  /** Record one value at event time `tNs`. */
  add(key: string, value: number, tNs: bigint): void {
    if (!Number.isFinite(value)) return;
    let e = this.entries.get(key);
    if (e) {
      this.entries.delete(key);
      this.entries.set(key, e);
    } else {
      e = { key, firstNs: tNs, lastNs: tNs, slots: [], dropped: [], stats: null, statsN: 0, statsHead: 0 };
      this.entries.set(key, e);
      this.deleted.delete(key);
      this.trim();
    }
    const idx = this.slotOf(tNs);
    this.expire(e, idx);
    if (e.slots.length === 0) e.firstNs = tNs;
    let slot = e.slots[e.slots.length - 1];
    if (!slot || slot.idx < idx) {
      slot = { idx, sk: new LogSketch(), dirty: true };
      e.slots.push(slot);
    } else if (slot.idx > idx) {
      // A late value (clock step back): into the slot it belongs to when still kept, else dropped.
      slot = e.slots.find((x) => x.idx === idx);
      if (!slot) return;
    }
    slot.sk.add(value);
    slot.dirty = true;
    if (tNs < e.firstNs) e.firstNs = tNs;
    if (tNs > e.lastNs) e.lastNs = tNs;
    this.dirty.add(e);
    const sk = this.o.cluster ? sharedKey(key) : null;
    if (sk) {
      const ms = Number(tNs / 1_000_000n);
      const v = Math.round(value * RESOURCE_VALUE_SCALE);
      const t: Tuple = [ms, ms, v, 1, v];
      const pending = this.outbox.get(key);
      if (pending) pending.t = mergeTuple(RESOURCE_OPS, pending.t, t);
      else {
        this.outbox.set(key, { group: sk.group, field: sk.field, t });
        if (this.outbox.size >= this.s.maxKeys) this.handOver();
      }
    }
  }

  /** Hand the samples gathered since the last hand-over to the cluster store's outbox. */
  private handOver(): void {
    const c = this.o.cluster;
    if (c) for (const p of this.outbox.values()) c.put(NS.resources, p.group, p.field, RESOURCE_OPS, p.t);
    this.outbox.clear();
  }

  /**
   * Merge what the cluster learnt (pulled entries: the store's totals, which only grow, so every
   * cell merges by min or max here). Never reported back.
   */
  mergeRemote(entries: readonly StoreEntry[]): void {
    for (const x of entries) {
      const [first, last, peak, count, sum] = x.tuple;
      if (typeof first !== 'number' || typeof last !== 'number' || typeof count !== 'number') continue;
      const key = `${x.group}|${x.field}`;
      const old = this.shared.get(key);
      const next: ClusterView = {
        firstMs: Math.min(first, old?.firstMs ?? Infinity),
        lastMs: Math.max(last, old?.lastMs ?? -Infinity),
        peak: Math.max(typeof peak === 'number' ? peak : 0, old?.peak ?? 0),
        count: Math.max(count, old?.count ?? 0),
        sum: Math.max(typeof sum === 'number' ? sum : 0, old?.sum ?? 0),
      };
      this.shared.delete(key);
      this.shared.set(key, next);
      this.sharedDirty.add(key);
      this.sharedDeleted.delete(key);
    }
    this.trimShared();
  }

  /** This node's baselines as cluster entries (a resync or `baseline export`): sketch estimates. */
  *snapshot(): Generator<StoreEntry> {
    for (const e of this.entries.values()) {
      const sk = sharedKey(e.key);
      if (!sk) continue;
      let count = 0;
      let sum = 0;
      let peak = 0;
      for (const sl of e.slots) {
        count += sl.sk.count;
        sl.sk.bins.forEach((c, k) => {
          if (c === 0) return;
          const v = bucketValue(sl.sk.offset + k);
          sum += v * c;
          if (v > peak) peak = v;
        });
      }
      if (count === 0) continue;
      const scale = (v: number): number => Math.round(v * RESOURCE_VALUE_SCALE);
      yield { group: sk.group, field: sk.field, tuple: [Number(e.firstNs / 1_000_000n), Number(e.lastNs / 1_000_000n), scale(peak), count, scale(sum)] };
    }
  }

  /** Keys whose cluster view is kept. */
  get sharedSize(): number {
    return this.shared.size;
  }

  private trimShared(): void {
    while (this.shared.size > this.s.maxKeys) {
      const oldest = this.shared.keys().next().value as string;
      this.shared.delete(oldest);
      this.sharedDirty.delete(oldest);
      this.sharedDeleted.add(oldest);
      this.evictions.inc();
    }
    for (const k of this.sharedDeleted) {
      if (this.sharedDeleted.size <= this.s.maxKeys) break;
      this.sharedDeleted.delete(k);
    }
  }

  /**
   * The cluster's statistics of a key it has learnt (see the file comment), or null. `local`:
   * this node's first and last times and samples of the key.
   */
  private clusterStats(key: string, local: { firstNs: bigint; lastNs: bigint } | null): BaselineStats | null {
    const c = this.shared.get(key);
    if (!c || c.count < this.s.minSamples) return null;
    let firstNs = BigInt(Math.trunc(c.firstMs)) * 1_000_000n;
    let lastNs = BigInt(Math.trunc(c.lastMs)) * 1_000_000n;
    if (local && local.firstNs < firstNs) firstNs = local.firstNs;
    if (local && local.lastNs > lastNs) lastNs = local.lastNs;
    const spanNs = lastNs - firstNs;
    if (spanNs < this.learnNs) return null;
    const mean = c.sum / c.count / RESOURCE_VALUE_SCALE;
    const peak = Math.max(mean, c.peak / RESOURCE_VALUE_SCALE);
    return { n: c.count, median: mean, p25: mean, p75: mean, p99: peak, spanNs, learnt: true };
  }

  /** Statistics of `key` at event time `tNs` (null: unknown key or empty window). */
  stats(key: string, tNs: bigint): BaselineStats | null {
    const e = this.entries.get(key);
    if (!e) return this.clusterStats(key, null);
    const head = this.slotOf(tNs);
    this.expire(e, head);
    if (e.slots.length === 0) return this.clusterStats(key, null);
    let n = 0;
    for (const sl of e.slots) n += sl.sk.count;
    const newest = (e.slots[e.slots.length - 1] as Slot).idx;
    // Recompute when the slot set changed or the count grew by 2 % (quantiles move slowly).
    if (!e.stats || e.statsHead !== newest || n - e.statsN > Math.max(1, e.statsN / 50)) {
      const merged = new LogSketch();
      for (const sl of e.slots) merged.merge(sl.sk);
      e.stats = {
        n,
        median: merged.quantile(0.5),
        p25: merged.quantile(0.25),
        p75: merged.quantile(0.75),
        p99: merged.quantile(0.99),
        spanNs: 0n,
        learnt: false,
      };
      e.statsN = n;
      e.statsHead = newest;
    }
    const spanNs = e.lastNs - e.firstNs;
    const learnt = spanNs >= this.learnNs && n >= this.s.minSamples;
    if (!learnt && this.shared.size > 0) {
      // Learnt by the cluster: enough local samples keep the local quantiles over the cluster's span.
      const c = this.clusterStats(key, e);
      if (c && n >= this.s.minSamples) return { ...e.stats, n, spanNs: c.spanNs, learnt: true };
      if (c) return c;
    }
    if (e.stats.spanNs !== spanNs || e.stats.learnt !== learnt || e.stats.n !== n) e.stats = { ...e.stats, n, spanNs, learnt };
    return e.stats;
  }

  private trim(): void {
    while (this.entries.size > this.s.maxKeys) {
      const oldest = this.entries.values().next().value as Entry;
      this.entries.delete(oldest.key);
      this.dirty.delete(oldest);
      this.deleted.add(oldest.key);
      this.evictions.inc();
    }
    // While the database refuses writes, keep the pending deletes bounded too (a row left behind
    // comes back at the next start and is trimmed again then).
    for (const k of this.deleted) {
      if (this.deleted.size <= this.s.maxKeys) break;
      this.deleted.delete(k);
    }
  }

  /** Create tables and restore the persisted baselines (no-op without a database). */
  load(): void {
    if (this.loaded || !this.o.db) {
      this.loaded = true;
      return;
    }
    const db = this.o.db;
    migrate(db, RESOURCE_BASELINE_NAMESPACE, MIGRATIONS);
    const keys = db.prepare('SELECT key, first_ns, last_ns FROM resource_baseline_keys ORDER BY last_ns ASC').safeIntegers(true).all() as { key: string; first_ns: bigint; last_ns: bigint }[];
    const slots = db.prepare('SELECT key, slot, sketch FROM resource_baseline_slots ORDER BY key, slot').safeIntegers(false).all() as { key: string; slot: number; sketch: string }[];
    const byKey = new Map<string, Slot[]>();
    let bad = 0;
    for (const r of slots) {
      const sk = LogSketch.decode(r.sketch);
      if (!sk) {
        bad++;
        continue;
      }
      let arr = byKey.get(r.key);
      if (!arr) byKey.set(r.key, (arr = []));
      arr.push({ idx: r.slot, sk, dirty: false });
    }
    for (const k of keys) {
      const sl = byKey.get(k.key) ?? [];
      this.entries.set(k.key, { key: k.key, firstNs: k.first_ns, lastNs: k.last_ns, slots: sl, dropped: [], stats: null, statsN: 0, statsHead: 0 });
    }
    this.trim();
    const shared = db.prepare('SELECT key, first_ms, last_ms, peak, count, sum FROM resource_baseline_cluster ORDER BY last_ms ASC').all() as { key: string; first_ms: number; last_ms: number; peak: number; count: number; sum: number }[];
    for (const r of shared) this.shared.set(r.key, { firstMs: r.first_ms, lastMs: r.last_ms, peak: r.peak, count: r.count, sum: r.sum });
    this.trimShared();
    this.loaded = true;
    if (bad > 0) this.o.metrics.errors.inc({ component: 'source/metrics', code: 'E_BASELINE_CORRUPT' }, bad);
    this.o.logger.info({ keys: this.entries.size, unreadable_slots: bad }, 'resource baselines loaded');
  }

  /**
   * Hand the samples gathered since the last flush to the cluster store (when shared), then write
   * changed keys and slots in one transaction. Returns rows written; never throws.
   */
  flush(): number {
    this.handOver();
    const db = this.o.db;
    if (!db || (this.dirty.size === 0 && this.deleted.size === 0 && this.sharedDirty.size === 0 && this.sharedDeleted.size === 0)) return 0;
    let n = 0;
    try {
      const upKey = db.prepare('INSERT INTO resource_baseline_keys(key, first_ns, last_ns) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET first_ns = excluded.first_ns, last_ns = excluded.last_ns');
      const upSlot = db.prepare('INSERT INTO resource_baseline_slots(key, slot, sketch) VALUES (?, ?, ?) ON CONFLICT(key, slot) DO UPDATE SET sketch = excluded.sketch');
      const delSlot = db.prepare('DELETE FROM resource_baseline_slots WHERE key = ? AND slot = ?');
      const delKey = db.prepare('DELETE FROM resource_baseline_keys WHERE key = ?');
      const delKeySlots = db.prepare('DELETE FROM resource_baseline_slots WHERE key = ?');
      const upShared = db.prepare('INSERT INTO resource_baseline_cluster(key, first_ms, last_ms, peak, count, sum) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET first_ms = excluded.first_ms, last_ms = excluded.last_ms, peak = excluded.peak, count = excluded.count, sum = excluded.sum');
      const delShared = db.prepare('DELETE FROM resource_baseline_cluster WHERE key = ?');
      db.transaction(() => {
        for (const key of this.sharedDeleted) {
          delShared.run(key);
          n++;
        }
        for (const key of this.sharedDirty) {
          const c = this.shared.get(key);
          if (!c) continue;
          upShared.run(key, Math.trunc(c.firstMs), Math.trunc(c.lastMs), c.peak, c.count, c.sum);
          n++;
        }
        for (const key of this.deleted) {
          delKey.run(key);
          delKeySlots.run(key);
          n++;
        }
        for (const e of this.dirty) {
          upKey.run(e.key, e.firstNs, e.lastNs);
          n++;
          for (const idx of e.dropped) {
            delSlot.run(e.key, idx);
            n++;
          }
          for (const sl of e.slots) {
            if (!sl.dirty) continue;
            upSlot.run(e.key, sl.idx, sl.sk.encode());
            n++;
          }
        }
      })();
    } catch (err) {
      this.flushes.inc({ result: 'error' });
      this.o.metrics.errors.inc({ component: 'source/metrics', code: errorCode(err) });
      const msg = errorMessage(err);
      if (msg !== this.lastFlushError) this.o.logger.error({ error: msg }, 'resource baseline flush failed; will retry');
      this.lastFlushError = msg;
      return 0;
    }
    for (const e of this.dirty) {
      e.dropped = [];
      for (const sl of e.slots) sl.dirty = false;
    }
    this.dirty.clear();
    this.deleted.clear();
    this.sharedDirty.clear();
    this.sharedDeleted.clear();
    this.lastFlushError = null;
    this.flushes.inc({ result: 'ok' });
    return n;
  }
}
