/**
 * Reverse DNS (PTR) with a hard timeout, positive / negative / error caching with TTLs, a bounded
 * LRU cache, coalesced in-flight lookups and AbortSignal support.
 *
 * Each lookup runs on its own `dns.promises.Resolver` so that `resolver.cancel()` on timeout
 * cancels exactly that query. A caller's AbortSignal only stops *waiting*: the lookup itself
 * goes on (up to its timeout) and fills the cache for the next alert.
 */
import { promises as dnsPromises } from 'node:dns';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Metrics } from '../metrics.js';
import { TtlLru } from './ttl-lru.js';

export type RdnsAnswer =
  | { readonly kind: 'name'; readonly name: string }
  | { readonly kind: 'none' }
  | { readonly kind: 'error'; readonly error: string };

/** What a caller gets: an answer, or `pending` when its signal aborted first. */
export type RdnsResult = RdnsAnswer | { readonly kind: 'pending' };

/** The part of `dns.promises.Resolver` used here (tests may substitute it). */
export interface PtrResolver {
  setServers(servers: string[]): void;
  reverse(ip: string): Promise<string[]>;
  cancel(): void;
}

export interface ReverseDnsOptions {
  /** `ip` or `ip:port` / `[ip]:port`; empty = system resolvers. */
  readonly servers: readonly string[];
  readonly timeoutMs: number;
  readonly cacheSize: number;
  readonly positiveTtlMs: number;
  readonly negativeTtlMs: number;
  readonly errorTtlMs: number;
  readonly maxInflight: number;
  readonly clock: Clock;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Factory of resolvers (default: `new dns.promises.Resolver({ timeout, tries: 1 })`). */
  readonly newResolver?: () => PtrResolver;
}

const NEGATIVE_CODES = new Set(['ENOTFOUND', 'ENODATA', 'NXDOMAIN']);
const MAX_NAME = 253;

export class ReverseDns {
  /** Address → answer, each kind with its TTL (positive / negative / error). */
  private readonly cache: TtlLru<string, RdnsAnswer>;
  private readonly inflight = new Map<string, Promise<RdnsAnswer>>();
  private readonly lookups;
  private readonly o: ReverseDnsOptions;
  private readonly newResolver: () => PtrResolver;
  private closed = false;

  constructor(o: ReverseDnsOptions) {
    this.o = o;
    this.lookups = o.metrics.counter<'result'>('rdns_lookups_total', 'Reverse DNS lookups by result (hit = answered from cache)', ['result']);
    const evictions = o.metrics.counter('rdns_cache_evictions_total', 'Reverse DNS cache entries evicted to stay within cache_size');
    this.cache = new TtlLru({ max: o.cacheSize, clock: o.clock, onEvict: () => evictions.inc() });
    const servers = [...o.servers];
    this.newResolver =
      o.newResolver ??
      (() => {
        const r = new dnsPromises.Resolver({ timeout: Math.max(1, o.timeoutMs), tries: 1 });
        if (servers.length > 0) r.setServers(servers);
        return r;
      });
  }

  /** The cached answer (fresh entries only), without starting a lookup. */
  cached(ip: string): RdnsAnswer | undefined {
    return this.cache.get(ip);
  }

  /** The cached answer counted as a hit (the synchronous fast path), or undefined (nothing counted). */
  hit(ip: string): RdnsAnswer | undefined {
    const a = this.cached(ip);
    if (a) this.lookups.inc({ result: 'hit' });
    return a;
  }

  get size(): number {
    return this.cache.size;
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  /**
   * Answer from the cache, join a running lookup, or start one. Resolves `{kind:'pending'}` when
   * `signal` aborts first (the lookup continues in the background). Never rejects.
   */
  lookup(ip: string, signal?: AbortSignal): Promise<RdnsResult> {
    const hit = this.cached(ip);
    if (hit) {
      this.lookups.inc({ result: 'hit' });
      return Promise.resolve(hit);
    }
    let p = this.inflight.get(ip);
    if (p) {
      this.lookups.inc({ result: 'coalesced' });
    } else {
      if (this.closed) return Promise.resolve({ kind: 'error', error: 'stopped' });
      if (this.inflight.size >= this.o.maxInflight) {
        this.lookups.inc({ result: 'refused' });
        return Promise.resolve({ kind: 'error', error: 'too many lookups in flight' });
      }
      p = this.query(ip);
      this.inflight.set(ip, p);
    }
    if (!signal) return p;
    if (signal.aborted) return Promise.resolve({ kind: 'pending' });
    const sig = signal;
    const q = p;
    return new Promise<RdnsResult>((resolve) => {
      const onAbort = (): void => resolve({ kind: 'pending' });
      sig.addEventListener('abort', onAbort, { once: true });
      void q.then((a) => {
        sig.removeEventListener('abort', onAbort);
        resolve(a);
      });
    });
  }

  /** Wait for running lookups (bounded by their timeouts) and refuse new ones. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.inflight.values()]);
  }

  private async query(ip: string): Promise<RdnsAnswer> {
    const resolver = this.newResolver();
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    let answer: RdnsAnswer;
    try {
      const names = await Promise.race([
        resolver.reverse(ip),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            timedOut = true;
            resolver.cancel();
            reject(Object.assign(new Error('timeout'), { code: 'ETIMEOUT' }));
          }, this.o.timeoutMs);
        }),
      ]);
      const name = names.find((n) => n.length > 0);
      answer = name ? { kind: 'name', name: name.replace(/\.$/, '').slice(0, MAX_NAME) } : { kind: 'none' };
    } catch (err) {
      const code = err && typeof err === 'object' && 'code' in err ? String((err as { code: unknown }).code) : 'EUNKNOWN';
      if (NEGATIVE_CODES.has(code)) answer = { kind: 'none' };
      else if (timedOut || code === 'ETIMEOUT' || code === 'ECANCELLED') answer = { kind: 'error', error: 'timeout' };
      else answer = { kind: 'error', error: code };
      if (answer.kind === 'error') this.o.logger.debug({ error: answer.error, ip }, 'reverse DNS lookup failed');
    } finally {
      clearTimeout(timer);
    }
    this.lookups.inc({ result: answer.kind === 'name' ? 'found' : answer.kind === 'none' ? 'not_found' : answer.error === 'timeout' ? 'timeout' : 'error' });
    const ttl = answer.kind === 'name' ? this.o.positiveTtlMs : answer.kind === 'none' ? this.o.negativeTtlMs : this.o.errorTtlMs;
    this.cache.set(ip, answer, ttl); // an error_ttl of 0 keeps nothing
    this.inflight.delete(ip);
    return answer;
  }
}
