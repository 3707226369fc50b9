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
 * Checkpoints (follow mode, with `checkpoints`: the durable spool): the position after the last
 * complete line whose alert is committed is saved with the file's device, inode and a fingerprint
 * of its first bytes, through the spool's writer right behind the alerts (one transaction), so it
 * never gets ahead of them. At start the source resumes there (src/sources/file-checkpoint.ts
 * finds the file again, also under a rotated name) and reads what was written while it was down:
 * at least once, no gaps. Without checkpoints a start begins where `fromStart` says.
 *
 * Back-pressure: the alerts of one read are submitted in order without waiting for each commit
 * (they share the spool's group commit); when the intake is full the source stops reading,
 * waits for `whenNotFull()` and goes on with the same line. A refused alert (failed commit) is
 * submitted again, in order, before the position is saved. Nothing is dropped.
 */
import { createReadStream } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { resolve } from 'node:path';
import { createGunzip } from 'node:zlib';
import { alertFromJson, InvalidAlertError, type Alert, type Origin } from '../alert.js';
import type { Component, ComponentHealth } from '../component.js';
import { sleep } from '../component.js';
import { CompanionError, QueueFullError, StoppedError, errorCode, errorMessage } from '../errors.js';
import { JsonSyntaxError, parse } from '../json/lossless.js';
import { DEFAULT_INPUT_LIMITS, InputLimitError, LimitReporter, limitAlertJson, markTruncated, type InputLimits } from '../limits.js';
import { countSuppressed, rateLimited, type RateLimitedLog } from '../log-limit.js';
import type { Logger } from '../logger.js';
import type { BatchedCount, Metrics } from '../metrics.js';
import type { Intake } from '../pipeline/types.js';
import type { InputCheckpoints } from '../store/checkpoints.js';
import { FINGERPRINT_BYTES, factsOf, headOf, planResume, sha256Hex, type Segment } from './file-checkpoint.js';

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
  /** Input limits applied to each line's alert (src/limits.ts; default DEFAULT_INPUT_LIMITS). */
  readonly limits?: InputLimits;
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
  /** Injected wall clock (ms) for progress, log rate limiting and checkpoint times. */
  readonly now?: () => number;
  /**
   * Follow mode: where the read position is kept (the spool). Absent: no checkpoints, every start
   * begins where `fromStart` says.
   */
  readonly checkpoints?: InputCheckpoints;
  /** Names a rotated copy of the file may have (globs, `{name}` = the file's base name). */
  readonly rotatedNames?: readonly string[];
  /** Checkpoints of other input paths not updated for this long are forgotten. Default 30 days. */
  readonly checkpointRetentionMs?: number;
}

/** logrotate's names: NAME.1, NAME.2.gz (default, compress), NAME-20260101[.gz] (dateext); input.rotated_names. */
export const DEFAULT_ROTATED_NAMES: readonly string[] = ['{name}.[0-9]*', '{name}-[0-9]*'];
/** Checkpoint rows kept at most (one per input path ever followed with this state directory). */
const MAX_CHECKPOINTS = 1000;

/** The input file cannot be read (non-follow mode: replay of a missing file, permission denied). */
export class InputError extends CompanionError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_INPUT', message, options);
    this.name = 'InputError';
  }
}

const READ_CHUNK = 64 * 1024;
const LOG_EVERY_MS = 10_000;

type SkipReason = 'not_json' | 'invalid_alert' | 'line_too_long' | 'too_deep';

/** The file being read: what a checkpoint names. */
interface Current {
  readonly name: string;
  readonly dev: bigint;
  readonly ino: bigint;
  /** The fingerprint covers the first fpLen bytes (grows with the file up to FINGERPRINT_BYTES). */
  fpLen: number;
  fp: string;
  /** What was last saved (skip saving the same position again). */
  saved: number;
}

export class FileSource implements Component {
  readonly id: string;
  private readonly o: FileSourceOptions;
  private readonly log: Logger;
  private readonly origin: Origin;
  private readonly now: () => number;
  private readonly abort = new AbortController();
  /** Per-line counters, batched (added at scrape). */
  private readonly linesCounter: BatchedCount;
  private readonly receivedCounter: BatchedCount;
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

  /** Offset (in the current file) where the line being assembled starts: the checkpoint position. */
  private lineStart = 0;
  /** Alerts submitted and not yet settled, in order. */
  private outstanding: { readonly p: Promise<void>; readonly alert: Alert }[] = [];
  private cur: Current | null = null;
  private readonly key: string;

  private lines = 0;
  private alerts = 0;
  private skipped = 0;
  private lastProgress = 0;
  /** "Not a Falco alert" lines: at most one log line per LOG_EVERY_MS. */
  private readonly warnInvalid: RateLimitedLog;
  /** Input limits: what they cut or refused, counted and logged (rate-limited). */
  private readonly limits: InputLimits;
  private readonly limitReporter: LimitReporter;

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
    this.limits = opts.limits ?? DEFAULT_INPUT_LIMITS;
    this.limitReporter = new LimitReporter(this.id, this.log, opts.metrics, { intervalMs: LOG_EVERY_MS, now: this.now });
    this.linesCounter = opts.metrics.batched(opts.metrics.counter('input_lines_total', 'Lines read by the JSON-lines input', ['component']), { component: this.id });
    this.receivedCounter = opts.metrics.batched(opts.metrics.received, { component: this.id });
    this.reopenCounter = opts.metrics.counter('input_reopens_total', 'Times the followed file was truncated, replaced, rotated, or (at start) not found again', ['component', 'reason']);
    this.key = isStdin ? '-' : resolve(opts.path);
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
          await this.settle();
          this.state = 'finished';
          this.stateDetail = 'stdin ended';
          this.log.info(this.counts(), 'stdin ended');
          return;
        }
        const chunk = typeof r.value === 'string' ? Buffer.from(r.value, 'utf8') : r.value;
        await this.processChunk(chunk, 0);
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
    const cps = follow ? (this.o.checkpoints ?? null) : null;
    /** Files to finish before the path (found at start from the checkpoint). */
    let queue: Segment[] = [];
    /** Where the next open of the path starts: its end (a file never seen, from_start false) or an offset. */
    let pathStart: number | 'end' = follow && !this.o.fromStart ? 'end' : 0;
    if (cps) {
      cps.prune(this.key, this.o.checkpointRetentionMs ?? 30 * 86_400_000, MAX_CHECKPOINTS);
      const cp = cps.load(this.key);
      if (cp) {
        const plan = await planResume(path, cp, this.o.rotatedNames ?? DEFAULT_ROTATED_NAMES);
        queue = [...plan.before];
        pathStart = plan.pathOffset;
        const found = plan.before[0]?.file.name;
        if (plan.reason !== 'resumed') this.reopenCounter.inc({ component: this.id, reason: plan.reason });
        if (plan.reason === 'gone') {
          this.log.warn({ path, offset: cp.offset }, 'the file read before the restart is gone (deleted, or rotated under a name not in input.rotated_names): lines written to it after the checkpoint are lost; reading the file at the path from its start');
        } else {
          this.log.info({ path, offset: cp.offset, reason: plan.reason, rotated: found, then: plan.before.slice(1).map((x) => x.file.name) }, plan.reason === 'resumed' ? 'resuming the input file at its checkpoint' : `input file ${plan.reason} while stopped`);
        }
      }
    }
    let offset = 0;

    while (!this.stopped) {
      if (!this.handle) {
        const seg = queue.shift();
        if (seg?.file.gz) {
          await this.readGzip(seg);
          continue;
        }
        const name = seg ? seg.file.name : path;
        try {
          this.handle = await open(name, 'r');
        } catch (err) {
          if (seg) {
            this.log.warn({ path: name, error: errorMessage(err) }, 'a rotated input file disappeared before it was read; skipped');
            continue;
          }
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
          pathStart = 0; // a file that appears later is new: read it from its start
          await sleep(this.o.pollIntervalMs, this.abort.signal);
          continue;
        }
        const st = await this.handle.stat({ bigint: true });
        if (seg && (st.ino !== seg.file.ino || st.dev !== seg.file.dev)) {
          this.log.warn({ path: name }, 'a rotated input file was replaced before it was read; skipped');
          await this.closeHandle();
          continue;
        }
        if (seg) offset = seg.offset;
        else {
          offset = pathStart === 'end' ? Number(st.size) : pathStart;
          pathStart = 0;
        }
        this.cur = { name, dev: st.dev, ino: st.ino, fpLen: 0, fp: '', saved: -1 };
        this.resetPartial();
        this.lineStart = offset;
        await this.refreshFingerprint(this.handle, Number(st.size));
        this.saveCheckpoint();
        this.state = 'reading';
        this.stateDetail = `reading ${name}`;
        this.log.info({ path: name, offset }, seg ? 'finishing a rotated input file' : 'input file opened');
      }

      const h: FileHandle = this.handle;
      const { bytesRead } = await h.read(buf, 0, buf.length, offset);
      if (bytesRead > 0) {
        const base = offset;
        offset += bytesRead;
        await this.refreshFingerprint(h, offset);
        await this.processChunk(buf.subarray(0, bytesRead), base);
        continue;
      }

      // At EOF.
      if (!follow) {
        await this.endOfFile(offset);
        await this.closeHandle();
        this.state = 'finished';
        this.stateDetail = `finished ${path}`;
        return;
      }
      if (queue.length > 0) {
        // A rotated file found at start, with newer ones after it: it is complete.
        await this.endOfFile(offset);
        await this.closeHandle();
        continue;
      }
      // Following: look again after a poll interval (what changed is checked before reading on).
      const cur = this.cur as Current;
      this.maybeProgress();
      if (!this.stateDetail.startsWith('following')) this.stateDetail = `following ${cur.name}`;
      await sleep(this.o.pollIntervalMs, this.abort.signal);
      if (this.stopped) break;
      let byName: { ino: bigint; dev: bigint } | null = null;
      try {
        byName = await stat(path, { bigint: true });
      } catch {
        byName = null; // removed or renamed, not re-created yet: keep reading the old file
      }
      if (byName && (byName.ino !== cur.ino || byName.dev !== cur.dev)) {
        // Rotated or re-created: finish the old file, then read the new one from its start.
        offset = await this.drain(h, buf, offset);
        await this.endOfFile(offset);
        await this.closeHandle();
        if (cur.name === path) this.reopenCounter.inc({ component: this.id, reason: 'rotated' });
        this.log.info({ path }, 'input file replaced; reading the new file from its start');
        continue;
      }
      const size = Number((await h.stat({ bigint: true })).size);
      const reason = size < offset ? 'truncated' : size > offset && !(await this.sameHead(h)) ? 'replaced' : null;
      if (reason) {
        // Truncated in place (copytruncate), or truncated and written again past our offset.
        this.reopenCounter.inc({ component: this.id, reason });
        this.log.info({ path: cur.name, offset, size, reason }, `input file ${reason}; reading from its start`);
        offset = 0;
        this.resetPartial();
        this.lineStart = 0;
        cur.fpLen = 0;
        cur.fp = '';
        await this.refreshFingerprint(h, size);
        this.saveCheckpoint();
        continue;
      }
      this.stateDetail = byName ? `following ${cur.name}` : `following ${cur.name} (${path} removed; waiting for it to be re-created)`;
    }
  }

  /** Read what is left of a file up to EOF; returns the new offset. */
  private async drain(h: FileHandle, buf: Buffer, offset: number): Promise<number> {
    for (;;) {
      if (this.stopped) return offset;
      const { bytesRead } = await h.read(buf, 0, buf.length, offset);
      if (bytesRead === 0) return offset;
      const base = offset;
      offset += bytesRead;
      await this.refreshFingerprint(h, offset);
      await this.processChunk(buf.subarray(0, bytesRead), base);
    }
  }

  /** A file (or stdin) is finished: its unterminated last line is a line; save the position at its end. */
  private async endOfFile(offset: number): Promise<void> {
    await this.flushPartial();
    if (this.stopped) return;
    this.lineStart = offset;
    this.saveCheckpoint();
    await this.settle();
  }

  /** A gzip-compressed rotated file found at start: decompressed from the checkpoint's offset to its end. */
  private async readGzip(seg: Segment): Promise<void> {
    const f = await factsOf(seg.file.name);
    if (!f || f.ino !== seg.file.ino || f.dev !== seg.file.dev) {
      this.log.warn({ path: seg.file.name }, 'a rotated input file disappeared before it was read; skipped');
      return;
    }
    this.cur = { name: f.name, dev: f.dev, ino: f.ino, fpLen: 0, fp: '', saved: -1 };
    this.resetPartial();
    this.lineStart = seg.offset;
    this.state = 'reading';
    this.stateDetail = `reading ${f.name}`;
    this.log.info({ path: f.name, offset: seg.offset }, 'finishing a rotated input file (gzip)');
    const stream = createReadStream(f.name).pipe(createGunzip());
    let pos = 0;
    let head: Buffer[] = [];
    let headLen = 0;
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        if (this.stopped) break;
        if (headLen < FINGERPRINT_BYTES) {
          head.push(chunk.subarray(0, FINGERPRINT_BYTES - headLen));
          headLen += Math.min(chunk.length, FINGERPRINT_BYTES - headLen);
          this.cur.fpLen = headLen;
          this.cur.fp = sha256Hex(Buffer.concat(head, headLen));
          if (headLen >= FINGERPRINT_BYTES) head = [];
        }
        const end = pos + chunk.length;
        if (end > seg.offset) {
          const from = Math.max(0, seg.offset - pos);
          await this.processChunk(chunk.subarray(from), pos + from);
        }
        pos = end;
      }
    } catch (err) {
      this.o.metrics.errors.inc({ component: this.id, code: 'E_INPUT_GZIP' });
      this.log.warn({ path: f.name, error: errorMessage(err), offset: pos }, 'a compressed rotated input file is corrupt or cut short; read up to the damage');
    } finally {
      stream.destroy();
    }
    if (!this.stopped) await this.endOfFile(Math.max(pos, seg.offset));
  }

  /** Extend the fingerprint of the current file while it covers less than FINGERPRINT_BYTES of what exists. */
  private async refreshFingerprint(h: FileHandle, known: number): Promise<void> {
    const cur = this.cur;
    if (!cur || !this.o.checkpoints || !this.o.follow || cur.fpLen >= FINGERPRINT_BYTES || known <= cur.fpLen) return;
    const head = await headOf(h, Math.min(FINGERPRINT_BYTES, known));
    cur.fpLen = head.length;
    cur.fp = sha256Hex(head);
  }

  /** The current file still starts with the bytes it was fingerprinted with. */
  private async sameHead(h: FileHandle): Promise<boolean> {
    const cur = this.cur;
    if (!cur || cur.fpLen === 0) return true;
    const head = await headOf(h, cur.fpLen);
    return head.length === cur.fpLen && sha256Hex(head) === cur.fp;
  }

  /**
   * Save the position of the line being assembled (every line before it is submitted). Called
   * right after the submits it covers, in the same event-loop turn: the spool commits it with them.
   */
  private saveCheckpoint(): void {
    const cps = this.o.checkpoints;
    const cur = this.cur;
    if (!cps || !cur || !this.o.follow || this.stopped || cur.saved === this.lineStart) return;
    cur.saved = this.lineStart;
    cps.save({ path: this.key, dev: String(cur.dev), ino: String(cur.ino), offset: this.lineStart, fpLen: cur.fpLen, fp: cur.fp, updatedAt: this.now() });
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

  /**
   * Split a chunk (read at `base` in the current file) into lines, submit their alerts, save the
   * position and wait until they are kept. The chunk's memory may be reused after this resolves.
   */
  private async processChunk(chunk: Buffer, base: number): Promise<void> {
    let start = 0;
    while (start < chunk.length && !this.stopped) {
      const nl = chunk.indexOf(10, start);
      if (nl === -1) {
        this.appendPartial(chunk.subarray(start));
        break;
      }
      const seg = chunk.subarray(start, nl);
      if (this.overlong || this.partialLen + seg.length > this.o.maxLineBytes) {
        this.endOverlong();
      } else {
        let line: Buffer;
        if (this.partialLen > 0) {
          this.partial.push(seg);
          line = Buffer.concat(this.partial, this.partialLen + seg.length);
          this.partial = [];
          this.partialLen = 0;
        } else {
          line = seg;
        }
        const handled = this.handleLine(line);
        if (handled !== true && !(await handled)) break; // stopped before the line was submitted
      }
      start = nl + 1;
      this.lineStart = base + start;
    }
    this.saveCheckpoint();
    await this.settle();
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
    this.linesCounter.inc();
    this.skip('line_too_long');
    this.limitReporter.rejected('line_length', `line ${this.lines} is longer than input.max_line_bytes (${this.o.maxLineBytes}); skipped`);
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

  /** false when the source stopped before the line's alert could be submitted (a promise when it had to wait). */
  private handleLine(raw: Buffer): boolean | Promise<boolean> {
    this.lines++;
    this.linesCounter.inc();
    let end = raw.length;
    if (end > 0 && raw[end - 1] === 13) end--; // CRLF
    const text = raw.toString('utf8', 0, end);
    // Cheap pre-check: Falco's log lines never start with '{'.
    let i = 0;
    while (i < text.length && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9)) i++;
    if (text.charCodeAt(i) !== 123 /* { */) {
      this.skip('not_json');
      this.maybeProgress();
      return true;
    }
    let alert: Alert;
    try {
      const lim = limitAlertJson(parse(text), this.limits);
      if (!lim.ok) throw new InputLimitError(lim.limit, lim.reason);
      alert = alertFromJson(lim.value, this.origin, this.now(), true);
      if (lim.cuts.length > 0) {
        this.limitReporter.truncated(lim.cuts, alert.rule);
        alert = markTruncated(alert, lim.cuts);
      }
    } catch (err) {
      if (err instanceof JsonSyntaxError && err.message.startsWith('nesting too deep')) {
        this.skip('too_deep');
        this.limitReporter.rejected('json_depth', `line ${this.lines}: ${err.message}`);
      } else if (err instanceof JsonSyntaxError) {
        this.skip('not_json');
      } else if (err instanceof InputLimitError) {
        this.skip('too_deep');
        this.limitReporter.rejected(err.limit, `line ${this.lines}: ${err.message}`);
      } else if (err instanceof InvalidAlertError) {
        this.skip('invalid_alert');
        this.warnInvalid({ line: this.lines, error: err.message, hint: err.hint ?? undefined }, 'line is JSON but not a Falco alert; skipped');
      } else {
        throw err;
      }
      this.maybeProgress();
      return true;
    }
    this.receivedCounter.inc();
    const ok = this.enqueue(alert);
    if (ok !== true)
      return ok.then((r) => {
        this.maybeProgress();
        return r;
      });
    this.maybeProgress();
    return true;
  }

  /**
   * Submit without waiting for the commit. While the intake is full, first settle what is
   * outstanding and save the position reached (so a long wait keeps its progress), then wait.
   * `full` is checked right before `submit` (nothing runs in between), so a submit is never
   * refused for being full: the alerts a refused one leaves behind can only have failed with it.
   */
  private enqueue(alert: Alert): true | Promise<boolean> {
    const intake = this.o.intake;
    // Room and an intake that keeps at once (memory): kept now, nothing outstanding to settle.
    if (!intake.full && !this.stopped && intake.submitNow) {
      let kept: true | Promise<void>;
      try {
        kept = intake.submitNow(alert);
      } catch (err) {
        kept = Promise.reject(err as Error);
      }
      if (kept === true) {
        this.alerts++;
        return true;
      }
      kept.catch(() => undefined); // looked at in settle()
      this.outstanding.push({ p: kept, alert });
      return true;
    }
    return this.enqueueWaiting(alert);
  }

  private async enqueueWaiting(alert: Alert): Promise<boolean> {
    const intake = this.o.intake;
    while (intake.full) {
      if (this.stopped) return false;
      this.saveCheckpoint();
      await this.settle();
      if (intake.full && !this.stopped) await this.whenNotFull();
    }
    if (this.stopped) return false;
    const p = intake.submit(alert);
    p.catch(() => undefined); // looked at in settle()
    this.outstanding.push({ p, alert });
    return true;
  }

  /**
   * Wait until every submitted alert is kept. Alerts refused by a failed commit (the spool also
   * dropped the position saved behind them) are submitted again, one at a time, in order, and the
   * position is saved again.
   */
  private async settle(): Promise<void> {
    while (this.outstanding.length > 0) {
      const batch = this.outstanding;
      this.outstanding = [];
      const results = await Promise.allSettled(batch.map((o) => o.p));
      const again: Alert[] = [];
      for (const [i, r] of results.entries()) {
        if (r.status === 'fulfilled') {
          this.alerts++;
          continue;
        }
        const err: unknown = r.reason;
        if (err instanceof QueueFullError) again.push((batch[i] as { alert: Alert }).alert);
        else if (err instanceof StoppedError) {
          this.log.info('intake stopped; input stops reading');
          this.abort.abort();
          return;
        } else throw err;
      }
      for (const a of again) {
        if (!(await this.submit(a))) return;
        this.alerts++;
      }
      if (again.length > 0 && this.cur) {
        this.cur.saved = -1;
        this.saveCheckpoint();
      }
    }
  }

  private whenNotFull(): Promise<void> {
    const abort = this.abort.signal;
    return new Promise<void>((resolve) => {
      const onAbort = (): void => resolve();
      abort.addEventListener('abort', onAbort, { once: true });
      void this.o.intake.whenNotFull().then(() => {
        abort.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  /** Submit one alert and wait until it is kept, with back-pressure; false when the source or intake stopped first. */
  private async submit(alert: Alert): Promise<boolean> {
    for (;;) {
      if (this.stopped) return false;
      try {
        await this.o.intake.submit(alert);
        return true;
      } catch (err) {
        if (err instanceof QueueFullError) {
          await this.whenNotFull();
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
