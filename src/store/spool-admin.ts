/**
 * Offline / operator access to the spool (the `falco-companion spool` command): stats, list,
 * retry, purge. Short transactions; safe next to a running daemon (WAL + busy_timeout): the
 * daemon re-counts its gauges within ~10 s.
 */
import { alertIdTimeMs } from './alert-id.js';
import type { Db } from './db.js';
import { READY, RECEIVED, countSpool, migrateSpool, prepareSpoolStatements } from './spool-schema.js';

export interface SpoolStats {
  readonly received: number;
  readonly ready: number;
  readonly bytes: number;
  readonly oldest: string | null;
  readonly oldestAgeSeconds: number | null;
  readonly dueNow: number;
  readonly retrying: number;
  readonly deadLetters: number;
  readonly deadBytes: number;
}

export function spoolStats(db: Db, now = Date.now()): SpoolStats {
  migrateSpool(db);
  const st = prepareSpoolStatements(db);
  const c = countSpool(st);
  const minId = (st.minId.get() as { id: string | null }).id;
  const oldestMs = minId ? alertIdTimeMs(minId) : null;
  const dueNow = (db.prepare(`SELECT count(*) AS n FROM spool_alerts WHERE state = ${READY} AND next_attempt_at <= ?`).get(now) as { n: number }).n;
  const retrying = (db.prepare('SELECT count(*) AS n FROM spool_alerts WHERE attempts > 0').get() as { n: number }).n;
  return {
    received: c.received,
    ready: c.ready,
    bytes: c.bytes,
    oldest: oldestMs === null ? null : new Date(oldestMs).toISOString(),
    oldestAgeSeconds: oldestMs === null ? null : Math.max(0, Math.round((now - oldestMs) / 1000)),
    dueNow,
    retrying,
    deadLetters: c.dead,
    deadBytes: c.deadBytes,
  };
}

export interface SpoolListRow {
  readonly id: string;
  readonly state: 'received' | 'ready' | 'dead';
  readonly rule: string;
  readonly priority: string;
  readonly receivedAt: string;
  readonly attempts: number;
  readonly nextAttemptAt: string | null;
  readonly status: number | null;
  readonly lastError: string | null;
  readonly payload?: string;
}

export function spoolList(db: Db, opts: { dead: boolean; limit: number; payload?: boolean }): SpoolListRow[] {
  migrateSpool(db);
  const iso = (ms: number): string => new Date(ms).toISOString();
  if (opts.dead) {
    const rows = db
      .prepare('SELECT id, rule, priority, received_at, attempts, status, last_error, payload FROM spool_dead_letters ORDER BY id LIMIT ?')
      .all(opts.limit) as { id: string; rule: string; priority: string; received_at: number; attempts: number; status: number | null; last_error: string | null; payload: string }[];
    return rows.map((r) => ({
      id: r.id,
      state: 'dead',
      rule: r.rule,
      priority: r.priority,
      receivedAt: iso(r.received_at),
      attempts: r.attempts,
      nextAttemptAt: null,
      status: r.status,
      lastError: r.last_error,
      ...(opts.payload ? { payload: r.payload } : {}),
    }));
  }
  const rows = db
    .prepare('SELECT id, state, rule, priority, received_at, attempts, next_attempt_at, last_error, payload FROM spool_alerts ORDER BY id LIMIT ?')
    .all(opts.limit) as { id: string; state: number; rule: string; priority: string; received_at: number; attempts: number; next_attempt_at: number; last_error: string | null; payload: string }[];
  return rows.map((r) => ({
    id: r.id,
    state: r.state === RECEIVED ? 'received' : 'ready',
    rule: r.rule,
    priority: r.priority,
    receivedAt: iso(r.received_at),
    attempts: r.attempts,
    nextAttemptAt: r.next_attempt_at > 0 ? iso(r.next_attempt_at) : null,
    status: null,
    lastError: r.last_error,
    ...(opts.payload ? { payload: r.payload } : {}),
  }));
}

/** Retry now: ready rows become due at once; with `dead`, dead letters go back to the spool. Returns rows affected. */
export function spoolRetry(db: Db, opts: { dead: boolean }): number {
  migrateSpool(db);
  if (!opts.dead) return db.prepare(`UPDATE spool_alerts SET next_attempt_at = 0 WHERE state = ${READY} AND next_attempt_at > 0`).run().changes;
  return db.transaction(() => {
    const n = db
      .prepare(
        `INSERT OR IGNORE INTO spool_alerts(id, state, payload, bytes, received_at, attempts, next_attempt_at, last_error, rule, priority)
         SELECT id, ${READY}, payload, bytes, received_at, 0, 0, last_error, rule, priority FROM spool_dead_letters`,
      )
      .run().changes;
    db.prepare('DELETE FROM spool_dead_letters').run();
    return n;
  })();
}

/** Delete every row of the spool (or of the dead letters). Returns rows deleted. */
export function spoolPurge(db: Db, opts: { dead: boolean }): number {
  migrateSpool(db);
  return db.prepare(opts.dead ? 'DELETE FROM spool_dead_letters' : 'DELETE FROM spool_alerts').run().changes;
}
