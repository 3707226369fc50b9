/**
 * The enrichers' one cache: `lru-cache` bounded to `max` entries (the least recently used is
 * evicted and counted through `onEvict`), each entry with its own TTL read from the injected
 * clock. Used for container lookups (positive / negative TTL), reverse DNS answers (positive /
 * negative / error TTL) and the egress enricher's parsed addresses (no TTL).
 */
import { LRUCache } from 'lru-cache';
import { systemClock, type Clock } from '../clock.js';

export interface TtlLruOptions {
  /** Most entries kept (≥ 1). */
  readonly max: number;
  /** Time for the TTLs (the enricher's clock; tests pass a ManualClock). */
  readonly clock?: Clock;
  /** Called once per entry evicted to stay within `max` (not for expiry, delete or replacement). */
  readonly onEvict?: () => void;
}

export class TtlLru<K extends object | string | number, V extends object> {
  private readonly lru: LRUCache<K, V>;

  constructor(o: TtlLruOptions) {
    const clock = o.clock ?? systemClock;
    const onEvict = o.onEvict;
    this.lru = new LRUCache<K, V>({
      max: o.max,
      // Read the clock at every check instead of caching "now" for 1 ms behind a timer, so a
      // test's ManualClock is seen exactly. +1: lru-cache reads a start time of 0 as "no TTL".
      ttlResolution: 0,
      perf: { now: () => clock.now() + 1 },
      ...(onEvict ? { dispose: (_v: V, _k: K, reason: LRUCache.DisposeReason) => void (reason === 'evict' && onEvict()) } : {}),
    });
  }

  /** The entry while it is fresh (it becomes the most recently used); an expired entry is dropped. */
  get(k: K): V | undefined {
    return this.lru.get(k);
  }

  /**
   * Keep `v` for `ttlMs` (omitted: until evicted), replacing any entry of `k`. A TTL ≤ 0 keeps
   * nothing (and drops an older entry of `k`).
   */
  set(k: K, v: V, ttlMs?: number): void {
    if (ttlMs === undefined) this.lru.set(k, v);
    else if (ttlMs > 0) this.lru.set(k, v, { ttl: ttlMs });
    else this.lru.delete(k);
  }

  delete(k: K): void {
    this.lru.delete(k);
  }

  /** Entries held, expired ones not yet dropped included. */
  get size(): number {
    return this.lru.size;
  }
}
