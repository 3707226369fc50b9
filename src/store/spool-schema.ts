/**
 * The spool's tables in the state database (namespace `spool`): versioned migrations and the
 * statements the running spool uses. The offline admin (spool-admin.ts) reads the same tables.
 *
 * `spool_alerts` holds every alert the spool keeps, in one of two states: received (the
 * lossless envelope of the alert as accepted, see envelope.ts) and ready (the final body for the
 * delivering sink). `spool_dead_letters` holds what the sink refused permanently.
 * Ids are ULIDs (alert-id.ts): `ORDER BY id` is acceptance order and `min(id)` the oldest row.
 */
import type Database from 'better-sqlite3';
import { migrate, type Db } from './db.js';

const SPOOL_NAMESPACE = 'spool';
/** Versioned migrations of the `spool` namespace. Never edit a released step: append. */
const SPOOL_MIGRATIONS: readonly string[] = [
  `CREATE TABLE spool_alerts (
     id TEXT PRIMARY KEY,
     state INTEGER NOT NULL,            -- 0 received, 1 ready for delivery
     payload TEXT NOT NULL,             -- received: alert envelope; ready: the sidekick JSON body
     bytes INTEGER NOT NULL,
     received_at INTEGER NOT NULL,      -- ms since the epoch
     attempts INTEGER NOT NULL DEFAULT 0,
     next_attempt_at INTEGER NOT NULL DEFAULT 0,
     last_error TEXT,
     rule TEXT NOT NULL,
     priority TEXT NOT NULL
   );
   CREATE INDEX spool_alerts_due ON spool_alerts(state, next_attempt_at);
   CREATE TABLE spool_dead_letters (
     id TEXT PRIMARY KEY,
     payload TEXT NOT NULL,
     bytes INTEGER NOT NULL,
     received_at INTEGER NOT NULL,
     attempts INTEGER NOT NULL,
     status INTEGER,
     last_error TEXT,
     dead_at INTEGER NOT NULL,
     rule TEXT NOT NULL,
     priority TEXT NOT NULL
   );
   CREATE TABLE spool_probe (x BLOB);`,
  // Delivery and backlog reads walk rows of one state in id order: (state, id) serves both
  // without a sort (the (state, next_attempt_at) index made SQLite sort the whole backlog).
  `DROP INDEX spool_alerts_due;
   CREATE INDEX spool_alerts_state_id ON spool_alerts(state, id);`,
  // File input checkpoints (src/store/checkpoints.ts): written by the spool's writer in order with
  // the alerts, so a position never commits before the lines it covers.
  `CREATE TABLE input_checkpoints (
     path TEXT PRIMARY KEY,             -- the configured input path (resolved)
     dev TEXT NOT NULL,                 -- device and inode of the file being read (decimal)
     ino TEXT NOT NULL,
     offset INTEGER NOT NULL,           -- bytes of complete lines committed (decompressed for gzip)
     fp_len INTEGER NOT NULL,           -- bytes the fingerprint covers (the file's first bytes)
     fp TEXT NOT NULL,                  -- sha256 hex of those bytes ('' when fp_len is 0)
     updated_at INTEGER NOT NULL        -- ms since the epoch
   );`,
];

/** `spool_alerts.state` */
export const RECEIVED = 0;
export const READY = 1;

/** Bring the spool tables to the current version (idempotent). */
export function migrateSpool(db: Db): void {
  migrate(db, SPOOL_NAMESPACE, SPOOL_MIGRATIONS);
}

type Stmt = Database.Statement<unknown[], unknown>;

/** What the running spool executes (prepared once at start). */
export type SpoolStatements = Readonly<
  Record<
    | 'insert'
    | 'getBytes'
    | 'updateReady'
    | 'upsertReady'
    | 'deleteReceived'
    | 'deleteAny'
    | 'retry'
    | 'toDead'
    | 'evictOldest'
    | 'expire'
    | 'receivedAfter'
    | 'due'
    | 'minId'
    | 'countByState'
    | 'countDead'
    | 'probe'
    | 'unprobe'
    | 'getCheckpoint'
    | 'putCheckpoint'
    | 'pruneCheckpoints'
    | 'capCheckpoints',
    Stmt
  >
>;

export function prepareSpoolStatements(db: Db): SpoolStatements {
  const T = 'spool_alerts';
  return {
    insert: db.prepare(`INSERT OR IGNORE INTO ${T}(id, state, payload, bytes, received_at, rule, priority) VALUES (?, ${RECEIVED}, ?, ?, ?, ?, ?)`),
    getBytes: db.prepare(`SELECT bytes, state FROM ${T} WHERE id = ?`),
    updateReady: db.prepare(`UPDATE ${T} SET state = ${READY}, payload = ?, bytes = ? WHERE id = ?`),
    upsertReady: db.prepare(`INSERT INTO ${T}(id, state, payload, bytes, received_at, rule, priority) VALUES (?, ${READY}, ?, ?, ?, ?, ?)`),
    deleteReceived: db.prepare(`DELETE FROM ${T} WHERE id = ? AND state = ${RECEIVED} RETURNING bytes`),
    deleteAny: db.prepare(`DELETE FROM ${T} WHERE id = ? RETURNING bytes, state`),
    retry: db.prepare(`UPDATE ${T} SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?`),
    toDead: db.prepare(
      `INSERT OR REPLACE INTO spool_dead_letters(id, payload, bytes, received_at, attempts, status, last_error, dead_at, rule, priority)
       SELECT id, payload, bytes, received_at, attempts + 1, ?, ?, ?, rule, priority FROM ${T} WHERE id = ?`,
    ),
    evictOldest: db.prepare(`DELETE FROM ${T} WHERE id = (SELECT id FROM ${T} ORDER BY id LIMIT 1) RETURNING bytes, state`),
    expire: db.prepare(`DELETE FROM ${T} WHERE id < ? RETURNING bytes, state`),
    receivedAfter: db.prepare(`SELECT id, payload FROM ${T} WHERE state = ${RECEIVED} AND id > ? ORDER BY state, id LIMIT ?`),
    due: db.prepare(`SELECT id, payload, attempts, received_at, rule FROM ${T} WHERE state = ${READY} AND next_attempt_at <= ? ORDER BY state, id LIMIT ?`),
    minId: db.prepare(`SELECT min(id) AS id FROM ${T}`),
    countByState: db.prepare(`SELECT state, count(*) AS n, coalesce(sum(bytes), 0) AS b FROM ${T} GROUP BY state`),
    countDead: db.prepare('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM spool_dead_letters'),
    // A write that proves the database commits again after a failure (16 KiB: needs real space).
    probe: db.prepare('INSERT INTO spool_probe(x) VALUES (zeroblob(16384))'),
    unprobe: db.prepare('DELETE FROM spool_probe'),
    getCheckpoint: db.prepare('SELECT path, dev, ino, offset, fp_len, fp, updated_at FROM input_checkpoints WHERE path = ?'),
    putCheckpoint: db.prepare(
      `INSERT INTO input_checkpoints(path, dev, ino, offset, fp_len, fp, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(path) DO UPDATE SET dev = excluded.dev, ino = excluded.ino, offset = excluded.offset, fp_len = excluded.fp_len, fp = excluded.fp, updated_at = excluded.updated_at`,
    ),
    pruneCheckpoints: db.prepare('DELETE FROM input_checkpoints WHERE path <> ? AND updated_at < ?'),
    capCheckpoints: db.prepare('DELETE FROM input_checkpoints WHERE path <> ? AND path NOT IN (SELECT path FROM input_checkpoints ORDER BY updated_at DESC LIMIT ?)'),
  };
}

/** Rows and payload bytes by state (the live spool's recount and `spool stats`). */
export function countSpool(st: Pick<SpoolStatements, 'countByState' | 'countDead'>): { received: number; ready: number; bytes: number; dead: number; deadBytes: number } {
  const rows = st.countByState.all() as { state: number; n: number; b: number }[];
  let received = 0;
  let ready = 0;
  let bytes = 0;
  for (const r of rows) {
    if (r.state === RECEIVED) received = r.n;
    else ready += r.n;
    bytes += r.b;
  }
  const dead = st.countDead.get() as { n: number; b: number };
  return { received, ready, bytes, dead: dead.n, deadBytes: dead.b };
}
