/**
 * The contract between a delivering sink (sink/falcosidekick) and the queue it delivers from,
 * and the in-memory queue used when the durable spool is off. The spool's implementation is
 * `Spool.delivery` (src/store/spool.ts).
 */
import type { Alert } from '../alert.js';
import { StoppedError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';

/** One alert waiting for delivery, as handed out by {@link DeliveryQueue.due}. */
export interface DueRow {
  /** Opaque row id (the spool: the alert's `companion.alert_id`). */
  readonly id: string;
  /** The body to send. */
  readonly payload: string;
  /** Failed attempts so far. */
  readonly attempts: number;
  /** When the alert entered the queue, ms since the epoch (the spool: when it was accepted at the intake). */
  readonly receivedAt: number;
  readonly rule: string;
}

/**
 * A queue of final bodies waiting for delivery. Guarantees a sink may rely on:
 *
 * 1. **Taking responsibility.** `markReady(alert, body)` resolves once the queue keeps the body
 *    for delivery; it may wait while the queue is full (back-pressure) and rejects with
 *    StoppedError after `close()`. Calls take effect in call order. With the spool as the intake,
 *    a `markReady(alert)` made before the intake's `done(alert)` keeps the alert's row (the
 *    pipeline writes to every sink before it calls `done`); the spool may resolve before the
 *    ready state is committed, because the row is already durable as received.
 * 2. **Order.** `due(now, limit)` returns at most `limit` rows whose retry time has come, oldest
 *    first (markReady order; a retried row keeps its place). It is synchronous and cheap enough
 *    to call on every wake-up.
 * 3. **One holder.** A row returned by `due` is not returned again until it is settled with
 *    `ack`, `retryLater` or `deadLetter` (and, for a durable queue, that change is committed).
 * 4. **Settling.** `ack` forgets the row (delivered); `retryLater` makes it due again at
 *    `nextAt` (attempts + 1); `deadLetter` takes it out of delivery for good (the spool keeps it
 *    in its dead-letter table, a memory queue drops it). Each resolves once the change is kept.
 *    A queue that cannot keep rows forever may give up on a row in `retryLater` (the memory
 *    queue after `max_elapsed`; it counts and logs that itself).
 * 5. **Wake-ups.** `onReady` listeners run after new rows became visible to `due` (committed).
 *    Retry times coming due and rows changed by the `spool` command are not signalled: poll.
 * 6. **Restarts.** A `durable` queue hands out again, after a restart, every row not acked or
 *    dead-lettered (at least once; duplicates keep their `companion.alert_id`). A memory queue
 *    loses what is left when the process exits: its sink should keep trying until its deadline.
 */
export interface DeliveryQueue {
  /** Rows survive a restart and permanent refusals are kept as dead letters. */
  readonly durable: boolean;
  /** Rows kept and not yet acked or dead-lettered (in flight included). */
  readonly readyCount: number;
  markReady(alert: Alert, body: string): Promise<void>;
  due(now: number, limit: number): readonly DueRow[];
  ack(id: string): Promise<void>;
  retryLater(id: string, nextAt: number, error: string): Promise<void>;
  deadLetter(id: string, status: number | null, error: string): Promise<void>;
  onReady(listener: () => void): void;
  /** Take no more rows: `markReady` rejects with StoppedError, callers waiting for room too. */
  close(): void;
}

export interface MemoryDeliveryQueueDeps {
  /** The owning sink's id: metric label (`queue_depth`, `discarded_total`) and log component. */
  readonly id: string;
  /** Rows waiting (not in flight) before `markReady` waits for room. */
  readonly maxQueue: number;
  /** Give up on a row retried for longer than this since its first attempt (0: never). */
  readonly maxElapsedMs: number;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

interface Entry {
  readonly row: { id: string; payload: string; attempts: number; receivedAt: number; rule: string };
  nextAt: number;
  held: boolean;
  firstAttemptAt: number | null;
}

/** The bounded in-memory delivery queue (spool off): lost on a crash, drained at shutdown. */
export class MemoryDeliveryQueue implements DeliveryQueue {
  readonly durable = false;
  private readonly entries = new Map<string, Entry>();
  private held = 0;
  private seq = 0;
  private closed = false;
  private readonly spaceWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly listeners: (() => void)[] = [];
  private readonly log: Logger;

  constructor(private readonly d: MemoryDeliveryQueueDeps) {
    this.log = d.logger.child({ component: d.id, sink: d.id });
  }

  get readyCount(): number {
    return this.entries.size;
  }

  async markReady(alert: Alert, body: string): Promise<void> {
    while (!this.closed && this.entries.size - this.held >= this.d.maxQueue) {
      await new Promise<void>((resolve, reject) => this.spaceWaiters.push({ resolve, reject }));
    }
    if (this.closed) throw new StoppedError(this.d.id);
    const id = (this.seq++).toString(36);
    this.entries.set(id, { row: { id, payload: body, attempts: 0, receivedAt: Date.now(), rule: alert.rule }, nextAt: 0, held: false, firstAttemptAt: null });
    this.gauge();
    for (const l of this.listeners) l();
  }

  due(now: number, limit: number): readonly DueRow[] {
    const out: DueRow[] = [];
    if (limit <= 0) return out;
    for (const e of this.entries.values()) {
      if (e.held || e.nextAt > now) continue;
      e.held = true;
      this.held++;
      e.firstAttemptAt ??= now;
      out.push({ ...e.row });
      this.spaceWaiters.shift()?.resolve();
      if (out.length >= limit) break;
    }
    return out;
  }

  ack(id: string): Promise<void> {
    this.forget(id);
    return Promise.resolve();
  }

  retryLater(id: string, nextAt: number, error: string): Promise<void> {
    const e = this.entries.get(id);
    if (!e) return Promise.resolve();
    const elapsed = nextAt - (e.firstAttemptAt ?? nextAt);
    if (this.d.maxElapsedMs > 0 && elapsed > this.d.maxElapsedMs) {
      this.forget(id);
      this.d.metrics.discarded.inc({ component: this.d.id, reason: 'max_elapsed' });
      this.log.error({ error, rule: e.row.rule, attempts: e.row.attempts + 1, elapsed_ms: elapsed }, 'giving up on alert: sinks.falcosidekick.max_elapsed reached');
      return Promise.resolve();
    }
    e.row.attempts++;
    e.nextAt = nextAt;
    if (e.held) {
      e.held = false;
      this.held--;
    }
    return Promise.resolve();
  }

  /** A memory queue keeps no dead letters: the row is dropped (the sink counts and logs it). */
  deadLetter(id: string): Promise<void> {
    this.forget(id);
    return Promise.resolve();
  }

  onReady(listener: () => void): void {
    this.listeners.push(listener);
  }

  close(): void {
    this.closed = true;
    for (const w of this.spaceWaiters.splice(0)) w.reject(new StoppedError(this.d.id));
  }

  private forget(id: string): void {
    const e = this.entries.get(id);
    if (!e) return;
    this.entries.delete(id);
    if (e.held) this.held--;
    else this.spaceWaiters.shift()?.resolve();
    this.gauge();
  }

  private gauge(): void {
    this.d.metrics.queueDepth.set({ component: this.d.id }, this.entries.size);
  }
}
