/**
 * The durable spool (`spool`): the intake when `spool.enabled` (sources `submit`, the pipeline
 * `take`s and calls `done`), and the delivery queue the sidekick sink works from
 * ({@link Spool.delivery}, contract in src/sinks/delivery-queue.ts). Its pieces:
 * spool-schema.ts (tables, migrations, statements), envelope.ts (the received alert's payload),
 * spool-writer.ts (the group-commit writer every change goes through), spool-admin.ts (the
 * offline `spool` command).
 *
 * Row life: `submit` → state received (committed before the promise resolves: that is what
 * "accepted" means) → the pipeline takes it, enriches, detects, routes → the sink marks it
 * ready with the final sidekick body → the delivery loop sends it and acks it (deleted) or moves
 * it to `spool_dead_letters` on a permanent failure. Rows no sink kept (routed away, signal-only,
 * no durable sink) are deleted when the pipeline calls `done`. After a crash, received rows go
 * through the pipeline again and ready rows are delivered again: at least once, duplicates
 * carry the same `companion.alert_id`.
 *
 * A failed commit (disk full, read-only, locked, I/O error, corruption) rejects the submits in
 * it with {@link SpoolUnavailableError} (a QueueFullError: HTTP 503 + Retry-After, polling
 * sources wait), turns readiness false, and is retried every second until it works.
 */
import type { Counter, Gauge } from 'prom-client';
import type { Alert } from '../alert.js';
import { systemClock, type Clock } from '../clock.js';
import type { Component, ComponentHealth } from '../component.js';
import type { Config } from '../config/schema.js';
import { QueueFullError, StoppedError, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { BatchedCount, Metrics } from '../metrics.js';
import type { Intake, PipelineIntake } from '../pipeline/types.js';
import type { DeliveryQueue, DueRow } from '../sinks/delivery-queue.js';
import { AlertIdGenerator, alertIdFloor, alertIdOf, alertIdTimeMs } from './alert-id.js';
import type { Db } from './db.js';
import { decodeAlert, encodeAlert } from './envelope.js';
import { RECEIVED, countSpool, migrateSpool, prepareSpoolStatements, type SpoolStatements } from './spool-schema.js';
import { SpoolWriter, type SpoolUnavailableError } from './spool-writer.js';
import { checkpointFromRow, type CheckpointRow, type FileCheckpoint, type InputCheckpoints } from './checkpoints.js';

export type SpoolConfig = Config['spool'];

type Resolve = () => void;
/**
 * One buffered change. Inserts and checkpoints are refused when their commit fails (a checkpoint
 * must never commit without the lines before it); the others are retried.
 */
type Op =
  | { k: 'insert'; id: string; payload: string; bytes: number; at: number; rule: string; priority: string; alert: Alert; resolve: Resolve; reject: (e: Error) => void }
  | { k: 'ready'; id: string; payload: string; bytes: number; at: number; rule: string; priority: string; fromIntake: boolean; resolve: Resolve }
  | { k: 'done'; id: string }
  | { k: 'ack'; id: string; resolve: Resolve }
  | { k: 'retry'; id: string; nextAt: number; error: string; resolve: Resolve }
  | { k: 'dead'; id: string; status: number | null; error: string; at: number; resolve: Resolve }
  | { k: 'expire'; before: string }
  | { k: 'checkpoint'; cp: FileCheckpoint }
  | { k: 'prune_checkpoints'; keep: string; before: number; maxRows: number };

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

export interface SpoolDeps {
  readonly db: Db;
  /** The database file path (named in errors). */
  readonly path: string;
  readonly config: SpoolConfig;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly clock?: Clock;
  /** Live alerts held in memory for the pipeline before it reads them back from disk. Default 4096. */
  readonly memoryLimit?: number;
  /** How often a failed commit is retried. Default 1000 ms. */
  readonly recoverIntervalMs?: number;
}

export class Spool implements Intake, PipelineIntake, Component {
  readonly id = 'spool';
  /** The sink's side: the delivery queue ({@link DeliveryQueue}) of ready rows. */
  readonly delivery: DeliveryQueue;
  /** The file input's read positions, committed in order with the alerts it submits. */
  readonly checkpoints: InputCheckpoints;
  private readonly cfg: SpoolConfig;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly ids: AlertIdGenerator;
  private readonly memoryLimit: number;
  private readonly writer: SpoolWriter<Op, TxResult>;

  // committed state
  private received = 0;
  private ready = 0;
  private bytes = 0;
  private deadCount = 0;
  private oldestMs: number | null = null;
  /** Rows were deleted (or the first ones inserted) since oldestMs was read: read it again when needed. */
  private oldestStale = false;
  // inserts not yet committed
  private pendingInserts = 0;
  private pendingBytes = 0;
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

  // the delivery side
  /** Rows handed out by due() and not yet settled (ack / retry / dead letter committed). */
  private readonly held = new Set<string>();
  private readonly readyListeners: (() => void)[] = [];
  private deliveryClosed = false;

  private started = false;
  private intakeClosed = false;
  private stopped = false;
  private resumed = 0;
  private readonly logGate = new Map<string, number>();

  private st!: SpoolStatements;

  private readonly m: {
    alerts: Gauge<'state'>;
    bytes: Gauge;
    oldest: Gauge;
    dead: Gauge;
    deadTotal: Counter;
    blocked: Counter<'limit'>;
    received: BatchedCount;
  };

  constructor(private readonly d: SpoolDeps) {
    this.cfg = d.config;
    this.log = d.logger.child({ component: this.id });
    this.clock = d.clock ?? systemClock;
    this.ids = new AlertIdGenerator(() => this.clock.now());
    this.memoryLimit = d.memoryLimit ?? 4096;
    const mt = d.metrics;
    this.m = {
      alerts: mt.gauge('spool_alerts', 'Alerts in the spool by state (received: not yet through the pipeline; ready: waiting for delivery)', ['state']),
      bytes: mt.gauge('spool_bytes', 'Bytes of alert payload in the spool'),
      oldest: mt.gauge('spool_oldest_age_seconds', 'Age of the oldest alert in the spool (0 when empty)', [], () => {
        if (this.oldestStale && this.started && !this.stopped) this.refreshOldest();
        this.m.oldest.set(this.oldestMs === null ? 0 : Math.max(0, (this.clock.now() - this.oldestMs) / 1000));
      }),
      dead: mt.gauge('spool_dead_letters', 'Alerts in the dead-letter table'),
      deadTotal: mt.counter('spool_dead_letters_total', 'Alerts moved to the dead-letter table (permanent delivery failures)'),
      blocked: mt.counter('spool_refused_total', 'Submits refused because a spool limit was reached with when_full: block', ['limit']),
      received: mt.batched(mt.received, { component: this.id }),
    };
    // Counts that change with every commit are read when scraped (nothing set per commit).
    mt.gaugeFrom(this.m.alerts, { state: 'received' }, () => this.received);
    mt.gaugeFrom(this.m.alerts, { state: 'ready' }, () => this.ready);
    mt.gaugeFrom(this.m.bytes, {}, () => this.bytes);
    mt.gaugeFrom(this.m.dead, {}, () => this.deadCount);
    mt.gaugeFrom(mt.queueDepth, { component: this.id }, () => this.received + this.ready);
    this.writer = new SpoolWriter<Op, TxResult>({
      db: d.db,
      path: d.path,
      config: d.config,
      logger: this.log,
      component: this.id,
      metrics: d.metrics,
      clock: this.clock,
      ...(d.recoverIntervalMs !== undefined ? { recoverIntervalMs: d.recoverIntervalMs } : {}),
      hooks: {
        apply: (ops) => this.apply(ops),
        committed: (ops, r) => this.committed(ops, r),
        failed: (ops, err) => this.failed(ops, err),
        probe: () => {
          this.st.probe.run();
          this.st.unprobe.run();
        },
        recovered: () => {
          if (!this.full) for (const w of this.notFullWaiters.splice(0)) w();
        },
      },
    });
    this.delivery = this.deliveryQueue();
    this.checkpoints = {
      load: (path) => {
        if (!this.started) throw new StoppedError('spool');
        const row = this.st.getCheckpoint.get(path) as CheckpointRow | undefined;
        return row ? checkpointFromRow(row) : null;
      },
      // Behind the source's inserts in the writer's buffer; after close, its inserts were refused too.
      save: (cp) => {
        if (this.intakeClosed || !this.started) return;
        this.writer.push({ k: 'checkpoint', cp });
      },
      prune: (keep, maxAgeMs, maxRows) => {
        if (this.intakeClosed || !this.started) return;
        this.writer.push({ k: 'prune_checkpoints', keep, before: this.clock.now() - maxAgeMs, maxRows });
      },
    };
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle

  /** Migrate, count what is waiting (see resumedCount) and start committing. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    migrateSpool(this.d.db);
    this.st = prepareSpoolStatements(this.d.db);
    this.resync();
    this.untaken = this.received;
    this.backlog = this.received > 0;
    this.resumed = this.received + this.ready;
    this.refreshOldest();
    this.writer.open();
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
    const down = this.writer.unavailable;
    if (down) return { ready: false, detail: down.message };
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
    if (!this.started) return;
    // Whatever could not be committed: rows keep their previous state (received rows are resumed).
    const left = await this.writer.close(deadlineMs);
    for (const op of left) {
      if (op.k === 'insert') op.reject(new StoppedError('spool'));
      else if ('resolve' in op) op.resolve();
    }
    this.log.info(
      { kept: this.received + this.ready, received: this.received, ready: this.ready, bytes: this.bytes, uncommitted: left.length },
      `spool closed: ${this.received + this.ready} alert(s) kept for the next start`,
    );
  }

  /** Commit now (tests, shutdown). */
  flushNow(): void {
    this.writer.flushNow();
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
    if (this.writer.unavailable) return true;
    return this.cfg.when_full === 'block' && this.overLimit() !== null;
  }

  whenNotFull(): Promise<void> {
    if (!this.full || this.intakeClosed) return Promise.resolve();
    return new Promise((r) => this.notFullWaiters.push(r));
  }

  submit(alert: Alert, source?: string): Promise<void> {
    if (this.intakeClosed || !this.started) return Promise.reject(new StoppedError('spool'));
    const down = this.writer.unavailable;
    if (down) return Promise.reject(down);
    const limit = this.overLimit();
    if (limit !== null) {
      if (this.cfg.when_full === 'block') {
        this.m.blocked.inc({ limit });
        this.gatedLog('warn', `full:${limit}`, { limit, alerts: this.size, bytes: this.bytes }, `spool full (${limit}): refusing alerts (when_full: block)`);
        return Promise.reject(new QueueFullError(`spool (${limit} limit)`));
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
    const payload = encodeAlert(a, source);
    const bytes = Buffer.byteLength(payload);
    return new Promise<void>((resolve, reject) => {
      this.pendingInserts++;
      this.pendingBytes += bytes;
      this.writer.push({ k: 'insert', id, payload, bytes, at: a.receivedAtMs, rule: a.rule, priority: a.priority, alert: a, resolve, reject });
    });
  }

  // -------------------------------------------------------------------------------------------
  // Pipeline side

  async take(): Promise<Alert | null> {
    for (;;) {
      const a = this.takeNow();
      if (a !== undefined) return a;
      await new Promise<void>((r) => this.takeWaiters.push(r));
    }
  }

  takeNow(): Alert | null | undefined {
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
      return this.intakeClosed ? null : undefined;
    }
  }

  done(alert: Alert): void {
    const id = alertIdOf(alert);
    if (id === null || this.stopped) return;
    this.taken.delete(id);
    // Nobody waits for the delete: it rides with the next commit, unless a full spool waits for room.
    this.writer.push({ k: 'done', id }, this.notFullWaiters.length === 0 && !this.full);
  }

  // -------------------------------------------------------------------------------------------
  // Delivery side (through this.delivery)

  private deliveryQueue(): DeliveryQueue {
    const readyCount = (): number => this.ready;
    return {
      durable: true,
      get readyCount(): number {
        return readyCount();
      },
      markReady: (alert, body) => this.markReady(alert, body),
      due: (now, limit) => this.due(now, limit),
      ack: (id) => this.settle((resolve) => ({ k: 'ack', id, resolve })),
      retryLater: (id, nextAt, error) => this.settle((resolve) => ({ k: 'retry', id, nextAt, error: error.slice(0, 500), resolve })),
      deadLetter: (id, status, error) => this.settle((resolve) => ({ k: 'dead', id, status, error: error.slice(0, 500), at: this.clock.now(), resolve })),
      onReady: (listener) => {
        this.readyListeners.push(listener);
      },
      close: () => {
        this.deliveryClosed = true;
      },
    };
  }

  /**
   * The final body for delivery. Resolves at once while the write buffer is small (the row is
   * already kept as received), after the commit otherwise.
   */
  private markReady(alert: Alert, body: string): Promise<void> {
    const id = alertIdOf(alert) ?? this.ids.next();
    const fromIntake = this.taken.has(id);
    if (this.stopped || this.deliveryClosed) return Promise.reject(new StoppedError('spool'));
    let resolve!: Resolve;
    const p = new Promise<void>((r) => (resolve = r));
    this.writer.push({ k: 'ready', id, payload: body, bytes: Buffer.byteLength(body), at: alert.receivedAtMs, rule: alert.rule, priority: alert.priority, fromIntake, resolve });
    return this.writer.length > this.cfg.commit_batch * 4 ? p : Promise.resolve();
  }

  /** Ready rows due at `now`, oldest first, that are not held by the sink (synchronous read). */
  private due(now: number, limit: number): DueRow[] {
    if (!this.started || limit <= 0) return [];
    const rows = this.st.due.all(now, limit + this.held.size) as { id: string; payload: string; attempts: number; received_at: number; rule: string }[];
    const out: DueRow[] = [];
    for (const r of rows) {
      if (this.held.has(r.id)) continue;
      this.held.add(r.id);
      out.push({ id: r.id, payload: r.payload, attempts: r.attempts, receivedAt: r.received_at, rule: r.rule });
      if (out.length >= limit) break;
    }
    return out;
  }

  /** ack / retry / dead letter: resolves after the commit (the row stays held until then). */
  private settle(make: (resolve: Resolve) => Extract<Op, { k: 'ack' | 'retry' | 'dead' }>): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise<void>((resolve) => this.writer.push(make(resolve)));
  }

  // -------------------------------------------------------------------------------------------
  // internals

  private overLimit(): 'alerts' | 'bytes' | 'age' | null {
    if (this.received + this.ready + this.pendingInserts >= this.cfg.max_alerts) return 'alerts';
    if (this.bytes + this.pendingBytes >= this.cfg.max_bytes) return 'bytes';
    if (this.cfg.max_age > 0 && this.oldestMs !== null && this.clock.now() - this.oldestMs > this.cfg.max_age) return 'age';
    return null;
  }

  /** Recount from the table (at start, and now and then: the spool command may change rows). */
  private resync(): void {
    const c = countSpool(this.st);
    this.received = c.received;
    this.ready = c.ready;
    this.bytes = c.bytes;
    this.deadCount = c.dead;
  }

  private refreshOldest(): void {
    const r = this.st.minId.get() as { id: string | null } | undefined;
    this.oldestMs = r?.id ? alertIdTimeMs(r.id) : null;
    this.oldestStale = false;
  }

  /** Inside the transaction: apply the batch in order and count what changed. */
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
        case 'checkpoint': {
          const c = op.cp;
          st.putCheckpoint.run(c.path, c.dev, c.ino, c.offset, c.fpLen, c.fp, c.updatedAt);
          break;
        }
        case 'prune_checkpoints':
          st.pruneCheckpoints.run(op.keep, op.before);
          st.capCheckpoints.run(op.keep, op.maxRows);
          break;
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
      } else if (op.k === 'ack' || op.k === 'retry' || op.k === 'dead') this.held.delete(op.id);
    }
    // Accepted means committed: only now do the alerts count as received.
    if (r.inserted.length > 0) this.m.received.inc(r.inserted.length);
    // Hand the committed alerts to the pipeline (in memory, or read back later from disk).
    this.untaken += r.inserted.length;
    for (const a of r.inserted) {
      if (!this.backlog && this.mem.length - this.memHead < this.memoryLimit) this.mem.push(a);
      else this.backlog = true;
    }
    if (r.deleted || (this.oldestMs === null && r.inserted.length > 0)) {
      // Only max_age needs it at once; otherwise it is read when scraped or by the maintenance tick.
      if (this.cfg.max_age > 0) this.refreshOldest();
      else this.oldestStale = true;
    }
    for (const op of batch) if ('resolve' in op) op.resolve();
    if (r.inserted.length > 0 || this.backlog) for (const w of this.takeWaiters.splice(0)) w();
    if (r.readyAdded) for (const l of this.readyListeners) l();
    if (!this.full) for (const w of this.notFullWaiters.splice(0)) w();
  }

  /**
   * A failed commit (the batch and what waits behind it): refuse the new alerts (never acked) and
   * drop the checkpoints (their sources submit again, then save again); keep the state changes.
   */
  private failed(ops: Op[], err: SpoolUnavailableError): Op[] {
    const keep: Op[] = [];
    for (const op of ops) {
      if (op.k === 'insert') {
        this.pendingInserts--;
        this.pendingBytes -= op.bytes;
        op.reject(err);
      } else if (op.k !== 'checkpoint' && op.k !== 'prune_checkpoints') keep.push(op);
    }
    return keep;
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
        void this.delivery.deadLetter(row.id, null, `undecodable payload: ${errorMessage(err)}`);
      }
    }
    const last = rows[rows.length - 1];
    if (last && this.memHead >= this.mem.length) this.lastTaken = last.id;
  }

  private maintain(): void {
    if (!this.started || this.stopped) return;
    this.maintTicks++;
    try {
      if (this.maintTicks % 10 === 0 && this.writer.length === 0 && !this.writer.unavailable) {
        this.resync();
      }
      this.refreshOldest();
    } catch (err) {
      this.gatedLog('warn', 'maintain', { error: errorMessage(err) }, 'spool maintenance read failed');
    }
    if (this.cfg.max_age > 0 && this.cfg.when_full !== 'block' && this.oldestMs !== null && this.clock.now() - this.oldestMs > this.cfg.max_age) {
      this.writer.push({ k: 'expire', before: alertIdFloor(this.clock.now() - this.cfg.max_age) });
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
