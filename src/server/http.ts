/**
 * The one HTTP(S) server of the companion (component `source/http`):
 *
 * - any POST that is not an operations endpoint is the Falco `http_output` receiver (as in
 *   Falcosidekick, users point `http_output.url` at `/`, `/falco`, ...);
 * - `GET /healthz`, `GET /readyz`, `GET /metrics`, `GET /ping`, `POST /test`.
 *
 * The receiver acknowledges as soon as the intake has *kept* the alert (never waits for
 * enrichment or delivery: Falco's outputs run serially on one thread), answers 503 + Retry-After
 * when the intake is full, 413 for oversized bodies, and 400 with a precise JSON reason otherwise.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Counter, Histogram } from 'prom-client';
import type { Alert } from '../alert.js';
import type { Component, ComponentHealth } from '../component.js';
import type { Config } from '../config/schema.js';
import { CompanionError, QueueFullError, StoppedError, errorCode, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Intake } from '../pipeline/types.js';
import { decodeFalcoBody, type Rejection } from '../sources/http.js';

export interface Readiness {
  readonly ready: boolean;
  readonly components: Record<string, { readonly ready: boolean; readonly detail?: string }>;
}

export interface HttpServerDeps {
  readonly config: Config['http'];
  readonly intake: Intake;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly readiness: () => Readiness;
  readonly testAlert: () => Alert;
  /** GET /detections: the recent detections (src/sinks/recent-detections.ts), from the request URL. */
  readonly detections?: (url: string) => { readonly status: number; readonly body: unknown };
  /** Rejection log lines allowed per second (the rest are counted, then summarised). Default 10. */
  readonly maxLogLinesPerSecond?: number;
}

const OPS_GET = new Set(['/healthz', '/readyz', '/metrics', '/ping', '/detections']);

/** Split `HOST:PORT` (IPv6 in brackets). */
export function parseListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  let host = listen.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port: Number(listen.slice(i + 1)) };
}

/** At most `perSecond` lines per one-second window; the rest are counted and summarised. */
class LogLimiter {
  private windowStart = 0;
  private used = 0;
  private suppressed = 0;
  constructor(
    private readonly perSecond: number,
    private readonly logger: Logger,
    private readonly onSuppressed: () => void,
  ) {}

  /** True when the caller may log now. */
  allow(now = Date.now()): boolean {
    if (now - this.windowStart >= 1000) {
      if (this.suppressed > 0) {
        this.logger.warn({ suppressed: this.suppressed }, 'rejection log lines suppressed by the rate limit');
      }
      this.windowStart = now;
      this.used = 0;
      this.suppressed = 0;
    }
    if (this.used < this.perSecond) {
      this.used++;
      return true;
    }
    this.suppressed++;
    this.onSuppressed();
    return false;
  }
}

export class HttpServer implements Component {
  readonly id = 'source/http';
  private server: http.Server | https.Server | null = null;
  private stopping = false;
  private stopPromise: Promise<void> | null = null;
  private inFlight = 0;
  private readonly log: Logger;
  private readonly limiter: LogLimiter;
  private readonly ack: Histogram<'status'>;
  private readonly warnings: Counter<'component' | 'code'>;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly d: HttpServerDeps) {
    this.log = d.logger.child({ component: this.id });
    const suppressed = d.metrics.counter('log_suppressed_total', 'Log lines dropped by rate limits', ['component']);
    this.limiter = new LogLimiter(d.maxLogLinesPerSecond ?? 10, this.log, () => suppressed.inc({ component: this.id }));
    this.ack = d.metrics.histogram('http_ack_seconds', 'Time from request start to the answer of the Falco receiver', ['status']);
    this.warnings = d.metrics.counter('http_warnings_total', 'Accepted alerts that show a misconfigured sender, by code', ['component', 'code']);
  }

  async start(): Promise<void> {
    if (this.server) return;
    const c = this.d.config;
    const opts: http.ServerOptions = {
      headersTimeout: c.header_timeout,
      requestTimeout: c.request_timeout,
      keepAliveTimeout: c.keep_alive_timeout,
      // Node checks header/request timeouts on this interval (default 30 s): keep it tight.
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(Math.min(c.header_timeout, c.request_timeout) / 4))),
    };
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      this.handle(req, res).catch((err: unknown) => {
        this.d.metrics.errors.inc({ component: this.id, code: errorCode(err) });
        this.log.error({ error: err }, 'request handler failed');
        if (!res.headersSent) this.json(res, 500, { error: 'internal', reason: errorMessage(err) });
        else res.destroy();
      });
    };
    let server: http.Server | https.Server;
    if (c.tls.cert || c.tls.key || c.tls.client_ca) {
      if (!c.tls.cert || !c.tls.key) throw new CompanionError('E_TLS', 'http.tls needs both cert and key');
      let tls: https.ServerOptions;
      try {
        tls = {
          cert: readFileSync(c.tls.cert),
          key: readFileSync(c.tls.key),
          ...(c.tls.client_ca ? { ca: readFileSync(c.tls.client_ca), requestCert: true, rejectUnauthorized: true } : {}),
        };
      } catch (err) {
        throw new CompanionError('E_TLS', `http.tls: cannot read certificate files: ${errorMessage(err)}`, { cause: err });
      }
      server = https.createServer({ ...opts, ...tls }, handler);
      server.on('tlsClientError', (err: Error) => {
        this.d.metrics.errors.inc({ component: this.id, code: 'tls_handshake' });
        if (this.limiter.allow()) this.log.warn({ error: err.message }, 'TLS handshake failed');
      });
    } else {
      server = http.createServer(opts, handler);
    }
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      const code = err.code ?? 'client_error';
      this.d.metrics.errors.inc({ component: this.id, code: code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'timeout' : 'bad_request' });
      if (this.limiter.allow()) this.log.warn({ error: err.message, status: code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400 }, 'bad HTTP request');
      if (socket.writable && !socket.destroyed) {
        const status = code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
        socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      } else {
        socket.destroy();
      }
    });
    const { host, port } = parseListen(c.listen);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(new CompanionError('E_LISTEN', `http: cannot listen on ${c.listen}: ${err.message}`, { cause: err }));
      server.once('error', onError);
      server.listen(port, host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ error: err }, 'server error'));
    this.server = server;
    const a = this.address();
    this.log.info({ host: a.host, port: a.port, tls: server instanceof https.Server, mtls: Boolean(c.tls.client_ca) }, 'listening');
  }

  /** The bound address (after start). */
  address(): { host: string; port: number } {
    const a = this.server?.address() as AddressInfo | null | undefined;
    if (!a || typeof a !== 'object') throw new CompanionError('E_NOT_STARTED', 'http server is not listening');
    return { host: a.address, port: a.port };
  }

  health(): ComponentHealth {
    if (this.stopping) return { ready: false, detail: 'stopping' };
    if (!this.server) return { ready: false, detail: 'not started' };
    const a = this.address();
    return { ready: true, detail: `listening on ${a.host}:${a.port}` };
  }

  stop(deadlineMs: number): Promise<void> {
    this.stopPromise ??= this.doStop(deadlineMs);
    return this.stopPromise;
  }

  private async doStop(deadlineMs: number): Promise<void> {
    this.stopping = true;
    const server = this.server;
    if (!server) return;
    const closed = new Promise<void>((r) => server.close(() => r()));
    server.closeIdleConnections();
    // In-flight requests finish; keep-alive connections are closed as soon as they turn idle.
    while (Date.now() < deadlineMs && (this.inFlight > 0 || this.sockets.size > 0)) {
      server.closeIdleConnections();
      await new Promise((r) => setTimeout(r, Math.max(1, Math.min(25, deadlineMs - Date.now()))));
    }
    if (this.inFlight > 0 || this.sockets.size > 0) {
      this.log.warn({ in_flight: this.inFlight, connections: this.sockets.size }, 'shutdown deadline reached: closing connections');
    }
    server.closeAllConnections();
    for (const s of this.sockets) s.destroy();
    await closed;
    this.log.info('stopped');
  }

  // -------------------------------------------------------------------------------------------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const method = req.method ?? 'GET';
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (this.stopping) {
      res.setHeader('Connection', 'close');
      this.json(res, 503, { error: 'stopping', reason: 'the companion is shutting down' });
      req.resume();
      return;
    }
    if (OPS_GET.has(path)) {
      if (method !== 'GET' && method !== 'HEAD') {
        res.setHeader('Allow', 'GET, HEAD');
        this.json(res, 405, { error: 'method_not_allowed', reason: `${path} answers GET only` });
        req.resume();
        return;
      }
      req.resume();
      return this.ops(path, res, req.url ?? path);
    }
    if (method !== 'POST') {
      if (path === '/test') {
        res.setHeader('Allow', 'POST');
        this.json(res, 405, { error: 'method_not_allowed', reason: '/test answers POST only' });
      } else if (method === 'GET' || method === 'HEAD') {
        this.json(res, 404, { error: 'not_found', reason: `no GET endpoint ${path}; POST Falco alerts to any path`, endpoints: ['/healthz', '/readyz', '/metrics', '/ping', '/detections', 'POST /test'] });
      } else {
        res.setHeader('Allow', 'POST');
        this.json(res, 405, { error: 'method_not_allowed', reason: `${method} is not supported; Falco http_output uses POST` });
      }
      req.resume();
      return;
    }
    if (path === '/test') {
      req.resume();
      return this.submitTest(res);
    }
    this.inFlight++;
    try {
      const status = await this.receive(req, res);
      this.ack.observe({ status: String(status) }, Number(process.hrtime.bigint() - started) / 1e9);
    } finally {
      this.inFlight--;
    }
  }

  private async ops(path: string, res: http.ServerResponse, url: string): Promise<void> {
    switch (path) {
      case '/detections': {
        const r = this.d.detections?.(url) ?? { status: 404, body: { error: 'not_found', reason: 'detection is disabled' } };
        return this.json(res, r.status, r.body);
      }
      case '/healthz':
        return this.json(res, 200, { status: 'ok' });
      case '/ping':
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('pong');
        return;
      case '/readyz': {
        const r = this.d.readiness();
        return this.json(res, r.ready ? 200 : 503, r);
      }
      case '/metrics': {
        const text = await this.d.metrics.text();
        res.writeHead(200, { 'Content-Type': this.d.metrics.contentType });
        res.end(text);
        return;
      }
    }
  }

  private async submitTest(res: http.ServerResponse): Promise<void> {
    let alert: Alert;
    try {
      alert = this.d.testAlert();
      await this.d.intake.submit(alert);
    } catch (err) {
      this.refused(res, err, 'test');
      return;
    }
    this.d.metrics.received.inc({ component: this.id });
    this.log.info({ rule: alert.rule, priority: alert.priority }, 'test alert submitted');
    this.json(res, 200, { status: 'submitted', rule: alert.rule, priority: alert.priority, time: alert.time });
  }

  /** The Falco receiver. Returns the status answered. */
  private async receive(req: http.IncomingMessage, res: http.ServerResponse): Promise<number> {
    const max = this.d.config.max_body_bytes;
    const enc = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
    if (enc !== 'identity') {
      req.resume();
      return this.rejectWith(res, 415, { error: 'unsupported_encoding', reason: `Content-Encoding ${enc} is not supported`, hint: 'Falco sends uncompressed JSON' });
    }
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > max) {
      return this.tooLarge(req, res, `Content-Length ${declared} exceeds the limit of ${max} bytes`);
    }
    const chunks: Buffer[] = [];
    let total = 0;
    let over = false;
    const body = await new Promise<Buffer | null>((resolve) => {
      const onData = (chunk: Buffer): void => {
        total += chunk.length;
        if (total > max) {
          over = true;
          req.off('data', onData);
          req.pause();
          resolve(null);
          return;
        }
        chunks.push(chunk);
      };
      req.on('data', onData);
      req.once('end', () => resolve(over ? null : Buffer.concat(chunks, total)));
      req.once('error', () => resolve(null));
      req.once('close', () => resolve(over || !req.complete ? null : Buffer.concat(chunks, total)));
    });
    if (over) return this.tooLarge(req, res, `body exceeds the limit of ${max} bytes`);
    if (body === null) {
      // Client went away mid-body (or the request timeout fired): nothing to answer.
      this.d.metrics.errors.inc({ component: this.id, code: 'aborted' });
      if (!res.headersSent && !res.destroyed) this.json(res, 400, { error: 'aborted', reason: 'request body was not completed' });
      return 400;
    }

    const receivedAt = Date.now();
    const r = decodeFalcoBody(body, req.headers['content-type'], { kind: 'http', component: this.id }, receivedAt);
    if (!r.ok) return this.rejectWith(res, 400, r.rejection);
    try {
      await this.d.intake.submit(r.alert);
    } catch (err) {
      return this.refused(res, err, 'receiver', r.alert);
    }
    this.d.metrics.received.inc({ component: this.id });
    if (r.warning) {
      this.warnings.inc({ component: this.id, code: 'no_output_fields' });
      if (this.limiter.allow()) this.log.warn({ rule: r.alert.rule, hint: r.warning }, 'alert accepted without output_fields');
      this.json(res, 200, { status: 'accepted', warning: r.warning });
    } else {
      res.writeHead(200, { 'Content-Length': '0' });
      res.end();
    }
    return 200;
  }

  private tooLarge(req: http.IncomingMessage, res: http.ServerResponse, reason: string): number {
    this.d.metrics.errors.inc({ component: this.id, code: 'too_large' });
    if (this.limiter.allow()) this.log.warn({ status: 413, reason }, 'request rejected');
    // Stop reading: answer, then close the connection instead of draining the rest.
    res.setHeader('Connection', 'close');
    this.json(res, 413, { error: 'too_large', reason, hint: 'raise http.max_body_bytes if your alerts are really this large' });
    res.once('finish', () => setTimeout(() => req.socket.destroy(), 50).unref());
    return 413;
  }

  private rejectWith(res: http.ServerResponse, status: number, rej: Rejection): number {
    this.d.metrics.errors.inc({ component: this.id, code: rej.error });
    if (this.limiter.allow()) this.log.warn({ status, code: rej.error, reason: rej.reason, ...(rej.hint ? { hint: rej.hint } : {}) }, 'alert rejected');
    this.json(res, status, rej);
    return status;
  }

  private refused(res: http.ServerResponse, err: unknown, what: string, alert?: Alert): number {
    if (err instanceof QueueFullError) {
      const secs = Math.max(1, Math.ceil(this.d.config.retry_after / 1000));
      this.d.metrics.discarded.inc({ component: this.id, reason: 'queue_full' });
      if (this.limiter.allow()) this.log.warn({ status: 503, rule: alert?.rule, what }, 'intake full: alert refused');
      res.setHeader('Retry-After', String(secs));
      this.json(res, 503, { error: 'queue_full', reason: err.message, hint: `retry after ${secs}s` });
      return 503;
    }
    if (err instanceof StoppedError) {
      this.d.metrics.discarded.inc({ component: this.id, reason: 'stopped' });
      res.setHeader('Connection', 'close');
      this.json(res, 503, { error: 'stopping', reason: err.message });
      return 503;
    }
    const code = errorCode(err);
    this.d.metrics.errors.inc({ component: this.id, code });
    this.log.error({ error: err, what }, 'intake failed');
    this.json(res, 500, { error: 'internal', reason: errorMessage(err) });
    return 500;
  }

  private json(res: http.ServerResponse, status: number, body: unknown): void {
    if (res.headersSent) return;
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }
}
