/**
 * Falcosidekick delivery from the durable spool (`sink/falcosidekick` when `spool.enabled`).
 *
 * `write()` records the final (enriched) sidekick body on the alert's spool row (state ready);
 * a delivery loop sends due rows with bounded concurrency over a keep-alive pool, deletes a row
 * once sidekick answered 2xx, reschedules it on a retryable failure (408, 429, 5xx, connection
 * errors, timeouts; Retry-After honoured, otherwise exponential backoff with jitter), and moves
 * it to the dead letters on a permanent one (400, 401, 403, 404, 413, 422, other 4xx).
 *
 * While sidekick fails, the loop sends one probe at a time (circuit half-open) instead of
 * hammering it with the whole backlog; the first success reopens full concurrency. There is
 * no give-up time: alerts wait in the spool (within its limits) until sidekick is back.
 * A crash between a 2xx and the row's delete sends the alert again: same `companion.alert_id`.
 */
import { Pool } from 'undici';
import type { Counter, Histogram } from 'prom-client';
import type { Alert } from '../alert.js';
import { backoffMs, type ComponentHealth } from '../component.js';
import { CompanionError, StoppedError, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Sink } from '../pipeline/types.js';
import type { DueRow, Spool } from '../store/spool.js';
import { sendToSidekick, sidekickBody, sidekickConnectOptions, type SidekickConfig } from './falcosidekick.js';

export interface SpoolSidekickSinkDeps {
  readonly spool: Spool;
  readonly config: SidekickConfig;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly random?: () => number;
  /** Consecutive failed attempts after which health() turns not-ready. Default 5. */
  readonly unhealthyAfter?: number;
  /** Longest idle wait between polls for due rows (ms). Default 1000. */
  readonly pollMs?: number;
}

export class SpoolSidekickSink implements Sink {
  readonly id = 'sink/falcosidekick';
  private readonly log: Logger;
  private readonly cfg: SidekickConfig;
  private readonly target: { origin: string; path: string };
  private pool: Pool | null = null;
  private readonly inflight = new Map<string, Promise<void>>();
  private wakeUp: (() => void) | null = null;
  private loopDone: Promise<void> | null = null;
  private started = false;
  private stopping = false;
  private stopPromise: Promise<void> | null = null;
  private readonly abort = new AbortController();
  private consecutiveFailures = 0;
  private pauseUntil = 0;
  private lastFailure = '';
  private readonly random: () => number;
  private readonly unhealthyAfter: number;
  private readonly pollMs: number;
  private readonly retries: Counter<'component'>;
  private readonly delivery: Histogram<'component'>;
  private readonly deadTotal: Counter<'status'>;

  constructor(private readonly d: SpoolSidekickSinkDeps) {
    this.cfg = d.config;
    if (!d.config.url) throw new CompanionError('E_CONFIG', 'sinks.falcosidekick.url is empty');
    const u = new URL(d.config.url);
    this.target = { origin: u.origin, path: (u.pathname || '/') + u.search };
    this.log = d.logger.child({ component: this.id, sink: this.id });
    this.random = d.random ?? Math.random;
    this.unhealthyAfter = d.unhealthyAfter ?? 5;
    this.pollMs = d.pollMs ?? 1000;
    this.retries = d.metrics.counter('sink_retries_total', 'Delivery attempts retried, by sink', ['component']);
    this.delivery = d.metrics.histogram('delivery_seconds', 'Time from a sink taking an alert to its delivery', ['component']);
    this.deadTotal = d.metrics.counter('sink_dead_letters_total', 'Alerts a sink moved to the dead letters, by HTTP status class', ['status']);
    d.spool.onReady(() => this.wake());
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const connect = sidekickConnectOptions(this.cfg);
    this.pool = new Pool(this.target.origin, { connections: this.cfg.concurrency, keepAliveTimeout: 30_000, pipelining: 1, ...(connect ? { connect } : {}) });
    this.loopDone = this.loop();
    this.log.info({ url: this.cfg.url, concurrency: this.cfg.concurrency, waiting: this.d.spool.readyCount }, 'started (delivering from the spool)');
  }

  pending(): number {
    return this.d.spool.readyCount;
  }

  health(): ComponentHealth {
    if (!this.started) return { ready: false, detail: 'not started' };
    if (this.stopping) return { ready: false, detail: 'stopping' };
    if (this.consecutiveFailures >= this.unhealthyAfter) {
      return { ready: false, detail: `last ${this.consecutiveFailures} delivery attempts failed (latest: ${this.lastFailure}); ${this.pending()} kept in the spool` };
    }
    return { ready: true, detail: `${this.pending()} waiting in the spool` };
  }

  async write(alert: Alert): Promise<void> {
    if (this.stopping) throw new StoppedError(this.id);
    this.d.metrics.received.inc({ component: this.id });
    await this.d.spool.markReady(alert, sidekickBody(alert));
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

  /** Stop the loop: at once when sidekick is failing, else once nothing is due (or at the deadline). */
  private shouldExit(): boolean {
    if (this.abort.signal.aborted) return true;
    if (!this.stopping) return false;
    return this.consecutiveFailures > 0 || this.d.spool.due(Date.now(), 1).length === 0;
  }

  private async loop(): Promise<void> {
    while (!this.shouldExit()) {
      const now = Date.now();
      if (now < this.pauseUntil) {
        await this.wait(this.pauseUntil - now);
        continue;
      }
      // After failures: one probe at a time until one succeeds.
      const cap = this.consecutiveFailures > 0 ? 1 : this.cfg.concurrency;
      const slots = cap - this.inflight.size;
      if (slots <= 0) {
        await this.wait(this.pollMs);
        continue;
      }
      let rows: DueRow[];
      try {
        rows = this.d.spool.due(now, slots + this.inflight.size).filter((r) => !this.inflight.has(r.id)).slice(0, slots);
      } catch (err) {
        this.log.error({ error: errorMessage(err) }, 'reading due alerts from the spool failed');
        await this.wait(this.pollMs);
        continue;
      }
      if (rows.length === 0) {
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
    const pool = this.pool;
    if (!pool) return;
    const r = await sendToSidekick(pool, this.target, row.payload, this.cfg.timeout, { signal: this.abort.signal });
    if (r.kind !== 'ok' && this.abort.signal.aborted) return; // stopping: the row stays for the next start
    const spool = this.d.spool;
    if (r.kind === 'ok') {
      if (this.consecutiveFailures > 0) this.log.info({ after_failures: this.consecutiveFailures }, 'falcosidekick is accepting alerts again');
      this.consecutiveFailures = 0;
      this.pauseUntil = 0;
      this.d.metrics.sent.inc({ component: this.id });
      this.delivery.observe({ component: this.id }, Math.max(0, Date.now() - row.receivedAt) / 1000);
      await spool.ack(row.id);
      return;
    }
    this.consecutiveFailures++;
    this.lastFailure = r.status === null ? `${r.code}: ${r.detail}` : `HTTP ${r.status}`;
    this.d.metrics.errors.inc({ component: this.id, code: r.code });
    if (r.kind === 'permanent') {
      // A permanent failure says nothing about sidekick being down: do not slow the others.
      this.consecutiveFailures = 0;
      this.deadTotal.inc({ status: `${Math.floor(r.status / 100)}xx` });
      this.d.metrics.discarded.inc({ component: this.id, reason: 'dead_letter' });
      this.log.error({ status: r.status, rule: row.rule, alert_id: row.id, body: r.detail }, 'falcosidekick rejected the alert permanently; moved to the dead letters (falco-companion spool list --dead)');
      await spool.deadLetter(row.id, r.status, `${r.code}: ${r.detail}`);
      return;
    }
    let delay = backoffMs(this.consecutiveFailures - 1, this.cfg.retry_initial, this.cfg.retry_max, this.random);
    if (r.retryAfterMs !== null) delay = Math.min(Math.max(r.retryAfterMs, 0), Math.max(this.cfg.retry_max, 600_000));
    const next = Date.now() + delay;
    this.pauseUntil = Math.max(this.pauseUntil, next);
    this.retries.inc({ component: this.id });
    if (this.consecutiveFailures === 1 || this.consecutiveFailures % 10 === 0) {
      this.log.warn(
        { status: r.status, error: r.code, detail: r.detail, attempt: row.attempts + 1, retry_in_ms: delay, waiting: spool.readyCount },
        'delivery failed; alerts stay in the spool and are retried',
      );
    }
    await spool.retryLater(row.id, next, `${r.code}: ${r.detail}`);
  }

  private async doStop(deadlineMs: number): Promise<void> {
    this.stopping = true;
    this.wake();
    if (!this.started) return;
    const timer = setTimeout(() => this.abort.abort(), Math.max(0, deadlineMs - Date.now()));
    this.abort.signal.addEventListener('abort', () => this.wake(), { once: true });
    await this.loopDone;
    await Promise.all([...this.inflight.values()]);
    clearTimeout(timer);
    const left = this.pending();
    this.log.info({ kept: left }, left > 0 ? `stopped: ${left} alert(s) kept in the spool for the next start` : 'stopped: nothing waiting');
    const pool = this.pool;
    this.pool = null;
    if (pool) {
      if (this.abort.signal.aborted) await pool.destroy().catch(() => undefined);
      else await pool.close().catch(() => undefined);
    }
  }
}
