/**
 * A strict, wire-faithful emulator of Falco's gRPC server (Falco 0.24 – 0.43), used by the tests
 * and by `falco-companion demo`.
 *
 * Semantics copied from Falco:
 * - ONE process-wide queue shared by every stream: `get` and `sub` pop from it, no fan-out.
 * - `sub` reads one client request, writes everything queued, then waits for the NEXT request.
 * - `get` drains the queue and ends the stream with OK.
 * - output_fields are strings: null → `"<NA>"`, numbers as decimal text, evt.time as
 *   time-of-day text (UTC here; Falco uses the host's zone).
 * - With `jsonOutput` (default, like Falco 0.40 with json_output: true) the `output` field carries
 *   the whole JSON alert.
 * - unix:// addresses need no auth; any other address is TCP with mandatory mTLS.
 * - Stopping loses what is queued (Falco keeps the queue in memory only).
 * Strict: undecodable requests end the stream with INVALID_ARGUMENT and are logged.
 */
import * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import { existsSync, lstatSync, readFileSync, rmSync } from 'node:fs';
import type { Logger } from 'pino';
import { PRIORITIES, parsePriority, parseTime } from '../alert.js';
import { CompanionError } from '../errors.js';
import { LosslessNumber, isJsonObject, parse, stringify, type JsonObject, type JsonValue } from '../json/lossless.js';
import { silentLogger } from '../logger.js';
import { loadFalcoProtos } from '../proto-path.js';

export interface EmulatorTls {
  /** CA that verifies client certificates (PEM text, Buffer, or a file path). */
  readonly ca: string | Buffer;
  /** Server certificate (PEM text, Buffer, or a file path). */
  readonly cert: string | Buffer;
  /** Server private key (PEM text, Buffer, or a file path). */
  readonly key: string | Buffer;
}

export interface FalcoGrpcEmulatorOptions {
  /** `unix:///path/falco.sock` or `HOST:PORT` (port 0 picks one; TCP requires `tls`). */
  readonly address: string;
  readonly tls?: EmulatorTls;
  /** Falco version reported by falco.version.service (default 0.40.0). */
  readonly version?: string;
  /** `output` carries the whole JSON alert (default true), else the text line. */
  readonly jsonOutput?: boolean;
  /** Largest queue before pushes are dropped and counted (Falco has none; default 1,000,000). */
  readonly maxQueued?: number;
  readonly logger?: Logger;
}

export interface EmulatorStats {
  /** Client requests read on `sub` streams. */
  readonly requests: number;
  /** Responses written to streams. */
  readonly written: number;
  /** sub + get streams opened. */
  readonly streams: number;
  /** Requests rejected as malformed. */
  readonly malformed: number;
  /** Pushes dropped because the queue hit maxQueued. */
  readonly dropped: number;
}

/** A response as proto-loader encodes it, or pre-encoded bytes (to send what a library would refuse). */
type QueueItem = Record<string, unknown> | Buffer;

type Req = { readonly ok: true; readonly extraBytes: number } | { readonly ok: false; readonly reason: string };

interface ActiveCall {
  emit(event: 'error', err: Partial<grpc.StatusObject>): boolean;
}

const SOURCE_NUMBERS: Readonly<Record<string, number>> = { syscall: 0, k8s_audit: 1, internal: 2 };

function pem(v: string | Buffer): Buffer {
  if (Buffer.isBuffer(v)) return v;
  return v.includes('-----BEGIN') ? Buffer.from(v) : readFileSync(v);
}

/** ns since the epoch → `HH:MM:SS.nnnnnnnnn` (UTC), the text form of evt.time. */
export function timeOfDay(ns: bigint): string {
  const sec = ns / 1_000_000_000n;
  const nanos = ns % 1_000_000_000n;
  const iso = new Date(Number(sec) * 1000).toISOString();
  return `${iso.slice(11, 19)}.${nanos.toString().padStart(9, '0')}`;
}

/** One output_fields value as Falco writes it over gRPC (strings only). */
export function fieldAsGrpcString(key: string, v: JsonValue | undefined): string {
  if (v === null || v === undefined) return '<NA>';
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : '<NA>';
  if (v instanceof LosslessNumber) {
    if (key === 'evt.time' || key === 'evt.time.iso8601') {
      const ns = v.toBigInt();
      if (ns !== null && ns >= 0n && ns < 253_402_300_800_000_000_000n) {
        return key === 'evt.time' ? timeOfDay(ns) : new Date(Number(ns / 1_000_000n)).toISOString().slice(0, 19) + '.' + (ns % 1_000_000_000n).toString().padStart(9, '0') + 'Z';
      }
    }
    return v.raw;
  }
  return stringify(v);
}

/** A parsed Falco JSON alert → the falco.outputs.response Falco would send for it. */
export function alertJsonToResponse(alert: JsonObject, opts: { jsonOutput: boolean; jsonText?: string }): Record<string, unknown> {
  const time = typeof alert['time'] === 'string' ? parseTime(alert['time']) : null;
  if (!time) throw new CompanionError('E_EMULATOR_INPUT', 'alert "time" missing or not RFC 3339');
  const priority = typeof alert['priority'] === 'string' ? parsePriority(alert['priority']) : null;
  if (!priority) throw new CompanionError('E_EMULATOR_INPUT', 'alert "priority" missing or unknown');
  const rule = alert['rule'];
  if (typeof rule !== 'string' || rule === '') throw new CompanionError('E_EMULATOR_INPUT', 'alert "rule" missing');
  const source = typeof alert['source'] === 'string' ? alert['source'] : '';
  const fields: Record<string, string> = {};
  const rawFields = alert['output_fields'];
  if (isJsonObject(rawFields)) {
    for (const k of Object.keys(rawFields)) {
      const v = rawFields[k];
      // evt.time in JSON is the ns integer; over gRPC it is the time-of-day text.
      const asText = (k === 'evt.time' || k === 'evt.time.iso8601') && typeof v === 'number' ? new LosslessNumber(String(v)) : v;
      fields[k] = fieldAsGrpcString(k, asText);
    }
  }
  const tags = Array.isArray(alert['tags']) ? (alert['tags'] as JsonValue[]).filter((t): t is string => typeof t === 'string') : [];
  const ordinal = PRIORITIES.indexOf(priority);
  const seconds = time.ns / 1_000_000_000n;
  return {
    time: { seconds: seconds.toString(), nanos: Number(time.ns % 1_000_000_000n) },
    priority: ordinal,
    source_deprecated: source === '' ? 0 : (SOURCE_NUMBERS[source] ?? 3),
    rule,
    output: opts.jsonOutput ? (opts.jsonText ?? stringify(alert)) : typeof alert['output'] === 'string' ? alert['output'] : '',
    output_fields: fields,
    hostname: typeof alert['hostname'] === 'string' ? alert['hostname'] : '',
    tags,
    source,
  };
}

/** `0.40.0-rc1+abc` → the 11 fields of falco.version.response. */
export function versionResponse(version: string): Record<string, unknown> {
  const m = /^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$/.exec(version);
  const major = Number(m?.[1] ?? 0);
  const minor = Number(m?.[2] ?? 0);
  const patch = Number(m?.[3] ?? 0);
  // Falco 0.40 ships engine 0.43.0; a plausible mapping is enough for an emulator.
  const engineMinor = Math.max(0, minor + 3);
  return {
    version,
    major,
    minor,
    patch,
    prerelease: m?.[4] ?? '',
    build: m?.[5] ?? '',
    engine_minor: engineMinor,
    engine_fields_checksum: 'e1c8a5b8b5a2b1e0d6f1f5d4c3b2a1908f7e6d5c4b3a29180706050403020100',
    engine_major: 0,
    engine_patch: 0,
    engine_version: `0.${engineMinor}.0`,
  };
}

export class FalcoGrpcEmulator {
  private readonly opts: FalcoGrpcEmulatorOptions;
  private readonly log: Logger;
  private readonly jsonOutput: boolean;
  private readonly maxQueued: number;
  private server: grpc.Server | null = null;
  private boundAddress: string | null = null;
  // One process-wide FIFO (array + head index: O(1) pops).
  private queue: QueueItem[] = [];
  private head = 0;
  private readonly calls = new Set<ActiveCall>();
  private readonly waiters = new Set<() => void>();
  private counters = { requests: 0, written: 0, streams: 0, malformed: 0, dropped: 0 };

  constructor(opts: FalcoGrpcEmulatorOptions) {
    this.opts = opts;
    this.log = opts.logger ?? silentLogger();
    this.jsonOutput = opts.jsonOutput ?? true;
    this.maxQueued = opts.maxQueued ?? 1_000_000;
  }

  /** Bind and serve. Resolves with the address clients should use (port filled in for TCP). */
  async start(): Promise<{ address: string }> {
    if (this.server) return { address: this.boundAddress as string };
    const protos = loadFalcoProtos();
    const server = new grpc.Server();
    server.addService(this.wrap(protos.sub, protos.get), {
      sub: (call: grpc.ServerDuplexStream<Req, QueueItem>) => this.onSub(call),
      get: (call: grpc.ServerWritableStream<Req, QueueItem>) => this.onGet(call),
    });
    server.addService(protos.versionService as grpc.ServiceDefinition, {
      version: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, versionResponse(this.opts.version ?? '0.40.0')),
    });

    const addr = this.opts.address;
    let creds: grpc.ServerCredentials;
    if (addr.startsWith('unix:')) {
      const path = addr.replace(/^unix:(\/\/)?/, '');
      // Falco removes a stale socket before binding.
      if (existsSync(path) && lstatSync(path).isSocket()) rmSync(path, { force: true });
      creds = grpc.ServerCredentials.createInsecure();
    } else {
      const tls = this.opts.tls;
      if (!tls) throw new CompanionError('E_EMULATOR_CONFIG', `TCP address ${addr} requires mTLS (tls: {ca, cert, key}), as Falco does`);
      creds = grpc.ServerCredentials.createSsl(pem(tls.ca), [{ private_key: pem(tls.key), cert_chain: pem(tls.cert) }], true);
    }
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(addr, creds, (err, p) => (err ? reject(new CompanionError('E_EMULATOR_BIND', `cannot bind ${addr}: ${err.message}`, { cause: err })) : resolve(p))),
    );
    this.server = server;
    this.boundAddress = addr.startsWith('unix:') ? addr : addr.replace(/:0$/, `:${port}`);
    this.log.info({ address: this.boundAddress }, 'falco gRPC emulator listening');
    return { address: this.boundAddress };
  }

  /** Stop serving (streams end abruptly, like a Falco restart). What is queued is lost. Idempotent. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.boundAddress = null;
    this.queue = [];
    this.head = 0;
    for (const w of this.waiters) w();
    this.waiters.clear();
    this.calls.clear();
    if (server) server.forceShutdown();
    await Promise.resolve();
  }

  /** Queue one alert (JSON text or parsed object), as Falco does when a rule fires. */
  push(alert: string | JsonObject): void {
    let obj: JsonValue;
    let text: string | undefined;
    if (typeof alert === 'string') {
      text = alert.replace(/\r?\n$/, '');
      obj = parse(text);
    } else {
      obj = alert;
    }
    if (!isJsonObject(obj)) throw new CompanionError('E_EMULATOR_INPUT', 'alert must be a JSON object');
    this.enqueue(alertJsonToResponse(obj, { jsonOutput: this.jsonOutput, ...(text !== undefined ? { jsonText: text } : {}) }));
  }

  /** Queue a response object (proto-loader shape) or pre-encoded response bytes (e.g. invalid UTF-8). */
  pushResponse(resp: Record<string, unknown> | Buffer): void {
    this.enqueue(resp);
  }

  /** Alerts waiting in the shared queue. */
  queued(): number {
    return this.queue.length - this.head;
  }

  stats(): EmulatorStats {
    return { ...this.counters };
  }

  /** End every open sub/get stream with an error status (default UNAVAILABLE). Queue untouched. */
  abortStreams(code: grpc.status = grpc.status.UNAVAILABLE): number {
    const calls = [...this.calls];
    this.calls.clear();
    for (const c of calls) c.emit('error', { code, details: 'stream aborted by the emulator' });
    for (const w of this.waiters) w();
    return calls.length;
  }

  // -------------------------------------------------------------------------------------------

  private enqueue(item: QueueItem): void {
    if (this.queued() >= this.maxQueued) {
      this.counters.dropped++;
      return;
    }
    this.queue.push(item);
  }

  private pop(): QueueItem | undefined {
    if (this.head >= this.queue.length) return undefined;
    const item = this.queue[this.head];
    this.queue[this.head] = {};
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** Pre-encoded Buffers pass through; requests are decoded strictly. */
  private wrap(sub: MethodDefinition<object, object>, get: MethodDefinition<object, object>): grpc.ServiceDefinition {
    const strict = (m: MethodDefinition<object, object>): grpc.MethodDefinition<Req, QueueItem> => ({
      path: m.path,
      requestStream: m.requestStream,
      responseStream: m.responseStream,
      originalName: m.originalName ?? '',
      requestSerialize: () => Buffer.alloc(0),
      requestDeserialize: (buf: Buffer): Req => {
        try {
          m.requestDeserialize(buf);
          return { ok: true, extraBytes: buf.length };
        } catch (err) {
          return { ok: false, reason: err instanceof Error ? err.message : String(err) };
        }
      },
      responseSerialize: (v: QueueItem): Buffer => (Buffer.isBuffer(v) ? v : m.responseSerialize(v)),
      responseDeserialize: (b: Buffer): QueueItem => b,
    });
    return { sub: strict(sub), get: strict(get) } as grpc.ServiceDefinition;
  }

  private checkRequest(req: Req, call: ActiveCall, rpc: string): boolean {
    if (!req.ok) {
      this.counters.malformed++;
      this.log.warn({ rpc, error: req.reason }, 'malformed request rejected');
      this.calls.delete(call);
      call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: `malformed falco.outputs.request: ${req.reason}` });
      return false;
    }
    if (req.extraBytes > 0) this.log.warn({ rpc, bytes: req.extraBytes }, 'request carries unknown fields (falco.outputs.request has none); ignored as Falco does');
    return true;
  }

  /** Track an open call until it is cancelled, fails or closes; `end()` finishes it with OK once. */
  private track(call: ActiveCall & NodeJS.EventEmitter & { end(): void }): { closed(): boolean; close(): void; end(): void } {
    let closed = false;
    const close = (): void => {
      closed = true;
      this.calls.delete(call);
    };
    this.calls.add(call);
    call.on('cancelled', close);
    call.on('error', close);
    call.on('close', close);
    return {
      closed: () => closed,
      close,
      end: () => {
        if (!closed) {
          close();
          call.end();
        }
      },
    };
  }

  /** Write queued alerts to `call` until the queue is empty or the call closed (honours back-pressure). */
  private async writeQueued(call: NodeJS.EventEmitter & { write(item: QueueItem): boolean }, closed: () => boolean): Promise<void> {
    for (;;) {
      if (closed()) return;
      const item = this.pop();
      if (item === undefined) return;
      this.counters.written++;
      if (!call.write(item)) await this.waitDrain(call);
    }
  }

  private onSub(call: grpc.ServerDuplexStream<Req, QueueItem>): void {
    this.counters.streams++;
    const t = this.track(call);
    let pending = 0;
    let busy = false;
    // The client half-closed: Falco finishes the call with OK.
    call.on('end', t.end);
    const pump = async (): Promise<void> => {
      if (busy) return;
      busy = true;
      try {
        while (pending > 0 && !t.closed()) {
          pending--;
          await this.writeQueued(call, t.closed);
        }
      } finally {
        busy = false;
      }
    };
    call.on('data', (req: Req) => {
      if (t.closed()) return;
      if (!this.checkRequest(req, call, 'sub')) {
        t.close();
        return;
      }
      this.counters.requests++;
      pending++;
      void pump();
    });
  }

  private onGet(call: grpc.ServerWritableStream<Req, QueueItem>): void {
    this.counters.streams++;
    if (!this.checkRequest(call.request, call, 'get')) return;
    const t = this.track(call);
    void (async () => {
      await this.writeQueued(call, t.closed);
      t.end();
    })();
  }

  private waitDrain(call: NodeJS.EventEmitter): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        call.off('drain', done);
        call.off('close', done);
        call.off('error', done);
        this.waiters.delete(done);
        resolve();
      };
      call.on('drain', done);
      call.on('close', done);
      call.on('error', done);
      this.waiters.add(done);
    });
  }
}
