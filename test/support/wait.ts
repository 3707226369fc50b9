/** Polling helpers shared by the tests (every loop bounded in count and time). */

export interface PollOptions {
  /** Give up after this long (ms). Default 5000. */
  readonly timeoutMs?: number;
  /** Pause between checks (ms). Default 10. */
  readonly intervalMs?: number;
  /** What is awaited, for the timeout message. */
  readonly what?: string;
  /**
   * Treat a throwing check as "not yet" and name its last error in the timeout message (a daemon
   * that refuses connections while it starts). Default false: the error fails the wait at once.
   */
  readonly retryErrors?: boolean;
}

/**
 * Resolve with the first value of `check()` that is neither null nor undefined; reject when
 * `timeoutMs` passes first.
 */
export async function poll<T>(check: () => T | null | undefined | Promise<T | null | undefined>, o: PollOptions = {}): Promise<T> {
  const timeoutMs = o.timeoutMs ?? 5000;
  const intervalMs = o.intervalMs ?? 10;
  const end = Date.now() + timeoutMs;
  const maxChecks = Math.ceil(timeoutMs / Math.max(1, intervalMs)) + 2;
  let last: unknown = null;
  for (let i = 0; i < maxChecks; i++) {
    try {
      const v = await check();
      if (v !== null && v !== undefined) return v;
    } catch (err) {
      if (!o.retryErrors) throw err;
      last = err;
    }
    if (Date.now() >= end) break;
    await wait(intervalMs);
  }
  const why = last === null ? '' : `: ${last instanceof Error ? last.message : String(last)}`;
  throw new Error(`${o.what ?? 'condition'} not met within ${timeoutMs} ms${why}`);
}

/** Resolve once `cond()` holds (checked every `intervalMs`); reject after `ms` naming `what`. */
export async function until(cond: () => boolean | Promise<boolean>, ms = 5000, what = 'condition', intervalMs = 10): Promise<void> {
  await poll(async () => ((await cond()) ? true : null), { timeoutMs: ms, what, intervalMs });
}

export const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
