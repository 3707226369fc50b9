/** The in-memory intake: a bounded FIFO between sources and the pipeline. */
import type { Alert } from '../alert.js';
import { QueueFullError, StoppedError } from '../errors.js';
import type { BatchedCount, Metrics } from '../metrics.js';
import { AlertIdGenerator } from '../store/alert-id.js';
import type { Intake, PipelineIntake } from './types.js';

/** Every alert gets its `companion.alert_id` here (the spool does the same). */
export class MemoryIntake implements Intake, PipelineIntake {
  readonly id = 'intake/memory';
  private readonly buf: (Alert | undefined)[];
  private head = 0;
  private size = 0;
  private closed = false;
  private readonly waiters: (() => void)[] = [];
  private readonly notFullWaiters: (() => void)[] = [];
  private readonly ids = new AlertIdGenerator();
  /** Counted per alert: batched, added at scrape (src/metrics.ts). The depth gauge is read at scrape. */
  private readonly receivedCount: BatchedCount;

  constructor(
    private readonly capacity: number,
    private readonly metrics: Metrics,
  ) {
    this.buf = new Array<Alert | undefined>(capacity);
    this.receivedCount = metrics.batched(metrics.received, { component: this.id });
    metrics.gaugeFrom(metrics.queueDepth, { component: this.id }, () => this.size);
  }

  get full(): boolean {
    return this.size >= this.capacity;
  }

  get depth(): number {
    return this.size;
  }

  whenNotFull(): Promise<void> {
    if (!this.full || this.closed) return Promise.resolve();
    return new Promise((r) => this.notFullWaiters.push(r));
  }

  submit(alert: Alert): Promise<void> {
    try {
      this.submitNow(alert);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return Promise.resolve();
  }

  /** Kept at once (memory), or a QueueFullError / StoppedError thrown. */
  submitNow(alert: Alert): true {
    if (this.closed) throw new StoppedError('intake');
    if (this.size >= this.capacity) {
      this.metrics.discarded.inc({ component: this.id, reason: 'queue_full' });
      throw new QueueFullError('intake queue');
    }
    this.buf[(this.head + this.size) % this.capacity] = this.ids.ensure(alert);
    this.size++;
    this.receivedCount.inc();
    this.waiters.shift()?.();
    return true;
  }

  /** Next alert, or null once closed and empty. */
  async take(): Promise<Alert | null> {
    for (;;) {
      const a = this.takeNow();
      if (a !== undefined) return a;
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  takeNow(): Alert | null | undefined {
    if (this.size > 0) {
      const a = this.buf[this.head] as Alert;
      this.buf[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
      this.size--;
      if (this.notFullWaiters.length > 0) for (const w of this.notFullWaiters.splice(0)) w();
      return a;
    }
    return this.closed ? null : undefined;
  }

  /** Nothing to forget: memory is released when the alert is taken. */
  done(_alert: Alert): void {}

  /** Stop accepting; `take` drains what is queued and then returns null. */
  close(): void {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w();
    for (const w of this.notFullWaiters.splice(0)) w();
  }
}
