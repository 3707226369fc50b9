/**
 * The helper's journal: one JSON line per step, appended by every helper process of a run to one
 * file (O_APPEND, one write per line). The runner tails it and waits for steps.
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { CompanionError } from '../errors.js';

export interface JournalEntry {
  /** ns since the epoch (CLOCK_REALTIME of the helper). */
  readonly t: number;
  readonly run: string;
  readonly role: string;
  /** As the helper's pid namespace numbers it. */
  readonly pid: number;
  readonly ppid: number;
  readonly comm: string;
  readonly exe: string;
  readonly step: string;
  readonly syscall: string | null;
  readonly args: string | null;
  readonly ret: number;
  readonly errno: string | null;
  readonly fatal?: string;
  readonly note?: string;
  readonly [extra: string]: unknown;
}

/** A helper role failed (its journal says why). */
export class EmulateError extends CompanionError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'EmulateError';
  }
}

const MAX_ENTRIES = 20_000;
const MAX_LINE = 64 * 1024;

function isEntry(v: unknown): v is JournalEntry {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return typeof o['step'] === 'string' && typeof o['role'] === 'string' && typeof o['pid'] === 'number';
}

export class Journal {
  readonly entries: JournalEntry[] = [];
  private offset = 0;
  private partial = '';
  /** Lines that were not journal entries (counted, first kept for the report). */
  junk = 0;

  constructor(readonly path: string) {}

  /** Read what was appended since the last call. */
  poll(): JournalEntry[] {
    let size: number;
    try {
      size = statSync(this.path).size;
    } catch {
      return [];
    }
    if (size <= this.offset) return [];
    const fd = openSync(this.path, 'r');
    const fresh: JournalEntry[] = [];
    try {
      const buf = Buffer.alloc(Math.min(size - this.offset, 4 * 1024 * 1024));
      const n = readSync(fd, buf, 0, buf.length, this.offset);
      this.offset += n;
      const text = this.partial + buf.subarray(0, n).toString('utf8');
      const lines = text.split('\n');
      this.partial = (lines.pop() ?? '').slice(0, MAX_LINE);
      for (const line of lines) {
        if (!line.trim()) continue;
        try {
          const v: unknown = JSON.parse(line);
          if (isEntry(v)) fresh.push(v);
          else this.junk++;
        } catch {
          this.junk++;
        }
      }
    } finally {
      closeSync(fd);
    }
    for (const e of fresh) if (this.entries.length < MAX_ENTRIES) this.entries.push(e);
    return fresh;
  }

  find(pred: (e: JournalEntry) => boolean): JournalEntry | undefined {
    this.poll();
    return this.entries.find(pred);
  }

  /**
   * Wait for an entry matching `pred`. Rejects when `failed()` names a reason (a role died), when
   * a matching role journals a fatal error, on timeout, or when `signal` aborts.
   */
  async waitFor(what: string, pred: (e: JournalEntry) => boolean, opts: { timeoutMs: number; signal: AbortSignal; role?: string; failed?: () => string | null }): Promise<JournalEntry> {
    const end = Date.now() + opts.timeoutMs;
    for (;;) {
      this.poll();
      const hit = this.entries.find(pred);
      if (hit) return hit;
      const fatal = opts.role ? this.entries.find((e) => e.role === opts.role && typeof e.fatal === 'string') : undefined;
      if (fatal) throw new EmulateError('E_EMULATE_STEP', `${opts.role}: ${fatal.step}: ${String(fatal.fatal)}`);
      const why = opts.failed?.();
      if (why) throw new EmulateError('E_EMULATE_STEP', `waiting for ${what}: ${why}`);
      if (opts.signal.aborted) throw new EmulateError('E_EMULATE_ABORTED', `waiting for ${what}: interrupted`);
      if (Date.now() > end) throw new EmulateError('E_EMULATE_TIMEOUT', `${what} did not happen within ${Math.round(opts.timeoutMs / 1000)} s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
