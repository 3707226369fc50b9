/**
 * The durable spool (`spool`): the intake when `spool.enabled`, and the queue the sidekick
 * delivery loop works from. One SQLite table in the state database (WAL, versioned migrations,
 * namespace `spool`).
 *
 * Row life: `submit` → state received (committed before the promise resolves: that is what
 * "accepted" means) → the pipeline takes it, enriches, detects, routes → the spool sink marks it
 * ready with the final sidekick body → the delivery loop sends it and deletes it (or moves it to
 * `spool_dead_letters` on a permanent failure). Rows no sink kept (routed away, signal-only, no
 * durable sink) are deleted when the pipeline calls `done`. After a crash, received rows go
 * through the pipeline again and ready rows are delivered again: at least once, duplicates
 * carry the same `companion.alert_id`.
 *
 * Every write goes through one buffer committed as a group (one transaction per event-loop turn
 * or `commit_interval`, at most `commit_batch` operations): `submit` callers are resolved after
 * the commit. A failed commit (disk full, read-only, locked, I/O error, corruption) rejects the
 * submits in it with {@link SpoolUnavailableError} (a QueueFullError: HTTP 503 + Retry-After,
 * polling sources wait), turns readiness false, and is retried every second until it works.
 */
import type Database from 'better-sqlite3';
import type { Counter, Gauge, Histogram } from 'prom-client';
import { alertFromJson, serializeAlert, withEnrichment, type Alert, type EnrichValue, type OriginKind } from '../alert.js';
import { systemClock, type Clock } from '../clock.js';
import type { Component, ComponentHealth } from '../component.js';
import type { Config } from '../config/schema.js';
import { CompanionError, QueueFullError, StoppedError, errorMessage } from '../errors.js';
import { LosslessNumber, isJsonObject, parse } from '../json/lossless.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Intake, PipelineIntake } from '../pipeline/types.js';
import { AlertIdGenerator, alertIdFloor, alertIdOf, alertIdTimeMs } from './alert-id.js';
import { migrate, type Db } from './db.js';

export type SpoolConfig = Config['spool'];

export const SPOOL_NAMESPACE = 'spool';
/** Versioned migrations of the `spool` namespace. Never edit a released step: append. */
export const SPOOL_MIGRATIONS: readonly string[] = [
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
];

export const RECEIVED = 0;
export const READY = 1;

/** The spool cannot keep alerts right now (disk full, read-only, locked, corrupt). */
export class SpoolUnavailableError extends QueueFullError {
  readonly sqliteCode: string;
  readonly path: string;
  constructor(path: string, sqliteCode: string, cause: string, retryAfterSeconds: number) {
    super('spool', retryAfterSeconds);
    this.name = 'SpoolUnavailableError';
    this.message = `spool ${path}: ${cause} (${sqliteCode}); alerts are refused until it recovers`;
    this.sqliteCode = sqliteCode;
    this.path = path;
  }
}

/** Sort a SQLite failure into a human cause. */
export function describeDbError(err: unknown): { code: string; cause: string } {
  const raw = err && typeof err === 'object' && 'code' in err ? String((err as { code: unknown }).code) : '';
  const code = /^SQLITE_[A-Z_]+$/.test(raw) ? raw : raw === '' ? 'E_UNKNOWN' : 'E_OTHER';
  const msg = errorMessage(err);
  if (code.startsWith('SQLITE_FULL')) return { code, cause: 'disk full (free space on the state directory filesystem)' };
  if (code.startsWith('SQLITE_READONLY')) return { code, cause: `read-only (check permissions and mount options): ${msg}` };
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return { code, cause: 'database locked by another process beyond busy_timeout' };
  if (code.startsWith('SQLITE_CORRUPT') || code.startsWith('SQLITE_NOTADB')) return { code, cause: `corrupt database file: ${msg}` };
  if (code.startsWith('SQLITE_IOERR')) return { code, cause: `I/O error: ${msg}` };
  if (code.startsWith('SQLITE_CANTOPEN')) return { code, cause: `cannot open the database file: ${msg}` };
  return { code, cause: msg };
}

// ---------------------------------------------------------------------------------------------
// Payload: a lossless envelope of the alert as it was received.

export function encodeAlert(a: Alert): string {
  return `{"v":1,"alert":${serializeAlert(a, { includeCompanion: false })},"companion":${JSON.stringify(a.companion)},"origin":${JSON.stringify(a.origin)},"received_at_ms":${a.receivedAtMs}}`;
}

const ORIGIN_KINDS: readonly OriginKind[] = ['http', 'grpc', 'file', 'stdin', 'replay', 'test', 'detector'];

export function decodeAlert(payload: string): Alert {
  const o = parse(payload);
  if (!isJsonObject(o) || o['v'] !== 1 || !isJsonObject(o['alert'])) throw new CompanionError('E_SPOOL_PAYLOAD', 'spool row is not a version 1 alert envelope');
  const og = o['origin'];
  const kind = isJsonObject(og) && typeof og['kind'] === 'string' && (ORIGIN_KINDS as readonly string[]).includes(og['kind']) ? (og['kind'] as OriginKind) : 'test';
  const component = isJsonObject(og) && typeof og['component'] === 'string' ? og['component'] : 'spool';
  const rat = o['received_at_ms'];
  const receivedAt = typeof rat === 'number' ? rat : Date.now();
  const a = alertFromJson(o['alert'], { kind, component }, receivedAt);
  const comp: Record<string, EnrichValue> = {};
  const c = o['companion'];
  if (isJsonObject(c)) {
    for (const k of Object.keys(c)) {
      const v = c[k];
      if (v instanceof LosslessNumber) comp[k] = Number(v.raw);
      else if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') comp[k] = v;
    }
  }
  return withEnrichment(a, comp);
}

// ---------------------------------------------------------------------------------------------

type Resolve = () => void;
type Op =
  | { k: 'insert'; id: string; payload: string; bytes: number; at: number; rule: string; priority: string; alert: Alert; resolve: Resolve; reject: (e: Error) => void }
  | { k: 'ready'; id: string; payload: string; bytes: number; at: number; rule: string; priority: string; fromIntake: boolean; resolve: Resolve }
  | { k: 'done'; id: string }
  | { k: 'ack'; id: string; resolve: Resolve }
  | { k: 'retry'; id: string; nextAt: number; error: string; resolve: Resolve }
  | { k: 'dead'; id: string; status: number | null; error: string; at: number; resolve: Resolve }
  | { k: 'expire'; before: string };

export interface DueRow {
  readonly id: string;
  readonly payload: string;
  readonly attempts: number;
  readonly receivedAt: number;
  readonly rule: string;
}

export interface SpoolDeps {
  readonly db: Db;
  /** The database file path (named in errors). */
  readonly path: string;
  readonly config: SpoolConfig;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock?: Clock;
  /** Retry-After seconds for refusals. */
  readonly retryAfterSeconds?: number;
  /** Live alerts held in memory for the pipeline before it reads them back from disk. Default 4096. */
  readonly memoryLimit?: number;
  /** How often a failed commit is retried. Default 1000 ms. */
  readonly recoverIntervalMs?: number;
}

type Stmt = Database.Statement<unknown[], unknown>;

export class Spool implements Intake, PipelineIntake, Component {
  readonly id = 'spool';
  private readonly cfg: SpoolConfig;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly ids: AlertIdGenerator;
  private readonly retryAfter: number;
  private readonly memoryLimit: number;
  private readonly recoverMs: number;

  // committed state
  private received = 0;
  private ready = 0;
  private bytes = 0;
  private deadCount = 0;
  private oldestMs: number | null = null;
  // not yet committed
  private ops: Op[] = [];
  private pendingInserts = 0;
  private pendingBytes = 0;
  private flushTimer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  private flushImmediate = false;
  private unavailable: SpoolUnavailableError | null = null;
  private unavailableSince = 0;
  private recoverTimer: NodeJS.Timeout | null = null;
  private maintTimer: NodeJS.Timeout | null = null;
  private maintTicks = 0;

  // the pipeline side
  private mem: Alert[] = [];
  private memHead = 0;
  private backlog = false;
  private lastTaken = '';
  private untaken = 0;
  private readonly taken = new Set<string>();
  private takeWaiters: Resolve[] = [];
  private notFullWaiters: Resolve[] = [];
  private readyListeners: (() => void)[] = [];

  private started = false;
  private intakeClosed = false;
  private stopped = false;
  private resumed = 0;
  private readonly logGate = new Map<string, number>();

  private st!: Record<
    'insert' | 'getBytes' | 'updateReady' | 'upsertReady' | 'deleteReceived' | 'deleteAny' | 'retry' | 'toDead' | 'evictOldest' | 'expire' | 'receivedAfter' | 'due' | 'minId' | 'probe' | 'unprobe',
    Stmt
  >;
  private txn!: (ops: Op[]) => TxResult;

  private readonly m: {
    alerts: Gauge<'state'>;
    bytes: Gauge;
    oldest: Gauge;
    dead: Gauge;
    deadTotal: Counter;
    commit: Histogram;
    available: Gauge;
    blocked: Counter<'limit'>;
  };

  constructor(private readonly d: SpoolDeps) {
    this.cfg = d.config;
    this.log = d.logger.child({ component: this.id });
    this.clock = d.clock ?? systemClock;
    this.ids = new AlertIdGenerator(() => this.clock.now());
    this.retryAfter = d.retryAfterSeconds ?? 1;
    this.memoryLimit = d.memoryLimit ?? 4096;
    this.recoverMs = d.recoverIntervalMs ?? 1000;
    const mt = d.metrics;
    this.m = {
      alerts: mt.gauge('spool_alerts', 'Alerts in the spool by state (received: not yet through the pipeline; ready: waiting for delivery)', ['state']),
      bytes: mt.gauge('spool_bytes', 'Bytes of alert payload in the spool'),
      oldest: mt.gauge('spool_oldest_age_seconds', 'Age of the oldest alert in the spool (0 when empty)', [], () => {
        this.m.oldest.set(this.oldestMs === null ? 0 : Math.max(0, (this.clock.now() - this.oldestMs) / 1000));
      }),
      dead: mt.gauge('spool_dead_letters', 'Alerts in the dead-letter table'),
      deadTotal: mt.counter('spool_dead_letters_total', 'Alerts moved to the dead-letter table (permanent delivery failures)'),
      commit: mt.histogram('spool_commit_seconds', 'Duration of one spool group commit', [], [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1]),
      available: mt.gauge('spool_available', '1 while the spool can commit, 0 after a disk/database failure until it recovers'),
      blocked: mt.counter('spool_refused_total', 'Submits refused because a spool limit was reached with when_full: block', ['limit']),
    };
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle

  /** Migrate and count what is waiting. Returns the number of alerts resumed. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const db = this.d.db;
    migrate(db, SPOOL_NAMESPACE, SPOOL_MIGRATIONS);
    this.prepare();
    this.resync();
    this.untaken = this.received;
    this.backlog = this.received > 0;
    this.resumed = this.received + this.ready;
    this.refreshOldest();
    this.gauges();
    this.m.available.set(1);
    this.maintTimer = setInterval(() => this.maintain(), 1000);
    this.maintTimer.unref();
    this.log.info(
      { path: this.d.path, resumed: this.resumed, received: this.received, ready: this.ready, bytes: this.bytes, dead_letters: this.deadCount, when_full: this.cfg.when_full },
      this.resumed > 0 ? `spool opened: resuming ${this.resumed} alert(s)` : 'spool opened: empty',
    );
  }

  /** Alerts found in the spool at start. */
  resumedCount(): number {
    return this.resumed;
  }

  health(): ComponentHealth {
    if (this.unavailable) return { ready: false, detail: this.unavailable.message };
    if (!this.started) return { ready: false, detail: 'not started' };
    return { ready: true, detail: `${this.received + this.ready} alerts (${this.ready} waiting for delivery), ${this.bytes} bytes, ${this.deadCount} dead letters` };
  }

  /** Stop accepting (PipelineIntake): submit rejects; take hands out what is committed, then null. */
  close(): void {
    this.intakeClosed = true;
    for (const w of this.takeWaiters.splice(0)) w();
    for (const w of this.notFullWaiters.splice(0)) w();
  }

  /** Commit what is buffered (within the deadline), then stop. The database is closed by its owner. */
  async stop(deadlineMs: number): Promise<void> {
    if (this.stopped) return;
    this.close();
    this.stopped = true;
    if (this.maintTimer) clearInterval(this.maintTimer);
    if (this.recoverTimer) clearTimeout(this.recoverTimer);
    this.recoverTimer = null;
    this.cancelFlush();
    if (!this.started) return;
    // Commits are quick: always commit what is buffered (even past the deadline, so acks and
    // ready bodies are not lost to a slow drain); only a failing disk is retried until the deadline.
    while (this.ops.length > 0) {
      this.flush();
      if (!this.unavailable) continue;
      if (Date.now() >= deadlineMs) break;
      await new Promise((r) => setTimeout(r, Math.min(200, Math.max(0, deadlineMs - Date.now()))));
    }
    // Whatever could not be committed: rows keep their previous state (received rows are resumed).
    const left = this.ops.splice(0);
    for (const op of left) {
      if (op.k === 'insert') op.reject(new StoppedError('spool'));
      else if ('resolve' in op) op.resolve();
    }
    this.log.info(
      { kept: this.received + this.ready, received: this.received, ready: this.ready, bytes: this.bytes, uncommitted: left.length },
      `spool closed: ${this.received + this.ready} alert(s) kept for the next start`,
    );
  }

  // -------------------------------------------------------------------------------------------
  // Intake (sources)

  get depth(): number {
    return this.untaken;
  }

  /** Alerts kept (committed), any state. */
  get size(): number {
    return this.received + this.ready;
  }

  get full(): boolean {
    if (this.unavailable) return true;
    return this.cfg.when_full === 'block' && this.overLimit() !== null;
  }

  whenNotFull(): Promise<void> {
    if (!this.full || this.intakeClosed) return Promise.resolve();
    return new Promise((r) => this.notFullWaiters.push(r));
  }

  submit(alert: Alert): Promise<void> {
    if (this.intakeClosed || !this.started) return Promise.reject(new StoppedError('spool'));
    if (this.unavailable) return Promise.reject(this.unavailable);
    const limit = this.overLimit();
    if (limit !== null) {
      if (this.cfg.when_full === 'block') {
        this.m.blocked.inc({ limit });
        this.gatedLog('warn', `full:${limit}`, { limit, alerts: this.size, bytes: this.bytes }, `spool full (${limit}): refusing alerts (when_full: block)`);
        return Promise.reject(new QueueFullError(`spool (${limit} limit)`, this.retryAfter));
      }
      if (this.cfg.when_full === 'drop_newest') {
        this.d.metrics.discarded.inc({ component: this.id, reason: 'drop_newest' });
        this.gatedLog('warn', `drop_newest`, { limit, rule: alert.rule }, `spool full (${limit}): dropping new alerts (when_full: drop_newest)`);
        return Promise.resolve();
      }
      // drop_oldest: the commit evicts the oldest rows to make room.
    }
    const a = this.ids.ensure(alert);
    const id = alertIdOf(a) as string;
    const payload = encodeAlert(a);
    const bytes = Buffer.byteLength(payload);
    return new Promise<void>((resolve, reject) => {
      this.ops.push({ k: 'insert', id, payload, bytes, at: a.receivedAtMs, rule: a.rule, priority: a.priority, alert: a, resolve, reject });
      this.pendingInserts++;
      this.pendingBytes += bytes;
      this.schedule();
    });
  }

  // -------------------------------------------------------------------------------------------
  // Pipeline side

  async take(): Promise<Alert | null> {
    for (;;) {
      if (this.stopped) return null;
      if (this.memHead < this.mem.length) {
        const a = this.mem[this.memHead] as Alert;
        this.mem[this.memHead] = undefined as unknown as Alert;
        this.memHead++;
        if (this.memHead >= this.mem.length) {
          this.mem = [];
          this.memHead = 0;
        }
        const id = alertIdOf(a) as string;
        this.lastTaken = id;
        this.untaken = Math.max(0, this.untaken - 1);
        if (this.taken.size >= 1_000_000) this.taken.clear(); // bounded: a pipeline that never calls done()
        this.taken.add(id);
        return a;
      }
      if (this.backlog && this.started) {
        this.readBacklog();
        continue;
      }
      // Closed: what was committed has been handed out (a stop past the deadline leaves the
      // rest as received rows, resumed at the next start).
      if (this.intakeClosed) return null;
      await new Promise<void>((r) => this.takeWaiters.push(r));
    }
  }

  done(alert: Alert): void {
    const id = alertIdOf(alert);
    if (id === null || this.stopped) return;
    this.taken.delete(id);
    this.ops.push({ k: 'done', id });
    this.schedule();
  }

  /**
   * The final body for delivery (the spool sink's write). Resolves at once while the write
   * buffer is small (the row is already kept as received), after the commit otherwise.
   */
  markReady(alert: Alert, body: string): Promise<void> {
    const id = alertIdOf(alert) ?? this.ids.next();
    const fromIntake = this.taken.has(id);
    if (this.stopped) return Promise.reject(new StoppedError('spool'));
    let resolve!: Resolve;
    const p = new Promise<void>((r) => (resolve = r));
    this.ops.push({ k: 'ready', id, payload: body, bytes: Buffer.byteLength(body), at: alert.receivedAtMs, rule: alert.rule, priority: alert.priority, fromIntake, resolve });
    this.schedule();
    return this.ops.length > this.cfg.commit_batch * 4 ? p : Promise.resolve();
  }

  // -------------------------------------------------------------------------------------------
  // Delivery side

  /** Alerts waiting for delivery. */
  get readyCount(): number {
    return this.ready;
  }

  /** Ready rows due at `now`, oldest first (synchronous read). */
  due(now: number, limit: number): DueRow[] {
    if (!this.started || limit <= 0) return [];
    const rows = this.st.due.all(now, limit) as { id: string; payload: string; attempts: number; received_at: number; rule: string }[];
    return rows.map((r) => ({ id: r.id, payload: r.payload, attempts: r.attempts, receivedAt: r.received_at, rule: r.rule }));
  }

  /** Called when new ready rows were committed. */
  onReady(listener: () => void): void {
    this.readyListeners.push(listener);
  }

  /** Delivered: delete the row (resolves after the commit). */
  ack(id: string): Promise<void> {
    return this.opPromise((resolve) => ({ k: 'ack', id, resolve }));
  }

  retryLater(id: string, nextAt: number, error: string): Promise<void> {
    return this.opPromise((resolve) => ({ k: 'retry', id, nextAt, error: error.slice(0, 500), resolve }));
  }

  deadLetter(id: string, status: number | null, error: string): Promise<void> {
    return this.opPromise((resolve) => ({ k: 'dead', id, status, error: error.slice(0, 500), at: this.clock.now(), resolve }));
  }

  /** Commit now (tests, shutdown). */
  flushNow(): void {
    this.cancelFlush();
    this.flush();
  }

  // -------------------------------------------------------------------------------------------
  // internals

  private opPromise(make: (resolve: Resolve) => Op): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.ops.push(make(resolve));
      this.schedule();
    });
  }

  private overLimit(): 'alerts' | 'bytes' | 'age' | null {
    if (this.received + this.ready + this.pendingInserts >= this.cfg.max_alerts) return 'alerts';
    if (this.bytes + this.pendingBytes >= this.cfg.max_bytes) return 'bytes';
    if (this.cfg.max_age > 0 && this.oldestMs !== null && this.clock.now() - this.oldestMs > this.cfg.max_age) return 'age';
    return null;
  }

  private prepare(): void {
    const db = this.d.db;
    const T = 'spool_alerts';
    this.st = {
      insert: db.prepare(`INSERT OR IGNORE INTO ${T}(id, state, payload, bytes, received_at, rule, priority) VALUES (?, 0, ?, ?, ?, ?, ?)`),
      getBytes: db.prepare(`SELECT bytes, state FROM ${T} WHERE id = ?`),
      updateReady: db.prepare(`UPDATE ${T} SET state = 1, payload = ?, bytes = ? WHERE id = ?`),
      upsertReady: db.prepare(`INSERT INTO ${T}(id, state, payload, bytes, received_at, rule, priority) VALUES (?, 1, ?, ?, ?, ?, ?)`),
      deleteReceived: db.prepare(`DELETE FROM ${T} WHERE id = ? AND state = 0 RETURNING bytes`),
      deleteAny: db.prepare(`DELETE FROM ${T} WHERE id = ? RETURNING bytes, state`),
      retry: db.prepare(`UPDATE ${T} SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?`),
      toDead: db.prepare(
        `INSERT OR REPLACE INTO spool_dead_letters(id, payload, bytes, received_at, attempts, status, last_error, dead_at, rule, priority)
         SELECT id, payload, bytes, received_at, attempts + 1, ?, ?, ?, rule, priority FROM ${T} WHERE id = ?`,
      ),
      evictOldest: db.prepare(`DELETE FROM ${T} WHERE id = (SELECT id FROM ${T} ORDER BY id LIMIT 1) RETURNING bytes, state`),
      expire: db.prepare(`DELETE FROM ${T} WHERE id < ? RETURNING bytes, state`),
      receivedAfter: db.prepare(`SELECT id, payload FROM ${T} WHERE state = 0 AND id > ? ORDER BY state, id LIMIT ?`),
      due: db.prepare(`SELECT id, payload, attempts, received_at, rule FROM ${T} WHERE state = 1 AND next_attempt_at <= ? ORDER BY state, id LIMIT ?`),
      minId: db.prepare(`SELECT min(id) AS id FROM ${T}`),
      probe: db.prepare(`INSERT INTO spool_probe(x) VALUES (zeroblob(16384))`),
      unprobe: db.prepare(`DELETE FROM spool_probe`),
    };
    this.txn = db.transaction((ops: Op[]) => this.apply(ops));
  }

  /** Recount from the table (at start, and now and then: the spool command may change rows). */
  private resync(): void {
    const db = this.d.db;
    const rows = db.prepare('SELECT state, count(*) AS n, coalesce(sum(bytes), 0) AS b FROM spool_alerts GROUP BY state').all() as { state: number; n: number; b: number }[];
    this.received = 0;
    this.ready = 0;
    this.bytes = 0;
    for (const r of rows) {
      if (r.state === RECEIVED) this.received = r.n;
      else this.ready += r.n;
      this.bytes += r.b;
    }
    this.deadCount = (db.prepare('SELECT count(*) AS n FROM spool_dead_letters').get() as { n: number }).n;
  }

  private refreshOldest(): void {
    const r = this.st.minId.get() as { id: string | null } | undefined;
    this.oldestMs = r?.id ? alertIdTimeMs(r.id) : null;
  }

  private gauges(): void {
    this.m.alerts.set({ state: 'received' }, this.received);
    this.m.alerts.set({ state: 'ready' }, this.ready);
    this.m.bytes.set(this.bytes);
    this.m.dead.set(this.deadCount);
    this.d.metrics.queueDepth.set({ component: this.id }, this.received + this.ready);
  }

  private schedule(): void {
    if (this.unavailable || !this.started) return;
    if (this.ops.length >= this.cfg.commit_batch) {
      if (this.flushTimer && !this.flushImmediate) {
        clearTimeout(this.flushTimer as NodeJS.Timeout);
        this.flushTimer = null;
      }
      if (!this.flushTimer) {
        this.flushImmediate = true;
        this.flushTimer = setImmediate(() => this.runFlush());
      }
      return;
    }
    if (this.flushTimer) return;
    if (this.cfg.commit_interval <= 0) {
      this.flushImmediate = true;
      this.flushTimer = setImmediate(() => this.runFlush());
    } else {
      this.flushImmediate = false;
      this.flushTimer = setTimeout(() => this.runFlush(), this.cfg.commit_interval);
    }
  }

  private cancelFlush(): void {
    if (!this.flushTimer) return;
    if (this.flushImmediate) clearImmediate(this.flushTimer as NodeJS.Immediate);
    else clearTimeout(this.flushTimer as NodeJS.Timeout);
    this.flushTimer = null;
  }

  private runFlush(): void {
    this.flushTimer = null;
    this.flush();
    if (this.ops.length > 0) this.schedule();
  }

  /** Commit up to commit_batch buffered operations in one transaction. */
  private flush(): void {
    if (this.ops.length === 0 || !this.started) return;
    const batch = this.ops.splice(0, this.cfg.commit_batch);
    const t0 = performance.now();
    let res: TxResult;
    try {
      res = this.txn(batch);
    } catch (err) {
      this.failed(batch, err);
      return;
    }
    this.m.commit.observe((performance.now() - t0) / 1000);
    this.committed(batch, res);
    if (this.unavailable) this.recovered();
  }

  private apply(ops: Op[]): TxResult {
    const st = this.st;
    const r: TxResult = { dReceived: 0, dReady: 0, dBytes: 0, dDead: 0, dropped: 0, droppedReceived: 0, inserted: [], readyAdded: false, deleted: false };
    const evict = (): boolean => {
      const row = st.evictOldest.get() as { bytes: number; state: number } | undefined;
      if (!row) return false;
      r.dBytes -= row.bytes;
      if (row.state === RECEIVED) {
        r.dReceived--;
        r.droppedReceived++;
      } else r.dReady--;
      r.dropped++;
      r.deleted = true;
      return true;
    };
    /** Delete a row in any live state (ack, dead letter) and uncount it. */
    const deleteAny = (id: string): void => {
      const row = st.deleteAny.get(id) as { bytes: number; state: number } | undefined;
      if (!row) return;
      if (row.state === RECEIVED) r.dReceived--;
      else r.dReady--;
      r.dBytes -= row.bytes;
      r.deleted = true;
    };
    for (const op of ops) {
      switch (op.k) {
        case 'insert': {
          if (this.cfg.when_full === 'drop_oldest') {
            while (
              (this.received + this.ready + r.dReceived + r.dReady + 1 > this.cfg.max_alerts || this.bytes + r.dBytes + op.bytes > this.cfg.max_bytes) &&
              evict()
            ) {
              /* evicted one */
            }
          }
          const info = st.insert.run(op.id, op.payload, op.bytes, op.at, op.rule, op.priority);
          if (info.changes > 0) {
            r.dReceived++;
            r.dBytes += op.bytes;
            r.inserted.push(op.alert);
          }
          break;
        }
        case 'ready': {
          const old = st.getBytes.get(op.id) as { bytes: number; state: number } | undefined;
          if (old) {
            st.updateReady.run(op.payload, op.bytes, op.id);
            r.dBytes += op.bytes - old.bytes;
            if (old.state === RECEIVED) {
              r.dReceived--;
              r.dReady++;
            }
          } else if (!op.fromIntake) {
            // A detection (or an alert that never went through the spool): a new ready row.
            st.upsertReady.run(op.id, op.payload, op.bytes, op.at, op.rule, op.priority);
            r.dReady++;
            r.dBytes += op.bytes;
          }
          // else: the row was dropped (drop_oldest / max_age) while in the pipeline: stays dropped.
          r.readyAdded = true;
          break;
        }
        case 'done': {
          const row = st.deleteReceived.get(op.id) as { bytes: number } | undefined;
          if (row) {
            r.dReceived--;
            r.dBytes -= row.bytes;
            r.deleted = true;
          }
          break;
        }
        case 'ack':
          deleteAny(op.id);
          break;
        case 'retry':
          st.retry.run(op.nextAt, op.error, op.id);
          break;
        case 'dead': {
          const moved = st.toDead.run(op.status, op.error, op.at, op.id);
          if (moved.changes > 0) r.dDead++;
          deleteAny(op.id);
          break;
        }
        case 'expire': {
          const rows = st.expire.all(op.before) as { bytes: number; state: number }[];
          for (const row of rows) {
            if (row.state === RECEIVED) {
              r.dReceived--;
              r.droppedReceived++;
            } else r.dReady--;
            r.dBytes -= row.bytes;
          }
          if (rows.length > 0) {
            r.deleted = true;
            this.d.metrics.discarded.inc({ component: this.id, reason: 'max_age' }, rows.length);
            this.log.warn({ dropped: rows.length, max_age_ms: this.cfg.max_age }, `dropped ${rows.length} alert(s) older than spool.max_age`);
          }
          break;
        }
      }
    }
    return r;
  }

  private committed(batch: Op[], r: TxResult): void {
    this.received = Math.max(0, this.received + r.dReceived);
    this.ready = Math.max(0, this.ready + r.dReady);
    this.bytes = Math.max(0, this.bytes + r.dBytes);
    this.deadCount += r.dDead;
    if (r.dDead > 0) this.m.deadTotal.inc(r.dDead);
    if (r.dropped > 0) {
      this.d.metrics.discarded.inc({ component: this.id, reason: 'drop_oldest' }, r.dropped);
      this.gatedLog('warn', 'drop_oldest', { dropped: r.dropped, alerts: this.size, bytes: this.bytes }, `spool full: dropped the ${r.dropped} oldest alert(s) (when_full: drop_oldest)`);
    }
    if (r.droppedReceived > 0) this.untaken = Math.max(0, this.untaken - r.droppedReceived);
    for (const op of batch) {
      if (op.k === 'insert') {
        this.pendingInserts--;
        this.pendingBytes -= op.bytes;
      }
    }
    // Accepted means committed: only now do the alerts count as received.
    if (r.inserted.length > 0) this.d.metrics.received.inc({ component: this.id }, r.inserted.length);
    // Hand the committed alerts to the pipeline (in memory, or read back later from disk).
    this.untaken += r.inserted.length;
    for (const a of r.inserted) {
      if (!this.backlog && this.mem.length - this.memHead < this.memoryLimit) this.mem.push(a);
      else this.backlog = true;
    }
    if (r.deleted || this.oldestMs === null) this.refreshOldest();
    this.gauges();
    for (const op of batch) if ('resolve' in op) op.resolve();
    if (r.inserted.length > 0 || this.backlog) for (const w of this.takeWaiters.splice(0)) w();
    if (r.readyAdded) for (const l of this.readyListeners) l();
    if (!this.full) for (const w of this.notFullWaiters.splice(0)) w();
  }

  private failed(batch: Op[], err: unknown): void {
    const { code, cause } = describeDbError(err);
    const e = new SpoolUnavailableError(this.d.path, code, cause, this.retryAfter);
    this.d.metrics.errors.inc({ component: this.id, code });
    const keep: Op[] = [];
    for (const op of batch) {
      if (op.k === 'insert') {
        this.pendingInserts--;
        this.pendingBytes -= op.bytes;
        op.reject(e);
      } else keep.push(op);
    }
    // State changes (ready, delete, retry) are retried; refused alerts were never acked.
    this.ops.unshift(...keep);
    if (!this.unavailable) {
      this.unavailable = e;
      this.unavailableSince = this.clock.now();
      this.m.available.set(0);
      this.log.error({ path: this.d.path, error: code, cause, refused: batch.length - keep.length }, e.message);
    }
    this.cancelFlush();
    this.armRecovery();
  }

  private armRecovery(): void {
    if (this.recoverTimer || this.stopped) return;
    this.recoverTimer = setTimeout(() => {
      this.recoverTimer = null;
      this.tryRecover();
    }, this.recoverMs);
    this.recoverTimer.unref();
  }

  private tryRecover(): void {
    if (!this.unavailable || this.stopped) return;
    try {
      // Prove a write can be committed, then commit what was waiting.
      this.d.db.transaction(() => {
        this.st.probe.run();
        this.st.unprobe.run();
      })();
    } catch (err) {
      const { code } = describeDbError(err);
      this.gatedLog('warn', 'still-unavailable', { path: this.d.path, error: code, for_ms: this.clock.now() - this.unavailableSince }, 'spool still unavailable; retrying');
      this.armRecovery();
      return;
    }
    this.recovered();
    this.flush();
    if (this.ops.length > 0) this.schedule();
  }

  private recovered(): void {
    if (!this.unavailable) return;
    const was = this.unavailable;
    this.unavailable = null;
    this.m.available.set(1);
    this.log.info({ path: this.d.path, error: was.sqliteCode, after_ms: this.clock.now() - this.unavailableSince }, 'spool recovered: accepting alerts again');
    if (!this.full) for (const w of this.notFullWaiters.splice(0)) w();
  }

  private readBacklog(): void {
    let rows: { id: string; payload: string }[];
    try {
      rows = this.st.receivedAfter.all(this.lastTaken, 256) as { id: string; payload: string }[];
    } catch (err) {
      this.gatedLog('error', 'backlog', { error: errorMessage(err) }, 'reading the spool backlog failed');
      rows = [];
    }
    if (rows.length === 0) {
      this.backlog = false;
      return;
    }
    for (const row of rows) {
      try {
        this.mem.push(decodeAlert(row.payload));
      } catch (err) {
        this.lastTaken = row.id;
        this.untaken = Math.max(0, this.untaken - 1);
        this.d.metrics.errors.inc({ component: this.id, code: 'E_SPOOL_PAYLOAD' });
        this.log.error({ alert_id: row.id, error: errorMessage(err) }, 'undecodable spool row moved to dead letters');
        void this.deadLetter(row.id, null, `undecodable payload: ${errorMessage(err)}`);
      }
    }
    const last = rows[rows.length - 1];
    if (last && this.memHead >= this.mem.length) this.lastTaken = last.id;
  }

  private maintain(): void {
    if (!this.started || this.stopped) return;
    this.maintTicks++;
    try {
      if (this.maintTicks % 10 === 0 && this.ops.length === 0 && !this.unavailable) {
        this.resync();
        this.gauges();
      }
      this.refreshOldest();
    } catch (err) {
      this.gatedLog('warn', 'maintain', { error: errorMessage(err) }, 'spool maintenance read failed');
    }
    if (this.cfg.max_age > 0 && this.cfg.when_full !== 'block' && this.oldestMs !== null && this.clock.now() - this.oldestMs > this.cfg.max_age) {
      this.ops.push({ k: 'expire', before: alertIdFloor(this.clock.now() - this.cfg.max_age) });
      this.schedule();
    }
    if (!this.full) for (const w of this.notFullWaiters.splice(0)) w();
  }

  private gatedLog(level: 'warn' | 'error', key: string, obj: Record<string, unknown>, msg: string): void {
    const now = this.clock.now();
    const last = this.logGate.get(key) ?? -Infinity;
    if (now - last < 5000) return;
    if (this.logGate.size > 64) this.logGate.clear();
    this.logGate.set(key, now);
    this.log[level](obj, msg);
  }
}

interface TxResult {
  dReceived: number;
  dReady: number;
  dBytes: number;
  dDead: number;
  dropped: number;
  droppedReceived: number;
  inserted: Alert[];
  readyAdded: boolean;
  deleted: boolean;
}

// ---------------------------------------------------------------------------------------------
// Offline / operator access (the `spool` command). Short transactions; safe next to a running
// daemon (WAL + busy_timeout); the daemon re-counts within ~10 s.

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
  migrate(db, SPOOL_NAMESPACE, SPOOL_MIGRATIONS);
  const by = db.prepare('SELECT state, count(*) AS n, coalesce(sum(bytes), 0) AS b FROM spool_alerts GROUP BY state').all() as { state: number; n: number; b: number }[];
  let received = 0;
  let ready = 0;
  let bytes = 0;
  for (const r of by) {
    if (r.state === RECEIVED) received = r.n;
    else ready += r.n;
    bytes += r.b;
  }
  const minId = (db.prepare('SELECT min(id) AS id FROM spool_alerts').get() as { id: string | null }).id;
  const oldestMs = minId ? alertIdTimeMs(minId) : null;
  const dueNow = (db.prepare('SELECT count(*) AS n FROM spool_alerts WHERE state = 1 AND next_attempt_at <= ?').get(now) as { n: number }).n;
  const retrying = (db.prepare('SELECT count(*) AS n FROM spool_alerts WHERE attempts > 0').get() as { n: number }).n;
  const dead = db.prepare('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM spool_dead_letters').get() as { n: number; b: number };
  return {
    received,
    ready,
    bytes,
    oldest: oldestMs === null ? null : new Date(oldestMs).toISOString(),
    oldestAgeSeconds: oldestMs === null ? null : Math.max(0, Math.round((now - oldestMs) / 1000)),
    dueNow,
    retrying,
    deadLetters: dead.n,
    deadBytes: dead.b,
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
  migrate(db, SPOOL_NAMESPACE, SPOOL_MIGRATIONS);
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
  migrate(db, SPOOL_NAMESPACE, SPOOL_MIGRATIONS);
  if (!opts.dead) return db.prepare('UPDATE spool_alerts SET next_attempt_at = 0 WHERE state = 1 AND next_attempt_at > 0').run().changes;
  return db.transaction(() => {
    const n = db
      .prepare(
        `INSERT OR IGNORE INTO spool_alerts(id, state, payload, bytes, received_at, attempts, next_attempt_at, last_error, rule, priority)
         SELECT id, 1, payload, bytes, received_at, 0, 0, last_error, rule, priority FROM spool_dead_letters`,
      )
      .run().changes;
    db.prepare('DELETE FROM spool_dead_letters').run();
    return n;
  })();
}

/** Delete every row of the spool (or of the dead letters). Returns rows deleted. */
export function spoolPurge(db: Db, opts: { dead: boolean }): number {
  migrate(db, SPOOL_NAMESPACE, SPOOL_MIGRATIONS);
  return db.prepare(opts.dead ? 'DELETE FROM spool_dead_letters' : 'DELETE FROM spool_alerts').run().changes;
}
