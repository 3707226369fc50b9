/**
 * `source/grpc`: consumes falco.outputs.service (Falco 0.24 – 0.43).
 *
 * - `sub` (default): one bidirectional stream. Falco writes only after each client request, so
 *   an empty request goes out at once and then every `request_interval` ms, but ONLY while the
 *   intake has room: when it is full we stop requesting and Falco keeps the alerts in its own
 *   queue; requests resume on `intake.whenNotFull()`. The interval bounds the added latency.
 * - `get`: poll every `request_interval` ms; each call drains Falco's queue.
 * - Every alert read off the wire is submitted in order; a QueueFullError waits for room and
 *   retries the same alert: nothing Falco handed over is dropped. Messages are pulled from the
 *   stream only as fast as the intake takes them (HTTP/2 flow control pushes back on Falco).
 * - On connect (and every reconnect) falco.version.service/version is called and logged.
 * - Stream end or error: reconnect forever with exponential backoff and jitter.
 *
 * Decoding: proto-loader with keepCase, longs as String, enums as Number (aliased enum names
 * are ambiguous; numbers are mapped to names in grpc-convert.ts).
 */
import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { InvalidAlertError, type Alert } from '../alert.js';
import { backoffMs, sleep, type Component, type ComponentHealth } from '../component.js';
import type { Config } from '../config/schema.js';
import { CompanionError, ConfigError, QueueFullError, StoppedError, errorCode, errorMessage } from '../errors.js';
import { countSuppressed, rateLimited, type RateLimitedLog } from '../log-limit.js';
import type { Metrics } from '../metrics.js';
import type { Intake } from '../pipeline/types.js';
import { loadFalcoProtos, type FalcoProtos } from '../proto-path.js';
import { GRPC_ORIGIN, responseToAlert } from './grpc-convert.js';
import { DEFAULT_INPUT_LIMITS, InputLimitError, LimitReporter, type InputLimits } from '../limits.js';

export interface GrpcSourceDeps {
  readonly config: Config['grpc'];
  readonly intake: Intake;
  /** The component's logger (e.g. `root.child({ component: 'source/grpc' })`). */
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Jitter source for the reconnect backoff (tests). */
  readonly random?: () => number;
  /** Input limits (src/limits.ts; default DEFAULT_INPUT_LIMITS). */
  readonly limits?: InputLimits;
}

type AnyStream = NodeJS.EventEmitter & { pause(): unknown; resume(): unknown; cancel(): void };

const VERSION_TIMEOUT_MS = 5000;
/** Messages read ahead of the intake before the stream is paused (flow control), and resumed. */
const BUFFER_HIGH = 4096;
const BUFFER_LOW = 1024;
/** After a stream error, how long to wait for the messages grpc-js already pushed. */
const END_GRACE_MS = 2000;

/** Stream errors by gRPC status name (bounded label set). */
function grpcCode(err: unknown): string {
  if (err instanceof SessionError) return err.grpcCode !== null ? `E_GRPC_${grpc.status[err.grpcCode] ?? 'UNKNOWN'}` : grpcCode(err.cause);
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'number') {
    const name = grpc.status[(err as { code: number }).code];
    if (typeof name === 'string') return `E_GRPC_${name}`;
  }
  return errorCode(err);
}

export class GrpcSource implements Component {
  readonly id = 'source/grpc';
  private readonly cfg: Config['grpc'];
  private readonly intake: Intake;
  private readonly log: Logger;
  /** Undecodable or invalid messages: at most 10 log lines a second (a broken sender is not a log flood). */
  private readonly warnBadMessage: RateLimitedLog;
  private readonly limits: InputLimits;
  private readonly limitReporter: LimitReporter;
  private readonly metrics: Metrics;
  private readonly random: () => number;
  private readonly abort = new AbortController();
  private readonly aborted: Promise<void>;
  private stopDeadline = 0;
  private protos: FalcoProtos | null = null;
  private creds: grpc.ChannelCredentials | null = null;
  private channelOptions: grpc.ChannelOptions = {};
  private client: grpc.Client | null = null;
  private stream: AnyStream | null = null;
  private loop: Promise<void> | null = null;
  private started = false;
  private stopped = false;
  private up = false;
  private lastError: string | null = null;
  private version: string | null = null;
  private readonly reconnects: ReturnType<Metrics['counter']>;
  private readonly versionGauge: ReturnType<Metrics['gauge']>;
  private readonly connectedGauge: ReturnType<Metrics['gauge']>;
  /** Test hook and health detail: requests sent on `sub`. */
  private requestsSent = 0;

  constructor(deps: GrpcSourceDeps) {
    this.cfg = deps.config;
    this.intake = deps.intake;
    this.log = deps.logger;
    this.warnBadMessage = rateLimited(this.log, { intervalMs: 1000, burst: 10, onSuppressed: countSuppressed(deps.metrics, this.id) });
    this.limits = deps.limits ?? DEFAULT_INPUT_LIMITS;
    this.limitReporter = new LimitReporter(this.id, this.log, deps.metrics);
    this.metrics = deps.metrics;
    this.random = deps.random ?? Math.random;
    this.aborted = new Promise((resolve) => this.abort.signal.addEventListener('abort', () => resolve(), { once: true }));
    this.reconnects = deps.metrics.counter('grpc_reconnects_total', 'Reconnects to Falco gRPC after a stream ended or failed');
    this.versionGauge = deps.metrics.gauge('falco_version', 'Falco version seen over gRPC as major*10000+minor*100+patch (0: unknown)');
    this.connectedGauge = deps.metrics.gauge('grpc_connected', '1 while the gRPC stream to Falco is up');
    this.versionGauge.set(0);
    this.connectedGauge.set(0);
  }

  /** Falco's version string from the last successful version call, or null. */
  falcoVersion(): string | null {
    return this.version;
  }

  /** Empty requests sent on `sub` streams since start. */
  requestCount(): number {
    return this.requestsSent;
  }

  health(): ComponentHealth {
    if (this.up) return { ready: true, detail: `${this.cfg.mode} stream to ${this.cfg.address} up${this.version ? ` (Falco ${this.version})` : ''}` };
    return { ready: false, detail: this.stopped ? 'stopped' : `not connected to ${this.cfg.address}${this.lastError ? `: ${this.lastError}` : ''}` };
  }

  async start(): Promise<void> {
    if (this.started || this.stopped) return;
    this.started = true;
    try {
      this.protos = loadFalcoProtos();
      this.setupTransport();
    } catch (err) {
      this.started = false;
      throw err;
    }
    this.loop = this.run();
  }

  async stop(deadlineMs: number): Promise<void> {
    if (this.stopped) {
      if (this.loop) await this.waitLoop(deadlineMs);
      return;
    }
    this.stopped = true;
    this.stopDeadline = deadlineMs;
    this.abort.abort();
    this.stream?.cancel();
    if (this.loop) await this.waitLoop(deadlineMs);
    this.closeClient();
    this.setUp(false);
  }

  // -------------------------------------------------------------------------------------------

  private async waitLoop(deadlineMs: number): Promise<void> {
    const left = Math.max(0, deadlineMs - Date.now());
    let t: NodeJS.Timeout | undefined;
    await Promise.race([this.loop, new Promise<void>((r) => (t = setTimeout(r, left)))]);
    clearTimeout(t);
  }

  private setupTransport(): void {
    const addr = this.cfg.address;
    if (addr.startsWith('unix:')) {
      this.creds = grpc.credentials.createInsecure();
      return;
    }
    const { ca, cert, key, server_name: serverName } = this.cfg.tls;
    const missing = (['ca', 'cert', 'key'] as const).filter((k) => !this.cfg.tls[k]);
    if (missing.length > 0) {
      throw new ConfigError([
        `grpc.address ${addr} is TCP, which Falco serves only with mutual TLS: set grpc.tls.${missing.join(', grpc.tls.')} (or use unix:///run/falco/falco.sock)`,
      ]);
    }
    const read = (what: string, p: string): Buffer => {
      try {
        return readFileSync(p);
      } catch (err) {
        throw new ConfigError([`grpc.tls.${what}: cannot read ${p}: ${errorMessage(err)}`]);
      }
    };
    this.creds = grpc.credentials.createSsl(read('ca', ca as string), read('key', key as string), read('cert', cert as string));
    if (serverName) {
      this.channelOptions = { 'grpc.ssl_target_name_override': serverName, 'grpc.default_authority': serverName };
    }
  }

  private setUp(up: boolean): void {
    this.up = up;
    this.connectedGauge.set(up ? 1 : 0);
  }

  private closeClient(): void {
    this.client?.close();
    this.client = null;
  }

  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.stopped) {
      let progressed = false;
      try {
        progressed = await this.session();
        if (!this.stopped) this.lastError = 'stream ended by Falco';
      } catch (err) {
        if (this.stopped) break;
        this.lastError = errorMessage(err);
        this.metrics.errors.inc({ component: this.id, code: grpcCode(err) });
        progressed = progressed || (err instanceof SessionError && err.progressed);
      } finally {
        this.stream = null;
        this.closeClient();
        this.setUp(false);
      }
      if (this.stopped) break;
      if (progressed) attempt = 0;
      const delay = backoffMs(attempt++, this.cfg.reconnect_initial, this.cfg.reconnect_max, this.random);
      this.reconnects.inc();
      this.log.warn({ error: this.lastError, delay_ms: delay, address: this.cfg.address }, 'Falco gRPC stream lost; reconnecting');
      await sleep(delay, this.abort.signal);
    }
  }

  /** One connection: version, then stream until it ends. Returns whether anything was received. */
  private async session(): Promise<boolean> {
    const protos = this.protos as FalcoProtos;
    const client = new grpc.Client(this.cfg.address, this.creds as grpc.ChannelCredentials, this.channelOptions);
    this.client = client;
    await this.fetchVersion(client, protos);
    if (this.stopped) return false;
    return this.cfg.mode === 'get' ? this.pollLoop(client, protos) : this.subscribe(client, protos);
  }

  private async fetchVersion(client: grpc.Client, protos: FalcoProtos): Promise<void> {
    const m = protos.version;
    const res = await new Promise<Record<string, unknown> | null>((resolve, reject) => {
      client.makeUnaryRequest(
        m.path,
        m.requestSerialize,
        (b: Buffer) => m.responseDeserialize(b) as Record<string, unknown>,
        {},
        { deadline: Date.now() + VERSION_TIMEOUT_MS },
        (err, value) => {
          if (!err) return resolve(value ?? null);
          // A Falco without the version service still serves outputs; anything else is a failure.
          if (err.code === grpc.status.UNIMPLEMENTED) return resolve(null);
          reject(err);
        },
      );
    });
    const n = (k: string): number => (typeof res?.[k] === 'number' ? (res[k] as number) : 0);
    this.version = typeof res?.['version'] === 'string' && res['version'] !== '' ? res['version'] : null;
    this.versionGauge.set(this.version ? n('major') * 10000 + n('minor') * 100 + n('patch') : 0);
    this.log.info(
      { falco_version: this.version, engine_version: res?.['engine_version'] || null, address: this.cfg.address, mode: this.cfg.mode },
      this.version ? `connected to Falco ${this.version} over gRPC` : 'connected to Falco over gRPC (version unknown)',
    );
  }

  private async subscribe(client: grpc.Client, protos: FalcoProtos): Promise<boolean> {
    const m = protos.sub;
    const call = client.makeBidiStreamRequest(m.path, m.requestSerialize, (b: Buffer) => decodeSafe(m, b), {}) as unknown as grpc.ClientDuplexStream<object, unknown>;
    this.stream = call;
    this.setUp(true);
    let waitingForRoom = false;
    let active = true;
    const request = (): void => {
      if (this.stopped || !active) return;
      if (this.intake.full) {
        // Stop asking: Falco keeps the alerts until we have room again.
        if (!waitingForRoom) {
          waitingForRoom = true;
          void this.intake.whenNotFull().then(() => {
            waitingForRoom = false;
            request();
          });
        }
        return;
      }
      try {
        call.write({});
        this.requestsSent++;
      } catch (err) {
        this.log.debug({ error: errorMessage(err) }, 'request write failed');
      }
    };
    request();
    const timer = setInterval(request, this.cfg.request_interval);
    try {
      return await this.drain(call);
    } finally {
      active = false;
      clearInterval(timer);
      this.setUp(false);
      try {
        call.end();
      } catch {
        // already closed
      }
    }
  }

  private async pollLoop(client: grpc.Client, protos: FalcoProtos): Promise<boolean> {
    const m = protos.get;
    let progressed = false;
    while (!this.stopped) {
      if (this.intake.full) await Promise.race([this.intake.whenNotFull(), this.aborted]);
      if (this.stopped) break;
      const call = client.makeServerStreamRequest(m.path, m.requestSerialize, (b: Buffer) => decodeSafe(m, b), {}, {}) as unknown as grpc.ClientReadableStream<unknown>;
      this.stream = call;
      try {
        if (await this.drain(call)) progressed = true;
      } catch (err) {
        throw err instanceof SessionError ? new SessionError(err.cause, progressed || err.progressed) : new SessionError(err, progressed);
      }
      this.setUp(true);
      progressed = true;
      await sleep(this.cfg.request_interval, this.abort.signal);
    }
    return progressed;
  }

  /**
   * Read every message off the stream and submit it, in order, until the stream ends.
   *
   * Messages are read eagerly into a local buffer: grpc-js discards messages it holds but the
   * application has not read yet as soon as a non-OK status arrives, and those were already
   * popped from Falco's queue. Only when the local buffer passes BUFFER_HIGH does the source
   * pause the stream (HTTP/2 flow control then holds Falco back); in sub mode that cannot happen
   * while the intake is full, because no request is sent. Messages received before a stream
   * error are still submitted. Resolves when the stream ended with OK; rejects with the error.
   */
  private async drain(call: AnyStream): Promise<boolean> {
    let buf: unknown[] = [];
    let head = 0;
    let paused = false;
    let ended = false;
    let failure: unknown = null;
    let wake: (() => void) | null = null;
    let endTimer: NodeJS.Timeout | undefined;
    const poke = (): void => {
      const w = wake;
      wake = null;
      w?.();
    };
    const onData = (msg: unknown): void => {
      buf.push(msg);
      if (!paused && buf.length - head >= BUFFER_HIGH) {
        paused = true;
        call.pause();
      }
      poke();
    };
    const onEnd = (): void => {
      ended = true;
      poke();
    };
    const onError = (err: unknown): void => {
      failure ??= err;
      // grpc-js pushed everything it had before the error: let it flow out, then 'end' follows.
      if (paused) {
        paused = false;
        call.resume();
      }
      endTimer ??= setTimeout(onEnd, END_GRACE_MS);
      poke();
    };
    call.on('data', onData);
    call.on('end', onEnd);
    call.on('close', onEnd);
    call.on('error', onError);
    let received = false;
    try {
      for (;;) {
        if (head < buf.length) {
          const msg = buf[head];
          buf[head] = undefined;
          head++;
          if (head === buf.length) {
            buf = [];
            head = 0;
          } else if (head > 1024 && head * 2 > buf.length) {
            buf = buf.slice(head);
            head = 0;
          }
          if (paused && buf.length - head <= BUFFER_LOW) {
            paused = false;
            call.resume();
          }
          received = true;
          await this.handle(msg);
          continue;
        }
        if (ended) break;
        await new Promise<void>((r) => {
          wake = r;
        });
      }
    } finally {
      clearTimeout(endTimer);
      call.off('data', onData);
      call.off('end', onEnd);
      call.off('close', onEnd);
      // Keep an error listener: a late error must never become an uncaught exception.
      call.off('error', onError);
      call.on('error', () => undefined);
    }
    if (failure !== null && !this.stopped) throw new SessionError(failure, received);
    return received;
  }

  /** Wait until the intake has room; after stop() only until the stop deadline. False: give up. */
  private async waitForRoom(): Promise<boolean> {
    if (!this.stopped) await Promise.race([this.intake.whenNotFull(), this.aborted]);
    if (!this.stopped) return true;
    const left = this.stopDeadline - Date.now();
    if (left > 0 && this.intake.full) await Promise.race([this.intake.whenNotFull(), sleep(left)]);
    return !this.intake.full;
  }

  /** Convert and submit one message, waiting for room as long as it takes. Never throws. */
  private async handle(msg: unknown): Promise<void> {
    this.metrics.received.inc({ component: this.id });
    let alert: Alert;
    try {
      if (msg instanceof DecodeFailure) throw new InvalidAlertError(`undecodable falco.outputs.response: ${msg.reason}`);
      alert = responseToAlert(msg, { origin: GRPC_ORIGIN, limits: this.limits, onCuts: (cuts, rule) => this.limitReporter.truncated(cuts, rule) });
    } catch (err) {
      if (err instanceof InputLimitError) this.limitReporter.rejected(err.limit, err.message);
      const code = errorCode(err);
      this.metrics.errors.inc({ component: this.id, code });
      this.metrics.discarded.inc({ component: this.id, reason: 'invalid' });
      this.warnBadMessage({ error: errorMessage(err), code }, 'bad message from Falco gRPC skipped');
      return;
    }
    for (;;) {
      try {
        await this.intake.submit(alert);
        this.metrics.sent.inc({ component: this.id });
        return;
      } catch (err) {
        if (err instanceof QueueFullError) {
          if (await this.waitForRoom()) continue;
          this.metrics.discarded.inc({ component: this.id, reason: 'shutdown' });
          this.log.error({ rule: alert.rule, priority: alert.priority }, 'intake still full at the shutdown deadline: alert from Falco gRPC dropped');
          return;
        }
        const stoppedIntake = err instanceof StoppedError;
        this.metrics.errors.inc({ component: this.id, code: errorCode(err) });
        this.metrics.discarded.inc({ component: this.id, reason: stoppedIntake ? 'stopped' : 'submit_failed' });
        this.log.error({ error: errorMessage(err), rule: alert.rule, priority: alert.priority }, 'alert from Falco gRPC could not be kept');
        return;
      }
    }
  }
}

/** A stream failure, remembering whether the session received anything (resets the backoff). */
class SessionError extends CompanionError {
  readonly progressed: boolean;
  readonly grpcCode: number | null;
  constructor(cause: unknown, progressed: boolean) {
    super('E_GRPC_STREAM', errorMessage(cause), { cause });
    this.progressed = progressed;
    const c = cause && typeof cause === 'object' && 'code' in cause ? (cause as { code: unknown }).code : null;
    this.grpcCode = typeof c === 'number' ? c : null;
  }
}

/** A response that protobuf could not decode (kept in-stream so it is counted, not fatal). */
class DecodeFailure {
  constructor(readonly reason: string) {}
}

function decodeSafe(m: { responseDeserialize(b: Buffer): object }, b: Buffer): unknown {
  try {
    return m.responseDeserialize(b);
  } catch (err) {
    return new DecodeFailure(errorMessage(err));
  }
}
