/**
 * Falcosidekick sink (`sink/falcosidekick`): one alert per POST, delivered from a
 * {@link DeliveryQueue}: the durable spool (`spool.enabled`, the default) or the bounded memory
 * queue. The sink depends only on the queue's contract (delivery-queue.ts).
 *
 * `write()` hands the final (enriched) body to the queue (`markReady`; a full memory queue makes
 * it wait: back-pressure). A delivery loop sends due rows with bounded concurrency over a
 * keep-alive pool and settles each: `ack` after a 2xx; `retryLater` on a retryable failure (408,
 * 429, 5xx, connection errors, timeouts; Retry-After honoured, otherwise exponential backoff with
 * jitter); `deadLetter` on a permanent one (400, 401, 403, 404, 413, 422, other 4xx): the spool
 * keeps it for `falco-companion spool list --dead`, the memory queue drops it (counted).
 *
 * While sidekick fails, the loop sends one probe at a time (circuit half-open) instead of
 * hammering it with the whole backlog; the first success reopens full concurrency.
 *
 * Stop: a durable queue keeps what is left for the next start, so the loop ends once nothing is
 * due or at once while sidekick fails; a memory queue loses what is left, so the loop keeps
 * delivering (and retrying) until the queue is empty or the deadline, and counts the rest as
 * discarded (`reason="shutdown"`).
 */
import type { Counter } from 'prom-client';
import type { Alert } from '../alert.js';
import type { ComponentHealth } from '../component.js';
import { StoppedError, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Sink } from '../pipeline/types.js';
import type { DeliveryQueue, DueRow } from './delivery-queue.js';
import { SidekickClient, sidekickBody, type SidekickClientDeps, type SidekickConfig } from './sidekick-client.js';

export interface FalcosidekickSinkDeps extends SidekickClientDeps {
  readonly queue: DeliveryQueue;
  /** Longest idle wait between polls for due rows (ms). Default 1000. */
  readonly pollMs?: number;
}

export class FalcosidekickSink implements Sink {
  readonly id = 'sink/falcosidekick';
  private readonly client: SidekickClient;
  private readonly log: Logger;
  private readonly cfg: SidekickConfig;
  private readonly abort: AbortController;
  private readonly queue: DeliveryQueue;
  private readonly inflight = new Map<string, Promise<void>>();
  private wakeUp: (() => void) | null = null;
  private loopDone: Promise<void> | null = null;
  private started = false;
  private stopping = false;
  private stopPromise: Promise<void> | null = null;
  private pauseUntil = 0;
  private readonly pollMs: number;
  private readonly deadTotal: Counter<'status'>;

  constructor(private readonly d: FalcosidekickSinkDeps) {
    this.client = new SidekickClient(this.id, d);
    this.log = this.client.log;
    this.cfg = this.client.cfg;
    this.abort = this.client.abort;
    this.queue = d.queue;
    this.pollMs = d.pollMs ?? 1000;
    this.deadTotal = d.metrics.counter('sink_dead_letters_total', 'Alerts a sink moved to the dead letters, by HTTP status class', ['status']);
    this.queue.onReady(() => this.wake());
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.client.open();
    this.loopDone = this.loop();
    this.log.info({ url: this.cfg.url, concurrency: this.cfg.concurrency, waiting: this.queue.readyCount }, this.queue.durable ? 'started (delivering from the spool)' : 'started');
  }

  pending(): number {
    return this.queue.readyCount;
  }

  health(): ComponentHealth {
    const n = this.pending();
    if (this.queue.durable) return this.client.health(this.started, this.stopping, `${n} waiting in the spool`, `${n} kept in the spool`);
    return this.client.health(this.started, this.stopping, `${n} pending`, `${n} pending`);
  }

  async write(alert: Alert): Promise<void> {
    if (this.stopping) throw new StoppedError(this.id);
    this.d.metrics.received.inc({ component: this.id });
    await this.queue.markReady(alert, sidekickBody(alert));
  }

  stop(deadlineMs: number): Promise<void> {
    this.stopPromise ??= this.doStop(deadlineMs);
    return this.stopPromise;
  }

  // -------------------------------------------------------------------------------------------

  private wake(): void {
    const w = this.wakeUp;
    this.wakeUp = null;
    w?.();
  }

  private wait(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        if (this.wakeUp === done) this.wakeUp = null;
        resolve();
      };
      const t = setTimeout(done, Math.max(0, ms));
      this.wakeUp = done;
    });
  }

  /** At the deadline; for a durable queue also as soon as sidekick fails while stopping. */
  private shouldExit(): boolean {
    if (this.abort.signal.aborted) return true;
    return this.stopping && this.queue.durable && this.client.consecutiveFailures > 0;
  }

  /** Stopping and nothing left to do: nothing in flight and (durable) nothing due or (memory) nothing kept. */
  private drained(): boolean {
    return this.stopping && this.inflight.size === 0 && (this.queue.durable || this.queue.readyCount === 0);
  }

  private async loop(): Promise<void> {
    while (!this.shouldExit()) {
      const now = Date.now();
      if (now < this.pauseUntil) {
        await this.wait(this.pauseUntil - now);
        continue;
      }
      // After failures: one probe at a time until one succeeds.
      const cap = this.client.consecutiveFailures > 0 ? 1 : this.cfg.concurrency;
      const slots = cap - this.inflight.size;
      if (slots <= 0) {
        await this.wait(this.pollMs);
        continue;
      }
      let rows: readonly DueRow[];
      try {
        rows = this.queue.due(now, slots);
      } catch (err) {
        this.log.error({ error: errorMessage(err) }, 'reading due alerts from the queue failed');
        await this.wait(this.pollMs);
        continue;
      }
      if (rows.length === 0) {
        if (this.drained()) return;
        await this.wait(this.stopping ? 20 : this.pollMs);
        continue;
      }
      for (const row of rows) {
        const p = this.send(row).finally(() => {
          this.inflight.delete(row.id);
          this.wake();
        });
        this.inflight.set(row.id, p);
      }
    }
  }

  private async send(row: DueRow): Promise<void> {
    if (!this.client.isOpen) return;
    const r = await this.client.send(row.payload);
    if (r.kind !== 'ok' && this.abort.signal.aborted) return; // at the deadline: the row stays queued (kept by a durable queue)
    const q = this.queue;
    if (r.kind === 'ok') {
      if (this.client.consecutiveFailures > 0) this.log.info({ after_failures: this.client.consecutiveFailures }, 'falcosidekick is accepting alerts again');
      this.pauseUntil = 0;
      this.client.delivered(Math.max(0, Date.now() - row.receivedAt));
      await q.ack(row.id);
      return;
    }
    this.client.failed(r);
    if (r.kind === 'permanent') {
      // A permanent failure says nothing about sidekick being down: do not slow the others.
      this.client.consecutiveFailures = 0;
      if (q.durable) {
        this.deadTotal.inc({ status: `${Math.floor(r.status / 100)}xx` });
        this.d.metrics.discarded.inc({ component: this.id, reason: 'dead_letter' });
        this.log.error({ status: r.status, rule: row.rule, alert_id: row.id, body: r.detail }, 'falcosidekick rejected the alert permanently; moved to the dead letters (falco-companion spool list --dead)');
      } else {
        this.d.metrics.discarded.inc({ component: this.id, reason: 'permanent' });
        this.log.error({ status: r.status, rule: row.rule, body: r.detail }, 'falcosidekick rejected the alert permanently; not retried');
      }
      await q.deadLetter(row.id, r.status, `${r.code}: ${r.detail}`);
      return;
    }
    const failures = this.client.consecutiveFailures;
    const delay = this.client.retryDelay(failures - 1, r.retryAfterMs);
    const next = Date.now() + delay;
    this.pauseUntil = Math.max(this.pauseUntil, next);
    this.client.retried();
    if (failures === 1 || failures % 10 === 0) {
      this.log.warn(
        { status: r.status, error: r.code, detail: r.detail, attempt: row.attempts + 1, retry_in_ms: delay, waiting: q.readyCount },
        q.durable ? 'delivery failed; alerts stay in the spool and are retried' : 'delivery failed; retrying',
      );
    }
    await q.retryLater(row.id, next, `${r.code}: ${r.detail}`);
  }

  private async doStop(deadlineMs: number): Promise<void> {
    this.stopping = true;
    this.queue.close();
    this.wake();
    if (!this.started) return;
    const timer = setTimeout(() => this.abort.abort(), Math.max(0, deadlineMs - Date.now()));
    this.abort.signal.addEventListener('abort', () => this.wake(), { once: true });
    await this.loopDone;
    await Promise.all([...this.inflight.values()]);
    clearTimeout(timer);
    const left = this.pending();
    if (this.queue.durable) {
      this.log.info({ kept: left }, left > 0 ? `stopped: ${left} alert(s) kept in the spool for the next start` : 'stopped: nothing waiting');
    } else if (left > 0) {
      this.d.metrics.discarded.inc({ component: this.id, reason: 'shutdown' }, left);
      this.log.warn({ undelivered: left }, `shutdown deadline reached: ${left} alert(s) left undelivered`);
    } else {
      this.log.info('stopped: queue drained');
    }
    await this.client.close();
  }
}
