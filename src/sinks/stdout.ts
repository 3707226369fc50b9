/**
 * Stdout sink (`sink/stdout`): one Falco-shaped JSON line per alert (serializeAlert), honouring
 * stream back-pressure: `write` waits for 'drain' when the stream buffer is full.
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { serializeAlert, type Alert } from '../alert.js';
import type { ComponentHealth } from '../component.js';
import { StoppedError, errorCode } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Sink } from '../pipeline/types.js';

export interface StdoutSinkDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Defaults to process.stdout. */
  readonly stream?: Writable;
}

/** JSON-lines writer shared by the stdout and file sinks. */
export abstract class JsonLinesSink implements Sink {
  protected stream: Writable;
  protected readonly log: Logger;
  protected stopping = false;
  protected waiting = 0;
  protected lastError: string | null = null;
  private stopPromise: Promise<void> | null = null;

  constructor(
    readonly id: string,
    protected readonly d: { readonly logger: Logger; readonly metrics: Metrics },
    stream: Writable | null,
  ) {
    this.stream = stream as Writable;
    this.log = d.logger.child({ component: id });
  }

  abstract start(): Promise<void>;

  protected watch(stream: Writable): void {
    stream.on('error', (err: Error) => {
      this.lastError = err.message;
      this.d.metrics.errors.inc({ component: this.id, code: errorCode(err) });
      this.log.error({ error: err }, 'output stream failed');
    });
  }

  pending(): number {
    return this.waiting;
  }

  health(): ComponentHealth {
    if (this.stopping) return { ready: false, detail: 'stopping' };
    if (this.lastError) return { ready: false, detail: `write failed: ${this.lastError}` };
    return { ready: true };
  }

  async write(alert: Alert): Promise<void> {
    if (this.stopping) throw new StoppedError(this.id);
    const stream = this.stream;
    const ok = stream.write(serializeAlert(alert) + '\n');
    this.d.metrics.sent.inc({ component: this.id });
    if (!ok && !stream.destroyed) {
      this.waiting++;
      try {
        await Promise.race([once(stream, 'drain'), once(stream, 'close')]);
      } finally {
        this.waiting--;
      }
    }
  }

  stop(deadlineMs: number): Promise<void> {
    this.stopPromise ??= this.doStop(deadlineMs);
    return this.stopPromise;
  }

  protected async doStop(deadlineMs: number): Promise<void> {
    this.stopping = true;
    const s = this.stream;
    if (s.writableNeedDrain && !s.destroyed) {
      await Promise.race([once(s, 'drain'), once(s, 'close'), new Promise((r) => setTimeout(r, Math.max(0, deadlineMs - Date.now())).unref())]);
    }
  }
}

export class StdoutSink extends JsonLinesSink {
  constructor(deps: StdoutSinkDeps) {
    super('sink/stdout', deps, deps.stream ?? process.stdout);
  }

  async start(): Promise<void> {
    this.watch(this.stream);
  }
}
