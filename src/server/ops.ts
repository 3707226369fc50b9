/**
 * The operations endpoints (component `server/ops`): `GET /healthz`, `/readyz`, `/metrics`,
 * `/ping`, and whatever other components register with {@link OpsServer.route} (the wiring adds
 * `POST /test`, `GET /detections` and the report pages). They do not depend on any input, and they
 * are never reachable from other hosts unless the operator says so ({@link opsPlacement}): with
 * `ops.listen` empty they share the HTTP input's listener only when that one is on a loopback
 * address, else they listen on {@link OPS_LOOPBACK_DEFAULT}; `ops.listen` names any other place
 * (equal to `http.listen`: the input's listener, one port for both). A listener of their own is
 * plain HTTP with the `http` section's timeouts.
 *
 * Routes answer a {@link Reply} for an {@link OpsRequest} (path, query, and for a prefix route
 * the rest of the path: `/detections/<id>`); the body of a request is not read. A GET route also
 * answers HEAD; a known path with another method gets 405 with `Allow`.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type { Alert } from '../alert.js';
import type { Component, ComponentHealth } from '../component.js';
import { CompanionError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Intake } from '../pipeline/types.js';
import { HttpListener, rejectionLogLimiter, type ListenerConfig } from './listener.js';
import { refusalReply, sendJson, sendReply, type Reply } from './reply.js';

export interface Readiness {
  readonly ready: boolean;
  readonly components: Record<string, { readonly ready: boolean; readonly detail?: string }>;
}

export interface OpsRequest {
  readonly method: string;
  /** The path without the query. */
  readonly path: string;
  readonly query: URLSearchParams;
  /** For a prefix route, the path after the prefix (`abc` for `/detections/abc`); '' otherwise. */
  readonly rest: string;
  /** The request headers (lower-case names), e.g. `authorization`. */
  readonly headers: http.IncomingHttpHeaders;
}

export interface OpsRoute {
  /** GET routes also answer HEAD. */
  readonly method: 'GET' | 'POST';
  /** The exact path, or with `prefix` every path that starts with it (e.g. `/detections/`). */
  readonly path: string;
  readonly prefix?: boolean;
  handle(req: OpsRequest): Reply | Promise<Reply>;
}

/** What a listener of another component needs to serve the operations routes too. */
export interface OpsDispatch {
  /** Serve the request when a route owns `path` (resolves when answered); null when none does. */
  dispatch(req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> | null;
  /** `/path` (GET) or `METHOD /path` of every endpoint, for 404 answers. */
  endpoints(): string[];
}

export interface OpsServerDeps {
  /** HOST:PORT to listen on; null when another listener serves the routes through dispatch(). */
  readonly listen: string | null;
  /** Timeouts of the own listener. */
  readonly config: ListenerConfig;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly readiness: () => Readiness;
  /** Extra fields of the own listener's `listening` log line (e.g. why it is loopback only). */
  readonly logFields?: Record<string, unknown>;
}

/** Where the operations endpoints listen when `ops.listen` is empty and `http.listen` is not a loopback address. */
export const OPS_LOOPBACK_DEFAULT = '127.0.0.1:2805';

/** Where the operations endpoints answer for a config ({@link opsPlacement}). */
export interface OpsPlacement {
  /** On the HTTP input's listener (one port, its TLS). */
  readonly shared: boolean;
  /** HOST:PORT they answer on (`http.listen` when shared). */
  readonly listen: string;
  /**
   * `configured`: ops.listen names it; `loopback`: ops.listen empty and http.listen is a loopback
   * address (so the endpoints go with it); `loopback-default`: ops.listen empty, http.listen is
   * reachable from elsewhere, so the endpoints stay on {@link OPS_LOOPBACK_DEFAULT}.
   */
  readonly why: 'configured' | 'loopback' | 'loopback-default';
}

/** True for 127.0.0.0/8, ::1 and localhost listen addresses (HOST:PORT, IPv6 in brackets). */
export function isLoopbackListen(listen: string): boolean {
  const host = listen.slice(0, listen.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || /^::ffff:127\./.test(host);
}

/**
 * The one rule for where the operations endpoints listen (the wiring and docker/healthcheck.mjs use
 * it): the endpoints (`/metrics`, `/readyz`, `/detections`, the report pages, `POST /test`) are never
 * reachable from other hosts unless `ops.listen` says so. `httpOn`: the HTTP input runs.
 */
export function opsPlacement(c: { readonly http: { readonly listen: string }; readonly ops: { readonly listen: string | null } }, httpOn: boolean): OpsPlacement {
  const own = c.ops.listen;
  if (own !== null) return { shared: httpOn && own === c.http.listen, listen: own, why: 'configured' };
  if (isLoopbackListen(c.http.listen)) return { shared: httpOn, listen: c.http.listen, why: 'loopback' };
  return { shared: false, listen: OPS_LOOPBACK_DEFAULT, why: 'loopback-default' };
}

export class OpsServer implements Component, OpsDispatch {
  readonly id = 'server/ops';
  private readonly log: Logger;
  private readonly exact = new Map<string, OpsRoute[]>();
  private readonly prefixes: OpsRoute[] = [];
  private readonly listener: HttpListener | null;
  private stopPromise: Promise<void> | null = null;

  constructor(private readonly d: OpsServerDeps) {
    this.log = d.logger.child({ component: this.id });
    this.listener =
      d.listen === null
        ? null
        : new HttpListener({
            id: this.id,
            logger: this.log,
            metrics: d.metrics,
            listen: d.listen,
            what: 'ops',
            config: { header_timeout: d.config.header_timeout, request_timeout: d.config.request_timeout, keep_alive_timeout: d.config.keep_alive_timeout },
            limiter: rejectionLogLimiter(this.id, this.log, d.metrics),
            handler: (req, res) => this.serveOwn(req, res),
            ...(d.logFields ? { logFields: d.logFields } : {}),
          });
    this.route({ method: 'GET', path: '/healthz', handle: () => ({ status: 200, json: { status: 'ok' } }) });
    this.route({
      method: 'GET',
      path: '/readyz',
      handle: () => {
        const r = d.readiness();
        return { status: r.ready ? 200 : 503, json: r };
      },
    });
    this.route({ method: 'GET', path: '/metrics', handle: async () => ({ status: 200, text: await d.metrics.text(), contentType: d.metrics.contentType }) });
    this.route({ method: 'GET', path: '/ping', handle: () => ({ status: 200, text: 'pong' }) });
  }

  /** Add an endpoint (before start). A second route for the same method and path is a programming error. */
  route(r: OpsRoute): void {
    const taken = r.prefix ? this.prefixes.some((p) => p.path === r.path && p.method === r.method) : (this.exact.get(r.path) ?? []).some((p) => p.method === r.method);
    if (taken) throw new CompanionError('E_ROUTE', `ops: ${r.method} ${r.path} is already registered`);
    if (r.prefix) this.prefixes.push(r);
    else this.exact.set(r.path, [...(this.exact.get(r.path) ?? []), r]);
  }

  endpoints(): string[] {
    const all = [...[...this.exact.values()].flat(), ...this.prefixes];
    return all.map((r) => `${r.method === 'GET' ? '' : `${r.method} `}${r.path}${r.prefix ? '…' : ''}`);
  }

  dispatch(req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> | null {
    // The receiver's POSTs pass here too: a map miss and no allocation when nothing matches.
    let routes = this.exact.get(path);
    let rest = '';
    if (routes === undefined) {
      const first = this.prefixes.find((p) => path.startsWith(p.path));
      if (first === undefined) return null;
      routes = this.prefixes.filter((p) => p.path === first.path);
      rest = path.slice(first.path.length);
    }
    const method = req.method ?? 'GET';
    const route = routes.find((r) => r.method === method || (method === 'HEAD' && r.method === 'GET'));
    req.resume();
    if (!route) {
      const methods = [...new Set(routes.map((r) => r.method))];
      sendJson(res, 405, { error: 'method_not_allowed', reason: `${path} answers ${methods.join('/')} only` }, { Allow: methods.map((m) => (m === 'GET' ? 'GET, HEAD' : m)).join(', ') });
      return Promise.resolve();
    }
    const query = new URLSearchParams((req.url ?? '').split('?')[1] ?? '');
    return Promise.resolve(route.handle({ method, path, query, rest, headers: req.headers })).then((reply) => sendReply(res, reply));
  }

  async start(): Promise<void> {
    await this.listener?.start();
  }

  /** The own listener's address; null when the routes are served by the HTTP input's listener. */
  address(): { host: string; port: number } | null {
    return this.listener?.address() ?? null;
  }

  health(): ComponentHealth {
    const l = this.listener;
    if (!l) return { ready: true, detail: 'served on the HTTP input listener (http.listen)' };
    if (l.isStopping) return { ready: false, detail: 'stopping' };
    if (!l.listening) return { ready: false, detail: 'not started' };
    const a = l.address();
    return { ready: true, detail: `listening on ${a.host}:${a.port}` };
  }

  stop(deadlineMs: number): Promise<void> {
    this.stopPromise ??= (async () => {
      const l = this.listener;
      if (!l) return;
      const was = l.listening;
      await l.stop(deadlineMs);
      if (was) this.log.info('stopped');
    })();
    return this.stopPromise;
  }

  /** Requests on the own listener: a route, or 404 with the list of endpoints. */
  private serveOwn(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const served = this.dispatch(req, res, path);
    if (served) return served;
    req.resume();
    sendJson(res, 404, {
      error: 'not_found',
      reason: `no endpoint ${req.method ?? 'GET'} ${path} on the operations port`,
      hint: 'Falco alerts go to the HTTP input (http.listen, when http.enabled)',
      endpoints: this.endpoints(),
    });
    return Promise.resolve();
  }
}

export interface TestAlertRouteDeps {
  readonly intake: Intake;
  /** A fresh sample alert. */
  readonly alert: () => Alert;
  /** `http.retry_after`: announced when the intake is full. */
  readonly retryAfterMs: number;
  /** `ops.test_token`: the bearer token the route requires; null: the route is off (403). */
  readonly token: string | null;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** `Authorization: Bearer <token>` carries `token` (compared in constant time). */
function bearerMatches(header: string | undefined, expected: Buffer): boolean {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '');
  return m !== null && timingSafeEqual(digest(m[1] ?? ''), expected);
}

/**
 * `POST /test`: submit a sample alert end to end (to the sinks like any alert); 503 when the intake
 * refuses. It injects an alert, so it is off unless `ops.test_token` is set (403), and then it needs
 * `Authorization: Bearer <token>` (401 otherwise); refusals are counted (`errors_total{code}`).
 */
export function testAlertRoute(d: TestAlertRouteDeps): OpsRoute {
  const component = 'server/ops';
  const log = d.logger.child({ component });
  const limiter = rejectionLogLimiter(component, log, d.metrics);
  const expected = d.token === null ? null : digest(d.token);
  return {
    method: 'POST',
    path: '/test',
    async handle(req): Promise<Reply> {
      if (expected === null) {
        d.metrics.errors.inc({ component, code: 'test_disabled' });
        limiter({ status: 403 }, 'POST /test refused: off (ops.test_token is empty)');
        return { status: 403, json: { error: 'forbidden', reason: 'POST /test is off', hint: 'set ops.test_token (FALCO_COMPANION_OPS_TEST_TOKEN) and send Authorization: Bearer <token>' } };
      }
      const auth = req.headers.authorization;
      if (!bearerMatches(auth, expected)) {
        d.metrics.errors.inc({ component, code: 'unauthorized' });
        limiter({ status: 401, authorization: auth === undefined ? 'missing' : 'wrong' }, 'POST /test refused: bad token');
        return { status: 401, headers: { 'WWW-Authenticate': 'Bearer realm="falco-companion"' }, json: { error: 'unauthorized', reason: auth === undefined ? 'Authorization header missing' : 'wrong token', hint: 'send Authorization: Bearer <ops.test_token>' } };
      }
      let alert: Alert;
      try {
        alert = d.alert();
        await d.intake.submit(alert);
      } catch (err) {
        return refusalReply(err, { component, retryAfterMs: d.retryAfterMs, metrics: d.metrics, log, limiter, what: 'test' });
      }
      d.metrics.received.inc({ component });
      log.info({ rule: alert.rule, priority: alert.priority }, 'test alert submitted');
      return { status: 200, json: { status: 'submitted', rule: alert.rule, priority: alert.priority, time: alert.time } };
    },
  };
}
