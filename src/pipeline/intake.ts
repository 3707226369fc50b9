/** The in-memory intake: a bounded FIFO between sources and the pipeline. */
import type { Alert } from '../alert.js';
import { QueueFullError, StoppedError } from '../errors.js';
import type { Metrics } from '../metrics.js';
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

  constructor(
    private readonly capacity: number,
    private readonly metrics: Metrics,
  ) {
    this.buf = new Array<Alert | undefined>(capacity);
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
    if (this.closed) return Promise.reject(new StoppedError('intake'));
    if (this.size >= this.capacity) {
      this.metrics.discarded.inc({ component: this.id, reason: 'queue_full' });
      return Promise.reject(new QueueFullError('intake queue'));
    }
    this.buf[(this.head + this.size) % this.capacity] = this.ids.ensure(alert);
    this.size++;
    this.metrics.received.inc({ component: this.id });
    this.metrics.queueDepth.set({ component: this.id }, this.size);
    this.waiters.shift()?.();
    return Promise.resolve();
  }

  /** Next alert, or null once closed and empty. */
  async take(): Promise<Alert | null> {
    for (;;) {
      if (this.size > 0) {
        const a = this.buf[this.head] as Alert;
        this.buf[this.head] = undefined;
        this.head = (this.head + 1) % this.capacity;
        this.size--;
        this.metrics.queueDepth.set({ component: this.id }, this.size);
        if (this.size < this.capacity) for (const w of this.notFullWaiters.splice(0)) w();
        return a;
      }
      if (this.closed) return null;
      await new Promise<void>((r) => this.waiters.push(r));
    }
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
