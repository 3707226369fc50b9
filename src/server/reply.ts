/**
 * Answers shared by the HTTP components: a reply value handlers return, how it is written, and
 * the one mapping of an intake refusal to an HTTP answer (503 + Retry-After when the intake is
 * full, 503 + Connection: close while stopping, 500 otherwise).
 */
import type http from 'node:http';
import { QueueFullError, StoppedError, errorCode, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { RateLimitedLog } from '../log-limit.js';

/** What a handler answers: a status and a JSON or text body. */
export interface Reply {
  readonly status: number;
  /** Sent as application/json. */
  readonly json?: unknown;
  /** Sent with `contentType` (default text/plain; charset=utf-8). */
  readonly text?: string;
  readonly contentType?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

/** A JSON answer with Content-Length (nothing when the headers are already sent). */
export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendReply(res: http.ServerResponse, r: Reply): void {
  if (r.text === undefined) return sendJson(res, r.status, r.json ?? null, r.headers);
  if (res.headersSent) return;
  res.writeHead(r.status, { ...r.headers, 'Content-Type': r.contentType ?? 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(r.text) });
  res.end(r.text);
}

/** Retry-After seconds announced with a 503: `http.retry_after` rounded up, at least 1. */
function retryAfterSeconds(retryAfterMs: number): number {
  return Math.max(1, Math.ceil(retryAfterMs / 1000));
}

export interface RefusalContext {
  /** The answering component (metric label). */
  readonly component: string;
  readonly retryAfterMs: number;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly limiter: RateLimitedLog;
  /** What was refused, for the log line (`receiver`, `test`). */
  readonly what: string;
  readonly rule?: string;
}

/** The answer to an intake that did not keep an alert (counted and logged here). */
export function refusalReply(err: unknown, c: RefusalContext): Reply {
  if (err instanceof QueueFullError) {
    const secs = retryAfterSeconds(c.retryAfterMs);
    c.metrics.discarded.inc({ component: c.component, reason: 'queue_full' });
    c.limiter({ status: 503, rule: c.rule, what: c.what }, 'intake full: alert refused');
    return { status: 503, headers: { 'Retry-After': String(secs) }, json: { error: 'queue_full', reason: err.message, hint: `retry after ${secs}s` } };
  }
  if (err instanceof StoppedError) {
    c.metrics.discarded.inc({ component: c.component, reason: 'stopped' });
    return { status: 503, headers: { Connection: 'close' }, json: { error: 'stopping', reason: err.message } };
  }
  c.metrics.errors.inc({ component: c.component, code: errorCode(err) });
  c.log.error({ error: err, what: c.what }, 'intake failed');
  return { status: 500, json: { error: 'internal', reason: errorMessage(err) } };
}
