/**
 * Falcosidekick sink (`sink/falcosidekick`): one alert per POST, keep-alive pool, bounded queue
 * with back-pressure, bounded concurrency, per-attempt timeout, retry with exponential backoff +
 * jitter on retryable failures (408, 429, 5xx, connection errors, timeouts) honouring
 * Retry-After, permanent failures (400, 401, 403, 404, 413, 422, other 4xx) never retried.
 *
 * The "send one alert and classify the answer" step ({@link sendToSidekick}) and the connection
 * plumbing ({@link SidekickClient}) live in sidekick-common.ts, shared with the durable spool
 * sink; they are re-exported here for existing importers.
 */
import type { Alert } from '../alert.js';
import { sleep, type ComponentHealth } from '../component.js';
import { StoppedError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Sink } from '../pipeline/types.js';
import { SidekickClient, sidekickBody, type SidekickClientDeps, type SidekickConfig } from './sidekick-common.js';

export {
  classifyStatus,
  parseRetryAfter,
  sendToSidekick,
  sidekickBody,
  sidekickConnectOptions,
  type SendResult,
  type SidekickConfig,
} from './sidekick-common.js';

interface Entry {
  readonly alert: Alert;
  readonly body: string;
  readonly queuedAt: number;
}

export type FalcosidekickSinkDeps = SidekickClientDeps;

export class FalcosidekickSink implements Sink {
  readonly id = 'sink/falcosidekick';
  private readonly client: SidekickClient;
  private readonly log: Logger;
  private readonly cfg: SidekickConfig;
  private readonly abort: AbortController;
  private readonly queue: Entry[] = [];
  private qHead = 0;
  private inFlight = 0;
  private readonly spaceWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly itemWaiters: (() => void)[] = [];
  private workers: Promise<void>[] = [];
  private started = false;
  private stopping = false;
  private stopPromise: Promise<void> | null = null;

  constructor(private readonly d: FalcosidekickSinkDeps) {
    this.client = new SidekickClient(this.id, d);
    this.log = this.client.log;
    this.cfg = this.client.cfg;
    this.abort = this.client.abort;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.client.open();
    for (let i = 0; i < this.cfg.concurrency; i++) this.workers.push(this.worker());
    this.log.info({ url: this.cfg.url, concurrency: this.cfg.concurrency }, 'started');
  }

  pending(): number {
    return this.queue.length - this.qHead + this.inFlight;
  }

  health(): ComponentHealth {
    const pending = `${this.pending()} pending`;
    return this.client.health(this.started, this.stopping, pending, pending);
  }

  async write(alert: Alert): Promise<void> {
    if (this.stopping) throw new StoppedError(this.id);
    while (this.queue.length - this.qHead >= this.cfg.max_queue) {
      await new Promise<void>((resolve, reject) => this.spaceWaiters.push({ resolve, reject }));
      if (this.stopping) throw new StoppedError(this.id);
    }
    this.queue.push({ alert, body: sidekickBody(alert), queuedAt: Date.now() });
    this.d.metrics.received.inc({ component: this.id });
    this.gauge();
    this.itemWaiters.shift()?.();
  }

  stop(deadlineMs: number): Promise<void> {
    this.stopPromise ??= this.doStop(deadlineMs);
    return this.stopPromise;
  }

  // -------------------------------------------------------------------------------------------

  private gauge(): void {
    this.d.metrics.queueDepth.set({ component: this.id }, this.pending());
  }

  private take(): Entry | null {
    if (this.qHead >= this.queue.length) return null;
    const e = this.queue[this.qHead] as Entry;
    this.queue[this.qHead] = undefined as unknown as Entry;
    this.qHead++;
    if (this.qHead > 1024 && this.qHead * 2 > this.queue.length) {
      this.queue.splice(0, this.qHead);
      this.qHead = 0;
    }
    this.spaceWaiters.shift()?.resolve();
    return e;
  }

  private async worker(): Promise<void> {
    for (;;) {
      if (this.abort.signal.aborted) return;
      const e = this.take();
      if (!e) {
        if (this.stopping) return;
        await new Promise<void>((r) => this.itemWaiters.push(r));
        continue;
      }
      this.inFlight++;
      try {
        const delivered = await this.deliver(e);
        if (!delivered && this.abort.signal.aborted) {
          // Given back at the deadline: counted in doStop.
          this.queue.push(e);
        }
      } finally {
        this.inFlight--;
        this.gauge();
      }
    }
  }

  /** Deliver one entry with retries. Returns false only when aborted by the stop deadline. */
  private async deliver(e: Entry): Promise<boolean> {
    const first = Date.now();
    for (let attempt = 0; ; attempt++) {
      if (this.abort.signal.aborted) return false;
      const r = await this.client.send(e.body);
      if (r.kind !== 'ok' && this.abort.signal.aborted) return false;
      if (r.kind === 'ok') {
        this.client.delivered(Date.now() - e.queuedAt);
        return true;
      }
      this.client.failed(r);
      if (r.kind === 'permanent') {
        this.d.metrics.discarded.inc({ component: this.id, reason: 'permanent' });
        this.log.error({ status: r.status, rule: e.alert.rule, priority: e.alert.priority, body: r.detail }, 'falcosidekick rejected the alert permanently; not retried');
        return true;
      }
      if (this.abort.signal.aborted) return false;
      const delay = this.client.retryDelay(attempt, r.retryAfterMs);
      const elapsed = Date.now() - first;
      if (this.cfg.max_elapsed > 0 && elapsed + delay > this.cfg.max_elapsed) {
        this.d.metrics.discarded.inc({ component: this.id, reason: 'max_elapsed' });
        this.log.error(
          { status: r.status, error: r.code, rule: e.alert.rule, attempts: attempt + 1, elapsed_ms: elapsed },
          'giving up on alert: sinks.falcosidekick.max_elapsed reached',
        );
        return true;
      }
      this.client.retried();
      if (attempt === 0 || attempt % 10 === 0) {
        this.log.warn({ status: r.status, error: r.code, detail: r.detail, attempt: attempt + 1, retry_in_ms: delay }, 'delivery failed; retrying');
      }
      await sleep(delay, this.abort.signal);
    }
  }

  private async doStop(deadlineMs: number): Promise<void> {
    this.stopping = true;
    for (const w of this.spaceWaiters.splice(0)) w.reject(new StoppedError(this.id));
    for (const w of this.itemWaiters.splice(0)) w();
    if (!this.started) return;
    const timer = setTimeout(() => this.abort.abort(), Math.max(0, deadlineMs - Date.now()));
    await Promise.all(this.workers);
    clearTimeout(timer);
    const left = this.pending();
    if (left > 0) {
      this.d.metrics.discarded.inc({ component: this.id, reason: 'shutdown' }, left);
      this.log.warn({ undelivered: left }, `shutdown deadline reached: ${left} alert(s) left undelivered`);
    } else {
      this.log.info('stopped: queue drained');
    }
    await this.client.close();
  }
}
