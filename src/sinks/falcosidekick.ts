/**
 * Falcosidekick sink (`sink/falcosidekick`): one alert per POST, keep-alive pool, bounded queue
 * with back-pressure, bounded concurrency, per-attempt timeout, retry with exponential backoff +
 * jitter on retryable failures (408, 429, 5xx, connection errors, timeouts) honouring
 * Retry-After, permanent failures (400, 401, 403, 404, 413, 422, other 4xx) never retried.
 *
 * The "send one alert and classify the answer" step is {@link sendToSidekick}, reusable by a
 * durable spool in front of sidekick.
 */
import { readFileSync } from 'node:fs';
import type { Counter, Histogram } from 'prom-client';
import { Pool, type Dispatcher } from 'undici';
import { serializeAlert, withEnrichment, type Alert } from '../alert.js';
import { backoffMs, sleep, type ComponentHealth } from '../component.js';
import type { Config } from '../config/schema.js';
import { CompanionError, StoppedError, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Sink } from '../pipeline/types.js';

export type SidekickConfig = Config['sinks']['falcosidekick'];

/** Outcome of one attempt. `code` is a bounded label: `http_<status>`, `timeout`, or a socket error code. */
export type SendResult =
  | { readonly kind: 'ok'; readonly status: number }
  | { readonly kind: 'retryable'; readonly status: number | null; readonly code: string; readonly retryAfterMs: number | null; readonly detail: string }
  | { readonly kind: 'permanent'; readonly status: number; readonly code: string; readonly detail: string };

const PERMANENT = new Set([400, 401, 403, 404, 413, 422]);
const BODY_EXCERPT = 300;

/**
 * The JSON body for sidekick. Sidekick answers 400 when output_fields is missing or empty, so an
 * alert without fields gets `companion.forwarded_by: "falco-companion"`.
 */
export function sidekickBody(alert: Alert): string {
  const noFields = alert.outputFields === null || Object.keys(alert.outputFields).length === 0;
  const a = noFields && Object.keys(alert.companion).length === 0 ? withEnrichment(alert, { forwarded_by: 'falco-companion' }) : alert;
  return serializeAlert(a);
}

/** Parse Retry-After (delta seconds or HTTP date) into ms from `nowMs`; null when absent/invalid. */
export function parseRetryAfter(v: string | string[] | undefined, nowMs = Date.now()): number | null {
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined) return null;
  const t = s.trim();
  if (/^\d+$/.test(t)) return Number(t) * 1000;
  const d = Date.parse(t);
  if (Number.isNaN(d)) return null;
  return Math.max(0, d - nowMs);
}

/** Sort an HTTP status into ok / retryable / permanent (ok is 2xx). */
export function classifyStatus(status: number): 'ok' | 'retryable' | 'permanent' {
  if (status >= 200 && status < 300) return 'ok';
  if (status === 408 || status === 429 || status >= 500) return 'retryable';
  if (PERMANENT.has(status)) return 'permanent';
  return 'permanent';
}

const SAFE_CODE = /^[A-Z][A-Z0-9_]{1,40}$/;

function errCode(err: unknown): string {
  const c = err && typeof err === 'object' && 'code' in err ? (err as { code: unknown }).code : undefined;
  if (typeof c === 'string' && SAFE_CODE.test(c)) {
    if (c === 'UND_ERR_HEADERS_TIMEOUT' || c === 'UND_ERR_BODY_TIMEOUT' || c === 'UND_ERR_CONNECT_TIMEOUT') return 'timeout';
    return c;
  }
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return 'timeout';
  return 'E_CONNECTION';
}

async function readExcerpt(body: Dispatcher.ResponseData['body'], limit: number): Promise<string> {
  let out = '';
  try {
    for await (const chunk of body) {
      if (out.length < limit) out += (chunk as Buffer).toString('utf8');
      if (out.length >= limit) break;
    }
  } catch {
    /* body errors do not change the classification */
  }
  if (!body.destroyed) body.destroy();
  return out.length > limit ? out.slice(0, limit) + '…' : out;
}

/**
 * POST one body to sidekick and classify the answer. Never throws.
 * `path` is the URL path (+query), `dispatcher` a Pool/Agent for the URL's origin.
 */
export async function sendToSidekick(
  dispatcher: Dispatcher,
  target: { readonly origin: string; readonly path: string },
  body: string,
  timeoutMs: number,
  opts: { readonly signal?: AbortSignal; readonly nowMs?: () => number } = {},
): Promise<SendResult> {
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = opts.signal ? AbortSignal.any([timeout, opts.signal]) : timeout;
  let res: Dispatcher.ResponseData;
  try {
    res = await dispatcher.request({
      origin: target.origin,
      path: target.path,
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'falco-companion' },
      body,
      signal,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
  } catch (err) {
    const code = opts.signal?.aborted ? 'aborted' : timeout.aborted ? 'timeout' : errCode(err);
    const detail = code === 'timeout' ? `no answer within ${timeoutMs} ms` : code === 'aborted' ? 'aborted by the caller' : errorMessage(err);
    return { kind: 'retryable', status: null, code, retryAfterMs: null, detail };
  }
  const status = res.statusCode;
  const kind = classifyStatus(status);
  if (kind === 'ok') {
    await res.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
    return { kind: 'ok', status };
  }
  const detail = await readExcerpt(res.body, BODY_EXCERPT);
  const code = `http_${status}`;
  if (kind === 'retryable') return { kind, status, code, retryAfterMs: parseRetryAfter(res.headers['retry-after'], (opts.nowMs ?? Date.now)()), detail };
  return { kind, status, code, detail };
}

/** Load the undici connect options (TLS / mTLS) for a sidekick URL. */
export function sidekickConnectOptions(cfg: SidekickConfig): Pool.Options['connect'] {
  const tls: Record<string, unknown> = {};
  try {
    if (cfg.ca) tls['ca'] = readFileSync(cfg.ca);
    if (cfg.client_cert) tls['cert'] = readFileSync(cfg.client_cert);
    if (cfg.client_key) tls['key'] = readFileSync(cfg.client_key);
  } catch (err) {
    throw new CompanionError('E_TLS', `sinks.falcosidekick: cannot read TLS files: ${errorMessage(err)}`, { cause: err });
  }
  if (cfg.insecure) tls['rejectUnauthorized'] = false;
  return Object.keys(tls).length > 0 ? (tls as Pool.Options['connect']) : undefined;
}

interface Entry {
  readonly alert: Alert;
  readonly body: string;
  readonly queuedAt: number;
}

export interface FalcosidekickSinkDeps {
  readonly config: SidekickConfig;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly random?: () => number;
  /** Consecutive failed attempts after which health() turns not-ready. Default 5. */
  readonly unhealthyAfter?: number;
}

export class FalcosidekickSink implements Sink {
  readonly id = 'sink/falcosidekick';
  private readonly log: Logger;
  private readonly cfg: SidekickConfig;
  private readonly target: { origin: string; path: string };
  private pool: Pool | null = null;
  private readonly queue: Entry[] = [];
  private qHead = 0;
  private inFlight = 0;
  private readonly spaceWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly itemWaiters: (() => void)[] = [];
  private workers: Promise<void>[] = [];
  private started = false;
  private stopping = false;
  private stopPromise: Promise<void> | null = null;
  private readonly abort = new AbortController();
  private consecutiveFailures = 0;
  private lastFailure = '';
  private readonly unhealthyAfter: number;
  private readonly random: () => number;
  private readonly retries: Counter<'component'>;
  private readonly delivery: Histogram<'component'>;

  constructor(private readonly d: FalcosidekickSinkDeps) {
    this.cfg = d.config;
    if (!d.config.url) throw new CompanionError('E_CONFIG', 'sinks.falcosidekick.url is empty');
    const u = new URL(d.config.url);
    this.target = { origin: u.origin, path: (u.pathname || '/') + u.search };
    this.log = d.logger.child({ component: this.id, sink: this.id });
    this.random = d.random ?? Math.random;
    this.unhealthyAfter = d.unhealthyAfter ?? 5;
    this.retries = d.metrics.counter('sink_retries_total', 'Delivery attempts retried, by sink', ['component']);
    this.delivery = d.metrics.histogram('delivery_seconds', 'Time from a sink taking an alert to its delivery', ['component']);
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const connect = sidekickConnectOptions(this.cfg);
    this.pool = new Pool(this.target.origin, {
      connections: this.cfg.concurrency,
      keepAliveTimeout: 30_000,
      pipelining: 1,
      ...(connect ? { connect } : {}),
    });
    for (let i = 0; i < this.cfg.concurrency; i++) this.workers.push(this.worker());
    this.log.info({ url: this.cfg.url, concurrency: this.cfg.concurrency }, 'started');
  }

  pending(): number {
    return this.queue.length - this.qHead + this.inFlight;
  }

  health(): ComponentHealth {
    if (!this.started) return { ready: false, detail: 'not started' };
    if (this.stopping) return { ready: false, detail: 'stopping' };
    if (this.consecutiveFailures >= this.unhealthyAfter) {
      return { ready: false, detail: `last ${this.consecutiveFailures} delivery attempts failed (latest: ${this.lastFailure}); ${this.pending()} pending` };
    }
    return { ready: true, detail: `${this.pending()} pending` };
  }

  async write(alert: Alert): Promise<void> {
    if (this.stopping) throw new StoppedError(this.id);
    while (this.queue.length - this.qHead >= this.cfg.max_queue) {
      await new Promise<void>((resolve, reject) => this.spaceWaiters.push({ resolve, reject }));
      if (this.stopping) throw new StoppedError(this.id);
    }
    this.queue.push({ alert, body: sidekickBody(alert), queuedAt: Date.now() });
    this.d.metrics.received.inc({ component: this.id });
    this.gauge();
    this.itemWaiters.shift()?.();
  }

  stop(deadlineMs: number): Promise<void> {
    this.stopPromise ??= this.doStop(deadlineMs);
    return this.stopPromise;
  }

  // -------------------------------------------------------------------------------------------

  private gauge(): void {
    this.d.metrics.queueDepth.set({ component: this.id }, this.pending());
  }

  private take(): Entry | null {
    if (this.qHead >= this.queue.length) return null;
    const e = this.queue[this.qHead] as Entry;
    this.queue[this.qHead] = undefined as unknown as Entry;
    this.qHead++;
    if (this.qHead > 1024 && this.qHead * 2 > this.queue.length) {
      this.queue.splice(0, this.qHead);
      this.qHead = 0;
    }
    this.spaceWaiters.shift()?.resolve();
    return e;
  }

  private async worker(): Promise<void> {
    for (;;) {
      if (this.abort.signal.aborted) return;
      const e = this.take();
      if (!e) {
        if (this.stopping) return;
        await new Promise<void>((r) => this.itemWaiters.push(r));
        continue;
      }
      this.inFlight++;
      try {
        const delivered = await this.deliver(e);
        if (!delivered && this.abort.signal.aborted) {
          // Given back at the deadline: counted in doStop.
          this.queue.push(e);
        }
      } finally {
        this.inFlight--;
        this.gauge();
      }
    }
  }

  /** Deliver one entry with retries. Returns false only when aborted by the stop deadline. */
  private async deliver(e: Entry): Promise<boolean> {
    const pool = this.pool as Pool;
    const first = Date.now();
    for (let attempt = 0; ; attempt++) {
      if (this.abort.signal.aborted) return false;
      const r = await sendToSidekick(pool, this.target, e.body, this.cfg.timeout, { signal: this.abort.signal });
      if (r.kind !== 'ok' && this.abort.signal.aborted) return false;
      if (r.kind === 'ok') {
        this.consecutiveFailures = 0;
        this.d.metrics.sent.inc({ component: this.id });
        this.delivery.observe({ component: this.id }, (Date.now() - e.queuedAt) / 1000);
        return true;
      }
      this.consecutiveFailures++;
      this.lastFailure = r.status === null ? `${r.code}: ${r.detail}` : `HTTP ${r.status}`;
      this.d.metrics.errors.inc({ component: this.id, code: r.code });
      if (r.kind === 'permanent') {
        this.d.metrics.discarded.inc({ component: this.id, reason: 'permanent' });
        this.log.error({ status: r.status, rule: e.alert.rule, priority: e.alert.priority, body: r.detail }, 'falcosidekick rejected the alert permanently; not retried');
        return true;
      }
      if (this.abort.signal.aborted) return false;
      let delay = backoffMs(attempt, this.cfg.retry_initial, this.cfg.retry_max, this.random);
      if (r.retryAfterMs !== null) delay = Math.min(Math.max(r.retryAfterMs, 0), Math.max(this.cfg.retry_max, 600_000));
      const elapsed = Date.now() - first;
      if (this.cfg.max_elapsed > 0 && elapsed + delay > this.cfg.max_elapsed) {
        this.d.metrics.discarded.inc({ component: this.id, reason: 'max_elapsed' });
        this.log.error(
          { status: r.status, error: r.code, rule: e.alert.rule, attempts: attempt + 1, elapsed_ms: elapsed },
          'giving up on alert: sinks.falcosidekick.max_elapsed reached',
        );
        return true;
      }
      this.retries.inc({ component: this.id });
      if (attempt === 0 || attempt % 10 === 0) {
        this.log.warn({ status: r.status, error: r.code, detail: r.detail, attempt: attempt + 1, retry_in_ms: delay }, 'delivery failed; retrying');
      }
      await sleep(delay, this.abort.signal);
    }
  }

  private async doStop(deadlineMs: number): Promise<void> {
    this.stopping = true;
    for (const w of this.spaceWaiters.splice(0)) w.reject(new StoppedError(this.id));
    for (const w of this.itemWaiters.splice(0)) w();
    if (!this.started) return;
    const timer = setTimeout(() => this.abort.abort(), Math.max(0, deadlineMs - Date.now()));
    await Promise.all(this.workers);
    clearTimeout(timer);
    const left = this.pending();
    if (left > 0) {
      this.d.metrics.discarded.inc({ component: this.id, reason: 'shutdown' }, left);
      this.log.warn({ undelivered: left }, `shutdown deadline reached: ${left} alert(s) left undelivered`);
    } else {
      this.log.info('stopped: queue drained');
    }
    const pool = this.pool;
    this.pool = null;
    if (pool) {
      if (this.abort.signal.aborted) await pool.destroy().catch(() => undefined);
      else await pool.close().catch(() => undefined);
    }
  }
}
