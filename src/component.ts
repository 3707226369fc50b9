/**
 * The lifecycle every stage shares (sources, enrichers, detectors, sinks, servers).
 *
 * - `start()` returns quickly (it may resolve after binding a port) and never blocks on a peer
 *   being up: a source whose peer is down retries in the background and reports not-ready.
 * - `stop(deadlineMs)` is idempotent, safe before start, stops intake, drains and flushes to the
 *   next stage within the deadline (an absolute `Date.now()`-style ms), then releases resources.
 */
export interface Component {
  /** Stable id used in logs and metric labels, e.g. `source/http`, `sink/falcosidekick`. */
  readonly id: string;
  start(): Promise<void>;
  stop(deadlineMs: number): Promise<void>;
  /** Health as seen by /readyz. */
  health(): ComponentHealth;
}

export interface ComponentHealth {
  readonly ready: boolean;
  /** Short human reason when not ready (or extra info when ready). */
  readonly detail?: string;
}

/** Resolve after `ms` or when the signal aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Exponential backoff with equal jitter: random in [exp/2, exp] where exp = min(max, base*2^attempt). */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(exp / 2 + random() * (exp / 2));
}
