/**
 * The journal's table in the state database (namespace `journal`): one row per detection record,
 * keyed by `companion.alert_id`, indexed by incident, container, event time and notify key. Rows
 * are written in batches (one transaction each, src/journal/journal.ts) and pruned by count (the
 * oldest first) and by age (wall clock when recorded). Readers (report, tune, explain) open the
 * database read-only while the daemon writes (WAL).
 */
import type Database from 'better-sqlite3';
import { migrate, type Db } from '../store/db.js';
import { JOURNAL_RECORD_VERSION, type DetectionQuery, type DetectionRecord, type JournalReader } from './types.js';

export const JOURNAL_NAMESPACE = 'journal';
const TABLE = 'journal_detections';

const MIGRATIONS = [
  `CREATE TABLE ${TABLE} (
     seq INTEGER PRIMARY KEY,
     id TEXT NOT NULL UNIQUE,
     time_ns INTEGER NOT NULL,
     recorded_ms INTEGER NOT NULL,
     incident TEXT,
     detector TEXT,
     container TEXT,
     dkey TEXT,
     folded INTEGER NOT NULL DEFAULT 0,
     body TEXT NOT NULL
   );
   CREATE INDEX ${TABLE}_incident ON ${TABLE}(incident);
   CREATE INDEX ${TABLE}_container ON ${TABLE}(container);
   CREATE INDEX ${TABLE}_time ON ${TABLE}(time_ns);
   CREATE INDEX ${TABLE}_recorded ON ${TABLE}(recorded_ms);
   CREATE INDEX ${TABLE}_dkey ON ${TABLE}(dkey);`,
];

const MAX_LIST = 10_000;

type Stmt = Database.Statement<unknown[], unknown>;

interface Row {
  readonly body: string;
  readonly folded: number;
}

/** A fold: `count` more findings of notify key `key` after its last detection was sent. */
export interface Fold {
  readonly key: string;
  readonly count: number;
}

export interface PruneResult {
  readonly byCount: number;
  readonly byAge: number;
}

function containerOf(r: DetectionRecord): string {
  const c = r.outputFields['container.id'];
  return typeof c === 'string' && c !== '' ? c.toLowerCase() : 'host';
}

function decode(row: Row | undefined): DetectionRecord | null {
  if (!row) return null;
  const r = JSON.parse(row.body) as DetectionRecord;
  if (r.v !== JOURNAL_RECORD_VERSION) return null; // a newer build wrote it: not ours to read
  return { ...r, folded: row.folded };
}

function decodeAll(rows: readonly Row[]): DetectionRecord[] {
  const out: DetectionRecord[] = [];
  for (const row of rows) {
    const r = decode(row);
    if (r) out.push(r);
  }
  return out;
}

const bound = (n: number | undefined, def: number): number => Math.max(1, Math.min(MAX_LIST, Math.floor(n ?? def)));

/** The journal table. `writable: false` (read-only database): no migration, an absent table reads as empty. */
export class JournalStore implements JournalReader {
  private readonly present: boolean;
  private readonly q;

  constructor(
    private readonly db: Db,
    opts: { readonly writable?: boolean } = {},
  ) {
    if (opts.writable !== false) migrate(db, JOURNAL_NAMESPACE, MIGRATIONS);
    this.present = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(TABLE) !== undefined;
    const cols = 'body, folded';
    const prep = (sql: string): Stmt | null => (this.present ? db.prepare(sql) : null);
    this.q = {
      get: prep(`SELECT ${cols} FROM ${TABLE} WHERE id = ?`),
      incident: prep(`SELECT ${cols} FROM ${TABLE} WHERE incident = ? ORDER BY time_ns, seq LIMIT ?`),
      last: prep(`SELECT ${cols} FROM ${TABLE} ORDER BY seq DESC LIMIT ?`),
      container: prep(`SELECT ${cols} FROM ${TABLE} WHERE container = ? ORDER BY seq DESC LIMIT ?`),
      containerPrefix: prep(`SELECT ${cols} FROM ${TABLE} WHERE container >= ? AND container < ? ORDER BY seq DESC LIMIT ?`),
      count: prep(`SELECT count(*) AS n FROM ${TABLE}`),
    };
  }

  get(id: string): DetectionRecord | null {
    return decode(this.q.get?.get(id) as Row | undefined);
  }

  byIncident(incident: string, limit?: number): DetectionRecord[] {
    return decodeAll((this.q.incident?.all(incident, bound(limit, 1000)) ?? []) as Row[]);
  }

  last(n: number): DetectionRecord[] {
    return decodeAll((this.q.last?.all(bound(n, 1)) ?? []) as Row[]);
  }

  byContainer(containerId: string, limit?: number): DetectionRecord[] {
    const c = containerId.toLowerCase();
    const n = bound(limit, 100);
    if (c === 'host' || c.length > 12) {
      // A full id: Falco's alerts carry the 12-character form; match both.
      const rows = [...((this.q.container?.all(c, n) ?? []) as Row[]), ...(c.length > 12 ? ((this.q.container?.all(c.slice(0, 12), n) ?? []) as Row[]) : [])];
      return decodeAll(rows).sort((a, b) => (BigInt(b.timeNs) > BigInt(a.timeNs) ? 1 : -1)).slice(0, n);
    }
    // A short id: every longer id starting with it.
    return decodeAll((this.q.containerPrefix?.all(c, c + '\u{10ffff}', n) ?? []) as Row[]);
  }

  list(q: DetectionQuery = {}): DetectionRecord[] {
    if (!this.present) return [];
    const where: string[] = [];
    const args: (bigint | string | number)[] = [];
    if (q.sinceNs !== undefined) {
      where.push('time_ns >= ?');
      args.push(q.sinceNs);
    }
    if (q.untilNs !== undefined) {
      where.push('time_ns < ?');
      args.push(q.untilNs);
    }
    if (q.detector !== undefined) {
      where.push('detector = ?');
      args.push(q.detector);
    }
    args.push(bound(q.limit, 1000));
    const sql = `SELECT body, folded FROM ${TABLE}${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY time_ns, seq LIMIT ?`;
    return decodeAll(this.db.prepare(sql).all(...args) as Row[]);
  }

  count(): number {
    return (this.q.count?.get() as { n: number } | undefined)?.n ?? 0;
  }

  /** The writer's statements, prepared on first use (a read-only store never prepares them). */
  private w: { insert: Stmt; fold: Stmt; byAge: Stmt; byCount: Stmt } | null = null;

  private writer(): { insert: Stmt; fold: Stmt; byAge: Stmt; byCount: Stmt } {
    return (this.w ??= {
      insert: this.db.prepare(`INSERT OR IGNORE INTO ${TABLE}(id, time_ns, recorded_ms, incident, detector, container, dkey, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
      fold: this.db.prepare(`UPDATE ${TABLE} SET folded = folded + ? WHERE seq = (SELECT seq FROM ${TABLE} WHERE dkey = ? ORDER BY seq DESC LIMIT 1)`),
      byAge: this.db.prepare(`DELETE FROM ${TABLE} WHERE recorded_ms < ?`),
      // Rows leave only from the old end, so seq is contiguous: the newest N have seq > max - N.
      byCount: this.db.prepare(`DELETE FROM ${TABLE} WHERE seq <= (SELECT max(seq) FROM ${TABLE}) - ?`),
    });
  }

  /** Write records and folds in one transaction (a record already there keeps its row). */
  write(records: readonly DetectionRecord[], folds: readonly Fold[]): number {
    const { insert, fold } = this.writer();
    let written = 0;
    this.db.transaction(() => {
      for (const r of records) {
        written += insert.run(r.id, BigInt(r.timeNs), r.recordedAtMs, r.incident, r.detector, containerOf(r), r.key, JSON.stringify(r)).changes;
      }
      for (const f of folds) fold.run(f.count, f.key);
    })();
    return written;
  }

  /** Delete beyond `maxRecords` (oldest first) and older than `maxAgeMs` (0: no age limit). */
  prune(nowMs: number, maxRecords: number, maxAgeMs: number): PruneResult {
    const w = this.writer();
    const byAge = maxAgeMs > 0 ? w.byAge.run(nowMs - maxAgeMs).changes : 0;
    const byCount = w.byCount.run(maxRecords).changes;
    return { byCount, byAge };
  }
}
