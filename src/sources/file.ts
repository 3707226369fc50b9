/**
 * JSON-lines source: Falco stdout captures, Falco `file_output`, or stdin (`-`).
 *
 * One alert per line, parsed losslessly and normalised with {@link alertFromJson}. Lines that are
 * not JSON (Falco's startup and log lines, blank lines) are skipped and counted
 * (`discarded_total{reason="not_json"}`), JSON that is not an alert is counted as `invalid_alert`
 * and logged (rate-limited), lines longer than `maxLineBytes` are skipped as `line_too_long`.
 *
 * Follow mode behaves like `tail -F`: the file is polled (stat + read from the offset; fs.watch is
 * unreliable on overlay and network filesystems), truncation restarts at offset 0, re-creation or
 * rotation (a new inode under the path) finishes the old file and reads the new one from its start,
 * and a file that does not exist yet is waited for.
 *
 * Back-pressure: every line is submitted in order and awaited; when the intake is full the source
 * stops reading, waits for `whenNotFull()` and retries the same alert. Nothing is dropped.
 */
import { open, stat, type FileHandle } from 'node:fs/promises';
import { alertFromJson, InvalidAlertError, type Alert, type Origin } from '../alert.js';
import type { Component, ComponentHealth } from '../component.js';
import { sleep } from '../component.js';
import { CompanionError, QueueFullError, StoppedError, errorCode, errorMessage } from '../errors.js';
import { JsonSyntaxError, parse } from '../json/lossless.js';
import { countSuppressed, rateLimited, type RateLimitedLog } from '../log-limit.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Intake } from '../pipeline/types.js';

export interface FileSourceCounts {
  /** Lines seen (complete lines, incl. skipped ones). */
  readonly lines: number;
  /** Alerts handed to the intake. */
  readonly alerts: number;
  /** Lines skipped: not JSON, not an alert, or too long. */
  readonly skipped: number;
}

export interface FileSourceOptions {
  /** File to read, or `-` for stdin. */
  readonly path: string;
  /** Follow mode: start at the beginning of an existing file (true) or at its end (false). */
  readonly fromStart: boolean;
  /** true: keep following like `tail -F`; false: read to EOF, then `done()` resolves. */
  readonly follow: boolean;
  readonly pollIntervalMs: number;
  readonly maxLineBytes: number;
  readonly intake: Intake;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Stream read when `path` is `-` (default: process.stdin, looked up at start()). */
  readonly stdin?: NodeJS.ReadableStream;
  /** Origin kind stamped on alerts (default `stdin` for `-`, else `file`). */
  readonly originKind?: 'file' | 'stdin' | 'replay';
  /** Progress callback (replay), called at most every `progressIntervalMs` (default 500) while reading. */
  readonly onProgress?: (counts: FileSourceCounts) => void;
  readonly progressIntervalMs?: number;
  /** Injected wall clock (ms) for progress and log rate limiting. */
  readonly now?: () => number;
}

/** The input file cannot be read (non-follow mode: replay of a missing file, permission denied). */
export class InputError extends CompanionError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_INPUT', message, options);
    this.name = 'InputError';
  }
}

const READ_CHUNK = 64 * 1024;
const LOG_EVERY_MS = 10_000;

type SkipReason = 'not_json' | 'invalid_alert' | 'line_too_long';

export class FileSource implements Component {
  readonly id: string;
  private readonly o: FileSourceOptions;
  private readonly log: Logger;
  private readonly origin: Origin;
  private readonly now: () => number;
  private readonly abort = new AbortController();
  private readonly linesCounter;
  private readonly reopenCounter;

  private state: 'new' | 'waiting' | 'reading' | 'finished' | 'failed' | 'stopped' = 'new';
  private stateDetail = 'not started';
  private running: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  private handle: FileHandle | null = null;

  // Line assembly.
  private partial: Buffer[] = [];
  private partialLen = 0;
  private overlong = false;

  private lines = 0;
  private alerts = 0;
  private skipped = 0;
  private lastProgress = 0;
  /** "Not a Falco alert" lines: at most one log line per LOG_EVERY_MS. */
  private readonly warnInvalid: RateLimitedLog;

  private readonly donePromise: Promise<FileSourceCounts>;
  private resolveDone!: (c: FileSourceCounts) => void;
  private rejectDone!: (e: Error) => void;

  constructor(opts: FileSourceOptions) {
    this.o = opts;
    const isStdin = opts.path === '-';
    this.id = isStdin ? 'source/stdin' : 'source/file';
    this.log = opts.logger.child({ component: this.id });
    this.origin = Object.freeze({ kind: opts.originKind ?? (isStdin ? 'stdin' : 'file'), component: this.id });
    this.now = opts.now ?? Date.now;
    this.warnInvalid = rateLimited(this.log, { intervalMs: LOG_EVERY_MS, now: this.now, onSuppressed: countSuppressed(opts.metrics, this.id) });
    this.linesCounter = opts.metrics.counter('input_lines_total', 'Lines read by the JSON-lines input', ['component']);
    this.reopenCounter = opts.metrics.counter('input_reopens_total', 'Times the followed file was truncated or replaced', ['component', 'reason']);
    this.donePromise = new Promise<FileSourceCounts>((res, rej) => {
      this.resolveDone = res;
      this.rejectDone = rej;
    });
    // done() may never be awaited (follow mode): keep a rejection from becoming unhandled.
    this.donePromise.catch(() => undefined);
  }

  /** Counts so far. */
  counts(): FileSourceCounts {
    return { lines: this.lines, alerts: this.alerts, skipped: this.skipped };
  }

  /**
   * Resolves with the final counts when the input is finished (non-follow EOF, stdin end) or the
   * source was stopped; rejects with InputError when a non-follow input cannot be read.
   */
  done(): Promise<FileSourceCounts> {
    return this.donePromise;
  }

  health(): ComponentHealth {
    const ready = this.state === 'waiting' || this.state === 'reading' || this.state === 'finished';
    return { ready, detail: this.stateDetail };
  }

  start(): Promise<void> {
    if (this.running || this.stopping) return Promise.resolve();
    this.lastProgress = this.now();
    const run = this.o.path === '-' ? this.runStream() : this.runFile();
    this.running = run.then(
      () => {
        this.resolveDone(this.counts());
      },
      (err: unknown) => {
        this.state = 'failed';
        this.stateDetail = errorMessage(err);
        this.o.metrics.errors.inc({ component: this.id, code: errorCode(err) });
        this.log.error({ error: err }, 'input failed');
        this.rejectDone(err instanceof Error ? err : new InputError(String(err)));
      },
    );
    return Promise.resolve();
  }

  stop(deadlineMs: number): Promise<void> {
    this.stopping ??= (async () => {
      this.abort.abort();
      if (this.running) {
        const left = Math.max(0, deadlineMs - Date.now());
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([this.running, new Promise<void>((r) => (timer = setTimeout(r, left)))]);
        clearTimeout(timer);
      } else {
        this.resolveDone(this.counts());
      }
      await this.closeHandle();
      if (this.state !== 'failed') {
        this.state = 'stopped';
        this.stateDetail = 'stopped';
      }
    })();
    return this.stopping;
  }

  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  // ---------------------------------------------------------------------------------------------
  // stdin

  private async runStream(): Promise<void> {
    const stream = this.o.stdin ?? process.stdin;
    this.state = 'reading';
    this.stateDetail = 'reading stdin';
    const it = (stream as AsyncIterable<Buffer | string>)[Symbol.asyncIterator]();
    const aborted = new Promise<null>((r) => this.abort.signal.addEventListener('abort', () => r(null), { once: true }));
    try {
      while (!this.stopped) {
        const r = await Promise.race([it.next(), aborted]);
        if (r === null) break;
        if (r.done) {
          await this.flushPartial();
          this.state = 'finished';
          this.stateDetail = 'stdin ended';
          this.log.info(this.counts(), 'stdin ended');
          return;
        }
        const chunk = typeof r.value === 'string' ? Buffer.from(r.value, 'utf8') : r.value;
        await this.processChunk(chunk);
      }
    } finally {
      if (this.stopped) void it.return?.();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // files

  private async runFile(): Promise<void> {
    const path = this.o.path;
    const follow = this.o.follow;
    const buf = Buffer.allocUnsafe(READ_CHUNK);
    let ino = -1;
    let dev = -1;
    let offset = 0;
    let firstOpen = true;

    while (!this.stopped) {
      if (!this.handle) {
        try {
          this.handle = await open(path, 'r');
        } catch (err) {
          if (!follow) throw new InputError(`cannot open ${path}: ${errorMessage(err)}`, { cause: err });
          const code = errorCode(err);
          if (code === 'ENOENT') {
            if (this.state !== 'waiting') this.log.info({ path }, 'waiting for the input file to appear');
            this.state = 'waiting';
            this.stateDetail = `waiting for ${path} to appear`;
          } else {
            if (this.state !== 'failed') this.log.warn({ path, error: errorMessage(err) }, 'cannot open the input file; retrying');
            this.o.metrics.errors.inc({ component: this.id, code });
            this.state = 'failed';
            this.stateDetail = `cannot open ${path}: ${code}`;
          }
          firstOpen = false;
          await sleep(this.o.pollIntervalMs, this.abort.signal);
          continue;
        }
        const st = await this.handle.stat();
        ino = st.ino;
        dev = st.dev;
        offset = follow && firstOpen && !this.o.fromStart ? st.size : 0;
        firstOpen = false;
        this.resetPartial();
        this.state = 'reading';
        this.stateDetail = `reading ${path}`;
        this.log.info({ path, offset }, 'input file opened');
      }

      const h: FileHandle = this.handle;
      const { bytesRead } = await h.read(buf, 0, buf.length, offset);
      if (bytesRead > 0) {
        offset += bytesRead;
        await this.processChunk(buf.subarray(0, bytesRead));
        continue;
      }

      // At EOF.
      if (!follow) {
        await this.flushPartial();
        await this.closeHandle();
        this.state = 'finished';
        this.stateDetail = `finished ${path}`;
        return;
      }
      this.maybeProgress();

      let byName: { ino: number; dev: number } | null = null;
      try {
        byName = await stat(path);
      } catch {
        byName = null; // removed or renamed, not re-created yet: keep reading the old file
      }
      if (byName && (byName.ino !== ino || byName.dev !== dev)) {
        // Rotated or re-created: finish the old file, then read the new one from its start.
        offset = await this.drain(h, buf, offset);
        await this.flushPartial();
        await this.closeHandle();
        this.reopenCounter.inc({ component: this.id, reason: 'rotated' });
        this.log.info({ path }, 'input file replaced; reading the new file from its start');
        continue;
      }
      const size = (await h.stat()).size;
      if (size < offset) {
        this.reopenCounter.inc({ component: this.id, reason: 'truncated' });
        this.log.info({ path, offset, size }, 'input file truncated; reading from its start');
        offset = 0;
        this.resetPartial();
        continue;
      }
      this.stateDetail = byName ? `following ${path}` : `following ${path} (removed; waiting for it to be re-created)`;
      await sleep(this.o.pollIntervalMs, this.abort.signal);
    }
  }

  /** Read what is left of a file up to EOF; returns the new offset. */
  private async drain(h: FileHandle, buf: Buffer, offset: number): Promise<number> {
    for (;;) {
      if (this.stopped) return offset;
      const { bytesRead } = await h.read(buf, 0, buf.length, offset);
      if (bytesRead === 0) return offset;
      offset += bytesRead;
      await this.processChunk(buf.subarray(0, bytesRead));
    }
  }

  private async closeHandle(): Promise<void> {
    const h = this.handle;
    this.handle = null;
    if (h) await h.close().catch(() => undefined);
  }

  // ---------------------------------------------------------------------------------------------
  // lines

  private resetPartial(): void {
    this.partial = [];
    this.partialLen = 0;
    this.overlong = false;
  }

  /** Split a chunk into lines; the chunk's memory may be reused after this resolves. */
  private async processChunk(chunk: Buffer): Promise<void> {
    let start = 0;
    while (start < chunk.length && !this.stopped) {
      const nl = chunk.indexOf(10, start);
      if (nl === -1) {
        this.appendPartial(chunk.subarray(start));
        return;
      }
      const seg = chunk.subarray(start, nl);
      start = nl + 1;
      if (this.overlong || this.partialLen + seg.length > this.o.maxLineBytes) {
        this.endOverlong();
        continue;
      }
      let line: Buffer;
      if (this.partialLen > 0) {
        this.partial.push(seg);
        line = Buffer.concat(this.partial, this.partialLen + seg.length);
        this.partial = [];
        this.partialLen = 0;
      } else {
        line = seg;
      }
      await this.handleLine(line);
    }
  }

  private appendPartial(seg: Buffer): void {
    if (seg.length === 0) return;
    if (this.overlong) return;
    if (this.partialLen + seg.length > this.o.maxLineBytes) {
      this.overlong = true;
      this.partial = [];
      this.partialLen = 0;
      return;
    }
    this.partial.push(Buffer.from(seg)); // copy: the read buffer is reused
    this.partialLen += seg.length;
  }

  private endOverlong(): void {
    this.overlong = false;
    this.partial = [];
    this.partialLen = 0;
    this.lines++;
    this.linesCounter.inc({ component: this.id });
    this.skip('line_too_long');
    this.log.warn({ max_line_bytes: this.o.maxLineBytes, line: this.lines }, 'line longer than max_line_bytes skipped');
  }

  /** At the end of input: an unterminated last line is processed as a line. */
  private async flushPartial(): Promise<void> {
    if (this.overlong) {
      this.endOverlong();
      return;
    }
    if (this.partialLen === 0) return;
    const line = Buffer.concat(this.partial, this.partialLen);
    this.partial = [];
    this.partialLen = 0;
    await this.handleLine(line);
  }

  private skip(reason: SkipReason): void {
    this.skipped++;
    this.o.metrics.discarded.inc({ component: this.id, reason });
  }

  private async handleLine(raw: Buffer): Promise<void> {
    this.lines++;
    this.linesCounter.inc({ component: this.id });
    let end = raw.length;
    if (end > 0 && raw[end - 1] === 13) end--; // CRLF
    const text = raw.toString('utf8', 0, end);
    // Cheap pre-check: Falco's log lines never start with '{'.
    let i = 0;
    while (i < text.length && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9)) i++;
    if (text.charCodeAt(i) !== 123 /* { */) {
      this.skip('not_json');
      this.maybeProgress();
      return;
    }
    let alert: Alert;
    try {
      alert = alertFromJson(parse(text), this.origin, this.now());
    } catch (err) {
      if (err instanceof JsonSyntaxError) {
        this.skip('not_json');
      } else if (err instanceof InvalidAlertError) {
        this.skip('invalid_alert');
        this.warnInvalid({ line: this.lines, error: err.message, hint: err.hint ?? undefined }, 'line is JSON but not a Falco alert; skipped');
      } else {
        throw err;
      }
      this.maybeProgress();
      return;
    }
    this.o.metrics.received.inc({ component: this.id });
    if (await this.submit(alert)) this.alerts++;
    this.maybeProgress();
  }

  /** Submit with back-pressure; false when the source or intake stopped first. */
  private async submit(alert: Alert): Promise<boolean> {
    for (;;) {
      if (this.stopped) return false;
      try {
        await this.o.intake.submit(alert);
        return true;
      } catch (err) {
        if (err instanceof QueueFullError) {
          const abort = this.abort.signal;
          await new Promise<void>((resolve) => {
            const onAbort = (): void => resolve();
            abort.addEventListener('abort', onAbort, { once: true });
            void this.o.intake.whenNotFull().then(() => {
              abort.removeEventListener('abort', onAbort);
              resolve();
            });
          });
          continue;
        }
        if (err instanceof StoppedError) {
          this.log.info('intake stopped; input stops reading');
          this.abort.abort();
          return false;
        }
        throw err;
      }
    }
  }

  private maybeProgress(): void {
    const cb = this.o.onProgress;
    if (!cb) return;
    const t = this.now();
    if (t - this.lastProgress < (this.o.progressIntervalMs ?? 500)) return;
    this.lastProgress = t;
    cb(this.counts());
  }
}
