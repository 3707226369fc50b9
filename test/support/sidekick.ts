/**
 * A Falcosidekick stand-in on 127.0.0.1 that validates its input exactly like sidekick:
 * 400 unless the body is JSON, `priority` parses (case-insensitive, `info` accepted), `rule` is
 * non-empty, `time` is RFC 3339, and `output_fields` is a non-empty object. Big integers are
 * decoded losslessly. It records what it accepted and can be told to fail, delay, or go down and
 * come back on the same port.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { parsePriority } from '../../src/alert.js';
import { isJsonObject, parse, type JsonObject } from '../../src/json/lossless.js';

/** Go's time.Time JSON decoding: RFC 3339 with a `T`, seconds, optional fraction, Z or ±hh:mm. */
const GO_RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

export interface Accepted {
  readonly raw: string;
  readonly parsed: JsonObject;
  readonly path: string;
}

interface Failure {
  remaining: number;
  status: number;
  retryAfter?: string;
  body?: string;
}

/** Why sidekick would refuse this body, or null when it would accept it. */
export function sidekickRejects(raw: string): string | null {
  let v;
  try {
    v = parse(raw);
  } catch {
    return 'body is not JSON';
  }
  if (!isJsonObject(v)) return 'body is not a JSON object';
  const p = v['priority'];
  if (typeof p !== 'string' || parsePriority(p) === null) return 'invalid priority';
  const rule = v['rule'];
  if (typeof rule !== 'string' || rule === '') return 'empty rule';
  const t = v['time'];
  if (typeof t !== 'string' || !GO_RFC3339.test(t) || Number.isNaN(Date.parse(t))) return 'invalid time';
  const f = v['output_fields'];
  if (!isJsonObject(f) || Object.keys(f).length === 0) return 'empty output_fields';
  return null;
}

export class FakeSidekick {
  readonly accepted: Accepted[] = [];
  readonly rejected: { raw: string; reason: string }[] = [];
  /** Every POST to the input, including failed ones (raw bodies). */
  readonly attempts: string[] = [];
  private server: http.Server | null = null;
  private port = 0;
  private failures: Failure[] = [];
  private delayMs = 0;
  private readonly sockets = new Set<Socket>();
  private waiters: { n: number; resolve: () => void }[] = [];

  get url(): string {
    return `http://127.0.0.1:${this.port}/`;
  }

  async start(port = 0): Promise<this> {
    const server = http.createServer((req, res) => this.handle(req, res));
    server.keepAliveTimeout = 60_000;
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.once('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    return this;
  }

  /** Answer the next `n` input requests with `status` (and Retry-After / body when given). */
  failNext(n: number, status: number, opts: { retryAfter?: string; body?: string } = {}): void {
    this.failures.push({ remaining: n, status, ...opts });
  }

  /** Forget the failures queued by failNext that were not answered yet. */
  clearFailures(): void {
    this.failures = [];
  }

  /** Delay every answer by `ms`. */
  delay(ms: number): void {
    this.delayMs = ms;
  }

  /** Close the listener and every connection: connections are refused until up(). */
  async down(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = null;
    const closed = new Promise<void>((r) => s.close(() => r()));
    s.closeAllConnections();
    for (const sock of this.sockets) sock.destroy();
    await closed;
  }

  /** Listen again on the same port. */
  async up(): Promise<void> {
    if (this.server) return;
    await this.start(this.port);
  }

  async close(): Promise<void> {
    await this.down();
  }

  /** Resolve once at least `n` alerts were accepted (rejects after `timeoutMs`). */
  waitForAccepted(n: number, timeoutMs = 10_000): Promise<void> {
    if (this.accepted.length >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = { n, resolve: () => (clearTimeout(t), resolve()) };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`fake sidekick: ${this.accepted.length}/${n} alerts accepted after ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'GET' && path === '/ping') return void res.end('pong');
      if (req.method === 'GET' && path === '/healthz') {
        res.setHeader('Content-Type', 'application/json');
        return void res.end('{"status": "ok"}');
      }
      if (req.method !== 'POST') {
        res.statusCode = 405;
        return void res.end();
      }
      const raw = Buffer.concat(chunks).toString('utf8');
      this.attempts.push(raw);
      const answer = (): void => this.answer(raw, path, res);
      if (this.delayMs > 0) setTimeout(answer, this.delayMs);
      else answer();
    });
  }

  private answer(raw: string, path: string, res: http.ServerResponse): void {
    if (res.destroyed) return;
    const f = this.failures[0];
    if (f) {
      if (--f.remaining <= 0) this.failures.shift();
      res.statusCode = f.status;
      if (f.retryAfter !== undefined) res.setHeader('Retry-After', f.retryAfter);
      res.end(f.body ?? '');
      return;
    }
    const why = sidekickRejects(raw);
    if (why !== null) {
      this.rejected.push({ raw, reason: why });
      res.statusCode = 400;
      res.end(`{"error":${JSON.stringify(why)}}`);
      return;
    }
    this.accepted.push({ raw, parsed: parse(raw) as JsonObject, path });
    res.statusCode = 200;
    res.end();
    const ready = this.waiters.filter((w) => this.accepted.length >= w.n);
    this.waiters = this.waiters.filter((w) => this.accepted.length < w.n);
    for (const w of ready) w.resolve();
  }
}
