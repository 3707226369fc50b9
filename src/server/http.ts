/**
 * The Falco `http_output` receiver (component `source/http`): any POST that is not an operations
 * endpoint is a Falco alert (as in Falcosidekick, users point `http_output.url` at `/`, `/falco`,
 * ...). When the operations endpoints share this port (the default), its listener serves them
 * first (src/server/ops.ts).
 *
 * The receiver acknowledges as soon as the intake has *kept* the alert (never waits for
 * enrichment or delivery: Falco's outputs run serially on one thread), answers 503 + Retry-After
 * when the intake is full, 413 for oversized bodies, and 400 with a precise JSON reason otherwise.
 * The body → Alert step is src/sources/http.ts.
 */
import type http from 'node:http';
import type { Counter, Histogram } from 'prom-client';
import type { Alert } from '../alert.js';
import type { Component, ComponentHealth } from '../component.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Intake } from '../pipeline/types.js';
import { decodeFalcoBody, type Rejection } from '../sources/http.js';
import { DEFAULT_INPUT_LIMITS, LimitReporter, type InputLimits } from '../limits.js';
import type { RateLimitedLog } from '../log-limit.js';
import { HttpListener, rejectionLogLimiter } from './listener.js';
import type { OpsDispatch } from './ops.js';
import { refusalReply, sendJson, sendReply } from './reply.js';

export interface HttpServerDeps {
  readonly config: Config['http'];
  readonly intake: Intake;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The operations endpoints served on this port too (ops.listen empty or equal to http.listen); null: none. */
  readonly ops?: OpsDispatch | null;
  /** Rejection log lines allowed per second (the rest are counted, then summarised). Default 10. */
  readonly maxLogLinesPerSecond?: number;
  /** Input limits (src/limits.ts; default DEFAULT_INPUT_LIMITS). */
  readonly limits?: InputLimits;
}

export class HttpServer implements Component {
  readonly id = 'source/http';
  private readonly listener: HttpListener;
  private stopPromise: Promise<void> | null = null;
  private readonly log: Logger;
  private readonly limiter: RateLimitedLog;
  private readonly ack: Histogram<'status'>;
  private readonly warnings: Counter<'component' | 'code'>;
  private readonly ops: OpsDispatch | null;
  private readonly limitReporter: LimitReporter;

  constructor(private readonly d: HttpServerDeps) {
    this.log = d.logger.child({ component: this.id });
    this.limitReporter = new LimitReporter(this.id, this.log, d.metrics);
    this.limiter = rejectionLogLimiter(this.id, this.log, d.metrics, d.maxLogLinesPerSecond);
    this.ack = d.metrics.histogram('http_ack_seconds', 'Time from request start to the answer of the Falco receiver', ['status']);
    this.warnings = d.metrics.counter('http_warnings_total', 'Accepted alerts that show a misconfigured sender, by code', ['component', 'code']);
    this.ops = d.ops ?? null;
    this.listener = new HttpListener({
      id: this.id,
      logger: this.log,
      metrics: d.metrics,
      listen: d.config.listen,
      what: 'http',
      config: d.config,
      limiter: this.limiter,
      handler: (req, res) => this.handle(req, res),
      logFields: { ops: this.ops !== null },
    });
  }

  async start(): Promise<void> {
    await this.listener.start();
  }

  /** The bound address (after start). */
  address(): { host: string; port: number } {
    return this.listener.address();
  }

  health(): ComponentHealth {
    if (this.listener.isStopping) return { ready: false, detail: 'stopping' };
    if (!this.listener.listening) return { ready: false, detail: 'not started' };
    const a = this.address();
    return { ready: true, detail: `listening on ${a.host}:${a.port}` };
  }

  stop(deadlineMs: number): Promise<void> {
    this.stopPromise ??= (async () => {
      const was = this.listener.listening;
      await this.listener.stop(deadlineMs);
      if (was) this.log.info('stopped');
    })();
    return this.stopPromise;
  }

  // -------------------------------------------------------------------------------------------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const method = req.method ?? 'GET';
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const ops = this.ops?.dispatch(req, res, path);
    if (ops) return ops;
    if (method !== 'POST') {
      if (method === 'GET' || method === 'HEAD') {
        sendJson(res, 404, { error: 'not_found', reason: `no GET endpoint ${path}; POST Falco alerts to any path`, endpoints: this.ops?.endpoints() ?? [] });
      } else {
        sendJson(res, 405, { error: 'method_not_allowed', reason: `${method} is not supported; Falco http_output uses POST` }, { Allow: 'POST' });
      }
      req.resume();
      return;
    }
    const status = await this.receive(req, res);
    this.ack.observe({ status: String(status) }, Number(process.hrtime.bigint() - started) / 1e9);
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
      if (!res.headersSent && !res.destroyed) sendJson(res, 400, { error: 'aborted', reason: 'request body was not completed' });
      return 400;
    }

    const receivedAt = Date.now();
    const r = decodeFalcoBody(body, req.headers['content-type'], { kind: 'http', component: this.id }, receivedAt, this.d.limits ?? DEFAULT_INPUT_LIMITS);
    if (!r.ok) {
      if (r.rejection.error === 'too_deep') this.limitReporter.rejected('json_depth', r.rejection.reason);
      return this.rejectWith(res, 400, r.rejection);
    }
    if (r.cuts) this.limitReporter.truncated(r.cuts, r.alert.rule);
    try {
      await this.d.intake.submit(r.alert);
    } catch (err) {
      return this.refused(res, err, r.alert);
    }
    this.d.metrics.received.inc({ component: this.id });
    if (r.warning) {
      this.warnings.inc({ component: this.id, code: 'no_output_fields' });
      this.limiter({ rule: r.alert.rule, hint: r.warning }, 'alert accepted without output_fields');
      sendJson(res, 200, { status: 'accepted', warning: r.warning });
    } else {
      res.writeHead(200, { 'Content-Length': '0' });
      res.end();
    }
    return 200;
  }

  private tooLarge(req: http.IncomingMessage, res: http.ServerResponse, reason: string): number {
    this.d.metrics.errors.inc({ component: this.id, code: 'too_large' });
    this.limiter({ status: 413, reason }, 'request rejected');
    // Stop reading: answer, then close the connection instead of draining the rest.
    sendJson(res, 413, { error: 'too_large', reason, hint: 'raise http.max_body_bytes if your alerts are really this large' }, { Connection: 'close' });
    res.once('finish', () => setTimeout(() => req.socket.destroy(), 50).unref());
    return 413;
  }

  private rejectWith(res: http.ServerResponse, status: number, rej: Rejection): number {
    this.d.metrics.errors.inc({ component: this.id, code: rej.error });
    this.limiter({ status, code: rej.error, reason: rej.reason, ...(rej.hint ? { hint: rej.hint } : {}) }, 'alert rejected');
    sendJson(res, status, rej);
    return status;
  }

  private refused(res: http.ServerResponse, err: unknown, alert: Alert): number {
    const reply = refusalReply(err, { component: this.id, retryAfterMs: this.d.config.retry_after, metrics: this.d.metrics, log: this.log, limiter: this.limiter, what: 'receiver', rule: alert.rule });
    sendReply(res, reply);
    return reply.status;
  }
}
