/**
 * How the companion talks to Falcosidekick: the body ({@link sidekickBody}), the protocol step
 * "send one alert and classify the answer" ({@link sendToSidekick}, the one place that parses
 * Retry-After) and {@link SidekickClient}, the plumbing around it (target URL, keep-alive pool,
 * TLS, logger, retry/delivery metrics, backoff + Retry-After, health). The delivery loop that
 * decides what to do with each answer is the sink (falcosidekick.ts).
 */
import { readFileSync } from 'node:fs';
import type { Counter, Histogram } from 'prom-client';
import { Pool, type Dispatcher } from 'undici';
import { serializeAlert, withEnrichment, type Alert } from '../alert.js';
import { backoffMs, type ComponentHealth } from '../component.js';
import type { Config } from '../config/schema.js';
import { CompanionError, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';

export type SidekickConfig = Config['sinks']['falcosidekick'];

/** Outcome of one attempt. `code` is a bounded label: `http_<status>`, `timeout`, or a socket error code. */
export type SendResult =
  | { readonly kind: 'ok'; readonly status: number }
  | { readonly kind: 'retryable'; readonly status: number | null; readonly code: string; readonly retryAfterMs: number | null; readonly detail: string }
  | { readonly kind: 'permanent'; readonly status: number; readonly code: string; readonly detail: string };

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

/**
 * Sort an HTTP status into ok (2xx), retryable (408, 429, 5xx) or permanent: every other answer,
 * i.e. 400, 401, 403, 404, 413, 422 and the rest of 4xx (and 1xx/3xx: redirects are not followed).
 */
export function classifyStatus(status: number): 'ok' | 'retryable' | 'permanent' {
  if (status >= 200 && status < 300) return 'ok';
  if (status === 408 || status === 429 || status >= 500) return 'retryable';
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

export interface SidekickClientDeps {
  readonly config: SidekickConfig;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly random?: () => number;
  /** Consecutive failed attempts after which health() turns not-ready. Default 5. */
  readonly unhealthyAfter?: number;
}

/**
 * One sink's connection to sidekick: parses the URL (E_CONFIG when empty), owns the keep-alive
 * pool, the stop-deadline abort signal, the component logger, the retry/delivery metrics and the
 * consecutive-failure bookkeeping that health() reports. The sink decides what to do with each
 * {@link SendResult} (ack, retry later, dead-letter) through its delivery queue.
 */
export class SidekickClient {
  readonly cfg: SidekickConfig;
  readonly log: Logger;
  /** Aborted at the stop deadline: cancels in-flight requests and backoff sleeps. */
  readonly abort = new AbortController();
  /** Failed attempts since the last success. A sink may reset it (a permanent failure says nothing about sidekick being down). */
  consecutiveFailures = 0;
  private lastFailure = '';
  private readonly target: { origin: string; path: string };
  private pool: Pool | null = null;
  private readonly metrics: Metrics;
  private readonly random: () => number;
  private readonly unhealthyAfter: number;
  private readonly retries: Counter<'component'>;
  private readonly delivery: Histogram<'component'>;

  constructor(
    readonly id: string,
    d: SidekickClientDeps,
  ) {
    this.cfg = d.config;
    if (!d.config.url) throw new CompanionError('E_CONFIG', 'sinks.falcosidekick.url is empty');
    const u = new URL(d.config.url);
    this.target = { origin: u.origin, path: (u.pathname || '/') + u.search };
    this.log = d.logger.child({ component: id, sink: id });
    this.metrics = d.metrics;
    this.random = d.random ?? Math.random;
    this.unhealthyAfter = d.unhealthyAfter ?? 5;
    this.retries = d.metrics.counter('sink_retries_total', 'Delivery attempts retried, by sink', ['component']);
    this.delivery = d.metrics.histogram('delivery_seconds', 'Time from a sink taking an alert to its delivery', ['component']);
  }

  /** Open the keep-alive pool (reads the TLS files; E_TLS when they cannot be read). */
  open(): void {
    const connect = sidekickConnectOptions(this.cfg);
    this.pool = new Pool(this.target.origin, {
      connections: this.cfg.concurrency,
      keepAliveTimeout: 30_000,
      pipelining: 1,
      ...(connect ? { connect } : {}),
    });
  }

  get isOpen(): boolean {
    return this.pool !== null;
  }

  /** One attempt with the configured timeout, cancelled by the stop deadline. Only while open. */
  send(body: string): Promise<SendResult> {
    return sendToSidekick(this.pool as Pool, this.target, body, this.cfg.timeout, { signal: this.abort.signal });
  }

  /** Record a 2xx: resets the failure count, counts `sent`, observes the delivery time. */
  delivered(elapsedMs: number): void {
    this.consecutiveFailures = 0;
    this.metrics.sent.inc({ component: this.id });
    this.delivery.observe({ component: this.id }, elapsedMs / 1000);
  }

  /** Record a failed attempt (counted in `errors` by its code, remembered for health()). */
  failed(r: Exclude<SendResult, { kind: 'ok' }>): void {
    this.consecutiveFailures++;
    this.lastFailure = r.status === null ? `${r.code}: ${r.detail}` : `HTTP ${r.status}`;
    this.metrics.errors.inc({ component: this.id, code: r.code });
  }

  /** The wait before retry number `attempt` (0-based): Retry-After when sidekick sent one, else backoff with jitter. */
  retryDelay(attempt: number, retryAfterMs: number | null): number {
    const backoff = backoffMs(attempt, this.cfg.retry_initial, this.cfg.retry_max, this.random);
    return retryAfterMs === null ? backoff : Math.min(Math.max(retryAfterMs, 0), Math.max(this.cfg.retry_max, 600_000));
  }

  /** Count one retried attempt. */
  retried(): void {
    this.retries.inc({ component: this.id });
  }

  /** Sink health: `ok` / `failing` describe what is pending in the sink's own words. */
  health(started: boolean, stopping: boolean, ok: string, failing: string): ComponentHealth {
    if (!started) return { ready: false, detail: 'not started' };
    if (stopping) return { ready: false, detail: 'stopping' };
    if (this.consecutiveFailures >= this.unhealthyAfter) {
      return { ready: false, detail: `last ${this.consecutiveFailures} delivery attempts failed (latest: ${this.lastFailure}); ${failing}` };
    }
    return { ready: true, detail: ok };
  }

  /** Close the pool: destroyed (in-flight requests cut) when the deadline aborted, else closed gracefully. */
  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    if (!pool) return;
    if (this.abort.signal.aborted) await pool.destroy().catch(() => undefined);
    else await pool.close().catch(() => undefined);
  }
}
