/**
 * The spool's group-commit writer: every write to the spool tables goes through one buffer that
 * is committed as one transaction. What the spool (and the file input's checkpoints, which it
 * writes through the same buffer) may rely on:
 *
 * - **Order.** Operations commit in the order they were pushed, and one transaction holds a
 *   prefix of the buffer (at most `commit_batch` operations): an operation is never committed
 *   without every operation pushed before it.
 * - **When.** `schedule()` alone decides, adapting to concurrency (group commit). An operation
 *   pushed while the writer is idle is committed at once: as soon as the code that pushed it
 *   returns (`process.nextTick`, with whatever that same code pushed after it: a file input's
 *   lines and their checkpoint share the commit), without waiting for a timer or the next
 *   event-loop turn: a lone request, as Falco sends them one at a time, is acknowledged in the
 *   same turn. That commit opens a window in which what follows (concurrent requests, the
 *   pipeline's own changes) is grouped: until the end of the event-loop turn (`commit_interval:
 *   0`) or for `commit_interval`, and on the next turn as soon as `commit_batch` operations wait.
 *   After the window's commit the writer is idle again. Lazy operations (cleanups nobody waits
 *   for: the pipeline's `done`) never start a commit of their own: they ride with the next one,
 *   or go after `LAZY_MS` when nothing else comes (one transaction per alert, not two, for a
 *   serial sender).
 * - **Failure.** A failed commit (disk full, read-only, locked, I/O error, corruption) rolls the
 *   batch back; the owner's `failed` hook gets the batch and every operation waiting behind it, in
 *   order, refuses what must not wait (new alerts: their callers answer 503, nothing is acked that
 *   was not kept; file checkpoints: one more operation kind refused like a new alert, so with the
 *   prefix rule a checkpoint never commits without its lines, even when they were split across
 *   batches) and returns the operations to retry (state changes), which become the buffer. The
 *   writer is then unavailable until a probe write commits (every `recoverIntervalMs`), and
 *   commits what waited right after.
 */
import type { Counter, Gauge, Histogram } from 'prom-client';
import { systemClock, type Clock } from '../clock.js';
import { QueueFullError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { describeDbError, type Db } from './db.js';

/** The spool cannot keep alerts right now (disk full, read-only, locked, corrupt). */
export class SpoolUnavailableError extends QueueFullError {
  readonly sqliteCode: string;
  readonly path: string;
  constructor(path: string, sqliteCode: string, cause: string) {
    super('spool');
    this.name = 'SpoolUnavailableError';
    this.message = `spool ${path}: ${cause} (${sqliteCode}); alerts are refused until it recovers`;
    this.sqliteCode = sqliteCode;
    this.path = path;
  }
}

/** How long lazy operations alone wait for a commit to ride with. */
export const LAZY_MS = 20;

type TimerKind = 'tick' | 'immediate' | 'timeout' | 'lazy';

export interface SpoolWriterHooks<Op, R> {
  /** Apply one batch inside the transaction (throwing rolls it back and takes the failure path). */
  apply(batch: Op[]): R;
  /** After the commit of `batch`. */
  committed(batch: Op[], result: R): void;
  /**
   * After a failed commit, with the failed batch followed by every operation still buffered:
   * refuse what must not wait; return the operations to retry, in order.
   */
  failed(ops: Op[], err: SpoolUnavailableError): Op[];
  /** A write that proves the database commits again (run inside a transaction). */
  probe(): void;
  /** Committing works again after a failure. */
  recovered(): void;
}

export interface SpoolWriterDeps<Op, R> {
  readonly db: Db;
  /** The database file path (named in errors). */
  readonly path: string;
  readonly config: { readonly commit_interval: number; readonly commit_batch: number };
  /** The owner's component logger and id (errors_total label). */
  readonly logger: Logger;
  readonly component: string;
  readonly metrics: Metrics;
  readonly clock?: Clock;
  /** How often a failed commit is retried. Default 1000 ms. */
  readonly recoverIntervalMs?: number;
  readonly hooks: SpoolWriterHooks<Op, R>;
}

export class SpoolWriter<Op, R> {
  private ops: Op[] = [];
  /** Buffered operations that are not lazy (an upper bound after a partial commit). */
  private eager = 0;
  /**
   * The commit that is due: at the end of the pushing code (`tick`), of this turn (`immediate`),
   * after commit_interval (`timeout`), or after LAZY_MS for lazy operations alone (`lazy`).
   */
  private timer: NodeJS.Timeout | NodeJS.Immediate | { readonly tick: true } | null = null;
  private timerKind: TimerKind = 'immediate';
  /** The last commit was an idle one: what is pushed until the window's commit is grouped. */
  private windowOpen = false;
  private failure: SpoolUnavailableError | null = null;
  private failingSince = 0;
  private lastStillFailingLog = -Infinity;
  private recoverTimer: NodeJS.Timeout | null = null;
  private txn: ((ops: Op[]) => R) | null = null;
  private closing = false;
  /** Inside flush (a commit or its hooks): pushes made from there are grouped, never nested. */
  private flushing = false;
  private readonly clock: Clock;
  private readonly recoverMs: number;
  private readonly commitSeconds: Histogram;
  private readonly available: Gauge;
  private readonly errors: Counter<'component' | 'code'>;

  constructor(private readonly d: SpoolWriterDeps<Op, R>) {
    this.clock = d.clock ?? systemClock;
    this.recoverMs = d.recoverIntervalMs ?? 1000;
    this.commitSeconds = d.metrics.histogram('spool_commit_seconds', 'Duration of one spool group commit', [], [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1]);
    this.available = d.metrics.gauge('spool_available', '1 while the spool can commit, 0 after a disk/database failure until it recovers');
    this.errors = d.metrics.errors;
  }

  /** Start committing (after the tables are migrated). */
  open(): void {
    this.txn = this.d.db.transaction((ops: Op[]) => this.d.hooks.apply(ops));
    this.available.set(1);
  }

  /** Operations waiting for a commit. */
  get length(): number {
    return this.ops.length;
  }

  /** The last commit failure while the database refuses writes, else null. */
  get unavailable(): SpoolUnavailableError | null {
    return this.failure;
  }

  /** Buffer an operation; `schedule()` decides when it commits. */
  /**
   * Buffer an operation; `schedule()` decides when it commits. `lazy`: nobody waits for it (a
   * cleanup): it does not start a commit of its own but rides with the next one, or is committed
   * after {@link LAZY_MS} when nothing else comes.
   */
  push(op: Op, lazy = false): void {
    this.ops.push(op);
    if (!lazy) this.eager++;
    this.schedule(lazy);
  }

  /** Commit what is buffered now (tests, shutdown). */
  flushNow(): void {
    this.cancelTimer();
    this.flush();
  }

  /**
   * Stop scheduling; commit everything buffered. Commits are quick, so this runs even past the
   * deadline (acks and ready bodies are not lost to a slow drain); only a failing disk is retried,
   * until the deadline. Returns the operations that could not be committed, in order.
   */
  async close(deadlineMs: number): Promise<Op[]> {
    this.closing = true;
    this.cancelTimer();
    if (this.recoverTimer) clearTimeout(this.recoverTimer);
    this.recoverTimer = null;
    this.eager = 0;
    if (this.txn === null) return this.ops.splice(0);
    while (this.ops.length > 0) {
      this.flush();
      if (!this.failure) continue;
      if (Date.now() >= deadlineMs) break;
      await new Promise((r) => setTimeout(r, Math.min(200, Math.max(0, deadlineMs - Date.now()))));
    }
    return this.ops.splice(0);
  }

  // -------------------------------------------------------------------------------------------

  /** The one place that decides when the buffer is committed. */
  private schedule(lazy: boolean): void {
    if (this.failure || this.txn === null || this.closing) return;
    if (this.ops.length >= this.d.config.commit_batch) {
      if (this.timer && (this.timerKind === 'timeout' || this.timerKind === 'lazy')) this.cancelTimer();
      if (!this.timer) this.arm('immediate');
      return;
    }
    if (this.timer) {
      // A commit is due (the idle one, or the window's): join it. Only waiting lazy operations: an
      // eager one commits them with it, now.
      if (lazy || this.timerKind !== 'lazy') return;
      this.cancelTimer();
    }
    // Nothing waits for a lazy operation: it rides with the next commit, or goes after LAZY_MS.
    if (lazy) this.arm('lazy');
    // Idle: commit as soon as the pushing code returns. Else (a window open, or pushed from a
    // commit's hooks) group it with what else comes in the window.
    else this.arm(this.windowOpen || this.flushing ? this.windowKind() : 'tick');
  }

  private windowKind(): 'immediate' | 'timeout' {
    return this.d.config.commit_interval <= 0 ? 'immediate' : 'timeout';
  }

  private arm(kind: TimerKind): void {
    this.timerKind = kind;
    if (kind === 'tick') {
      const token = { tick: true as const };
      this.timer = token;
      process.nextTick(() => {
        if (this.timer === token) this.onTimer();
      });
    } else if (kind === 'immediate') this.timer = setImmediate(() => this.onTimer());
    else this.timer = setTimeout(() => this.onTimer(), kind === 'lazy' ? LAZY_MS : this.d.config.commit_interval);
  }

  private cancelTimer(): void {
    if (!this.timer) return;
    if (this.timerKind === 'immediate') clearImmediate(this.timer as NodeJS.Immediate);
    else if (this.timerKind !== 'tick') clearTimeout(this.timer as NodeJS.Timeout);
    this.timer = null;
  }

  private onTimer(): void {
    const kind = this.timerKind;
    this.timer = null;
    if (kind !== 'tick' && kind !== 'lazy' && this.eager === 0 && this.ops.length > 0) {
      // The window holds only lazy operations: they wait for the next commit (or LAZY_MS).
      this.windowOpen = false;
      this.arm('lazy');
      return;
    }
    this.flush();
    if (this.failure || this.closing) return;
    if (kind === 'tick') {
      // The idle commit opens the window: what follows it is grouped until the window's commit.
      this.windowOpen = true;
      if (this.timer === null) this.arm(this.windowKind());
      return;
    }
    this.windowOpen = false;
    // More than commit_batch waited: the rest goes in the next turn's commit.
    if (this.ops.length > 0 && this.timer === null) this.arm('immediate');
  }

  /** Commit up to commit_batch buffered operations in one transaction. */
  private flush(): void {
    const txn = this.txn;
    if (this.ops.length === 0 || txn === null) return;
    let batch: Op[];
    if (this.ops.length <= this.d.config.commit_batch) batch = this.takeAll();
    else {
      batch = this.ops.splice(0, this.d.config.commit_batch);
      this.eager = Math.min(this.eager, this.ops.length);
    }
    const t0 = performance.now();
    const was = this.flushing;
    this.flushing = true;
    try {
      let res: R;
      try {
        res = txn(batch);
      } catch (err) {
        this.failed(batch, err);
        return;
      }
      this.commitSeconds.observe((performance.now() - t0) / 1000);
      this.d.hooks.committed(batch, res);
      if (this.failure) this.recovered();
    } finally {
      this.flushing = was;
    }
  }

  private takeAll(): Op[] {
    const all = this.ops;
    this.ops = [];
    this.eager = 0;
    return all;
  }

  private failed(batch: Op[], err: unknown): void {
    const { code, cause } = describeDbError(err);
    const e = new SpoolUnavailableError(this.d.path, code, cause);
    this.errors.inc({ component: this.d.component, code });
    const all = batch.concat(this.ops);
    this.ops = this.d.hooks.failed(all, e);
    this.eager = this.ops.length;
    if (!this.failure) {
      this.failure = e;
      this.failingSince = this.clock.now();
      this.available.set(0);
      this.d.logger.error({ path: this.d.path, error: code, cause, refused: all.length - this.ops.length }, e.message);
    }
    this.cancelTimer();
    this.armRecovery();
  }

  private armRecovery(): void {
    if (this.recoverTimer || this.closing) return;
    this.recoverTimer = setTimeout(() => {
      this.recoverTimer = null;
      this.tryRecover();
    }, this.recoverMs);
    this.recoverTimer.unref();
  }

  private tryRecover(): void {
    if (!this.failure || this.closing) return;
    try {
      // Prove a write can be committed, then commit what was waiting.
      this.d.db.transaction(() => this.d.hooks.probe())();
    } catch (err) {
      const now = this.clock.now();
      if (now - this.lastStillFailingLog >= 5000) {
        this.lastStillFailingLog = now;
        this.d.logger.warn({ path: this.d.path, error: describeDbError(err).code, for_ms: now - this.failingSince }, 'spool still unavailable; retrying');
      }
      this.armRecovery();
      return;
    }
    this.recovered();
    this.flush();
    if (this.ops.length > 0) this.schedule(false);
  }

  private recovered(): void {
    const was = this.failure;
    if (!was) return;
    this.failure = null;
    this.available.set(1);
    this.d.logger.info({ path: this.d.path, error: was.sqliteCode, after_ms: this.clock.now() - this.failingSince }, 'spool recovered: accepting alerts again');
    this.d.hooks.recovered();
  }
}
