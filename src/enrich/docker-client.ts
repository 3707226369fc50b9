/**
 * Docker Engine API over its unix socket: inspect containers and images, image history, and the
 * `/events` stream (JSON lines) kept open with reconnects. Every request has a hard timeout and
 * honours an AbortSignal; failures are {@link DockerError}s with stable codes.
 */
import http from 'node:http';
import { backoffMs, sleep } from '../component.js';
import { CompanionError } from '../errors.js';

export type DockerErrorCode =
  | 'E_DOCKER_UNAVAILABLE'
  | 'E_DOCKER_TIMEOUT'
  | 'E_DOCKER_ABORTED'
  | 'E_DOCKER_NOT_FOUND'
  | 'E_DOCKER_HTTP'
  | 'E_DOCKER_BAD_RESPONSE';

export class DockerError extends CompanionError {
  readonly status: number | null;
  constructor(code: DockerErrorCode, message: string, opts: { status?: number | null; cause?: unknown } = {}) {
    super(code, message, { cause: opts.cause });
    this.name = 'DockerError';
    this.status = opts.status ?? null;
  }
}

/** The parts of `GET /containers/{id}/json` the enricher reads. */
export interface DockerContainer {
  readonly Id: string;
  /** Image ID (`sha256:...`). */
  readonly Image: string;
  readonly Name?: string;
  readonly Created?: string;
  readonly Config?: { readonly Image?: string; readonly Labels?: Record<string, string> | null };
  /** Running state: the host pid of its init process and when it (re)started. */
  readonly State?: { readonly Pid?: number; readonly StartedAt?: string; readonly Running?: boolean };
  readonly HostConfig?: { readonly NetworkMode?: string };
}

/** One entry of `GET /containers/json` (running containers). */
export interface DockerContainerSummary {
  readonly Id: string;
  readonly Names?: readonly string[] | null;
  /** The reference it was started from (`nginx:1.25`), or an image ID. */
  readonly Image?: string;
  readonly ImageID?: string;
  /** Unix seconds. */
  readonly Created?: number;
  readonly Labels?: Readonly<Record<string, string>> | null;
  readonly State?: string;
  readonly HostConfig?: { readonly NetworkMode?: string };
}

/** The parts of `GET /containers/{id}/stats?stream=false&one-shot=true` the metrics source reads. */
export interface DockerStats {
  readonly read?: string;
  readonly cpu_stats?: { readonly cpu_usage?: { readonly total_usage?: number } };
  readonly memory_stats?: { readonly usage?: number; readonly stats?: Readonly<Record<string, number>> };
  readonly pids_stats?: { readonly current?: number };
  readonly networks?: Readonly<Record<string, { readonly rx_bytes?: number; readonly rx_packets?: number; readonly tx_bytes?: number; readonly tx_packets?: number }>>;
}

/** The parts of `GET /images/{id}/json` the enricher reads. */
export interface DockerImage {
  readonly Id: string;
  readonly RepoTags?: readonly string[] | null;
  readonly RepoDigests?: readonly string[] | null;
  readonly Created?: string;
  readonly RootFS?: { readonly Layers?: readonly string[] | null };
}

/** One entry of `GET /images/{id}/history`, newest first. */
export interface DockerHistoryEntry {
  readonly Id?: string;
  /** Unix seconds. */
  readonly Created: number;
  readonly CreatedBy?: string;
  readonly Size?: number;
  readonly Tags?: readonly string[] | null;
  readonly Comment?: string;
}

/** One `/events` message. */
export interface DockerEvent {
  readonly Type: string;
  readonly Action: string;
  readonly id?: string;
  readonly Actor?: { readonly ID?: string; readonly Attributes?: Readonly<Record<string, string>> };
  readonly time?: number;
  readonly timeNano?: number;
}

export interface DockerClientOptions {
  readonly socketPath: string;
  /** Hard timeout per request (ms). */
  readonly timeoutMs: number;
  /** Pin the API version (`1.41`); null: negotiate with `GET /version` (fallback 1.41). */
  readonly apiVersion?: string | null;
  /** Largest response body accepted (bytes). */
  readonly maxBodyBytes?: number;
  /** Largest event line accepted (bytes); longer lines are skipped. */
  readonly maxEventLineBytes?: number;
}

export const DEFAULT_API_VERSION = '1.41';

export interface WatchEventsOptions {
  /** `filters` for /events, e.g. `{ type: ['image'], event: ['pull'] }`. */
  readonly filters: Readonly<Record<string, readonly string[]>>;
  readonly onEvent: (ev: DockerEvent) => void;
  /** Connection state changes (true once the stream is open, false when it drops). */
  readonly onState?: (connected: boolean, err: unknown) => void;
  readonly signal: AbortSignal;
  readonly reconnectBaseMs?: number;
  readonly reconnectMaxMs?: number;
  readonly random?: () => number;
}

export class DockerClient {
  private readonly agent: http.Agent;
  private readonly maxBody: number;
  private readonly maxLine: number;
  private version: string | null;
  private negotiating: Promise<string> | null = null;

  constructor(private readonly opts: DockerClientOptions) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 8, maxFreeSockets: 2 });
    this.maxBody = opts.maxBodyBytes ?? 4 * 1024 * 1024;
    this.maxLine = opts.maxEventLineBytes ?? 64 * 1024;
    this.version = opts.apiVersion ?? null;
  }

  get socketPath(): string {
    return this.opts.socketPath;
  }

  /** The API version in use (negotiated once, re-negotiated after a connection failure). */
  async apiVersion(signal?: AbortSignal): Promise<string> {
    if (this.version !== null) return this.version;
    this.negotiating ??= this.getJson<{ ApiVersion?: unknown }>('/version', signal)
      .then((v) => {
        const ver = typeof v.ApiVersion === 'string' && /^1\.\d+$/.test(v.ApiVersion) ? v.ApiVersion : DEFAULT_API_VERSION;
        this.version = ver;
        return ver;
      })
      .finally(() => {
        this.negotiating = null;
      });
    return this.negotiating;
  }

  async containerInspect(id: string, signal?: AbortSignal): Promise<DockerContainer> {
    const c = await this.getJson<DockerContainer>(`${await this.prefix(signal)}/containers/${encodeURIComponent(id)}/json`, signal);
    if (typeof c?.Id !== 'string' || typeof c.Image !== 'string') throw new DockerError('E_DOCKER_BAD_RESPONSE', 'container inspect: no Id/Image');
    return c;
  }

  /** Running containers (`GET /containers/json`). */
  async containerList(signal?: AbortSignal): Promise<DockerContainerSummary[]> {
    const l = await this.getJson<DockerContainerSummary[]>(`${await this.prefix(signal)}/containers/json`, signal);
    if (!Array.isArray(l)) throw new DockerError('E_DOCKER_BAD_RESPONSE', 'container list: not an array');
    return l.filter((c) => typeof c?.Id === 'string');
  }

  /** One stats reading of a running container, without the daemon's one-second second sample (`one-shot`, API 1.41+). */
  async containerStats(id: string, signal?: AbortSignal): Promise<DockerStats> {
    const st = await this.getJson<DockerStats>(`${await this.prefix(signal)}/containers/${encodeURIComponent(id)}/stats?stream=false&one-shot=true`, signal);
    if (typeof st !== 'object' || st === null || Array.isArray(st)) throw new DockerError('E_DOCKER_BAD_RESPONSE', 'container stats: not an object');
    return st;
  }

  async imageInspect(ref: string, signal?: AbortSignal): Promise<DockerImage> {
    const i = await this.getJson<DockerImage>(`${await this.prefix(signal)}/images/${encodeRef(ref)}/json`, signal);
    if (typeof i?.Id !== 'string') throw new DockerError('E_DOCKER_BAD_RESPONSE', 'image inspect: no Id');
    return i;
  }

  async imageHistory(ref: string, signal?: AbortSignal): Promise<DockerHistoryEntry[]> {
    const h = await this.getJson<DockerHistoryEntry[]>(`${await this.prefix(signal)}/images/${encodeRef(ref)}/history`, signal);
    if (!Array.isArray(h)) throw new DockerError('E_DOCKER_BAD_RESPONSE', 'image history: not an array');
    return h;
  }

  /**
   * Follow `/events` until `signal` aborts: reconnect with exponential backoff and jitter, resume
   * with `since` after the last event seen (duplicates by timeNano are dropped). Never rejects.
   */
  async watchEvents(o: WatchEventsOptions): Promise<void> {
    let attempt = 0;
    let lastNano = 0;
    const base = o.reconnectBaseMs ?? 250;
    const max = o.reconnectMaxMs ?? 30_000;
    while (!o.signal.aborted) {
      let opened = false;
      try {
        const prefix = await this.prefix(o.signal);
        const q = new URLSearchParams({ filters: JSON.stringify(o.filters) });
        if (lastNano > 0) q.set('since', String(Math.floor(lastNano / 1e9)));
        await this.stream(`${prefix}/events?${q.toString()}`, o.signal, () => {
          opened = true;
          attempt = 0;
          o.onState?.(true, null);
        }, (line) => {
          let ev: DockerEvent;
          try {
            ev = JSON.parse(line) as DockerEvent;
          } catch {
            return;
          }
          if (typeof ev !== 'object' || ev === null || typeof ev.Type !== 'string' || typeof ev.Action !== 'string') return;
          const nano = typeof ev.timeNano === 'number' ? ev.timeNano : 0;
          if (nano > 0 && nano <= lastNano) return; // replayed by `since`
          if (nano > lastNano) lastNano = nano;
          o.onEvent(ev);
        });
        if (opened) o.onState?.(false, new DockerError('E_DOCKER_UNAVAILABLE', 'event stream ended'));
      } catch (err) {
        if (o.signal.aborted) break;
        this.version = this.opts.apiVersion ?? null; // the daemon may have been upgraded
        o.onState?.(false, err);
      }
      if (o.signal.aborted) break;
      await sleep(backoffMs(attempt++, base, max, o.random), o.signal);
    }
  }

  close(): void {
    this.agent.destroy();
  }

  private async prefix(signal?: AbortSignal): Promise<string> {
    try {
      return `/v${await this.apiVersion(signal)}`;
    } catch (err) {
      if (err instanceof DockerError && (err.code === 'E_DOCKER_HTTP' || err.code === 'E_DOCKER_BAD_RESPONSE')) {
        this.version = DEFAULT_API_VERSION;
        return `/v${DEFAULT_API_VERSION}`;
      }
      throw err;
    }
  }

  private getJson<T>(path: string, signal?: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) return reject(new DockerError('E_DOCKER_ABORTED', `GET ${path}: aborted`));
      let done = false;
      const finish = (err: Error | null, v?: T): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(v as T);
      };
      const req = http.request({ socketPath: this.opts.socketPath, path, method: 'GET', agent: this.agent, headers: { host: 'docker', accept: 'application/json' } }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > this.maxBody) {
            req.destroy();
            finish(new DockerError('E_DOCKER_BAD_RESPONSE', `GET ${path}: body larger than ${this.maxBody} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('error', (e) => finish(connError(path, e)));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString('utf8');
          if (status === 404) return finish(new DockerError('E_DOCKER_NOT_FOUND', `GET ${path}: 404 ${daemonMessage(text)}`, { status }));
          if (status < 200 || status >= 300) return finish(new DockerError('E_DOCKER_HTTP', `GET ${path}: ${status} ${daemonMessage(text)}`, { status }));
          try {
            finish(null, JSON.parse(text) as T);
          } catch (e) {
            finish(new DockerError('E_DOCKER_BAD_RESPONSE', `GET ${path}: invalid JSON`, { cause: e }));
          }
        });
      });
      const timer = setTimeout(() => {
        finish(new DockerError('E_DOCKER_TIMEOUT', `GET ${path}: no answer within ${this.opts.timeoutMs} ms`));
        req.destroy();
      }, this.opts.timeoutMs);
      const onAbort = (): void => {
        finish(new DockerError('E_DOCKER_ABORTED', `GET ${path}: aborted`));
        req.destroy();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (e) => finish(connError(path, e)));
      req.end();
    });
  }

  /** A streamed GET: resolves when the server ends the stream or the signal aborts. */
  private stream(path: string, signal: AbortSignal, onOpen: () => void, onLine: (line: string) => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) return resolve();
      let done = false;
      const finish = (err: Error | null): void => {
        if (done) return;
        done = true;
        clearTimeout(connectTimer);
        signal.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve();
      };
      // Events streams get their own socket (no agent): they stay open for hours.
      const req = http.request({ socketPath: this.opts.socketPath, path, method: 'GET', agent: false, headers: { host: 'docker' } }, (res) => {
        clearTimeout(connectTimer);
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300) {
          res.resume();
          finish(new DockerError(status === 404 ? 'E_DOCKER_NOT_FOUND' : 'E_DOCKER_HTTP', `GET ${path}: ${status}`, { status }));
          req.destroy();
          return;
        }
        onOpen();
        let buf = '';
        let skipping = false;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (skipping) {
              skipping = false;
              continue;
            }
            if (line) onLine(line);
          }
          if (buf.length > this.maxLine) {
            buf = '';
            skipping = true;
          }
        });
        res.on('end', () => finish(null));
        res.on('error', (e) => finish(connError(path, e)));
        res.on('close', () => finish(null));
      });
      const connectTimer = setTimeout(() => {
        finish(new DockerError('E_DOCKER_TIMEOUT', `GET ${path}: no response headers within ${this.opts.timeoutMs} ms`));
        req.destroy();
      }, this.opts.timeoutMs);
      const onAbort = (): void => {
        finish(null);
        req.destroy();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      req.on('error', (e) => finish(connError(path, e)));
      req.end();
    });
  }
}

/** Image references go into the path as-is apart from characters that would break it. */
function encodeRef(ref: string): string {
  return ref.replace(/[^A-Za-z0-9._:@/-]/g, (c) => encodeURIComponent(c));
}

function daemonMessage(text: string): string {
  try {
    const m = (JSON.parse(text) as { message?: unknown }).message;
    if (typeof m === 'string') return m.slice(0, 200);
  } catch {
    // not JSON
  }
  return text.slice(0, 200);
}

function connError(path: string, e: Error): DockerError {
  const code = (e as NodeJS.ErrnoException).code ?? 'ERR';
  return new DockerError('E_DOCKER_UNAVAILABLE', `GET ${path}: ${code} ${e.message}`.slice(0, 300), { cause: e });
}
