/**
 * Rate-limited log lines for input that can arrive at alert rate (rejected requests, invalid lines,
 * malformed entries): at most `burst` lines per `intervalMs`, the rest dropped and counted. The
 * next line that gets through carries `suppressed`: how many were dropped since the last one.
 */
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

export interface RateLimitOptions {
  /** Length of one window (ms); Infinity: one window for the limiter's whole life. */
  readonly intervalMs: number;
  /** Lines allowed per window (default 1). */
  readonly burst?: number;
  /** Wall clock in ms (default Date.now; tests inject theirs). */
  readonly now?: () => number;
  /** Level of the lines (default warn). */
  readonly level?: 'error' | 'warn' | 'info';
  /** Called for every dropped line (see {@link countSuppressed}). */
  readonly onSuppressed?: () => void;
}

export interface RateLimitedLog {
  /** Log the line unless this window's lines are used up; true when it was logged. */
  (fields: Record<string, unknown>, msg: string): boolean;
  /** Lines dropped since the last line logged. */
  readonly suppressed: number;
}

export function rateLimited(logger: Logger, o: RateLimitOptions): RateLimitedLog {
  const burst = o.burst ?? 1;
  const now = o.now ?? Date.now;
  const level = o.level ?? 'warn';
  let windowStart = -Infinity;
  let used = 0;
  let suppressed = 0;
  const log = (fields: Record<string, unknown>, msg: string): boolean => {
    const t = now();
    if (t - windowStart >= o.intervalMs) {
      windowStart = t;
      used = 0;
    }
    if (used >= burst) {
      suppressed++;
      o.onSuppressed?.();
      return false;
    }
    used++;
    logger[level](suppressed > 0 ? { ...fields, suppressed } : fields, msg);
    suppressed = 0;
    return true;
  };
  return Object.defineProperty(log, 'suppressed', { get: () => suppressed }) as RateLimitedLog;
}

/** `onSuppressed` that counts dropped lines in `log_suppressed_total{component}`. */
export function countSuppressed(metrics: Metrics, component: string): () => void {
  const child = metrics.counter('log_suppressed_total', 'Log lines dropped by rate limits', ['component']).labels({ component });
  return () => child.inc();
}
