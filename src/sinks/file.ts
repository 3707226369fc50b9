/**
 * File sink (`sink/file`): appends one Falco-shaped JSON line per alert. `reopen()` (wire it to
 * SIGHUP) closes and reopens the path, for logrotate. `stop()` flushes and closes the file.
 */
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import type { Config } from '../config/schema.js';
import { CompanionError, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Alert } from '../alert.js';
import { JsonLinesSink } from './stdout.js';

export interface FileSinkDeps {
  readonly config: Config['sinks']['file'];
  readonly logger: Logger;
  readonly metrics: Metrics;
}

function openAppend(path: string): Promise<WriteStream> {
  return new Promise((resolve, reject) => {
    const s = createWriteStream(path, { flags: 'a' });
    s.once('open', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

async function closeStream(s: Writable, deadlineMs: number): Promise<void> {
  if (s.destroyed || s.closed) return;
  const done = Promise.race([once(s, 'close'), once(s, 'error')]).catch(() => undefined);
  s.end();
  await Promise.race([done, new Promise((r) => setTimeout(r, Math.max(0, deadlineMs - Date.now())).unref())]);
  if (!s.destroyed) s.destroy();
}

export class FileSink extends JsonLinesSink {
  private readonly path: string;
  private opened = false;

  constructor(deps: FileSinkDeps) {
    // The real stream is opened in start(); until then writes are refused.
    super('sink/file', deps, null);
    if (!deps.config.path) throw new CompanionError('E_CONFIG', 'sinks.file.path is empty');
    this.path = deps.config.path;
  }

  async start(): Promise<void> {
    if (this.opened) return;
    try {
      this.stream = await openAppend(this.path);
    } catch (err) {
      throw new CompanionError('E_FILE_SINK', `sinks.file: cannot open ${this.path}: ${errorMessage(err)}`, { cause: err });
    }
    this.opened = true;
    this.watch(this.stream);
    this.log.info({ path: this.path }, 'appending alerts');
  }

  /** Close and reopen the file (log rotation). Lines written before are flushed to the old file. */
  async reopen(): Promise<void> {
    if (!this.opened || this.stopping) return;
    const next = await openAppend(this.path);
    const old = this.stream;
    this.stream = next;
    this.watch(next);
    this.lastError = null;
    await closeStream(old, Date.now() + 5000);
    this.log.info({ path: this.path }, 'reopened');
  }

  override async write(alert: Alert): Promise<void> {
    if (!this.opened && !this.stopping) throw new CompanionError('E_NOT_STARTED', 'sink/file is not started');
    return super.write(alert);
  }

  protected override async doStop(deadlineMs: number): Promise<void> {
    this.stopping = true;
    if (this.opened) await closeStream(this.stream, deadlineMs);
  }
}
