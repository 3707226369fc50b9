/**
 * One HTTP(S) listener, shared by the components that answer HTTP (the Falco receiver
 * `source/http` and the operations endpoints `server/ops`): binding with a clear E_LISTEN error,
 * TLS / mTLS, header / request / keep-alive timeouts, bad-request and TLS-handshake accounting,
 * a 500 for a failing handler, 503 while stopping, and a graceful stop that lets in-flight
 * requests finish within the deadline.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Config } from '../config/schema.js';
import { CompanionError, errorCode, errorMessage } from '../errors.js';
import type { Logger } from '../logger.js';
import { countSuppressed, rateLimited, type RateLimitedLog } from '../log-limit.js';
import type { Metrics } from '../metrics.js';
import { sendJson } from './reply.js';

/**
 * A request handler: a promise that settles when it is done (a rejection becomes a 500), or
 * nothing when it answers through callbacks of its own (the request counts as in flight until the
 * response closes; it must answer its own failures).
 */
type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> | void;

/** What a listener needs from the `http` section (timeouts; TLS only for the receiver's listener). */
export type ListenerConfig = Pick<Config['http'], 'header_timeout' | 'request_timeout' | 'keep_alive_timeout'> & { readonly tls?: Config['http']['tls'] };

export interface ListenerDeps {
  /** The owning component's id (metric label) and its logger (already a child with that component). */
  readonly id: string;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** HOST:PORT; `what` names it in errors (e.g. `http`, `ops`). */
  readonly listen: string;
  readonly what: string;
  readonly config: ListenerConfig;
  readonly limiter: RateLimitedLog;
  readonly handler: Handler;
  /** Extra fields of the `listening` log line. */
  readonly logFields?: Record<string, unknown>;
}

/** Split `HOST:PORT` (IPv6 in brackets). */
function parseListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  let host = listen.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port: Number(listen.slice(i + 1)) };
}

/** The rate limit for rejection log lines of component `id` (10 per second by default); dropped lines are counted and the next line says how many. */
export function rejectionLogLimiter(id: string, log: Logger, metrics: Metrics, perSecond = 10): RateLimitedLog {
  return rateLimited(log, { intervalMs: 1000, burst: perSecond, onSuppressed: countSuppressed(metrics, id) });
}

export class HttpListener {
  private server: http.Server | https.Server | null = null;
  private stopping = false;
  private inFlight = 0;
  private readonly sockets = new Set<Socket>();

  private readonly requestClosed = (): void => {
    this.inFlight--;
  };

  constructor(private readonly d: ListenerDeps) {}

  get isStopping(): boolean {
    return this.stopping;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const { config: c, metrics, id, limiter } = this.d;
    const log = this.d.logger;
    const opts: http.ServerOptions = {
      headersTimeout: c.header_timeout,
      requestTimeout: c.request_timeout,
      keepAliveTimeout: c.keep_alive_timeout,
      // Node checks header/request timeouts on this interval (default 30 s): keep it tight.
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(Math.min(c.header_timeout, c.request_timeout) / 4))),
    };
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      if (this.stopping) {
        res.setHeader('Connection', 'close');
        sendJson(res, 503, { error: 'stopping', reason: 'the companion is shutting down' });
        req.resume();
        return;
      }
      this.inFlight++;
      const failed = (err: unknown): void => {
        metrics.errors.inc({ component: id, code: errorCode(err) });
        log.error({ error: err }, 'request handler failed');
        if (!res.headersSent) sendJson(res, 500, { error: 'internal', reason: errorMessage(err) });
        else res.destroy();
      };
      let r: Promise<void> | void;
      try {
        r = this.d.handler(req, res);
      } catch (err) {
        this.inFlight--;
        failed(err);
        return;
      }
      if (r === undefined) {
        res.once('close', this.requestClosed);
        return;
      }
      r.then(
        () => {
          this.inFlight--;
        },
        (err: unknown) => {
          this.inFlight--;
          failed(err);
        },
      );
    };
    let server: http.Server | https.Server;
    const tlsCfg = c.tls;
    if (tlsCfg && (tlsCfg.cert || tlsCfg.key || tlsCfg.client_ca)) {
      if (!tlsCfg.cert || !tlsCfg.key) throw new CompanionError('E_TLS', `${this.d.what}.tls needs both cert and key`);
      let tls: https.ServerOptions;
      try {
        tls = {
          cert: readFileSync(tlsCfg.cert),
          key: readFileSync(tlsCfg.key),
          ...(tlsCfg.client_ca ? { ca: readFileSync(tlsCfg.client_ca), requestCert: true, rejectUnauthorized: true } : {}),
        };
      } catch (err) {
        throw new CompanionError('E_TLS', `${this.d.what}.tls: cannot read certificate files: ${errorMessage(err)}`, { cause: err });
      }
      server = https.createServer({ ...opts, ...tls }, handler);
      server.on('tlsClientError', (err: Error) => {
        metrics.errors.inc({ component: id, code: 'tls_handshake' });
        limiter({ error: err.message }, 'TLS handshake failed');
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
      metrics.errors.inc({ component: id, code: code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'timeout' : 'bad_request' });
      limiter({ error: err.message, status: code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400 }, 'bad HTTP request');
      if (socket.writable && !socket.destroyed) {
        const status = code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
        socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      } else {
        socket.destroy();
      }
    });
    const { host, port } = parseListen(this.d.listen);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(new CompanionError('E_LISTEN', `${this.d.what}: cannot listen on ${this.d.listen}: ${err.message}`, { cause: err }));
      server.once('error', onError);
      server.listen(port, host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.on('error', (err) => log.error({ error: err }, 'server error'));
    this.server = server;
    const a = this.address();
    log.info({ host: a.host, port: a.port, tls: server instanceof https.Server, mtls: Boolean(tlsCfg?.client_ca), ...this.d.logFields }, 'listening');
  }

  /** The bound address (after start). */
  address(): { host: string; port: number } {
    const a = this.server?.address() as AddressInfo | null | undefined;
    if (!a || typeof a !== 'object') throw new CompanionError('E_NOT_STARTED', `${this.d.what} server is not listening`);
    return { host: a.address, port: a.port };
  }

  get listening(): boolean {
    return this.server !== null;
  }

  /** In-flight requests finish; keep-alive connections are closed as soon as they turn idle; the rest at the deadline. */
  async stop(deadlineMs: number): Promise<void> {
    this.stopping = true;
    const server = this.server;
    if (!server) return;
    const closed = new Promise<void>((r) => server.close(() => r()));
    server.closeIdleConnections();
    while (Date.now() < deadlineMs && (this.inFlight > 0 || this.sockets.size > 0)) {
      server.closeIdleConnections();
      await new Promise((r) => setTimeout(r, Math.max(1, Math.min(25, deadlineMs - Date.now()))));
    }
    if (this.inFlight > 0 || this.sockets.size > 0) {
      this.d.logger.warn({ in_flight: this.inFlight, connections: this.sockets.size }, 'shutdown deadline reached: closing connections');
    }
    server.closeAllConnections();
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}
