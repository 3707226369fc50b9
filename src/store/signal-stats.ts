/**
 * Signal and finding statistics in the state database (namespace `signal_stats`): what the
 * detection engine saw, as hourly aggregates, never raw events. Written by the statistics
 * observer (src/detect/stats.ts), read by `falco-companion tune` and `explain`.
 *
 * - `signal_stats`: per hour (event time), detector, signal kind, Falco rule and outcome
 *   (consumed, allowlist, ci_window, ci_workload, learning), up to K dimension tuples (the fields
 *   an allow entry or a Falco exception can use, see src/detect/stats-dims.ts) with a count, the
 *   sole remote IP seen (`*`: several), first/last event time and one example alert. Tuples beyond
 *   K are folded into the group's overflow row (`dims = ''`), counted.
 * - `finding_stats`: per hour, detector, detection rule, priority and outcome (emitted, folded),
 *   up to K dedup keys with a count, the evidence (rule, kind, dims, ip of each distinct evidence
 *   signal, capped) and one example; overflow row `key = ''`.
 * - `signal_stats_drops`: observations dropped because the observer queue was full, per hour.
 *
 * A group (one primary key without its last column) is always rewritten whole, so the rows of a
 * group are exactly the writer's in-memory top-K (loaded back when the writer meets the group
 * again, after a restart too).
 */
import type Database from 'better-sqlite3';
import { migrate, type Db } from './db.js';

export const SIGNAL_STATS_NAMESPACE = 'signal_stats';

/** Versioned migrations of the `signal_stats` namespace. Never edit a released step: append. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE signal_stats (
     bucket INTEGER NOT NULL,          -- hour of event time: floor(ms / 3600000)
     detector TEXT NOT NULL,
     kind TEXT NOT NULL,
     rule TEXT NOT NULL,
     outcome TEXT NOT NULL,
     dims TEXT NOT NULL,               -- JSON dimension tuple; '' = overflow row
     count INTEGER NOT NULL,
     ip TEXT,                          -- sole remote IP of the tuple, '*' for several
     first_ms INTEGER NOT NULL,
     last_ms INTEGER NOT NULL,
     example TEXT,                     -- one alert, Falco JSON
     PRIMARY KEY (bucket, detector, kind, rule, outcome, dims)
   ) WITHOUT ROWID;
   CREATE TABLE finding_stats (
     bucket INTEGER NOT NULL,
     detector TEXT NOT NULL,
     rule TEXT NOT NULL,
     priority TEXT NOT NULL,
     outcome TEXT NOT NULL,            -- emitted | folded
     key TEXT NOT NULL,                -- the finding's dedup key; '' = overflow row
     count INTEGER NOT NULL,
     first_ms INTEGER NOT NULL,
     last_ms INTEGER NOT NULL,
     evidence TEXT,                    -- JSON [[rule, kind, dims, ip], ...]
     example TEXT,                     -- JSON {message, incident, time}
     PRIMARY KEY (bucket, detector, rule, priority, outcome, key)
   ) WITHOUT ROWID;
   CREATE TABLE signal_stats_drops (
     bucket INTEGER PRIMARY KEY,
     dropped INTEGER NOT NULL
   );`,
];

export const HOUR_MS = 3_600_000;

export function bucketOfMs(ms: number): number {
  return Math.floor(ms / HOUR_MS);
}

/** One aggregate row of a group (signal tuple or finding key). */
export interface StatEntry {
  count: number;
  firstMs: number;
  lastMs: number;
  /** signal_stats: sole remote IP (`*`: several); finding_stats: unused (null). */
  ip: string | null;
  /** signal_stats: alert JSON; finding_stats: JSON example. */
  example: string | null;
  /** finding_stats only: JSON evidence list. */
  evidence: string | null;
}

export interface SignalGroupKey {
  readonly bucket: number;
  readonly detector: string;
  readonly kind: string;
  readonly rule: string;
  readonly outcome: string;
}

export interface FindingGroupKey {
  readonly bucket: number;
  readonly detector: string;
  readonly rule: string;
  readonly priority: string;
  readonly outcome: string;
}

/** A group as stored: entries by tuple key ('' = overflow). */
export type StoredGroup = Map<string, StatEntry>;

export interface SignalStatRow extends SignalGroupKey, StatEntry {
  /** JSON dims; '' for the overflow row. */
  readonly dims: string;
}

export interface FindingStatRow extends FindingGroupKey, StatEntry {
  /** Dedup key; '' for the overflow row. */
  readonly key: string;
}

type Stmt = Database.Statement<unknown[], unknown>;

interface RawEntry {
  k: string;
  count: number;
  first_ms: number;
  last_ms: number;
  ip: string | null;
  example: string | null;
  evidence: string | null;
}

const toEntry = (r: RawEntry): StatEntry => ({ count: r.count, firstMs: r.first_ms, lastMs: r.last_ms, ip: r.ip, example: r.example, evidence: r.evidence });

/** The statements of the statistics tables (prepared once). */
export class SignalStatsStore {
  private readonly s: Record<
    'loadSignal' | 'delSignal' | 'putSignal' | 'loadFinding' | 'delFinding' | 'putFinding' | 'addDrops' | 'pruneSignal' | 'pruneFinding' | 'pruneDrops' | 'rulesOf',
    Stmt
  >;

  constructor(readonly db: Db) {
    migrate(db, SIGNAL_STATS_NAMESPACE, MIGRATIONS);
    const p = (sql: string): Stmt => db.prepare(sql);
    const sg = 'bucket = ? AND detector = ? AND kind = ? AND rule = ? AND outcome = ?';
    const fg = 'bucket = ? AND detector = ? AND rule = ? AND priority = ? AND outcome = ?';
    this.s = {
      loadSignal: p(`SELECT dims AS k, count, first_ms, last_ms, ip, example, NULL AS evidence FROM signal_stats WHERE ${sg}`),
      delSignal: p(`DELETE FROM signal_stats WHERE ${sg}`),
      putSignal: p('INSERT INTO signal_stats (bucket, detector, kind, rule, outcome, dims, count, ip, first_ms, last_ms, example) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
      loadFinding: p(`SELECT key AS k, count, first_ms, last_ms, NULL AS ip, example, evidence FROM finding_stats WHERE ${fg}`),
      delFinding: p(`DELETE FROM finding_stats WHERE ${fg}`),
      putFinding: p('INSERT INTO finding_stats (bucket, detector, rule, priority, outcome, key, count, first_ms, last_ms, evidence, example) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'),
      addDrops: p('INSERT INTO signal_stats_drops (bucket, dropped) VALUES (?, ?) ON CONFLICT(bucket) DO UPDATE SET dropped = dropped + excluded.dropped'),
      pruneSignal: p('DELETE FROM signal_stats WHERE bucket < ?'),
      pruneFinding: p('DELETE FROM finding_stats WHERE bucket < ?'),
      pruneDrops: p('DELETE FROM signal_stats_drops WHERE bucket < ?'),
      rulesOf: p('SELECT DISTINCT rule FROM signal_stats WHERE bucket = ?'),
    };
  }

  loadSignalGroup(g: SignalGroupKey): StoredGroup {
    const rows = this.s.loadSignal.all(g.bucket, g.detector, g.kind, g.rule, g.outcome) as RawEntry[];
    return new Map(rows.map((r) => [r.k, toEntry(r)]));
  }

  loadFindingGroup(g: FindingGroupKey): StoredGroup {
    const rows = this.s.loadFinding.all(g.bucket, g.detector, g.rule, g.priority, g.outcome) as RawEntry[];
    return new Map(rows.map((r) => [r.k, toEntry(r)]));
  }

  /** Signal rules already recorded in an hour (the per-hour rule cap survives restarts). */
  rulesOfBucket(bucket: number): string[] {
    return (this.s.rulesOf.all(bucket) as { rule: string }[]).map((r) => r.rule);
  }

  /** Replace whole groups and add drop counts, in one transaction. */
  write(signals: readonly (readonly [SignalGroupKey, StoredGroup])[], findings: readonly (readonly [FindingGroupKey, StoredGroup])[], drops: ReadonlyMap<number, number>): void {
    this.db.transaction(() => {
      for (const [g, entries] of signals) {
        this.s.delSignal.run(g.bucket, g.detector, g.kind, g.rule, g.outcome);
        for (const [k, e] of entries) this.s.putSignal.run(g.bucket, g.detector, g.kind, g.rule, g.outcome, k, e.count, e.ip, e.firstMs, e.lastMs, e.example);
      }
      for (const [g, entries] of findings) {
        this.s.delFinding.run(g.bucket, g.detector, g.rule, g.priority, g.outcome);
        for (const [k, e] of entries) this.s.putFinding.run(g.bucket, g.detector, g.rule, g.priority, g.outcome, k, e.count, e.firstMs, e.lastMs, e.evidence, e.example);
      }
      for (const [bucket, n] of drops) this.s.addDrops.run(bucket, n);
    })();
  }

  /** Delete every hour before `bucket`. */
  prune(bucket: number): void {
    this.db.transaction(() => {
      this.s.pruneSignal.run(bucket);
      this.s.pruneFinding.run(bucket);
      this.s.pruneDrops.run(bucket);
    })();
  }
}

// ---------------------------------------------------------------------------------------------
// Reading (tune, explain): plain queries on a database that may be read-only.

interface RawSignalRow extends RawEntry {
  bucket: number;
  detector: string;
  kind: string;
  rule: string;
  outcome: string;
}

interface RawFindingRow extends RawEntry {
  bucket: number;
  detector: string;
  rule: string;
  priority: string;
  outcome: string;
}

/** True when the database has the statistics tables (the companion ran with statistics on). */
export function hasSignalStats(db: Db): boolean {
  return db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'signal_stats'").get() !== undefined;
}

/** The newest hour with statistics, or null when there are none. */
export function newestStatsBucket(db: Db): number | null {
  const r = db.prepare('SELECT MAX(b) AS b FROM (SELECT MAX(bucket) AS b FROM signal_stats UNION ALL SELECT MAX(bucket) FROM finding_stats)').get() as { b: number | null };
  return r.b;
}

export function readSignalStats(db: Db, fromBucket: number, toBucket = Number.MAX_SAFE_INTEGER): SignalStatRow[] {
  const rows = db
    .prepare('SELECT bucket, detector, kind, rule, outcome, dims AS k, count, first_ms, last_ms, ip, example, NULL AS evidence FROM signal_stats WHERE bucket >= ? AND bucket <= ? ORDER BY bucket, detector, kind, rule, outcome, dims')
    .all(fromBucket, toBucket) as RawSignalRow[];
  return rows.map((r) => ({ bucket: r.bucket, detector: r.detector, kind: r.kind, rule: r.rule, outcome: r.outcome, dims: r.k, ...toEntry(r) }));
}

export function readFindingStats(db: Db, fromBucket: number, toBucket = Number.MAX_SAFE_INTEGER): FindingStatRow[] {
  const rows = db
    .prepare('SELECT bucket, detector, rule, priority, outcome, key AS k, count, first_ms, last_ms, NULL AS ip, example, evidence FROM finding_stats WHERE bucket >= ? AND bucket <= ? ORDER BY bucket, detector, rule, priority, outcome, key')
    .all(fromBucket, toBucket) as RawFindingRow[];
  return rows.map((r) => ({ bucket: r.bucket, detector: r.detector, rule: r.rule, priority: r.priority, outcome: r.outcome, key: r.k, ...toEntry(r) }));
}

export function readStatsDrops(db: Db, fromBucket: number, toBucket = Number.MAX_SAFE_INTEGER): number {
  const r = db.prepare('SELECT COALESCE(SUM(dropped), 0) AS n FROM signal_stats_drops WHERE bucket >= ? AND bucket <= ?').get(fromBucket, toBucket) as { n: number };
  return r.n;
}

/** How often one tuple of one signal kind was seen since an hour, per detector and outcome. */
export function readTupleStats(db: Db, kind: string, dims: string, fromBucket: number): { detector: string; outcome: string; count: number; hours: number }[] {
  return db
    .prepare('SELECT detector, outcome, SUM(count) AS count, COUNT(DISTINCT bucket) AS hours FROM signal_stats WHERE bucket >= ? AND kind = ? AND dims = ? GROUP BY detector, outcome ORDER BY detector, outcome')
    .all(fromBucket, kind, dims) as { detector: string; outcome: string; count: number; hours: number }[];
}
