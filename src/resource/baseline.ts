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
 */
import type { Logger } from '../logger.js';
import { errorCode, errorMessage } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { migrate, type Db } from '../store/db.js';
import { LogSketch } from './sketch.js';

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
];

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
  }

  /** Statistics of `key` at event time `tNs` (null: unknown key or empty window). */
  stats(key: string, tNs: bigint): BaselineStats | null {
    const e = this.entries.get(key);
    if (!e) return null;
    const head = this.slotOf(tNs);
    this.expire(e, head);
    if (e.slots.length === 0) return null;
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
    this.loaded = true;
    if (bad > 0) this.o.metrics.errors.inc({ component: 'source/metrics', code: 'E_BASELINE_CORRUPT' }, bad);
    this.o.logger.info({ keys: this.entries.size, unreadable_slots: bad }, 'resource baselines loaded');
  }

  /** Write changed keys and slots in one transaction. Returns rows written; never throws. */
  flush(): number {
    const db = this.o.db;
    if (!db || (this.dirty.size === 0 && this.deleted.size === 0)) return 0;
    let n = 0;
    try {
      const upKey = db.prepare('INSERT INTO resource_baseline_keys(key, first_ns, last_ns) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET first_ns = excluded.first_ns, last_ns = excluded.last_ns');
      const upSlot = db.prepare('INSERT INTO resource_baseline_slots(key, slot, sketch) VALUES (?, ?, ?) ON CONFLICT(key, slot) DO UPDATE SET sketch = excluded.sketch');
      const delSlot = db.prepare('DELETE FROM resource_baseline_slots WHERE key = ? AND slot = ?');
      const delKey = db.prepare('DELETE FROM resource_baseline_keys WHERE key = ?');
      const delKeySlots = db.prepare('DELETE FROM resource_baseline_slots WHERE key = ?');
      db.transaction(() => {
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
    this.lastFlushError = null;
    this.flushes.inc({ result: 'ok' });
    return n;
  }
}
